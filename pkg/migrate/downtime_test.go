package migrate

import (
	"strings"
	"testing"
)

// plan's needs-downtime: false when every pending statement is additive,
// true naming the first one that is not (file:line), true when the analysis
// did not run.
func TestPlanNeedsDowntime(t *testing.T) {
	d := newDB(t)
	d.exec(`CREATE TABLE accounts (id int PRIMARY KEY, email text); INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 100) g`)
	additive := files{
		"1_notes.sql": mig("CREATE TABLE notes (id bigint PRIMARY KEY, account_id int REFERENCES accounts (id), body text NOT NULL);\n"+
			"ALTER TABLE accounts ADD COLUMN note text, ADD COLUMN score int NOT NULL DEFAULT 0;\nCOMMENT ON COLUMN accounts.note IS 'free text';", "DROP TABLE notes;"),
		"2_index.sql": "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_email ON accounts (email);\n",
	}
	o := runStep(t, d.url(), writeDir(t, additive), "--plan")
	if o.code != 0 || o.result("needs-downtime") != "false" || !strings.Contains(o.stderr, "needs-downtime false: every pending statement (4) is additive") {
		t.Fatalf("additive: exit %d, needs-downtime %q\n%s", o.code, o.result("needs-downtime"), o.stderr)
	}

	blocking := files{
		"1_notes.sql": additive["1_notes.sql"],
		"2_email.sql": mig("-- the old version writes NULLs here\nALTER TABLE accounts ADD COLUMN verified boolean DEFAULT false;\nALTER TABLE accounts ALTER COLUMN email SET NOT NULL;", ""),
	}
	o = runStep(t, d.url(), writeDir(t, blocking), "--plan")
	if o.code != 0 || o.result("needs-downtime") != "true" ||
		!strings.Contains(o.stderr, "needs-downtime true: 2_email.sql:4 is not additive: ALTER TABLE does more than ADD COLUMN") {
		t.Fatalf("blocking: exit %d, needs-downtime %q\n%s", o.code, o.result("needs-downtime"), o.stderr)
	}

	// A statement the parser rejects is not known to be additive.
	o = runStep(t, d.url(), writeDir(t, files{"1_x.sql": mig("CREATE TABLE x (id int);\nCREATE TABLE (;", "")}), "--plan")
	if o.result("needs-downtime") != "true" || !strings.Contains(o.stderr, "1_x.sql:3 is not analysed") {
		t.Fatalf("unparsed: exit %d, needs-downtime %q\n%s", o.code, o.result("needs-downtime"), o.stderr)
	}

	// Only plan decides: a migrate run writes no needs-downtime.
	o = runStep(t, d.url(), writeDir(t, additive))
	if _, ok := o.summary.Results["needs-downtime"]; o.code != 0 || ok {
		t.Fatalf("migrate: exit %d, results %v\n%s", o.code, o.summary.Results, o.stderr)
	}
}

// Without the memory to start the parser, the statements are not analysed:
// the application is stopped.
func TestNeedsDowntimeWithoutMemory(t *testing.T) {
	saved := memoryLimit
	memoryLimit = func() int64 { return 128 << 20 / 10 * 9 }
	t.Cleanup(func() { memoryLimit = saved })
	d := newDB(t)
	o := runStep(t, d.url(), writeDir(t, files{"1_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")}), "--plan")
	if o.code != 0 || o.result("needs-downtime") != "true" || !strings.Contains(o.stderr, "needs-downtime true: the pending statements were not analysed") {
		t.Fatalf("exit %d, needs-downtime %q\n%s", o.code, o.result("needs-downtime"), o.stderr)
	}
}

// With nothing pending, needs-downtime is false and the parser never starts
// (a child process: the parser's state is per process).
func TestNeedsDowntimeNothingPending(t *testing.T) {
	d := newDB(t)
	f := files{"1_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")}
	mustRun(t, d.url(), writeDir(t, f))
	out := planInChild(t, d.url(), writeDir(t, f))
	for _, want := range []string{"needs-downtime false: nothing is pending", "needs-downtime: false, parser started: false"} {
		if !strings.Contains(out, want) {
			t.Errorf("child plan: want %q in:\n%s", want, out)
		}
	}
}
