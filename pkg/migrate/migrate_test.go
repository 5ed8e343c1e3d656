package migrate

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
	"github.com/chartreuse-go/chartreuse/pkg/redact"
)

func TestUsageErrors(t *testing.T) {
	dir := writeDir(t, threeTables)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"to and down-to", []string{"--to", "2", "--down-to", "1"}, 2, "--to and --down-to"},
		{"plan and down-to", []string{"--plan", "--down-to", "0"}, 2, "--plan cannot be combined with --down-to"},
		{"only-this-run without down-to", []string{"--only-this-run", "--run-id", "r"}, 2, "--only-this-run only applies to a rollback"},
		{"only-this-run without run-id", []string{"--only-this-run", "--down-to", "0"}, 2, "--only-this-run needs --run-id"},
		{"to zero", []string{"--to", "0"}, 2, "--down-to 0"},
		{"negative to", []string{"--to", "-1"}, 2, "whole number"},
		{"non-numeric down-to", []string{"--down-to", "abc"}, 2, "whole number"},
		{"negative lock wait", []string{"--lock-wait", "-1s"}, 2, "--lock-wait"},
		{"negative lock timeout", []string{"--lock-timeout", "-1s"}, 2, "--lock-timeout"},
		{"sub-millisecond statement timeout", []string{"--statement-timeout", "500us"}, 2, "--statement-timeout"},
		// 1ms failed migrate's own catalog read with exit 75, on every retry, while
		// plan (which ignores the flag) passed it.
		{"statement timeout too short for the step's own queries", []string{"--statement-timeout", "1ms"}, 2, "--statement-timeout 1ms is too short"},
		{"statement timeout too short, plan", []string{"--plan", "--statement-timeout", "999ms"}, 2, "--statement-timeout 999ms is too short"},
		// SET ROLE none migrated as the login user, exit 0 (found by an attack).
		{"role none", []string{"--role", "none"}, 2, `is not a role: SET ROLE NONE means the login user`},
		{"role NONE", []string{"--role", "NONE"}, 2, `is not a role: SET ROLE NONE means the login user`},
		{"bad table", []string{"--table", "Bad-Name"}, 2, "--table"},
		{"three-part table", []string{"--table", "a.b.c"}, 2, "--table"},
		{"empty dir", []string{"--dir", ""}, 2, "--dir is empty"},
		{"missing dir", []string{"--dir", "/nonexistent/migrations"}, 1, "/nonexistent/migrations"},
		{"dir is a file", []string{"--dir", "/etc/hostname"}, 1, "not a directory"},
		{"unknown flag", []string{"--nope"}, 2, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// An unreachable URL: validation must fail before any connection attempt.
			o := runStep(t, "postgres://u:p@127.0.0.1:1/db?sslmode=disable&connect_timeout=1", dir, tt.args...)
			if o.code != tt.code {
				t.Fatalf("exit %d, want %d\n%s", o.code, tt.code, o.stderr)
			}
			if !strings.Contains(o.stderr, tt.want) {
				t.Errorf("stderr lacks %q: %s", tt.want, o.stderr)
			}
			if strings.Contains(o.stderr, "connecting") {
				t.Errorf("tried to connect before validating: %s", o.stderr)
			}
		})
	}
	t.Run("missing dir names the image default", func(t *testing.T) {
		o := runStep(t, "postgres://u:p@127.0.0.1:1/db", "/nonexistent/migrations")
		if !strings.Contains(o.stderr, DefaultDir) || !strings.Contains(o.stderr, "--dir") {
			t.Errorf("message does not suggest %s or --dir: %s", DefaultDir, o.stderr)
		}
	})
	t.Run("empty value leaves --to unset", func(t *testing.T) {
		var v Version
		if err := v.Set(""); err != nil || v.IsSet {
			t.Fatalf("Set(\"\") = %v, %+v", err, v)
		}
	})
}

func TestPlanOnFreshDatabaseCreatesNothing(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, threeTables)
	before := d.snapshot()
	o := mustRun(t, d.url(), dir, "--plan")
	if got := d.snapshot(); got != before {
		t.Fatalf("--plan changed the database:\nbefore:\n%s\nafter:\n%s", before, got)
	}
	want := map[string]string{"pending": "true", "pending-versions": "[1,2,3]", "current-version": "0", "target-version": "3", "applied": "0", "applied-versions": "[]"}
	for k, v := range want {
		if o.result(k) != v {
			t.Errorf("result %s = %q, want %q", k, o.result(k), v)
		}
	}
	if d.advisoryLockHeld() {
		t.Error("lock still held")
	}

	// --plan takes no lock, and judges nothing while another migrator holds it
	// (TestPlanRefusesWhileTheLockIsHeld).
	holder := d.conn()
	if _, err := holder.Exec(context.Background(), "SELECT pg_advisory_lock($1)", LockID); err != nil {
		t.Fatal(err)
	}
	if o = runStep(t, d.url(), dir, "--plan", "--to", "2", "--lock-wait", "0s"); o.code != 75 {
		t.Errorf("--plan --to 2 with the lock held elsewhere: exit %d, want 75", o.code)
	}
	if _, err := holder.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", LockID); err != nil {
		t.Fatal(err)
	}
	mustRun(t, d.url(), dir)
	o = mustRun(t, d.url(), dir, "--plan")
	if o.result("pending") != "false" || o.result("pending-versions") != "[]" || o.result("current-version") != "3" {
		t.Errorf("plan after migrating: %v", o.summary.Results)
	}
}

