package migrate

import (
	"strings"
	"testing"
)

// The version table dropped while its checksum records remain: migrate and
// --plan refuse (every migration would run again), and the repair they give
// for changes still in place works as given. Before, it told to INSERT the
// rows back into the table that no longer exists.
func TestVersionTableDroppedRecordsRemain(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, threeTables)
	mustRun(t, d.url(), dir, "--allow-empty-database")
	d.exec(`DROP TABLE goose_db_version`)
	before := d.snapshot()
	var last string
	for _, args := range [][]string{{"--plan"}, nil} {
		o := runStep(t, d.url(), dir, args...)
		last = o.lastLine()
		if o.code != 1 || !strings.Contains(last, "the version table public.goose_db_version does not exist, but public.goose_db_version_sums records migrations 1 (00001_a.sql") {
			t.Fatalf("migrate %v: exit %d, want 1: %s", args, o.code, last)
		}
		if got := d.snapshot(); got != before {
			t.Fatalf("migrate %v changed the database:\nbefore:\n%s\nafter:\n%s", args, before, got)
		}
	}
	_, repair, ok := strings.Cut(last, "recreate it with their rows: ")
	repair, _, ok2 := strings.Cut(repair, "; if they were rolled back")
	if !ok || !ok2 {
		t.Fatalf("no repair for changes in place: %s", last)
	}
	d.exec(repair)
	o := mustRun(t, d.url(), dir)
	if !strings.Contains(o.stderr, "nothing to migrate") || d.versions("goose_db_version") != "0:true 1:true 2:true 3:true" {
		t.Fatalf("after the repair: versions %s\n%s", d.versions("goose_db_version"), o.stderr)
	}
}
