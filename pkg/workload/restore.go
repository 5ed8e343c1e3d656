package workload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/kube"
)

// Restorer puts back what Downer recorded and removes the record.
type Restorer struct {
	Client    kubernetes.Interface
	Namespace string
	RunID     string
	// OnlyRunUID, when set, restricts the restore to the records that carry it
	// (written by scale-down --run-uid): a run's failure path must not undo
	// another run's keep-down.
	OnlyRunUID string
	// SupersedeDatabase, with OnlyRunUID: this run migrated the database of this
	// Secret successfully, so the earlier runs for it let go too.
	SupersedeDatabase string
	// SupersedeRuns, with SupersedeDatabase: the runs plan found holding the
	// selection for those databases (comma-separated uids), which let go too
	// although this run holds nothing (nothing pending, or stop-workloads=auto
	// with nothing stopped).
	SupersedeRuns string
	// RunCreated (Unix seconds, 0: not known): no hold of a run created after
	// this one is let go.
	RunCreated    int64
	Timeout       time.Duration // reading and restoring, in all; readiness waits not counted
	WaitReady     bool
	ReadyTimeout  time.Duration // the readiness waits, in all
	ProgressEvery time.Duration
	Clock         clock.WithTicker
	Backoffs      Backoffs // of a change retried; zero: DefaultBackoffs
	Log           *slog.Logger
	CheckAccess   bool
}

// Run restores the selected workloads that carry a record (every such workload in
// the namespace when the selection is empty), lowest stop-priority first. A failure
// on one workload does not stop the others; the error returned then covers all of
// them (transient if any of them is). With WaitReady, each priority group's
// Deployments and StatefulSets must report all replicas ready before the next group.
func (r *Restorer) Run(ctx context.Context, sel Selection) ([]Outcome, error) {
	start := r.Clock.Now()
	work := &allowance{clock: r.Clock, left: r.Timeout}
	f := finder{cs: r.Client, ns: r.Namespace}
	ws, selected, err := r.recorded(ctx, work, f, sel)
	if err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, r.waitSelected(ctx, sel, selected)
	}
	if err := r.checkAccess(ctx, work, ws); err != nil {
		return nil, err
	}
	var wt *waiter
	if r.WaitReady {
		if wt, err = r.readyWaiter(ctx); err != nil {
			return nil, err
		}
		defer wt.w.stop()
	}
	t := &restoreTally{readyLeft: r.ReadyTimeout}
	// An attempt lost in its wait (exit 1 retried, its pod deleted: 75) left
	// what it restored without records: it must be ready as it would have
	// been, before a later stop-priority group comes back, and with its own
	// group.
	var earlier []*Workload
	if wt != nil {
		earlier = restoredEarlier(sel, selected)
		for _, w := range earlier {
			_ = w.parsePriority() // a bad one was warned about when it was restored
		}
	}
	groups := group(ws, false)
	for gi, g := range groups {
		if len(groups) > 1 {
			r.Log.Info("restoring priority group", "stop-priority", g[0].Priority, "workloads", len(g))
		}
		later := 0
		for _, lg := range groups[gi+1:] {
			later += len(lg)
		}
		var lower, same, rest []*Workload
		for _, w := range earlier {
			switch {
			case w.Priority < g[0].Priority:
				lower = append(lower, w)
			case w.Priority == g[0].Priority:
				same = append(same, w)
			default:
				rest = append(rest, w)
			}
		}
		earlier = rest
		if err := r.waitEarlier(ctx, wt, t, lower, later+len(g)); err != nil {
			return t.outcomes, err
		}
		if err := r.restoreGroup(ctx, work, f, g, wt, later, t, same); err != nil {
			return t.outcomes, err
		}
		// A later group comes back only after this one is: leave it stopped,
		// recorded, for the retry.
		if len(t.errs) > 0 && later > 0 {
			r.Log.Warn("left at 0 until the workloads of lower stop-priority are restored", "workloads", later)
			break
		}
	}
	if err := joinErrors(t.errs); err != nil {
		return t.outcomes, err
	}
	if err := r.waitEarlier(ctx, wt, t, earlier, 0); err != nil {
		return t.outcomes, err
	}
	r.Log.Info("restored", "workloads", len(t.outcomes), "took", r.Clock.Since(start).Round(time.Millisecond).String())
	return t.outcomes, nil
}

