package dbconn

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// PlainIdent reports whether s is [a-z_][a-z0-9_]*: the names PostgreSQL's own
// quote_ident() leaves bare when they are not key words. The server would also
// read a '$' after the first character, but quote_ident() quotes it (the SQL
// standard has no '$' in identifiers), and so does QuoteIdent.
func PlainIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '_', 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// QuoteIdent writes one identifier for SQL, the SQL a step runs and the SQL it
// prints for an operator alike: plain names that are not reserved words stay
// bare (readable, and what goose's CLI writes), anything else is double-quoted
// with inner quotes doubled.
func QuoteIdent(s string) string {
	if PlainIdent(s) && !reservedWords[s] {
		return s
	}
	return pgx.Identifier{s}.Sanitize()
}

// reservedWords are PostgreSQL's reserved key words, including those that can
// be function or type names: none of them can name a table unquoted
// (checked against the server in TestReservedWordsNeedQuotes).
var reservedWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`
		all analyse analyze and any array as asc asymmetric authorization binary both
		case cast check collate collation column concurrently constraint create cross
		current_catalog current_date current_role current_schema current_time
		current_timestamp current_user default deferrable desc distinct do else end
		except false fetch for foreign freeze from full grant group having ilike in
		initially inner intersect into is isnull join lateral leading left like limit
		localtime localtimestamp natural not notnull null offset on only or order outer
		overlaps placing primary references returning right select session_user similar
		some symmetric system_user table tablesample then to trailing true union unique
		user using variadic verbose when where window with`) {
		m[w] = true
	}
	return m
}()

// MaxTableName keeps <table>_dirty, migrate's record of a migration that
// stopped partway, within PostgreSQL's 63-byte identifiers.
const MaxTableName = 63 - len("_dirty")

// ValidVersionTable accepts goose's version table as migrate takes it: lowercase
// identifiers only, optionally schema-qualified. The goose CLI writes the table
// name into its SQL as is, so a name it would fold could not be shared with it.
// Reserved words are accepted (the steps quote them, see QuoteIdent).
// Hand-written: the equivalent regexp took a fifth of a millisecond to compile
// at every start.
func ValidVersionTable(s string) bool {
	part := func(p string, maxLen int) bool { return len(p) <= maxLen && PlainIdent(p) }
	if schema, name, ok := strings.Cut(s, "."); ok {
		return part(schema, 63) && part(name, MaxTableName)
	}
	return part(s, MaxTableName)
}
