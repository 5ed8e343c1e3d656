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

// restart stops the shared PostgreSQL (fast shutdown: sessions are terminated,
// open transactions roll back), keeps it down for down, and starts it again on the
// same port and data.
func (e *env) restart(down time.Duration) {
	e.t.Helper()
	e.srv.StopServer()
	time.Sleep(down)
	if err := e.srv.StartServer(); err != nil {
		e.t.Fatalf("restarting PostgreSQL: %v", err)
	}
}

func (e *env) startWaitForDB(url string, args ...string) *stepbin.Proc {
	e.t.Helper()
	p, err := stepbin.Start(e.bins["wait-for-db"], []string{"CHARTREUSE_DATABASE_URL=" + url, "CHARTREUSE_SKIP_VERSION_CHECK=true"}, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if p.Running() {
			p.Kill()
		}
	})
	return p
}

// TestWaitForDBAcrossRestarts: wait-for-db started while PostgreSQL is down, or
// waiting for a database that does not exist yet while PostgreSQL restarts, waits
// and exits 0 once the database answers.
func TestWaitForDBAcrossRestarts(t *testing.T) {
	e := newEnv(t)
	e.newDB()

	t.Run("server down at start", func(t *testing.T) {
		e := *e
		e.t = t
		e.srv.StopServer()
		p := e.startWaitForDB(e.url, "--timeout", "60s")
		time.Sleep(1500 * time.Millisecond)
		if !p.Running() {
			r := e.finish(p, "wait-for-db", time.Second)
			t.Fatalf("wait-for-db did not wait for the stopped server: exit %d\n%s", r.Code, r.Stderr)
		}
		if err := e.srv.StartServer(); err != nil {
			t.Fatal(err)
		}
		r := e.finish(p, "wait-for-db", time.Minute)
		if r.Code != 0 {
			t.Fatalf("exit %d, want 0 after the server came up:\n%s", r.Code, r.Stderr)
		}
		if a := r.Summary.Results["attempts"]; a == "" || a == "1" {
			t.Errorf("attempts = %q: it should have retried", a)
		}
	})

	t.Run("restart while waiting for a database being created", func(t *testing.T) {
		e := *e
		e.t = t
		later := fmt.Sprintf("later_%d", time.Now().UnixNano()%1e9)
		url := e.srv.UserURL(e.role, e.pw, later)
		p := e.startWaitForDB(url, "--timeout", "60s")
		time.Sleep(500 * time.Millisecond)
		e.restart(time.Second)
		time.Sleep(500 * time.Millisecond)
		if !p.Running() {
			r := e.finish(p, "wait-for-db", time.Second)
			t.Fatalf("wait-for-db gave up across the restart: exit %d\n%s", r.Code, r.Stderr)
		}
		e.super("CREATE DATABASE " + pgx.Identifier{later}.Sanitize())
		t.Cleanup(func() { _ = e.srv.DropDatabase(context.Background(), later) })
		r := e.finish(p, "wait-for-db", time.Minute)
		if r.Code != 0 {
			t.Fatalf("exit %d, want 0:\n%s", r.Code, r.Stderr)
		}
	})

	t.Run("restart during the wait and timeout", func(t *testing.T) {
		e := *e
		e.t = t
		e.srv.StopServer()
		p := e.startWaitForDB(e.url, "--timeout", "2s")
		r := e.finish(p, "wait-for-db", 30*time.Second)
		if err := e.srv.StartServer(); err != nil {
			t.Fatal(err)
		}
		if r.Code != 75 {
			t.Fatalf("exit %d, want 75 when the server stays down past --timeout:\n%s", r.Code, r.Stderr)
		}
		if rr := e.finish(e.startWaitForDB(e.url, "--timeout", "10s"), "wait-for-db rerun", time.Minute); rr.Code != 0 {
			t.Fatalf("rerun exited %d:\n%s", rr.Code, rr.Stderr)
		}
	})
}

// TestMigrateAcrossRestarts restarts PostgreSQL while migrate runs: inside a
// migration, and while migrate waits for the lock held by another session. The
// run exits 75 (or 0 if it got through), never 1; the database stays consistent;
// a rerun finishes with every migration applied once and no lock held.
func TestMigrateAcrossRestarts(t *testing.T) {
	e := newEnv(t)
	const n = 40
	dir := migrations(t, n, 1, 50*time.Millisecond)

	for _, after := range []int{1, 12, 30} {
		t.Run(fmt.Sprintf("after %d migrations", after), func(t *testing.T) {
			e := *e
			e.t = t
			e.newDB()
			p := e.startMigrate(dir)
			waitfor.True(t, fmt.Sprintf("%d migrations to be applied", after), time.Minute, func() bool {
				return !p.Running() || len(e.state().effects) >= after
			})
			e.restart(500 * time.Millisecond)
			r := e.finish(p, "interrupted run", time.Minute)
			if r.Code != 75 && r.Code != 0 {
				t.Fatalf("exit %d, want 75 (or 0):\n%s", r.Code, r.Stderr)
			}
			t.Logf("exit %d; %s", r.Code, r.Summary.Error)
			if err := e.state().check(n, false); err != nil {
				t.Fatalf("after the restart: %v", err)
			}
			rr := e.runMigrate("rerun", dir)
			if rr.Code != 0 {
				t.Fatalf("rerun exited %d:\n%s", rr.Code, rr.Stderr)
			}
			if err := e.state().check(n, true); err != nil {
				t.Fatal(err)
			}
			if h := e.lockHolders(); h != 0 {
				t.Fatalf("%d sessions hold the migration lock", h)
			}
		})
	}

	t.Run("while waiting for the lock", func(t *testing.T) {
		e := *e
		e.t = t
		e.newDB()
		ctx := context.Background()
		holder, err := pgx.Connect(ctx, e.srv.URL(e.db))
		if err != nil {
			t.Fatal(err)
		}
		defer holder.Close(ctx)
		if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock(4097083626)"); err != nil {
			t.Fatal(err)
		}
		p := e.startMigrate(dir, "--lock-wait", "30s")
		waitfor.True(t, "migrate to wait for the lock", 30*time.Second, func() bool {
			return !p.Running() || strings.Contains(p.Stderr.String(), "waiting for the migration lock")
		})
		e.restart(500 * time.Millisecond) // also ends the holder's session
		r := e.finish(p, "run waiting for the lock", time.Minute)
		if r.Code != 75 && r.Code != 0 {
			t.Fatalf("exit %d, want 75 (or 0):\n%s", r.Code, r.Stderr)
		}
		t.Logf("exit %d after %s: %s", r.Code, r.Took.Round(time.Millisecond), r.Summary.Error)
		// The lock wait ended because the connection was lost, not because
		// another migrator kept the lock for --lock-wait: the message must say so.
		if r.Code == 75 && r.Took < 30*time.Second && strings.Contains(r.Summary.Error, "did not release it within") {
			t.Errorf("after %s the error blames a lock holder for the whole --lock-wait 30s instead of the lost connection: %s",
				r.Took.Round(time.Millisecond), r.Summary.Error)
		}
		if rr := e.runMigrate("rerun", dir); rr.Code != 0 {
			t.Fatalf("rerun exited %d:\n%s", rr.Code, rr.Stderr)
		}
		if err := e.state().check(n, true); err != nil {
			t.Fatal(err)
		}
		if h := e.lockHolders(); h != 0 {
			t.Fatalf("%d sessions hold the migration lock", h)
		}
	})
}
