package migrate

import (
	"strings"
	"testing"
)

// A checksum record whose sha256 was emptied by hand (NOT NULL dropped, the
// value set to NULL) is refused like an edit, and --accept-changed records
// the file's checksum. Before, the accept matched no row and the run said the
// migration lock had been released, exit 75: a retry loop that never ends.
func TestAcceptChangedRecordWithoutChecksum(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, threeTables)
	mustRun(t, d.url(), dir, "--allow-empty-database")
	d.exec(`ALTER TABLE goose_db_version_sums ALTER COLUMN sha256 DROP NOT NULL; UPDATE goose_db_version_sums SET sha256 = NULL WHERE version = 2`)
	o := runStep(t, d.url(), dir)
	if o.code != 1 || !strings.Contains(o.lastLine(), "migration 2 (00002_b.sql) was edited after it was applied") {
		t.Fatalf("exit %d, want 1 refusing migration 2: %s", o.code, o.lastLine())
	}
	o = runStep(t, d.url(), dir, "--accept-changed=2")
	if o.code != 0 {
		t.Fatalf("accept: exit %d: %s", o.code, o.lastLine())
	}
	want := "2:00002_b.sql:" + sha256Hex(threeTables["00002_b.sql"]) + ":accepted:"
	if got := d.sums("goose_db_version_sums"); !strings.Contains(got, want) {
		t.Fatalf("sums %s, want %s...", got, want)
	}
	mustRun(t, d.url(), dir)
}
