package workload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// Restorer puts back what Downer recorded and removes the record.
type Restorer struct {
	Client        kubernetes.Interface
	Namespace     string
	RunID         string
	Timeout       time.Duration // for the whole run, waits included
	WaitReady     bool
	ProgressEvery time.Duration
	Clock         clock.WithTicker
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
	f := finder{cs: r.Client, ns: r.Namespace}
	var (
		found   []*Workload
		missing []Ref
		err     error
	)
	if sel.Empty() {
		found, err = f.list(ctx, labels.Everything())
	} else {
		found, missing, err = f.find(ctx, sel)
	}
	if err != nil {
		return nil, err
	}
	for _, m := range missing {
		r.Log.Warn("named workload does not exist: nothing to restore", "workload", m.String(), "namespace", r.Namespace)
	}
	var ws []*Workload
	for _, w := range found {
		if !w.hasRecord() {
			if !sel.Empty() {
				r.Log.Info("no record from scale-down: nothing to restore", "workload", w.String())
			}
			continue
		}
		if err := w.parsePriority(); err != nil {
			r.Log.Warn("ignoring the stop priority", "error", err.Error())
		}
		ws = append(ws, w)
	}
	if len(ws) == 0 {
		r.Log.Info("no workload carries a scale-down record: nothing to restore", "namespace", r.Namespace, "selection", sel.String())
		return nil, nil
	}
	if r.CheckAccess {
		perms := workloadPermissions(ws)
		if r.WaitReady {
			perms = append(perms, watchPermissions(false, false)...)
		}
		if err := checkAccess(ctx, r.Client, r.Namespace, perms, r.Log); err != nil {
			return nil, err
		}
	}
	var wt *waiter
	var w *watcher
	if r.WaitReady {
		if w, err = newWatcher(ctx, r.Client, r.Namespace, false, false); err != nil {
			return nil, err
		}
		defer w.stop()
		wt = &waiter{w: w, clock: r.Clock, log: r.Log, progressEvery: r.ProgressEvery, deadline: start.Add(r.Timeout), timeout: r.Timeout}
	}

	var (
		outcomes []Outcome
		errs     []error
	)
	groups := group(ws, false)
	for _, g := range groups {
		if len(groups) > 1 {
			r.Log.Info("restoring priority group", "stop-priority", g[0].Priority, "workloads", len(g))
		}
		results := make([]restoreResult, len(g))
		gerrs := forEach(ctx, len(g), concurrency, false, func(i int) error {
			var err error
			results[i], err = r.restore(ctx, f, g[i])
			return err
		})
		var restored []*Workload
		for i, res := range results {
			if err := gerrs[i]; err != nil {
				r.Log.Error("could not restore", "workload", g[i].String(), "error", err.Error())
				errs = append(errs, err)
				continue
			}
			if res.ok {
				outcomes = append(outcomes, res.out)
				restored = append(restored, g[i])
			}
		}
		r.emitEvents(ctx, results, gerrs)
		if wt != nil && len(errs) == 0 {
			what := fmt.Sprintf("%d restored workloads to be ready", len(restored))
			if err := wt.until(ctx, what, w.readyCond(restored, r.Namespace)); err != nil {
				return outcomes, err
			}
		}
	}
	if err := joinErrors(errs); err != nil {
		return outcomes, err
	}
	r.Log.Info("restored", "workloads", len(outcomes), "took", r.Clock.Since(start).Round(time.Millisecond).String())
	return outcomes, nil
}

// joinErrors combines per-workload errors: transient if any is, else permanent.
func joinErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	if len(errs) == 1 {
		return errs[0]
	}
	msg := errs[0].Error()
	msg = fmt.Sprintf("%d workloads could not be restored; first: %s", len(errs), msg)
	// Not wrapped: package failure lets the innermost classification win, which
	// would be whichever error comes first. Each error was logged on its own.
	for _, e := range errs {
		if failure.KindOf(e) == failure.Transient {
			return failure.AsTransient(errors.New(msg))
		}
	}
	return failure.AsPermanent(errors.New(msg))
}