// recorded finds the selected workloads that carry a record this run may
// restore, their stop priorities read.
func (r *Restorer) recorded(ctx context.Context, work *allowance, f finder, sel Selection) (ws, selected []*Workload, err error) {
	var (
		found   []*Workload
		missing []Ref
	)
	err = work.spend(ctx, func(ctx context.Context) error {
		var err error
		if sel.Empty() {
			found, err = f.list(ctx, labels.Everything())
		} else {
			found, missing, err = f.find(ctx, sel)
		}
		if err == nil {
			// The records kubectl rollout undo took off Deployments at 0.
			found = recoverer{cs: r.Client, ns: r.Namespace, only: r.letGo(), backoffs: r.Backoffs, clock: r.Clock, log: r.Log}.run(ctx, found)
		}
		return err
	})
	if err != nil {
		return nil, nil, r.outOfTime(ctx, err)
	}
	for _, m := range missing {
		r.Log.Warn("named workload does not exist: nothing to restore", "workload", m.String(), "namespace", r.Namespace)
	}
	for _, w := range found {
		if !w.hasRecord() {
			if !sel.Empty() {
				r.Log.Info("no record from scale-down: nothing to restore", "workload", w.String())
			}
			continue
		}
		if !r.owns(w) {
			continue
		}
		if err := w.parsePriority(); err != nil {
			r.Log.Warn("ignoring the stop priority", "error", err.Error())
		}
		ws = append(ws, w)
	}
	if len(ws) == 0 {
		if r.OnlyRunUID != "" {
			r.Log.Info("no workload carries a scale-down record of this run: nothing to restore", "namespace", r.Namespace, "selection", sel.String(), "run-uid", r.OnlyRunUID)
		} else {
			r.Log.Info("no workload carries a scale-down record: nothing to restore", "namespace", r.Namespace, "selection", sel.String())
		}
	}
	return ws, found, nil
}

// waitSelected, with WaitReady, waits for the selected Deployments and
// StatefulSets that run replicas and carry no record to be ready, when there
// is nothing to restore: an attempt that restored them and was lost in its
// wait (its pod deleted, its node gone, a retried 75) leaves no record, and
// its rerun must still not report the application ready before it is.
func (r *Restorer) waitSelected(ctx context.Context, sel Selection, selected []*Workload) error {
	if !r.WaitReady {
		return nil
	}
	running := restoredEarlier(sel, selected)
	if len(running) == 0 {
		return nil
	}
	r.Log.Info("waiting for the selected workloads to be ready (--wait-ready), as an attempt of this step lost in its wait would have", "workloads", summarize(refsOf(running), 5))
	wt, err := r.readyWaiter(ctx)
	if err != nil {
		return err
	}
	defer wt.w.stop()
	wt.deadline = r.Clock.Now().Add(r.ReadyTimeout)
	wt.expired = func(synced bool, pending []string) error { return r.notReady(synced, pending, running, 0, 0) }
	return wt.until(ctx, fmt.Sprintf("%d selected workloads to be ready", len(running)), wt.w.readyCond(running))
}

// waitEarlier waits for ws, restored by an earlier attempt, to be ready before
// the later workloads (later of them) come back.
func (r *Restorer) waitEarlier(ctx context.Context, wt *waiter, t *restoreTally, ws []*Workload, later int) error {
	if wt == nil || len(ws) == 0 {
		return nil
	}
	r.Log.Info("waiting for the selected workloads an earlier attempt restored to be ready (--wait-ready) before restoring the rest", "workloads", summarize(refsOf(ws), 5), "left", later)
	began := r.Clock.Now()
	wt.deadline = began.Add(t.readyLeft)
	wt.expired = func(synced bool, pending []string) error { return r.notReady(synced, pending, ws, later, 0) }
	err := wt.until(ctx, fmt.Sprintf("%d selected workloads to be ready", len(ws)), wt.w.readyCond(ws))
	t.readyLeft -= r.Clock.Since(began)
	return err
}

