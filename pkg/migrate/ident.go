package migrate

import "strings"

// quoteIdent writes one identifier for SQL, the SQL this step runs and the SQL it
// prints for an operator alike: plain lowercase names that are not reserved
// words stay bare (readable, and what goose's CLI writes), anything else is
// double-quoted with inner quotes doubled.
func quoteIdent(s string) string {
	if plainIdent(s, 0) && !reservedWords[s] {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// reservedWords are PostgreSQL's reserved key words, including those that can
// be function or type names: none of them can name a table unquoted (checked
// against the server in TestReservedWordsNeedQuotes).
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
