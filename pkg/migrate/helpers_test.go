package migrate

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
	"github.com/chartreuse-go/chartreuse/test/waitfor"
)

func TestMain(m *testing.M) { pgenv.Main(m) }

// files is a migration directory's content: file name → SQL.
type files map[string]string

// mig builds a migration with an Up and, unless down is "", a Down section.
func mig(up, down string) string {
	s := "-- +goose Up\n" + up + "\n"
	if down != "" {
		s += "-- +goose Down\n" + down + "\n"
	}
	return s
}

func writeDir(t *testing.T, f files) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range f {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// threeTables is a small valid history.
var threeTables = files{
	"00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;"),
	"00002_b.sql": mig("CREATE TABLE b (id int);", "DROP TABLE b;"),
	"00003_c.sql": mig("CREATE TABLE c (id int);", "DROP TABLE c;"),
}

func subset(f files, names ...string) files {
	out := files{}
	for _, n := range names {
		out[n] = f[n]
	}
	return out
}

type outcome struct {
	code           int
	stdout, stderr string
	summary        results.Summary
}

func (o outcome) result(name string) string { return o.summary.Results[name] }

// lastLine is the final log line: the error, when the step failed.
func (o outcome) lastLine() string {
	lines := strings.Split(strings.TrimSpace(o.stderr), "\n")
	return lines[len(lines)-1]
}

// runStep runs the migrate step in-process against url.
func runStep(t *testing.T, url, dir string, args ...string) outcome {
	t.Helper()
	return runStepCtx(context.Background(), t, url, dir, args...)
}

func runStepCtx(ctx context.Context, t *testing.T, url, dir string, args ...string) outcome {
	t.Helper()
	full := append([]string{"migrate", "--skip-version-check", "--database-url", url, "--dir", dir, "--lock-wait", "60s"}, args...)
	var out, errOut bytes.Buffer
	code := step.Run(ctx, Spec(), full, &out, &errOut)
	o := outcome{code: code, stdout: out.String(), stderr: errOut.String()}
	// urfave/cli prints usage text to stdout for flag errors; otherwise stdout is the summary.
	if s := strings.TrimSpace(o.stdout); s != "" && code != 2 {
		if err := json.Unmarshal([]byte(s), &o.summary); err != nil {
			t.Fatalf("stdout is not one JSON summary line: %q", s)
		}
	}
	return o
}

func mustRun(t *testing.T, url, dir string, args ...string) outcome {
	t.Helper()
	o := runStep(t, url, dir, args...)
	if o.code != 0 {
		t.Fatalf("migrate %v: exit %d\n%s", args, o.code, o.stderr)
	}
	return o
}

// testDB is a fresh database on the shared server.
type testDB struct {
	t   *testing.T
	srv *pgenv.Server
	db  string
}

func newDB(t *testing.T) *testDB {
	t.Helper()
	srv, db := pgenv.NewDatabase(t)
	return &testDB{t: t, srv: srv, db: db}
}

func (d *testDB) url() string { return d.srv.URL(d.db) }

// sqlDB opens the database through pgx's database/sql driver, as migrate does,
// with tracer (if not nil) on its connections.
func (d *testDB) sqlDB(t *testing.T, tracer pgx.QueryTracer) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(d.url())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tracer = tracer
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	return db
}

func (d *testDB) conn() *pgx.Conn {
	d.t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, d.url())
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func (d *testDB) exec(sql string, args ...any) {
	d.t.Helper()
	if err := d.srv.Exec(context.Background(), d.db, sql, args...); err != nil {
		d.t.Fatalf("%s: %v", sql, err)
	}
}

func (d *testDB) queryString(sql string, args ...any) string {
	d.t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, d.url())
	if err != nil {
		d.t.Fatal(err)
	}
	defer c.Close(ctx)
	var s string
	if err := c.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
		d.t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// versions lists the version table's rows as "version:applied" in id order.
func (d *testDB) versions(table string) string {
	d.t.Helper()
	return d.queryString(`SELECT coalesce(string_agg(version_id || ':' || is_applied, ' ' ORDER BY id), '') FROM ` + table)
}

// snapshot renders every relation outside the system schemas with its owner, and
// every table's rows, so a refusal can be shown to change nothing.
func (d *testDB) snapshot() string {
	d.t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, d.url())
	if err != nil {
		d.t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `
		SELECT n.nspname, c.relname, c.relkind::text, pg_get_userbyid(c.relowner) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' ORDER BY 1, 2`)
	if err != nil {
		d.t.Fatal(err)
	}
	type rel struct{ schema, name, kind, owner string }
	var rels []rel
	for rows.Next() {
		var r rel
		if err := rows.Scan(&r.schema, &r.name, &r.kind, &r.owner); err != nil {
			d.t.Fatal(err)
		}
		rels = append(rels, r)
	}
	rows.Close()
	var b strings.Builder
	b.WriteString("schemas=" + d.queryString(`SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace`) + "\n")
	for _, r := range rels {
		fmt.Fprintf(&b, "%s.%s kind=%s owner=%s", r.schema, r.name, r.kind, r.owner)
		if r.kind == "r" {
			var digest string
			q := `SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') FROM ` + pgx.Identifier{r.schema, r.name}.Sanitize() + ` t`
			if err := c.QueryRow(ctx, q).Scan(&digest); err != nil {
				d.t.Fatal(err)
			}
			b.WriteString(" rows=" + digest)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (d *testDB) tableExists(name string) bool {
	return d.queryString(`SELECT (to_regclass($1) IS NOT NULL)::text`, name) == "true"
}

func randomName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// loginRole creates a login role with a password full of URL-special characters,
// optionally a member of memberOf, dropped after the test (and its databases).
func loginRole(t *testing.T, password string, memberOf ...string) string {
	t.Helper()
	srv := pgenv.Shared(t)
	name := randomName("mig_login")
	sql := "CREATE ROLE " + name + " LOGIN PASSWORD '" + strings.ReplaceAll(password, "'", "''") + "'"
	if len(memberOf) > 0 {
		sql += " IN ROLE " + strings.Join(memberOf, ", ")
	}
	createRole(t, srv, name, sql)
	return name
}

func plainRole(t *testing.T, prefix string) string {
	t.Helper()
	srv := pgenv.Shared(t)
	name := randomName(prefix)
	createRole(t, srv, name, "CREATE ROLE "+name+" NOLOGIN")
	return name
}

// createRole must run before the test creates its database, so the cleanup that
// drops the role runs after the database (owning objects) is dropped.
func createRole(t *testing.T, srv *pgenv.Server, name, sql string) {
	t.Helper()
	if err := srv.Exec(context.Background(), "postgres", sql); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Exec(context.Background(), "postgres", "DROP ROLE IF EXISTS "+name); err != nil {
			t.Errorf("dropping role %s: %v", name, err)
		}
	})
}

// eventually polls cond until it holds; the limit only stops a hung test.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.True(t, what, 2*time.Minute, cond)
}

// advisoryLockHeld reports whether any session holds the migration lock in db.
func (d *testDB) advisoryLockHeld() bool {
	return d.queryString(`SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND objid::bigint = $1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))::text`, LockID) == "true"
}
