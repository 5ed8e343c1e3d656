package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/test/waitfor"
)

// TestConflictsWithAConcurrentEditor runs scale-down and then scale-restore while
// two goroutines keep patching the same Deployments' labels and annotations. Every
// run exits 0 or 75 (conflicts it could not get past), reruns converge, the record
// always holds the original replicas, and restore brings back exactly the
// originals.
func TestConflictsWithAConcurrentEditor(t *testing.T) {
	c := newCluster(t)
	// 24 Deployments, most at 0 replicas, twelve pods in all (the node runs at
	// most 110, shared with other tests).
	c.deployments(24, func(i int) int32 { return []int32{0, 2, 0, 0, 1, 0}[i%6] }, 0)
	ctx := context.Background()
	waitPods(t, c, 12)

	conflicts := 0
	stop := c.editor()
	downRuns := c.until("scale-down under concurrent edits", 8, func() (int, string) {
		code, stderr := c.down(ctx, "")
		conflicts += strings.Count(stderr, "conflict")
		c.invariant("after a scale-down run")
		return code, stderr
	})
	edits := stop()
	c.stopped()

	stop = c.editor()
	restoreRuns := c.until("scale-restore under concurrent edits", 8, func() (int, string) {
		code, stderr := c.restore(ctx, "")
		conflicts += strings.Count(stderr, "conflict")
		c.invariant("after a scale-restore run")
		return code, stderr
	})
	edits += stop()
	c.restored()
	t.Logf("%d concurrent edits; scale-down converged in %d runs, scale-restore in %d; %d conflicts met (debug log)",
		edits, downRuns, restoreRuns, conflicts)
	if edits < 20 || conflicts == 0 {
		t.Errorf("%d concurrent edits, %d conflicts: the editor did not race with the steps", edits, conflicts)
	}
}

// waitPods waits until n pods of the test's Deployments run (tests may poll).
func waitPods(t *testing.T, c *cluster, n int) {
	t.Helper()
	var got int
	var err error
	if werr := waitfor.Until(t.Context(), 200*time.Millisecond, 2*time.Minute, func() bool {
		got, err = livePodsRunning(c)
		return err == nil && got >= n
	}); werr != nil {
		t.Fatalf("%d of %d pods running after 2m (%v)", got, n, err)
	}
}

func livePodsRunning(c *cluster) (int, error) {
	l, err := c.cs.CoreV1().Pods(c.ns).List(context.Background(), listSet)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range l.Items {
		if p.Status.Phase == "Running" && p.DeletionTimestamp == nil {
			n++
		}
	}
	return n, nil
}
