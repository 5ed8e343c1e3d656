package e2e

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/chartreuse-go/chartreuse/test/engines"
)

// The Pipeline's failure paths (issue 12) on the real Tekton controller: a run
// cancelled with CancelledRunFinally, a real advisory lock held by another
// session, a real eviction, a release whose pods never become ready, and
// parameters with typos. Each scenario has its own namespace, database and
// application, like the others of TestTekton, and runs beside them.

// 2. The failure path restores only what this run stopped (see the Argo
// scenario testStopRestoresOnlyItsOwn): run A fails with keep-down; run B, whose
// selection also holds another application, is cancelled
// (CancelledRunFinally) while scale-down waits for that one's pods; B's
// finally restores what B stopped and leaves A's. A later run whose migrate
// succeeds restores both.
func (s *tektonSuite) testCancelRestoresOnlyItsOwn(t *testing.T) {
	c := s.newCase(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 2*runBound)
	defer cancel()
	c.migrateTo(t, 1)
	other, err := DeployApp(ctx, s.kube, c.ns, AppOptions{Name: "other", ShutdownDelay: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	both := "app.kubernetes.io/name in (app,other)"

	a, _ := c.run(t, c.pipelineRun(t, "broken", map[string]string{"on-migrate-failure": "keep-down"}))
	wantSucceeded(t, a, false)
	c.wantStopped(t)

	b, err := s.tk.CreatePipelineRun(ctx, c.ns, c.pipelineRun(t, "broken", map[string]string{"workload-selector": both}))
	if err != nil {
		t.Fatal(err)
	}
	waitStopped(t, ctx, s.kube, c.ns, other.Name)
	if err := s.tk.SetRunStatus(ctx, c.ns, b.Name, pipelinev1.PipelineRunSpecStatusCancelledRunFinally); err != nil {
		t.Fatal(err)
	}
	b, trs := c.wait(t, ctx, b.Name)
	wantSucceeded(t, b, false)
	if trs["migrate"] != nil {
		t.Error("migrate ran in the cancelled run")
	}
	if tr := trs["restore"]; tr == nil || !engines.Succeeded(tr.Status.GetCondition(apis.ConditionSucceeded)) {
		t.Errorf("finally restore did not succeed (ran: %v)", ran(trs))
	}
	wantAppRestored(t, s.kube, other)
	c.wantStopped(t)
	if st := appState(t, s.kube, c.app); st.Annotations["deployment/"+runUIDAnnotation] != string(a.UID) {
		t.Errorf("app's record: %v, want run A's uid %s", st.Annotations, a.UID)
	}
	c.wantVersions(t, 1, 2)

	ok, _ := c.run(t, c.pipelineRun(t, "fixed", map[string]string{"workload-selector": both}))
	wantSucceeded(t, ok, true)
	c.wantVersions(t, 1, 2, 3)
	c.wantRestored(t)
	wantAppRestored(t, s.kube, other)
}

// 3. finally's rollback meets a held lock: migration 3 runs (2 is applied) when
// the test asks for migrate's advisory lock; migrate fails and lets go, the
// test's session gets the lock and holds it, so the rollback's first lock wait
// ends with a transient failure (Tekton cannot retry on an exit code). The
// test lets go once the step says it is trying again; the rollback must finish
// and restore the workloads.
func (s *tektonSuite) testRollbackOutlastsLock(t *testing.T) {
	c := s.newCase(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	c.migrateTo(t, 1)
	pr, err := s.tk.CreatePipelineRun(ctx, c.ns, c.pipelineRun(t, "slow-broken", map[string]string{
		"on-migrate-failure": "rollback", "lock-wait": "10s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	c.db.waitSleeping(t, ctx)
	lock := c.db.queueForLock(t, ctx)
	lock.wait(t, ctx)
	t.Log("the test holds the migration lock; migrate has ended")
	retried := releaseWhenRetried(ctx, lock, func(ctx context.Context) bool {
		tr, _ := s.tk.PipelineTaskRun(ctx, c.ns, pr.Name, "rollback")
		if tr == nil || tr.Status.PodName == "" {
			return false
		}
		ok, _ := logContains(ctx, s.kube, c.ns, tr.Status.PodName, "step-rollback", retryingLine)
		return ok
	}, func(ctx context.Context) bool {
		r, err := s.tk.Pipeline.TektonV1().PipelineRuns(c.ns).Get(ctx, pr.Name, metav1.GetOptions{})
		return err == nil && r.IsDone()
	})
	done, trs := c.wait(t, ctx, pr.Name)
	if !retried() {
		t.Error("the rollback never said it was trying again after the held lock")
	}
	wantSucceeded(t, done, false)
	wantResults(t, trs, "rollback", map[string]string{"current-version": "1", "restored": "2"})
	if codes := engines.StepExitCodes(trs["rollback"]); len(codes) != 1 || codes[0] != "check-stopped=0,rollback=0,scale-restore=0" {
		t.Errorf("rollback attempts %v, want one attempt, every step 0", codes)
	}
	c.wantVersions(t, 1)
	c.wantRestored(t)
}

// 4. A typo in an enum-like parameter, or a parameter the Pipeline does not
// declare, fails the run before anything changes (Tekton checks a param's enum
// only with the enable-param-enum feature flag, off by default, and passes an
// undeclared param on without a word).
func (s *tektonSuite) testInvalidParameters(t *testing.T) {
	c := s.newCase(t, nil)
	// Argo's list of databases, which the Pipeline does not take: without the
	// gate's check the run migrated database-secret alone and Succeeded.
	type badRun struct {
		name    string
		params  map[string]string
		edit    func(*pipelinev1.PipelineRun) // a change to the example's run, if any
		gateLog string                        // what the gate's log says, when checked
	}
	var bad []badRun
	for _, p := range append(badParameters(), map[string]string{"databases": `[{"secret":"` + tektonSecret + `"}]`}) {
		bad = append(bad, badRun{name: strings.Join(paramList(p), ","), params: p})
	}
	// A run-level timeout would stop a migration or finally's restore when it
	// expires: none (the webhook's default, 1 h, as `tkn pipeline start` without
	// --pipeline-timeout gives), or one for finally.
	bad = append(bad,
		badRun{name: "timeouts-default", gateLog: "run-level timeout (timeouts.pipeline 1h0m0s)", // the webhook's default
			edit: func(pr *pipelinev1.PipelineRun) { pr.Spec.Timeouts = nil }},
		badRun{name: "timeouts-finally", gateLog: "run-level timeout (timeouts.finally 10m0s)",
			edit: func(pr *pipelinev1.PipelineRun) {
				pr.Spec.Timeouts.Finally = &metav1.Duration{Duration: 10 * time.Minute}
			}},
		// Blank: the when expressions refuse only "", and the failure path's
		// rollback, which undoes only what the run id applied, then refused
		// after migrate failed (an attack found it).
		badRun{name: "run-id-blank", params: map[string]string{"run-id": "  "}, gateLog: "invalid parameters: run-id='"},
		// Under a second: migrate's own queries would time out on every retry.
		badRun{name: "statement-timeout-500ms", params: map[string]string{"statement-timeout": "500ms"}, gateLog: "statement-timeout='500ms' (0, or a duration of at least 1s"},
		badRun{name: "taskrunspec-timeout", gateLog: "run-level timeout (taskRunSpecs timeout 5m0s for task restore)",
			edit: func(pr *pipelinev1.PipelineRun) {
				pr.Spec.TaskRunSpecs = append(pr.Spec.TaskRunSpecs, pipelinev1.PipelineTaskRunSpec{PipelineTaskName: "restore", Timeout: &metav1.Duration{Duration: 5 * time.Minute}})
			}})
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	var wg sync.WaitGroup
	for _, b := range bad {
		wg.Go(func() {
			t.Run(b.name, func(t *testing.T) {
				pr := c.pipelineRun(t, "", b.params)
				if b.edit != nil {
					b.edit(pr)
				}
				created, err := s.tk.CreatePipelineRun(ctx, c.ns, pr)
				if err != nil {
					t.Fatal(err)
				}
				pr, trs := c.wait(t, ctx, created.Name)
				if engines.Succeeded(pr.Status.GetCondition(apis.ConditionSucceeded)) {
					t.Errorf("PipelineRun %s succeeded with %s", pr.Name, b.name)
				}
				for _, n := range append(append([]string{}, phases...), allFinally...) {
					if trs[n] != nil {
						t.Errorf("%s ran with %s", n, b.name)
					}
				}
				if b.gateLog != "" && trs["gate"] == nil {
					t.Error("no gate TaskRun")
				} else if b.gateLog != "" {
					if log := s.tk.TaskRunLogs(ctx, trs["gate"]); !strings.Contains(log, b.gateLog) {
						t.Errorf("the gate's log does not say %q:\n%s", b.gateLog, log)
					}
				}
			})
		})
	}
	wg.Wait()
	c.wantVersions(t)
	c.wantUntouched(t)
	if st := appState(t, s.kube, c.app); len(st.Annotations) != 0 || st.CronSuspended {
		t.Errorf("application touched: %+v", st)
	}
}

// 5. A pod-level error: the migrate pod is evicted (policy/v1 Eviction, graceful)
// while migration 2 runs; its transaction is rolled back with its session, so
// Tekton must run migrate again, and every migration runs exactly once.
// Migration 2 waits for table go_ahead, created only once the evicted pod is
// gone: with a fixed sleep (8 s) a loaded kubelet once delivered SIGTERM after
// the step had already finished, and the test then found no second attempt.
func (s *tektonSuite) testEvictedMigrate(t *testing.T) {
	c := s.newCase(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	pr := s.startWaitingSecond(t, ctx, c, nil)
	evicted := s.evictMigrate(t, ctx, c, pr.Name)
	if err := c.db.Exec(ctx, "CREATE TABLE go_ahead ()"); err != nil {
		t.Fatal(err)
	}
	done, trs := c.wait(t, ctx, pr.Name)
	wantSucceeded(t, done, true)
	// Tekton either retries the TaskRun (the evicted attempt in retriesStatus) or,
	// when the pod is gone before it recorded the attempt, makes the TaskRun a new
	// pod of the same name; either way migrate ran again in another pod.
	codes := engines.StepExitCodes(trs["migrate"])
	last, err := s.kube.CoreV1().Pods(c.ns).Get(ctx, trs["migrate"].Status.PodName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if codes[len(codes)-1] != "migrate=0" || (len(codes) < 2 && last.UID == evicted.UID) {
		t.Errorf("migrate attempts %v, last in pod %s (uid %s), want a successful run after the evicted pod (uid %s)", codes, last.Name, last.UID, evicted.UID)
	}
	wantResults(t, trs, "migrate", map[string]string{"current-version": "3"})
	c.wantVersions(t, 1, 2, 3)
	c.wantRestored(t)
}

// 6. A Succeeded run means the application is back: the release's pods never
// become ready, so the run fails after ready-timeout, naming the workload.
func (s *tektonSuite) testNotReady(t *testing.T) {
	c := s.newCase(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	pr, err := s.tk.CreatePipelineRun(ctx, c.ns, c.pipelineRun(t, "", map[string]string{"ready-timeout": "15s"}))
	if err != nil {
		t.Fatal(err)
	}
	waitStopped(t, ctx, s.kube, c.ns, c.app.Name)
	if err := breakReadiness(ctx, s.kube, c.ns, c.app.Name); err != nil {
		t.Fatal(err)
	}
	done, trs := c.wait(t, ctx, pr.Name)
	wantSucceeded(t, done, false)
	tr := trs["scale-restore"]
	if tr == nil {
		t.Fatalf("scale-restore did not run (ran: %v)", ran(trs))
	}
	if codes := engines.StepExitCodes(tr); len(codes) != 1 || codes[0] != "scale-restore=1" {
		t.Errorf("scale-restore attempts %v, want one with exit code 1 (a retry would find nothing left to wait for)", codes)
	}
	if !strings.Contains(s.tk.TaskRunLogs(ctx, tr), "deployment/"+c.app.Name) {
		t.Errorf("scale-restore's log does not name deployment/%s", c.app.Name)
	}
	c.wantVersions(t, 1, 2, 3)
	if st := appState(t, s.kube, c.app); st.SpecReplicas != c.app.Replicas || len(st.Annotations) != 0 {
		t.Errorf("Deployment: %d replicas, records %v; want %d, none (restored, just not ready)", st.SpecReplicas, st.Annotations, c.app.Replicas)
	}
}

// Two runs for two databases of one application, at once (different Secrets,
// so different gates): B stops the application and its migration waits; A
// stops it too, migrates and succeeds while B is still migrating. A's restore
// must leave the application stopped for B; B's restore brings it back.
func (s *tektonSuite) testTwoDatabasesShareWorkloads(t *testing.T) {
	c := s.newCase(t, nil)
	// Two whole runs, one after the other: 10 minutes ran out once on the
	// loaded CI node with B's last pods still starting.
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	dbB := NewDatabase(t, s.pg, "sharedb")
	if err := CreateSecret(ctx, s.kube, c.ns, "sharedb-db", dbB.URL()); err != nil {
		t.Fatal(err)
	}
	b, err := s.tk.CreatePipelineRun(ctx, c.ns, c.pipelineRun(t, "waits-second", map[string]string{"database-secret": "sharedb-db"}))
	if err != nil {
		t.Fatal(err)
	}
	dbB.waitSleeping(t, ctx) // B's migration 2 waits for go_ahead: the application is stopped
	a, trs := c.run(t, c.pipelineRun(t, "", nil))
	wantSucceeded(t, a, true)
	wantTasks(t, a, trs, phases, nil, append([]string{"wait-for-db", "wait-patroni"}, allFinally...))
	c.wantVersions(t, 1, 2, 3)
	if pr, err := s.tk.Pipeline.TektonV1().PipelineRuns(c.ns).Get(ctx, b.Name, metav1.GetOptions{}); err != nil || pr.IsDone() {
		t.Fatalf("B is no longer running when A has finished (%v): the test proves nothing", err)
	}
	c.wantStopped(t)
	if st := appState(t, s.kube, c.app); st.Annotations["deployment/"+heldByAnnotation] != holderFor(b, "sharedb-db/url") {
		t.Errorf("holders after A's restore: %v, want B alone", st.Annotations)
	}

	if err := dbB.Exec(ctx, "CREATE TABLE go_ahead ()"); err != nil {
		t.Fatal(err)
	}
	b, _ = c.wait(t, ctx, b.Name)
	wantSucceeded(t, b, true)
	vs, err := dbB.AppliedVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantVersions(t, vs, 1, 2, 3)
	c.wantRestored(t)
}

// A migrate-role the login user cannot take fails plan, before anything is
// stopped (it once failed only in migrate, with the application down).
func (s *tektonSuite) testWrongRoleRefusedBeforeStopping(t *testing.T) {
	c := s.newCase(t, nil)
	pr, trs := c.run(t, c.pipelineRun(t, "", map[string]string{"migrate-role": "no_such_role"}))
	wantSucceeded(t, pr, false)
	wantTasks(t, pr, trs, nil, []string{"plan"}, nil)
	if codes := engines.StepExitCodes(trs["plan"]); len(codes) == 0 || slices.ContainsFunc(codes, func(c string) bool { return c != "plan=1" }) {
		t.Errorf("plan exit codes %v, want 1 in every attempt (a role that cannot be taken is permanent)", codes)
	}
	c.wantVersions(t)
	c.wantUntouched(t)
}

// Another session holds the migration lock for the whole run: plan exits 75 in
// each attempt (it does not judge a database another migrator is changing), and
// the run fails before anything is stopped. Before, plan passed, scale-down
// stopped the application and migrate waited for the lock.
func (s *tektonSuite) testPlanRefusesWhileLockHeld(t *testing.T) {
	c := s.newCase(t, nil)
	release, err := c.db.HoldLock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	pr, trs := c.run(t, c.pipelineRun(t, "", nil))
	wantSucceeded(t, pr, false)
	wantTasks(t, pr, trs, nil, []string{"plan"}, nil)
	if codes := engines.StepExitCodes(trs["plan"]); len(codes) != 3 || slices.ContainsFunc(codes, func(c string) bool { return c != "plan=75" }) {
		t.Errorf("plan exit codes %v, want 75 in each of its 3 attempts", codes)
	}
	c.wantVersions(t)
	c.wantUntouched(t)
}

// 6. Something puts the application back while migrate runs (here a person's
// chartreuse-scale-restore TaskRun, as README.md shows; a GitOps sync does the
// same), then the migrate pod is evicted: Tekton's next attempt must not migrate
// under the running application. It refuses (exit 2) before connecting, so
// migration 2, rolled back with the evicted session, is never applied; and with
// on-migrate-failure=rollback, finally's rollback refuses too (its check-stopped
// step), leaving migration 1 in place under the running application.
func (s *tektonSuite) testPutBackRefusesMigrate(t *testing.T) {
	c := s.newCase(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	pr := s.startWaitingSecond(t, ctx, c, map[string]string{"on-migrate-failure": "rollback"})
	c.wantStopped(t)
	c.taskRun(t, "chartreuse-scale-restore", map[string]string{"image": tektonImage, "workload-selector": c.app.Selector})
	c.wantRestored(t)
	s.evictMigrate(t, ctx, c, pr.Name)
	// Without the check the next attempt would now apply 2 and 3.
	if err := c.db.Exec(ctx, "CREATE TABLE go_ahead ()"); err != nil {
		t.Fatal(err)
	}
	done, trs := c.wait(t, ctx, pr.Name)
	wantSucceeded(t, done, false)
	codes := engines.StepExitCodes(trs["migrate"])
	if len(codes) == 0 || codes[len(codes)-1] != "migrate=2" || slices.Contains(codes, "migrate=0") {
		t.Errorf("migrate attempts %v, want the last refused with exit 2 and none succeeded", codes)
	}
	for _, task := range []string{"migrate", "rollback"} {
		if trs[task] == nil {
			t.Errorf("no %s TaskRun", task)
		} else if log := s.tk.TaskRunLogs(ctx, trs[task]); !strings.Contains(log, "the application runs again in namespace "+c.ns) {
			t.Errorf("%s's log does not say the application runs again:\n%s", task, log)
		}
	}
	if codes := engines.StepExitCodes(trs["rollback"]); len(codes) == 0 || !strings.HasPrefix(codes[0], "check-stopped=2") {
		t.Errorf("rollback's steps %v, want check-stopped refusing with exit 2 first", codes)
	}
	c.wantVersions(t, 1)
	c.wantRestored(t)
}

// 7. The Tasks change while a run is at work (a `helm upgrade` or `kubectl apply
// -k` of another version): the run's later tasks keep the definitions it started
// with. Here chartreuse-scale-restore is replaced, while migrate waits, by one
// whose --manifest-version the run's image refuses; with taskRefs the run's
// scale-restore and finally's restore would resolve it, fail, and leave the
// application stopped.
func (s *tektonSuite) testTasksChangedMidRun(t *testing.T) {
	c := s.newCase(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	pr := s.startWaitingSecond(t, ctx, c, nil)
	tasks := s.tk.Pipeline.TektonV1().Tasks(c.ns)
	task, err := tasks.Get(ctx, "chartreuse-scale-restore", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	for i := range task.Spec.Steps {
		for j, a := range task.Spec.Steps[i].Args {
			if strings.HasPrefix(a, "--manifest-version=") {
				task.Spec.Steps[i].Args[j] = "--manifest-version=99.0.0"
				changed++
			}
		}
	}
	if changed == 0 {
		t.Fatal("chartreuse-scale-restore has no --manifest-version to change")
	}
	if _, err := tasks.Update(ctx, task, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.db.Exec(ctx, "CREATE TABLE go_ahead ()"); err != nil {
		t.Fatal(err)
	}
	done, trs := c.wait(t, ctx, pr.Name)
	wantSucceeded(t, done, true)
	if tr := trs["scale-restore"]; tr == nil || tr.Spec.TaskRef != nil {
		t.Errorf("scale-restore's TaskRun %v: want one run from the embedded Task", tr)
	}
	c.wantVersions(t, 1, 2, 3)
	c.wantRestored(t)
}

// evictMigrate evicts the pod of the run's migrate TaskRun (policy/v1 Eviction,
// graceful) and returns it once it is gone, or replaced by one with a new uid.
func (s *tektonSuite) evictMigrate(t *testing.T, ctx context.Context, c *tektonCase, run string) *corev1.Pod {
	t.Helper()
	tr, err := s.tk.PipelineTaskRun(ctx, c.ns, run, "migrate")
	if err != nil || tr == nil || tr.Status.PodName == "" {
		t.Fatalf("migrate's TaskRun or pod not found (%v)", err)
	}
	evicted, err := s.kube.CoreV1().Pods(c.ns).Get(ctx, tr.Status.PodName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := evict(ctx, s.kube, c.ns, evicted.Name); err != nil {
		t.Fatalf("evicting %s: %v", evicted.Name, err)
	}
	t.Logf("evicted %s while migration 2 ran", evicted.Name)
	if err := Poll(ctx, 500*time.Millisecond, func() (bool, error) {
		p, err := s.kube.CoreV1().Pods(c.ns).Get(ctx, evicted.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return err == nil && p.UID != evicted.UID, err
	}); err != nil {
		t.Fatalf("evicted pod %s still there: %v", evicted.Name, err)
	}
	return evicted
}

// startWaitingSecond starts a run of set waits-second and returns once its
// migration 2 waits for table go_ahead, which the test creates to let it end.
func (s *tektonSuite) startWaitingSecond(t *testing.T, ctx context.Context, c *tektonCase, extra map[string]string) *pipelinev1.PipelineRun {
	t.Helper()
	pr, err := s.tk.CreatePipelineRun(ctx, c.ns, c.pipelineRun(t, "waits-second", extra))
	if err != nil {
		t.Fatal(err)
	}
	c.db.waitSleeping(t, ctx)
	return pr
}
