package gate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	typedcoordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/kube"
)

// Tekton's resources and the labels it puts on a run's TaskRuns and pods.
var (
	PipelineRuns = kube.PipelineRuns
	TaskRuns     = kube.TaskRuns
)

const (
	labelRunUID  = "tekton.dev/pipelineRunUID"
	labelTaskRun = "tekton.dev/taskRun"
	// annotationReady is how Tekton lets a pod's first step start (its
	// entrypoint waits for it); a pod without it has run no step.
	annotationReady = "tekton.dev/ready"
	readyValue      = "READY"

	// AnnotationRun names the holder's PipelineRun (the holder identity is its uid).
	AnnotationRun = "chartreuse.io/pipeline-run"
	// AnnotationSecret is the database Secret the gate is for.
	AnnotationSecret = "chartreuse.io/database-secret"
	// AnnotationWorkloads is the workload namespace a run over several databases
	// holds (WorkloadLeaseName).
	AnnotationWorkloads = "chartreuse.io/workload-namespace"

	leasePrefix = "chartreuse-"
)

// LeaseName is the gate's Lease for a database Secret: chartreuse-<secret>, as
// Argo's mutex is named; a name too long for an object gets a hash in place of
// its tail, so that two long names never share a gate.
func LeaseName(secret string) string {
	name := leasePrefix + secret
	if len(name) <= validation.DNS1123SubdomainMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(secret))
	h := hex.EncodeToString(sum[:])[:16]
	keep := validation.DNS1123SubdomainMaxLength - len(leasePrefix) - 1 - len(h)
	return leasePrefix + strings.TrimRight(secret[:keep], ".-") + "-" + h
}

// WorkloadLeaseName is the Lease a run over several databases takes first, for
// the workloads of namespace: chartreuse.workloads.<namespace>, as Argo's mutex
// is named (the dot keeps it apart from every chartreuse-<secret>).
func WorkloadLeaseName(namespace string) string { return "chartreuse.workloads." + namespace }

// Gate is one run's side of the gate: the Lease of its database, or, for a run
// over several databases, the Leases of its workloads and of every database.
type Gate struct {
	Client    kubernetes.Interface
	Dynamic   dynamic.Interface
	Namespace string // of the Lease and the PipelineRuns
	Secret    string // the database Secret
	// Secrets, when set, make this a run over several databases: it takes the
	// Lease of WorkloadNamespace's workloads, then the Lease of each Secret, in
	// sorted order (every run takes them in that order, so two runs never wait
	// for each other's), and Secret is not used.
	Secrets           []string
	WorkloadNamespace string
	RunName           string // this PipelineRun
	RunUID            string
	// TaskRun is this step's own TaskRun, which Release does not wait for.
	TaskRun string
	// PodSelector narrows Settle to the workflow's pods it matches.
	PodSelector string
	// Timeout bounds Acquire's wait for another run, and Release's wait for
	// this run's other tasks.
	Timeout time.Duration
	Poll    time.Duration // between looks while waiting
	// Outage bounds how long WaitTurn waits out an API server that does not
	// answer (5xx, 429, unreachable) before it fails (75).
	Outage        time.Duration
	ProgressEvery time.Duration // between "still waiting" lines
	Log           *slog.Logger
	// Created is when the PipelineRun was created, read by CheckParameters.
	Created time.Time
}

// lock is one Lease of the gate.
type lock struct {
	name       string // of the Lease
	kind       string // what it is for: "database Secret" or "workload namespace"
	attr       string // the log attribute and
	annotation string // the Lease's annotation naming
	value      string // the Secret or namespace
	shared     string // what two runs that wait on it share
}

func secretLock(secret string) lock {
	return lock{LeaseName(secret), "database Secret", "database-secret", AnnotationSecret, secret, "database"}
}

// locks are the Leases of this run, in the order they are taken.
func (g *Gate) locks() []lock {
	if len(g.Secrets) == 0 {
		return []lock{secretLock(g.Secret)}
	}
	ns := g.WorkloadNamespace
	ls := []lock{{WorkloadLeaseName(ns), "workload namespace", "workload-namespace", AnnotationWorkloads, ns, "workloads"}}
	secrets := slices.Clone(g.Secrets)
	slices.Sort(secrets)
	for _, s := range slices.Compact(secrets) {
		ls = append(ls, secretLock(s))
	}
	return ls
}

