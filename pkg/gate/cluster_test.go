package gate

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/syncbuf"
	"github.com/chartreuse-go/chartreuse/test/waitfor"
)

// The tests run the gate step's code in process against the real API server of
// test/kubeenv, each in a namespace of its own, with real (pending) PipelineRuns
// as holders: Tekton's CRDs are created from its module when the cluster lacks
// them. A pending run is never started, but a Tekton controller that runs in
// the cluster (the shared one has it once e2e installed it) marks it pending;
// see awaitPendingMark.

const secret = "app-database"

type cluster struct {
	t          *testing.T
	env        *kubeenv.Env
	cs         kubernetes.Interface
	dyn        dynamic.Interface
	ns         string
	kubeconfig string
	identity   string // a kubeconfig the step runs with instead of the admin's
	tekton     bool   // a Tekton controller runs in the cluster
	noSecret   bool   // run passes no --database-secret (runArgs)
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	env := kubeenv.Shared(t)
	cfg, err := env.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := env.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ensureTektonCRDs(t, dyn)
	return &cluster{t: t, env: env, cs: cs, dyn: dyn, ns: env.NewNamespace(t), kubeconfig: env.Kubeconfig, tekton: tektonRuns(t, cs)}
}

var crdOnce sync.Once

// ensureTektonCRDs creates the PipelineRun and TaskRun CRDs from the Tekton
// module when the cluster has none (it never changes existing ones).
func ensureTektonCRDs(t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	crdOnce.Do(func() {
		crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		dir := ""
		for _, f := range []string{"300-pipelinerun.yaml", "300-taskrun.yaml"} {
			name := map[string]string{"300-pipelinerun.yaml": "pipelineruns.tekton.dev", "300-taskrun.yaml": "taskruns.tekton.dev"}[f]
			if _, err := crds.Get(ctx, name, metav1.GetOptions{}); err == nil {
				continue
			} else if !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
			if dir == "" {
				out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/tektoncd/pipeline").Output()
				if err != nil {
					t.Fatalf("finding the Tekton module: %v", err)
				}
				dir = strings.TrimSpace(string(out))
			}
			b, err := os.ReadFile(filepath.Join(dir, "config", "300-crds", f))
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(b, &u.Object); err != nil {
				t.Fatal(err)
			}
			if _, err := crds.Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
			for {
				c, err := crds.Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				conds, _, _ := unstructured.NestedSlice(c.Object, "status", "conditions")
				established := false
				for _, x := range conds {
					if m, _ := x.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
						established = true
					}
				}
				if established {
					break
				}
				if err := sleep(ctx, 200*time.Millisecond); err != nil {
					t.Fatalf("CRD %s not established: %v", name, err)
				}
			}
		}
	})
}

// pipelineRun creates a PipelineRun that stays pending (never started), giving
// the one parameter its Pipeline declares.
func (c *cluster) pipelineRun(name string) *unstructured.Unstructured {
	c.t.Helper()
	return c.pipelineRunWith(name, []string{"database-secret"}, []string{"database-secret", "image"})
}

// pipelineRunWith creates a pending PipelineRun that sets the parameters given,
// and puts in its status, as Tekton's reconciler does for a run it starts, the
// resolved Pipeline declaring the parameters declared.
func (c *cluster) pipelineRunWith(name string, given, declared []string) *unstructured.Unstructured {
	c.t.Helper()
	return c.newPipelineRun(name, given, declared, map[string]any{"pipeline": "0"})
}

// newPipelineRun is pipelineRunWith with the run's spec.timeouts (nil: none,
// so that Tekton's webhook, if it runs, fills in its default).
func (c *cluster) newPipelineRun(name string, given, declared []string, timeouts map[string]any) *unstructured.Unstructured {
	c.t.Helper()
	params := func(names []string, value bool) []any {
		var out []any
		for _, n := range names {
			p := map[string]any{"name": n, "type": "string"}
			if value {
				p = map[string]any{"name": n, "value": "hunter2-" + n}
			}
			out = append(out, p)
		}
		return out
	}
	spec := map[string]any{
		"params": params(declared, false),
		"tasks": []any{map[string]any{
			"name": "t", "taskSpec": map[string]any{"steps": []any{map[string]any{"name": "s", "image": "chartreuse.invalid/none"}}},
		}},
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{
			"status":       "PipelineRunPending",
			"params":       params(given, true),
			"pipelineSpec": spec,
		},
	}}
	if timeouts != nil {
		_ = unstructured.SetNestedMap(u.Object, timeouts, "spec", "timeouts")
	}
	ctx := c.t.Context()
	if _, err := c.dyn.Resource(PipelineRuns).Namespace(c.ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	// After the controller's mark: it writes no more status on a pending run.
	c.awaitPendingMark(PipelineRuns, name, "PipelineRunPending")
	return c.ensureResolved(name)
}

