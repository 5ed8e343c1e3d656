package dbconn

import (
	"errors"
	"net/url"
	"slices"
	"strings"
)

// The connection string is checked for the shapes that move a piece of an
// unescaped password into a field that messages print (host, database, a
// keyword's name) before pgx parses it. The errors say what to fix and quote
// nothing of the string.

// encodeHint is what an operator does about a URL refused by checkShape.
const encodeHint = "percent-encode the characters @ : / % ? # in the user name and password (@ as %40, : as %3A, / as %2F, % as %25, ? as %3F, # as %23)"

// quoteHint is what an operator does about a keyword/value string refused by checkShape.
const quoteHint = "put a value holding a blank, ' or \\ in single quotes, with a backslash before each ' and \\ in it ('it\\'s a pw'); server settings go in options='-c name=value'"

var (
	errAuthority = errors.New("the user name and password cannot be told apart from the host: an '@' comes after a '/' or more than one '@' is present, so a piece of the password would be read as the host or the database; " + encodeHint)
	errNotURL    = errors.New("it holds a URL that does not start the string, or one of another scheme: the value must be only the URL, starting with postgres:// or postgresql:// (no NAME= in front, no quotes, no jdbc: or other scheme)")
	errScheme    = errors.New("its scheme is not written in lower case: write postgres:// or postgresql:// (libpq and pgx compare the scheme case-sensitively and would read the URL as keyword=value pairs)")
	errKeyword   = errors.New("it holds a keyword libpq does not know or a keyword twice, as an unquoted password with a blank gives; " + quoteHint)
)

// isURL reports whether pgx reads raw as a URL (anything else is keyword/value).
func isURL(raw string) bool {
	return strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://")
}

// schemeCaseDiffers reports whether raw starts with postgres:// or postgresql://
// in another case (POSTGRES://, PostgreSQL://), which libpq and pgx do not take
// for a URL: pgx reads it as keyword/value, and "?sslmode=..." then makes the
// whole URL, password included, the name of a setting sent to the server.
func schemeCaseDiffers(raw string) bool {
	for _, scheme := range []string{"postgres://", "postgresql://"} {
		if len(raw) >= len(scheme) && raw[:len(scheme)] != scheme && strings.EqualFold(raw[:len(scheme)], scheme) {
			return true
		}
	}
	return false
}

func formName(raw string) string {
	if isURL(raw) || schemeCaseDiffers(raw) || !strings.Contains(raw, "=") {
		return "URL"
	}
	return "keyword/value string"
}

// checkShape refuses a connection string whose parse would not be what its
// author meant.
//
// A URL's userinfo ends at its first '@', unless a '/' comes first (libpq and
// pgx alike): then there is no userinfo, the text before the '/' is the host
// and "port", and the rest of the password with the real host becomes the
// database name. So a URL may hold one '@' at most, before any '/'; an '@'
// meant for a query value is written %40.
//
// A keyword/value string ends an unquoted value at a blank, so the rest of an
// unquoted password with a blank becomes further keywords, whose names the
// server quotes back ("unrecognized configuration parameter") or which
// override the host or the database. libpq itself refuses unknown keywords.
func checkShape(raw string) error {
	if schemeCaseDiffers(raw) {
		return errScheme
	}
	if isURL(raw) {
		rest := raw[strings.Index(raw, "://")+3:]
		at := strings.IndexByte(rest, '@')
		if at < 0 {
			return nil
		}
		if strings.Count(rest, "@") > 1 || strings.IndexByte(rest[:at], '/') >= 0 {
			return errAuthority
		}
		return nil
	}
	keys, ok := keywords(raw)
	if !ok {
		if strings.Contains(raw, "://") {
			return errNotURL
		}
		return nil // a syntax error: pgx refuses it, with parseReason
	}
	// A URL behind a prefix (DATABASE_URL=postgres://..., jdbc:postgresql://...)
	// reads as one pair whose unknown keyword pgx would send to the server, the
	// password in its value.
	if strings.Contains(raw, "://") {
		for _, k := range keys {
			if !knownKeywords[k] && k != "dbname" {
				return errNotURL
			}
		}
	}
	seen := map[string]bool{}
	for _, k := range keys {
		if k == "dbname" {
			k = "database"
		}
		if !knownKeywords[k] || seen[k] {
			return errKeyword
		}
		seen[k] = true
	}
	return nil
}

