package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/chartreuse-go/chartreuse/pkg/kube"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/kubeobj"
	"github.com/chartreuse-go/chartreuse/test/waitfor"
)

// workloadCycle is one measured cycle of section 3.
type workloadCycle struct {
	downWall, downAPI, lastPodToReturn time.Duration // scale-down
	restoreWall, restoreAPI            time.Duration // scale-restore: the process; until every Deployment is back without its record
	seqDownAPI, seqDownTotal           time.Duration // sequential UpdateScale to 0, then until the pods are gone
	seqRestore                         time.Duration // sequential UpdateScale back
	defDown, defRestore                time.Duration // the same with client-go's default limits (first cycle only)
	kubectlDown, kubectlRestore        time.Duration // kubectl scale, one process per Deployment (first cycle only)
	downRSS, restoreRSS                int64
}

type workloadResult struct {
	n, running, pending int
	cycles              []workloadCycle
	// trace summarizes the API server's audit log over the stops, when the
	// cluster writes one (CHARTREUSE_KUBE_AUDIT=1).
	trace string
}

// tracker watches the namespace's Deployments and pods and timestamps what the
// measurements need: when each Deployment was first seen done (stopped, or
// restored), when the last pod disappeared.
type tracker struct {
	mu     sync.Mutex
	doneAt map[string]time.Time // Deployment → first time seen done
	done   func(*appsv1.Deployment) bool
	// Deployments the step has to change: those with replicas. scale-down leaves
	// one already at 0 untouched (no record, no write).
	mustChange   map[string]bool
	lastPodGone  time.Time
	pods, deploy cache.Store
}

// reset starts a measurement; done (nil: none) says when a Deployment is done.
func (t *tracker) reset(done func(*appsv1.Deployment) bool, mustChange map[string]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.doneAt = map[string]time.Time{}
	t.done = done
	t.mustChange = mustChange
	t.lastPodGone = time.Time{}
}

func (t *tracker) deployment(obj any) {
	d, ok := obj.(*appsv1.Deployment)
	if !ok {
		return
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done == nil || !t.mustChange[d.Name] {
		return
	}
	if _, seen := t.doneAt[d.Name]; !seen && t.done(d) {
		t.doneAt[d.Name] = now
	}
}

func recorded(d *appsv1.Deployment) bool {
	_, rec := d.Annotations[workload.AnnotationReplicas]
	return rec
}

func (t *tracker) podGone(any) {
	now := time.Now()
	t.mu.Lock()
	t.lastPodGone = now
	t.mu.Unlock()
}

// lastDone is when the last Deployment the step had to change was seen done
// (zero if not all were).
func (t *tracker) lastDone() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.doneAt) < len(t.mustChange) {
		return time.Time{}
	}
	var last time.Time
	for _, at := range t.doneAt {
		if at.After(last) {
			last = at
		}
	}
	return last
}

func (t *tracker) lastPod() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastPodGone
}

// livePods counts the pods not yet deleted (Terminating ones count) and the running ones.
func (t *tracker) livePods() (live, running int) {
	for _, o := range t.pods.List() {
		p := o.(*corev1.Pod)
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		live++
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running++
		}
	}
	return live, running
}

// workloadBench is section 3 under way: the namespace with its Deployments, the
// tracker watching them and what was measured so far.
type workloadBench struct {
	c            *config
	env          *kubeenv.Env
	cfg          *rest.Config
	cs           *kubernetes.Clientset
	ns           string
	res          *workloadResult
	originals    map[string]int32 // Deployment → replicas at creation
	names        []string         // sorted
	withReplicas map[string]bool  // the Deployments scale-down has to change
	tr           *tracker
	windows      []auditWindow
}

