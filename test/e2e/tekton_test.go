package e2e

import (
	"context"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/chartreuse-go/chartreuse/test/engines"
)

// TestTekton runs the project's Tekton Pipeline (tekton/, applied with
// `kubectl apply -k`) on the real Tekton controller in the local cluster,
// against a real PostgreSQL and a sample application with real pods. Every
// scenario has its own namespace, database and application; they run in
// parallel. Assertions read the database, the workloads and pods, and the
// PipelineRun/TaskRun status, never logs. The git scenarios take the
// migrations from a real git server (test/gitserver) on the cluster bridge,
// migrations-image from a real registry (test/registry) there.
func TestTekton(t *testing.T) {
	// Beside TestArgo and TestCLI: its own namespaces, image and database server.
	t.Parallel()
	s := newTektonSuite(t)
	start := time.Now()
	// The scenarios run side by side, in the shared slots (t.Run from several
	// goroutines), whatever -test.parallel says: they mostly wait for pods.
	scenarios := []scenario{
		{"nothing-pending", s.testNothingPending},
		{"migrations-pending", s.testMigrationsPending},
		// the next successful run lets go of a keep-down (keepdown_release_test.go)
		{"keep-down-hold-nothing-pending-restores", s.testHoldNothingPending},
		{"restore", s.testRestorePolicy},
		{"rollback", s.testRollback},
		// One run at a time per database (tekton_gate_test.go).
		{"two-runs-one-database", s.testGateTwoRuns},
		{"two-databases-one-application", s.testTwoDatabasesShareWorkloads},
		// stop-workloads=auto (downtime_test.go).
		{"auto-blocking-stops", s.testAutoBlocking},
		{"tag-trigger", s.testTagTrigger},
		// Migrations from git (tekton_git_test.go).
		{"git-tag", s.testGitTag},
		// The failure paths (tekton_failure_test.go).
		{"cancel-restores-only-its-own", s.testCancelRestoresOnlyItsOwn},
		{"invalid-parameters-fail-closed", s.testInvalidParameters},
		{"evicted-migrate-is-retried", s.testEvictedMigrate},
		{"put-back-refuses-migrate", s.testPutBackRefusesMigrate},
		// Several databases in one run: the Pipeline chartreuse-databases
		// (tekton_databases_test.go).
		{"databases-list", s.testDatabasesList},
		{"databases-list-rollback", s.testDatabasesListRollback},
		{"databases-list-cancel-restores", s.testDatabasesListCancelRestores},
	}
	// Variants of paths taken above, and paths Argo's suite takes too with the
	// same step code (make test-full).
	extended := []scenario{
		// Out of make test for its CI time (2026-12-07, a run over its 70 minutes):
		// the CLI suite reruns a task by hand (tkn task start), databases-list-
		// rollback takes the list's recheck and decide, auto-blocking-stops
		// stop-workloads=auto.
		{"rollback-outlasts-held-lock", s.testRollbackOutlastsLock},
		{"tasks-changed-mid-run", s.testTasksChangedMidRun},
		{"auto-additive-keeps-running", s.testAutoAdditive},
		{"databases-list-restore", s.testDatabasesListRestore},
		{"keep-down-then-manual-rerun", s.testKeepDownThenRerun},
		// wait-for-db's retries (pkg/waitdb against a stopped server; the
		// engine's rerun on exit 75: evicted-migrate-is-retried)
		{"transient-database-down", s.testTransient},
		// variants of keep-down-hold-nothing-pending-restores and of the list's
		// restore and rollback policies
		{"keep-down-hold-auto-additive-restores", s.testHoldAutoAdditive},
		{"databases-list-keep-down", s.testDatabasesListKeepDown},
		// a recheck of a dirty database: decide still runs (core: databases-list-rollback)
		{"databases-list-dirty-recheck", s.testDatabasesListDirtyRecheck},
		// finally's restore-not-migrated after a failed scale-down (core: after a cancel)
		{"databases-list-scale-down-fails-restores", s.testDatabasesListScaleDownFailsRestores},
		// attack34: a stop or cancel while the canary migrates, and a rerun during the cancel
		{"databases-list-stop-mid-canary", s.testDatabasesListStopMidCanary},
		{"databases-list-cancel-mid-canary", s.testDatabasesListCancelMidCanary},
		{"databases-list-rerun-during-cancel", s.testDatabasesListRerunDuringCancel},
		{"cancelled-holder-frees-the-gate", s.testGateCancelledHolder},
		{"keep-down-hold-stop-workloads-false-leaves-it", s.testHoldNoStop},
		{"parameters", s.testParameters},
		{"plan-refuses-while-lock-held", s.testPlanRefusesWhileLockHeld},
		{"migrations-image", s.testMigrationsImage},
		{"git-private-repository-token", s.testGitPrivate},
		{"auto-additive-fails-rolls-back", s.testAutoAdditiveFailsRollsBack},
		{"auto-unbounded-lock-timeout-stops", s.testAutoUnboundedLockTimeout},
		{"git-revisions", s.testGitRevisions},
		{"image-tag-pushed-again", s.testImageTagPushedAgain},
		{"git-wrong-revision", s.testGitWrongRevision},
		{"wrong-image-fails-fast", s.testWrongImage},
		{"wrong-role-refused-before-stopping", s.testWrongRoleRefusedBeforeStopping},
		{"not-ready-fails-the-run", s.testNotReady},
		{"edited-migration-refused-then-accepted", s.testEditedMigration},
		// The lock busy message names the holder's run and pod (tekton_holder_test.go).
		{"lock-holder-named-with-its-pod", s.testLockHolderNamed},
	}
	runScenarios(t, "tekton", scenarios, extended...)
	t.Logf("tekton: all scenarios done in %s", time.Since(start).Round(100*time.Millisecond))
}

