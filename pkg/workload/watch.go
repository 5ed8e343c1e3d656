package workload

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/kube"
)

// watcher keeps a watched copy of the namespace's pods, Deployments and StatefulSets
// (informers: one list, then a watch, re-listing when the watch expires or the API
// server comes back) and wakes waiters on every change. Nothing polls.
type watcher struct {
	pods         corelisters.PodNamespaceLister // empty unless pods are waited for
	deployments  appslisters.DeploymentNamespaceLister
	statefulSets appslisters.StatefulSetNamespaceLister
	jobs         batchlisters.JobNamespaceLister // empty unless CronJobs are waited for
	informers    []cache.SharedIndexInformer
	changed      chan struct{}
	done         <-chan struct{} // closed by cancel, or when newWatcher's ctx ends
	cancel       context.CancelFunc
	factory      informers.SharedInformerFactory
	startOnce    sync.Once
}

// newWatcher prepares the watches; start begins them. It first makes one small
// list call per resource so that a missing permission fails at once, classified,
// before anything changes, instead of leaving an informer retrying until the
// timeout.
func newWatcher(ctx context.Context, cs kubernetes.Interface, ns string, withPods, withJobs bool) (*watcher, error) {
	probe := metav1.ListOptions{Limit: 1}
	if withJobs {
		if _, err := cs.BatchV1().Jobs(ns).List(ctx, probe); err != nil {
			return nil, kube.Classify(fmt.Errorf("listing jobs in %s: %w", ns, err), "list", "jobs.batch")
		}
	}
	if withPods {
		if _, err := cs.CoreV1().Pods(ns).List(ctx, probe); err != nil {
			return nil, kube.Classify(fmt.Errorf("listing pods in %s: %w", ns, err), "list", "pods")
		}
	}
	if _, err := cs.AppsV1().Deployments(ns).List(ctx, probe); err != nil {
		return nil, kube.Classify(fmt.Errorf("listing deployments in %s: %w", ns, err), "list", resourceName(Deployment, ""))
	}
	if _, err := cs.AppsV1().StatefulSets(ns).List(ctx, probe); err != nil {
		return nil, kube.Classify(fmt.Errorf("listing statefulsets in %s: %w", ns, err), "list", resourceName(StatefulSet, ""))
	}
	wctx, cancel := context.WithCancel(ctx)
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	w := &watcher{changed: make(chan struct{}, 1), done: wctx.Done(), cancel: cancel, factory: f}
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.notify() },
		UpdateFunc: func(any, any) { w.notify() },
		DeleteFunc: func(any) { w.notify() },
	}
	w.informers = []cache.SharedIndexInformer{f.Apps().V1().Deployments().Informer(), f.Apps().V1().StatefulSets().Informer()}
	w.deployments = f.Apps().V1().Deployments().Lister().Deployments(ns)
	w.statefulSets = f.Apps().V1().StatefulSets().Lister().StatefulSets(ns)
	if withPods {
		w.informers = append(w.informers, f.Core().V1().Pods().Informer())
		w.pods = f.Core().V1().Pods().Lister().Pods(ns)
	} else {
		w.pods = corelisters.NewPodLister(emptyIndexer()).Pods(ns)
	}
	if withJobs {
		w.informers = append(w.informers, f.Batch().V1().Jobs().Informer())
		w.jobs = f.Batch().V1().Jobs().Lister().Jobs(ns)
	} else {
		w.jobs = batchlisters.NewJobLister(emptyIndexer()).Jobs(ns)
	}
	for _, inf := range w.informers {
		if _, err := inf.AddEventHandler(notify); err != nil {
			cancel()
			return nil, fmt.Errorf("watching: %w", err)
		}
	}
	return w, nil
}

// emptyIndexer backs the lister of a resource that is not watched: it stays empty.
func emptyIndexer() cache.Indexer {
	return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}

// start lists and starts watching, once. Scale-down calls it after its changes:
// the lists then do not compete with them, and the state they load is what the
// wait is about.
func (w *watcher) start() {
	w.startOnce.Do(func() { w.factory.Start(w.done) })
}

