package migrate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestChecksumTableAlteredRefusedBeforeNoTx: a checksum table whose writes
// would fail (its primary key dropped, a column retyped, a NOT NULL column
// added) is refused before anything runs; otherwise a migration without a
// transaction would run whole and then be recorded as stopped partway, its
// version row unwritable.
func TestChecksumTableAlteredRefusedBeforeNoTx(t *testing.T) {
	for _, c := range []struct{ alter, want string }{
		{"ALTER TABLE goose_db_version_sums DROP CONSTRAINT goose_db_version_sums_pkey", "no primary key or unique index on version alone"},
		{"ALTER TABLE goose_db_version_sums ALTER COLUMN file TYPE varchar(5) USING left(file, 5)", "column file is character varying(5), not text"},
		{"ALTER TABLE goose_db_version_sums ADD COLUMN approver text NOT NULL DEFAULT 'x'; ALTER TABLE goose_db_version_sums ALTER COLUMN approver DROP DEFAULT",
			"column approver must be filled (NOT NULL without a default)"},
	} {
		d := newDB(t)
		f := subset(threeTables, "00001_a.sql", "00002_b.sql", "00003_c.sql")
		mustRun(t, d.url(), writeDir(t, f))
		d.exec(c.alter)
		f["00004_idx.sql"] = noTxIndex
		dir := writeDir(t, f)
		before := d.snapshot()
		for _, args := range [][]string{nil, {"--plan"}} {
			o := runStep(t, d.url(), dir, args...)
			if o.code != 1 || !strings.Contains(o.lastLine(), "public.goose_db_version_sums exists but is not the checksum table of public.goose_db_version: "+c.want) {
				t.Fatalf("%s; migrate %v: exit %d: %s", c.alter, args, o.code, o.lastLine())
			}
			if got := d.snapshot(); got != before {
				t.Fatalf("%s; migrate %v changed the database:\nbefore:\n%s\nafter:\n%s", c.alter, args, before, got)
			}
		}
	}
}

// TestMigrationEditedDuringRunNotRun: a file changed after the run read the
// directory (a ConfigMap volume updated, a directory written to during a long
// run) is not run, since the checksum recorded would be of other bytes than
// those that ran; the run stops before it with exit 75.
func TestMigrationEditedDuringRunNotRun(t *testing.T) {
	d := newDB(t)
	f := files{
		"00001_a.sql": mig("SELECT pg_advisory_xact_lock(4242);\nCREATE TABLE a (id int);", "DROP TABLE a;"),
		"00002_b.sql": mig("CREATE TABLE b (id int);", "DROP TABLE b;"),
	}
	dir := writeDir(t, f)
	hold := d.conn()
	if _, err := hold.Exec(t.Context(), "SELECT pg_advisory_lock(4242)"); err != nil {
		t.Fatal(err)
	}
	done := make(chan outcome, 1)
	go func() { done <- runStep(t, d.url(), dir, "--allow-empty-database") }()
	eventually(t, "migration 1 to wait for the test's lock", func() bool {
		return d.queryString("SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted)::text") == "true"
	})
	changed := mig("CREATE TABLE b_changed (id int);", "DROP TABLE b_changed;")
	if err := os.WriteFile(filepath.Join(dir, "00002_b.sql"), []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Exec(t.Context(), "SELECT pg_advisory_unlock(4242)"); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.code != 75 || !strings.Contains(o.lastLine(), "migration 2 (00002_b.sql) changed while this run was going on (sha256 "+sha256Hex(f["00002_b.sql"])+
		" when the run read the directory, "+sha256Hex(changed)+" now): nothing of it ran") {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	if got := d.versions("goose_db_version"); got != "0:true 1:true" {
		t.Fatalf("versions %s, want 0:true 1:true", got)
	}
	if d.tableExists("b") || d.tableExists("b_changed") {
		t.Fatal("migration 2 ran")
	}
	// The rerun applies the file as it is now, and records its checksum.
	mustRun(t, d.url(), dir)
	if !d.tableExists("b_changed") || !strings.Contains(d.sums("goose_db_version_sums"), "2:00002_b.sql:"+sha256Hex(changed)+":applied:") {
		t.Fatalf("rerun: b_changed %v, sums %s", d.tableExists("b_changed"), d.sums("goose_db_version_sums"))
	}
}
