package migrate

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The database-safety defects of issue 11, each against the real server.

// TestNoTxStoppedPartwayIsDirtyUntilResolved: a NO TRANSACTION migration that
// fails after its first statement ran exits 1 and leaves a dirty record; every
// later run, --plan included, refuses and names the statement; --resolve settles it.
func TestNoTxStoppedPartwayIsDirtyUntilResolved(t *testing.T) {
	d := newDB(t)
	d.exec("CREATE TABLE hits (n int)")
	dir := writeDir(t, files{
		"00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;"),
		"00002_b.sql": "-- +goose NO TRANSACTION\n" + mig("INSERT INTO hits VALUES (1);\nINSERT INTO hits VALUES (2);\nSELECT nope FROM hits;\nINSERT INTO hits VALUES (4);", ""),
		"00003_c.sql": mig("CREATE TABLE c (id int);", "DROP TABLE c;"),
	})
	o := runStep(t, d.url(), dir, "--run-id", "wf-1")
	if o.code != 1 || !strings.Contains(o.lastLine(), "recorded as stopped partway") || !strings.Contains(o.lastLine(), "00002_b.sql:5") {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	if got := d.queryString("SELECT string_agg(n::text, ',' ORDER BY n) FROM hits"); got != "1,2" {
		t.Fatalf("hits %s, want 1,2", got)
	}
	if got := d.queryString("SELECT version || ':' || statements_done || '/' || statements_total FROM goose_db_version_dirty"); got != "2:2/4" {
		t.Fatalf("dirty record %q, want 2:2/4", got)
	}
	for _, args := range [][]string{nil, {"--plan"}, {"--down-to", "0"}} {
		o := runStep(t, d.url(), dir, args...)
		// The record names the run and its pod: where to read what happened.
		if o.code != 1 || !strings.Contains(o.lastLine(), "migration 2 (00002_b.sql) stopped partway while applying it in wf-1 (pod ") ||
			!strings.Contains(o.lastLine(), "statement 3 (line 5) may have partly run") || !strings.Contains(o.lastLine(), "--resolve 2 --as applied") {
			t.Fatalf("%v: exit %d: %s", args, o.code, o.lastLine())
		}
	}
	if got := d.queryString("SELECT count(*) FROM hits"); got != "2" || d.tableExists("c") {
		t.Fatalf("a refused run changed the database: hits %s, table c %v", got, d.tableExists("c"))
	}
	// Wrong resolutions change nothing.
	for _, args := range [][]string{{"--resolve", "3", "--as", "applied"}, {"--resolve", "2", "--as", "maybe"}, {"--resolve", "", "--as", "applied"}} {
		if o := runStep(t, d.url(), dir, args...); o.code == 0 {
			t.Fatalf("%v: exit 0", args)
		}
	}
	// The operator ran statement 4 by hand (3 was a typo): the changes are in place.
	d.exec("INSERT INTO hits VALUES (4)")
	if o := mustRun(t, d.url(), dir, "--resolve", "2", "--as", "applied"); o.result("current-version") != "2" {
		t.Fatalf("resolve: %v", o.summary.Results)
	}
	o = mustRun(t, d.url(), dir)
	if o.result("applied-versions") != "[3]" || d.queryString("SELECT count(*) FROM goose_db_version_dirty") != "0" {
		t.Fatalf("after resolve: %v", o.summary.Results)
	}
	if got := d.queryString("SELECT string_agg(n::text, ',' ORDER BY n) FROM hits"); got != "1,2,4" {
		t.Fatalf("hits %s: a statement ran twice or not at all", got)
	}
}