func (g *Gate) leases() leaseClient {
	return leaseClient{g.Client.CoordinationV1().Leases(g.Namespace)}
}

type leaseClient struct {
	c typedcoordinationv1.LeaseInterface
}

const leaseResource = "leases.coordination.k8s.io"

// get returns the Lease, or nil when there is none.
func (l leaseClient) get(ctx context.Context, name string) (*coordinationv1.Lease, error) {
	ls, err := l.c.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return ls, kube.Classify(err, "get", leaseResource)
}

// remove deletes exactly the Lease version ls; changed reports that it changed
// or went in the meantime (read it again).
func (l leaseClient) remove(ctx context.Context, ls *coordinationv1.Lease) (changed bool, err error) {
	uid, rv := ls.UID, ls.ResourceVersion
	err = l.c.Delete(ctx, ls.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
	switch {
	case err == nil:
		return false, nil
	case apierrors.IsConflict(err), apierrors.IsNotFound(err):
		return true, nil
	}
	return false, kube.Classify(err, "delete", leaseResource)
}

// holder is who holds a Lease, as far as this gate can tell.
type holder struct {
	uid, run string
}

func holderOf(ls *coordinationv1.Lease) holder {
	h := holder{run: ls.Annotations[AnnotationRun]}
	if ls.Spec.HolderIdentity != nil {
		h.uid = *ls.Spec.HolderIdentity
	}
	return h
}

func (h holder) String() string {
	if h.run == "" {
		return fmt.Sprintf("holder %q (not a PipelineRun of this gate)", h.uid)
	}
	return "PipelineRun " + h.run
}

// Acquire takes the gate for this run, waiting while another run holds it. It
// fails transient (exit 75) when the wait reaches the timeout; a run over several
// databases then keeps the Leases it took: a retry of the task goes on from
// there, and once the run has finished (its release is skipped after a failed
// gate) the next run takes them over.
func (g *Gate) Acquire(ctx context.Context) error {
	start := time.Now()
	deadline := start.Add(g.Timeout)
	for _, l := range g.locks() {
		if err := g.acquire(ctx, l, start, deadline); err != nil {
			return err
		}
	}
	return nil
}

// acquire takes one Lease, waiting until deadline while another run holds it.
func (g *Gate) acquire(ctx context.Context, l lock, start, deadline time.Time) error {
	name := l.name
	var (
		waitingFor   holder
		lastProgress time.Time
	)
	for {
		ls, err := g.leases().get(ctx, name)
		if err != nil {
			return err
		}
		if ls == nil {
			created, err := g.create(ctx, l)
			if err != nil {
				return err
			}
			if created {
				g.Log.Info("gate taken", "lease", name, l.attr, l.value, "waited", time.Since(start).Round(time.Millisecond).String())
				return nil
			}
			continue // someone was quicker: see who
		}
		h := holderOf(ls)
		if h.uid == g.RunUID {
			g.Log.Info("gate already held by this run", "lease", name)
			return nil
		}
		busy, why, err := g.holderBusy(ctx, h)
		if err != nil {
			return err
		}
		if !busy {
			// The usual way a gate changes hands after a run with nothing pending, which
			// skips its release: not a warning.
			g.Log.Info("taking the gate over from a run that is done: "+why, "lease", name, "holder", h.String())
			if _, err := g.leases().remove(ctx, ls); err != nil {
				return err
			}
			continue // create it, or see who was quicker
		}
		now := time.Now()
		if h != waitingFor {
			g.Log.Info("waiting for the gate: "+why, "lease", name, "holder", h.String(), "timeout", g.Timeout.String())
			waitingFor, lastProgress = h, now
		} else if g.ProgressEvery > 0 && now.Sub(lastProgress) >= g.ProgressEvery {
			g.Log.Info("still waiting for the gate: "+why, "lease", name, "holder", h.String(), "waited", now.Sub(start).Round(time.Second).String())
			lastProgress = now
		}
		if !now.Before(deadline) {
			return failure.Transientf("the gate for %s %s (Lease %s) is held by %s (%s); gave up after %s: "+
				"a run for the same %s is still at work, try again when it has finished", l.kind, l.value, name, h, why, g.Timeout, l.shared)
		}
		if err := sleep(ctx, min(g.Poll, time.Until(deadline))); err != nil {
			return failure.Transientf("waiting for the gate held by %s: %w", h, err)
		}
	}
}

// create makes the Lease with this run as holder; false when it already exists.
func (g *Gate) create(ctx context.Context, l lock) (bool, error) {
	now := metav1.NowMicro()
	uid := g.RunUID
	ls := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name: l.name,
			Labels: map[string]string{
				"app.kubernetes.io/name":      "chartreuse",
				"app.kubernetes.io/component": "gate",
			},
			Annotations: map[string]string{AnnotationRun: g.RunName, l.annotation: l.value},
			// No owner reference to the run: the garbage collector would delete the
			// Lease as soon as the run is deleted, while its pods are still in their
			// grace period. A deleted run's Lease is taken over like a finished
			// one's, once its pods have stopped.
		},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &uid, AcquireTime: &now, RenewTime: &now},
	}
	_, err := g.leases().c.Create(ctx, ls, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return false, nil
	}
	if err != nil {
		return false, kube.Classify(err, "create", leaseResource)
	}
	return true, nil
}

