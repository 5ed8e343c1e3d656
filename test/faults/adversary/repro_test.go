package adversary

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/migrate"
	"github.com/chartreuse-go/chartreuse/test/faults/kit"
	"github.com/chartreuse-go/chartreuse/test/waitfor"
)

// The reproductions, replayed deterministically.

// TestTerminatedLockHolder: a migrator applies a NO TRANSACTION migration of
// 4,000 INSERTs while a second one waits for the lock; the lock holder's session
// is terminated (as docs/troubleshooting.md advised) partway. Whatever ends the
// lock's session must end that migrator's work: no statement may run twice, the
// first migrator exits 1 leaving a dirty record, and the second refuses (exit 1)
// instead of running the migration again. The guard must not depend on the
// application_name the sessions carry.
func TestTerminatedLockHolder(t *testing.T) {
	needServers(t)
	for _, a := range []app{appDefault, appURL, appEnv} {
		t.Run("application_name "+a.String(), func(t *testing.T) {
			const v, n = 20260101, 4000
			// Each INSERT also sleeps a millisecond, so that the second migrator
			// is queued well before the first one is done.
			big := migration{version: v, name: "big_backfill", noTx: true, sleeps: make([]time.Duration, n)}
			for i := range big.sleeps {
				big.sleeps[i] = time.Millisecond
			}
			after := migration{version: v + 1, name: "after", sleeps: make([]time.Duration, 2)}
			r := newRun(t, takeServer(t), "", []migration{big, after})
			attacker := r.connect()
			ctx := context.Background()
			count := func() int {
				var c int
				if err := attacker.QueryRow(ctx, "SELECT count(*) FROM adv_log WHERE version = $1", v).Scan(&c); err != nil {
					t.Fatal(err)
				}
				return c
			}
			first := r.start("first migrator", a, "--lock-wait", "2m")
			waitfor.True(t, "the first migrator to run 200 statements", time.Minute, func() bool { return !first.Running() || count() >= 200 })
			second := r.start("second migrator", a, "--lock-wait", "2m")
			time.Sleep(500 * time.Millisecond) // the second one connects and queues for the lock
			holders, err := lockHolders(ctx, attacker)
			if err != nil {
				t.Fatal(err)
			}
			done := count()
			if !first.Running() {
				res, _ := r.finish(first, time.Second)
				t.Fatalf("the first migrator ended before the attack, after %d of %d statements: exit %d\n%s", done, n, res.Code, tail(res.Output(), 6))
			}
			if len(holders) != 1 || done >= n {
				t.Fatalf("the attack came too late: first migrator running %v, lock holders %v, %d of %d statements done", first.Running(), holders, done, n)
			}
			if err := r.killBackend(holders[0]); err != nil {
				t.Fatal(err)
			}
			t.Logf("terminated the lock holder %d after %d of %d statements", holders[0], done, n)
			r1, _ := r.finish(first, 3*time.Minute)
			r2, _ := r.finish(second, 3*time.Minute)
			t.Logf("first migrator exit %d, second exit %d", r1.Code, r2.Code)
			s := r.snapshot()
			problems := s.check(r.migs, false)
			if len(problems) > 10 {
				problems = append(problems[:10], fmt.Sprintf("and %d more", len(problems)-10))
			}
			for _, p := range problems {
				t.Error(p)
			}
			if r1.Code != 1 {
				t.Errorf("first migrator (its lock session terminated mid-migration) exited %d, want 1:\n%s", r1.Code, tail(r1.Output(), 6))
			}
			if r2.Code != 1 {
				t.Errorf("second migrator exited %d, want 1 (refusing the dirty migration):\n%s", r2.Code, tail(r2.Output(), 6))
			}
			if _, ok := s.dirty[v]; !ok {
				t.Errorf("no dirty record for %d in %s", v, r.dirtyTable())
			}
		})
	}
}