func sectionWorkloads(ctx context.Context, c *config, env *kubeenv.Env, rep *report) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		return err
	}
	// The same client-side limits as the steps.
	cfg.QPS, cfg.Burst = kube.DefaultQPS, kube.DefaultBurst
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ns := fmt.Sprintf("bench-%d", time.Now().Unix()%100000)
	remove, err := benchNamespace(ctx, cs, ns)
	if err != nil {
		return err
	}
	defer remove()
	b := &workloadBench{c: c, env: env, cfg: cfg, cs: cs, ns: ns, res: &workloadResult{n: c.workloads},
		originals: map[string]int32{}, withReplicas: map[string]bool{}, tr: &tracker{}}
	rep.workloads = b.res // cycles done so far are reported even if a later one fails
	if err := b.createDeployments(ctx); err != nil {
		return err
	}
	stop, err := b.watch()
	if err != nil {
		return err
	}
	defer stop()
	if err := b.ready(ctx, "to start"); err != nil {
		return err
	}
	if err := b.observed(ctx); err != nil {
		return err
	}
	if st := env.State(); st.AuditLog != "" {
		defer func() {
			var err error
			if b.res.trace, err = summarizeAudit(st.AuditLog, ns, b.windows); err != nil {
				logf("  reading the audit log %s: %v", st.AuditLog, err)
			}
		}()
	}
	for cycle := range c.runs3 {
		var cy workloadCycle
		for _, measure := range []func(context.Context, *workloadCycle) error{b.scaleDown, b.scaleRestore, b.sequential} {
			if err := measure(ctx, &cy); err != nil {
				return err
			}
		}
		if cycle == 0 && c.defaultLimits {
			if err := b.defaultLimits(ctx, &cy); err != nil {
				return err
			}
		}
		if cycle == 0 && c.kubectlLoop {
			if err := b.kubectl(ctx, &cy); err != nil {
				return err
			}
		}
		b.res.cycles = append(b.res.cycles, cy)
		logf("  cycle %d/%d: scale-down %s (API %s, last pod → return %s), restore %s; sequential down %s (until pods gone %s), restore %s",
			cycle+1, c.runs3, ms(cy.downWall), ms(cy.downAPI), ms(cy.lastPodToReturn), ms(cy.restoreWall), ms(cy.seqDownAPI), ms(cy.seqDownTotal), ms(cy.seqRestore))
	}
	return nil
}

// createDeployments creates the section's Deployments: one in 20 with a running
// pod (the node runs at most 110), every other one with a pod that is never
// scheduled (Pending), the rest at 0.
func (b *workloadBench) createDeployments(ctx context.Context) error {
	logf("section 3: creating %d Deployments in %s", b.c.workloads, b.ns)
	for i := range b.c.workloads {
		name := fmt.Sprintf("bench-%03d", i)
		app := kubeobj.App{Name: name, Image: b.env.AppImage, Labels: map[string]string{"bench": "set"}, Grace: 30}
		pending := false
		switch {
		case i%20 == 0: // a running pod: the node runs at most 110
			app.Replicas = 1
			b.res.running++
		case i%2 == 1: // replicas 1, pod never scheduled (Pending)
			app.Replicas = 1
			pending = true
			b.res.pending++
		}
		d := app.Deployment()
		if pending {
			d.Spec.Template.Spec.NodeSelector = map[string]string{"chartreuse.io/bench": "nowhere"}
		}
		if _, err := b.cs.AppsV1().Deployments(b.ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			return err
		}
		b.originals[name] = app.Replicas
		b.names = append(b.names, name)
		if app.Replicas > 0 {
			b.withReplicas[name] = true
		}
	}
	sort.Strings(b.names)
	return nil
}

// watch starts the informers that feed the tracker; stop ends them.
func (b *workloadBench) watch() (stop func(), err error) {
	tr := b.tr
	f := informers.NewSharedInformerFactoryWithOptions(b.cs, 0, informers.WithNamespace(b.ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = "bench=set" }))
	podInf, depInf := f.Core().V1().Pods().Informer(), f.Apps().V1().Deployments().Informer()
	if _, err := podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: tr.podGone}); err != nil {
		return nil, err
	}
	if _, err := depInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: tr.deployment, UpdateFunc: func(_, n any) { tr.deployment(n) },
	}); err != nil {
		return nil, err
	}
	tr.pods, tr.deploy = podInf.GetStore(), depInf.GetStore()
	stopInf := make(chan struct{})
	f.Start(stopInf)
	f.WaitForCacheSync(stopInf)
	return func() { close(stopInf) }, nil
}

// ready waits until the pods of the Deployments with replicas are back: the
// running ones running, the pending ones pending.
func (b *workloadBench) ready(ctx context.Context, what string) error {
	wantPods := b.res.running + b.res.pending
	logf("  waiting for %d pods (%d running) %s", wantPods, b.res.running, what)
	return pollUntil(ctx, 5*time.Minute, func() bool {
		live, running := b.tr.livePods()
		return live == wantPods && running == b.res.running
	})
}

// gone waits until no pod is left.
func (b *workloadBench) gone(ctx context.Context) error {
	return pollUntil(ctx, 5*time.Minute, func() bool { live, _ := b.tr.livePods(); return live == 0 })
}

// observed waits for the deployment controller to have seen every Deployment:
// until then scale-down cannot tell that one created at 0 has nothing to stop,
// and records it (audit log, first cycle: 82 of the 90 at 0 were written).
func (b *workloadBench) observed(ctx context.Context) error {
	logf("  waiting for the deployment controller to see the %d Deployments", b.c.workloads)
	return pollUntil(ctx, 5*time.Minute, func() bool {
		l := b.tr.deploy.List()
		for _, o := range l {
			if d := o.(*appsv1.Deployment); d.Status.ObservedGeneration < d.Generation {
				return false
			}
		}
		return len(l) == b.c.workloads
	})
}

