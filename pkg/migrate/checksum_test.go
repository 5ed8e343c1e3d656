package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pressly/goose/v3"
)

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// sums lists the checksum table as "version:file:sha256:recorded:run_id" rows
// joined by spaces, in version order.
func (d *testDB) sums(table string) string {
	d.t.Helper()
	return d.queryString(`SELECT coalesce(string_agg(version || ':' || file || ':' || sha256 || ':' || recorded || ':' || run_id, ' ' ORDER BY version), '') FROM ` + table)
}

// edited is f with content appended to the named files.
func edited(f files, add string, names ...string) files {
	out := files{}
	for n, c := range f {
		out[n] = c
	}
	for _, n := range names {
		out[n] += add
	}
	return out
}

// gooseUp applies the migrations of dir with goose's own Provider (no checksum):
// a database migrated before this step kept checksums, or by the goose CLI.
func gooseUp(t *testing.T, d *testDB, dir string, to int64) {
	t.Helper()
	p, err := goose.NewProvider(goose.DialectPostgres, d.sqlDB(t, nil), os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(context.Background(), to); err != nil {
		t.Fatal(err)
	}
}

// noTxIndex is a migration without a transaction.
const noTxIndex = "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY c_id ON c (id);\n-- +goose Down\nDROP INDEX CONCURRENTLY c_id;\n"

func TestChecksumsRecordedOnApply(t *testing.T) {
	d := newDB(t)
	f := edited(threeTables, "", "00001_a.sql")
	f["00004_idx.sql"] = noTxIndex
	dir := writeDir(t, f)
	o := mustRun(t, d.url(), dir, "--run-id", "shop-migrate-x7k2p")
	if o.result("checksums-recorded") != "4" {
		t.Errorf("checksums-recorded = %q, want 4", o.result("checksums-recorded"))
	}
	var want []string
	for _, n := range []string{"00001_a.sql", "00002_b.sql", "00003_c.sql", "00004_idx.sql"} {
		want = append(want, n[4:5]+":"+n+":"+sha256Hex(f[n])+":applied:shop-migrate-x7k2p")
	}
	if got := d.sums("goose_db_version_sums"); got != strings.Join(want, " ") {
		t.Fatalf("checksums:\n%s\nwant:\n%s", got, strings.Join(want, " "))
	}
	// Each row belongs to its version row, says who applied it and for how long.
	if got := d.queryString(`SELECT count(*)::text FROM goose_db_version_sums s JOIN goose_db_version v ON v.id = s.version_row_id AND v.version_id = s.version
		WHERE s.role = 'postgres' AND s.login = 'postgres' AND s.applied_at IS NOT NULL AND s.duration_ms >= 0 AND s.previous_sha256 IS NULL`); got != "4" {
		t.Fatalf("%s of 4 rows belong to their version row with role, login, time and duration", got)
	}
	// The run id defaults to the host name (the pod's name).
	d2 := newDB(t)
	mustRun(t, d2.url(), writeDir(t, subset(threeTables, "00001_a.sql")))
	host, _ := os.Hostname()
	if got := d2.sums("goose_db_version_sums"); !strings.HasSuffix(got, ":applied:"+host) {
		t.Fatalf("run id without --run-id: %s, want the host name %s", got, host)
	}
}

func TestEditedMigrationRefused(t *testing.T) {
	d := newDB(t)
	mustRun(t, d.url(), writeDir(t, threeTables))
	f := edited(threeTables, "-- reworded\n", "00002_b.sql")
	f["00004_d.sql"] = mig("CREATE TABLE d (id int);", "DROP TABLE d;")
	dir := writeDir(t, f)
	before := d.snapshot()
	for _, args := range [][]string{nil, {"--plan"}, {"--down-to", "1"}, {"--to", "4"}} {
		o := runStep(t, d.url(), dir, args...)
		line := o.lastLine()
		for _, want := range []string{"migration 2 (00002_b.sql) was edited after it was applied", sha256Hex(threeTables["00002_b.sql"]),
			sha256Hex(f["00002_b.sql"]), "--accept-changed=2", "SELECT * FROM public.goose_db_version_sums;"} {
			if !strings.Contains(line, want) {
				t.Errorf("migrate %v: refusal lacks %q: %s", args, want, line)
			}
		}
		if o.code != 1 || strings.Contains(line, "migration 1 ") || strings.Contains(line, "migration 3 ") {
			t.Errorf("migrate %v: exit %d: %s", args, o.code, line)
		}
		if got := d.snapshot(); got != before {
			t.Fatalf("migrate %v changed the database:\nbefore:\n%s\nafter:\n%s", args, before, got)
		}
	}
}

func TestRemovedMigrationRefused(t *testing.T) {
	d := newDB(t)
	mustRun(t, d.url(), writeDir(t, threeTables))
	dir := writeDir(t, subset(threeTables, "00001_a.sql", "00002_b.sql"))
	before := d.snapshot()
	var repair string
	for _, args := range [][]string{nil, {"--plan"}} {
		o := runStep(t, d.url(), dir, args...)
		line := o.lastLine()
		for _, want := range []string{"version 3 applied that is not in", "3 (00003_c.sql, recorded sha256 " + sha256Hex(threeTables["00003_c.sql"]) + ")",
			"DELETE FROM public.goose_db_version WHERE version_id IN (3); DELETE FROM public.goose_db_version_sums WHERE version IN (3);"} {
			if !strings.Contains(line, want) {
				t.Errorf("migrate %v: refusal lacks %q: %s", args, want, line)
			}
		}
		if o.code != 1 {
			t.Errorf("migrate %v: exit %d: %s", args, o.code, line)
		}
		if got := d.snapshot(); got != before {
			t.Fatalf("migrate %v changed the database:\nbefore:\n%s\nafter:\n%s", args, before, got)
		}
		_, repair, _ = strings.Cut(line, "rows deliberately: ")
		repair, _, _ = strings.Cut(repair, `"`)
	}
	// The deliberate repair the refusal prints, after undoing the migration's change.
	d.exec("DROP TABLE c")
	for _, stmt := range strings.SplitAfter(strings.TrimSpace(repair), ";") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			d.exec(stmt)
		}
	}
	if o := mustRun(t, d.url(), dir); o.result("applied") != "0" || o.result("checksums-recorded") != "0" {
		t.Fatalf("after the repair: %v", o.summary.Results)
	}
	if got := d.sums("goose_db_version_sums"); strings.Count(got, ":applied:") != 2 || strings.Contains(got, "00003") {
		t.Fatalf("checksums after the repair: %s", got)
	}
}