// restoredEarlier are the selected Deployments and StatefulSets that run
// replicas and carry no record: what an attempt of this step lost in its wait
// restored. None for an empty selection, which is every record of the
// namespace, not an application.
func restoredEarlier(sel Selection, selected []*Workload) []*Workload {
	if sel.Empty() {
		return nil
	}
	var running []*Workload
	for _, w := range selected {
		if w.Kind.Scalable() && w.Replicas > 0 && !w.hasRecord() {
			running = append(running, w)
		}
	}
	return running
}

// readyWaiter watches the namespace for the readiness waits (--wait-ready);
// the caller stops its watch.
func (r *Restorer) readyWaiter(ctx context.Context) (*waiter, error) {
	w, err := newWatcher(ctx, r.Client, r.Namespace, false, false)
	if err != nil {
		return nil, err
	}
	return &waiter{w: w, clock: r.Clock, log: r.Log, progressEvery: r.ProgressEvery, timeout: r.ReadyTimeout}, nil
}

// checkAccess, with CheckAccess, asks for the permissions restoring ws takes.
func (r *Restorer) checkAccess(ctx context.Context, work *allowance, ws []*Workload) error {
	if !r.CheckAccess {
		return nil
	}
	perms := workloadPermissions(ws)
	if r.WaitReady {
		perms = append(perms, watchPermissions(false, false)...)
	}
	err := work.spend(ctx, func(ctx context.Context) error {
		return checkAccess(ctx, r.Client, r.Namespace, perms, r.Log)
	})
	return r.outOfTime(ctx, err)
}

// restoreTally is what a restore has done so far, over its priority groups.
type restoreTally struct {
	outcomes  []Outcome
	errs      []error
	stillHeld []string      // workloads left stopped for another run
	readyLeft time.Duration // of --ready-timeout
}

// restoreGroup restores one priority group and, with wt, waits for what came
// back to be ready; later is how many workloads the later groups hold. Only
// the wait's failure is returned: the workloads' own errors go in t.
//
// earlier are this group's workloads an earlier attempt restored: waited for
// with what this one brings back.
func (r *Restorer) restoreGroup(ctx context.Context, work *allowance, f finder, g []*Workload, wt *waiter, later int, t *restoreTally, earlier []*Workload) error {
	results := make([]restoreResult, len(g))
	var errs []error
	_ = work.spend(ctx, func(ctx context.Context) error {
		errs = forEach(ctx, len(g), concurrency, false, func(i int) error {
			var err error
			results[i], err = r.restore(ctx, f, g[i])
			return err
		})
		return nil
	})
	// Outside the allowance: an Event is information, each bounded on its own.
	r.emitEvents(ctx, results, errs)
	var restored []*Workload
	for i, res := range results {
		if err := errs[i]; err != nil {
			if errors.Is(err, errNotStarted) && ctx.Err() == nil {
				// The allowance ran out before this one was started: it keeps
				// its record, and a retry restores it.
				err = failure.Transientf("%s: not restored: --timeout %s ran out before it was started", g[i], r.Timeout)
			}
			err = r.outOfTime(ctx, err)
			r.Log.Error("could not restore", "workload", g[i].String(), "error", err.Error())
			t.errs = append(t.errs, err)
			continue
		}
		if res.ok {
			t.outcomes = append(t.outcomes, res.out)
			restored = append(restored, g[i])
		}
	}
	r.stripReplicaSetRecords(ctx, restored)
	// Runs that share workloads but selected different ones: what only this
	// run holds comes back even though a workload of an earlier group stays
	// stopped for another run. Keeping it stopped would leave it to a run
	// that may never select it.
	if len(t.stillHeld) > 0 && len(restored) > 0 {
		r.Log.Warn("restoring workloads although some restored before them stay stopped for another run: their stop-priority order cannot be kept", "restoring", summarize(refsOf(restored), 5), "still-held", summarize(t.stillHeld, 5))
	}
	for i, res := range results {
		if errs[i] == nil && res.released {
			t.stillHeld = append(t.stillHeld, g[i].String())
		}
	}
	// Wait for what came back even when another workload failed: its record
	// is gone, so a retry would look at it only as restored earlier.
	waitFor := slices.Concat(restored, earlier)
	if wt == nil || len(waitFor) == 0 {
		return nil
	}
	began := r.Clock.Now()
	wt.deadline = began.Add(t.readyLeft)
	failed := len(t.errs)
	wt.expired = func(synced bool, pending []string) error { return r.notReady(synced, pending, waitFor, later, failed) }
	err := wt.until(ctx, fmt.Sprintf("%d restored workloads to be ready", len(waitFor)), wt.w.readyCond(waitFor))
	t.readyLeft -= r.Clock.Since(began)
	return err
}