func TestApplyToAndDownTo(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, threeTables)

	o := mustRun(t, d.url(), dir, "--to", "2")
	if o.result("applied") != "2" || o.result("applied-versions") != "[1,2]" || o.result("current-version") != "2" || o.result("target-version") != "2" {
		t.Fatalf("--to 2: %v", o.summary.Results)
	}
	if d.tableExists("c") {
		t.Fatal("--to 2 applied migration 3")
	}

	o = mustRun(t, d.url(), dir)
	if o.result("applied-versions") != "[3]" || o.result("current-version") != "3" || o.result("pending") != "false" {
		t.Fatalf("apply: %v", o.summary.Results)
	}
	if n := strings.Count(o.stderr, `msg="migration applied"`); n != 1 {
		t.Errorf("%d 'migration applied' lines, want 1:\n%s", n, o.stderr)
	}
	for _, want := range []string{"version=3", "file=00003_c.sql", "duration=", `msg="migration finished"`} {
		if !strings.Contains(o.stderr, want) {
			t.Errorf("log lacks %q:\n%s", want, o.stderr)
		}
	}

	o = mustRun(t, d.url(), dir)
	if o.result("applied") != "0" || !strings.Contains(o.stderr, "nothing to migrate") {
		t.Fatalf("rerun: %v\n%s", o.summary.Results, o.stderr)
	}

	o = mustRun(t, d.url(), dir, "--down-to", "1")
	if o.result("rolled-back-versions") != "[3,2]" || o.result("current-version") != "1" || o.result("target-version") != "1" {
		t.Fatalf("--down-to 1: %v", o.summary.Results)
	}
	if d.tableExists("b") || d.tableExists("c") || !d.tableExists("a") {
		t.Fatal("--down-to 1 did not roll back 3 and 2 only")
	}
	if got := d.versions("goose_db_version"); got != "0:true 1:true" {
		t.Fatalf("version table after --down-to 1: %q", got)
	}

	o = mustRun(t, d.url(), dir, "--down-to", "0")
	if o.result("rolled-back-versions") != "[1]" || o.result("current-version") != "0" {
		t.Fatalf("--down-to 0: %v", o.summary.Results)
	}
	if d.tableExists("a") {
		t.Fatal("--down-to 0 left table a")
	}
	o = mustRun(t, d.url(), dir, "--down-to", "0")
	if o.result("rolled-back") != "0" {
		t.Fatalf("second --down-to 0: %v", o.summary.Results)
	}
}

func TestEmptyDatabaseIsMigratedByDefault(t *testing.T) {
	d := newDB(t)
	o := mustRun(t, d.url(), writeDir(t, threeTables), "--allow-empty-database=true")
	if o.result("applied") != "3" {
		t.Fatalf("%v", o.summary.Results)
	}
}

func TestAllowOutOfOrder(t *testing.T) {
	d := newDB(t)
	mustRun(t, d.url(), writeDir(t, subset(threeTables, "00001_a.sql", "00003_c.sql")))
	dir := writeDir(t, threeTables)
	if o := runStep(t, d.url(), dir); o.code != 1 {
		t.Fatalf("out-of-order without the flag: exit %d", o.code)
	}
	o := mustRun(t, d.url(), dir, "--allow-out-of-order")
	if o.result("applied-versions") != "[2]" || o.result("current-version") != "3" {
		t.Fatalf("%v", o.summary.Results)
	}
}