// ran lists the pipeline tasks that have a TaskRun.
func ran(trs map[string]*pipelinev1.TaskRun) map[string]bool {
	out := map[string]bool{}
	for n := range trs {
		out[n] = true
	}
	return out
}

// wantTasks checks which tasks succeeded, failed and were skipped. The gate,
// which every run past the parameter guards holds, always succeeds; its release
// succeeds when plan found something pending and is skipped otherwise (the next
// run takes the Lease over).
func wantTasks(t *testing.T, pr *pipelinev1.PipelineRun, trs map[string]*pipelinev1.TaskRun, succeeded, failed, skipped []string) {
	t.Helper()
	succeeded = append([]string{"gate"}, succeeded...)
	if plan := trs["plan"]; plan != nil && engines.TaskRunResults(plan)["pending"] == "true" {
		succeeded = append(succeeded, "release-gate")
	} else {
		skipped = append(skipped, "release-gate")
	}
	for _, n := range succeeded {
		if tr := trs[n]; tr == nil || !engines.Succeeded(tr.Status.GetCondition(apis.ConditionSucceeded)) {
			t.Errorf("task %s did not succeed (ran: %v)", n, ran(trs))
		}
	}
	for _, n := range failed {
		if tr := trs[n]; tr == nil || tr.Status.GetCondition(apis.ConditionSucceeded).IsTrue() {
			t.Errorf("task %s did not fail (ran: %v)", n, ran(trs))
		}
	}
	sk := engines.SkippedTasks(pr)
	for _, n := range skipped {
		if _, ok := sk[n]; !ok || trs[n] != nil {
			t.Errorf("task %s not skipped (skipped: %v, ran: %v)", n, sk, ran(trs))
		}
	}
	if len(trs) != len(succeeded)+len(failed) {
		t.Errorf("TaskRuns %v, want exactly %v + %v", ran(trs), succeeded, failed)
	}
}

func wantResults(t *testing.T, trs map[string]*pipelinev1.TaskRun, task string, want map[string]string) {
	t.Helper()
	tr := trs[task]
	if tr == nil {
		t.Errorf("no TaskRun for %s", task)
		return
	}
	got := engines.TaskRunResults(tr)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s result %s = %q, want %q (all: %v)", task, k, got[k], v, got)
		}
	}
}