func (b *workloadBench) stepArgs(step string) command {
	return command{argv: []string{b.c.bin(step), "--kubeconfig", b.env.Kubeconfig, "--namespace", b.ns, "--selector", "bench=set",
		"--manifest-version", b.c.version, "--run-id", "bench", "--timeout", "10m"}}
}

// scaleDown runs scale-down and measures it from the outside.
func (b *workloadBench) scaleDown(ctx context.Context, cy *workloadCycle) error {
	b.tr.reset(func(d *appsv1.Deployment) bool { return ptr.Deref(d.Spec.Replicas, 1) == 0 && recorded(d) }, b.withReplicas)
	p, rssOf, err := startMeasured(b.stepArgs("scale-down").argv, nil)
	if err != nil {
		return err
	}
	code, _ := p.Wait(ctx, 15*time.Minute)
	r := p.Result(code)
	if code != 0 {
		return fmt.Errorf("scale-down exited %d:\n%s", code, tail(r.Stderr, 2000))
	}
	end := p.Started.Add(p.Took)
	cy.downWall, cy.downRSS = p.Took, rssOf(r)
	// What the step waited for, from its own progress lines.
	var waits []string
	for _, l := range strings.Split(r.Stderr, "\n") {
		if strings.Contains(l, "waiting for") {
			waits = append(waits, l)
		}
	}
	for _, l := range waits[max(0, len(waits)-2):] {
		logf("    scale-down: %s", tail(l, 400))
	}
	if last := b.tr.lastDone(); !last.IsZero() {
		cy.downAPI = last.Sub(p.Started)
	}
	logf("    scale-down: %s", timeline(r.Stderr, p.Started, "scaled to 0"))
	if lp := b.tr.lastPod(); !lp.IsZero() {
		cy.lastPodToReturn = end.Sub(lp)
		b.windows = append(b.windows, auditWindow{side: 0, from: p.Started, to: lp})
	}
	return nil
}

// scaleRestore runs scale-restore, measures it and checks that every
// Deployment is back as it was, its pods too.
func (b *workloadBench) scaleRestore(ctx context.Context, cy *workloadCycle) error {
	b.tr.reset(func(d *appsv1.Deployment) bool {
		return ptr.Deref(d.Spec.Replicas, 1) == b.originals[d.Name] && !recorded(d)
	}, b.withReplicas)
	p, rssOf, err := startMeasured(b.stepArgs("scale-restore").argv, nil)
	if err != nil {
		return err
	}
	code, _ := p.Wait(ctx, 15*time.Minute)
	r := p.Result(code)
	if code != 0 {
		return fmt.Errorf("scale-restore exited %d:\n%s", code, tail(r.Stderr, 2000))
	}
	cy.restoreWall, cy.restoreRSS = p.Took, rssOf(r)
	if last := b.tr.lastDone(); !last.IsZero() {
		cy.restoreAPI = last.Sub(p.Started)
	}
	logf("    scale-restore: %s", timeline(r.Stderr, p.Started, "restored"))
	if err := checkReplicas(ctx, b.cs, b.ns, b.originals); err != nil {
		return fmt.Errorf("after scale-restore: %w", err)
	}
	return b.ready(ctx, "after scale-restore")
}

// sequential is the alternative: UpdateScale one Deployment after another,
// down and back.
func (b *workloadBench) sequential(ctx context.Context, cy *workloadCycle) error {
	b.tr.reset(nil, nil)
	start := time.Now()
	if err := sequentialScale(ctx, b.cs, b.ns, b.names, func(string) int32 { return 0 }); err != nil {
		return err
	}
	cy.seqDownAPI = time.Since(start)
	if err := b.gone(ctx); err != nil {
		return err
	}
	if lp := b.tr.lastPod(); !lp.IsZero() {
		cy.seqDownTotal = lp.Sub(start)
		b.windows = append(b.windows, auditWindow{side: 1, from: start, to: lp})
	}
	start = time.Now()
	if err := sequentialScale(ctx, b.cs, b.ns, b.names, b.original); err != nil {
		return err
	}
	cy.seqRestore = time.Since(start)
	return b.ready(ctx, "after the sequential restore")
}

// defaultLimits is what a script with client-go's default client (5 requests/s,
// burst 10) takes: once, it is slow.
func (b *workloadBench) defaultLimits(ctx context.Context, cy *workloadCycle) error {
	dcfg := *b.cfg
	dcfg.QPS, dcfg.Burst = 0, 0 // client-go defaults
	dcs, err := kubernetes.NewForConfig(&dcfg)
	if err != nil {
		return err
	}
	logf("  sequential UpdateScale with client-go's default limits (5/s): about %s each way", time.Duration(2*len(b.names)/5)*time.Second)
	start := time.Now()
	if err := sequentialScale(ctx, dcs, b.ns, b.names, func(string) int32 { return 0 }); err != nil {
		return err
	}
	cy.defDown = time.Since(start)
	if err := b.gone(ctx); err != nil {
		return err
	}
	start = time.Now()
	if err := sequentialScale(ctx, dcs, b.ns, b.names, b.original); err != nil {
		return err
	}
	cy.defRestore = time.Since(start)
	return b.ready(ctx, "after the default-limits restore")
}

