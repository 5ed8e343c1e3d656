package gate

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/chartreuse-go/chartreuse/test/faultproxy"
)

// The gate under a flaky network: a Lease write whose answer is lost or held,
// a read held. Each ends (75) and its rerun finishes the job; before, a held
// request kept the gate waiting with no limit.
func TestClusterGateUnderFaults(t *testing.T) {
	c := newCluster(t)
	for i, tc := range []struct {
		action string
		rule   faultproxy.Rule
		want   int
	}{
		{"acquire", faultproxy.Rule{Method: "POST", Path: "/leases", Times: 1, Action: faultproxy.DropAfter}, 75},
		{"acquire", faultproxy.Rule{Method: "POST", Path: "/leases", Times: 1, Action: faultproxy.StatusAfter, Status: 502}, 75},
		{"acquire", faultproxy.Rule{Method: "POST", Path: "/leases", Times: 1, Action: faultproxy.HoldUnsent}, 75},
		{"acquire", faultproxy.Rule{Method: "GET", Path: "/leases/", Times: 1, Action: faultproxy.HoldUnsent}, 75},
		{"release", faultproxy.Rule{Method: "DELETE", Path: "/leases/", Times: 1, Action: faultproxy.DropAfter}, 75},
		{"release", faultproxy.Rule{Method: "DELETE", Path: "/leases/", Times: 1, Action: faultproxy.HoldUnsent}, 75},
	} {
		pr := c.pipelineRun(fmt.Sprintf("run-%d", i))
		if tc.action == "release" {
			c.mustRun(0, pr)
		}
		rule := tc.rule
		cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		p := faultproxy.New(t, cfg, &rule)
		kc := c.env.WriteKubeconfig(t, p.Point)
		c.identity = kc
		start := time.Now()
		done := make(chan stepRun, 1)
		go func() { done <- c.run(pr, nil, "--action", tc.action, "--timeout", "5s") }()
		var r stepRun
		select {
		case r = <-done:
		case <-time.After(3 * time.Minute): // forever is what failed
			t.Errorf("case %d %s %+v: gate still running after %s with --timeout 5s", i, tc.action, tc.rule, time.Since(start).Round(time.Second))
			p.CloseClientConnections()
			r = <-done
		}
		t.Logf("case %d %s %v: exit %d in %s: %s (hits %v)", i, tc.action, tc.rule, r.code, time.Since(start).Round(time.Millisecond), r.summary.Error, p.Hits())
		if r.code != tc.want {
			t.Errorf("case %d: exit %d, want %d", i, r.code, tc.want)
		}
		c.identity = ""
		// the rerun finishes the job
		r2 := c.run(pr, nil, "--action", tc.action, "--timeout", "5s")
		t.Logf("  rerun: exit %d: %s", r2.code, r2.summary.Error)
		if r2.code != 0 {
			t.Errorf("case %d: rerun exit %d: %s", i, r2.code, r2.summary.Error)
		}
		if tc.action == "acquire" {
			c.mustRun(0, pr, "--action", "release")
		}
	}
}
