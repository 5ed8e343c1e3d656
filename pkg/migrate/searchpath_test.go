package migrate

import (
	"strings"
	"testing"
)

// TestVersionTableMovedBySearchPathIsRefused: with an unqualified --table, a
// migration that creates the schema named like the login role ("$user"
// comes first in the default search_path) moves where the table resolves;
// the next run, plan included, refuses naming where the table is, instead
// of applying every migration again in the new schema; a qualified --table
// goes on.
func TestVersionTableMovedBySearchPathIsRefused(t *testing.T) {
	d := newDB(t)
	d.exec("CREATE TABLE hits (n int)")
	f := files{
		"00001_a.sql": mig("INSERT INTO hits VALUES (1);", "DELETE FROM hits WHERE n = 1;"),
		"00002_s.sql": mig("CREATE SCHEMA postgres;", "DROP SCHEMA postgres;"), // the test's login role
	}
	// A new database: no version table anywhere, created in public.
	if o := mustRun(t, d.url(), writeDir(t, f)); o.result("applied-versions") != "[1,2]" {
		t.Fatalf("first run: %v", o.summary.Results)
	}
	f["00003_b.sql"] = mig("INSERT INTO hits VALUES (3);", "DELETE FROM hits WHERE n = 3;")
	dir := writeDir(t, f)
	before := d.snapshot()
	want := `refusing to migrate: --table goose_db_version names no schema and now resolves to schema postgres (the first existing schema of the search_path), which has no version table, but public.goose_db_version, public.goose_db_version_sums exist: ` +
		`a schema created since (one named like the role comes first in the default search_path \"$user\", public) or a changed search_path moved where it resolves, and running would apply every migration again. ` +
		`Pass --table public.goose_db_version (the workflow parameter table), which every run then finds wherever the search_path points, or pin the login role's search_path (ALTER ROLE postgres SET search_path = public;); ` +
		`if they are another application's, pass --table postgres.goose_db_version to create this one's`
	for _, args := range [][]string{{"--plan"}, nil, {"--down-to", "1"}, {"--resolve", "2", "--as", "applied"}} {
		o := runStep(t, d.url(), dir, args...)
		if o.code != 1 || !strings.Contains(o.lastLine(), want) {
			t.Fatalf("%v: exit %d: %s\nwant %s", args, o.code, o.lastLine(), want)
		}
	}
	if after := d.snapshot(); after != before {
		t.Fatalf("a refused run changed the database:\n%s\nthen:\n%s", before, after)
	}
	if o := mustRun(t, d.url(), dir, "--table", "public.goose_db_version"); o.result("applied-versions") != "[3]" {
		t.Fatalf("with --table public.goose_db_version: %v", o.summary.Results)
	}
	if got := d.queryString("SELECT string_agg(n::text, ',' ORDER BY n) FROM hits"); got != "1,3" {
		t.Fatalf("hits %s, want 1,3: a migration ran twice or not at all", got)
	}
	// A search_path that names no existing schema: the same refusal.
	d.exec("ALTER DATABASE " + d.db + " SET search_path = nosuch")
	if o := runStep(t, d.url(), dir, "--plan"); o.code != 1 || !strings.Contains(o.lastLine(), "now resolves to no schema (the search_path names no existing schema), which has no version table, but public.goose_db_version, public.goose_db_version_sums exist") ||
		strings.Contains(o.lastLine(), "to create this one's") {
		t.Fatalf("search_path nosuch: exit %d: %s", o.code, o.lastLine())
	}
}

// TestTwoApplicationsInTwoSchemas: two applications sharing a database, each
// with its version table in its own schema named by --table, each apply
// their own migrations and see nothing of the other's.
func TestTwoApplicationsInTwoSchemas(t *testing.T) {
	d := newDB(t)
	d.exec("CREATE SCHEMA shop; CREATE SCHEMA billing")
	shop := writeDir(t, files{"00001_a.sql": mig("CREATE TABLE shop.a (id int);", "DROP TABLE shop.a;"), "00002_b.sql": mig("CREATE TABLE shop.b (id int);", "DROP TABLE shop.b;")})
	billing := writeDir(t, files{"00001_x.sql": mig("CREATE TABLE billing.x (id int);", "DROP TABLE billing.x;")})
	if o := mustRun(t, d.url(), shop, "--table", "shop.goose_db_version"); o.result("applied-versions") != "[1,2]" {
		t.Fatalf("shop: %v", o.summary.Results)
	}
	if o := mustRun(t, d.url(), billing, "--table", "billing.goose_db_version"); o.result("applied-versions") != "[1]" {
		t.Fatalf("billing: %v", o.summary.Results)
	}
	for _, c := range []struct{ dir, table string }{{shop, "shop.goose_db_version"}, {billing, "billing.goose_db_version"}} {
		if o := mustRun(t, d.url(), c.dir, "--table", c.table); o.result("pending") != "false" {
			t.Fatalf("%s rerun: %v", c.table, o.summary.Results)
		}
	}
	if got := d.versions("shop.goose_db_version") + " / " + d.versions("billing.goose_db_version"); got != "0:true 1:true 2:true / 0:true 1:true" {
		t.Fatalf("versions %s", got)
	}
	// A third, unqualified, is told where the others are rather than
	// creating public.goose_db_version unasked.
	o := runStep(t, d.url(), billing, "--plan")
	if o.code != 1 || !strings.Contains(o.lastLine(), "but billing.goose_db_version, shop.goose_db_version, billing.goose_db_version_sums, shop.goose_db_version_sums exist") ||
		!strings.Contains(o.lastLine(), "pass --table public.goose_db_version to create this one's") {
		t.Fatalf("unqualified: exit %d: %s", o.code, o.lastLine())
	}
}