// kubectl is the shell script's way: kubectl scale, one Deployment after another.
func (b *workloadBench) kubectl(ctx context.Context, cy *workloadCycle) error {
	kubectl := filepath.Join(b.env.State().KubeBinDir, "kubectl")
	loop := func(replicas func(string) int32) (time.Duration, error) {
		start := time.Now()
		for _, n := range b.names {
			cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", b.env.Kubeconfig, "--namespace", b.ns,
				"scale", "deployment/"+n, fmt.Sprintf("--replicas=%d", replicas(n)))
			if out, err := cmd.CombinedOutput(); err != nil {
				return 0, fmt.Errorf("kubectl scale deployment/%s: %w: %s", n, err, out)
			}
		}
		return time.Since(start), nil
	}
	logf("  kubectl scale, one Deployment after another")
	var err error
	if cy.kubectlDown, err = loop(func(string) int32 { return 0 }); err != nil {
		return err
	}
	if err := b.gone(ctx); err != nil {
		return err
	}
	if cy.kubectlRestore, err = loop(b.original); err != nil {
		return err
	}
	return b.ready(ctx, "after the kubectl restore")
}

// original is a Deployment's replicas at creation.
func (b *workloadBench) original(name string) int32 { return b.originals[name] }

// sequentialScale is the obvious alternative: for each Deployment, read its
// scale subresource and write the new replica count, one after another, reading
// again on a conflict (the controllers update the same objects meanwhile).
func sequentialScale(ctx context.Context, cs kubernetes.Interface, ns string, names []string, replicas func(string) int32) error {
	for _, n := range names {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			s, err := cs.AppsV1().Deployments(ns).GetScale(ctx, n, metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Spec.Replicas = replicas(n)
			_, err = cs.AppsV1().Deployments(ns).UpdateScale(ctx, n, s, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func checkReplicas(ctx context.Context, cs kubernetes.Interface, ns string, want map[string]int32) error {
	l, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: "bench=set"})
	if err != nil {
		return err
	}
	for _, d := range l.Items {
		if got := ptr.Deref(d.Spec.Replicas, 1); got != want[d.Name] {
			return fmt.Errorf("%s has %d replicas, want %d", d.Name, got, want[d.Name])
		}
		if _, rec := d.Annotations[workload.AnnotationReplicas]; rec {
			return fmt.Errorf("%s still carries the scale-down record", d.Name)
		}
	}
	return nil
}

// benchNamespace creates the namespace ns and waits for its default
// ServiceAccount; remove deletes it (best effort, within a minute).
func benchNamespace(ctx context.Context, cs kubernetes.Interface, ns string) (remove func(), err error) {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	remove = func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = cs.CoreV1().Namespaces().Delete(dctx, ns, metav1.DeleteOptions{})
	}
	if err := waitServiceAccount(ctx, cs, ns); err != nil {
		remove()
		return nil, err
	}
	return remove, nil
}

func waitServiceAccount(ctx context.Context, cs kubernetes.Interface, ns string) error {
	return pollUntil(ctx, time.Minute, func() bool {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil || !apierrors.IsNotFound(err)
	})
}

// pollUntil polls cond every 50 ms (the benchmark may poll; the steps never do).
func pollUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	return waitfor.Until(ctx, 50*time.Millisecond, timeout, cond)
}

// timeline reads a step's text log: when its first line, the first and the last
// line with message msg, and its last line came, after start.
func timeline(stderr string, start time.Time, msg string) string {
	var first, firstMsg, lastMsg, last time.Time
	for _, l := range strings.Split(stderr, "\n") {
		ts, ok := strings.CutPrefix(l, "time=")
		if !ok {
			continue
		}
		ts, _, _ = strings.Cut(ts, " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		if first.IsZero() {
			first = at
		}
		last = at
		if strings.Contains(l, "msg=\""+msg+"\"") || strings.Contains(l, "msg="+msg+" ") {
			if firstMsg.IsZero() {
				firstMsg = at
			}
			lastMsg = at
		}
	}
	if first.IsZero() || firstMsg.IsZero() {
		return "no timestamps in its log"
	}
	return fmt.Sprintf("first log line at %s, first %q at %s, last at %s, last line at %s",
		ms(first.Sub(start)), msg, ms(firstMsg.Sub(start)), ms(lastMsg.Sub(start)), ms(last.Sub(start)))
}
