package db

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/test/stepbin"
	"github.com/chartreuse-go/chartreuse/test/waitfor"
)

// TestConcurrentMigrators starts 8 migrate binaries at once on one database:
// half wait for the lock (--lock-wait 2m), half give up at once (--lock-wait 0s).
// Each exits 0 or 75, every migration is applied exactly once, no lock is left,
// and a final run has nothing to do.
func TestConcurrentMigrators(t *testing.T) {
	e := newEnv(t)
	e.newDB()
	const n, runs = 50, 8
	dir := migrations(t, n, 5, 20*time.Millisecond)
	procs := make([]*stepbin.Proc, runs)
	for i := range procs {
		wait := "2m"
		if i%2 == 1 {
			wait = "0s"
		}
		procs[i] = e.startMigrate(dir, "--lock-wait", wait)
	}
	codes := map[int]int{}
	for i, p := range procs {
		r := e.finish(p, fmt.Sprintf("migrator %d", i), 3*time.Minute)
		codes[r.Code]++
		if r.Code != 0 && r.Code != 75 {
			t.Errorf("migrator %d exited %d, want 0 or 75:\n%s", i, r.Code, r.Stderr)
		}
	}
	t.Logf("exit codes: %v", codes)
	if err := e.state().check(n, true); err != nil {
		t.Fatal(err)
	}
	if h := e.lockHolders(); h != 0 {
		t.Fatalf("%d sessions hold the migration lock", h)
	}
	r := e.runMigrate("final run", dir)
	if r.Code != 0 || r.Summary.Results["applied"] != "0" {
		t.Fatalf("final run: exit %d, applied %q:\n%s", r.Code, r.Summary.Results["applied"], r.Stderr)
	}
}

// TestLockLostMidRun ends the migration lock's session while a migrator is in the
// middle of a run (as the lock-busy message suggests doing with a stuck holder, or
// as a connection pooler or idle timeout may do), and starts a second migrator as
// soon as the lock is free. The first migrator must notice that it lost the lock
// and stop (exit 75) instead of going on unlocked beside the second, and no
// migration may be applied twice.
func TestLockLostMidRun(t *testing.T) {
	e := newEnv(t)
	e.newDB()
	const n = 40
	dir := dataMigrations(t, n, 1, 50*time.Millisecond)
	first := e.startMigrate(dir)
	waitfor.True(t, "5 migrations to be applied", time.Minute, func() bool {
		return !first.Running() || len(e.state().effects) >= 5
	})
	pid := e.lockHolderPID()
	if pid == 0 {
		t.Fatal("no session holds the migration lock while the first migrator runs")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	appliedAtLoss := len(e.state().effects)
	second := e.startMigrate(dir)
	r1 := e.finish(first, "first migrator", 3*time.Minute)
	r2 := e.finish(second, "second migrator", 3*time.Minute)
	t.Logf("lock session ended after %d migrations; first migrator: exit %d, applied %s (%s); second: exit %d, applied %s (%s)",
		appliedAtLoss, r1.Code, r1.Summary.Results["applied"], r1.Summary.Error, r2.Code, r2.Summary.Results["applied"], r2.Summary.Error)
	st := e.state()
	st.tables = len(st.rows) // data migrations: no tables to count
	if err := st.check(n, false); err != nil {
		t.Errorf("two migrators ran at once after the lock was lost: %v", err)
	}
	if r1.Code == 0 && !strings.Contains(r1.Stderr, "lock") {
		t.Errorf("the first migrator finished its run without the lock and without a word about losing it")
	}
	if r1.Code == 0 && appliedAtLoss < n {
		t.Errorf("the first migrator applied migrations after its lock was gone (exit 0, %s applied): it must stop with exit 75 when the lock's session ends", r1.Summary.Results["applied"])
	}
	// Whatever happened, a rerun converges.
	if rr := e.runMigrate("rerun", dir); rr.Code != 0 {
		t.Fatalf("rerun exited %d:\n%s", rr.Code, rr.Stderr)
	}
}
