package kube

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/test/faults/kit"
)

// unconfirmedRestore is what scale-restore says when it stops with a restore the
// API server never confirmed.
const unconfirmedRestore = "restoring it may have been done though the API server never confirmed it"

// TestInterruptedSequences runs a seeded random sequence of scale-down and
// scale-restore runs, each cancelled at a random moment (through step.Run's
// context, as SIGTERM does) or left to finish, some with a concurrent editor
// forcing conflicts. Each exits 0 or 75, or 1 for a restore left unconfirmed,
// saying so. After every run no recorded replica count is lost; a final
// restore (rerun until it exits 0) brings back the original replicas exactly.
func TestInterruptedSequences(t *testing.T) {
	c := newCluster(t)
	rng := kit.NewRand(kit.Seed(t))
	c.deployments(16, func(i int) int32 { return []int32{0, 1, 3, 0, 2, 0, 0, 1}[i%8] }, 0)
	const rounds = 24
	var finished, interrupted, refused, failed int
	for r := range rounds {
		op, run := "scale-down", c.down
		if rng.IntN(2) == 1 {
			op, run = "scale-restore", c.restore
		}
		// A step changes all 16 Deployments within about 100 ms of starting
		// (scale-down then waits seconds for pods): most cancels land in the changes.
		cancelAfter := time.Duration(rng.IntN(500)) * time.Millisecond
		edit := rng.IntN(3) == 0
		label := fmt.Sprintf("round %d: %s cancelled after %s (editor %v)", r, op, cancelAfter, edit)
		var stop func() int64
		if edit {
			stop = c.editor()
		}
		ctx, cancel := context.WithTimeout(context.Background(), cancelAfter)
		code, stderr := run(ctx, "")
		cancel()
		if stop != nil {
			stop()
		}
		switch {
		case code == 0:
			finished++
		case code == 75:
			interrupted++
		case code == 1 && op == "scale-restore" && strings.Contains(stderr, unconfirmedRestore):
			// A restore cut off before the API server confirmed it refuses a
			// retry, naming the workload to check: a retry would find its record
			// gone and skip its readiness wait (restore.go). Not a lost record.
			refused++
		default:
			failed++
			t.Errorf("%s: exit %d, want 0 or 75:\n%s", label, code, stderr)
		}
		t.Logf("%s: exit %d %s", label, code, lastLine(stderr))
		c.invariant(label)
	}
	runs := c.until("final scale-restore", 5, func() (int, string) { return c.restore(context.Background(), "") })
	c.restored()
	t.Logf("%d runs finished, %d interrupted, %d refused after an unconfirmed restore, %d failed; final restore converged in %d runs", finished, interrupted, refused, failed, runs)
	if interrupted+refused < rounds/4 {
		t.Errorf("only %d of %d runs were interrupted: the cancel delays do not hit the runs", interrupted, rounds)
	}
}