// letGo is what an --only-run-uid restore lets go of; nil without it.
func (r *Restorer) letGo() *letGo {
	if r.OnlyRunUID == "" {
		return nil
	}
	g := newLetGo(r.OnlyRunUID, r.SupersedeDatabase, r.SupersedeRuns, r.RunCreated)
	return &g
}

// owns reports whether the record on w is this run's to restore, and says so
// when it is not.
func (r *Restorer) owns(w *Workload) bool {
	if r.OnlyRunUID == "" {
		return true
	}
	rec := recordOf(w)
	if rec.letGoBy(*r.letGo()) {
		return true
	}
	uid := rec.runUID
	if uid == "" {
		uid = noRunUID
	}
	attrs := []any{"workload", w.String(), "by", rec.by, "by-run-uid", uid, "at", rec.at}
	if hs := rec.holders(); len(hs) > 1 {
		attrs = append(attrs, "held-by", formatHolders(hs))
	}
	r.Log.Info("left alone: stopped by another run", attrs...)
	return false
}

// recordOf reads who wrote w's record, when, and who holds it; the value itself
// is not needed (and may be malformed) to tell whose it is.
func recordOf(w *Workload) record {
	return record{by: w.Annotations[AnnotationBy], at: w.Annotations[AnnotationAt], runUID: w.Annotations[AnnotationByRunUID], heldBy: w.Annotations[AnnotationHeldBy]}
}

// notReady is the error of a readiness wait that ran out of time. It is
// permanent: the records are gone once the replicas are back, so a retry would
// find nothing to restore and succeed without the application being ready.
func (r *Restorer) notReady(synced bool, pending []string, restored []*Workload, later, failed int) error {
	rest := ""
	switch {
	case failed == 1:
		rest = "; 1 other workload could not be restored (see the error above)"
	case failed > 1:
		rest = fmt.Sprintf("; %d other workloads could not be restored (see the errors above)", failed)
	}
	if later > 0 {
		rest += fmt.Sprintf("; %d workloads of later priority groups are still at 0 (rerun scale-restore once these are ready)", later)
	}
	if !synced {
		return failure.Permanentf("could not tell within --ready-timeout %s whether the restored workloads are ready: listing and watching the namespace failed (API server unreachable?); check %s%s", r.ReadyTimeout, strings.Join(refsOf(restored), ", "), rest)
	}
	return failure.Permanentf("restored workloads not ready within --ready-timeout %s: %s%s", r.ReadyTimeout, strings.Join(pending, ", "), rest)
}

// outOfTime names --timeout in an error that came from its allowance running out.
func (r *Restorer) outOfTime(ctx context.Context, err error) error {
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return failure.Transientf("restoring took longer than --timeout %s: %w", r.Timeout, err)
	}
	return err
}

// allowance is a time limit spent in pieces: scale-restore's reads and writes
// are interleaved with readiness waits, which have their own limit.
type allowance struct {
	clock clock.Clock
	left  time.Duration
}

