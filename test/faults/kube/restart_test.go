package kube

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// restartDuring starts f, restarts the real kube-apiserver (SIGTERM, down for
// down, same flags and port) after after, and returns f's result.
func restartDuring(t *testing.T, c *cluster, after, down time.Duration, f func() (int, string)) runResult {
	t.Helper()
	return withFault(t, "restart", after, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.env.RestartAPIServer(ctx, down); err != nil {
			return fmt.Errorf("restarting kube-apiserver: %w", err)
		}
		return nil
	}, f)
}

// TestAPIServerRestart restarts the real kube-apiserver (test/kubeenv) while
// scale-down writes, while it waits for pods, and while scale-restore --wait-ready
// runs. Each run exits 0 or 75; reruns converge; records and restored replicas are
// exact. The environment's API server is restarted, so the test runs only when
// this package owns its environment (no CHARTREUSE_TEST_ENV), or when
// CHARTREUSE_FAULT_RESTART_SHARED=1 allows disturbing a shared one.
func TestAPIServerRestart(t *testing.T) {
	c := newCluster(t)
	if !c.env.Owned() && os.Getenv("CHARTREUSE_FAULT_RESTART_SHARED") != "1" {
		t.Skip("the cluster is shared (CHARTREUSE_TEST_ENV): restarting its API server would disturb the other packages' tests; " +
			"run this package alone, or set CHARTREUSE_FAULT_RESTART_SHARED=1")
	}
	c.deployments(40, func(i int) int32 {
		if i%8 == 0 || i%4 == 1 {
			return 1
		}
		return 0
	}, 4*time.Second)
	const pods = 15
	waitPods(t, c, pods)
	ctx := context.Background()

	for _, at := range []time.Duration{150 * time.Millisecond, 2 * time.Second} {
		r := restartDuring(t, c, at, 2*time.Second, func() (int, string) { return c.down(ctx, "") })
		if r.code != 0 && r.code != 75 {
			t.Fatalf("scale-down with a restart after %s: exit %d, want 0 or 75:\n%s", at, r.code, r.stderr)
		}
		t.Logf("scale-down, restart after %s: exit %d %s", at, r.code, lastLine(r.stderr))
		c.invariant("after scale-down with a restart")
		if at < time.Second {
			c.until("scale-down rerun", 5, func() (int, string) { return c.down(ctx, "") })
			c.until("scale-restore", 5, func() (int, string) { return c.restore(ctx, "") })
			c.restored()
			waitPods(t, c, pods)
		}
	}
	c.until("scale-down rerun", 5, func() (int, string) { return c.down(ctx, "") })
	c.stopped()

	r := restartDuring(t, c, 300*time.Millisecond, 2*time.Second, func() (int, string) {
		return c.run(ctx, scaleRestoreSpec(), "", "--selector", "set=faults", "--timeout", "2m", "--wait-ready")
	})
	if r.code != 0 && r.code != 75 {
		t.Fatalf("scale-restore with a restart: exit %d, want 0 or 75:\n%s", r.code, r.stderr)
	}
	t.Logf("scale-restore --wait-ready, restart: exit %d %s", r.code, lastLine(r.stderr))
	c.invariant("after scale-restore with a restart")
	c.until("scale-restore rerun", 5, func() (int, string) { return c.restore(ctx, "") })
	c.restored()
}
