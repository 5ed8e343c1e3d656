package migrate

import (
	"strings"
	"testing"
)

// An ENVSUB value holding a quote and a space breaks the statement it is
// substituted into: PostgreSQL (migrate) and its parser (--plan's risk
// analysis) then quote a piece of it in their errors ("unrecognized role
// option"). No piece of the value may be printed. A value with one quote leaves
// the statement's quote open: preparse refuses it before anything runs
// (sqlrisk.Unsplittable), naming the statement, not its text.
func TestEnvsubValueFragmentsNeverPrinted(t *testing.T) {
	for _, tc := range []struct{ secret, want string }{
		{"s3cr3t' t0ken-value '", "00001_a.sql:4 (statement 2)"},
		{"s3cr3t' t0ken-value", "statement 2 (line 4) cannot be split"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			t.Setenv("CHARTREUSE_TEST_SECRET", tc.secret)
			d := newDB(t)
			d.exec("CREATE TABLE keep (id int)")
			dir := writeDir(t, files{"00001_a.sql": "-- +goose ENVSUB ON\n" + mig(
				"CREATE TABLE a (v text);\nALTER ROLE CURRENT_USER PASSWORD '${CHARTREUSE_TEST_SECRET}';", "DROP TABLE a;")})
			for _, args := range [][]string{{"--plan"}, nil} {
				o := runStep(t, d.url(), dir, args...)
				if args == nil && (o.code != 1 || !strings.Contains(o.lastLine(), tc.want)) {
					t.Fatalf("migrate: exit %d, want 1 with %q: %s", o.code, tc.want, o.lastLine())
				}
				for _, part := range []string{"t0ken", "s3cr3t", "-value"} {
					if strings.Contains(o.stdout+o.stderr, part) {
						t.Errorf("%v: a piece of the ENVSUB value (%q) printed:\n%s", args, part, o.stderr)
					}
				}
			}
		})
	}
}
