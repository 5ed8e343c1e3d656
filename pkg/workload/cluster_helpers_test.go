package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/kubeobj"
	"github.com/chartreuse-go/chartreuse/test/waitfor"
)

// cluster is one test's namespace in the real cluster.
type cluster struct {
	t          *testing.T
	env        *kubeenv.Env
	cs         kubernetes.Interface
	ns         string
	kubeconfig string // admin
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("real-cluster test (skipped with -short)")
	}
	env := kubeenv.Shared(t)
	ns := env.NewNamespace(t)
	cs, err := env.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{t: t, env: env, cs: cs, ns: ns, kubeconfig: env.Kubeconfig}
}

// stepRun is one run of a step binary's code, in process, as the workflow runs it.
type stepRun struct {
	code    int
	summary results.Summary
	stderr  string
	results map[string]string
	took    time.Duration
}

func (r stepRun) workloads(t *testing.T) []string {
	t.Helper()
	var ws []string
	if err := json.Unmarshal([]byte(r.results[ResultWorkloads]), &ws); err != nil {
		t.Fatalf("workloads result %q: %v", r.results[ResultWorkloads], err)
	}
	return ws
}

// run runs spec with the admin kubeconfig (or kubeconfig, when given) in the test's namespace.
func (c *cluster) run(spec step.Spec, kubeconfig string, args ...string) stepRun {
	c.t.Helper()
	if kubeconfig == "" {
		kubeconfig = c.kubeconfig
	}
	dir := c.t.TempDir()
	full := append([]string{spec.Name, "--skip-version-check", "--kubeconfig", kubeconfig, "--namespace", c.ns,
		"--results-dir", dir, "--run-id", "wf-" + c.ns, "--progress-interval", "2s"}, args...)
	var out, errOut bytes.Buffer
	start := time.Now()
	code := step.Run(context.Background(), spec, full, &out, &errOut)
	r := stepRun{code: code, stderr: errOut.String(), took: time.Since(start), results: map[string]string{}}
	if err := json.Unmarshal(out.Bytes(), &r.summary); err != nil {
		c.t.Fatalf("stdout is not the JSON summary: %q (%v)", out.String(), err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		r.results[e.Name()] = string(b)
	}
	c.t.Logf("%s %s: exit %d in %s", spec.Name, strings.Join(args, " "), code, r.took.Round(time.Millisecond))
	return r
}

// mustRun runs and fails the test unless the exit code is want.
func (c *cluster) mustRun(want int, spec step.Spec, kubeconfig string, args ...string) stepRun {
	c.t.Helper()
	r := c.run(spec, kubeconfig, args...)
	if r.code != want {
		c.t.Fatalf("%s exited %d, want %d: %s\nstderr:\n%s", spec.Name, r.code, want, r.summary.Error, r.stderr)
	}
	return r
}

type appOpts struct {
	labels, annotations map[string]string
	shutdownDelay       time.Duration // APP_SHUTDOWN_DELAY: Terminating that long after SIGTERM
	grace               int64
}

// podTemplate is the test app's pod template (test/kubeobj, shared with the
// fault and bad-input tests) with the labels app=<app> and o.labels.
func (c *cluster) podTemplate(app string, o appOpts) corev1.PodTemplateSpec {
	return kubeobj.App{Name: app, Image: c.env.AppImage, Labels: o.labels, ShutdownDelay: o.shutdownDelay, Grace: o.grace}.PodTemplate()
}

func (c *cluster) deployment(name string, replicas int32, o appOpts) *appsv1.Deployment {
	c.t.Helper()
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: o.labels, Annotations: o.annotations},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: c.podTemplate(name, o),
		},
	}
	d, err := c.cs.AppsV1().Deployments(c.ns).Create(context.Background(), d, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

// heldCronJob creates a CronJob that never fires and a suspended Job of it:
// scale-down waits for that Job, which never starts a pod, until the test
// deletes it (the Job is returned for that).
func (c *cluster) heldCronJob(name string, labels, annotations map[string]string) *batchv1.Job {
	c.t.Helper()
	ctx := context.Background()
	jobPod := c.podTemplate(name, appOpts{})
	jobPod.Spec.RestartPolicy = corev1.RestartPolicyNever
	cj, err := c.cs.BatchV1().CronJobs(c.ns).Create(ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
		Spec:       batchv1.CronJobSpec{Schedule: "0 0 1 1 *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: jobPod}}},
	}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-manual", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "batch/v1", Kind: "CronJob", Name: cj.Name, UID: cj.UID, Controller: ptr.To(true)}}},
		Spec: batchv1.JobSpec{Suspend: ptr.To(true), Template: jobPod},
	}
	if job, err = c.cs.BatchV1().Jobs(c.ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	return job
}

func (c *cluster) getDeployment(name string) *appsv1.Deployment {
	c.t.Helper()
	d, err := c.cs.AppsV1().Deployments(c.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

// livePods lists the pods matching selector that still count: not Succeeded or
// Failed (Terminating ones count).
func (c *cluster) livePods(selector string) []string {
	c.t.Helper()
	l, err := c.cs.CoreV1().Pods(c.ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		c.t.Fatal(err)
	}
	var out []string
	for _, p := range l.Items {
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			out = append(out, fmt.Sprintf("%s(%s,deleting=%v)", p.Name, p.Status.Phase, p.DeletionTimestamp != nil))
		}
	}
	return out
}

// waitFor polls cond (tests may poll; the steps never do).
func (c *cluster) waitFor(what string, timeout time.Duration, cond func() (bool, string)) {
	c.t.Helper()
	var state string
	if err := waitfor.Until(c.t.Context(), 500*time.Millisecond, timeout, func() bool {
		var ok bool
		ok, state = cond()
		return ok
	}); err != nil {
		c.t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, state)
	}
}

// waitRunning waits until exactly n pods match selector and all are Running and ready.
func (c *cluster) waitRunning(selector string, n int, timeout time.Duration) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("%d running pods %s", n, selector), timeout, func() (bool, string) {
		l, err := c.cs.CoreV1().Pods(c.ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, p := range l.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				for _, cond := range p.Status.Conditions {
					if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
		}
		return ready == n && len(l.Items) == n, fmt.Sprintf("%d of %d pods ready", ready, len(l.Items))
	})
}

func (c *cluster) eventsFor(reason string) map[string]int {
	c.t.Helper()
	l, err := c.cs.CoreV1().Events(c.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range l.Items {
		if e.Reason == reason {
			out[strings.ToLower(e.InvolvedObject.Kind)+"/"+e.InvolvedObject.Name]++
		}
	}
	return out
}

// serviceAccountKubeconfig: a kubeconfig of the ServiceAccount name, bound to role.
func (c *cluster) serviceAccountKubeconfig(name string, role *rbacv1.Role) string {
	c.t.Helper()
	return c.env.ServiceAccountKubeconfig(c.t, c.ns, name, role)
}

// writeKubeconfig writes a changed copy of the admin kubeconfig.
func (c *cluster) writeKubeconfig(change func(*clientcmdapi.Config)) string {
	c.t.Helper()
	return c.env.WriteKubeconfig(c.t, change)
}

// scaleRole is the Role of rbac/role.yaml, optionally without some verbs.
func scaleRole(t *testing.T, dropVerbs ...string) *rbacv1.Role {
	t.Helper()
	var role rbacv1.Role
	if err := yaml.UnmarshalStrict(RoleYAML, &role); err != nil {
		t.Fatalf("rbac/role.yaml: %v", err)
	}
	drop := map[string]bool{}
	for _, v := range dropVerbs {
		drop[v] = true
	}
	var rules []rbacv1.PolicyRule
	for _, r := range role.Rules {
		var verbs []string
		for _, v := range r.Verbs {
			if !drop[v] {
				verbs = append(verbs, v)
			}
		}
		if len(verbs) > 0 {
			r.Verbs = verbs
			rules = append(rules, r)
		}
	}
	role.Rules = rules
	return &role
}

// flakyProxy is a TCP proxy in front of the API server that a test can cut: the
// client sees what an API server restart looks like (connections reset, then
// refused), while the cluster itself keeps running.
type flakyProxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func newFlakyProxy(t *testing.T, target string) *flakyProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &flakyProxy{t: t, addr: ln.Addr().String(), target: target, conns: map[net.Conn]bool{}}
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *flakyProxy) up() {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("proxy up: %v", err)
	}
	p.serve(ln)
}

func (p *flakyProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns[in], p.conns[out] = true, true
			p.mu.Unlock()
			go pipe(in, out)
			go pipe(out, in)
		}
	}()
}

func pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

// down closes the listener and every open connection.
func (p *flakyProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// kubeconfig is the admin kubeconfig going through the proxy.
func (p *flakyProxy) kubeconfig(c *cluster) string {
	return c.writeKubeconfig(func(cfg *clientcmdapi.Config) {
		for _, cl := range cfg.Clusters {
			cl.Server = "https://" + p.addr
		}
	})
}

func kubeClient(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func realClock() clock.WithTicker { return clock.RealClock{} }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