// Every refusal exits 1, explains itself, and leaves the database as it was.
func TestRefusalsLeaveDatabaseUnchanged(t *testing.T) {
	noDown := files{"00001_a.sql": threeTables["00001_a.sql"], "00002_b.sql": mig("CREATE TABLE b (id int);", "")}
	tests := []struct {
		name  string
		setup files  // applied first
		sql   string // then run
		files files
		args  []string
		want  []string
	}{
		{name: "duplicate versions", files: files{"001_a.sql": mig("SELECT 1;", ""), "1_b.sql": mig("SELECT 1;", "")}, want: []string{"both have version 1"}},
		{name: "unparsable versions", files: files{"00001_a.sql": mig("SELECT 1;", ""), "add_users.sql": mig("SELECT 1;", "")}, want: []string{"add_users.sql does not start with a version"}},
		{name: "branched", setup: threeTables, files: subset(threeTables, "00001_a.sql", "00002_b.sql"),
			want: []string{"version 3 applied that is not in", "Deploy the image", "DELETE FROM public.goose_db_version WHERE version_id IN (3);"}},
		{name: "out of order", setup: subset(threeTables, "00001_a.sql", "00003_c.sql"), files: threeTables, want: []string{"version 2 is pending", "--allow-out-of-order"}},
		{name: "not goose's table", sql: "CREATE TABLE goose_db_version (id int, name text)", files: threeTables, want: []string{"not a goose version table", "column version_id is missing"}},
		{name: "duplicate rows", setup: threeTables, sql: "INSERT INTO goose_db_version (version_id, is_applied) VALUES (2, true)", files: threeTables, args: []string{"--down-to", "1"},
			want: []string{"version 2 has 2 rows", "DELETE FROM public.goose_db_version WHERE version_id = 2 AND id <>"}},
		{name: "duplicate rows, plan", setup: threeTables, sql: "INSERT INTO goose_db_version (version_id, is_applied) VALUES (2, true)", files: threeTables, args: []string{"--plan"}, want: []string{"inconsistent"}},
		{name: "rolled-back row", setup: subset(threeTables, "00001_a.sql", "00002_b.sql"), sql: "INSERT INTO goose_db_version (version_id, is_applied) VALUES (2, false)", files: threeTables,
			want: []string{"is_applied=false", "DELETE FROM public.goose_db_version WHERE version_id = 2;"}},
		{name: "empty version table", setup: threeTables, sql: "DELETE FROM goose_db_version", files: threeTables, want: []string{"is empty", "VALUES (0, true)"}},
		{name: "empty database", files: threeTables, args: []string{"--allow-empty-database=false"}, want: []string{"no tables and no version table", "--allow-empty-database"}},
		{name: "unknown target", files: threeTables, args: []string{"--to", "9"}, want: []string{"--to 9 is not a migration"}},
		{name: "irreversible", setup: noDown, files: noDown, args: []string{"--down-to", "0"}, want: []string{"00002_b.sql", "has no Down statements"}},
		{name: "missing schema", files: threeTables, args: []string{"--table", "nosuch.versions"}, want: []string{"schema nosuch", "CREATE SCHEMA nosuch;"}},
		{name: "missing role", files: threeTables, args: []string{"--role", "no_such_role_x"}, want: []string{"SET ROLE no_such_role_x", "does not exist"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDB(t)
			if tt.setup != nil {
				mustRun(t, d.url(), writeDir(t, tt.setup))
			}
			if tt.sql != "" {
				d.exec(tt.sql)
			}
			before := d.snapshot()
			o := runStep(t, d.url(), writeDir(t, tt.files), tt.args...)
			if o.code != 1 {
				t.Fatalf("exit %d, want 1\n%s", o.code, o.stderr)
			}
			t.Log(o.lastLine())
			for _, w := range tt.want {
				if !strings.Contains(o.lastLine(), w) {
					t.Errorf("error lacks %q:\n%s", w, o.lastLine())
				}
			}
			if after := d.snapshot(); after != before {
				t.Fatalf("refusal changed the database:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if d.advisoryLockHeld() {
				t.Error("migration lock still held")
			}
		})
	}
}

// The repair SQL a refusal gives is exact: running it lets the next run succeed.
func TestRepairSQLWorks(t *testing.T) {
	tests := []struct{ name, sql string }{
		{"duplicate rows", "INSERT INTO goose_db_version (version_id, is_applied) VALUES (2, true), (1, true)"},
		// What old goose left after rolling back 3: its Down ran, a false row was added.
		{"rolled-back row", "DROP TABLE c; INSERT INTO goose_db_version (version_id, is_applied) VALUES (3, false)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDB(t)
			dir := writeDir(t, threeTables)
			mustRun(t, d.url(), dir)
			d.exec(tt.sql)
			cfg, err := (&dbconn.Options{URL: d.url(), ConnectTimeout: 5 * time.Second}).Config(redact.New())
			if err != nil {
				t.Fatal(err)
			}
			db, _ := OpenDB(cfg, SessionSettings{})
			defer db.Close()
			opts := Options{Dir: dir, Table: DefaultTable, AllowEmptyDatabase: true, LockWait: time.Minute}
			m := &Migrator{DB: db, FS: os.DirFS(dir), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Opts: opts}
			_, err = m.Run(context.Background())
			var re *RefusalError
			if !errors.As(err, &re) || !errors.Is(err, ErrInconsistentTable) {
				t.Fatalf("err = %v, want an inconsistent-table refusal", err)
			}
			begin, end := strings.Index(re.Repair, "BEGIN;"), strings.Index(re.Repair, "COMMIT;")
			if begin < 0 || end < 0 {
				t.Fatalf("no repair transaction in %q", re.Repair)
			}
			d.exec(re.Repair[begin : end+len("COMMIT;")])
			o := mustRun(t, d.url(), dir)
			if tt.name == "rolled-back row" && o.result("applied-versions") != "[3]" {
				t.Errorf("after repairing a rolled-back version it should be applied again: %v", o.summary.Results)
			}
			if n := d.queryString(`SELECT count(*)::text FROM goose_db_version GROUP BY version_id ORDER BY count(*) DESC LIMIT 1`); n != "1" {
				t.Errorf("still %s rows for one version", n)
			}
		})
	}
}

