package kube

import (
	"bytes"
	"context"
	"fmt"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
	"github.com/chartreuse-go/chartreuse/test/faults/kit"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/kubeobj"
)

// cluster is one test's namespace, a ServiceAccount with the steps' documented
// Role, and its kubeconfig (token credentials, scanned for in every output).
type cluster struct {
	t          *testing.T
	env        *kubeenv.Env
	cs         kubernetes.Interface
	ns         string
	kubeconfig string
	token      string
	secrets    *kit.Secrets
	originals  map[string]int32
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("fault test against a real cluster (skipped with -short)")
	}
	env := kubeenv.Shared(t)
	ns := env.NewNamespace(t)
	cs, err := env.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, env: env, cs: cs, ns: ns, secrets: kit.NewSecrets(t), originals: map[string]int32{}}
	c.token, err = kubeobj.ServiceAccount(context.Background(), cs, ns, "chartreuse-steps", kubeobj.ScaleRules())
	if err != nil {
		t.Fatal(err)
	}
	c.secrets.Add(c.token)
	c.kubeconfig = c.writeKubeconfig("")
	return c
}

// writeKubeconfig is the ServiceAccount's kubeconfig, with server (if not empty)
// as the API server's address.
func (c *cluster) writeKubeconfig(server string) string {
	c.t.Helper()
	path, err := kubeobj.Kubeconfig(c.env.Kubeconfig, c.t.TempDir(), server, c.token)
	if err != nil {
		c.t.Fatal(err)
	}
	return path
}

// deployments creates n Deployments labelled set=faults; replicas(i) gives each
// its replicas, remembered as the originals.
func (c *cluster) deployments(n int, replicas func(i int) int32, delay time.Duration) {
	c.t.Helper()
	ctx := context.Background()
	for i := range n {
		name := fmt.Sprintf("w%03d", i)
		app := kubeobj.App{Name: name, Image: c.env.AppImage, Replicas: replicas(i), Labels: map[string]string{"set": "faults"}, ShutdownDelay: delay, Grace: 10}
		if _, err := c.cs.AppsV1().Deployments(c.ns).Create(ctx, app.Deployment(), metaCreate); err != nil {
			c.t.Fatal(err)
		}
		c.originals[name] = app.Replicas
	}
}

// run runs a step in process as its binary would, with ctx (cancel it to
// interrupt), and records the output for the secret scan. A panic of the step
// fails the test (exit code -2) instead of ending the whole test binary.
func (c *cluster) run(ctx context.Context, spec step.Spec, kubeconfig string, args ...string) (code int, stderr string) {
	if kubeconfig == "" {
		kubeconfig = c.kubeconfig
	}
	full := append([]string{spec.Name, "--skip-version-check", "--kubeconfig", kubeconfig, "--namespace", c.ns,
		"--run-id", "faults", "--progress-interval", "2s", "--log-level", "debug"}, args...)
	var out, errOut bytes.Buffer
	defer func() {
		c.secrets.Record(spec.Name+" "+strings.Join(args, " "), out.String()+errOut.String())
		if r := recover(); r != nil {
			c.t.Errorf("%s panicked: %v\n%s", spec.Name, r, debug.Stack())
			code, stderr = -2, errOut.String()+fmt.Sprintf("\npanic: %v", r)
		}
	}()
	code = step.Run(ctx, spec, full, &out, &errOut)
	return code, errOut.String()
}

// down and restore run the steps on the test's Deployments.
func (c *cluster) down(ctx context.Context, kubeconfig string) (int, string) {
	return c.run(ctx, workload.ScaleDownSpec(), kubeconfig, "--selector", "set=faults", "--timeout", "2m")
}

func (c *cluster) restore(ctx context.Context, kubeconfig string) (int, string) {
	return c.run(ctx, workload.ScaleRestoreSpec(), kubeconfig, "--selector", "set=faults", "--timeout", "2m")
}

