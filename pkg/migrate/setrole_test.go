package migrate

import "testing"

// TestMigrationSetRoleKeepsTheStepsWrites: a migration may SET ROLE to a role
// that may not write the step's own tables. The version, checksum and dirty rows
// are still written as the step's role (--role), and a migration without a
// transaction keeps its role for its later statements. Before, the step's
// writes ran as the migration's role: permission denied, and a migration
// without a transaction was left stopped partway after its first statement
// (test/faults/adversary session 10, finding 7).
func TestMigrationSetRoleKeepsTheStepsWrites(t *testing.T) {
	owner := plainRole(t, "mig_owner")
	app := plainRole(t, "mig_app")
	const pw = "s3t-r0le:pw"
	login := loginRole(t, pw, owner, app)
	d := newDB(t)
	d.exec("GRANT CREATE ON SCHEMA public TO " + owner + ", " + app)
	url := d.srv.UserURL(login, pw, d.db)
	dir := writeDir(t, files{
		"00001_tx.sql":   mig("SET ROLE "+app+";\nCREATE TABLE by_tx (id int);", "DROP TABLE by_tx;"),
		"00002_notx.sql": "-- +goose NO TRANSACTION\n" + mig("SET ROLE "+app+";\nCREATE TABLE by_notx (id int);\nCREATE TABLE by_notx2 (id int);", "DROP TABLE by_notx2; DROP TABLE by_notx;"),
	})
	o := mustRun(t, url, dir, "--role", owner)
	if o.result("applied") != "2" {
		t.Fatalf("applied %s", o.result("applied"))
	}
	got := d.queryString(`SELECT string_agg(tablename || '=' || tableowner, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'`)
	want := "by_notx=" + app + " by_notx2=" + app + " by_tx=" + app + " goose_db_version=" + owner + " goose_db_version_dirty=" + owner + " goose_db_version_sums=" + owner
	if got != want {
		t.Fatalf("owners: %s\nwant:   %s", got, want)
	}
	if v := d.versions("goose_db_version"); v != "0:true 1:true 2:true" {
		t.Fatalf("versions %s", v)
	}
}