func TestSQLErrorNamesFileAndPosition(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, files{
		"00001_a.sql":   threeTables["00001_a.sql"],
		"00002_bad.sql": "-- +goose Up\nCREATE TABLE side (id int);\nCREATE TABLE broken (\n  id int,\n  name txet\n);\n",
		"00003_c.sql":   threeTables["00003_c.sql"],
	})
	o := runStep(t, d.url(), dir)
	if o.code != 1 {
		t.Fatalf("exit %d, want 1\n%s", o.code, o.stderr)
	}
	t.Log(o.lastLine())
	for _, want := range []string{"applying migration 2 (00002_bad.sql) failed", "SQLSTATE 42704", "00002_bad.sql:5:8", "rolled back"} {
		if !strings.Contains(o.lastLine(), want) {
			t.Errorf("error lacks %q: %s", want, o.lastLine())
		}
	}
	if got := d.versions("goose_db_version"); got != "0:true 1:true" {
		t.Errorf("version table = %q, want 1 applied and 2 not", got)
	}
	if d.tableExists("side") {
		t.Error("the failed migration's first statement was not rolled back")
	}
	if o.result("applied-versions") != "[1]" || o.result("current-version") != "1" {
		t.Errorf("results: %v", o.summary.Results)
	}
}

func TestNoTransactionMigrationFailure(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, files{"00001_idx.sql": "-- +goose NO TRANSACTION\n" + mig("CREATE TABLE t (id int);\nCREATE INDEX CONCURRENTLY t_id ON t (nope);", "DROP TABLE t;")})
	o := runStep(t, d.url(), dir)
	t.Log(o.lastLine())
	if o.code != 1 || !strings.Contains(o.lastLine(), "NO TRANSACTION") || !strings.Contains(o.lastLine(), "SQLSTATE 42703") {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	if !d.tableExists("t") || d.versions("goose_db_version") != "0:true" {
		t.Fatal("expected the first statement to stay and the version to stay unrecorded")
	}
}

func TestRoleOwnsObjectsAndVersionTable(t *testing.T) {
	owner := plainRole(t, "mig_owner")
	outsider := plainRole(t, "mig_outsider")
	const pw = "p@ss:w/rd%41?x"
	login := loginRole(t, pw, owner)
	d := newDB(t)
	d.exec("GRANT CREATE ON SCHEMA public TO " + owner)
	url := d.srv.UserURL(login, pw, d.db)
	dir := writeDir(t, threeTables)

	o := mustRun(t, url, dir, "--role", owner)
	if o.result("applied") != "3" {
		t.Fatalf("%v", o.summary.Results)
	}
	got := d.queryString(`SELECT string_agg(tablename || '=' || tableowner, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'`)
	// The checksum table too, created on the lock's session after SET ROLE.
	want := "a=" + owner + " b=" + owner + " c=" + owner + " goose_db_version=" + owner + " goose_db_version_sums=" + owner
	if got != want {
		t.Fatalf("owners: %s\nwant:   %s", got, want)
	}
	if strings.Contains(o.stdout+o.stderr, pw) {
		t.Fatal("password in output")
	}

	o = runStep(t, url, dir, "--role", outsider)
	if o.code != 1 || !strings.Contains(o.lastLine(), "GRANT "+outsider+" TO "+login) {
		t.Fatalf("--role without membership: exit %d: %s", o.code, o.lastLine())
	}
}

func TestLockHeldElsewhereExits75(t *testing.T) {
	d := newDB(t)
	c := d.conn()
	ctx := context.Background()
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", LockID); err != nil {
		t.Fatal(err)
	}
	holder := int(c.PgConn().PID())
	before := d.snapshot()
	o := runStep(t, d.url(), writeDir(t, threeTables), "--lock-wait", "1s")
	if o.code != 75 {
		t.Fatalf("exit %d, want 75\n%s", o.code, o.stderr)
	}
	t.Log(o.lastLine())
	for _, want := range []string{"another migrator holds the migration lock", "pid " + strconv.Itoa(holder), "--lock-wait 1s", "pg_terminate_backend"} {
		if !strings.Contains(o.lastLine(), want) {
			t.Errorf("error lacks %q: %s", want, o.lastLine())
		}
	}
	if !strings.Contains(o.stderr, "waiting for the migration lock") {
		t.Errorf("no log line while waiting:\n%s", o.stderr)
	}
	if after := d.snapshot(); after != before {
		t.Fatalf("database changed while the lock was busy:\n%s\n%s", before, after)
	}
	if _, err := c.Exec(ctx, "SELECT pg_advisory_unlock($1)", LockID); err != nil {
		t.Fatal(err)
	}
	mustRun(t, d.url(), writeDir(t, threeTables), "--lock-wait", "1s")
}

func TestLockTimeoutBehindLongTransaction(t *testing.T) {
	d := newDB(t)
	mustRun(t, d.url(), writeDir(t, subset(threeTables, "00001_a.sql")))
	blocker := d.conn()
	ctx := context.Background()
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT * FROM a"); err != nil { // holds ACCESS SHARE on a
		t.Fatal(err)
	}
	dir := writeDir(t, files{
		"00001_a.sql": threeTables["00001_a.sql"],
		"00002_alter.sql": mig("CREATE TABLE side (id int);\nALTER TABLE a ADD COLUMN x int;",
			"ALTER TABLE a DROP COLUMN x;\nDROP TABLE side;"),
	})
	o := runStep(t, d.url(), dir, "--lock-timeout", "2s")
	if o.code != 75 {
		t.Fatalf("exit %d, want 75\n%s", o.code, o.stderr)
	}
	t.Log(o.lastLine())
	pid := strconv.Itoa(int(blocker.PgConn().PID()))
	for _, want := range []string{"00002_alter.sql", "lock_timeout (--lock-timeout 2s) expired", "AccessExclusiveLock on a", "blocked by pid " + pid, "rolled back"} {
		if !strings.Contains(o.lastLine(), want) {
			t.Errorf("error lacks %q: %s", want, o.lastLine())
		}
	}
	if d.tableExists("side") || d.versions("goose_db_version") != "0:true 1:true" {
		t.Fatal("migration 2 was not rolled back")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if o := mustRun(t, d.url(), dir, "--lock-timeout", "2s"); o.result("applied-versions") != "[2]" {
		t.Fatalf("rerun: %v", o.summary.Results)
	}
}