func TestAcceptChanged(t *testing.T) {
	d := newDB(t)
	mustRun(t, d.url(), writeDir(t, threeTables))
	f := edited(threeTables, "-- reworded\n", "00001_a.sql", "00002_b.sql")
	dir := writeDir(t, f)
	before := d.snapshot()

	// Accepting one of two edits accepts nothing.
	o := runStep(t, d.url(), dir, "--accept-changed=2")
	if o.code != 1 || !strings.Contains(o.lastLine(), "migration 1 (00001_a.sql) was edited") || strings.Contains(o.lastLine(), "migration 2 ") ||
		!strings.Contains(o.lastLine(), "--accept-changed=1") {
		t.Fatalf("--accept-changed=2 with 1 edited too: exit %d: %s", o.code, o.lastLine())
	}
	// A version that is not applied is a mistake.
	if o := runStep(t, d.url(), dir, "--accept-changed=1,2,7"); o.code != 1 || !strings.Contains(o.lastLine(), "--accept-changed 7: version 7 is not applied") {
		t.Fatalf("--accept-changed of a version not applied: exit %d: %s", o.code, o.lastLine())
	}
	// --plan says what would be accepted, and changes nothing.
	o = mustRun(t, d.url(), dir, "--plan", "--accept-changed", "1, 2")
	if strings.Count(o.stderr, "migrate would accept an edited migration") != 2 {
		t.Errorf("--plan --accept-changed: %s", o.stderr)
	}
	if got := d.snapshot(); got != before {
		t.Fatalf("refusals or --plan changed the database:\nbefore:\n%s\nafter:\n%s", before, got)
	}

	o = mustRun(t, d.url(), dir, "--accept-changed=1,2", "--run-id", "accept-run")
	if strings.Count(o.stderr, "accepted an edited migration") != 2 || o.result("checksums-recorded") != "2" {
		t.Fatalf("accepting: %v\n%s", o.summary.Results, o.stderr)
	}
	for _, n := range []string{"00001_a.sql", "00002_b.sql"} {
		if !strings.Contains(o.stderr, sha256Hex(threeTables[n])) || !strings.Contains(o.stderr, sha256Hex(f[n])) {
			t.Errorf("the log does not give both checksums of %s: %s", n, o.stderr)
		}
	}
	got := d.queryString(`SELECT string_agg(version || ':' || recorded || ':' || (sha256 = $1 OR sha256 = $2) || ':' || coalesce(previous_sha256 = $3 OR previous_sha256 = $4, false) || ':' || run_id, ' ' ORDER BY version) FROM goose_db_version_sums`,
		sha256Hex(f["00001_a.sql"]), sha256Hex(f["00002_b.sql"]), sha256Hex(threeTables["00001_a.sql"]), sha256Hex(threeTables["00002_b.sql"]))
	if got != "1:accepted:true:true:accept-run 2:accepted:true:true:accept-run 3:applied:false:false:"+defaultRunID() {
		t.Fatalf("checksums after accepting: %s", got)
	}
	// The same flags again (a retried step) accept nothing more; without them the
	// edited files pass, and the files as first applied are now the edited ones.
	if o := mustRun(t, d.url(), dir, "--accept-changed=1,2"); strings.Contains(o.stderr, "accepted an edited") || o.result("checksums-recorded") != "0" {
		t.Fatalf("rerun: %v\n%s", o.summary.Results, o.stderr)
	}
	mustRun(t, d.url(), dir, "--plan")
	if o := runStep(t, d.url(), writeDir(t, threeTables), "--plan"); o.code != 1 || !strings.Contains(o.lastLine(), "--accept-changed=1,2") {
		t.Fatalf("the original files after accepting the edits: exit %d: %s", o.code, o.lastLine())
	}
}