// holderBusy says whether the holder may still be at work, and why or why not.
// Its run is done when its PipelineRun is gone (or is another run of the same
// name) or finished, and none of its TaskRuns and pods is still running.
func (g *Gate) holderBusy(ctx context.Context, h holder) (bool, string, error) {
	if h.run == "" || h.uid == "" {
		// Not made by this gate: only a person can tell whether it is safe.
		return true, "delete the Lease by hand if nothing holds it", nil
	}
	pr, err := g.Dynamic.Resource(PipelineRuns).Namespace(g.Namespace).Get(ctx, h.run, metav1.GetOptions{})
	state := ""
	switch {
	case apierrors.IsNotFound(err):
		state = "its PipelineRun is gone"
	case err != nil:
		return false, "", kube.Classify(err, "get", "pipelineruns.tekton.dev")
	case string(pr.GetUID()) != h.uid:
		state = "its PipelineRun is gone (another run now has its name)"
	default:
		status, reason := succeeded(pr)
		if status == "" || status == string(metav1.ConditionUnknown) {
			return true, "its PipelineRun is running", nil
		}
		state = fmt.Sprintf("its PipelineRun finished (%s)", reason)
	}
	left, err := g.running(ctx, h.uid, "")
	if err != nil {
		return false, "", err
	}
	if len(left) > 0 {
		return true, state + "; waiting for " + strings.Join(left, ", ") + " to stop", nil
	}
	return false, state, nil
}

// succeeded is the Succeeded condition of a Tekton run: status and reason.
func succeeded(o *unstructured.Unstructured) (string, string) {
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != "Succeeded" {
			continue
		}
		s, _ := m["status"].(string)
		r, _ := m["reason"].(string)
		return s, r
	}
	return "", ""
}