// TestStatementTimeout: a statement_timeout would expire again on a retry, so the
// step exits 1 and says to raise it.
func TestStatementTimeout(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, files{"00001_slow.sql": mig("CREATE TABLE side (id int);\nSELECT pg_sleep(30);", "DROP TABLE side;")})
	o := runStep(t, d.url(), dir, "--statement-timeout", "1s")
	t.Log(o.lastLine())
	if o.code != 1 || !strings.Contains(o.lastLine(), "statement_timeout expired (--statement-timeout 1s") {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	if d.tableExists("side") {
		t.Fatal("not rolled back")
	}
}

// A cancelled statement (SQLSTATE 57014) is judged by its cause, which only
// the server's message tells: a statement timeout recurs on every retry
// (exit 1) whoever set it, the flag or the migration itself; an
// administrator's cancel (pg_cancel_backend) may not, and the transaction was
// rolled back (exit 75). Before, the flag alone decided: a migration setting
// its own statement_timeout was retried (75) and an administrator's cancel
// with --statement-timeout set was final (1) (attack session 26 finding 3).
func TestStatementCancelledCause(t *testing.T) {
	for _, tc := range []struct {
		name, up string
		args     []string
		cancel   bool // pg_cancel_backend the running statement
		code     int
		want     string
	}{
		{"the migration's own statement_timeout", "SET statement_timeout = '200ms';\nCREATE TABLE big AS SELECT 1 AS x FROM pg_sleep(1);", nil, false, 1,
			"statement_timeout expired (set by the migration itself: --statement-timeout is 0s)"},
		{"an administrator's cancel with --statement-timeout set", "CREATE TABLE big AS SELECT 1 AS x FROM pg_sleep(30);", []string{"--statement-timeout", "10m"}, true, 75,
			"cancelled by another session (pg_cancel_backend)"},
		{"an administrator's cancel without", "CREATE TABLE big AS SELECT 1 AS x FROM pg_sleep(30);", nil, true, 75,
			"cancelled by another session (pg_cancel_backend)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDB(t)
			dir := writeDir(t, files{"00001_a.sql": threeTables["00001_a.sql"], "00002_big.sql": mig(tc.up, "DROP TABLE big;")})
			mustRun(t, d.url(), dir, "--to", "1")
			done := make(chan outcome, 1)
			go func() { done <- runStep(t, d.url(), dir, tc.args...) }()
			if tc.cancel {
				cancelRunning(t, d, "CREATE TABLE big%")
			}
			o := <-done
			if o.code != tc.code || !strings.Contains(o.lastLine(), tc.want) {
				t.Fatalf("exit %d, want %d with %q: %s", o.code, tc.code, tc.want, o.lastLine())
			}
			if d.tableExists("big") || d.versions("goose_db_version") != "0:true 1:true" {
				t.Fatalf("migration 2 not rolled back: big %v, versions %s", d.tableExists("big"), d.versions("goose_db_version"))
			}
		})
	}
}

// An administrator's cancel inside a migration without a transaction: the
// statements before stay applied, so the message must not say the work was
// rolled back and a rerun runs it again; it is recorded as stopped partway.
func TestStatementCancelledNoTransaction(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, files{"00001_notx.sql": "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE side (id int);\nCREATE TABLE big AS SELECT 1 AS x FROM pg_sleep(30);\n"})
	done := make(chan outcome, 1)
	go func() { done <- runStep(t, d.url(), dir) }()
	cancelRunning(t, d, "CREATE TABLE big%")
	o := <-done
	if o.code != 1 || !strings.Contains(o.lastLine(), "cancelled by another session") || strings.Contains(o.lastLine(), "rolled back, and a rerun runs it again") || !strings.Contains(o.lastLine(), "stopped partway") {
		t.Fatalf("exit %d, want 1, cancelled and stopped partway without 'rolled back': %s", o.code, o.lastLine())
	}
}

// cancelRunning waits until a statement LIKE pattern runs in the database,
// then cancels it as an administrator would (pg_cancel_backend).
func cancelRunning(t *testing.T, d *testDB, pattern string) {
	t.Helper()
	running := `FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND query LIKE '` + pattern + `'`
	eventually(t, "the statement "+pattern, func() bool { return d.queryString(`SELECT EXISTS (SELECT `+running+`)::text`) == "true" })
	d.exec(`SELECT pg_cancel_backend(pid) ` + running)
}

