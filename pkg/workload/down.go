package workload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// Outcome is what a step did to, or found on, one workload. Value is a replica count
// for Deployments and StatefulSets, and "active" or "suspended" for CronJobs.
type Outcome struct {
	Ref   Ref
	Value string
	// Stopped is, for a Deployment or StatefulSet that scale-restore brought back
	// from 0, when its record says scale-down stopped it; zero otherwise.
	Stopped time.Time
}

func (o Outcome) String() string { return o.Ref.String() + "=" + o.Value }

// Strings renders outcomes as kind/name=value, for the workloads result.
func Strings(os []Outcome) []string {
	out := make([]string, 0, len(os))
	for _, o := range os {
		out = append(out, o.String())
	}
	return out
}

func cronValue(suspended bool) string {
	if suspended {
		return "suspended"
	}
	return "active"
}

// Downer stops workloads: records, scales to 0 or suspends, then waits for the pods.
type Downer struct {
	Client    kubernetes.Interface
	Namespace string
	RunID     string
	RunUID    string // recorded with each new record, unless empty
	// DatabaseSecret goes with RunUID into the holders (AnnotationHeldBy).
	DatabaseSecret string
	// RunCreated (Unix seconds, 0: not known) goes with them.
	RunCreated int64
	// GitCommit, when set, is the commit of the migrations, named in the Events.
	GitCommit     string
	Timeout       time.Duration // for the whole run, waits included
	ProgressEvery time.Duration
	Clock         clock.WithTicker
	Backoffs      Backoffs // of a change retried; zero: DefaultBackoffs
	Log           *slog.Logger
	// CheckAccess asks the API server for every needed permission before changing
	// anything (SelfSubjectAccessReview).
	CheckAccess bool
}

// eventMessage says who stopped the workload and, with git, for which commit.
func (d *Downer) eventMessage() string {
	msg := "scaled down for schema migration by " + d.RunID
	if d.GitCommit != "" {
		msg += " (migrations at git commit " + d.GitCommit + ")"
	}
	return msg
}

// Run stops the selected workloads, highest stop-priority first, waiting after each
// priority group until its pods are gone. It returns what each workload was
// (recorded), also on failure for the workloads handled so far.
func (d *Downer) Run(ctx context.Context, sel Selection) ([]Outcome, error) {
	start := d.Clock.Now()
	f := finder{cs: d.Client, ns: d.Namespace}
	ws, err := d.selected(ctx, f, sel)
	if err != nil || len(ws) == 0 {
		return nil, err
	}
	if d.CheckAccess {
		if err := checkAccess(ctx, d.Client, d.Namespace, append(workloadPermissions(ws), watchPermissions(true, hasCronJobs(ws))...), d.Log); err != nil {
			return nil, err
		}
	}
	// A Deployment kubectl rollout undo took the record off keeps it stopped
	// for the run that wrote it, not at 0 as if it had been stopped on purpose.
	ws = recoverer{cs: d.Client, ns: d.Namespace, backoffs: d.Backoffs, clock: d.Clock, log: d.Log}.run(ctx, ws)
	w, err := newWatcher(ctx, d.Client, d.Namespace, true, hasCronJobs(ws))
	if err != nil {
		return nil, err
	}
	defer w.stop()
	wt := &waiter{w: w, clock: d.Clock, log: d.Log, progressEvery: d.ProgressEvery, deadline: start.Add(d.Timeout), timeout: d.Timeout}
	rsc := d.newReplicaSetCopier(ctx, ws)

	var (
		outcomes []Outcome
		held     []*Workload // stopped so far with this run among the holders
	)
	groups := group(ws, true)
	for _, g := range groups {
		if len(groups) > 1 {
			d.Log.Info("stopping priority group", "stop-priority", g[0].Priority, "workloads", len(g))
		}
		out, stopped, err := d.stopGroup(ctx, f, g, w, rsc, start.Add(d.Timeout))
		outcomes = append(outcomes, out...)
		if err != nil {
			return outcomes, err
		}
		held = append(held, d.heldByThisRun(stopped)...)
		what := fmt.Sprintf("the pods of %d workloads to stop", len(stopped))
		if len(groups) > 1 {
			what = fmt.Sprintf("the pods of %d workloads with stop-priority %d to stop", len(stopped), g[0].Priority)
		}
		if err := wt.until(ctx, what, w.stoppedCond(stopped)); err != nil {
			return outcomes, err
		}
		if err := d.checkStillHeld(ctx, f, held, start.Add(d.Timeout)); err != nil {
			return outcomes, err
		}
	}
	d.Log.Info("scaled down", "workloads", len(outcomes), "took", d.Clock.Since(start).Round(time.Millisecond).String())
	return outcomes, nil
}

