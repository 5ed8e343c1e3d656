package workload

import (
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/test/faultproxy"
)

// faultProxy starts a fault proxy before the cluster's API server and returns
// it with a kubeconfig that reaches the server through it.
func (c *cluster) faultProxy(rules ...*faultproxy.Rule) (*faultproxy.Proxy, string) {
	c.t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		c.t.Fatal(err)
	}
	p := faultproxy.New(c.t, cfg, rules...)
	return p, c.writeKubeconfig(p.Point)
}

// runBounded runs the step, reporting false if it outlasts limit (the run goes
// on in the background: a hang).
func (c *cluster) runBounded(limit time.Duration, spec func() step.Spec, kubeconfig string, args ...string) (stepRun, bool) {
	c.t.Helper()
	done := make(chan stepRun, 1)
	go func() { done <- c.run(spec(), kubeconfig, args...) }()
	select {
	case r := <-done:
		return r, true
	case <-time.After(limit):
		return stepRun{code: -1}, false
	}
}