func TestConnectionErrors(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, threeTables)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()
	tests := []struct {
		name string
		url  string
		code int
	}{
		{"wrong password", d.srv.UserURL("postgres", "wrong", d.db), 1},
		{"unreachable", "postgres://postgres:x@127.0.0.1:" + strconv.Itoa(closed) + "/db?sslmode=disable", 75},
		{"database not created yet", d.srv.URL("not_there_yet"), 75},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := runStep(t, tt.url, dir, "--connect-timeout", "3s")
			t.Log(o.lastLine())
			if o.code != tt.code || !strings.Contains(o.lastLine(), "connecting to the database") {
				t.Fatalf("exit %d, want %d: %s", o.code, tt.code, o.lastLine())
			}
		})
	}
}

// The password, with every URL-special character, appears in no output of any
// outcome: success, refusal, SQL error, lock busy, wrong password.
func TestPasswordNeverInOutput(t *testing.T) {
	const pw = "s3cr@t:/%?#pw"
	login := loginRole(t, pw)
	d := newDB(t)
	d.exec("GRANT CREATE ON SCHEMA public TO " + login)
	url := d.srv.UserURL(login, pw, d.db)
	bad := writeDir(t, files{"00001_bad.sql": mig("SELEC 1;", "")})
	good := writeDir(t, threeTables)
	c := d.conn()
	outs := []outcome{
		runStep(t, url, good, "--plan", "--log-format", "json", "--log-level", "debug"),
		runStep(t, url, good, "--log-level", "debug"),
		runStep(t, url, writeDir(t, subset(threeTables, "00001_a.sql"))),                                      // branched
		runStep(t, d.srv.UserURL(login, pw+"x", d.db), good),                                                  // wrong password
		runStep(t, strings.Replace(url, "127.0.0.1", "127.0.0.1:1", 1)+"&connect_timeout=1", good),            // malformed
		runStep(t, d.srv.UserURL(login, pw, d.db+"_missing"), good, "--connect-timeout", "2s"),                // no database
		runStep(t, "host=127.0.0.1 port=1 user="+login+" password='"+pw+"' dbname=x connect_timeout=1", good), // DSN
	}
	d2 := newDB(t)
	d2.exec("GRANT CREATE ON SCHEMA public TO " + login)
	outs = append(outs, runStep(t, d2.srv.UserURL(login, pw, d2.db), bad))
	if _, err := c.Exec(context.Background(), "SELECT pg_advisory_lock($1)", LockID); err != nil {
		t.Fatal(err)
	}
	outs = append(outs, runStep(t, url, good, "--down-to", "0", "--lock-wait", "0s"))
	for i, o := range outs {
		for _, leak := range []string{pw, "s3cr%40t", "s3cr@t:"} {
			if strings.Contains(o.stdout+o.stderr, leak) {
				t.Errorf("run %d (exit %d) leaks the password:\n%s%s", i, o.code, o.stdout, o.stderr)
			}
		}
	}
	if outs[1].code != 0 || outs[7].code != 1 || outs[8].code != 75 {
		t.Errorf("unexpected exit codes: %d %d %d", outs[1].code, outs[7].code, outs[8].code)
	}
}

func TestSchemaQualifiedTable(t *testing.T) {
	d := newDB(t)
	d.exec("CREATE SCHEMA meta")
	dir := writeDir(t, threeTables)
	mustRun(t, d.url(), dir, "--table", "meta.versions")
	if got := d.versions("meta.versions"); got != "0:true 1:true 2:true 3:true" {
		t.Fatalf("meta.versions = %q", got)
	}
	if d.tableExists("public.goose_db_version") {
		t.Fatal("default table created too")
	}
	o := mustRun(t, d.url(), dir, "--table", "meta.versions", "--plan")
	if o.result("pending") != "false" {
		t.Fatalf("%v", o.summary.Results)
	}
}

// Interrupting a run (SIGTERM cancels the context) rolls back the running
// migration, releases the lock, and exits 75; a rerun finishes.
func TestCancelDuringMigration(t *testing.T) {
	d := newDB(t)
	d.exec("CREATE TABLE sleep_control (version int PRIMARY KEY, seconds float8)")
	d.exec("INSERT INTO sleep_control VALUES (2, 3600)")
	dir := writeDir(t, sleepyMigrations(3))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan outcome, 1)
	go func() { done <- runStepCtx(ctx, t, d.url(), dir) }()
	eventually(t, "migration 2 to sleep", func() bool { return d.sleeping() })
	cancel()
	o := <-done
	t.Log(o.lastLine())
	if o.code != 75 || !strings.Contains(o.lastLine(), "interrupted") || !strings.Contains(o.lastLine(), "migration 2") {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	if got := d.versions("goose_db_version"); got != "0:true 1:true" {
		t.Fatalf("versions after cancel: %q", got)
	}
	eventually(t, "the lock to be released", func() bool { return !d.advisoryLockHeld() })
	d.exec("UPDATE sleep_control SET seconds = 0")
	if o := mustRun(t, d.url(), dir); o.result("applied-versions") != "[2,3]" {
		t.Fatalf("rerun: %v", o.summary.Results)
	}
	d.checkEffectsOnce(3)
}

