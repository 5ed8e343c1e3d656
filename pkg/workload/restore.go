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
			perms = append(perms, watchPermissions(false)...)
		}
		if err := checkAccess(ctx, r.Client, r.Namespace, perms, r.Log); err != nil {
			return nil, err
		}
	}
	var wt *waiter
	var w *watcher
	if r.WaitReady {
		if w, err = startWatcher(ctx, r.Client, r.Namespace, false); err != nil {
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
		var restored []*Workload
		for _, wl := range g {
			o, ok, err := r.restore(ctx, f, wl)
			if err != nil {
				r.Log.Error("could not restore", "workload", wl.String(), "error", err.Error())
				errs = append(errs, err)
				continue
			}
			if ok {
				outcomes = append(outcomes, o)
				restored = append(restored, wl)
			}
		}
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

// restore restores one workload, retrying on conflicts with a fresh read. ok is false
// when the record disappeared meanwhile (another restore got there first).
func (r *Restorer) restore(ctx context.Context, f finder, wl *Workload) (out Outcome, ok bool, err error) {
	cur, fresh := wl, false
	err = onConflict(ctx, func() error {
		if fresh {
			w, found, err := f.get(ctx, wl.Ref)
			if err != nil {
				return err
			}
			if !found {
				r.Log.Warn("workload deleted meanwhile: nothing to restore", "workload", wl.String())
				ok = false
				return nil
			}
			cur = w
		}
		fresh = true
		var err error
		out, ok, err = r.restoreOnce(ctx, cur)
		return err
	})
	if err != nil && apierrors.IsConflict(err) {
		err = failure.Transientf("%s kept changing while being restored (conflicts): %w", wl, err)
	}
	return out, ok, err
}

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

func (r *Restorer) restoreOnce(ctx context.Context, w *Workload) (Outcome, bool, error) {
	p := patcher{cs: r.Client, ns: r.Namespace}
	rec, has, err := w.readRecord()
	if !has {
		r.Log.Info("record already removed: nothing to restore", "workload", w.String())
		return Outcome{}, false, nil
	}
	if err != nil {
		return Outcome{}, false, failure.AsPermanent(err)
	}
	now := r.Clock.Now()
	var (
		out Outcome
		msg string
	)
	if w.Kind.Scalable() {
		replicasNow := w.Replicas
		switch cur := w.Replicas; {
		case cur == rec.replicas:
			msg = fmt.Sprintf("at its recorded %d replicas after schema migration by %s", cur, r.RunID)
			r.Log.Info("already at the recorded replicas", "workload", w.String(), "replicas", cur)
		case cur == 0:
			if err := p.scale(ctx, w.Ref, rec.replicas, w.ResourceVersion); err != nil {
				return Outcome{}, false, err
			}
			replicasNow = rec.replicas
			msg = fmt.Sprintf("restored to %d replicas after schema migration by %s", rec.replicas, r.RunID)
			r.Log.Info("restored", "workload", w.String(), "replicas", rec.replicas)
		default:
			msg = fmt.Sprintf("kept %d replicas set since scale-down (recorded %d) after schema migration by %s", cur, rec.replicas, r.RunID)
			r.Log.Warn("replicas changed since scale-down (a new deploy?): keeping them", "workload", w.String(), "replicas", cur, "recorded", rec.replicas)
		}
		if _, err := p.object(ctx, w.Ref, removeRecord(map[string]any{})); err != nil {
			return Outcome{}, false, err
		}
		out = Outcome{Ref: w.Ref, Value: strconv.Itoa(int(replicasNow))}
	} else {
		patch := removeRecord(map[string]any{"metadata": map[string]any{"resourceVersion": w.ResourceVersion}})
		suspended := w.Suspended
		switch {
		case w.Suspended && !rec.suspended:
			patch["spec"] = map[string]any{"suspend": false}
			suspended = false
			msg = "resumed after schema migration by " + r.RunID
			r.Log.Info("resumed", "workload", w.String())
		case w.Suspended:
			msg = "left suspended (it was suspended before scale-down) after schema migration by " + r.RunID
			r.Log.Info("left suspended: it was suspended before scale-down", "workload", w.String())
		default:
			msg = "already resumed after schema migration by " + r.RunID
			r.Log.Info("already resumed since scale-down: keeping it", "workload", w.String())
		}
		if _, err := p.object(ctx, w.Ref, patch); err != nil {
			return Outcome{}, false, err
		}
		out = Outcome{Ref: w.Ref, Value: cronValue(suspended)}
	}
	emitEvent(ctx, r.Client, r.Namespace, w, now, ReasonRestored, msg, r.Log)
	return out, true, nil
}
