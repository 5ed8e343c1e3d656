package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chartreuse-go/chartreuse/pkg/gate"
	"github.com/chartreuse-go/chartreuse/test/engines"
)

// One run at a time per database on Tekton (issue 12, item 8): the Pipeline's
// gate task holds a Lease named after the database Secret from before plan
// until finally's release-gate, so two runs for one database never overlap,
// and a cancelled holder, whose finally never runs, does not block the next.

// 6. Two runs for the same database created at the same moment run one after
// the other: the work of one (plan to its last task) ends before the other's
// begins, both succeed, and the second plans after the first migrated, so it
// finds nothing pending. Every migration is applied once, by the first.
func (s *tektonSuite) testGateTwoRuns(t *testing.T) {
	c := s.newCase(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 2*runBound)
	defer cancel()
	prs := []*pipelinev1.PipelineRun{c.pipelineRun(t, "slow", nil), c.pipelineRun(t, "slow", nil)}
	names := make([]string, len(prs))
	var wg sync.WaitGroup
	for i, pr := range prs {
		wg.Go(func() {
			created, err := s.tk.CreatePipelineRun(ctx, c.ns, pr)
			if err != nil {
				t.Error(err)
				return
			}
			names[i] = created.Name
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	type result struct {
		pr  *pipelinev1.PipelineRun
		trs map[string]*pipelinev1.TaskRun
	}
	results := make([]result, len(names))
	for i, n := range names {
		wg.Go(func() {
			done, err := s.tk.WaitPipelineRun(ctx, c.ns, n)
			if err != nil {
				t.Error(err)
				return
			}
			trs, err := s.tk.ChildTaskRuns(ctx, done)
			if err != nil {
				t.Error(err)
				return
			}
			results[i] = result{done, trs}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var first, second *result
	for i := range results {
		r := &results[i]
		t.Log(s.tk.DescribeRun(ctx, r.pr))
		wantSucceeded(t, r.pr, true)
		switch engines.TaskRunResults(r.trs["plan"])["pending"] {
		case "true":
			first = r
		case "false":
			second = r
		}
	}
	if first == nil || second == nil {
		t.Fatalf("want one run that planned pending migrations and one that planned none")
	}
	wantResults(t, first.trs, "plan", map[string]string{"pending": "true", "current-version": "0"})
	wantResults(t, first.trs, "migrate", map[string]string{"applied": "3"})
	wantResults(t, second.trs, "plan", map[string]string{"pending": "false", "current-version": "3"})
	wantTasks(t, first.pr, first.trs, phases, nil, nil)
	// The second, with nothing pending, skips its release-gate.
	wantTasks(t, second.pr, second.trs, []string{"plan"}, nil, []string{"scale-down", "migrate", "scale-restore"})
	// The critical sections: from the first task after the gate to the last
	// before release-gate.
	window := func(r *result) (start, end time.Time) {
		for name, tr := range r.trs {
			if name == "gate" || name == "release-gate" || tr.Status.StartTime == nil || tr.Status.CompletionTime == nil {
				continue
			}
			if start.IsZero() || tr.Status.StartTime.Before(&metav1.Time{Time: start}) {
				start = tr.Status.StartTime.Time
			}
			if tr.Status.CompletionTime.After(end) {
				end = tr.Status.CompletionTime.Time
			}
		}
		return start, end
	}
	s1, e1 := window(first)
	s2, e2 := window(second)
	t.Logf("first run %s worked %s..%s, second %s %s..%s", first.pr.Name, s1.Format(time.StampMilli), e1.Format(time.StampMilli),
		second.pr.Name, s2.Format(time.StampMilli), e2.Format(time.StampMilli))
	if overlap := minTime(e1, e2).Sub(maxTime(s1, s2)); overlap > 0 {
		t.Errorf("the two runs worked at the same time for %s", overlap)
	}
	// The second waited for the first's release.
	if rel := first.trs["release-gate"]; rel != nil && rel.Status.CompletionTime != nil && s2.Before(rel.Status.StartTime.Time) {
		t.Errorf("the second run started its work at %s, before the first's release-gate started at %s", s2, rel.Status.StartTime)
	}
	if log := s.tk.TaskRunLogs(ctx, second.trs["gate"]); !strings.Contains(log, "waiting for the gate") {
		t.Errorf("the second run's gate did not wait:\n%s", log)
	}
	c.wantVersions(t, 1, 2, 3)
	c.wantRestored(t)
	// The second run left the Lease held; a third run takes it over at once
	// (the second has finished) and also finds nothing pending.
	ls, err := s.kube.CoordinationV1().Leases(c.ns).Get(ctx, gate.LeaseName(tektonSecret), metav1.GetOptions{})
	if err != nil || ls.Spec.HolderIdentity == nil || *ls.Spec.HolderIdentity != string(second.pr.UID) {
		t.Fatalf("after both runs want the Lease held by the second run %s, got %v, %v", second.pr.UID, ls, err)
	}
	third, trs := c.run(t, c.pipelineRun(t, "slow", nil))
	wantSucceeded(t, third, true)
	wantTasks(t, third, trs, []string{"plan"}, nil, []string{"scale-down", "migrate", "scale-restore"})
	if log := s.tk.TaskRunLogs(ctx, trs["gate"]); !strings.Contains(log, "taking the gate over from a run that is done: its PipelineRun finished (Completed)") ||
		!strings.Contains(log, second.pr.Name) {
		t.Errorf("the third run's gate did not take the gate over from %s:\n%s", second.pr.Name, log)
	}
}

// 6b. A holder cancelled outright (spec.status Cancelled: no finally, so no
// release-gate) while it migrates does not block the next run: its gate takes
// the gate over once the cancelled run's pods have stopped,
// says so, and finishes the migration (the cancelled one's was rolled back with
// its session) and the restore.
func (s *tektonSuite) testGateCancelledHolder(t *testing.T) {
	c := s.newCase(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 2*runBound)
	defer cancel()
	a, err := s.tk.CreatePipelineRun(ctx, c.ns, c.pipelineRun(t, "slower", nil))
	if err != nil {
		t.Fatal(err)
	}
	// A holds the gate and is migrating (2 takes 40 s) when B is created and A
	// cancelled. B's gate may start while A still runs (it waits) or once A has
	// finished (its Lease is still there, unreleased): either way it must take
	// the gate over, and only once A's pods have stopped. Not waiting for B's
	// gate pod keeps the cancel inside A's migration on a loaded machine.
	waitTaskStarted(t, ctx, s, c.ns, a.Name, "migrate")
	b, err := s.tk.CreatePipelineRun(ctx, c.ns, c.pipelineRun(t, "slower", nil))
	if err != nil {
		t.Fatal(err)
	}
	if cur, err := s.tk.Pipeline.TektonV1().TaskRuns(c.ns).Get(ctx, a.Name+"-migrate", metav1.GetOptions{}); err != nil || cur.IsDone() {
		t.Fatalf("A's migrate ended before the test could cancel it (%v): the scenario needs a slower migration here", err)
	}
	if err := s.tk.SetRunStatus(ctx, c.ns, a.Name, pipelinev1.PipelineRunSpecStatusCancelled); err != nil {
		t.Fatal(err)
	}
	a, aTrs := c.wait(t, ctx, a.Name)
	wantSucceeded(t, a, false)
	if aTrs["release-gate"] != nil {
		t.Errorf("the cancelled run ran release-gate")
	}
	b, trs := c.wait(t, ctx, b.Name)
	wantSucceeded(t, b, true)
	wantResults(t, trs, "plan", map[string]string{"pending": "true", "current-version": "1"})
	log := s.tk.TaskRunLogs(ctx, trs["gate"])
	if !strings.Contains(log, "taking the gate over from a run that is done: its PipelineRun finished") || !strings.Contains(log, a.Name) {
		t.Errorf("the second run's gate did not say it took the gate over from %s:\n%s", a.Name, log)
	}
	c.wantVersions(t, 1, 2, 3)
	c.wantRestored(t)
}

// waitTaskStarted waits until the run's TaskRun for task has a pod running.
func waitTaskStarted(t *testing.T, ctx context.Context, s *tektonSuite, ns, run, task string) {
	t.Helper()
	err := Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		pr, err := s.tk.Pipeline.TektonV1().PipelineRuns(ns).Get(ctx, run, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if pr.IsDone() {
			t.Fatalf("%s finished before its task %s started", run, task)
		}
		trs, err := s.tk.ChildTaskRuns(ctx, pr)
		if err != nil {
			return false, err
		}
		tr := trs[task]
		if tr == nil || tr.Status.PodName == "" {
			return false, nil
		}
		for _, st := range tr.Status.Steps {
			if st.Running != nil {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("%s: task %s did not start: %v", run, task, err)
	}
}