// ensureResolved puts the run's spec.pipelineSpec into its status, as Tekton's
// reconciler does for a run it starts, unless it is there. A Tekton controller
// that became ready after the test began writes its pending mark over the
// status (ci23: the gate then found no status.pipelineSpec), so run puts it back
// before every step and keeps it there while the step runs.
func (c *cluster) ensureResolved(name string) *unstructured.Unstructured {
	c.t.Helper()
	pr, err := c.resolve(c.t.Context(), name)
	if err != nil {
		c.t.Fatal(err)
	}
	return pr
}

func (c *cluster) resolve(ctx context.Context, name string) (*unstructured.Unstructured, error) {
	for {
		cur, err := c.dyn.Resource(PipelineRuns).Namespace(c.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		if _, found, _ := unstructured.NestedMap(cur.Object, "status", "pipelineSpec"); found {
			return cur, nil
		}
		spec, _, _ := unstructured.NestedMap(cur.Object, "spec", "pipelineSpec")
		_ = unstructured.SetNestedMap(cur.Object, runtime.DeepCopyJSON(spec), "status", "pipelineSpec")
		pr, err := c.dyn.Resource(PipelineRuns).Namespace(c.ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		return pr, err
	}
}

// keepResolved puts the resolved Pipeline back into the run's status whenever
// it goes missing, until stop is called: the controller's late pending mark can
// also land while the step runs (stop CI on 0f2afad: TestClusterTakeOverVanishedHolder
// found no status.pipelineSpec for 30 s).
func (c *cluster) keepResolved(name string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := c.resolve(ctx, name); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
				c.t.Logf("keeping %s's status.pipelineSpec: %v", name, err)
			}
			if sleep(ctx, 100*time.Millisecond) != nil {
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}

// tektonRuns says whether a Tekton controller runs in the cluster.
func tektonRuns(t *testing.T, cs kubernetes.Interface) bool {
	t.Helper()
	d, err := cs.AppsV1().Deployments("tekton-pipelines").Get(t.Context(), "tekton-pipelines-controller", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return d.Status.ReadyReplicas > 0
}

// awaitPendingMark waits, when a Tekton controller runs, until it has written
// its first status on the run (a Succeeded condition with reason). Until then a
// final status the test writes can be lost: the controller's status write
// after a conflict puts its own status, computed from the copy it read, over
// the latest object (ci on ddd7a2e: TestClusterTakeOverFinishedHolder's
// Cancelled run turned back to pending). Once the mark is there, reconciling
// a pending run or a cancelled TaskRun changes nothing, so the controller
// writes no more.
func (c *cluster) awaitPendingMark(gvr schema.GroupVersionResource, name, reason string) {
	c.t.Helper()
	if !c.tekton {
		return
	}
	ctx, cancel := context.WithTimeout(c.t.Context(), 3*time.Minute)
	defer cancel()
	for {
		cur, err := c.dyn.Resource(gvr).Namespace(c.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			c.t.Fatalf("reading %s %s: %v", gvr.Resource, name, err)
		}
		conds, _, _ := unstructured.NestedSlice(cur.Object, "status", "conditions")
		for _, x := range conds {
			if m, _ := x.(map[string]any); m["type"] == "Succeeded" && m["reason"] == reason {
				return
			}
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			c.t.Fatalf("the Tekton controller did not mark %s %s %s: %v", gvr.Resource, name, reason, err)
		}
	}
}

// finish gives the PipelineRun a final Succeeded condition.
func (c *cluster) finish(pr *unstructured.Unstructured, status, reason string) {
	c.t.Helper()
	ctx := c.t.Context()
	for {
		cur, err := c.dyn.Resource(PipelineRuns).Namespace(c.ns).Get(ctx, pr.GetName(), metav1.GetOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		_ = unstructured.SetNestedSlice(cur.Object, []any{map[string]any{
			"type": "Succeeded", "status": status, "reason": reason, "lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
		}}, "status", "conditions")
		_, err = c.dyn.Resource(PipelineRuns).Namespace(c.ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			c.t.Fatal(err)
		}
		return
	}
}

// pod creates a pod of the run (Tekton's labels) that never starts: no scheduler
// answers to its schedulerName, so it stays Pending (running, as far as the gate
// can tell), and no kubelet is involved in its life.
func (c *cluster) pod(pr *unstructured.Unstructured, taskRun string) string {
	c.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "tr-", Labels: map[string]string{labelRunUID: string(pr.GetUID()), labelTaskRun: taskRun}},
		Spec: corev1.PodSpec{
			SchedulerName:                 "chartreuse-test-no-scheduler",
			Containers:                    []corev1.Container{{Name: "step", Image: "chartreuse.invalid/never-pulled:1", ImagePullPolicy: corev1.PullNever}},
			TerminationGracePeriodSeconds: new(int64),
		},
	}
	created, err := c.cs.CoreV1().Pods(c.ns).Create(c.t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return created.Name
}

func (c *cluster) deletePod(name string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), time.Minute)
	defer cancel()
	if err := c.cs.CoreV1().Pods(c.ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		c.t.Fatal(err)
	}
	for {
		_, err := c.cs.CoreV1().Pods(c.ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			c.t.Fatalf("pod %s not gone: %v", name, err)
		}
	}
}

func (c *cluster) lease() *coordinationv1.Lease {
	c.t.Helper()
	ls, err := c.cs.CoordinationV1().Leases(c.ns).Get(c.t.Context(), LeaseName(secret), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return ls
}

func (c *cluster) wantHolder(pr *unstructured.Unstructured) {
	c.t.Helper()
	ls := c.lease()
	if pr == nil {
		if ls != nil {
			c.t.Fatalf("the gate is held by %v, want free", holderOf(ls))
		}
		return
	}
	if ls == nil {
		c.t.Fatalf("the gate is free, want it held by %s", pr.GetName())
	}
	if h := holderOf(ls); h.uid != string(pr.GetUID()) || h.run != pr.GetName() {
		c.t.Fatalf("the gate is held by %+v, want %s (%s)", h, pr.GetName(), pr.GetUID())
	}
	if o := ls.OwnerReferences; len(o) != 0 {
		c.t.Fatalf("owner references %+v, want none (the collector would free the gate before the run's pods stop)", o)
	}
}

type stepRun struct {
	code    int
	summary results.Summary
	stderr  string
}

// run runs the gate step for the PipelineRun pr.
func (c *cluster) run(pr *unstructured.Unstructured, stderr *syncbuf.Buffer, args ...string) stepRun {
	c.t.Helper()
	if stderr == nil {
		stderr = &syncbuf.Buffer{}
	}
	full := []string{"gate", "--skip-version-check", "--kubeconfig", c.kubeconfig, "--namespace", c.ns, "--poll-interval", "100ms"}
	if c.identity != "" {
		full[3] = c.identity
	}
	name := "no PipelineRun"
	if pr != nil { // nil: the arguments name the run (settle)
		c.ensureResolved(pr.GetName())
		defer c.keepResolved(pr.GetName())()
		if !slices.Contains(args, "--database-secrets-file") && !c.noSecret {
			full = append(full, "--database-secret", secret)
		}
		full = append(full, "--run-name", pr.GetName(), "--run-uid", string(pr.GetUID()))
		name = pr.GetName()
	}
	full = append(full, args...)
	var out bytes.Buffer
	// Bounded: a step that hangs fails its test instead of the package's timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	code := step.Run(ctx, Spec(), full, &out, stderr)
	r := stepRun{code: code, stderr: stderr.String()}
	if err := json.Unmarshal(out.Bytes(), &r.summary); err != nil {
		c.t.Fatalf("stdout is not the JSON summary: %q (%v)", out.String(), err)
	}
	c.t.Logf("gate %s for %s: exit %d %s", strings.Join(args, " "), name, code, r.summary.Error)
	return r
}

func (c *cluster) mustRun(want int, pr *unstructured.Unstructured, args ...string) stepRun {
	c.t.Helper()
	r := c.run(pr, nil, args...)
	if r.code != want {
		c.t.Fatalf("gate %v exited %d, want %d: %s\nstderr:\n%s", args, r.code, want, r.summary.Error, r.stderr)
	}
	return r
}

func wantLog(t *testing.T, r stepRun, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(r.stderr, p) {
			t.Errorf("the log does not say %q:\n%s", p, r.stderr)
		}
	}
}

func TestClusterAcquireAndRelease(t *testing.T) {
	c := newCluster(t)
	a := c.pipelineRun("run-a")
	wantLog(t, c.mustRun(0, a), "gate taken")
	c.wantHolder(a)
	// A retried attempt of the same run proceeds.
	wantLog(t, c.mustRun(0, a), "gate already held by this run")
	c.wantHolder(a)
	wantLog(t, c.mustRun(0, a, "--action", "release"), "gate released")
	c.wantHolder(nil)
	// Released twice (a retried finally task): nothing to do.
	wantLog(t, c.mustRun(0, a, "--action", "release"), "nothing to release")
}

// A run that never got the gate must not free another's.
// A parameter the Pipeline does not declare (Tekton passes it on silently: a
// misspelt name, or Argo's databases list) fails acquire with exit 2 before the
// gate is taken, naming the names and never their values.
// A run-level timeout would stop a migration or finally's restore when it
// expires: refused before the gate is taken, whatever else the run sets.
func TestClusterRunTimeoutRefused(t *testing.T) {
	c := newCluster(t)
	given, declared := []string{"database-secret"}, []string{"database-secret", "image"}
	for _, tc := range []struct {
		name     string
		timeouts map[string]any
		want     string // "" when the run proceeds
	}{
		{"none", nil, "(timeouts.pipeline "},
		{"an hour", map[string]any{"pipeline": "1h"}, "(timeouts.pipeline 1h"},
		{"finally", map[string]any{"pipeline": "0", "finally": "5m"}, "(timeouts.finally 5m"},
		{"tasks only", map[string]any{"pipeline": "0", "tasks": "10m"}, ""},
		{"zero spelt out", map[string]any{"pipeline": "0s", "finally": "0h"}, ""},
	} {
		// One after another on the test's cluster (c fails the parent test).
		pr := c.newPipelineRun("run-"+strings.ReplaceAll(tc.name, " ", "-"), given, declared, tc.timeouts)
		if tc.want == "" {
			c.mustRun(0, pr)
			c.mustRun(0, pr, "--action", "release")
			continue
		}
		r := c.mustRun(failure.CodeUsage, pr)
		for _, want := range []string{tc.want, "run-level timeout", "--pipeline-timeout 0", "nothing was changed"} {
			if !strings.Contains(r.summary.Error, want) {
				t.Errorf("%s: the error does not say %q: %s", tc.name, want, r.summary.Error)
			}
		}
		c.wantHolder(nil)
	}
}

func TestClusterUnknownParametersRefused(t *testing.T) {
	c := newCluster(t)
	pr := c.pipelineRunWith("run-typo", []string{"database-secret", "on-migrate-falure", "databases"}, []string{"database-secret", "image"})
	r := c.mustRun(2, pr)
	for _, want := range []string{"unknown parameters databases, on-migrate-falure: ", "start one PipelineRun per database", "nothing was changed"} {
		if !strings.Contains(r.summary.Error, want) {
			t.Errorf("error %q does not say %q", r.summary.Error, want)
		}
	}
	if strings.Contains(r.summary.Error+r.stderr, "hunter2") {
		t.Errorf("a parameter's value is shown: %q\n%s", r.summary.Error, r.stderr)
	}
	c.wantHolder(nil)
}

func TestClusterReleaseLeavesAnotherRunsGate(t *testing.T) {
	c := newCluster(t)
	a, b := c.pipelineRun("run-a"), c.pipelineRun("run-b")
	c.mustRun(0, a)
	wantLog(t, c.mustRun(0, b, "--action", "release"), "not this run's to release")
	c.wantHolder(a)
}

// While a live run holds the gate, another waits and gives up with exit 75,
// naming the holder.
func TestClusterTimeoutNamesTheHolder(t *testing.T) {
	c := newCluster(t)
	a, b := c.pipelineRun("run-a"), c.pipelineRun("run-b")
	c.mustRun(0, a)
	r := c.mustRun(failure.CodeTransient, b, "--timeout", "1s")
	if !strings.Contains(r.summary.Error, "held by PipelineRun run-a") || strings.Contains(r.summary.Error, "\n") {
		t.Errorf("error %q: want one line naming PipelineRun run-a", r.summary.Error)
	}
	wantLog(t, r, "waiting for the gate: its PipelineRun is running")
	c.wantHolder(a)
}

// A run waiting for the gate takes it as soon as the holder releases it.
func TestClusterWaitThenTakeAfterRelease(t *testing.T) {
	c := newCluster(t)
	a, b := c.pipelineRun("run-a"), c.pipelineRun("run-b")
	c.mustRun(0, a)
	log := &syncbuf.Buffer{}
	done := make(chan stepRun, 1)
	go func() { done <- c.run(b, log, "--timeout", "3m") }()
	waitFor(t, func() bool { return strings.Contains(log.String(), "waiting for the gate") })
	c.wantHolder(a)
	c.mustRun(0, a, "--action", "release")
	r := <-done
	if r.code != 0 {
		t.Fatalf("the waiting run exited %d: %s\n%s", r.code, r.summary.Error, r.stderr)
	}
	wantLog(t, r, "gate taken")
	c.wantHolder(b)
}

// Several runs that start at the same moment: exactly one takes the gate.
func TestClusterOneOfManyAtOnce(t *testing.T) {
	c := newCluster(t)
	runs := make([]*unstructured.Unstructured, 4)
	for i := range runs {
		runs[i] = c.pipelineRun("run-" + string(rune('a'+i)))
	}
	codes := make([]int, len(runs))
	var wg sync.WaitGroup
	for i, pr := range runs {
		wg.Go(func() { codes[i] = c.run(pr, nil, "--timeout", "2s").code })
	}
	wg.Wait()
	var winner *unstructured.Unstructured
	for i, code := range codes {
		switch code {
		case 0:
			if winner != nil {
				t.Fatalf("both %s and %s took the gate", winner.GetName(), runs[i].GetName())
			}
			winner = runs[i]
		case failure.CodeTransient:
		default:
			t.Errorf("%s exited %d", runs[i].GetName(), code)
		}
	}
	if winner == nil {
		t.Fatal("no run took the gate")
	}
	c.wantHolder(winner)
}

// A holder whose PipelineRun finished is stale, but only once its TaskRuns'
// pods have stopped (a cancelled run's pods take their grace period).
func TestClusterTakeOverFinishedHolder(t *testing.T) {
	c := newCluster(t)
	a, b := c.pipelineRun("run-a"), c.pipelineRun("run-b")
	c.mustRun(0, a)
	pod := c.pod(a, "run-a-migrate")
	c.finish(a, "False", "Cancelled")
	r := c.mustRun(failure.CodeTransient, b, "--timeout", "1s")
	wantLog(t, r, "its PipelineRun finished (Cancelled); waiting for pod "+pod+" to stop")
	c.wantHolder(a)
	c.deletePod(pod)
	r = c.mustRun(0, b)
	wantLog(t, r, "taking the gate over from a run that is done: its PipelineRun finished (Cancelled)", "gate taken")
	c.wantHolder(b)
}

// A holder whose PipelineRun is gone is stale.
func TestClusterTakeOverVanishedHolder(t *testing.T) {
	c := newCluster(t)
	b := c.pipelineRun("run-b")
	uid := "0b0e6a51-0000-4000-8000-000000000000"
	_, err := c.cs.CoordinationV1().Leases(c.ns).Create(t.Context(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: LeaseName(secret), Annotations: map[string]string{AnnotationRun: "run-gone"}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &uid},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantLog(t, c.mustRun(0, b), "taking the gate over from a run that is done: its PipelineRun is gone", "holder=\"PipelineRun run-gone\"")
	c.wantHolder(b)
}

// Deleting the holder's PipelineRun frees the gate: a waiting run takes the
// stale Lease over once the run's pods have stopped.
func TestClusterDeletedHolderFreesTheGate(t *testing.T) {
	c := newCluster(t)
	a, b := c.pipelineRun("run-a"), c.pipelineRun("run-b")
	c.mustRun(0, a)
	if err := c.dyn.Resource(PipelineRuns).Namespace(c.ns).Delete(t.Context(), a.GetName(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.mustRun(0, b, "--timeout", "3m")
	c.wantHolder(b)
}

// A Lease this gate did not make (no PipelineRun named) is never taken over.
func TestClusterForeignLeaseIsNotTaken(t *testing.T) {
	c := newCluster(t)
	b := c.pipelineRun("run-b")
	who := "someone"
	if _, err := c.cs.CoordinationV1().Leases(c.ns).Create(t.Context(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: LeaseName(secret)},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &who},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := c.mustRun(failure.CodeTransient, b, "--timeout", "1s")
	if !strings.Contains(r.summary.Error, `holder "someone"`) {
		t.Errorf("error %q does not name the holder", r.summary.Error)
	}
}

// Release waits until the run's other TaskRuns and pods have stopped (Tekton runs
// finally tasks side by side); past its timeout it leaves the gate held.
func TestClusterReleaseWaitsForTheRunsOtherTasks(t *testing.T) {
	c := newCluster(t)
	a := c.pipelineRun("run-a")
	c.mustRun(0, a)
	own := c.pod(a, "run-a-release-gate")
	rollback := c.pod(a, "run-a-rollback")
	r := c.mustRun(0, a, "--action", "release", "--task-run", "run-a-release-gate", "--timeout", "1s")
	wantLog(t, r, "pod "+rollback, "the gate stays held")
	if strings.Contains(r.stderr, own) {
		t.Errorf("release waited for its own pod %s", own)
	}
	c.wantHolder(a)
	c.deletePod(rollback)
	wantLog(t, c.mustRun(0, a, "--action", "release", "--task-run", "run-a-release-gate"), "gate released")
	c.wantHolder(nil)
}

// A pod Tekton recreated under a TaskRun that has since finished (after an
// eviction Tekton may recreate the evicted pod and still retry the TaskRun in a
// new one) never gets the ready mark, so it never runs a step: release does
// not wait for it. Before, release waited for it until its timeout (the e2e
// evicted-migrate-is-retried hung so). A pod with the mark is waited for.
func TestClusterReleaseIgnoresAStalePodOfAFinishedTaskRun(t *testing.T) {
	c := newCluster(t)
	a := c.pipelineRun("run-a")
	c.mustRun(0, a)
	c.finishedTaskRun(a, "run-a-migrate")
	stale := c.pod(a, "run-a-migrate")
	r := c.mustRun(0, a, "--action", "release", "--task-run", "run-a-release-gate", "--timeout", "30s")
	wantLog(t, r, "gate released")
	if strings.Contains(r.stderr, stale) {
		t.Errorf("release named the stale pod %s:\n%s", stale, r.stderr)
	}
	c.wantHolder(nil)

	// The same pod with the ready mark ran a step: it holds the gate.
	c.mustRun(0, a)
	ran := c.pod(a, "run-a-migrate")
	p, err := c.cs.CoreV1().Pods(c.ns).Get(t.Context(), ran, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Annotations = map[string]string{annotationReady: readyValue}
	if _, err := c.cs.CoreV1().Pods(c.ns).Update(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r = c.mustRun(0, a, "--action", "release", "--task-run", "run-a-release-gate", "--timeout", "1s")
	wantLog(t, r, "pod "+ran, "the gate stays held")
	c.wantHolder(a)
}

// finishedTaskRun creates a TaskRun of the run, cancelled from the start, and
// gives it the final condition Tekton's controller gives a cancelled TaskRun
// (Succeeded False, TaskRunCancelled). A controller that reconciles it, even
// one installed meanwhile by another test or working from an older copy,
// arrives at the same finished state and creates no pod. (A pending TaskRun
// marked Succeeded by hand was turned back to pending by a controller whose
// status update crossed ours, in a full local run on a304e5d.)
func (c *cluster) finishedTaskRun(pr *unstructured.Unstructured, name string) {
	c.t.Helper()
	c.finishedTaskRunOf(pr, name, "", "")
}

// finishedTaskRunOf is finishedTaskRun for a TaskRun of the Pipeline task
// task, fanned out over the Secret secret (its param), as a matrix makes it.
func (c *cluster) finishedTaskRunOf(pr *unstructured.Unstructured, name, task, secret string) {
	c.t.Helper()
	c.endedTaskRunOf(pr, name, task, secret, false, nil)
}

// endedTaskRunOf creates a TaskRun of the run pr that ended, succeeded or not,
// with the results given.
func (c *cluster) endedTaskRunOf(pr *unstructured.Unstructured, name, task, secret string, ok bool, res map[string]string) {
	c.t.Helper()
	ctx := c.t.Context()
	labels := map[string]any{labelRunUID: string(pr.GetUID())}
	spec := map[string]any{
		"status":   "TaskRunCancelled",
		"taskSpec": map[string]any{"steps": []any{map[string]any{"name": "s", "image": "chartreuse.invalid/none"}}},
	}
	if task != "" {
		labels[labelPipelineTask] = task
		spec["params"] = []any{map[string]any{"name": "secret", "value": secret}}
		spec["taskSpec"].(map[string]any)["params"] = []any{map[string]any{"name": "secret", "type": "string"}}
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
		"metadata": map[string]any{"name": name, "labels": labels},
		"spec":     spec,
	}}
	if _, err := c.dyn.Resource(TaskRuns).Namespace(c.ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	// A running Tekton controller cancels it, and its write after a conflict
	// would put that status over the one written here (ci on 5e1785f: a-db's
	// succeeded migrate read back as failed): let it be first.
	c.awaitPendingMark(TaskRuns, name, "TaskRunCancelled")
	for {
		tr, err := c.dyn.Resource(TaskRuns).Namespace(c.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		if s, _ := succeeded(tr); s == string(metav1.ConditionFalse) && !ok && res == nil {
			return // the controller was first
		}
		cond := map[string]any{"type": "Succeeded", "status": "False", "reason": "TaskRunCancelled", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}
		if ok {
			cond["status"], cond["reason"] = "True", "Succeeded"
		}
		_ = unstructured.SetNestedSlice(tr.Object, []any{cond}, "status", "conditions")
		var rs []any
		for k, v := range res {
			rs = append(rs, map[string]any{"name": k, "type": "string", "value": v})
		}
		if rs != nil {
			_ = unstructured.SetNestedSlice(tr.Object, rs, "status", "results")
		}
		_ = unstructured.SetNestedField(tr.Object, "", "status", "podName") // required by the CRD's schema; a cancelled TaskRun has none
		_, err = c.dyn.Resource(TaskRuns).Namespace(c.ns).UpdateStatus(ctx, tr, metav1.UpdateOptions{})
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			c.t.Fatal(err)
		}
	}
}

// A Lease changed between the read and the delete is not deleted: the 409 sends
// the step back to read it again.
func TestClusterRemoveIsGuarded(t *testing.T) {
	c := newCluster(t)
	a := c.pipelineRun("run-a")
	c.mustRun(0, a)
	old := c.lease()
	changed := old.DeepCopy()
	changed.Annotations["touched"] = "yes"
	if _, err := c.cs.CoordinationV1().Leases(c.ns).Update(t.Context(), changed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	l := leaseClient{c.cs.CoordinationV1().Leases(c.ns)}
	gone, err := l.remove(t.Context(), old)
	if err != nil || !gone {
		t.Fatalf("remove of a changed Lease = %v, %v; want changed, no error", gone, err)
	}
	c.wantHolder(a)
	gone, err = l.remove(t.Context(), c.lease())
	if err != nil || gone {
		t.Fatalf("remove of the current Lease = %v, %v; want done", gone, err)
	}
	c.wantHolder(nil)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	waitfor.True(t, "the condition", 2*time.Minute, cond)
}

// retriedEarlier records on the TaskRun name an earlier attempt whose turn step
// wrote go (its retriesStatus), as Tekton does when it retries a TaskRun.
func (c *cluster) retriedEarlier(name, goBefore string) {
	c.t.Helper()
	ctx := c.t.Context()
	for {
		tr, err := c.dyn.Resource(TaskRuns).Namespace(c.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		attempt := map[string]any{
			"podName":    name + "-pod-retry0",
			"conditions": []any{map[string]any{"type": "Succeeded", "status": "False", "reason": "Failed", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}},
			"steps": []any{
				map[string]any{"name": "turn", "container": "step-turn", "results": []any{map[string]any{"name": "go", "type": "string", "value": goBefore}}},
				map[string]any{"name": "migrate", "container": "step-migrate"},
			},
		}
		_ = unstructured.SetNestedSlice(tr.Object, []any{attempt}, "status", "retriesStatus")
		if _, err = c.dyn.Resource(TaskRuns).Namespace(c.ns).UpdateStatus(ctx, tr, metav1.UpdateOptions{}); err == nil {
			return
		} else if !apierrors.IsConflict(err) {
			c.t.Fatal(err)
		}
	}
}