// spend runs fn with what is left of the allowance as its context's timeout,
// and takes the time fn took off it.
func (a *allowance) spend(ctx context.Context, fn func(context.Context) error) error {
	began := a.clock.Now()
	ctx, cancel := context.WithTimeout(ctx, max(a.left, 0))
	defer cancel()
	err := fn(ctx)
	a.left -= a.clock.Since(began)
	return err
}

// joinErrors combines per-workload errors (each logged on its own): transient if
// any is, else permanent.
func joinErrors(errs []error) error {
	return failure.Join(fmt.Sprintf("%d workloads could not be restored", len(errs)), errs...)
}

// restoreResult is what restoring one workload did. ok is false when the record
// disappeared meanwhile (another restore got there first).
type restoreResult struct {
	out      Outcome
	ok       bool
	released bool // left stopped: this run let go, another still holds it
	w        *Workload
	msg      string
	at       time.Time
}

func (r *Restorer) emitEvents(ctx context.Context, results []restoreResult, errs []error) {
	forEach(ctx, len(results), concurrency, false, func(i int) error {
		res := results[i]
		switch {
		case errs[i] != nil:
		case res.ok:
			emitEvent(ctx, r.Client, r.Namespace, res.w, res.at, ReasonRestored, res.msg, r.Log)
		case res.released:
			emitEvent(ctx, r.Client, r.Namespace, res.w, res.at, ReasonStillHeld, res.msg, r.Log)
		}
		return nil
	})
}

// restore restores one workload, retrying with a fresh read after a conflict or
// an API server that did not answer, while ctx (the --timeout allowance) lasts.
func (r *Restorer) restore(ctx context.Context, f finder, wl *Workload) (res restoreResult, err error) {
	retry := changeRetry{backoffs: r.Backoffs, clock: r.Clock, log: r.Log}
	var unanswered *restoreResult // the change sent last, if it may have been made
	var lost bool                 // and its answer was lost, not refused
	err = retry.run(ctx, wl.String(), func(fresh bool) error {
		cur := wl
		if fresh {
			w, found, err := f.get(ctx, wl.Ref)
			if err != nil {
				return err
			}
			if !found {
				r.Log.Warn("workload deleted meanwhile: nothing to restore", "workload", wl.String())
				res, unanswered = restoreResult{}, nil
				return nil
			}
			cur = w
			if u := unanswered; u != nil && u.madeAsSeenIn(cur, r.letGo()) {
				res, unanswered = r.madeAfterAll(*u, cur), nil
				return nil
			}
		}
		var err error
		res, err = r.restoreOnce(ctx, cur)
		unanswered, lost = nil, false
		// Sent, and perhaps made: the answer was lost (MayHaveBeenMade), a
		// gateway answered 502/503 after passing the change on, or client-go
		// resent a 429/5xx whose first copy was made (the resend then meets a
		// conflict). The fresh read decides.
		if err != nil && (res.ok || res.released) && (kube.IsUnavailable(err) || apierrors.IsConflict(err)) {
			u := res
			unanswered, lost = &u, kube.MayHaveBeenMade(err) || kube.IsServerError(err)
		}
		return err
	})
	if err != nil && apierrors.IsConflict(err) {
		err = failure.Transientf("%s kept changing while being restored (conflicts): %w", wl, err)
	}
	if err != nil && unanswered != nil {
		// The time ran out with the last change unanswered. One more read, past
		// the deadline but short, tells made from not made; guessing would turn
		// either into the wrong exit code.
		switch cur, found, made := r.settle(ctx, f, wl, *unanswered); {
		case !found:
			return restoreResult{}, nil
		case made:
			return r.madeAfterAll(*unanswered, cur), nil
		case cur != nil:
			return restoreResult{}, err // not made: the retry of the step makes it
		}
	}
	if err != nil && unanswered != nil && unanswered.ok && lost {
		// A retry of the step would find the record gone if the change was made,
		// and succeed without waiting for readiness: say so and stop here. The
		// cause is quoted, not wrapped: its transient kind no longer applies.
		err = failure.Final(fmt.Errorf("%s: restoring it may have been done though the API server never confirmed it; check its replicas and readiness by hand (kubectl get %s/%s -n %s): %v", wl, wl.Kind.Resource(), wl.Name, r.Namespace, err))
	}
	return res, err
}