// TestResolveNotAppliedRunsItAgain: --as not-applied removes the version row
// (of a dirty down) so the next run applies the migration again.
func TestResolveNotAppliedRunsItAgain(t *testing.T) {
	d := newDB(t)
	d.exec("CREATE TABLE hits (n int)")
	up := "-- +goose NO TRANSACTION\n" + mig("INSERT INTO hits VALUES (1);\nSELECT 1/0;", "")
	dir := writeDir(t, files{"00001_b.sql": up})
	if o := runStep(t, d.url(), dir); o.code != 1 {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	d.exec("DELETE FROM hits") // undone by hand
	if o := mustRun(t, d.url(), dir, "--resolve", "1", "--as", "not-applied"); o.result("pending") != "true" || o.result("pending-versions") != "[1]" {
		t.Fatalf("resolved as not applied, the migration is pending again: %v", o.summary.Results)
	}
	fixed := writeDir(t, files{"00001_b.sql": "-- +goose NO TRANSACTION\n" + mig("INSERT INTO hits VALUES (1);", "")})
	if o := mustRun(t, d.url(), fixed); o.result("applied-versions") != "[1]" {
		t.Fatalf("%v", o.summary.Results)
	}
	if got := d.queryString("SELECT count(*) FROM hits"); got != "1" {
		t.Fatalf("hits %s", got)
	}
}

// TestNoTxInterruptedBySignalIsDirty: SIGTERM (a cancelled context) in the
// middle of a NO TRANSACTION migration exits 1 with the record, not 75: a retry
// would run the statements that already ran again.
func TestNoTxInterruptedBySignalIsDirty(t *testing.T) {
	d := newDB(t)
	d.exec("CREATE TABLE hits (n int)")
	dir := writeDir(t, files{"00001_b.sql": "-- +goose NO TRANSACTION\n" + mig("INSERT INTO hits VALUES (1);\nSELECT pg_sleep(coalesce(30, 0));\nINSERT INTO hits VALUES (3);", "")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan outcome, 1)
	go func() { done <- runStepCtx(ctx, t, d.url(), dir) }()
	eventually(t, "the sleep to start", d.sleeping)
	cancel()
	o := <-done
	if o.code != 1 || !strings.Contains(o.lastLine(), "stopped partway") {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	if got := d.queryString("SELECT statements_done FROM goose_db_version_dirty WHERE version = 1"); got != "1" {
		t.Fatalf("statements_done %q, want 1", got)
	}
	if o := runStep(t, d.url(), dir); o.code != 1 || d.queryString("SELECT count(*) FROM hits") != "1" {
		t.Fatalf("rerun: exit %d, hits %s", o.code, d.queryString("SELECT count(*) FROM hits"))
	}
}

// TestTerminatingTheLockSessionEndsTheMigration: pg_terminate_backend of the
// session that holds the lock ends the NO TRANSACTION migration running on it;
// a second migrator waiting for the lock then refuses instead of running the
// migration again.
func TestTerminatingTheLockSessionEndsTheMigration(t *testing.T) {
	d := newDB(t)
	d.exec("CREATE TABLE hits (n int, pid int)")
	var up strings.Builder
	for i := range 200 {
		fmt.Fprintf(&up, "INSERT INTO hits VALUES (%d, pg_backend_pid());\n", i)
		if i == 20 {
			up.WriteString("SELECT pg_sleep(coalesce(2, 0));\n")
		}
	}
	dir := writeDir(t, files{"00001_b.sql": "-- +goose NO TRANSACTION\n" + mig(up.String(), "")})
	// application_name is not ours: nothing may rest on it.
	url := d.url() + "&application_name=not-chartreuse"
	first := make(chan outcome, 1)
	go func() { first <- runStep(t, url, dir) }()
	eventually(t, "the first migrator to sleep", d.sleeping)
	second := make(chan outcome, 1)
	go func() { second <- runStep(t, url, dir) }()
	eventually(t, "the second migrator to try the lock", func() bool {
		return d.queryString(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%pg_try_advisory_lock%'
			AND pid NOT IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)`) != "0"
	})
	d.exec(`SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid::bigint = $1`, LockID&0xffffffff)
	o1, o2 := <-first, <-second
	if o1.code != 1 && o1.code != 75 {
		t.Fatalf("first migrator: exit %d: %s", o1.code, o1.lastLine())
	}
	if o2.code != 1 || !strings.Contains(o2.lastLine(), "stopped partway") {
		t.Fatalf("second migrator: exit %d: %s", o2.code, o2.lastLine())
	}
	if got := d.queryString("SELECT count(*) FROM (SELECT n FROM hits GROUP BY n HAVING count(*) > 1) x"); got != "0" {
		t.Fatalf("%s statements ran twice", got)
	}
	if got := d.queryString("SELECT count(DISTINCT pid) FROM hits"); got != "1" {
		t.Fatalf("statements ran on %s sessions", got)
	}
}

// TestMalformedLaterFileStopsBeforeAnything: every pending file is parsed before
// the first is applied; --plan refuses the same way, and no message claims a
// rollback of what never ran.
func TestMalformedLaterFileStopsBeforeAnything(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, files{
		"00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;"),
		"00002_b.sql": mig("-- +goose StatementBegin\nCREATE TABLE b (id int);", "DROP TABLE b;"),
	})
	for _, args := range [][]string{{"--plan"}, nil} {
		o := runStep(t, d.url(), dir, args...)
		if o.code != 1 || !strings.Contains(o.lastLine(), "migration 2 (00002_b.sql) cannot be parsed") || strings.Contains(o.lastLine(), "rolled back") {
			t.Fatalf("%v: exit %d: %s", args, o.code, o.lastLine())
		}
	}
	if d.tableExists("a") || d.tableExists("goose_db_version") {
		t.Fatal("something was applied before the malformed file was found")
	}
}

// TestEnvsubValuesNeverPrinted: an ENVSUB migration's expanded text appears in no
// output; its error points at the file's own line.
func TestEnvsubValuesNeverPrinted(t *testing.T) {
	const secret = "s3cr3t-t0ken-value"
	t.Setenv("CHARTREUSE_TEST_SECRET", secret)
	d := newDB(t)
	dir := writeDir(t, files{"00001_a.sql": "-- +goose ENVSUB ON\n" + mig(
		"CREATE TABLE a (v text UNIQUE);\nINSERT INTO a VALUES ('${CHARTREUSE_TEST_SECRET}');\nINSERT INTO a VALUES ('${CHARTREUSE_TEST_SECRET}');", "DROP TABLE a;")})
	o := runStep(t, d.url(), dir)
	if o.code != 1 || !strings.Contains(o.lastLine(), "00001_a.sql:5 (statement 3)") {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	for _, part := range []string{secret, secret[:8], secret[6:14]} {
		if strings.Contains(o.stdout+o.stderr, part) {
			t.Fatalf("expanded text %q printed:\n%s", part, o.stderr)
		}
	}
}

// TestOldSerialVersionTableNeedsSequenceUsage: an older goose's table has id
// serial; INSERT needs USAGE on its sequence. --plan refuses naming it instead of
// letting migrate apply a migration whose version row then cannot be written.
func TestOldSerialVersionTableNeedsSequenceUsage(t *testing.T) {
	const pw = "pw-serial"
	login := loginRole(t, pw)
	d := newDB(t)
	d.exec(`CREATE TABLE goose_db_version (id serial PRIMARY KEY, version_id bigint NOT NULL, is_applied boolean NOT NULL, tstamp timestamp DEFAULT now());
		INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true)`)
	d.exec("GRANT CREATE ON SCHEMA public TO " + login)
	d.exec("GRANT SELECT, INSERT, DELETE ON goose_db_version TO " + login)
	url := d.srv.UserURL(login, pw, d.db)
	dir := writeDir(t, files{"00001_a.sql": mig("SELECT 1;", ""), "00002_b.sql": mig("CREATE TABLE b (id int);", "DROP TABLE b;")})
	for _, args := range [][]string{{"--plan"}, nil} {
		o := runStep(t, url, dir, args...)
		if o.code != 1 || !strings.Contains(o.lastLine(), "GRANT USAGE ON SEQUENCE public.goose_db_version_id_seq TO "+login) {
			t.Fatalf("%v: exit %d: %s", args, o.code, o.lastLine())
		}
	}
	if d.tableExists("b") {
		t.Fatal("migration 2 ran")
	}
	d.exec("GRANT USAGE ON SEQUENCE goose_db_version_id_seq TO " + login)
	if o := mustRun(t, url, dir); o.result("applied-versions") != "[2]" {
		t.Fatalf("%v", o.summary.Results)
	}
}

// TestSessionStateDoesNotLeakBetweenMigrations: whatever a migration does to its
// session (RESET ROLE, RESET ALL, SET), the next starts with the configured
// role, timeouts and search_path.
func TestSessionStateDoesNotLeakBetweenMigrations(t *testing.T) {
	owner := plainRole(t, "mig_owner")
	const pw = "pw-leak"
	login := loginRole(t, pw, owner)
	d := newDB(t)
	d.exec("GRANT CREATE ON SCHEMA public TO " + owner)
	d.exec("CREATE SCHEMA other; GRANT ALL ON SCHEMA other TO " + owner)
	d.exec("CREATE TABLE seen (n int, role text, lock_timeout text, statement_timeout text, search_path text); GRANT ALL ON seen TO " + owner)
	record := func(n int) string {
		return fmt.Sprintf("INSERT INTO seen VALUES (%d, current_user, current_setting('lock_timeout'), current_setting('statement_timeout'), current_setting('search_path'));", n)
	}
	dir := writeDir(t, files{
		"00001_a.sql": mig(record(1)+"\nRESET ROLE;\nSET lock_timeout = 0;\nSET search_path = other;", ""),
		"00002_b.sql": mig(record(2)+"\nCREATE TABLE b (id int);\nRESET ALL;\nSET statement_timeout = '1h';", ""),
		"00003_c.sql": "-- +goose NO TRANSACTION\n" + mig(record(3)+"\nSET ROLE NONE;\nCREATE TABLE c (id int);", ""),
		"00004_d.sql": mig(record(4)+"\nCREATE TABLE d (id int);", ""),
	})
	mustRun(t, d.srv.UserURL(login, pw, d.db), dir, "--role", owner, "--lock-timeout", "7s", "--statement-timeout", "9s")
	want := fmt.Sprintf("%s|7s|9s|\"$user\", public", owner)
	got := d.queryString(`SELECT string_agg(role || '|' || lock_timeout || '|' || statement_timeout || '|' || search_path, ';' ORDER BY n) FROM seen`)
	if got != strings.Repeat(want+";", 3)+want {
		t.Fatalf("sessions:\n%s\nwant each %s", got, want)
	}
	if got := d.queryString(`SELECT string_agg(tablename || '=' || tableowner, ' ' ORDER BY tablename) FROM pg_tables WHERE tablename IN ('b', 'd')`); got != "b="+owner+" d="+owner {
		t.Fatalf("owners %s", got)
	}
}

// TestServerSessionTimeouts: a server that ends idle sessions quickly
// (idle_session_timeout, idle_in_transaction_session_timeout, short TCP keepalives)
// does not end a run of migrations.
func TestServerSessionTimeouts(t *testing.T) {
	d := newDB(t)
	d.exec(fmt.Sprintf(`ALTER DATABASE %s SET idle_session_timeout = '200ms'`, d.db))
	d.exec(fmt.Sprintf(`ALTER DATABASE %s SET idle_in_transaction_session_timeout = '200ms'`, d.db))
	d.exec(fmt.Sprintf(`ALTER DATABASE %s SET tcp_keepalives_idle = 1`, d.db))
	f := files{}
	for i := 1; i <= 4; i++ {
		f[fmt.Sprintf("%05d_m.sql", i)] = mig(fmt.Sprintf("CREATE TABLE t%d (id int);\nSELECT pg_sleep(0.4);", i), fmt.Sprintf("DROP TABLE t%d;", i))
	}
	f["00005_n.sql"] = "-- +goose NO TRANSACTION\n" + mig("SELECT pg_sleep(0.4);\nCREATE TABLE t5 (id int);", "")
	dir := writeDir(t, f)
	start := time.Now()
	if o := mustRun(t, d.url(), dir); o.result("applied") != "5" {
		t.Fatalf("%v", o.summary.Results)
	}
	t.Logf("5 migrations in %s", time.Since(start).Round(time.Millisecond))
}

// TestReservedWordTable: --table order works, and every statement and message
// quotes it.
func TestReservedWordTable(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, files{"00001_n.sql": "-- +goose NO TRANSACTION\n" + mig("CREATE TABLE a (id int);", "DROP TABLE a;")})
	if o := mustRun(t, d.url(), dir, "--table", "order"); o.result("applied") != "1" {
		t.Fatalf("%v", o.summary.Results)
	}
	if got := d.versions(`"order"`); got != "0:true 1:true" {
		t.Fatalf("versions %s", got)
	}
	d.exec(`INSERT INTO "order" (version_id, is_applied) VALUES (1, true)`)
	o := runStep(t, d.url(), dir, "--table", "order", "--plan")
	if o.code != 1 || !strings.Contains(o.lastLine(), `DELETE FROM public.\"order\" WHERE version_id = 1 AND id <> `) {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	d.exec(`DELETE FROM "order" WHERE id = (SELECT max(id) FROM "order")`)
	mustRun(t, d.url(), dir, "--table", "user", "--down-to", "0", "--allow-empty-database")
}

// TestRunningNoTxMigrationIsNotDirty: while a NO TRANSACTION migration runs, its
// record exists; --plan must not call it stopped partway (exit 75, in progress),
// and a second migrator waits for the lock and then finds nothing to do.
func TestRunningNoTxMigrationIsNotDirty(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, files{"00001_b.sql": "-- +goose NO TRANSACTION\n" + mig("SELECT pg_sleep(coalesce(2, 0));\nCREATE TABLE b (id int);", "")})
	first := make(chan outcome, 1)
	go func() { first <- runStep(t, d.url(), dir) }()
	eventually(t, "the migration to sleep", d.sleeping)
	o := runStep(t, d.url(), dir, "--plan")
	if o.code != 75 || !strings.Contains(o.lastLine(), "in progress") {
		t.Fatalf("--plan during the migration: exit %d: %s", o.code, o.lastLine())
	}
	o2 := runStep(t, d.url(), dir)
	if o1 := <-first; o1.code != 0 {
		t.Fatalf("first: exit %d: %s", o1.code, o1.lastLine())
	}
	if o2.code != 0 || o2.result("applied") != "0" {
		t.Fatalf("second: exit %d: %s", o2.code, o2.lastLine())
	}
}

// --role none was sent as SET ROLE none, PostgreSQL's "no role": the step
// migrated as the login user, exit 0, every object owned by the wrong role
// (found by an attack). It is refused before connecting, nothing changed.
func TestRoleNoneIsRefused(t *testing.T) {
	const pw = "r0le-n0ne:pw"
	login := loginRole(t, pw)
	d := newDB(t)
	d.exec("GRANT CREATE ON SCHEMA public TO " + login)
	dir := writeDir(t, files{"00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")})
	o := runStep(t, d.srv.UserURL(login, pw, d.db), dir, "--role", "none")
	tables := d.queryString(`SELECT coalesce(string_agg(tablename || '=' || tableowner, ' ' ORDER BY tablename), '') FROM pg_tables WHERE schemaname = 'public'`)
	if o.code != 2 || tables != "" {
		t.Fatalf("--role none: exit %d, want 2 with nothing changed; tables now: %s\n%s", o.code, tables, o.lastLine())
	}
}
