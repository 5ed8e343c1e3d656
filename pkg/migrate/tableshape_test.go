package migrate

import (
	"strings"
	"testing"
)

// TestForeignDirtyTableIsRefused: a table of another tool named like the dirty
// record is refused by plan and migrate, every mode, before anything is
// created; the dirty table this step creates passes the same check.
func TestForeignDirtyTableIsRefused(t *testing.T) {
	d := newDB(t)
	d.exec("CREATE TABLE hits (n int)")
	dir := writeDir(t, files{
		"00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;"),
		"00002_b.sql": "-- +goose NO TRANSACTION\n" + mig("INSERT INTO hits VALUES (1);", "DELETE FROM hits;"),
	})
	for _, c := range []struct{ sql, problem string }{
		{"CREATE TABLE goose_db_version_dirty (id int PRIMARY KEY, note text)", "it has no column version, direction, file, statements_done, statements_total, started_at, run_id, last_error"},
		{"CREATE VIEW goose_db_version_dirty AS SELECT 1 AS version", `it is not a table (relkind \"v\")`},
		{`CREATE TABLE goose_db_version_dirty (version int PRIMARY KEY, direction text NOT NULL, file text NOT NULL, statements_done integer NOT NULL,
			statements_total integer NOT NULL, started_at timestamptz NOT NULL DEFAULT now(), run_id text NOT NULL DEFAULT '', last_error text NOT NULL DEFAULT '', owner text NOT NULL)`,
			"column version is integer, not bigint; column owner must be filled (NOT NULL without a default)"},
	} {
		d.exec(c.sql)
		before := d.snapshot()
		for _, args := range [][]string{{"--plan"}, nil, {"--down-to", "0"}} {
			o := runStep(t, d.url(), dir, args...)
			want := "refusing to migrate: public.goose_db_version_dirty exists but is not the dirty record of public.goose_db_version: " + c.problem +
				`. If it is another tool's table, rename it (ALTER TABLE public.goose_db_version_dirty RENAME TO goose_db_version_dirty_old;) or choose another --table`
			if o.code != 1 || !strings.Contains(o.lastLine(), want) {
				t.Fatalf("%s, %v: exit %d: %s\nwant %s", c.sql, args, o.code, o.lastLine(), want)
			}
		}
		if after := d.snapshot(); after != before {
			t.Fatalf("a refused run changed the database:\n%s\nthen:\n%s", before, after)
		}
		if strings.HasPrefix(c.sql, "CREATE VIEW") {
			d.exec("DROP VIEW goose_db_version_dirty")
		} else {
			d.exec("DROP TABLE goose_db_version_dirty")
		}
	}
	// Renamed out of the way: the step creates its own, which passes.
	mustRun(t, d.url(), dir)
	if o := mustRun(t, d.url(), dir, "--plan"); o.result("pending") != "false" {
		t.Fatalf("plan after the run: %v", o.summary.Results)
	}
	if got := d.queryString("SELECT count(*) FROM hits"); got != "1" {
		t.Fatalf("hits %s, want 1", got)
	}
}