func TestChecksumBackfill(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, threeTables)
	gooseUp(t, d, dir, 2) // migrated before checksums were kept
	before := d.snapshot()
	const created = "created the checksum table and recorded the current files' checksums of the migrations applied before it"
	const recorded = "recorded the current files' checksums of applied migrations that had none"

	// --plan compares nothing and creates nothing.
	o := mustRun(t, d.url(), dir, "--plan")
	if !strings.Contains(o.stderr, "none were compared: the first migrate records the current files' checksums") {
		t.Errorf("--plan on a database without checksums: %s", o.stderr)
	}
	if got := d.snapshot(); got != before {
		t.Fatalf("--plan changed the database:\nbefore:\n%s\nafter:\n%s", before, got)
	}

	// The first run records the applied versions' files, says so once, and applies 3.
	o = mustRun(t, d.url(), dir, "--run-id", "first")
	if strings.Count(o.stderr, created) != 1 || o.result("checksums-recorded") != "3" || o.result("applied-versions") != "[3]" {
		t.Fatalf("first run: %v\n%s", o.summary.Results, o.stderr)
	}
	want := "1:00001_a.sql:" + sha256Hex(threeTables["00001_a.sql"]) + ":backfilled:first 2:00002_b.sql:" + sha256Hex(threeTables["00002_b.sql"]) +
		":backfilled:first 3:00003_c.sql:" + sha256Hex(threeTables["00003_c.sql"]) + ":applied:first"
	if got := d.sums("goose_db_version_sums"); got != want {
		t.Fatalf("checksums:\n%s\nwant:\n%s", got, want)
	}
	for _, args := range [][]string{nil, {"--plan"}} {
		if o := mustRun(t, d.url(), dir, args...); strings.Contains(o.stderr, "checksums of") || strings.Contains(o.stderr, "recorded checksum") {
			t.Fatalf("migrate %v said something about checksums again: %s", args, o.stderr)
		}
	}

	// A version applied by another tool, with nothing pending: recorded and said.
	f := edited(threeTables, "", "00001_a.sql")
	f["00004_d.sql"] = mig("CREATE TABLE d (id int);", "DROP TABLE d;")
	dir4 := writeDir(t, f)
	gooseUp(t, d, dir4, 4)
	o = mustRun(t, d.url(), dir4, "--plan")
	if !strings.Contains(o.stderr, "applied migrations without a recorded checksum") {
		t.Errorf("--plan after goose applied 4: %s", o.stderr)
	}
	o = mustRun(t, d.url(), dir4)
	if strings.Count(o.stderr, recorded) != 1 || o.result("checksums-recorded") != "1" || o.result("applied") != "0" {
		t.Fatalf("after goose applied 4: %v\n%s", o.summary.Results, o.stderr)
	}

	// Rolled back and applied again by another tool with an edited file: nothing
	// tells that file from one edited after a hand repair of the version table,
	// so it is refused like an edit, and accepting records what goose applied.
	p, err := goose.NewProvider(goose.DialectPostgres, d.sqlDB(t, nil), os.DirFS(dir4))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir4, "00004_d.sql"), []byte(f["00004_d.sql"]+"-- edited, then applied by goose\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gooseUp(t, d, dir4, 4)
	if o := runStep(t, d.url(), dir4); o.code != 1 || !strings.Contains(o.lastLine(), "migration 4 (00004_d.sql) differs from the checksum recorded when it was applied, and its version row was written again since") ||
		!strings.Contains(o.lastLine(), "--accept-changed=4") {
		t.Fatalf("after goose re-applied an edited 4: exit %d: %s", o.code, o.lastLine())
	}
	o = mustRun(t, d.url(), dir4, "--accept-changed=4")
	if o.result("checksums-recorded") != "1" {
		t.Fatalf("accepting 4 re-applied by goose: %v\n%s", o.summary.Results, o.stderr)
	}
	if got := d.queryString(`SELECT sha256 FROM goose_db_version_sums WHERE version = 4`); got != sha256Hex(f["00004_d.sql"]+"-- edited, then applied by goose\n") {
		t.Fatalf("version 4's checksum is %s", got)
	}

	if got := d.queryString(`SELECT count(*)::text FROM goose_db_version_sums s JOIN goose_db_version v ON v.id = s.version_row_id AND v.version_id = s.version`); got != "4" {
		t.Fatalf("%s of 4 records belong to their version rows after accepting", got)
	}

	// A row lost between a migration and its checksum (as if a crash came
	// between them): the next run records the current file, and says so.
	d.exec("DELETE FROM goose_db_version_sums WHERE version = 2")
	if o := mustRun(t, d.url(), dir4); strings.Count(o.stderr, recorded) != 1 || o.result("checksums-recorded") != "1" {
		t.Fatalf("after losing 2's row: %v\n%s", o.summary.Results, o.stderr)
	}
}

