package migrate

import (
	"strings"
	"testing"
)

// The additive forms are harmless to the running version only because
// --lock-timeout bounds how long their brief locks wait, with its queries
// behind them (sqlrisk.TestAdditiveLockTimeout reads lock_timeout 0 back from
// the server: it waits forever). A plan told the migrations run with
// --lock-timeout 0, or longer than 10 s, says needs-downtime true. Before, it
// said false.
func TestNeedsDowntimeUnboundedLockTimeout(t *testing.T) {
	d := newDB(t)
	d.exec(`CREATE TABLE accounts (id int PRIMARY KEY, email text)`)
	dir := writeDir(t, files{"1_note.sql": mig("ALTER TABLE accounts ADD COLUMN note text;", "")})
	for _, tt := range []struct {
		timeout string
		needs   string
	}{{"0", "true"}, {"1m", "true"}, {"10s", "false"}, {"3s", "false"}} {
		o := runStep(t, d.url(), dir, "--plan", "--lock-timeout", tt.timeout)
		if o.code != 0 || o.result("needs-downtime") != tt.needs {
			t.Errorf("--lock-timeout %s: exit %d, needs-downtime %q, want %s\n%s", tt.timeout, o.code, o.result("needs-downtime"), tt.needs, o.stderr)
		}
		if tt.needs == "true" && !strings.Contains(o.stderr, "--lock-timeout") {
			t.Errorf("--lock-timeout %s: the log does not say why:\n%s", tt.timeout, o.stderr)
		}
	}
}
