package migrate

import (
	"strings"
	"testing"
)

// TestResolveNotAppliedOfAStoppedRollbackDeletesItsChecksum: a NO TRANSACTION
// rollback that stops partway keeps the version's row and its checksum row;
// --resolve --as not-applied removes both, so plan and the next run apply the
// version again instead of refusing it as recorded applied.
func TestResolveNotAppliedOfAStoppedRollbackDeletesItsChecksum(t *testing.T) {
	d := newDB(t)
	d.exec("CREATE TABLE hits (n int)")
	dir := writeDir(t, files{
		"00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;"),
		"00002_b.sql": "-- +goose NO TRANSACTION\n" + mig("INSERT INTO hits VALUES (1);", "DELETE FROM hits;\nSELECT 1/0;"),
	})
	mustRun(t, d.url(), dir)
	if o := runStep(t, d.url(), dir, "--down-to", "1"); o.code != 1 || !strings.Contains(o.lastLine(), "recorded as stopped partway") {
		t.Fatalf("rollback: exit %d: %s", o.code, o.lastLine())
	}
	if got := d.queryString("SELECT count(*) FROM goose_db_version_sums WHERE version = 2"); got != "1" {
		t.Fatalf("checksum rows of version 2 after the stopped rollback: %s, want 1", got)
	}
	if o := mustRun(t, d.url(), dir, "--resolve", "2", "--as", "not-applied"); o.result("pending-versions") != "[2]" {
		t.Fatalf("resolve: %v", o.summary.Results)
	}
	if got := d.queryString("SELECT count(*)::text || '/' || (SELECT count(*) FROM goose_db_version WHERE version_id = 2) FROM goose_db_version_sums WHERE version = 2"); got != "0/0" {
		t.Fatalf("checksum rows / version rows of version 2 after the resolve: %s, want 0/0", got)
	}
	if o := mustRun(t, d.url(), dir, "--plan"); o.result("pending-versions") != "[2]" {
		t.Fatalf("plan: %v", o.summary.Results)
	}
	if o := mustRun(t, d.url(), dir); o.result("applied-versions") != "[2]" {
		t.Fatalf("migrate: %v", o.summary.Results)
	}
	if got := d.queryString("SELECT count(*) FROM hits"); got != "1" {
		t.Fatalf("hits %s, want 1", got)
	}
}

// TestResolveNotAppliedNeedsToDeleteTheChecksum: a role that cannot delete
// from the checksum table is refused before anything changes.
func TestResolveNotAppliedNeedsToDeleteTheChecksum(t *testing.T) {
	role := plainRole(t, "mig_nosums")
	d := newDB(t)
	d.exec("CREATE TABLE hits (n int)")
	dir := writeDir(t, files{
		"00001_b.sql": "-- +goose NO TRANSACTION\n" + mig("INSERT INTO hits VALUES (1);", "DELETE FROM hits;\nSELECT 1/0;"),
	})
	mustRun(t, d.url(), dir)
	if o := runStep(t, d.url(), dir, "--down-to", "0"); o.code != 1 {
		t.Fatalf("rollback: exit %d: %s", o.code, o.lastLine())
	}
	d.exec("GRANT SELECT, INSERT, DELETE ON goose_db_version TO " + role + "; GRANT SELECT, INSERT, UPDATE, DELETE ON goose_db_version_dirty TO " + role +
		"; GRANT SELECT ON goose_db_version_sums TO " + role)
	before := d.snapshot()
	o := runStep(t, d.url(), dir, "--resolve", "1", "--as", "not-applied", "--role", role)
	if o.code != 1 || !strings.Contains(o.lastLine(), "cannot delete the version's checksum row from public.goose_db_version_sums") ||
		!strings.Contains(o.lastLine(), "GRANT SELECT, INSERT, UPDATE, DELETE ON public.goose_db_version_sums TO "+role) {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	if after := d.snapshot(); after != before {
		t.Fatalf("the refused resolve changed the database:\n%s\nthen:\n%s", before, after)
	}
}