// settleRead bounds the read that settles a change left unanswered when the
// time ran out.
const settleRead = 5 * time.Second

// settle reads wl afresh, within settleRead even though ctx is done, to tell
// whether the unanswered change u was made. cur is nil when the read failed.
func (r *Restorer) settle(ctx context.Context, f finder, wl *Workload, u restoreResult) (cur *Workload, found, made bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleRead)
	defer cancel()
	cur, found, err := f.get(ctx, wl.Ref)
	if err != nil {
		r.Log.Warn("could not read the workload again to tell whether the change was made", "workload", wl.String(), "error", err.Error())
		return nil, true, false
	}
	if !found {
		r.Log.Warn("workload deleted meanwhile: nothing to restore", "workload", wl.String())
		return nil, false, false
	}
	return cur, true, u.madeAsSeenIn(cur, r.letGo())
}

// madeAfterAll is u, a change made though its answer was lost, as read in cur:
// it is this run's, to report and (a restore) wait for like any other. A
// restore is reported with the replicas it has now: an HPA or a deploy may have
// moved them since.
func (r *Restorer) madeAfterAll(u restoreResult, cur *Workload) restoreResult {
	u.w = cur
	if u.ok {
		u.out = cur.outcome()
	}
	r.Log.Info("the API server's answer was lost; a fresh read shows the change made", "workload", cur.String(), "now", cur.outcome().Value)
	return u
}

// madeAsSeenIn reports whether cur, read afresh, shows the change of res
// (whose answer was lost) made: for a restore the record gone, for a letting
// go the record still there without the run among its holders.
func (res restoreResult) madeAsSeenIn(cur *Workload, g *letGo) bool {
	switch {
	case res.ok:
		return !cur.hasRecord()
	case res.released:
		return cur.hasRecord() && g != nil && !recordOf(cur).letGoBy(*g)
	}
	return false
}

// restoreOnce makes one change: a JSON merge patch, valid only for the
// resourceVersion read, that removes the record together with putting back the
// replicas or resuming, so a record is never removed without its restore.
func (r *Restorer) restoreOnce(ctx context.Context, w *Workload) (restoreResult, error) {
	rec, has, err := w.readRecord()
	if !has {
		r.Log.Info("record already removed: nothing to restore", "workload", w.String())
		return restoreResult{}, nil
	}
	// Read again after a conflict: another run may have restored it and stopped
	// it anew meanwhile, with a record of its own.
	if !r.owns(w) {
		return restoreResult{}, nil
	}
	holders := recordOf(w) // readable even when the value is not
	if r.OnlyRunUID != "" {
		// Another run stopped it too (another database of the same application):
		// it comes back when the last of them lets go, not in the middle of the
		// other's migration, and not against the other's failure policy.
		if rest := holders.holdersLeft(*r.letGo()); len(rest) > 0 {
			return r.release(ctx, w, formatHolders(rest))
		}
	} else if hs := holders.holders(); len(hs) > 1 {
		r.Log.Warn("restoring a workload other runs still hold (no --only-run-uid)", "workload", w.String(), "held-by", formatHolders(hs))
	}
	if err != nil {
		return restoreResult{}, failure.AsPermanent(err)
	}
	var back putBack
	if w.Kind.Scalable() {
		back = r.replicasBack(w, rec)
	} else {
		back = r.resumeBack(w, rec)
	}
	res := restoreResult{ok: true, w: w, at: r.Clock.Now(), out: back.out, msg: back.msg}
	patch := removeRecord(map[string]any{"metadata": map[string]any{"resourceVersion": w.ResourceVersion}})
	if back.spec != nil {
		patch["spec"] = back.spec
	}
	updated, err := patcher{cs: r.Client, ns: r.Namespace}.object(ctx, w.Ref, patch)
	if err != nil {
		return res, err // what it tried: the change may have been made all the same
	}
	back.report()
	res.w = updated
	return res, nil
}