// running lists the TaskRuns and pods of the run with uid runUID that have not
// stopped, leaving out the TaskRun skip and its pods.
func (g *Gate) running(ctx context.Context, runUID, skip string) ([]string, error) {
	sel := labelRunUID + "=" + runUID
	trs, err := g.Dynamic.Resource(TaskRuns).Namespace(g.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, kube.Classify(err, "list", "taskruns.tekton.dev")
	}
	var left []string
	finished := map[string]bool{}
	for i := range trs.Items {
		tr := &trs.Items[i]
		if tr.GetName() == skip {
			continue
		}
		if s, _ := succeeded(tr); s == "" || s == string(metav1.ConditionUnknown) {
			left = append(left, "TaskRun "+tr.GetName())
		} else {
			finished[tr.GetName()] = true
		}
	}
	pods, err := g.Client.CoreV1().Pods(g.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, kube.Classify(err, "list", "pods")
	}
	for _, p := range pods.Items {
		if skip != "" && p.Labels[labelTaskRun] == skip {
			continue
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		// Tekton recreates a pod deleted under a TaskRun (an eviction) even when it
		// then retries the TaskRun in a new pod; the stale one waits for the ready
		// mark forever and never starts a step. Once its TaskRun has finished it
		// cannot run anything, so it does not hold the gate.
		if finished[p.Labels[labelTaskRun]] && p.Annotations[annotationReady] != readyValue {
			continue
		}
		left = append(left, "pod "+p.Name)
	}
	sort.Strings(left)
	return left, nil
}

// Release frees the gate if this run holds it, once every other TaskRun and pod
// of this run has stopped. When they have not stopped within the timeout, the
// gate stays held, and the next run takes it over once this one has finished.
// A run over several databases frees its Leases in the reverse order of taking.
func (g *Gate) Release(ctx context.Context) error {
	locks := g.locks()
	var held []*coordinationv1.Lease
	for _, l := range locks {
		ls, err := g.leases().get(ctx, l.name)
		if err != nil {
			return err
		}
		switch {
		case ls == nil:
			g.Log.Info("gate not held: nothing to release", "lease", l.name)
		case holderOf(ls).uid != g.RunUID:
			g.Log.Info("gate held by another run: not this run's to release", "lease", l.name, "holder", holderOf(ls).String())
		default:
			held = append(held, ls)
		}
	}
	if len(held) == 0 {
		return nil
	}
	if quiet, err := g.waitQuiet(ctx); err != nil || !quiet {
		return err
	}
	for _, ls := range slices.Backward(held) {
		if err := g.release(ctx, ls); err != nil {
			return err
		}
	}
	return nil
}

// release deletes the Lease ls while this run holds it.
func (g *Gate) release(ctx context.Context, ls *coordinationv1.Lease) error {
	name := ls.Name
	for {
		changed, err := g.leases().remove(ctx, ls)
		if err != nil {
			return err
		}
		if !changed {
			g.Log.Info("gate released", "lease", name)
			return nil
		}
		if ls, err = g.leases().get(ctx, name); err != nil {
			return err
		}
		if ls == nil || holderOf(ls).uid != g.RunUID {
			g.Log.Info("gate no longer held by this run: nothing to release", "lease", name)
			return nil
		}
	}
}

// waitQuiet waits until this run's other TaskRuns and pods have stopped; false
// (and a warning) when the timeout came first.
func (g *Gate) waitQuiet(ctx context.Context) (bool, error) {
	start := time.Now()
	deadline := start.Add(g.Timeout)
	var lastProgress time.Time
	for {
		left, err := g.running(ctx, g.RunUID, g.TaskRun)
		if err != nil {
			return false, err
		}
		if len(left) == 0 {
			return true, nil
		}
		now := time.Now()
		if !now.Before(deadline) {
			g.Log.Warn("the run's other tasks did not stop in time: the gate stays held until this run has finished, and the next run then takes it over",
				"still-running", strings.Join(left, ", "), "timeout", g.Timeout.String())
			return false, nil
		}
		if lastProgress.IsZero() || (g.ProgressEvery > 0 && now.Sub(lastProgress) >= g.ProgressEvery) {
			g.Log.Info("releasing the gate once the run's other tasks have stopped", "still-running", strings.Join(left, ", "))
			lastProgress = now
		}
		if err := sleep(ctx, min(g.Poll, time.Until(deadline))); err != nil {
			return false, failure.Transientf("waiting for the run's other tasks before releasing the gate: %w", err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// errNoWorkflow is returned when settle is not told which workflow it is in.
var errNoWorkflow = errors.New("--run-name and --run-uid are required with --action settle (the WorkflowTemplate passes {{workflow.name}} and {{workflow.uid}})")

// errNoRun is returned when the run's identity is missing.
var errNoRun = errors.New("--run-name and --run-uid are required (the Pipeline passes $(context.pipelineRun.name) and $(context.pipelineRun.uid))")
