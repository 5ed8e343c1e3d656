package migrate

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLockBusyNamesTheHoldersRun: a migrate run holds the migration lock (its
// migration waits for a table the test keeps locked); a second run gives up after
// --lock-wait and names the first one's run, step and origin. Both are real step
// runs on the real server: the holder's name is the one the step gave its session.
func TestLockBusyNamesTheHoldersRun(t *testing.T) {
	d := newDB(t)
	d.exec("CREATE TABLE gate (id int)")
	blocker := d.conn()
	ctx := context.Background()
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE gate IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	dir := writeDir(t, files{"00001_waits.sql": mig("CREATE TABLE a (id int);\nLOCK TABLE gate;", "DROP TABLE a;")})
	held := make(chan outcome, 1)
	go func() { held <- runStep(t, d.url(), dir, "--run-id", "wf-holder-7x2kq", "--lock-timeout", "0") }()
	eventually(t, "the holder to wait for gate under the migration lock", func() bool {
		return d.queryString(`SELECT EXISTS (SELECT FROM pg_locks WHERE relation = 'gate'::regclass AND NOT granted)::text`) == "true"
	})

	o := runStep(t, d.url(), dir, "--run-id", "wf-waiter-99xyz", "--lock-wait", "1s")
	if o.code != 75 {
		t.Fatalf("exit %d, want 75\n%s", o.code, o.stderr)
	}
	t.Log(o.lastLine())
	for _, want := range []string{
		"another migrator holds the migration lock",
		"Chartreuse run wf-holder-7x2kq, step migrate",
		"connected from 127.0.0.1, on the database server's own host: no pod",
		"pg_terminate_backend",
	} {
		if !strings.Contains(o.lastLine(), want) {
			t.Errorf("error lacks %q: %s", want, o.lastLine())
		}
	}
	if !strings.Contains(o.stderr, `msg="waiting for the migration lock"`) || !strings.Contains(o.stderr, "Chartreuse run wf-holder-7x2kq, step migrate") {
		t.Errorf("the wait's log line does not name the holder's run:\n%s", o.stderr)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if h := <-held; h.code != 0 {
		t.Fatalf("holder: exit %d\n%s", h.code, h.stderr)
	}
}

// fakeOrigins stands for the pod lookup (its real tests are in pkg/podaddr,
// against the test cluster): it records what it was asked.
type fakeOrigins struct{ addrs []string }

func (f *fakeOrigins) Describe(_ context.Context, addr string, started time.Time) string {
	f.addrs = append(f.addrs, addr)
	if started.IsZero() {
		return "no session start"
	}
	return "connected from " + addr + ", pod holder-pod-1 (namespace ns)"
}

// TestLockBusyAsksWhereTheHolderIsFrom: the busy error carries what the lookup said
// about the holder's client address and session start, read from pg_stat_activity.
func TestLockBusyAsksWhereTheHolderIsFrom(t *testing.T) {
	d := newDB(t)
	c := d.conn()
	ctx := context.Background()
	if _, err := c.Exec(ctx, "SET application_name = 'chartreuse/wf-other/rollback'"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", LockID); err != nil {
		t.Fatal(err)
	}
	origins := &fakeOrigins{}
	_, err := acquireLock(ctx, d.sqlDB(t, nil), 0, slog.New(slog.NewTextHandler(io.Discard, nil)), origins)
	var busy *LockBusyError
	if !errors.As(err, &busy) || busy.Holder == nil {
		t.Fatalf("err = %v, want a busy lock with its holder", err)
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{"Chartreuse run wf-other, step rollback", "connected from 127.0.0.1, pod holder-pod-1 (namespace ns)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	for _, a := range origins.addrs {
		if a != "127.0.0.1" {
			t.Errorf("looked up %q, want the holder's client address 127.0.0.1", a)
		}
	}
}

// TestPlanRefusesWhileTheLockIsHeld: --plan runs before the workflow stops the
// application, so a migration lock held by another migrator (a goose CLI, a run
// for the same database under another Secret, a migrate pod whose statement
// outlived it) makes it exit 75 naming the holder, without waiting and without
// results, rather than report a plan that is out of date before it is acted on.
// Once the lock is released the same plan passes. Before the fix it reported
// "pending" and the run stopped the application only to wait in migrate.
func TestPlanRefusesWhileTheLockIsHeld(t *testing.T) {
	d := newDB(t)
	dir := writeDir(t, files{"00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")})
	c := d.conn()
	ctx := context.Background()
	if _, err := c.Exec(ctx, "SET application_name = 'chartreuse/wf-busy-4k2/migrate'"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", LockID); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--plan"}, {"--plan", "--lock-wait", "0s"}} {
		o := runStep(t, d.url(), dir, args...)
		if o.code != 75 {
			t.Fatalf("%v: exit %d, want 75\n%s", args, o.code, o.stderr)
		}
		for _, want := range []string{"holds the migration lock", "Chartreuse run wf-busy-4k2, step migrate", "nothing stopped", "pg_terminate_backend"} {
			if !strings.Contains(o.lastLine(), want) {
				t.Errorf("%v: error lacks %q: %s", args, want, o.lastLine())
			}
		}
		if o.result("pending") != "" {
			t.Errorf("%v: result pending=%q written by a refused plan", args, o.result("pending"))
		}
	}
	if _, err := c.Exec(ctx, "SELECT pg_advisory_unlock($1)", LockID); err != nil {
		t.Fatal(err)
	}
	if o := mustRun(t, d.url(), dir, "--plan"); o.result("pending") != "true" {
		t.Fatalf("after release: pending=%q, want true", o.result("pending"))
	}
	if d.tableExists("a") {
		t.Fatal("a plan applied a migration")
	}
}
