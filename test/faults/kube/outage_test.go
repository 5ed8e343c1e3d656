package kube

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/test/faults/kit"
)

// These tests take the API server away at the connection level: the steps talk to
// it through a TCP proxy that resets every open connection and refuses new ones
// for a while, then accepts them again. The steps see what a restart looks like
// from a client (watches and requests cut, connection refused, then the same
// server back). Unlike the real restart of restart_test.go (a cold watch cache,
// "resource version too old" on re-watch), this disturbs no one else, so it also
// runs on a cluster shared with other packages' tests.

func (c *cluster) proxy() (*kit.Proxy, string) {
	c.t.Helper()
	u, err := url.Parse(c.env.APIServerURL)
	if err != nil {
		c.t.Fatal(err)
	}
	p, err := kit.NewProxy(u.Host)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(p.Close)
	return p, c.writeKubeconfig("https://" + p.Addr)
}

type runResult struct {
	code   int
	stderr string
}

// during starts f, takes the API server away for down after after, brings it
// back and returns f's result.
func during(t *testing.T, p *kit.Proxy, after time.Duration, down time.Duration, f func() (int, string)) runResult {
	t.Helper()
	return withFault(t, "outage", after, func() error {
		p.Down()
		time.Sleep(down)
		return p.Up()
	}, f)
}

// withFault starts f, runs fault after after (unless f has ended by then), and
// returns f's result.
func withFault(t *testing.T, what string, after time.Duration, fault func() error, f func() (int, string)) runResult {
	t.Helper()
	done := make(chan runResult, 1)
	go func() {
		code, stderr := f()
		done <- runResult{code, stderr}
	}()
	select {
	case r := <-done:
		t.Logf("the run finished before the %s: exit %d", what, r.code)
		return r
	case <-time.After(after):
	}
	if err := fault(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	select {
	case r := <-done:
		return r
	case <-time.After(3 * time.Minute):
		t.Fatal("the run did not end within 3m after the API server came back")
		return runResult{}
	}
}

// TestAPIServerOutage takes the API server away in the middle of scale-down
// (while it writes, and while it waits for pods to stop) and of scale-restore.
// Each run exits 0 (it rode out the outage) or 75; reruns converge; the records
// and the restored replicas are exact.
func TestAPIServerOutage(t *testing.T) {
	c := newCluster(t)
	// Pods that take 4 s to stop, so scale-down is still waiting when the outage
	// comes; and enough Deployments for the writes to take a while.
	c.deployments(40, func(i int) int32 {
		if i%8 == 0 || i%4 == 1 {
			return 1
		}
		return 0
	}, 4*time.Second)
	const pods = 15
	waitPods(t, c, pods)
	p, kubeconfig := c.proxy()
	ctx := context.Background()

	for _, at := range []time.Duration{150 * time.Millisecond, 2 * time.Second} {
		r := during(t, p, at, 3*time.Second, func() (int, string) { return c.down(ctx, kubeconfig) })
		if r.code != 0 && r.code != 75 {
			t.Fatalf("scale-down with an outage after %s: exit %d, want 0 or 75:\n%s", at, r.code, r.stderr)
		}
		t.Logf("scale-down, outage after %s: exit %d %s", at, r.code, lastLine(r.stderr))
		c.invariant("after scale-down with an outage")
		if at < time.Second {
			// Put everything back for the second outage, in the waiting phase.
			c.until("scale-down rerun", 5, func() (int, string) { return c.down(ctx, kubeconfig) })
			c.until("scale-restore", 5, func() (int, string) { return c.restore(ctx, kubeconfig) })
			c.restored()
			waitPods(t, c, pods)
		}
	}
	c.until("scale-down rerun", 5, func() (int, string) { return c.down(ctx, kubeconfig) })
	c.stopped()

	r := during(t, p, 200*time.Millisecond, 3*time.Second, func() (int, string) {
		return c.run(ctx, scaleRestoreSpec(), kubeconfig, "--selector", "set=faults", "--timeout", "2m", "--wait-ready")
	})
	if r.code != 0 && r.code != 75 {
		t.Fatalf("scale-restore with an outage: exit %d, want 0 or 75:\n%s", r.code, r.stderr)
	}
	t.Logf("scale-restore, outage: exit %d %s", r.code, lastLine(r.stderr))
	c.invariant("after scale-restore with an outage")
	c.until("scale-restore rerun", 5, func() (int, string) { return c.restore(ctx, kubeconfig) })
	c.restored()

	// The API server away for the whole run: 75, naming it, nothing changed.
	before, err := kit.Quiet(ctx, c.cs, c.ns, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	p.Down()
	code, stderr := c.down(ctx, kubeconfig)
	if err := p.Up(); err != nil {
		t.Fatal(err)
	}
	if code != 75 || !strings.Contains(lastLine(stderr), "unreachable") && !strings.Contains(lastLine(stderr), "refused") {
		t.Errorf("scale-down with the API server away: exit %d, want 75 naming the unreachable server: %s", code, lastLine(stderr))
	}
	after, err := kit.SnapshotNamespace(ctx, c.cs, c.ns)
	if err != nil {
		t.Fatal(err)
	}
	if d := kit.Diff(before, after); d != "" {
		t.Errorf("a run that could not reach the API server changed the namespace:\n%s", d)
	}
}