// TestStoppedPartway stops a NO TRANSACTION migration at its third of five
// statements in each way the issue names. The step must exit 1 (a retry would
// run statements 1 and 2 again), leave a dirty record saying 2 of 5 statements
// were done, and every later run and plan must refuse, naming the version and
// statement 3, until the operator repairs by hand and runs migrate --resolve,
// which waits for the migration lock like any migrator.
func TestStoppedPartway(t *testing.T) {
	needServers(t)
	const v = 20260201
	sleepy := func(d time.Duration) string { return logInsert(v, 3, d) }
	cases := []struct {
		name    string
		stopper string   // statement 3
		args    []string // of the first run
		// stop makes statement 3 fail, from the attacker's side; nil when the
		// flags do it.
		stop        func(t *testing.T, r *run, p *proc)
		exit        int  // of the first run
		applied     bool // how the operator resolves it
		lockedCheck bool // also check that --resolve waits for the lock
	}{
		{name: "lock_timeout", args: []string{"--lock-timeout", "300ms"}, exit: 1,
			stopper: fmt.Sprintf("INSERT INTO adv_log (version, stmt, pid, app) SELECT %d, 3, pg_backend_pid(), current_setting('application_name') FROM adv_blocked;", v)},
		{name: "statement_timeout", args: []string{"--statement-timeout", "1s"}, exit: 1, applied: true,
			stopper: sleepy(3 * time.Second)},
		{name: "deadlock", exit: 1,
			stopper: fmt.Sprintf("SELECT adv_deadlock(%d, 3);", v)},
		{name: "SIGTERM", exit: 1, applied: true, lockedCheck: true,
			stopper: sleepy(5 * time.Second)},
		{name: "SIGKILL", exit: -1, applied: true,
			stopper: sleepy(1500 * time.Millisecond)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := migration{version: v, name: "partway", noTx: true, sleeps: make([]time.Duration, 5), special: map[int]string{3: c.stopper}}
			next := migration{version: v + 1, name: "next", sleeps: make([]time.Duration, 2)}
			r := newRun(t, takeServer(t), "", []migration{m, next})
			ctx := context.Background()
			// Two sessions: the blocker holds locks in a transaction, and
			// pg_stat_activity, read inside a transaction, stays as it was at
			// its first read, so the attacker watches from another session.
			blocker, attacker := r.connect(), r.connect()
			var release func()
			switch c.name {
			case "lock_timeout":
				mustExec(t, blocker, "BEGIN; LOCK TABLE adv_blocked IN ACCESS EXCLUSIVE MODE")
				release = func() { mustExec(t, blocker, "ROLLBACK") }
			case "deadlock":
				// The migration waits first, so its deadlock check (after the
				// database's deadlock_timeout) finds the cycle and it is the one
				// cancelled; the blocker's own check comes far later.
				r.super("postgres", fmt.Sprintf("ALTER DATABASE %s SET deadlock_timeout = '2s'", r.db))
				mustExec(t, blocker, "SET deadlock_timeout = '60s'; BEGIN; UPDATE adv_rows SET n = n + 1 WHERE id = 1")
			}
			p := r.start("first run", appDefault, c.args...)
			migrationWaits := func(event string) func() bool {
				return func() bool {
					var n int
					if err := attacker.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
						WHERE datname = current_database() AND usename = $1 AND wait_event = $2`, owner, event).Scan(&n); err != nil {
						t.Fatal(err)
					}
					return !p.Running() || n > 0
				}
			}
			switch c.name {
			case "deadlock":
				waitfor.True(t, "statement 3 to wait for the blocker's row", time.Minute, migrationWaits("transactionid"))
				_, err := blocker.Exec(ctx, "UPDATE adv_rows SET n = n + 1 WHERE id = 2")
				if err != nil {
					t.Fatalf("the blocker, not the migration, lost the deadlock: %v", err)
				}
				mustExec(t, blocker, "ROLLBACK")
			case "SIGTERM", "SIGKILL":
				waitfor.True(t, "statement 3 to sleep", time.Minute, migrationWaits("PgSleep"))
				sig := syscall.SIGTERM
				if c.name == "SIGKILL" {
					sig = syscall.SIGKILL
				}
				p.send(sig)
			}
			res, timedOut := r.finish(p, 3*time.Minute)
			if timedOut {
				t.Fatalf("the first run did not finish:\n%s", tail(res.Stderr, 10))
			}
			if res.Code != c.exit {
				t.Errorf("the first run exited %d, want %d (a rerun would repeat statements 1 and 2):\n%s", res.Code, c.exit, tail(res.Output(), 6))
			}
			if c.name == "SIGKILL" {
				// The killed client's backend finishes statement 3 and commits it.
				waitfor.True(t, "the killed run's lock to be released", time.Minute, func() bool {
					h, err := lockHolders(ctx, attacker)
					return err == nil && len(h) == 0
				})
			}
			s := r.snapshot()
			for _, pr := range s.check(r.migs, false) {
				t.Error(pr)
			}
			d, ok := s.dirty[v]
			if !ok {
				t.Fatalf("no dirty record for %d in %s (dirty table exists: %v); the first run said:\n%s", v, r.dirtyTable(), s.dirtyTable, tail(res.Output(), 6))
			}
			if d.Done != 2 || d.Total != 5 {
				t.Errorf("dirty record says %d of %d statements done, want 2 of 5", d.Done, d.Total)
			}
			if c.name != "SIGKILL" && d.LastError == "" {
				t.Errorf("dirty record has no last_error")
			}
			for _, pr := range r.refuses(d) {
				t.Error(pr)
			}
			if c.lockedCheck {
				mustExec(t, blocker, fmt.Sprintf("SELECT pg_advisory_lock(%d)", migrate.LockID))
				res := r.migrate("resolve while the lock is held", appDefault, "--resolve", fmt.Sprint(v), "--as", "applied", "--lock-wait", "1s")
				if res.Code != 75 {
					t.Errorf("migrate --resolve with the migration lock held elsewhere exited %d, want 75:\n%s", res.Code, tail(res.Output(), 6))
				}
				if s := r.snapshot(); s.rows[v] > 0 || len(s.dirty) == 0 {
					t.Errorf("migrate --resolve changed the records without the migration lock: version row %v, dirty %v", s.rows[v] > 0, s.dirty)
				}
				mustExec(t, blocker, fmt.Sprintf("SELECT pg_advisory_unlock(%d)", migrate.LockID))
			}
			if c.applied {
				r.operatorComplete(m)
			} else {
				r.operatorUndo(m)
				if release != nil {
					release()
				}
			}
			for _, pr := range r.resolve(m, c.applied) {
				t.Error(pr)
			}
			if rr := r.migrate("rerun after --resolve", appDefault); rr.Code != 0 {
				t.Errorf("rerun after --resolve exited %d:\n%s", rr.Code, tail(rr.Output(), 6))
			}
			for _, pr := range r.snapshot().check(r.migs, true) {
				t.Error(pr)
			}
		})
	}
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", strings.SplitN(sql, "\n", 2)[0], err)
	}
}

// TestRunsDuringNoTransaction: while a migrator is partway through a NO
// TRANSACTION migration, a second migrator and a planner start. The migration
// is running, not stopped (its session is alive and holds the lock), so its
// dirty record must not make them fail for good: the second migrator waits for
// the lock and exits 0, the planner exits 0 or 75, never 1. Found by
// TestSeededAttacks (73 refusals in 200 seeds at 51ea09b).
func TestRunsDuringNoTransaction(t *testing.T) {
	needServers(t)
	const v = 20260301
	slow := migration{version: v, name: "slow", noTx: true, sleeps: make([]time.Duration, 10)}
	for i := 2; i < len(slow.sleeps); i++ {
		slow.sleeps[i] = 300 * time.Millisecond
	}
	next := migration{version: v + 1, name: "next", sleeps: make([]time.Duration, 2)}
	r := newRun(t, takeServer(t), "", []migration{slow, next})
	attacker := r.connect()
	ctx := context.Background()
	first := r.start("first migrator", appDefault)
	waitfor.True(t, "the first migrator to finish statement 2", time.Minute, func() bool {
		var n int
		if err := attacker.QueryRow(ctx, "SELECT count(*) FROM adv_log WHERE version = $1", v).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return !first.Running() || n >= 2
	})
	second := r.start("second migrator", appDefault, "--lock-wait", "2m")
	plan := r.migrate("planner", appDefault, "--plan")
	running := first.Running()
	r1, _ := r.finish(first, 3*time.Minute)
	r2, _ := r.finish(second, 3*time.Minute)
	if !running {
		t.Fatalf("the first migrator finished (exit %d) before the planner did: the test is too slow for this machine", r1.Code)
	}
	if r1.Code != 0 {
		t.Errorf("first migrator exited %d, want 0:\n%s", r1.Code, tail(r1.Output(), 6))
	}
	if r2.Code != 0 {
		t.Errorf("second migrator, started while the first was mid-migration, exited %d, want 0 (wait for the lock):\n%s", r2.Code, tail(r2.Output(), 6))
	}
	if plan.Code != 0 && plan.Code != 75 {
		t.Errorf("--plan, run while a migration was in progress, exited %d, want 0 or 75 (it is running, not stopped):\n%s", plan.Code, tail(plan.Output(), 6))
	}
	for _, p := range r.snapshot().check(r.migs, true) {
		t.Error(p)
	}
}

// TestWaitingSessionTerminated: a migrator waits for the migration lock, which
// another session holds, and loses its connection: the attacker terminates its
// sessions, or the network resets them. Nothing was applied and a rerun can
// succeed, so the exit code is 75 (or 0 if it reconnects and finishes), never 1.
// Found by TestSeededAttacks (seeds 59, 75, 80 and 172 of 200 at 322a1da:
// "taking the migration lock: failed to execute pg_try_advisory_lock: driver:
// bad connection", exit 1). Whether the client reads the server's last message
// or finds the socket closed first is a race (a terminated session showed the
// defect one time in four, a reset two in three), so each cut is tried four
// times.
func TestWaitingSessionTerminated(t *testing.T) {
	needServers(t)
	for _, cut := range []string{"pg_terminate_backend", "connection reset"} {
		for attempt := range 4 {
			if !t.Run(fmt.Sprintf("%s/%d", cut, attempt+1), func(t *testing.T) { waitingSessionCut(t, cut) }) {
				break
			}
		}
	}
}

func waitingSessionCut(t *testing.T, cut string) {
	m := migration{version: 20260401, name: "one", sleeps: make([]time.Duration, 2)}
	r := newRun(t, takeServer(t), "", []migration{m})
	var px *kit.Proxy
	if cut == "connection reset" {
		px = r.useProxy()
	}
	holder, attacker := r.connect(), r.connect()
	ctx := context.Background()
	mustExec(t, holder, fmt.Sprintf("SELECT pg_advisory_lock(%d)", migrate.LockID))
	p := r.start("migrator", appDefault, "--lock-wait", "30s")
	waitfor.True(t, "the migrator to wait for the lock", time.Minute, func() bool {
		var n int
		// Between two tries for the lock (idle after one), or blocked in one.
		if err := attacker.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND usename = $1 AND query ILIKE '%advisory%'
			  AND (state = 'idle' OR wait_event_type = 'Lock')`, owner).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return !p.Running() || n > 0
	})
	if px != nil {
		px.Down()
		if err := px.Up(); err != nil {
			t.Fatal(err)
		}
	} else {
		pids, err := sessions(ctx, attacker)
		if err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			if err := r.killBackend(pid); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustExec(t, holder, fmt.Sprintf("SELECT pg_advisory_unlock(%d)", migrate.LockID))
	res, _ := r.finish(p, 3*time.Minute)
	t.Logf("exit %d: %s", res.Code, tail(res.Stderr, 1))
	if res.Code != 75 && res.Code != 0 {
		t.Errorf("the migrator that lost its connection while it waited for the lock exited %d, want 75 (or 0):\n%s", res.Code, tail(res.Output(), 6))
	}
	if res.Code != 0 {
		if rr := r.migrate("rerun", appDefault); rr.Code != 0 {
			t.Errorf("rerun exited %d:\n%s", rr.Code, tail(rr.Output(), 6))
		}
	}
	for _, pr := range r.snapshot().check(r.migs, true) {
		t.Error(pr)
	}
}
