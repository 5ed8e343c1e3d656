package migrate

import (
	"net/url"
	"strings"
	"testing"
)

// TestConnectionRefusalsSayWhatToFix: migrate opens its connection through
// database/sql, not dbconn.Connect, and printed pgx's bare message; a wrong
// password or a server without TLS under sslmode=require must, as in the wait
// steps, stop at once (exit 1) saying what to fix, with no piece of the
// password anywhere.
func TestConnectionRefusalsSayWhatToFix(t *testing.T) {
	d := newDB(t)
	const pw = "QZ@J:K/V%W?Y#x y'z"
	good, err := url.Parse(d.url())
	if err != nil {
		t.Fatal(err)
	}
	dir := writeDir(t, threeTables)
	for _, tt := range []struct {
		name, password, query, want string
	}{
		{"wrong password", pw, "sslmode=disable", "fix the credentials"},
		{"sslmode=require, no TLS on the server", "", "sslmode=require", "fix sslmode"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := *good
			if tt.password != "" {
				u.User = url.UserPassword(u.User.Username(), tt.password)
			}
			u.RawQuery = tt.query
			for _, args := range [][]string{{"--plan"}, nil} {
				o := runStep(t, u.String(), dir, args...)
				if o.code != 1 || !strings.Contains(o.summary.Error, tt.want) || !strings.Contains(o.summary.Error, "not retried") {
					t.Fatalf("migrate %v: exit %d, error %q; want 1 saying %q and not retried", args, o.code, o.summary.Error, tt.want)
				}
				for _, piece := range []string{"QZ", "K/V", "W?Y", "x y"} {
					if strings.Contains(o.stdout+o.stderr, piece) {
						t.Fatalf("output holds %q of the password:\n%s%s", piece, o.stdout, o.stderr)
					}
				}
			}
		})
	}
}
