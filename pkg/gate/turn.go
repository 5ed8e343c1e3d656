package gate

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/kube"
)

// A Tekton matrix starts every TaskRun of a fanned-out task at once and has no
// parallelism limit. turn is the first step of each migrate (or rollback)
// TaskRun of a run over several databases: it waits for its turn, so that at
// most Parallelism migrate at once, the canary alone first, and it says not to
// start at all once a migration of the run has failed.

// labelPipelineTask names the Pipeline task a TaskRun runs.
const labelPipelineTask = "tekton.dev/pipelineTask"

// Turn is one TaskRun's place in the order.
type Turn struct {
	Secret      string   // this TaskRun's database Secret (its matrix value)
	Order       []string // the Secrets in the order they start (rounds' order)
	Parallelism int
	Canary      bool // the first of Order alone, before any other starts
	Task        string
	// KeepGoing: a failed TaskRun of the task stops no other, and ends its turn
	// as a succeeded one does (rollbacks: each database's is worth trying).
	KeepGoing bool
}

// After returns the Secrets whose TaskRuns must have succeeded before this one
// starts: with canary the first of the order (for every other), and the one
// Parallelism places before it in its lane (the order after the canary, dealt
// out in turn), so that at most Parallelism run at once and each starts as soon
// as one before it has ended.
func (t Turn) After() ([]string, error) {
	i := slices.Index(t.Order, t.Secret)
	if i < 0 {
		return nil, fmt.Errorf("--database-secret %q is not in the order given (%d Secrets): pass rounds' order result and this TaskRun's Secret", t.Secret, len(t.Order))
	}
	var after []string
	rest, j := t.Order, i
	if t.Canary {
		if i == 0 {
			return nil, nil
		}
		after = append(after, t.Order[0])
		rest, j = t.Order[1:], i-1
	}
	if j >= t.Parallelism {
		after = append(after, rest[j-t.Parallelism])
	}
	return after, nil
}

// WaitTurn waits until this TaskRun may start: true when every TaskRun it comes
// after has succeeded, false (with why) once a TaskRun of the task has failed,
// which stops the run from starting any other migration. It waits as long as
// those TaskRuns run: they are this run's own, each bounded by its timeouts.
func (g *Gate) WaitTurn(ctx context.Context, t Turn) (bool, string, error) {
	after, err := t.After()
	if err != nil {
		return false, "", failure.AsUsage(err)
	}
	var lastProgress, outageSince time.Time
	for {
		// A stop (StoppedRunFinally) lets running TaskRuns finish, and a
		// TaskRun waiting here is running: it must not start migrating then.
		stopped, err := g.runStopped(ctx)
		var state map[string]string
		var wentBefore bool
		if err == nil && stopped == "" {
			state, wentBefore, err = g.taskStates(ctx, t.Task, t.Secret)
		}
		if err != nil {
			// A wait can last as long as the migrations before it: an API
			// server restart or a gateway's 5xx meanwhile is waited out (it
			// only reads), up to Outage; past it, or for any other error, the
			// step fails (75 or 1) and the task's retries decide.
			if ctx.Err() != nil || !kube.IsUnavailable(err) {
				return false, "", err
			}
			now := time.Now()
			if outageSince.IsZero() {
				outageSince = now
			}
			if now.Sub(outageSince) >= g.Outage {
				return false, "", failure.Transientf("waiting for its turn: the API server has not answered for %s (--outage-tolerance): %w", now.Sub(outageSince).Round(time.Second), err)
			}
			if outageSince.Equal(now) || (g.ProgressEvery > 0 && now.Sub(lastProgress) >= g.ProgressEvery) {
				g.Log.Warn("waiting for its turn: the API server did not answer; looking again", "for", now.Sub(outageSince).Round(time.Second).String(), "tolerance", g.Outage.String(), "error", err.Error())
				lastProgress = now
			}
			if err := sleep(ctx, g.Poll); err != nil {
				return false, "", failure.Transientf("waiting for its turn while the API server did not answer: %w", err)
			}
			continue
		}
		outageSince = time.Time{}
		if stopped != "" {
			return false, fmt.Sprintf("not started: the run was stopped (%s)", stopped), nil
		}
		if wentBefore {
			// A retry of a TaskRun whose earlier attempt had its turn and
			// started its migration: it resumes it (a rerun finishes it or
			// refuses), whatever failed since; it was its turn already.
			g.Log.Info("resuming: an earlier attempt of this TaskRun had its turn", "task", t.Task, "secret", t.Secret)
			return true, "", nil
		}
		var failed []string
		for _, s := range t.Order {
			if s != t.Secret && state[s] == string(metav1.ConditionFalse) {
				failed = append(failed, s)
			}
		}
		if len(failed) > 0 && !t.KeepGoing {
			why := fmt.Sprintf("not started: the %s of %s failed, and a run starts no other once one has", t.Task, strings.Join(failed, ", "))
			return false, why, nil
		}
		var waiting []string
		for _, s := range after {
			if state[s] != string(metav1.ConditionTrue) && !(t.KeepGoing && state[s] == string(metav1.ConditionFalse)) {
				waiting = append(waiting, s)
			}
		}
		if len(waiting) == 0 {
			return true, "", nil
		}
		now := time.Now()
		if lastProgress.IsZero() || (g.ProgressEvery > 0 && now.Sub(lastProgress) >= g.ProgressEvery) {
			g.Log.Info("waiting for its turn", "task", t.Task, "after", strings.Join(waiting, ", "), "parallelism", t.Parallelism, "canary", t.Canary)
			lastProgress = now
		}
		if err := sleep(ctx, g.Poll); err != nil {
			return false, "", failure.Transientf("waiting for its turn after %s: %w", strings.Join(waiting, ", "), err)
		}
	}
}

