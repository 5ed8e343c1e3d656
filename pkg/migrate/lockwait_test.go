package migrate

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// seenResult parses a *-seconds result.
func seenResult(t *testing.T, o outcome, name string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(o.result(name), 64)
	if err != nil {
		t.Fatalf("result %s=%q: %v (results %v)", name, o.result(name), err, o.summary.Results)
	}
	return v
}

// TestLockWaitResults: lock-wait-seconds counts the wait for another
// migrator's lock, table-lock-wait-seconds the time a migration was seen
// blocked on a table. The lower bounds follow from the order of events, not
// from timing: goose probes the advisory lock once a second, and the watcher
// samples every half second with --lock-timeout 0.
func TestLockWaitResults(t *testing.T) {
	ctx := context.Background()
	t.Run("nothing to wait for", func(t *testing.T) {
		d := newDB(t)
		o := mustRun(t, d.url(), writeDir(t, threeTables))
		if o.result("lock-wait-seconds") == "" || o.result("table-lock-wait-seconds") != "0.0" {
			t.Fatalf("results %v", o.summary.Results)
		}
		if v := seenResult(t, o, "lock-wait-seconds"); v >= 1 {
			t.Fatalf("lock-wait-seconds %v with no other migrator", v)
		}
		if o := mustRun(t, d.url(), writeDir(t, threeTables), "--plan"); o.result("lock-wait-seconds") != "" {
			t.Fatalf("--plan takes no lock but reports a wait: %v", o.summary.Results)
		}
	})

	t.Run("sql time", func(t *testing.T) {
		d := newDB(t)
		dir := writeDir(t, files{"00001_slow.sql": mig("CREATE TABLE a (id int);\nSELECT pg_sleep(0.3);", "DROP TABLE a;")})
		o := mustRun(t, d.url(), dir)
		if v := seenResult(t, o, "sql-seconds"); v < 0.3 {
			t.Fatalf("sql-seconds %v for a migration that sleeps 0.3 s", v)
		}
		if o := mustRun(t, d.url(), dir); o.result("sql-seconds") != "0.000" {
			t.Fatalf("nothing to apply: sql-seconds %q", o.result("sql-seconds"))
		}
	})

	t.Run("another migrator's lock", func(t *testing.T) {
		d := newDB(t)
		holder := d.conn()
		if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", LockID); err != nil {
			t.Fatal(err)
		}
		done := make(chan outcome, 1)
		go func() { done <- runStep(t, d.url(), writeDir(t, threeTables), "--lock-wait", "60s") }()
		// Its first probe has failed: the next comes a second later at the soonest.
		eventually(t, "the step's first probe of the lock", func() bool {
			return d.queryString(`SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
				AND application_name LIKE 'chartreuse/%' AND query LIKE '%pg_try_advisory_lock%')::text`) == "true"
		})
		if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", LockID); err != nil {
			t.Fatal(err)
		}
		o := <-done
		if o.code != 0 {
			t.Fatalf("exit %d\n%s", o.code, o.stderr)
		}
		if v := seenResult(t, o, "lock-wait-seconds"); v < 1 {
			t.Fatalf("lock-wait-seconds %v, want at least one probe interval (1 s)", v)
		}
	})

	t.Run("a table lock", func(t *testing.T) {
		d := newDB(t)
		mustRun(t, d.url(), writeDir(t, subset(threeTables, "00001_a.sql")))
		blocker := d.conn()
		tx, err := blocker.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "SELECT * FROM a"); err != nil { // ACCESS SHARE on a
			t.Fatal(err)
		}
		dir := writeDir(t, files{
			"00001_a.sql":     threeTables["00001_a.sql"],
			"00002_alter.sql": mig("ALTER TABLE a ADD COLUMN x int;", "ALTER TABLE a DROP COLUMN x;"),
		})
		done := make(chan outcome, 1)
		go func() { done <- runStep(t, d.url(), dir, "--lock-timeout", "0") }()
		var blockedAt string
		eventually(t, "the migration to wait for the table", func() bool {
			blockedAt = d.queryString(`SELECT coalesce((SELECT now()::text FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
				WHERE c.relname = 'a' AND NOT l.granted LIMIT 1), '')`)
			return blockedAt != ""
		})
		// Two samples of the watcher after the wait began, half a second apart
		// at least: both saw it. Not merely two query starts, which can come
		// from one sample (its statement's prepare, then its run, on the
		// connection's first use): ci18b counted 0.2 s after seeing two.
		watcherQuery := func(after, plus string) string {
			return `SELECT coalesce((SELECT query_start::text FROM pg_stat_activity WHERE datname = current_database()
			AND application_name LIKE 'chartreuse/%' AND query LIKE '%pg_blocking_pids%' AND state = 'idle'
			AND query_start > '` + after + `'::timestamptz + interval '` + plus + `' LIMIT 1), '')`
		}
		var first string
		eventually(t, "the watcher's first sample of the wait", func() bool {
			first = d.queryString(watcherQuery(blockedAt, "0 s"))
			return first != ""
		})
		eventually(t, "the watcher's sample of the wait half a second later", func() bool {
			return d.queryString(watcherQuery(first, "0.5 s")) != ""
		})
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		o := <-done
		if o.code != 0 {
			t.Fatalf("exit %d\n%s", o.code, o.stderr)
		}
		if v := seenResult(t, o, "table-lock-wait-seconds"); v < 0.5 {
			t.Fatalf("table-lock-wait-seconds %v, want at least the half second between two samples that saw the wait", v)
		}
	})
}

// TestPlanLockWaitBounded: a plan run with the migrations' --lock-timeout 0
// (the workflows pass it, for plan to check) does not wait forever behind a
// lock on a table a pending migration names: it reads the table's size with
// its own bounded lock_timeout and still says needs-downtime true.
func TestPlanLockWaitBounded(t *testing.T) {
	d := newDB(t)
	mustRun(t, d.url(), writeDir(t, subset(threeTables, "00001_a.sql")))
	ctx := context.Background()
	blocker := d.conn()
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE a IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	dir := writeDir(t, files{
		"00001_a.sql":     threeTables["00001_a.sql"],
		"00002_index.sql": mig("CREATE INDEX a_idx ON a (id);", "DROP INDEX a_idx;"),
	})
	done := make(chan outcome, 1)
	go func() { done <- runStep(t, d.url(), dir, "--plan", "--lock-timeout", "0", "--statement-timeout", "0") }()
	var o outcome
	select {
	case o = <-done:
	case <-time.After(2 * time.Minute): // only a plan that waits for the lock to go gets here
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		o = <-done
		t.Fatalf("plan waited behind the lock until the test released it after 2 minutes (exit %d)", o.code)
	}
	if o.code != 0 || o.result("needs-downtime") != "true" || o.result("pending") != "true" {
		t.Fatalf("plan behind a lock with --lock-timeout 0: exit %d, results %v\n%s", o.code, o.summary.Results, o.stderr)
	}
}
