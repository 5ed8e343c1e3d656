package migrate

import (
	"strings"
	"testing"
)

// An allow comment waives the rules it names, not every word after them:
// "-- chartreuse:allow drop-column but not alter-column-type" must leave the
// type change (ACCESS EXCLUSIVE and a rewrite) failing --risk-policy=fail.
func TestAllowCommentWaivesOnlyItsRules(t *testing.T) {
	d := newDB(t)
	d.exec(`CREATE TABLE accounts (id int PRIMARY KEY, a int, b int)`)
	dir := writeDir(t, files{"1_x.sql": mig("-- chartreuse:allow drop-column but not alter-column-type\nALTER TABLE accounts DROP COLUMN a, ALTER COLUMN b TYPE bigint;", "")})
	o := runStep(t, d.url(), dir, "--plan", "--risk-policy=fail")
	if o.code != 1 || !strings.Contains(o.lastLine(), "1_x.sql:3 alter-column-type") || strings.Contains(o.lastLine(), "drop-column") {
		t.Fatalf("exit %d, want 1 naming alter-column-type only: %s", o.code, o.lastLine())
	}
}