// runStopped returns the PipelineRun's spec.status when it asks the run to
// stop or cancel (empty otherwise).
func (g *Gate) runStopped(ctx context.Context) (string, error) {
	pr, err := g.Dynamic.Resource(PipelineRuns).Namespace(g.Namespace).Get(ctx, g.RunName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "the PipelineRun is gone", nil
	}
	if err != nil {
		return "", kube.Classify(err, "get", "pipelineruns.tekton.dev")
	}
	if string(pr.GetUID()) != g.RunUID {
		return "the PipelineRun is gone (another run now has its name)", nil
	}
	switch s, _, _ := unstructured.NestedString(pr.Object, "spec", "status"); s {
	case "Cancelled", "CancelledRunFinally", "StoppedRunFinally":
		return s, nil
	}
	return "", nil
}

// taskStates is the Succeeded status of this run's TaskRuns of the Pipeline task
// (False too for one that succeeded reporting a failed migration),
// by their secret param ("" while running).
func (g *Gate) taskStates(ctx context.Context, task, own string) (map[string]string, bool, error) {
	sel := labelRunUID + "=" + g.RunUID + "," + labelPipelineTask + "=" + task
	trs, err := g.Dynamic.Resource(TaskRuns).Namespace(g.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, false, kube.Classify(err, "list", "taskruns.tekton.dev")
	}
	wentBefore := false
	state := map[string]string{}
	for i := range trs.Items {
		tr := &trs.Items[i]
		if s := paramOf(tr, "secret"); s != "" {
			st, _ := succeeded(tr)
			if st == string(metav1.ConditionTrue) && resultOf(tr, resultFailed) != "false" {
				// its migration failed and the TaskRun reported it as a line
				// (check-databases --action=migrate-line), succeeding; or its
				// results were lost (a termination message the kubelet cut
				// no longer parses): not known to have succeeded either
				st = string(metav1.ConditionFalse)
			}
			state[s] = st
			if s == own {
				wentBefore = turnWentBefore(tr)
			}
		}
	}
	return state, wentBefore, nil
}

// turnWentBefore reports whether an earlier attempt of the TaskRun (its
// retriesStatus) had its turn: its turn step's result go was true.
func turnWentBefore(tr *unstructured.Unstructured) bool {
	attempts, _, _ := unstructured.NestedSlice(tr.Object, "status", "retriesStatus")
	for _, a := range attempts {
		am, _ := a.(map[string]any)
		steps, _, _ := unstructured.NestedSlice(am, "steps")
		for _, st := range steps {
			sm, _ := st.(map[string]any)
			if sm["name"] != "turn" {
				continue
			}
			rs, _, _ := unstructured.NestedSlice(sm, "results")
			if strings.TrimSpace(namedValue(rs, ResultGo)) == "true" {
				return true
			}
		}
	}
	return false
}

// resultFailed is the result a migrate TaskRun of a list writes: true when its
// migration failed (check-databases' ResultFailed; the gate imports no step).
const resultFailed = "failed"

// namedValue is the string value of the item called name in a Tekton list of
// {name, value} objects (params, results, step results); "" when none.
func namedValue(items []any, name string) string {
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok || m["name"] != name {
			continue
		}
		v, _ := m["value"].(string)
		return v
	}
	return ""
}

// resultOf is the string value of a TaskRun's result ("" when it has none).
func resultOf(tr *unstructured.Unstructured, name string) string {
	rs, _, _ := unstructured.NestedSlice(tr.Object, "status", "results")
	return strings.TrimSpace(namedValue(rs, name))
}

// paramOf is the string value of a TaskRun's param.
func paramOf(tr *unstructured.Unstructured, name string) string {
	params, _, _ := unstructured.NestedSlice(tr.Object, "spec", "params")
	return namedValue(params, name)
}
