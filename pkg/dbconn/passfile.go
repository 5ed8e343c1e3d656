package dbconn

import (
	"net"
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

// passfileEntry is the passfile's password for one host of a list.
type passfileEntry struct {
	host     string // as the list names it, with its port
	password string // "" when the passfile has no entry for it
}

// passfileEntries looks the passfile up for each host of cfg's list as libpq
// does (a Unix socket as localhost). pgx looks up the first host only. A
// passfile that cannot be read gives nothing, as in pgx.
func passfileEntries(raw string, cfg *pgx.ConnConfig) []passfileEntry {
	path := passfilePath(raw)
	if path == "" {
		return nil
	}
	pf, err := pgpassfile.ReadPassfile(path)
	if err != nil {
		return nil
	}
	type target struct {
		host string
		port uint16
	}
	targets := []target{{cfg.Host, cfg.Port}}
	for _, f := range cfg.Fallbacks {
		targets = append(targets, target{f.Host, f.Port})
	}
	entries := make([]passfileEntry, 0, len(targets))
	for _, t := range targets {
		host := t.host
		if network, _ := pgconn.NetworkAddress(t.host, t.port); network == "unix" {
			host = "localhost"
		}
		port := strconv.Itoa(int(t.port))
		entries = append(entries, passfileEntry{host: net.JoinHostPort(t.host, port), password: pf.FindPassword(host, port, cfg.Database, cfg.User)})
	}
	return entries
}

// registerPassfile registers with red the passfile's password for each host of
// the list, not only the first host's that pgx put in cfg.Password: whatever
// tries the later hosts with their own entry (libpq tools run from the same
// pod) must find it masked.
func registerPassfile(red *redact.Redactor, entries []passfileEntry) {
	for _, e := range entries {
		red.Add(e.password)
	}
}

// passfileMismatch names a later host of the list whose passfile entry differs
// from the first host's, when the password came from the passfile: pgx reads
// the first host's entry and sends it to every host, so that host would get a
// password the passfile never gave it (libpq sends each host its own). It
// returns "" when the password was given (libpq too sends that one to every
// host) or every host has the first one's entry.
func passfileMismatch(raw string, cfg *pgx.ConnConfig, entries []passfileEntry) (first, other string) {
	if len(entries) < 2 || entries[0].password == "" || cfg.Password != entries[0].password || passwordGiven(raw) {
		return "", ""
	}
	for _, e := range entries[1:] {
		if e.password != entries[0].password {
			return entries[0].host, e.host
		}
	}
	return "", ""
}

// passwordGiven reports whether raw or PGPASSWORD sets a non-empty password,
// in which case pgx and libpq never read the passfile.
func passwordGiven(raw string) bool {
	if os.Getenv("PGPASSWORD") != "" {
		return true
	}
	if pw, _ := settingValue(raw, "password"); pw != "" {
		return true
	}
	if !isURL(raw) {
		return false
	}
	rest, _, _ := strings.Cut(raw[strings.Index(raw, "://")+3:], "#")
	rest, _, _ = strings.Cut(rest, "?")
	authority, _, _ := strings.Cut(rest, "/")
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		_, pw, ok := strings.Cut(authority[:at], ":")
		return ok && pw != ""
	}
	return false
}

// settingValue is the value raw gives the setting key: in a URL's query (the
// first one, as pgx reads it) or in a keyword/value string (the last one).
func settingValue(raw, key string) (string, bool) {
	if isURL(raw) {
		rest, _, _ := strings.Cut(raw[strings.Index(raw, "://")+3:], "#")
		if _, query, ok := strings.Cut(rest, "?"); ok {
			if values, err := url.ParseQuery(query); err == nil && values.Has(key) {
				return values.Get(key), true
			}
		}
		return "", false
	}
	pairs, ok := keyValues(raw)
	if !ok {
		return "", false
	}
	value, found := "", false
	for _, p := range pairs {
		if p.key == key {
			value, found = unquoteValue(p.token), true
		}
	}
	return value, found
}

// passfilePath is the passfile pgx reads for raw: the connection string's
// passfile setting, else PGPASSFILE, else ~/.pgpass.
func passfilePath(raw string) string {
	if path, ok := settingValue(raw, "passfile"); ok {
		return path
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