// sleepyMigrations makes n migrations; migration i records its effect, then sleeps
// for sleep_control's seconds for version i (a table the test creates).
func sleepyMigrations(n int) files {
	f := files{}
	for i := 1; i <= n; i++ {
		v := strconv.Itoa(i)
		up := "CREATE TABLE IF NOT EXISTS effects (version int);\nINSERT INTO effects VALUES (" + v + ");\n" +
			"SELECT pg_sleep(coalesce((SELECT seconds FROM sleep_control WHERE version = " + v + "), 0));"
		f["0000"+v+"_m"+v+".sql"] = mig(up, "DELETE FROM effects WHERE version = "+v+";")
	}
	return f
}

// sleeping reports whether a migration is inside pg_sleep in this database,
// waiting in it: a migration whose sleep is 0 seconds runs the same query
// without ever waiting, and under load a poll caught one in flight (TestProcesses
// kill -9 inside migration 3 then killed migration 1).
func (d *testDB) sleeping() bool {
	return d.queryString(`SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
		AND state = 'active' AND wait_event = 'PgSleep' AND query LIKE '%pg_sleep(coalesce%' AND pid <> pg_backend_pid())::text`) == "true"
}

// checkEffectsOnce asserts each of n migrations ran exactly once and is recorded once.
func (d *testDB) checkEffectsOnce(n int) {
	d.t.Helper()
	want := ""
	for i := 1; i <= n; i++ {
		want += strconv.Itoa(i) + ":1 "
	}
	want = strings.TrimSpace(want)
	if got := d.queryString(`SELECT string_agg(version || ':' || c, ' ' ORDER BY version) FROM (SELECT version, count(*) c FROM effects GROUP BY version) x`); got != want {
		d.t.Errorf("effects = %q, want %q", got, want)
	}
	if got := d.queryString(`SELECT string_agg(version_id || ':' || c, ' ' ORDER BY version_id) FROM (SELECT version_id, count(*) c FROM goose_db_version WHERE version_id > 0 GROUP BY version_id) x`); got != want {
		d.t.Errorf("version rows = %q, want %q", got, want)
	}
}

// --only-this-run: a workflow's rollback undoes only what its own run applied
// (the checksum record's run_id). A version another migrator applied meanwhile
// (a run outside the workflow's lock, a person's migrate) is refused, before
// anything is rolled back, and named; without the flag it is rolled back.
func TestRollbackOnlyThisRun(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, threeTables)
	mustRun(t, d.url(), dir, "--to", "1", "--run-id", "earlier")
	mustRun(t, d.url(), dir, "--to", "2", "--run-id", "run-a")
	mustRun(t, d.url(), dir, "--run-id", "run-b")

	for _, tc := range []struct {
		name, run, downTo string
		refused           []string
	}{
		{"another run's version above mine", "run-a", "1", []string{`3 (applied by "run-b")`}},
		{"an earlier run's version below the planned one", "run-b", "0", []string{`2 (applied by "run-a")`, `1 (applied by "earlier")`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := runStep(t, d.url(), dir, "--down-to", tc.downTo, "--only-this-run", "--run-id", tc.run)
			if o.code != 1 {
				t.Fatalf("exit %d, want 1\n%s", o.code, o.stderr)
			}
			t.Logf("refused: %s", o.summary.Error)
			for _, want := range append(tc.refused, "rolls back only what it applied", "Nothing was rolled back") {
				if !strings.Contains(o.summary.Error, want) {
					t.Errorf("error %q lacks %q", o.summary.Error, want)
				}
			}
			if got := d.versions("goose_db_version"); got != "0:true 1:true 2:true 3:true" {
				t.Fatalf("version table changed: %q", got)
			}
		})
	}

	// a version recorded by backfill (applied by another tool) is not this run's either
	d.exec("UPDATE goose_db_version_sums SET recorded = 'backfilled' WHERE version = 3")
	o := runStep(t, d.url(), dir, "--down-to", "2", "--only-this-run", "--run-id", "run-b")
	if o.code != 1 || !strings.Contains(o.summary.Error, `3 (recorded as backfilled by "run-b", not applied by it)`) {
		t.Fatalf("backfilled: exit %d, %q", o.code, o.summary.Error)
	}
	d.exec("UPDATE goose_db_version_sums SET recorded = 'applied' WHERE version = 3")

	o = mustRun(t, d.url(), dir, "--down-to", "2", "--only-this-run", "--run-id", "run-b")
	if o.result("rolled-back-versions") != "[3]" {
		t.Fatalf("its own version: %v", o.summary.Results)
	}
	o = mustRun(t, d.url(), dir, "--down-to", "0", "--run-id", "a-person")
	if o.result("rolled-back-versions") != "[2,1]" || d.tableExists("a") {
		t.Fatalf("without --only-this-run: %v", o.summary.Results)
	}
}

