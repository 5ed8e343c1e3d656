package dbconn

import (
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgpassfile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chartreuse-go/chartreuse/pkg/redact"
)

// registerPassfile registers with red the password the passfile holds for each
// host of cfg's list, not only the first host's that pgx put in cfg.Password:
// libpq looks one up per host, and whatever tries the later hosts with their
// own entry (a newer pgx, libpq tools run from the same pod) must find it
// masked. A passfile that cannot be read gives nothing, as in pgx.
func registerPassfile(red *redact.Redactor, raw string, cfg *pgx.ConnConfig) {
	path := passfilePath(raw)
	if path == "" {
		return
	}
	pf, err := pgpassfile.ReadPassfile(path)
	if err != nil {
		return
	}
	targets := []struct {
		host string
		port uint16
	}{{cfg.Host, cfg.Port}}
	for _, f := range cfg.Fallbacks {
		targets = append(targets, struct {
			host string
			port uint16
		}{f.Host, f.Port})
	}
	for _, t := range targets {
		host := t.host
		// pgx and libpq look a Unix socket up as localhost.
		if network, _ := pgconn.NetworkAddress(t.host, t.port); network == "unix" {
			host = "localhost"
		}
		red.Add(pf.FindPassword(host, strconv.Itoa(int(t.port)), cfg.Database, cfg.User))
	}
}

// passfilePath is the passfile pgx reads for raw: the connection string's
// passfile setting, else PGPASSFILE, else ~/.pgpass.
func passfilePath(raw string) string {
	if isURL(raw) {
		rest := raw[strings.Index(raw, "://")+3:]
		rest, _, _ = strings.Cut(rest, "#")
		if _, query, ok := strings.Cut(rest, "?"); ok {
			if values, err := url.ParseQuery(query); err == nil && values.Has("passfile") {
				return values.Get("passfile")
			}
		}
	} else if pairs, ok := keyValues(raw); ok {
		path, found := "", false
		for _, p := range pairs {
			if p.key == "passfile" {
				path, found = unquoteValue(p.token), true // the last one counts
			}
		}
		if found {
			return path
		}
	}
	if p, ok := os.LookupEnv("PGPASSFILE"); ok {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".pgpass")
	}
	return ""
}

// unquoteValue reads a keyword/value token as libpq does: single quotes around
// it dropped, each backslash escaping the character after it.
func unquoteValue(token string) string {
	if len(token) >= 2 && token[0] == '\'' && token[len(token)-1] == '\'' {
		token = token[1 : len(token)-1]
	}
	var b strings.Builder
	for i := 0; i < len(token); i++ {
		if token[i] == '\\' && i+1 < len(token) {
			i++
		}
		b.WriteByte(token[i])
	}
	return b.String()
}