// restoreResult is what restoring one workload did. ok is false when the record
// disappeared meanwhile (another restore got there first).
type restoreResult struct {
	out Outcome
	ok  bool
	w   *Workload
	msg string
	at  time.Time
}

func (r *Restorer) emitEvents(ctx context.Context, results []restoreResult, errs []error) {
	forEach(ctx, len(results), concurrency, false, func(i int) error {
		if res := results[i]; errs[i] == nil && res.ok {
			emitEvent(ctx, r.Client, r.Namespace, res.w, res.at, ReasonRestored, res.msg, r.Log)
		}
		return nil
	})
}

// restore restores one workload, retrying on conflicts with a fresh read.
func (r *Restorer) restore(ctx context.Context, f finder, wl *Workload) (res restoreResult, err error) {
	cur, fresh := wl, false
	err = onConflict(ctx, func() error {
		if fresh {
			w, found, err := f.get(ctx, wl.Ref)
			if err != nil {
				return err
			}
			if !found {
				r.Log.Warn("workload deleted meanwhile: nothing to restore", "workload", wl.String())
				res = restoreResult{}
				return nil
			}
			cur = w
		}
		fresh = true
		var err error
		res, err = r.restoreOnce(ctx, cur)
		return err
	})
	if err != nil && apierrors.IsConflict(err) {
		err = failure.Transientf("%s kept changing while being restored (conflicts): %w", wl, err)
	}
	return res, err
}

// restoreOnce makes one change: a JSON merge patch, valid only for the
// resourceVersion read, that removes the record together with putting back the
// replicas or resuming, so a record is never removed without its restore.
func (r *Restorer) restoreOnce(ctx context.Context, w *Workload) (restoreResult, error) {
	p := patcher{cs: r.Client, ns: r.Namespace}
	rec, has, err := w.readRecord()
	if !has {
		r.Log.Info("record already removed: nothing to restore", "workload", w.String())
		return restoreResult{}, nil
	}
	if err != nil {
		return restoreResult{}, failure.AsPermanent(err)
	}
	res := restoreResult{ok: true, w: w, at: r.Clock.Now()}
	patch := removeRecord(map[string]any{"metadata": map[string]any{"resourceVersion": w.ResourceVersion}})
	if w.Kind.Scalable() {
		replicasNow := w.Replicas
		switch cur := w.Replicas; {
		case cur == rec.replicas:
			res.msg = fmt.Sprintf("at its recorded %d replicas after schema migration by %s", cur, r.RunID)
			r.Log.Info("already at the recorded replicas", "workload", w.String(), "replicas", cur)
		case cur == 0:
			patch["spec"] = map[string]any{"replicas": rec.replicas}
			replicasNow = rec.replicas
			res.msg = fmt.Sprintf("restored to %d replicas after schema migration by %s", rec.replicas, r.RunID)
			r.Log.Info("restored", "workload", w.String(), "replicas", rec.replicas)
		default:
			res.msg = fmt.Sprintf("kept %d replicas set since scale-down (recorded %d) after schema migration by %s", cur, rec.replicas, r.RunID)
			r.Log.Warn("replicas changed since scale-down (a new deploy?): keeping them", "workload", w.String(), "replicas", cur, "recorded", rec.replicas)
		}
		res.out = Outcome{Ref: w.Ref, Value: strconv.Itoa(int(replicasNow))}
	} else {
		suspended := w.Suspended
		switch {
		case w.Suspended && !rec.suspended:
			patch["spec"] = map[string]any{"suspend": false}
			suspended = false
			res.msg = "resumed after schema migration by " + r.RunID
			r.Log.Info("resumed", "workload", w.String())
		case w.Suspended:
			res.msg = "left suspended (it was suspended before scale-down) after schema migration by " + r.RunID
			r.Log.Info("left suspended: it was suspended before scale-down", "workload", w.String())
		default:
			res.msg = "already resumed after schema migration by " + r.RunID
			r.Log.Info("already resumed since scale-down: keeping it", "workload", w.String())
		}
		res.out = Outcome{Ref: w.Ref, Value: cronValue(suspended)}
	}
	updated, err := p.object(ctx, w.Ref, patch)
	if err != nil {
		return restoreResult{}, err
	}
	res.w = updated
	return res, nil
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