// A version row written again after the run applied it (another migrator's
// goose redo, a restore of the version table) is not the run's any more, even
// though the checksum record still names it: directly, and once a later run
// has moved the record to the new row (a relink).
func TestRollbackOnlyThisRunRowWrittenAgain(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, threeTables)
	mustRun(t, d.url(), dir, "--to", "2", "--run-id", "earlier")
	mustRun(t, d.url(), dir, "--run-id", "run-r")
	// another migrator's goose redo of 3, and a row of data in its table
	d.exec("DROP TABLE c; DELETE FROM goose_db_version WHERE version_id = 3")
	d.exec("CREATE TABLE c (id int); INSERT INTO goose_db_version (version_id, is_applied) VALUES (3, true); INSERT INTO c VALUES (42)")
	refused := func(t *testing.T, want string) {
		t.Helper()
		o := runStep(t, d.url(), dir, "--down-to", "2", "--only-this-run", "--run-id", "run-r")
		if o.code != 1 || !strings.Contains(o.summary.Error, want) {
			t.Fatalf("exit %d, error %q; want the refusal naming %q\n%s", o.code, o.summary.Error, want, o.stderr)
		}
		if !d.tableExists("c") || d.queryString("SELECT count(*)::text FROM c") != "1" {
			t.Fatal("table c or its row is gone")
		}
	}
	t.Run("the record names the old row", func(t *testing.T) {
		refused(t, `3 (its version row was written again after "run-r" applied it)`)
	})
	t.Run("a later run moved the record", func(t *testing.T) {
		mustRun(t, d.url(), dir, "--run-id", "run-q") // nothing pending: it relinks 3
		refused(t, `3 (recorded as backfilled by "run-q", not applied by it)`)
	})
}

// --only-this-run judges the versions again once it holds the migration lock:
// what another migrator applied while the rollback waited for the lock (here
// a record that changes hands while the lock is held elsewhere) is refused too.
func TestRollbackOnlyThisRunRechecksUnderTheLock(t *testing.T) {
	ctx := context.Background()
	d := newDB(t)
	dir := writeDir(t, threeTables)
	mustRun(t, d.url(), dir, "--to", "2", "--run-id", "run-a")
	holder := d.conn()
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", LockID); err != nil {
		t.Fatal(err)
	}
	done := make(chan outcome, 1)
	go func() {
		done <- runStep(t, d.url(), dir, "--down-to", "0", "--only-this-run", "--run-id", "run-a", "--lock-wait", "60s")
	}()
	// its check before the lock has passed: it probes the lock now
	eventually(t, "the rollback's first probe of the lock", func() bool {
		return d.queryString(`SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
			AND application_name LIKE 'chartreuse/%' AND query LIKE '%pg_try_advisory_lock%')::text`) == "true"
	})
	if _, err := holder.Exec(ctx, "UPDATE goose_db_version_sums SET run_id = 'run-b' WHERE version = 2"); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", LockID); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.code != 1 || !strings.Contains(o.summary.Error, `it did not apply version 2 (applied by "run-b")`) {
		t.Fatalf("exit %d, error %q; want the refusal\n%s", o.code, o.summary.Error, o.stderr)
	}
	if got := d.versions("goose_db_version"); got != "0:true 1:true 2:true" {
		t.Fatalf("version table changed: %q", got)
	}
}

// A checksum table the rollback's role cannot read is named as such, with the
// grant, not taken for versions without a record of who applied them.
func TestRollbackOnlyThisRunUnreadableRecords(t *testing.T) {
	owner := plainRole(t, "mig_owner")
	writer := plainRole(t, "mig_writer")
	d := newDB(t)
	d.exec("GRANT CREATE ON SCHEMA public TO " + owner)
	dir := writeDir(t, threeTables)
	mustRun(t, d.url(), dir, "--role", owner, "--to", "2", "--run-id", "run-a")
	d.exec("GRANT USAGE ON SCHEMA public TO " + writer)
	d.exec("GRANT SELECT, INSERT, DELETE ON goose_db_version TO " + writer)
	o := runStep(t, d.url(), dir, "--role", writer, "--down-to", "1", "--only-this-run", "--run-id", "run-a")
	if o.code != 1 || !strings.Contains(o.lastLine(), "goose_db_version_sums") || strings.Contains(o.lastLine(), "no record of who applied it") {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	t.Logf("refused: %s", o.lastLine())
	if got := d.versions("goose_db_version"); got != "0:true 1:true 2:true" {
		t.Fatalf("version table changed: %q", got)
	}
}

// A migration that names a database that does not exist (3D000, here one of
// another environment) fails the same way on every retry: exit 1. 3D000 is
// transient only when connecting, while the database may still be being
// created; before, the migration's own error was retried too (exit 75), the
// application kept stopped through every retry (attack on 65734b5, finding 1).
func TestMigrationNamingAMissingDatabaseIsPermanent(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, files{
		"00001_a.sql":  mig("CREATE TABLE a (id int);", "DROP TABLE a;"),
		"00002_tz.sql": mig("ALTER DATABASE app_production SET timezone TO 'UTC';", "ALTER DATABASE app_production RESET timezone;"),
	})
	o := runStep(t, d.url(), dir)
	if !strings.Contains(o.lastLine(), "3D000") {
		t.Fatalf("the migration did not fail with 3D000: exit %d: %s", o.code, o.lastLine())
	}
	if o.code != 1 {
		t.Errorf("exit %d, want 1: an SQL error of the migration that every retry repeats: %s", o.code, o.lastLine())
	}
}