// The repair that the refusal of an emptied version table advises writes new
// version rows: the records still guard the files. An unchanged file's record
// moves to the new row with its history; an edited one is refused, not
// recorded anew.
func TestChecksumsSurviveVersionTableRepair(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, threeTables)
	mustRun(t, d.url(), dir, "--run-id", "first")
	d.exec("DELETE FROM goose_db_version")
	if o := runStep(t, d.url(), dir); o.code != 1 || !strings.Contains(o.lastLine(), "the version table public.goose_db_version is empty") {
		t.Fatalf("emptied version table: exit %d: %s", o.code, o.lastLine())
	}
	d.exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true), (2, true), (3, true)")

	f := edited(threeTables, "-- edited after the repair\n", "00002_b.sql")
	editedDir := writeDir(t, f)
	before := d.snapshot()
	for _, args := range [][]string{nil, {"--plan"}} {
		o := runStep(t, d.url(), editedDir, args...)
		if o.code != 1 || !strings.Contains(o.lastLine(), "migration 2 (00002_b.sql) differs from the checksum recorded when it was applied, and its version row was written again since (rolled back and applied again by another tool, or the version table repaired by hand): recorded sha256 "+sha256Hex(threeTables["00002_b.sql"])+", the file's sha256 now "+sha256Hex(f["00002_b.sql"])) {
			t.Fatalf("migrate %v with 2 edited after the repair: exit %d: %s", args, o.code, o.lastLine())
		}
	}
	if got := d.snapshot(); got != before {
		t.Fatalf("the refusal changed the database:\nbefore:\n%s\nafter:\n%s", before, got)
	}

	// The files as applied: every record moves to its new row, keeping when it
	// was applied; the new rows were not written by "first", so the records say
	// backfilled by this run (a rollback --only-this-run of "first" refuses them).
	o := mustRun(t, d.url(), dir, "--run-id", "second")
	if o.result("checksums-recorded") != "3" || !strings.Contains(o.stderr, "their files match the records, which now belong to the new rows") {
		t.Fatalf("after the repair with the files as applied: %v\n%s", o.summary.Results, o.stderr)
	}
	want := "1:00001_a.sql:" + sha256Hex(threeTables["00001_a.sql"]) + ":backfilled:second 2:00002_b.sql:" + sha256Hex(threeTables["00002_b.sql"]) +
		":backfilled:second 3:00003_c.sql:" + sha256Hex(threeTables["00003_c.sql"]) + ":backfilled:second"
	if got := d.sums("goose_db_version_sums"); got != want {
		t.Fatalf("checksums after the repair:\n%s\nwant:\n%s", got, want)
	}
	if got := d.queryString(`SELECT count(*)::text FROM goose_db_version_sums s JOIN goose_db_version v ON v.id = s.version_row_id AND v.version_id = s.version WHERE s.applied_at IS NOT NULL`); got != "3" {
		t.Fatalf("%s of 3 records belong to the new version rows with their history", got)
	}
	if o := runStep(t, d.url(), editedDir, "--plan"); o.code != 1 || !strings.Contains(o.lastLine(), "migration 2 (00002_b.sql) was edited after it was applied") {
		t.Fatalf("2 edited after the records moved: exit %d: %s", o.code, o.lastLine())
	}
}

