package dbconn

import (
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// A connection string can be well-formed and still hold a value pgx refuses (a
// misspelt sslmode, a port out of range). pgx's message quotes the string, so it
// is not shown; instead each setting is parsed on its own to find the one at
// fault, which the message names without quoting its value.

// secretKeys are never tried on their own: their values are not validated, and
// must reach no parser's message.
var secretKeys = map[string]bool{"password": true, "sslpassword": true}

// goodValue is a value pgx accepts for each setting it validates, to find a
// libpq variable at fault by overriding it.
var goodValue = map[string]string{
	"port": "5432", "connect_timeout": "0", "sslmode": "disable", "sslcertmode": "disable",
	"sslnegotiation": "postgres", "sslsni": "0", "target_session_attrs": "any",
	"min_protocol_version": "3.0", "max_protocol_version": "3.0", "channel_binding": "disable",
	"require_auth": "password", "host": "localhost", "service": "''", "servicefile": "''",
	"sslrootcert": "''", "sslcert": "''", "sslkey": "''", "passfile": "''",
}

// envKeys are the libpq variables pgx reads and the setting each gives.
var envKeys = map[string]string{
	"PGHOST": "host", "PGPORT": "port", "PGPASSFILE": "passfile", "PGCONNECT_TIMEOUT": "connect_timeout",
	"PGSSLMODE": "sslmode", "PGSSLKEY": "sslkey", "PGSSLCERT": "sslcert", "PGSSLCERTMODE": "sslcertmode",
	"PGSSLSNI": "sslsni", "PGSSLROOTCERT": "sslrootcert", "PGSSLNEGOTIATION": "sslnegotiation",
	"PGTARGETSESSIONATTRS": "target_session_attrs", "PGSERVICE": "service", "PGSERVICEFILE": "servicefile",
	"PGMINPROTOCOLVERSION": "min_protocol_version", "PGMAXPROTOCOLVERSION": "max_protocol_version",
	"PGCHANNELBINDING": "channel_binding", "PGREQUIREAUTH": "require_auth",
}

// badSetting names the setting of raw, or the libpq variable, whose value pgx
// refuses, or returns "" when no single one is at fault (then the string's shape
// is, and parseReason says so). The password is never tried.
func badSetting(raw string) string {
	if _, err := pgx.ParseConfig(tcp); err != nil {
		return badVariable()
	}
	var tries []setting
	if isURL(raw) {
		rest := raw[strings.Index(raw, "://")+3:]
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			rest = rest[at+1:]
		}
		rest, _, _ = strings.Cut(rest, "#")
		authority, query, _ := strings.Cut(rest, "?")
		authority, _, _ = strings.Cut(authority, "/")
		// The authority as a URL of its own: pgx splits host:port lists there.
		if _, err := pgx.ParseConfig("postgres://" + authority + "/"); err != nil {
			return "the host or port"
		}
		values, err := url.ParseQuery(query)
		if err != nil {
			return ""
		}
		for k := range values {
			tries = append(tries, setting{k, "'" + quoteValue(values.Get(k)) + "'"})
		}
		sort.Slice(tries, func(i, j int) bool { return tries[i].key < tries[j].key })
	} else {
		pairs, ok := keyValues(raw)
		if !ok {
			return ""
		}
		// host and port together: their counts must match.
		var hostPort []string
		for _, p := range pairs {
			if p.key == "host" || p.key == "port" {
				hostPort = append(hostPort, p.key+"="+p.token)
			} else {
				tries = append(tries, p)
			}
		}
		if _, err := pgx.ParseConfig(strings.Join(hostPort, " ")); len(hostPort) > 0 && err != nil {
			return "the host or port"
		}
	}
	for _, p := range tries {
		if secretKeys[p.key] {
			continue
		}
		if _, err := pgx.ParseConfig(tcp + " " + p.key + "=" + p.token); err != nil {
			return p.key
		}
	}
	return ""
}

// badVariable names the libpq variable whose value pgx refuses: the one that,
// overridden with a good value, lets the environment alone parse.
func badVariable() string {
	var names []string
	for name := range envKeys {
		if _, ok := os.LookupEnv(name); ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		key := envKeys[name]
		if _, err := pgx.ParseConfig(tcp + " " + key + "=" + goodValue[key]); err == nil {
			return "the environment variable " + name
		}
	}
	return "a PG* environment variable"
}

// tcp is the host every setting is tried with: pgx checks the TLS settings only
// for a TCP host, not for a Unix socket (its default).
const tcp = "host=localhost"

// setting is one key and its value as a keyword/value token, as written.
type setting struct{ key, token string }

func quoteValue(v string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v)
}