func (w *watcher) notify() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// stop ends the watches. It waits a moment for the informers to return, not
// longer: a reflector backing off after a lost connection (client-go's watch-list
// path) sleeps out its backoff, up to 30 s, before it looks at the stop signal, and
// the step must not hold its exit code that long.
func (w *watcher) stop() {
	w.cancel()
	done := make(chan struct{})
	go func() {
		w.factory.Shutdown()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

// hasSynced reports whether every informer has its first list.
func (w *watcher) hasSynced() bool {
	for _, inf := range w.informers {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// synced waits until every informer has its first list, or ctx ends.
func (w *watcher) synced(ctx context.Context) bool {
	for _, ok := range w.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return false
		}
	}
	return true
}

// waiter waits for a condition on the watched state, with a deadline and progress lines.
type waiter struct {
	w             *watcher
	clock         clock.WithTicker
	log           *slog.Logger
	progressEvery time.Duration
	deadline      time.Time // for the whole step
	timeout       time.Duration
	// expired, when set, makes the error of a wait that ran out of time, from
	// what is still pending (nil when the watches never synced).
	expired func(synced bool, pending []string) error
}

// until waits until cond reports nothing pending. what describes the wait in logs
// ("pods to stop"); cond returns what is still pending, one short line per item.
func (wt *waiter) until(ctx context.Context, what string, cond func() []string) error {
	remaining := wt.deadline.Sub(wt.clock.Now())
	if remaining <= 0 {
		remaining = 1 // expired: still look at the state once before giving up
	}
	timer := wt.clock.NewTimer(remaining)
	defer timer.Stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wt.w.start()
	synced := wt.w.hasSynced()
	var syncedCh chan bool
	if !synced {
		syncedCh = make(chan bool, 1)
		go func() { syncedCh <- wt.w.synced(ctx) }()
	}
	ticker := wt.clock.NewTicker(wt.progressEvery)
	defer ticker.Stop()
	start := wt.clock.Now()
	announced := false
	for {
		var pending []string
		if synced {
			pending = cond()
			if len(pending) == 0 {
				if announced {
					wt.log.Info("done waiting for "+what, "waited", wt.clock.Since(start).Round(time.Millisecond).String())
				}
				return nil
			}
			if !announced {
				wt.log.Info("waiting for "+what, "pending", len(pending), "first", summarize(pending, 3), "timeout", wt.deadline.Sub(wt.clock.Now()).Round(time.Second).String())
				announced = true
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case ok := <-syncedCh:
			synced = ok
			syncedCh = nil
		case <-wt.w.changed:
		case <-ticker.C():
			if synced {
				wt.log.Info("still waiting for "+what, "pending", len(pending), "first", summarize(pending, 3), "waited", wt.clock.Since(start).Round(time.Second).String())
			} else {
				wt.log.Info("still waiting for the API server to list the namespace's pods", "waited", wt.clock.Since(start).Round(time.Second).String())
			}
		case <-timer.C():
			if wt.expired != nil {
				if synced {
					pending = cond()
				}
				return wt.expired(synced, pending)
			}
			if !synced {
				return failure.Transientf("timed out after %s waiting for %s: could not list and watch the namespace's pods (API server unreachable?)", wt.timeout, what)
			}
			return failure.Transientf("timed out after %s waiting for %s; still there: %s", wt.timeout, what, summarize(cond(), 50))
		}
	}
}

// summarize joins up to n items and says how many more there are.
func summarize(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}

// stoppedCond reports what keeps a group of workloads from being stopped: pods of
// theirs that are not Succeeded or Failed (Terminating ones count), and Deployments
// or StatefulSets whose controller has not yet seen the change to 0 replicas.
// Once it has, it creates no pod: a StatefulSet's controller owns its pods, a
// Deployment's sets its ReplicaSets to 0 in the same sync. Its later report of 0
// replicas is not awaited: with many workloads that report trails the last pod by
// the controller's backlog, and proves nothing the pods do not.
func (w *watcher) stoppedCond(group []*Workload) func() []string {
	return func() []string {
		var pending []string
		pods, _ := w.pods.List(labels.Everything()) // a cache: no error
		for _, pod := range pods {
			if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
				continue
			}
			if owner := w.ownerOf(pod, group); owner != nil {
				state := string(pod.Status.Phase)
				if pod.DeletionTimestamp != nil {
					state = "Terminating"
				}
				pending = append(pending, fmt.Sprintf("pod/%s (%s, %s)", pod.Name, owner, state))
			}
		}
		pending = append(pending, w.unfinishedJobs(group)...)
		sort.Strings(pending)
		for _, wl := range group {
			if !wl.awaitController {
				continue
			}
			s, ok := kinds[wl.Kind].status(w, wl.Name)
			if ok && s.observed < max(s.generation, wl.Generation) {
				pending = append(pending, fmt.Sprintf("%s (its controller has not seen the change yet; it reports %d replicas)", wl, s.replicas))
			}
		}
		return pending
	}
}

// readyCond reports restored Deployments and StatefulSets whose replicas are not all
// ready yet. The wanted count is the live spec.replicas, so an HPA's choice counts.
func (w *watcher) readyCond(group []*Workload) func() []string {
	return func() []string {
		var pending []string
		for _, wl := range group {
			if !wl.Kind.Scalable() {
				continue
			}
			s, ok := kinds[wl.Kind].status(w, wl.Name)
			if !ok {
				continue // deleted meanwhile: nothing to wait for
			}
			if s.observed < s.generation || s.ready < s.want || s.up < s.want {
				pending = append(pending, fmt.Sprintf("%s (%d/%d ready)", wl, s.ready, s.want))
			}
		}
		return pending
	}
}

// ownerOf returns the workload of group that pod belongs to, if any: by the
// workload's pod selector for Deployments and StatefulSets, by the owning Job for
// CronJobs (a Job in the CronJob's status.active, or one the CronJob controls).
func (w *watcher) ownerOf(pod *corev1.Pod, group []*Workload) *Workload {
	set := labels.Set(pod.Labels)
	ctrl := metav1.GetControllerOf(pod)
	for _, wl := range group {
		if wl.Kind.Scalable() {
			if wl.PodSelector != nil && wl.PodSelector.Matches(set) {
				return wl
			}
			continue
		}
		if ctrl == nil || ctrl.Kind != "Job" {
			continue
		}
		if slices.Contains(wl.ActiveJobs, ctrl.UID) || w.jobOf(ctrl, wl) {
			return wl
		}
	}
	return nil
}

// jobOf reports whether the watched Job that ref names is controlled by the CronJob.
func (w *watcher) jobOf(ref *metav1.OwnerReference, cj *Workload) bool {
	j, err := w.jobs.Get(ref.Name)
	if err != nil || j.UID != ref.UID {
		return false
	}
	c := metav1.GetControllerOf(j)
	return c != nil && c.UID == cj.UID
}

// unfinishedJobs lists the Jobs of the group's CronJobs that have not finished: a
// suspended CronJob starts no new Job, but one it started just before may not
// have created its pod yet (or be missing from the CronJob's status.active).
// Suspended Jobs count too: nothing stops someone resuming one.
func (w *watcher) unfinishedJobs(group []*Workload) []string {
	var pending []string
	for _, wl := range group {
		if wl.Kind != CronJob {
			continue
		}
		jobs, _ := w.jobs.List(labels.Everything()) // a cache: no error
		for _, j := range jobs {
			c := metav1.GetControllerOf(j)
			if c == nil || c.UID != wl.UID || jobFinished(j) {
				continue
			}
			state := "running"
			if j.Spec.Suspend != nil && *j.Spec.Suspend {
				state = "suspended"
			}
			pending = append(pending, fmt.Sprintf("job/%s (%s, %s)", j.Name, wl, state))
		}
	}
	return pending
}

func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