func wantSucceeded(t *testing.T, pr *pipelinev1.PipelineRun, want bool) {
	t.Helper()
	c := pr.Status.GetCondition(apis.ConditionSucceeded)
	if engines.Succeeded(c) != want {
		t.Fatalf("PipelineRun %s: %s, want succeeded=%v", pr.Name, engines.RunCondition(c), want)
	}
}

var (
	allFinally = []string{"restore", "restore-if-unchanged", "rollback"}
	phases     = []string{"plan", "scale-down", "migrate", "scale-restore"}
)

// 1. Nothing pending: the run succeeds, no workload is touched, and the
// scale-down, migrate and scale-restore tasks are skipped by their when
// expressions.
func (s *tektonSuite) testNothingPending(t *testing.T) {
	c := s.newCase(t, nil)
	c.migrateTo(t, 3)

	pr, trs := c.run(t, c.pipelineRun(t, "", nil))
	wantSucceeded(t, pr, true)
	wantTasks(t, pr, trs, []string{"plan"}, nil,
		append([]string{"wait-for-db", "wait-patroni", "scale-down", "migrate", "scale-restore"}, allFinally...))
	wantResults(t, trs, "plan", map[string]string{"pending": "false", "current-version": "3", "target-version": "3"})
	// The Pipeline's results: the skipped tasks' are left out, and the run still succeeds.
	wantPipelineResults(t, pr, map[string]string{"pending": "false", "planned-version": "3", "target-version": "3", "git-commit": "", "migrations-digest": "",
		"risks": "[]", "needs-downtime": "false"})

	c.wantVersions(t, 1, 2, 3)
	c.wantUntouched(t)
	c.wantRestored(t)
}

// 2. Migrations pending: the workloads are stopped (their pods gone) before the
// first migration, the migrations applied, the workloads restored; the
// versions are in the TaskRuns' results.
func (s *tektonSuite) testMigrationsPending(t *testing.T) {
	c := s.newCase(t, nil)
	start := time.Now()
	before := c.pods.Existing(start)
	if len(before) != int(c.app.Replicas) {
		t.Fatalf("app pods before: %v", before)
	}

	pr, trs := c.run(t, c.pipelineRun(t, "", nil))
	wantSucceeded(t, pr, true)
	wantTasks(t, pr, trs, phases, nil, append([]string{"wait-for-db", "wait-patroni"}, allFinally...))
	wantResults(t, trs, "plan", map[string]string{"pending": "true", "current-version": "0", "target-version": "3"})
	wantResults(t, trs, "scale-down", map[string]string{"scaled": "2"})
	wantResults(t, trs, "migrate", map[string]string{"applied": "3", "current-version": "3", "target-version": "3"})
	wantResults(t, trs, "scale-restore", map[string]string{"restored": "2"})
	timed := map[string]float64{"lock-wait-seconds": 0, "table-lock-wait-seconds": 0, "downtime-seconds": 0.1}
	want := map[string]string{"pending": "true", "planned-version": "0", "target-version": "3", "git-commit": "", "migrations-digest": "",
		"risks": "[]", "needs-downtime": "true", "scaled": "2", "applied": "3", "current-version": "3", "restored": "2"}
	got := map[string]string{}
	for _, r := range pr.Status.Results {
		got[r.Name] = r.Value.StringVal
	}
	for name, least := range timed {
		// Seconds measured by the steps: a number, at least the least possible.
		if v, err := strconv.ParseFloat(got[name], 64); err != nil || v < least {
			t.Errorf("PipelineRun result %s = %q, want seconds >= %v", name, got[name], least)
		}
		want[name] = got[name]
	}
	wantPipelineResults(t, pr, want)
	// Least privilege on the pods the controller made (permissions_test.go).
	wantLeastPrivilegePods(t, s.kube, runPods(t, s.kube, c.ns, "tekton.dev/pipelineRun="+pr.Name), false)

	c.wantVersions(t, 1, 2, 3)
	log, err := c.db.MigrationLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	first, last := log["1"], log["3"]
	gone := c.pods.LastDeleted(before)
	// scale-restore does not wait for readiness here: wait for the app, then for the
	// pod watch to have seen a new pod ready.
	c.wantRestored(t)
	var down, up time.Time
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_ = Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		down, up = c.pods.Window(start)
		return !up.IsZero(), nil
	})
	switch {
	case gone.IsZero():
		t.Errorf("the app's pods were never deleted")
	case !gone.Before(first):
		t.Errorf("last app pod seen gone at %s, after the first migration at %s", gone.Format(time.StampMicro), first.Format(time.StampMicro))
	case up.IsZero() || !up.After(last):
		t.Errorf("first new app pod ready at %s, want after the last migration at %s", up.Format(time.StampMicro), last.Format(time.StampMicro))
	default:
		t.Logf("app down at %s, all pods gone %s before the first migration, a new pod ready %s after the last (downtime %s)",
			down.Format(time.StampMilli), first.Sub(gone).Round(time.Millisecond), up.Sub(last).Round(time.Millisecond), up.Sub(down).Round(time.Millisecond))
	}
	if live := c.pods.Existing(first); len(live) != 0 {
		t.Errorf("app pods existed when the first migration ran: %v", live)
	}
}