// release lets go of a workload that other runs still hold: it stays stopped,
// its holders now held.
func (r *Restorer) release(ctx context.Context, w *Workload, held string) (restoreResult, error) {
	patch := map[string]any{"metadata": map[string]any{"resourceVersion": w.ResourceVersion, "annotations": map[string]any{AnnotationHeldBy: held}}}
	res := restoreResult{released: true, w: w, at: r.Clock.Now(),
		msg: fmt.Sprintf("left stopped after schema migration by %s: still held by run uid %s", r.RunID, held)}
	updated, err := patcher{cs: r.Client, ns: r.Namespace}.object(ctx, w.Ref, patch)
	if err != nil {
		return res, err // what it tried: the change may have been made all the same
	}
	r.Log.Info("left stopped: another run still holds it", "workload", w.String(), "held-by", held)
	res.w = updated
	return res, nil
}

// putBack is what restoring a workload from its record changes and says.
type putBack struct {
	spec   map[string]any // the patch's spec; nil: none
	out    Outcome
	msg    string // the Event's
	report func() // logs what was done, once the patch is accepted
}

// replicasBack puts back the recorded replicas of a Deployment or StatefulSet
// still at 0, and keeps any other count set since (an HPA, a deploy).
func (r *Restorer) replicasBack(w *Workload, rec record) putBack {
	var b putBack
	var stopped time.Time
	replicasNow := w.Replicas
	switch cur := w.Replicas; {
	case cur == rec.replicas:
		b.msg = fmt.Sprintf("at its recorded %d replicas after schema migration by %s", cur, r.RunID)
		b.report = func() { r.Log.Info("already at the recorded replicas", "workload", w.String(), "replicas", cur) }
	case cur == 0:
		b.spec = map[string]any{"replicas": rec.replicas}
		replicasNow = rec.replicas
		stopped, _ = time.Parse(time.RFC3339, rec.at) // unreadable: no downtime to tell
		b.msg = fmt.Sprintf("restored to %d replicas after schema migration by %s", rec.replicas, r.RunID)
		b.report = func() { r.Log.Info("restored", "workload", w.String(), "replicas", rec.replicas) }
	default:
		b.msg = fmt.Sprintf("kept %d replicas set since scale-down (recorded %d) after schema migration by %s", cur, rec.replicas, r.RunID)
		b.report = func() {
			r.Log.Warn("replicas changed since scale-down (a new deploy?): keeping them", "workload", w.String(), "replicas", cur, "recorded", rec.replicas)
		}
	}
	b.out = Outcome{Ref: w.Ref, Value: strconv.Itoa(int(replicasNow)), Stopped: stopped}
	return b
}

// resumeBack resumes a CronJob that was not suspended before scale-down.
func (r *Restorer) resumeBack(w *Workload, rec record) putBack {
	var b putBack
	suspended := w.Suspended
	switch {
	case w.Suspended && !rec.suspended:
		b.spec = map[string]any{"suspend": false}
		suspended = false
		b.msg = "resumed after schema migration by " + r.RunID
		b.report = func() { r.Log.Info("resumed", "workload", w.String()) }
	case w.Suspended:
		b.msg = "left suspended (it was suspended before scale-down) after schema migration by " + r.RunID
		b.report = func() { r.Log.Info("left suspended: it was suspended before scale-down", "workload", w.String()) }
	default:
		b.msg = "already resumed after schema migration by " + r.RunID
		b.report = func() { r.Log.Info("already resumed since scale-down: keeping it", "workload", w.String()) }
	}
	b.out = Outcome{Ref: w.Ref, Value: cronValue(suspended)}
	return b
}

// removeRecord adds the removal of every record annotation to a merge patch.
func removeRecord(patch map[string]any) map[string]any {
	ann := map[string]any{}
	for _, a := range recordAnnotations {
		ann[a] = nil
	}
	meta, _ := patch["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		patch["metadata"] = meta
	}
	meta["annotations"] = ann
	return patch
}

// refsOf names the workloads as kind/name.
func refsOf(ws []*Workload) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.String()
	}
	return out
}