// heldByThisRun is the part of ws that carries this run among its holders
// (none without a run uid: nothing tells this run's records from others').
func (d *Downer) heldByThisRun(ws []*Workload) []*Workload {
	if d.RunUID == "" {
		return nil
	}
	var held []*Workload
	for _, w := range ws {
		if rec, has, err := w.readRecord(); err == nil && has && rec.heldByRun(d.RunUID) {
			held = append(held, w)
		}
	}
	return held
}

// checkStillHeld fails when a workload this run stopped no longer has this run
// among its holders: this run's restore (its failure path, after an argo stop
// whose signal never reached this pod: Argo marks the step failed at once and
// runs the exit handler, while the step's process may go on) or a person put
// it back while scale-down was still waiting. Going on would stop the next
// priority group after that restore, held by a run that has ended, or report
// stopped what runs again. Permanent: a rerun starts from the workloads' state.
func (d *Downer) checkStillHeld(ctx context.Context, f finder, held []*Workload, until time.Time) error {
	lost := make([]string, len(held))
	retry := changeRetry{backoffs: d.Backoffs, clock: d.Clock, until: until, log: d.Log}
	errs := forEach(ctx, len(held), concurrency, false, func(i int) error {
		return retry.run(ctx, held[i].String(), func(bool) error {
			cur, found, err := f.get(ctx, held[i].Ref)
			if err != nil || !found {
				return err // a deleted workload has nothing to restore
			}
			if rec, has, err := cur.readRecord(); err != nil || !has || !rec.heldByRun(d.RunUID) {
				lost[i] = cur.String()
			}
			return nil
		})
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("checking that this run still holds the workloads it stopped: %w", err)
	}
	var names []string
	for _, n := range lost {
		if n != "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return failure.Permanentf("%s no longer held by this run (%s): its record was restored or removed while scale-down was still running (this run's failure path after it was stopped or cancelled, or a person); stopping nothing more; run the workflow again to stop them", strings.Join(names, ", "), d.RunUID)
}

// caseOnlyMatches refuses (exit 2, nothing changed) a selector that matches no
// workload when some workload of the namespace would match it but for the case
// of its labels: label values are case-sensitive, and a selector with a value
// typed in capitals matched nothing, so the run migrated under the running
// application and Succeeded (an attack found it). A selector that matches
// nothing at all stays valid: the first install creates the workloads after
// the run.
func (d *Downer) caseOnlyMatches(ctx context.Context, f finder, sel Selection) error {
	if sel.Selector == nil || sel.Selector.Empty() {
		return nil
	}
	folded, err := labels.Parse(strings.ToLower(sel.Selector.String()))
	if err != nil {
		return nil // not a selector once folded (a value that is no label value): nothing to suggest
	}
	all, err := f.list(ctx, labels.Everything())
	if err != nil {
		return err
	}
	var near []string
	for _, w := range all {
		set := labels.Set{}
		for k, v := range w.Labels {
			set[strings.ToLower(k)] = strings.ToLower(v)
		}
		if folded.Matches(set) {
			near = append(near, w.String())
		}
	}
	if len(near) == 0 {
		return nil
	}
	return failure.Usagef("selector %q matches no workload in namespace %s, but %s would match it but for the case of its labels (label keys and values are case-sensitive): correct the selector (workload-selector); nothing was changed",
		sel.Selector.String(), d.Namespace, summarize(near, 5))
}

// selected finds the selected workloads, their stop priorities read. A named
// workload that does not exist, or a priority that is not a number, fails the
// step before anything changes.
func (d *Downer) selected(ctx context.Context, f finder, sel Selection) ([]*Workload, error) {
	ws, missing, err := f.find(ctx, sel)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		names := make([]string, len(missing))
		for i, r := range missing {
			names[i] = r.String()
		}
		return nil, failure.Permanentf("%s not found in namespace %s: check --workload and --namespace", strings.Join(names, ", "), d.Namespace)
	}
	if len(ws) == 0 {
		if err := d.caseOnlyMatches(ctx, f, sel); err != nil {
			return nil, err
		}
		d.Log.Info("no workload matched: nothing to scale down", "namespace", d.Namespace, "selection", sel.String())
		return nil, nil
	}
	var deletes []string
	for _, w := range ws {
		if err := w.parsePriority(); err != nil {
			return nil, failure.Permanentf("%w; fix the annotation before scaling down", err)
		}
		if w.losesVolumes() {
			deletes = append(deletes, w.Ref.String())
		}
	}
	if len(deletes) > 0 {
		return nil, volumesRefused(deletes, "nothing was changed")
	}
	return ws, nil
}

// losesVolumes: scaling this StatefulSet to 0 makes its controller delete the
// volumes of every pod it removes, and the restore would bring them back empty.
func (w *Workload) losesVolumes() bool {
	return w.DeletesVolumes && (w.Replicas > 0 || w.StatusReplicas > 0)
}

func volumesRefused(refs []string, changed string) error {
	return failure.Permanentf("%s: persistentVolumeClaimRetentionPolicy.whenScaled is Delete, so scaling down would delete the volumes of its pods; "+
		"set whenScaled to Retain, or leave it out of the selection (%s)", strings.Join(refs, ", "), changed)
}

// stopGroup stops one priority group, then starts the watch (once) and writes
// the Events. It returns what each workload stopped was and as it is now, and
// the first failure (the calls in flight finish; no new one starts after it).
func (d *Downer) stopGroup(ctx context.Context, f finder, g []*Workload, w *watcher, rsc *replicaSetCopier, until time.Time) ([]Outcome, []*Workload, error) {
	results := make([]stopResult, len(g))
	errs := forEach(ctx, len(g), concurrency, true, func(i int) error {
		var err error
		results[i], err = d.stop(ctx, f, g[i], rsc, until)
		return err
	})
	var (
		outcomes []Outcome
		stopped  []*Workload
		firstErr error
	)
	for i, r := range results {
		if errs[i] != nil {
			if firstErr == nil && !errors.Is(errs[i], errNotStarted) {
				firstErr = errs[i]
			}
			continue
		}
		outcomes = append(outcomes, r.out)
		stopped = append(stopped, r.now)
	}
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	w.start()
	// Events after the changes: they are for people, and must not delay the stop.
	d.emitEvents(ctx, results, errs)
	return outcomes, stopped, firstErr
}

// holder is this run as a holder of the workloads it stops.
func (d *Downer) holder() holder {
	return holder{runUID: d.RunUID, database: d.DatabaseSecret, created: d.RunCreated}
}

// stopResult is what stopping one workload did.
type stopResult struct {
	out     Outcome
	now     *Workload // as it is after the change
	changed bool
	at      time.Time
}

func (d *Downer) emitEvents(ctx context.Context, results []stopResult, errs []error) {
	forEach(ctx, len(results), concurrency, false, func(i int) error {
		if r := results[i]; errs[i] == nil && r.changed {
			emitEvent(ctx, d.Client, d.Namespace, r.now, r.at, ReasonScaledDown, d.eventMessage(), d.Log)
		}
		return nil
	})
}

// stop records and stops one workload, retrying with a fresh read after a
// conflict or an API server that did not answer, until the step's time is up.
func (d *Downer) stop(ctx context.Context, f finder, wl *Workload, rsc *replicaSetCopier, until time.Time) (stopResult, error) {
	var res stopResult
	retry := changeRetry{backoffs: d.Backoffs, clock: d.Clock, until: until, log: d.Log}
	err := retry.run(ctx, wl.String(), func(fresh bool) error {
		cur := wl
		if fresh {
			w, found, err := f.get(ctx, wl.Ref)
			if err != nil {
				return err
			}
			if !found {
				return deletedWhileStopped(wl)
			}
			w.Priority = wl.Priority
			// its policy may have changed since the selection was checked
			if w.losesVolumes() {
				return volumesRefused([]string{w.Ref.String()}, "it was not changed")
			}
			cur = w
			d.Log.Debug("retrying with a fresh read", "workload", wl.String())
		}
		var err error
		res, err = d.stopOnce(ctx, cur, rsc)
		return err
	})
	switch {
	case err != nil && apierrors.IsConflict(err):
		err = failure.Transientf("%s kept changing while being scaled down (conflicts): %w", wl, err)
	case err != nil && apierrors.IsNotFound(err):
		err = deletedWhileStopped(wl) // its patch found it gone
	}
	return res, err
}

// deletedWhileStopped: a rerun selects again, without it (or with the object that
// replaced it), so a retry can finish.
func deletedWhileStopped(wl *Workload) error {
	return failure.Transientf("%s was deleted while it was being scaled down: run the step again, which selects the workloads afresh", wl)
}

// stopOnce makes at most one change: a JSON merge patch of the workload that writes
// the record (unless an earlier run did) together with replicas 0 or suspend, valid
// only for the resourceVersion read, so the record always holds what the workload
// had just before it was stopped. A new record on a Deployment goes to its
// current ReplicaSet first, when rsc can (replicaSetCopier).
func (d *Downer) stopOnce(ctx context.Context, w *Workload, rsc *replicaSetCopier) (stopResult, error) {
	p := patcher{cs: d.Client, ns: d.Namespace}
	rec, has, err := w.readRecord()
	if err != nil {
		return stopResult{}, failure.AsPermanent(err)
	}
	now := d.Clock.Now()
	if !has && w.Kind.Scalable() && w.settledAtZero() {
		// Nothing to stop and nothing to restore: no record, no write (which
		// would bump its generation and make its controller sync it again).
		d.Log.Info("already at 0: left as it is", "workload", w.String())
		return stopResult{out: Outcome{Ref: w.Ref, Value: "0"}, now: w}, nil
	}
	meta := map[string]any{"resourceVersion": w.ResourceVersion}
	patch := map[string]any{"metadata": meta}
	var ann map[string]any
	if has {
		ann = d.keepRecord(w, rec)
	} else {
		ann, rec = d.newRecord(w, now)
		rsc.copyRecord(ctx, d, w, ann)
	}
	if ann != nil {
		meta["annotations"] = ann
	}
	switch {
	case w.Kind.Scalable() && w.Replicas != 0:
		patch["spec"] = map[string]any{"replicas": 0}
	case !w.Kind.Scalable() && !w.Suspended:
		patch["spec"] = map[string]any{"suspend": true}
	}
	res := stopResult{now: w, at: now}
	if len(meta) > 1 || patch["spec"] != nil {
		updated, err := p.object(ctx, w.Ref, patch)
		if err != nil {
			return stopResult{}, err
		}
		updated.Priority = w.Priority
		res.now, res.changed = updated, true
	}
	// The controller must see the change before the wait can trust what it reports,
	// unless the workload was already at 0 and its controller had seen that.
	res.now.awaitController = w.Kind.Scalable() && !w.settledAtZero()
	if w.Kind.Scalable() {
		res.out = Outcome{Ref: w.Ref, Value: strconv.Itoa(int(rec.replicas))}
		d.Log.Info("scaled to 0", "workload", w.String(), "replicas-before", rec.replicas)
	} else {
		res.out = Outcome{Ref: w.Ref, Value: cronValue(rec.suspended)}
		d.Log.Info("suspended", "workload", w.String(), "was", cronValue(rec.suspended), "active-jobs", len(w.ActiveJobs))
	}
	return res, nil
}

// newRecord is the record of w as it is, in annotations for the patch that
// stops it, and as read back.
func (d *Downer) newRecord(w *Workload, now time.Time) (map[string]any, record) {
	value := strconv.Itoa(int(w.Replicas))
	if !w.Kind.Scalable() {
		value = strconv.FormatBool(w.Suspended)
	}
	ann := map[string]any{
		w.recordKey(): value, AnnotationBy: d.RunID, AnnotationAt: now.UTC().Format(recordTimeFormat),
	}
	// A new record says who holds it, also when that is nobody with a run
	// uid: what an older record left behind must not carry over to it.
	ann[AnnotationByRunUID], ann[AnnotationHeldBy] = nil, nil
	if d.RunUID != "" {
		ann[AnnotationByRunUID] = d.RunUID
		ann[AnnotationHeldBy] = d.holder().String()
	}
	return ann, record{replicas: w.Replicas, suspended: w.Suspended, by: d.RunID, runUID: d.RunUID}
}

// keepRecord keeps the record an earlier run (or this one, its answer lost)
// wrote, and returns the annotations to change: this run joins the holders
// when it is not among them; nil when nothing changes.
func (d *Downer) keepRecord(w *Workload, rec record) map[string]any {
	// Its run uid stays too: the record belongs to the run that wrote it, and
	// so does restoring it on a failure path (scale-restore --only-run-uid).
	whose := "an earlier run"
	if rec.by == d.RunID && rec.runUID == d.RunUID {
		whose = "this run (an answer lost on the way?)"
	}
	d.Log.Info("already recorded by "+whose+": keeping the record", "workload", w.String(), "recorded", w.Annotations[w.recordKey()], "by", rec.by, "by-run-uid", rec.runUID, "at", rec.at)
	if w.Kind.Scalable() && w.Replicas != 0 && w.Replicas != rec.replicas {
		d.Log.Warn("replicas differ from the record of an earlier run; the record wins at restore", "workload", w.String(), "replicas", w.Replicas, "recorded", rec.replicas)
	}
	// Another run holds it stopped (another database of the same
	// application): this run joins the holders, so the other's restore
	// leaves it stopped until this run lets go too.
	if d.RunUID == "" || rec.heldByRun(d.RunUID) {
		return nil
	}
	held := formatHolders(append(rec.holders(), d.holder()))
	d.Log.Info("held stopped by another run too: holding it for this run as well", "workload", w.String(), "held-by", held)
	return map[string]any{AnnotationHeldBy: held}
}