// 3. A transient failure: the database is down when the run starts, so plan,
// which waits for it (wait-timeout), times out and exits 75; Tekton retries the
// task (retries: 2), the database is back by then and the run succeeds.
func (s *tektonSuite) testTransient(t *testing.T) {
	pg := StartPostgres(t, s.env) // its own server, stopped for a while
	c := s.newCase(t, pg)
	pg.StopServer()

	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	created, err := s.tk.CreatePipelineRun(ctx, c.ns, c.pipelineRun(t, "", map[string]string{"wait-timeout": "5s"}))
	if err != nil {
		t.Fatal(err)
	}
	// Start the database again once the first attempt has failed.
	for {
		trs, err := s.tk.Pipeline.TektonV1().TaskRuns(c.ns).List(ctx, metav1.ListOptions{
			LabelSelector: "tekton.dev/pipelineRun=" + created.Name + ",tekton.dev/pipelineTask=plan"})
		if err != nil {
			t.Fatal(err)
		}
		if len(trs.Items) == 1 && len(trs.Items[0].Status.RetriesStatus) > 0 {
			if err := pg.StartServer(); err != nil {
				t.Fatal(err)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("plan was never retried")
		case <-time.After(200 * time.Millisecond):
		}
	}
	pr, trs := c.wait(t, ctx, created.Name)
	wantSucceeded(t, pr, true)
	codes := engines.StepExitCodes(trs["plan"])
	if len(codes) < 2 || codes[0] != "plan=75" || codes[len(codes)-1] != "plan=0" {
		t.Errorf("plan attempts: %v, want exit 75 then a retry with 0", codes)
	}
	wantResults(t, trs, "migrate", map[string]string{"applied": "3", "current-version": "3"})
	c.wantVersions(t, 1, 2, 3)
	c.wantRestored(t)

	// Issue 12, bug 1: only the step's own timeout (wait-timeout) may end an
	// attempt. Tekton times a TaskRun's attempts one by one (a retry gets a
	// fresh start time), so what is left to check is that the Pipeline sets no
	// literal timeout of its own on the TaskRun.
	tr := trs["plan"]
	if to := tr.Spec.Timeout; to == nil || to.Duration != 0 {
		t.Errorf("plan TaskRun timeout %v, want 0 (none: --wait-timeout ends each attempt)", to)
	}
	if rs := tr.Status.RetriesStatus; len(rs) > 0 && rs[0].CompletionTime != nil && tr.Status.StartTime != nil &&
		tr.Status.StartTime.Before(rs[0].CompletionTime) {
		t.Errorf("the retry started at %s, before the first attempt ended at %s", tr.Status.StartTime, rs[0].CompletionTime)
	}
}

// 4a + 5. keep-down: a migration with an SQL error fails the run and leaves
// the workloads stopped, with what came before the broken one applied. Then
// the manual rerun README.md describes: Tekton has no in-place retry, so after
// fixing the migration a TaskRun of chartreuse-migrate, then one of
// chartreuse-scale-restore.
func (s *tektonSuite) testKeepDownThenRerun(t *testing.T) {
	c, pr, trs := s.runBroken(t, 1, "keep-down")
	wantTasks(t, pr, trs, []string{"plan", "scale-down"}, []string{"migrate"},
		append([]string{"wait-for-db", "wait-patroni", "scale-restore"}, allFinally...))
	// Tekton reruns a failed migrate whatever its exit code (retries: 2, for
	// pod-level errors): the SQL error comes back each time, rolled back each time.
	if codes := engines.StepExitCodes(trs["migrate"]); strings.Join(codes, " ") != "migrate=1 migrate=1 migrate=1" {
		t.Errorf("migrate exit codes %v, want three attempts with 1", codes)
	}
	c.wantVersions(t, 1, 2)
	c.wantStopped(t)

	// 5. The fix, then the failed phase and the restore, each as a TaskRun.
	mig := c.taskRun(t, "chartreuse-migrate", map[string]string{
		"image": tektonImage, "database-secret": tektonSecret, "migrations-dir": SetsRoot + "/fixed",
	})
	if r := engines.TaskRunResults(mig); r["applied"] != "1" || r["current-version"] != "3" {
		t.Errorf("migrate TaskRun results %v, want applied 1, current-version 3", r)
	}
	c.wantStopped(t) // migrate alone does not touch the workloads
	res := c.taskRun(t, "chartreuse-scale-restore", map[string]string{
		"image": tektonImage, "workload-selector": c.app.Selector,
	})
	if r := engines.TaskRunResults(res); r["restored"] != "2" {
		t.Errorf("scale-restore TaskRun results %v, want restored 2", r)
	}
	c.wantVersions(t, 1, 2, 3)
	c.wantRestored(t)
}

// 4b. restore: the broken migration is the first pending one, so nothing was
// applied; restore-if-unchanged sees the plan's version and restores the
// workloads; the run still ends Failed.
func (s *tektonSuite) testRestorePolicy(t *testing.T) {
	c, pr, trs := s.runBroken(t, 2, "restore")
	wantTasks(t, pr, trs, []string{"plan", "scale-down", "restore-if-unchanged"}, []string{"migrate"},
		[]string{"wait-for-db", "wait-patroni", "scale-restore", "restore", "rollback"})
	wantResults(t, trs, "plan", map[string]string{"pending": "true", "current-version": "2", "target-version": "3"})
	wantResults(t, trs, "restore-if-unchanged", map[string]string{"restored": "2"})
	if tr := trs["restore-if-unchanged"]; tr != nil {
		if got := engines.StepResults(tr, "recheck")["current-version"]; got != "2" {
			t.Errorf("restore-if-unchanged: recheck step result current-version %q, want 2", got)
		}
	}
	c.wantVersions(t, 1, 2)
	c.wantRestored(t)
}

// 4c. rollback: migration 2 is applied, 3 fails; the rollback task migrates
// down to the plan's version (1) and restores; the run ends Failed.
func (s *tektonSuite) testRollback(t *testing.T) {
	c, pr, trs := s.runBroken(t, 1, "rollback")
	wantTasks(t, pr, trs, []string{"plan", "scale-down", "rollback"}, []string{"migrate"},
		[]string{"wait-for-db", "wait-patroni", "scale-restore", "restore", "restore-if-unchanged"})
	wantResults(t, trs, "plan", map[string]string{"current-version": "1"})
	wantResults(t, trs, "rollback", map[string]string{"current-version": "1", "restored": "2"})
	c.wantVersions(t, 1)
	c.wantRestored(t)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// wantPipelineResults checks the PipelineRun's results: exactly want, none more.
func wantPipelineResults(t *testing.T, pr *pipelinev1.PipelineRun, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, r := range pr.Status.Results {
		got[r.Name] = r.Value.StringVal
	}
	if !maps.Equal(got, want) {
		t.Errorf("PipelineRun %s results %v, want %v", pr.Name, got, want)
	}
}