// unsentSecrets are libpq keywords holding a secret that pgx does not implement:
// it passes them to the server as settings (the value in the startup message,
// in clear text without TLS), which refuses them by name.
var unsentSecrets = []string{"oauth_client_secret", "scram_client_key", "scram_server_key"}

// unsupportedSecret names the first keyword of unsentSecrets that raw sets, in
// its query (a URL) or as a pair, or returns "".
func unsupportedSecret(raw string) string {
	var keys []string
	if isURL(raw) {
		rest, _, _ := strings.Cut(raw[strings.Index(raw, "://")+3:], "#")
		if _, query, ok := strings.Cut(rest, "?"); ok {
			for _, kv := range strings.Split(query, "&") {
				k, _, _ := strings.Cut(kv, "=")
				if k, err := url.QueryUnescape(k); err == nil {
					keys = append(keys, k)
				}
			}
		}
	} else {
		keys, _ = keywords(raw)
	}
	for _, k := range keys {
		if slices.Contains(unsentSecrets, k) {
			return k
		}
	}
	return ""
}

// keywords lists the keywords of a keyword/value string, read as pgx reads it
// (libpq's grammar); ok is false when it does not parse.
func keywords(s string) (keys []string, ok bool) {
	pairs, ok := keyValues(s)
	for _, p := range pairs {
		keys = append(keys, p.key)
	}
	return keys, ok
}

// keyValues lists the pairs of a keyword/value string, each value as written
// (quotes and backslashes kept); ok is false when it does not parse.
func keyValues(s string) (pairs []setting, ok bool) {
	const blanks = " \t\n\r\v\f"
	s = strings.TrimLeft(s, blanks)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return nil, false
		}
		key := strings.Trim(s[:eq], blanks)
		if key == "" || strings.ContainsAny(key, blanks) {
			return nil, false
		}
		s = strings.TrimLeft(s[eq+1:], blanks)
		quoted := strings.HasPrefix(s, "'")
		end := 0
		if quoted {
			end = 1
		}
		for ; end < len(s); end++ {
			c := s[end]
			if quoted && c == '\'' || !quoted && strings.IndexByte(blanks, c) >= 0 {
				break
			}
			if c == '\\' {
				end++
			}
		}
		if end >= len(s) {
			if quoted {
				return nil, false
			}
			pairs = append(pairs, setting{key, s})
			break
		}
		if quoted {
			end++ // the closing quote
		}
		pairs = append(pairs, setting{key, s[:end]})
		s = strings.TrimLeft(s[end:], blanks)
	}
	return pairs, true
}

// knownKeywords are libpq's connection keywords and the few pgx adds.
var knownKeywords = map[string]bool{}

func init() {
	for _, k := range strings.Fields(`host hostaddr port database user password passfile require_auth
		channel_binding connect_timeout client_encoding options application_name
		fallback_application_name keepalives keepalives_idle keepalives_interval keepalives_count
		tcp_user_timeout replication gssencmode sslmode sslnegotiation sslcompression sslcert sslkey
		sslkeylogfile sslpassword sslcertmode sslrootcert sslcrl sslcrldir sslsni requirepeer
		ssl_min_protocol_version ssl_max_protocol_version min_protocol_version max_protocol_version
		krbsrvname gsslib gssdelegation service target_session_attrs load_balance_hosts
		scram_client_key scram_server_key oauth_issuer oauth_client_id oauth_client_secret oauth_scope
		servicefile krbspn default_query_exec_mode statement_cache_capacity description_cache_capacity`) {
		knownKeywords[k] = true
	}
}
