package db

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/test/faults/kit"
	"github.com/chartreuse-go/chartreuse/test/waitfor"
)

// TestKillAtRandomPoints kills the real migrate binary with SIGKILL at 30 seeded
// random moments of a 100-migration run (start-up, lock, between and inside
// migrations). After each kill: every migration's side effect and version row are
// there together or not at all, the server drops the killed session's advisory
// lock, and a rerun exits 0 with every migration applied exactly once and no lock
// left held.
func TestKillAtRandomPoints(t *testing.T) {
	e := newEnv(t)
	const (
		n      = 100
		points = 30
	)
	// pg_sleep(10ms) in every migration: a run lasts long enough (one to two
	// seconds) for 30 kills to land at distinct places.
	dir := migrations(t, n, 1, 10*time.Millisecond)
	rng := kit.NewRand(kit.Seed(t))

	full := calibrate(t, e, dir, n)
	t.Logf("a full run of %d migrations takes %s", n, full.Round(time.Millisecond))

	type outcome struct {
		delay   time.Duration
		applied int // migrations applied when killed; -1 when the run finished first
	}
	var outcomes []outcome
	for i := range points {
		delay := time.Duration((0.02 + 0.88*rng.Float64()) * float64(full))
		ok := t.Run(fmt.Sprintf("kill_%02d_after_%s", i, delay.Round(time.Millisecond)), func(t *testing.T) {
			pe := *e
			pe.t = t
			pe.newDB()
			p := pe.startMigrate(dir)
			time.Sleep(time.Until(p.Started.Add(delay)))
			killed := p.Running()
			if killed {
				p.Kill()
			}
			r := pe.finish(p, "killed run", time.Minute)
			// Exit 0 with the kill sent: the run ended between Running and Kill (the
			// signal reached a process already exited), as under load near the end.
			if killed && r.Code == 0 {
				killed = false
			}
			if !killed {
				outcomes = append(outcomes, outcome{delay, -1})
				t.Logf("the run finished (exit %d) before the kill", r.Code)
			} else if r.Code != -1 {
				t.Fatalf("exit code %d after SIGKILL", r.Code)
			}
			// The server notices the dead client and releases the lock.
			waitfor.True(t, "the killed migrator's lock to be released", 15*time.Second, func() bool { return pe.lockHolders() == 0 })
			st := pe.state()
			if err := st.check(n, false); err != nil {
				t.Fatalf("after the kill: %v", err)
			}
			if killed {
				outcomes = append(outcomes, outcome{delay, st.applied()})
			}
			rr := pe.runMigrate("rerun", dir)
			if rr.Code != 0 {
				t.Fatalf("rerun exited %d:\n%s", rr.Code, rr.Stderr)
			}
			if err := pe.state().check(n, true); err != nil {
				t.Fatalf("after the rerun: %v", err)
			}
			if h := pe.lockHolders(); h != 0 {
				t.Fatalf("%d sessions still hold the migration lock after the rerun", h)
			}
		})
		if !ok {
			break
		}
	}
	var killedAt []int
	finished := 0
	for _, o := range outcomes {
		if o.applied < 0 {
			finished++
			continue
		}
		if !slices.Contains(killedAt, o.applied) {
			killedAt = append(killedAt, o.applied)
		}
	}
	sort.Ints(killedAt)
	parts := make([]string, len(killedAt))
	for i, a := range killedAt {
		parts[i] = fmt.Sprint(a)
	}
	t.Logf("%d kills at %d distinct points (migrations applied when killed: %s); %d runs finished before their kill",
		len(outcomes)-finished, len(killedAt), strings.Join(parts, " "), finished)
	if !t.Failed() && len(killedAt) < 15 {
		t.Errorf("only %d distinct kill points: the run is too fast for this machine; raise the sleeps", len(killedAt))
	}
}

// calibrate measures a whole run on fresh databases (the shorter of two runs, so
// that kills rarely come after the end), checking that it applies everything.
func calibrate(t *testing.T, e *env, dir string, n int) time.Duration {
	var took []time.Duration
	for i := range 2 {
		t.Run(fmt.Sprintf("measure_%d", i), func(t *testing.T) {
			pe := *e
			pe.t = t
			pe.newDB()
			r := pe.runMigrate("measured run", dir)
			if r.Code != 0 {
				t.Fatalf("exited %d:\n%s", r.Code, r.Stderr)
			}
			if err := pe.state().check(n, true); err != nil {
				t.Fatal(err)
			}
			took = append(took, r.Took)
		})
	}
	if len(took) == 0 {
		t.FailNow()
	}
	return slices.Min(took)
}