// until reruns f until it exits 0 (at most tries times); every run must exit 0 or 75.
func (c *cluster) until(what string, tries int, f func() (int, string)) int {
	c.t.Helper()
	for i := 1; i <= tries; i++ {
		code, stderr := f()
		switch code {
		case 0:
			return i
		case 75:
			c.t.Logf("%s: run %d exited 75: %s", what, i, lastLine(stderr))
		default:
			c.t.Fatalf("%s: run %d exited %d, want 0 or 75:\n%s", what, i, code, stderr)
		}
	}
	c.t.Fatalf("%s: no run out of %d exited 0", what, tries)
	return 0
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// invariant checks what must hold after any run, finished or not: a workload that
// carries a record carries its original replicas there; one without a record has
// its original replicas.
func (c *cluster) invariant(when string) {
	c.t.Helper()
	ctx := context.Background()
	var bad []string
	for _, name := range c.names() {
		orig := c.originals[name]
		replicas, rec, has, err := kit.Replicas(ctx, c.cs, c.ns, name)
		if err != nil {
			c.t.Fatal(err)
		}
		switch {
		case has && rec != strconv.Itoa(int(orig)):
			bad = append(bad, fmt.Sprintf("%s records %q, original %d", name, rec, orig))
		case !has && replicas != orig:
			bad = append(bad, fmt.Sprintf("%s has %d replicas and no record, original %d", name, replicas, orig))
		}
	}
	if len(bad) > 0 {
		c.t.Fatalf("%s: recorded replica counts lost: %s", when, strings.Join(bad, "; "))
	}
}

// restored checks the end state: original replicas, no record.
func (c *cluster) restored() {
	c.t.Helper()
	ctx := context.Background()
	var bad []string
	for _, name := range c.names() {
		replicas, rec, has, err := kit.Replicas(ctx, c.cs, c.ns, name)
		if err != nil {
			c.t.Fatal(err)
		}
		if has || replicas != c.originals[name] {
			bad = append(bad, fmt.Sprintf("%s: %d replicas (original %d), record %q present=%v", name, replicas, c.originals[name], rec, has))
		}
	}
	if len(bad) > 0 {
		c.t.Fatalf("not restored exactly: %s", strings.Join(bad, "; "))
	}
}

// stopped checks the state after a finished scale-down: 0 replicas, the original
// recorded, no pod left.
func (c *cluster) stopped() {
	c.t.Helper()
	ctx := context.Background()
	var bad []string
	for _, name := range c.names() {
		replicas, rec, has, err := kit.Replicas(ctx, c.cs, c.ns, name)
		if err != nil {
			c.t.Fatal(err)
		}
		// A Deployment already at 0 may carry no record: scale-down leaves one alone
		// once its controller has seen the 0.
		recordOK := (has && rec == strconv.Itoa(int(c.originals[name]))) || (!has && c.originals[name] == 0)
		if !recordOK || replicas != 0 {
			bad = append(bad, fmt.Sprintf("%s: %d replicas, record %q present=%v (original %d)", name, replicas, rec, has, c.originals[name]))
		}
	}
	if n, err := kubeobj.LivePods(ctx, c.cs, c.ns, "set=faults"); err != nil || n > 0 {
		bad = append(bad, fmt.Sprintf("%d pods left (%v)", n, err))
	}
	if len(bad) > 0 {
		c.t.Fatalf("not stopped: %s", strings.Join(bad, "; "))
	}
}

func (c *cluster) names() []string {
	var names []string
	for n := range c.originals {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// editor patches the test's Deployments in a loop (without resourceVersion, as
// kubectl label/annotate or a GitOps tool does), so that the steps' guarded
// writes meet 409 conflicts: a label 25 times a second, an annotation once a
// second. Annotations more often starve the deployment controller whoever the
// client is: an annotation change bumps the Deployment's generation and the
// controller copies it to the ReplicaSet, so under a stream of them it meets
// conflicts itself and never reports the Deployment scaled (seen here: generation
// 226, observedGeneration 1). stop ends it and returns the number of edits made.
func (c *cluster) editor() (stop func() int64) {
	var (
		edits atomic.Int64
		wg    sync.WaitGroup
		done  = make(chan struct{})
	)
	names := c.names()
	for w := range 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			tick := time.NewTicker(40 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				name := names[(i+w)%len(names)]
				patch := fmt.Sprintf(`{"metadata":{"labels":{"touched":"e%d"}}}`, i)
				if i%25 == 0 {
					patch = fmt.Sprintf(`{"metadata":{"labels":{"touched":"e%d"},"annotations":{"example.com/touched":"%d"}}}`, i, i)
				}
				if _, err := c.cs.AppsV1().Deployments(c.ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metaPatch); err == nil {
					edits.Add(1)
				}
			}
		}()
	}
	return func() int64 {
		close(done)
		wg.Wait()
		return edits.Load()
	}
}

func replicasOf(c *cluster, name string) (int32, string, bool, error) {
	return kit.Replicas(context.Background(), c.cs, c.ns, name)
}
