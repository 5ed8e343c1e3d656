package e2e

import (
	"maps"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// A keep-down hold and the next successful run for the same database
// (session 29's attack): a run with on-migrate-failure=keep-down fails at a
// migration and leaves the application at 0 with its record
// (chartreuse.io/held-by "<run-uid>:<secret>/<key>"). The next run that
// Succeeds for that database must bring the application back, also when it
// stops nothing itself:
//   - nothing pending (to below the failing migration, or the database
//     already at the release's last one): plan skips scale-down, migrate and
//     scale-restore;
//   - stop-workloads=auto with only additive migrations pending: scale-down
//     is skipped, so the run holds nothing and its scale-restore lets go
//     of nothing.
//
// Both used to Succeed with the application still at 0 and nothing in the
// run saying so. A run with stop-workloads=false never touches the workloads: it
// leaves the hold as it is.

func init() {
	// fails-first starts with autoAdditive's 1: a keep-down failure the auto
	// run's additive 2 and 3 then follow on Tekton too.
	tektonSets["fails-first"] = argoSets["fails-first"]
}

// keepDown runs set with on-migrate-failure=keep-down, which fails at a
// migration, and checks the hold it leaves: the application at 0, held by
// this run for the case's database.
func (c *argoCase) keepDown(t *testing.T, set string, want ...int64) *wfv1.Workflow {
	t.Helper()
	wf := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/" + set, "on-migrate-failure": "keep-down"})
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantVersions(t, c.versions(t), want...)
	wantHeld(t, c.s.kube, c.app, wf, c.secret)
	return wf
}

// Nothing pending: the database is at 2 and the run asks for no more (to=2),
// stop-workloads=true as docs/operations.md advises for the run after a
// keep-down.
func (s *argoSuite) testHoldNothingPending(t *testing.T) {
	c := s.newCase(t, "kdnothing")
	c.keepDown(t, "fails-second", 1, 2)

	wf := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/fails-second", "to": "2", "stop-workloads": "true"})
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantOutputs(t, wf, "plan", map[string]string{"pending": "false", "current-version": "2"})
	wantVersions(t, c.versions(t), 1, 2)
	wantHoldReleased(t, s.kube, c.app, wf.Name)
}

// stop-workloads=auto, additive migrations pending: plan says no downtime,
// scale-down is skipped, the migrations are applied under the running
// application (here: none is running, the earlier run holds it at 0).
func (s *argoSuite) testHoldAutoAdditive(t *testing.T) {
	c := s.newCase(t, "kdauto")
	if err := c.db.MigrateTo(t.Context(), autoAdditive, 1); err != nil {
		t.Fatal(err)
	}
	c.keepDown(t, "fails-first", 1)

	wf := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/auto-additive", "stop-workloads": "auto"})
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantOutputs(t, wf, "plan", map[string]string{"pending": "true", "needs-downtime": "false", "current-version": "1"})
	wantAdditiveApplied(t, c.db)
	wantHoldReleased(t, s.kube, c.app, wf.Name)
}

// stop-workloads=false: the run never touches the workloads, so the hold
// stays as the keep-down run left it.
func (s *argoSuite) testHoldNoStop(t *testing.T) {
	c := s.newCase(t, "kdnostop")
	c.keepDown(t, "fails-second", 1, 2)
	held := c.appState(t)

	wf := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/fails-second", "to": "2", "stop-workloads": "false"})
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantOutputs(t, wf, "plan", map[string]string{"pending": "false"})
	wantHoldKept(t, s.kube, c.app, held, wf.Name)
}

// A person stops the application with the scale-down entrypoint (to work on the
// database by hand); a run with nothing pending (a CI rerun) then leaves it
// stopped: the person's hold names the bare Secret, which no run lets go of
// (an attack found such a run restarting it when the entrypoint wrote
// secret/key); the scale-restore entrypoint brings it back.
func (s *argoSuite) testPersonHoldKept(t *testing.T) {
	c := s.newCase(t, "kdperson")
	if err := c.db.MigrateTo(t.Context(), shopSet, 3); err != nil {
		t.Fatal(err)
	}
	down := c.run(t, "scale-down", nil)
	wantPhase(t, down, wfv1.WorkflowSucceeded)
	wantAppStopped(t, s.kube, c.app)
	held := c.appState(t)
	if want := holderFor(down, c.secret); held.Annotations["deployment/"+heldByAnnotation] != want {
		t.Errorf("the person's hold is %q, want %q (the bare Secret, which no run supersedes)", held.Annotations["deployment/"+heldByAnnotation], want)
	}

	wf := c.run(t, "", nil)
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantOutputs(t, wf, "plan", map[string]string{"pending": "false", "superseded-holds": ""})
	wantHoldKept(t, s.kube, c.app, held, wf.Name)

	up := c.run(t, "scale-restore", nil)
	wantPhase(t, up, wfv1.WorkflowSucceeded)
	wantAppRestored(t, s.kube, c.app)
}

// keepDown: as on Argo, a PipelineRun of set with keep-down.
func (c *tektonCase) keepDown(t *testing.T, set string, want ...int64) *pipelinev1.PipelineRun {
	t.Helper()
	pr, _ := c.run(t, c.pipelineRun(t, set, map[string]string{"on-migrate-failure": "keep-down"}))
	wantSucceeded(t, pr, false)
	c.wantVersions(t, want...)
	wantHeld(t, c.s.kube, c.app, pr, tektonSecret)
	return pr
}

// Nothing pending: broken (3 fails) from 1 leaves 2 applied; then to=2.
func (s *tektonSuite) testHoldNothingPending(t *testing.T) {
	c := s.newCase(t, nil)
	c.migrateTo(t, 1)
	c.keepDown(t, "broken", 1, 2)

	pr, trs := c.run(t, c.pipelineRun(t, "broken", map[string]string{"to": "2", "stop-workloads": "true"}))
	wantSucceeded(t, pr, true)
	wantResults(t, trs, "plan", map[string]string{"pending": "false", "current-version": "2"})
	c.wantVersions(t, 1, 2)
	wantHoldReleased(t, s.kube, c.app, pr.Name)
}

// stop-workloads=auto, additive migrations pending: as on Argo.
func (s *tektonSuite) testHoldAutoAdditive(t *testing.T) {
	c := s.newCase(t, nil)
	if err := c.db.MigrateTo(t.Context(), autoAdditive, 1); err != nil {
		t.Fatal(err)
	}
	c.keepDown(t, "fails-first", 1)

	pr, trs := c.run(t, c.pipelineRun(t, "auto-additive", map[string]string{"stop-workloads": "auto"}))
	wantSucceeded(t, pr, true)
	wantResults(t, trs, "plan", map[string]string{"pending": "true", "needs-downtime": "false", "current-version": "1"})
	wantAdditiveApplied(t, c.db)
	wantHoldReleased(t, s.kube, c.app, pr.Name)
}

// stop-workloads=false: as on Argo.
func (s *tektonSuite) testHoldNoStop(t *testing.T) {
	c := s.newCase(t, nil)
	c.migrateTo(t, 1)
	c.keepDown(t, "broken", 1, 2)
	held := appState(t, s.kube, c.app)

	pr, trs := c.run(t, c.pipelineRun(t, "broken", map[string]string{"to": "2", "stop-workloads": "false"}))
	wantSucceeded(t, pr, true)
	wantResults(t, trs, "plan", map[string]string{"pending": "false"})
	wantHoldKept(t, s.kube, c.app, held, pr.Name)
}

// wantHeld: the application is stopped and held by run alone, for the
// database in secret (key url).
func wantHeld(t *testing.T, kube kubernetes.Interface, app *App, run metav1.Object, secret string) {
	t.Helper()
	wantAppStopped(t, kube, app)
	want := holderFor(run, secret+"/url")
	if got := appState(t, kube, app).Annotations["deployment/"+heldByAnnotation]; got != want {
		t.Fatalf("held by %q after the keep-down run, want %q", got, want)
	}
}

// wantHoldReleased: the application an earlier keep-down run held at 0 runs
// again after run Succeeded, with no record left. The replicas are read at
// once (a Succeeded run has restored before it ends), so a hold left in place
// fails here, naming its record, rather than after wantAppRestored's wait
// for pods.
func wantHoldReleased(t *testing.T, kube kubernetes.Interface, app *App, run string) {
	t.Helper()
	if st := appState(t, kube, app); st.SpecReplicas == 0 {
		t.Fatalf("run %s Succeeded but left the application at 0 replicas (%d pods, CronJob suspended %v), still held by %q, the earlier keep-down run's record: a successful run for the database must restore it",
			run, len(st.Pods), st.CronSuspended, st.Annotations["deployment/"+heldByAnnotation])
	}
	wantAppRestored(t, kube, app)
}

// wantHoldKept: after run (stop-workloads=false) the application is stopped
// with the very record it had before.
func wantHoldKept(t *testing.T, kube kubernetes.Interface, app *App, before AppState, run string) {
	t.Helper()
	wantAppStopped(t, kube, app)
	if after := appState(t, kube, app); !maps.Equal(after.Annotations, before.Annotations) {
		t.Errorf("run %s changed the hold: records %v, want %v as before it", run, after.Annotations, before.Annotations)
	}
}