// A version whose row was deleted after it was applied is pending again, but
// its record says it ran: rolled back by the goose CLI (its Down ran) or
// deleted by hand (its changes are in place). The run refuses, changing
// nothing, until the operator says which by the repair the refusal gives.
func TestRecordedPendingRefused(t *testing.T) {
	d := newDB(t)
	f := edited(threeTables, "")
	f["00004_seed.sql"] = mig("INSERT INTO c (id) VALUES (1);", "DELETE FROM c WHERE id = 1;")
	dir := writeDir(t, f)
	mustRun(t, d.url(), dir)
	sum4 := sha256Hex(f["00004_seed.sql"])

	// Deleted by hand: applying 4 again would insert its row twice.
	d.exec("DELETE FROM goose_db_version WHERE version_id = 4")
	before := d.snapshot()
	for _, args := range [][]string{nil, {"--plan"}} {
		o := runStep(t, d.url(), dir, args...)
		if o.code != 1 || !strings.Contains(o.lastLine(), "migration 4 (00004_seed.sql, recorded sha256 "+sum4+") is pending in public.goose_db_version but recorded as applied in public.goose_db_version_sums") ||
			!strings.Contains(o.lastLine(), "INSERT INTO public.goose_db_version (version_id, is_applied) VALUES (4, true);") ||
			!strings.Contains(o.lastLine(), "DELETE FROM public.goose_db_version_sums WHERE version IN (4);") {
			t.Fatalf("migrate %v after 4's version row was deleted: exit %d: %s", args, o.code, o.lastLine())
		}
	}
	if got := d.snapshot(); got != before {
		t.Fatalf("the refusal changed the database:\nbefore:\n%s\nafter:\n%s", before, got)
	}
	d.exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (4, true)") // the repair
	if o := mustRun(t, d.url(), dir); o.result("applied") != "0" || o.result("checksums-recorded") != "1" {
		t.Fatalf("after putting 4's row back: %v\n%s", o.summary.Results, o.stderr)
	}
	if got := d.queryString("SELECT count(*)::text FROM c"); got != "1" {
		t.Fatalf("%s rows in c, want 1 (4 applied once)", got)
	}

	// Rolled back by the goose CLI: its Down ran, and forgetting the record lets
	// the next run apply it again.
	p, err := goose.NewProvider(goose.DialectPostgres, d.sqlDB(t, nil), os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	if o := runStep(t, d.url(), dir); o.code != 1 || !strings.Contains(o.lastLine(), "recorded as applied") {
		t.Fatalf("after goose rolled 4 back: exit %d: %s", o.code, o.lastLine())
	}
	d.exec("DELETE FROM goose_db_version_sums WHERE version IN (4)") // the other repair
	if o := mustRun(t, d.url(), dir); o.result("applied-versions") != "[4]" {
		t.Fatalf("after forgetting 4's record: %v\n%s", o.summary.Results, o.stderr)
	}
	if got := d.queryString("SELECT count(*)::text FROM c"); got != "1" {
		t.Fatalf("%s rows in c, want 1", got)
	}
}

func TestRollbackRemovesChecksum(t *testing.T) {
	d := newDB(t)
	f := edited(threeTables, "")
	f["00004_idx.sql"] = noTxIndex
	dir := writeDir(t, f)
	mustRun(t, d.url(), dir)
	o := mustRun(t, d.url(), dir, "--down-to", "1")
	if o.result("rolled-back-versions") != "[4,3,2]" || o.result("checksums-recorded") != "0" {
		t.Fatalf("--down-to 1: %v", o.summary.Results)
	}
	if got := d.sums("goose_db_version_sums"); got != "1:00001_a.sql:"+sha256Hex(f["00001_a.sql"])+":applied:"+defaultRunID() {
		t.Fatalf("checksums after --down-to 1: %s", got)
	}
	// Rolled back, edited, applied again: the new file is recorded, no refusal.
	f = edited(f, "-- revised before re-applying\n", "00002_b.sql")
	dir = writeDir(t, f)
	if o := mustRun(t, d.url(), dir); o.result("applied-versions") != "[2,3,4]" {
		t.Fatalf("re-applying: %v", o.summary.Results)
	}
	if got := d.queryString(`SELECT sha256 FROM goose_db_version_sums WHERE version = 2`); got != sha256Hex(f["00002_b.sql"]) {
		t.Fatalf("version 2's checksum after re-applying is %s", got)
	}
}

// TestVersionTableAsGooseMakesIt: goose's table is the same, column for column and
// row for row, whether goose or this step (with its checksums) migrated.
func TestVersionTableAsGooseMakesIt(t *testing.T) {
	dir := writeDir(t, threeTables)
	byGoose, byStep := newDB(t), newDB(t)
	gooseUp(t, byGoose, dir, 3)
	mustRun(t, byStep.url(), dir)
	describe := func(d *testDB) string {
		return d.queryString(`SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' ' || a.attidentity::text || ' ' ||
			coalesce(pg_get_expr(ad.adbin, ad.adrelid), ''), ', ' ORDER BY a.attnum)
			FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
			WHERE a.attrelid = 'goose_db_version'::regclass AND a.attnum > 0 AND NOT a.attisdropped`) + "; " +
			d.queryString(`SELECT string_agg(indexdef, '; ' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'goose_db_version'`) + "; " +
			d.queryString(`SELECT string_agg(id || ':' || version_id || ':' || is_applied, ' ' ORDER BY id) FROM goose_db_version`)
	}
	if g, s := describe(byGoose), describe(byStep); g != s {
		t.Fatalf("goose's version table differs:\ngoose: %s\nstep:  %s", g, s)
	}
	if byGoose.tableExists("goose_db_version_sums") || !byStep.tableExists("goose_db_version_sums") {
		t.Fatal("the checksum table is the step's alone")
	}
}

func TestChecksumTableRefusals(t *testing.T) {
	owner := plainRole(t, "mig_owner")
	writer := plainRole(t, "mig_writer")
	d := newDB(t)
	d.exec("GRANT CREATE ON SCHEMA public TO " + owner)
	dir := writeDir(t, threeTables)
	mustRun(t, d.url(), dir, "--role", owner, "--to", "1")
	// A role that may write goose's table but not create or write the checksum table.
	d.exec("GRANT USAGE ON SCHEMA public TO " + writer)
	d.exec("GRANT SELECT, INSERT, DELETE ON goose_db_version TO " + writer)
	d.exec("GRANT SELECT ON goose_db_version_sums TO " + writer)
	before := d.snapshot()
	o := runStep(t, d.url(), dir, "--role", writer)
	if o.code != 1 || !strings.Contains(o.lastLine(), "cannot write (INSERT, UPDATE and DELETE) the checksum table public.goose_db_version_sums") ||
		!strings.Contains(o.lastLine(), "GRANT SELECT, INSERT, UPDATE, DELETE ON public.goose_db_version_sums TO "+writer) {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	if got := d.snapshot(); got != before {
		t.Fatalf("refusal changed the database:\nbefore:\n%s\nafter:\n%s", before, got)
	}
	d.exec("DROP TABLE goose_db_version_sums")
	o = runStep(t, d.url(), dir, "--role", writer)
	if o.code != 1 || !strings.Contains(o.lastLine(), "cannot create the checksum table public.goose_db_version_sums") {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	// Someone else's table under the name.
	d.exec("CREATE TABLE goose_db_version_sums (version bigint, note text)")
	before = d.snapshot()
	o = runStep(t, d.url(), dir, "--plan")
	if o.code != 1 || !strings.Contains(o.lastLine(), "public.goose_db_version_sums exists but is not the checksum table of public.goose_db_version") {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	if got := d.snapshot(); got != before {
		t.Fatalf("refusal changed the database:\nbefore:\n%s\nafter:\n%s", before, got)
	}
}

// TestScanDirChecksum: the checksum is of every byte, past a line too long for the
// annotation scanner, and ScanDir keeps nothing of the file.
func TestScanDirChecksum(t *testing.T) {
	long := "-- +goose Up\nSELECT 1;\n-- " + strings.Repeat("x", maxAnnotationLine+1000) + "\nSELECT 2;\n"
	short := mig("SELECT 1;", "")
	src, err := ScanDir(fstest.MapFS{"00001_long.sql": {Data: []byte(long)}, "00002_short.sql": {Data: []byte(short)}}, "m")
	if err != nil {
		t.Fatal(err)
	}
	if src[0].SHA256 != sha256Hex(long) || src[1].SHA256 != sha256Hex(short) {
		t.Fatalf("checksums %s, %s; want %s, %s", src[0].SHA256, src[1].SHA256, sha256Hex(long), sha256Hex(short))
	}
}

// TestAnalyzeChecksums covers checkSums's decisions without a server.
func TestAnalyzeChecksums(t *testing.T) {
	src := Sources{{Version: 1, File: "1_a.sql", HasDown: true, SHA256: "aa"}, {Version: 2, File: "2_b.sql", HasDown: true, SHA256: "bb"}}
	st := gooseState(applied(1, 2)...)
	st.SumsKind, st.SumsColumns, st.SumsTypes, st.SumsUnique, st.SumsReadable, st.SumsWritable = "r", sumsColumns, sumsTypes, true, true, true
	st.Sums = map[int64]SumRow{1: {Version: 1, VersionRowID: 2, File: "1_a.sql", SHA256: "aa"}, 2: {Version: 2, VersionRowID: 3, File: "2_old.sql", SHA256: "b0"}}
	up := Request{Mode: ModeUp, Dir: "/m"}
	_, err := Analyze(src, st, up)
	var re *RefusalError
	if !errors.As(err, &re) || !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "migration 2 (2_b.sql, applied as 2_old.sql) was edited after it was applied: recorded sha256 b0, the file's sha256 now bb") {
		t.Fatalf("%v", err)
	}
	up.AcceptChanged = []int64{2}
	p, err := Analyze(src, st, up)
	if err != nil || len(p.Accept) != 1 || p.Accept[0].Recorded != "b0" || len(p.Backfill) != 0 || !p.SumsToWrite() {
		t.Fatalf("%+v, %v", p, err)
	}
	// A row recorded for an earlier version row of 2 still guards the file: a
	// different file is refused, and accepting it moves the record to the row.
	st.Sums[2] = SumRow{Version: 2, VersionRowID: 1, File: "2_b.sql", SHA256: "b0"}
	up.AcceptChanged = nil
	if _, err = Analyze(src, st, up); !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "its version row was written again since") {
		t.Fatalf("%v", err)
	}
	up.AcceptChanged = []int64{2}
	p, err = Analyze(src, st, up)
	if err != nil || len(p.Accept) != 1 || p.Accept[0].VersionRowID != 3 || !p.Accept[0].Rewritten || len(p.Backfill) != 0 {
		t.Fatalf("%+v, %v", p, err)
	}
	// The same file: the record moves to the new row.
	st.Sums[2] = SumRow{Version: 2, VersionRowID: 1, File: "2_b.sql", SHA256: "bb"}
	up.AcceptChanged = nil
	p, err = Analyze(src, st, up)
	if err != nil || len(p.Backfill) != 1 || p.Backfill[0].Version != 2 || p.Backfill[0].VersionRowID != 3 || !p.Backfill[0].Relinked {
		t.Fatalf("%+v, %v", p, err)
	}
	// --plan with nothing pending only reads: no write privilege needed.
	st.SumsWritable = false
	if _, err := Analyze(src, st, Request{Mode: ModePlan, Dir: "/m"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Analyze(src, st, up); !errors.Is(err, ErrNoPrivilege) {
		t.Fatalf("backfill without write privilege: %v", err)
	}
}

// TestFailedMigrationRecordsNothing: on a database without checksums, the table and
// the applied versions' rows go in the first migration's transaction, so a run whose
// migration fails leaves the database as it was.
func TestFailedMigrationRecordsNothing(t *testing.T) {
	d := newDB(t)
	gooseUp(t, d, writeDir(t, threeTables), 2)
	bad := subset(threeTables, "00001_a.sql", "00002_b.sql")
	bad["00003_c.sql"] = mig("CREATE TABLEX c (id int);", "DROP TABLE c;")
	before := d.snapshot()
	if o := runStep(t, d.url(), writeDir(t, bad)); o.code != 1 || !strings.Contains(o.lastLine(), "it was rolled back") {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	if got := d.snapshot(); got != before {
		t.Fatalf("the failed run changed the database:\nbefore:\n%s\nafter:\n%s", before, got)
	}
	o := mustRun(t, d.url(), writeDir(t, threeTables))
	if o.result("checksums-recorded") != "3" || !strings.Contains(o.stderr, "created the checksum table and recorded") {
		t.Fatalf("after fixing the file: %v\n%s", o.summary.Results, o.stderr)
	}
}

func TestChecksumFlagUsage(t *testing.T) {
	dir := writeDir(t, threeTables)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--accept-changed=2,x"}, `"x" is not a migration version`},
		{[]string{"--accept-changed=0"}, `"0" is not a migration version`},
		{[]string{"--resolve", "2", "--as", "applied", "--accept-changed=2"}, "--accept-changed cannot be combined with --resolve"},
		{[]string{"--run-id", "two\nlines"}, "--run-id must be one line"},
		{[]string{"--run-id", strings.Repeat("r", 254)}, "--run-id must be one line"},
	} {
		// An unreachable URL: validation must fail before any connection attempt.
		o := runStep(t, "postgres://u:p@127.0.0.1:1/db?sslmode=disable&connect_timeout=1", dir, tt.args...)
		if o.code != 2 || !strings.Contains(o.stderr, tt.want) {
			t.Errorf("migrate %q: exit %d, want 2 and %q: %s", tt.args, o.code, tt.want, o.stderr)
		}
	}
	var vs Versions
	if err := vs.Set(" 3, 1,3 ,"); err != nil || vs.String() != "3,1" {
		t.Fatalf("Set: %v, %v", vs, err)
	}
	if err := vs.Set(""); err != nil || vs != nil {
		t.Fatalf("empty: %v, %v", vs, err)
	}
}
