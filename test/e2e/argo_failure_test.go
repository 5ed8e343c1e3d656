package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"

	"github.com/chartreuse-go/chartreuse/test/engines"
)

// The WorkflowTemplate's failure paths (issue 12) on the real Argo controller:
// a run stopped with `argo stop` (spec.shutdown=Stop, which is what the CLI
// sets), a real advisory lock held by another session, a real eviction, a
// release whose pods never become ready, and parameters with typos. Each
// scenario has its own database, Secret and application, like the others of
// TestArgo, and runs beside them.

// 1. The deadline of a retried attempt: in testTransient migrate fails with exit
// 75 and is retried. Argo gives a retry attempt the deadline "first attempt's
// start + backoff.maxDuration" (operator.go, processNodeRetries:
// opts.executionDeadline = maxDurationDeadline; the executor kills the main
// container then, "Step exceeded its deadline"). wantOwnDeadlines checks, on
// the real pods of every attempt, that no deadline comes from anywhere but the
// step's own timeout parameters: no executor deadline (ARGO_DEADLINE unset or
// zero), and the pod's activeDeadlineSeconds, when it has one, the one derived
// from the parameters.
func wantOwnDeadlines(t *testing.T, a *engines.Argo, wf *wfv1.Workflow, step string, wantActive *int64) {
	t.Helper()
	pods, err := a.NodePods(t.Context(), wf.Name, step)
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) == 0 {
		t.Errorf("%s: no pods", step)
	}
	for _, p := range pods {
		attempt := p.Annotations["workflows.argoproj.io/node-name"]
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			for _, e := range c.Env {
				if e.Name != "ARGO_DEADLINE" {
					continue
				}
				if d, err := time.Parse(time.RFC3339, e.Value); err != nil || !d.IsZero() {
					t.Errorf("%s, container %s: ARGO_DEADLINE=%s (pod created %s): the executor ends the step then, whatever its own timeouts say",
						attempt, c.Name, e.Value, p.CreationTimestamp.UTC().Format(time.RFC3339))
				}
			}
		}
		got := p.Spec.ActiveDeadlineSeconds
		switch {
		case wantActive == nil && got != nil:
			t.Errorf("%s: pod activeDeadlineSeconds %d, want none (only the step's own timeouts end it)", attempt, *got)
		case wantActive != nil && (got == nil || *got != *wantActive):
			t.Errorf("%s: pod activeDeadlineSeconds %v, want %d (derived from the parameters)", attempt, deref(got), *wantActive)
		}
	}
}

func deref(p *int64) any {
	if p == nil {
		return "none"
	}
	return *p
}

// 2. The failure path restores only what this run stopped. Run A fails with
// keep-down: its application stays stopped with A's record. Run B, with a
// selection that includes A's application and another one, stops the other
// and is stopped (argo stop) while scale-down waits for its pods. B's exit
// handler must restore what B stopped and leave A's decision alone. Then a
// run whose migrate succeeds restores every record of its selection, A's too.
func (s *argoSuite) testStopRestoresOnlyItsOwn(t *testing.T) {
	c := s.newCase(t, "onlya")
	ctx := t.Context()
	if err := c.db.MigrateTo(ctx, argoSets["fixed"], 1); err != nil {
		t.Fatal(err)
	}
	// Its pods take a while to stop, so that B can be stopped while scale-down waits.
	other, err := DeployApp(ctx, s.kube, s.argo.Namespace, AppOptions{Name: "onlyb", ShutdownDelay: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	both := "app.kubernetes.io/name in (onlya,onlyb)"

	a := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/fails-second", "on-migrate-failure": "keep-down"})
	wantPhase(t, a, wfv1.WorkflowFailed)
	c.wantStopped(t)

	b := c.submit(t, "", map[string]string{"migrations-dir": SetsRoot + "/fails-second", "workload-selector": both})
	stopCtx, cancel := context.WithTimeout(ctx, runBound)
	defer cancel()
	waitStopped(t, stopCtx, s.kube, s.argo.Namespace, other.Name)
	if err := s.argo.Stop(stopCtx, b.Name); err != nil {
		t.Fatal(err)
	}
	b = c.wait(t, b, nil)
	wantPhase(t, b, wfv1.WorkflowFailed)
	wantNodes(t, b, map[string]wfv1.NodePhase{"plan": wfv1.NodeSucceeded, "restore": wfv1.NodeSucceeded})
	notRun(t, b, "migrate", "rollback", "recheck")
	wantAppRestored(t, s.kube, other) // what B stopped
	c.wantStopped(t)                  // what A decided
	if st := c.appState(t); st.Annotations["deployment/"+runUIDAnnotation] != string(a.UID) {
		t.Errorf("onlya's record: %v, want run A's uid %s", st.Annotations, a.UID)
	}
	wantVersions(t, c.versions(t), 1, 2)

	// The repaired release: a good migrate restores the whole selection.
	ok := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/fixed", "workload-selector": both})
	wantPhase(t, ok, wfv1.WorkflowSucceeded)
	wantVersions(t, c.versions(t), 1, 2, 3)
	c.wantRestored(t)
	wantAppRestored(t, s.kube, other)
}

// 3. The exit handler's rollback meets a transient failure after argo stop,
// when Argo retries nothing. Migration 3 is running (2 is applied) when the
// test asks for migrate's advisory lock and stops the run: migrate ends, the
// test's session gets the lock and holds it, so rollback's first lock wait
// (lock-wait) ends with a transient failure. The test lets go once the step
// says it is trying again; the rollback must then finish and the workloads
// come back.
func (s *argoSuite) testStoppedRollbackOutlastsLock(t *testing.T) {
	c := s.newCase(t, "heldlock")
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	if err := c.db.MigrateTo(ctx, argoSets["fixed"], 1); err != nil {
		t.Fatal(err)
	}
	wf := c.submit(t, "", map[string]string{
		"migrations-dir": SetsRoot + "/slow-fails-third", "on-migrate-failure": "rollback", "lock-wait": "10s",
	})
	c.db.waitSleeping(t, ctx)
	lock := c.db.queueForLock(t, ctx)
	if err := s.argo.Stop(ctx, wf.Name); err != nil {
		t.Fatal(err)
	}
	lock.wait(t, ctx)
	t.Log("the test holds the migration lock; migrate has ended")
	retried := releaseWhenRetried(ctx, lock, func(ctx context.Context) bool {
		pods, _ := s.argo.NodePods(ctx, wf.Name, "rollback")
		for _, p := range pods {
			if ok, _ := logContains(ctx, s.kube, s.argo.Namespace, p.Name, "main", retryingLine); ok {
				return true
			}
		}
		return false
	}, func(ctx context.Context) bool {
		w, err := s.argo.Get(ctx, wf.Name)
		return err == nil && w.Status.Phase.Completed()
	})
	wf = c.wait(t, wf, nil)
	if !retried() {
		t.Error("the rollback never said it was trying again after the held lock")
	}
	wantPhase(t, wf, wfv1.WorkflowFailed)
	// The stopped attempt failed; Argo may leave migrate's retry node Running, and
	// the exit handler must still take it as migrate failing (it restored the
	// half-migrated application when it looked at the retry node alone).
	if at := engines.ArgoAttempts(wf, "migrate"); len(at) != 1 || !at[0].Phase.FailedOrError() {
		t.Errorf("migrate's attempts: %+v, want one, stopped while it ran", at)
	}
	wantNodes(t, wf, map[string]wfv1.NodePhase{"rollback": wfv1.NodeSucceeded, "restore-after-rollback": wfv1.NodeSucceeded})
	notRun(t, wf, "restore")
	if at := engines.ArgoAttempts(wf, "rollback"); len(at) != 1 {
		t.Errorf("rollback ran %d pods, want 1 (it retried inside the step)", len(at))
	}
	wantVersions(t, c.versions(t), 1)
	c.wantRestored(t)
}

// 4. A typo in an enum-like parameter fails the run before anything changes
// (Argo checks a parameter's enum only when the workflow itself declares it,
// never for arguments of a workflowTemplateRef).
func (s *argoSuite) testInvalidParameters(t *testing.T) {
	c := s.newCase(t, "typo")
	before := c.appState(t)
	bad := badParameters()
	var wg sync.WaitGroup
	for i, p := range bad {
		// A Secret each: each run has its own mutex, so they run side by side.
		secret := fmt.Sprintf("typo-%d-db", i)
		if err := CreateSecret(t.Context(), s.kube, s.argo.Namespace, secret, c.db.URL()); err != nil {
			t.Fatal(err)
		}
		p["database-secret"] = secret
		wg.Go(func() {
			t.Run(strings.Join(paramList(p), ","), func(t *testing.T) {
				wf := c.run(t, "", p)
				if wf.Status.Phase == wfv1.WorkflowSucceeded {
					t.Errorf("workflow %s Succeeded with %v", wf.Name, p)
				}
				notRun(t, wf, "pull-image", "wait-for-db", "plan", "scale-down", "migrate", "scale-restore", "restore", "rollback", "recheck")
			})
		})
	}
	// A single-phase entrypoint has no guard task: its pull-image pod refuses the
	// name (a misspelt only-run-uid would have restored every record).
	entrySecret := "typo-entry-db"
	if err := CreateSecret(t.Context(), s.kube, s.argo.Namespace, entrySecret, c.db.URL()); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		t.Run("entrypoint scale-restore only-runuid", func(t *testing.T) {
			wf := c.run(t, "scale-restore", map[string]string{"database-secret": entrySecret, "only-runuid": "x"})
			if wf.Status.Phase == wfv1.WorkflowSucceeded {
				t.Errorf("workflow %s Succeeded", wf.Name)
			}
			if n, ok := engines.ArgoNodeByName(wf, "pull-image"); !ok || n.Phase != wfv1.NodeFailed {
				t.Errorf("pull-image: %+v, want Failed", n)
			}
			notRun(t, wf, "scale-restore")
		})
	})
	wg.Wait()
	wantVersions(t, c.versions(t))
	after := c.appState(t)
	if after.Generation != before.Generation || len(after.Annotations) != 0 || after.CronSuspended {
		t.Errorf("application touched: before %+v after %+v", before, after)
	}
}

func paramList(p map[string]string) []string {
	var out []string
	for k, v := range p {
		if k != "database-secret" {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// 5. A pod-level error: the migrate pod is evicted (policy/v1 Eviction) while
// migration 2 runs. Its transaction is rolled back with its session, so a rerun
// is safe, and every migration must run exactly once. How Argo 3.7 carries on
// depends on what its controller sees first: the exit code 75 the step answers
// SIGTERM with (retried before this change too), the pod gone without an exit
// code ("pod deleted", status Error: retried only since), or, now and then, the
// vanished pod of a running node simply created again for the same node (no
// retry at all). All three must end in one successful migrate; the Tekton
// scenario, where a failed TaskRun is only ever rerun by `retries`, is the one
// that fails without this change.
func (s *argoSuite) testEvictedMigrate(t *testing.T) {
	c := s.newCase(t, "evicted")
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	wf := c.submit(t, "", map[string]string{"migrations-dir": SetsRoot + "/slow-second"})
	c.db.waitSleeping(t, ctx)
	// Not in the node's first 10 s: when the pod of a node that started less than
	// RECENTLY_STARTED_POD_DURATION (10 s) ago disappears, the controller quietly
	// creates it again for the same node (operator.go, podReconciliation), which
	// is not what an eviction later in a long step meets.
	var last *wfv1.Workflow
	err := Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		w, err := s.argo.Get(ctx, wf.Name)
		if err != nil {
			return false, err
		}
		last = w
		a := engines.ArgoAttempts(w, "migrate")
		return len(a) == 1 && a[0].Phase == wfv1.NodeRunning && time.Since(a[0].Started) > 12*time.Second, nil
	})
	if err != nil {
		t.Fatalf("migrate(0) not Running for 12 s: %v\n%s", err, engines.ArgoDescribe(last))
	}
	pods, err := s.argo.NodePods(ctx, wf.Name, "migrate")
	if err != nil || len(pods) != 1 {
		t.Fatalf("migrate pods %d (%v), want the one running", len(pods), err)
	}
	if err := evict(ctx, s.kube, s.argo.Namespace, pods[0].Name); err != nil {
		t.Fatalf("evicting %s: %v", pods[0].Name, err)
	}
	t.Logf("evicted %s while migration 2 ran", pods[0].Name)
	wf = c.wait(t, wf, nil)
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	attempts := engines.ArgoAttempts(wf, "migrate")
	if len(attempts) == 0 || attempts[len(attempts)-1].Phase != wfv1.NodeSucceeded {
		t.Errorf("migrate attempts %+v, want the last one Succeeded", attempts)
	}
	for _, a := range attempts {
		t.Logf("migrate attempt %s: %s exit %q %q", a.Name, a.Phase, a.ExitCode, a.Message)
	}
	wantVersions(t, c.versions(t), 1, 2, 3)
	if _, err := c.db.MigrationLog(ctx); err != nil {
		t.Error(err) // a migration that ran twice
	}
	c.wantRestored(t)
}

// 6. A Succeeded run means the application is back: the release's pods never
// become ready, so the run fails after ready-timeout, naming the workload.
func (s *argoSuite) testNotReady(t *testing.T) {
	c := s.newCase(t, "notready")
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	wf := c.submit(t, "", map[string]string{"ready-timeout": "15s"})
	waitStopped(t, ctx, s.kube, s.argo.Namespace, c.app.Name)
	if err := breakReadiness(ctx, s.kube, s.argo.Namespace, c.app.Name); err != nil {
		t.Fatal(err)
	}
	wf = c.wait(t, wf, nil)
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"migrate": wfv1.NodeSucceeded, "scale-restore": wfv1.NodeFailed})
	if a := engines.ArgoAttempts(wf, "scale-restore"); len(a) != 1 || a[0].ExitCode != "1" {
		t.Errorf("scale-restore attempts %+v, want one with exit code 1 (a retry would find nothing left to wait for)", a)
	}
	pods, err := s.argo.NodePods(ctx, wf.Name, "scale-restore")
	if err != nil || len(pods) == 0 {
		t.Fatalf("scale-restore pods: %v", err)
	}
	if ok, _ := logContains(ctx, s.kube, s.argo.Namespace, pods[0].Name, "main", "deployment/"+c.app.Name); !ok {
		t.Errorf("scale-restore's log does not name deployment/%s", c.app.Name)
	}
	wantVersions(t, c.versions(t), 1, 2, 3)
	if st := c.appState(t); st.SpecReplicas != c.app.Replicas || len(st.Annotations) != 0 {
		t.Errorf("Deployment: %d replicas, records %v; want %d, none (restored, just not ready)", st.SpecReplicas, st.Annotations, c.app.Replicas)
	}
}

// Two runs for two databases of one application, at once (different Secrets,
// so different mutexes): B stops the application and its migration waits; A
// stops it too, migrates and succeeds while B is still migrating. A's restore
// must leave the application stopped for B (before, it restored every record of
// its selection, bringing the application back in the middle of B's
// migration); B's restore then brings it back.
func (s *argoSuite) testTwoDatabasesShareWorkloads(t *testing.T) {
	a := s.newCase(t, "shareda")
	ctx, cancel := context.WithTimeout(t.Context(), 2*runBound)
	defer cancel()
	dbB := NewDatabase(t, s.pg, "sharedb")
	if err := CreateSecret(ctx, s.kube, s.argo.Namespace, "sharedb-db", dbB.URL()); err != nil {
		t.Fatal(err)
	}
	wfB := a.submit(t, "", map[string]string{"database-secret": "sharedb-db", "migrations-dir": SetsRoot + "/waits-second"})
	dbB.waitSleeping(t, ctx) // B's migration 2 waits for go_ahead: the application is stopped
	wfA := a.run(t, "", nil)
	wantPhase(t, wfA, wfv1.WorkflowSucceeded)
	wantNodes(t, wfA, map[string]wfv1.NodePhase{"scale-down": wfv1.NodeSucceeded, "migrate": wfv1.NodeSucceeded, "scale-restore": wfv1.NodeSucceeded})
	wantVersions(t, a.versions(t), 1, 2, 3)
	if b, err := s.argo.Get(ctx, wfB.Name); err != nil || b.Status.Phase.Completed() {
		t.Fatalf("B is no longer running when A has finished (%v): the test proves nothing", err)
	}
	a.wantStopped(t)
	if st := a.appState(t); st.Annotations["deployment/"+heldByAnnotation] != holderFor(wfB, "sharedb-db/url") {
		t.Errorf("holders after A's restore: %v, want B alone", st.Annotations)
	}

	if err := dbB.Exec(ctx, "CREATE TABLE go_ahead ()"); err != nil {
		t.Fatal(err)
	}
	wfB = a.wait(t, wfB, nil)
	wantPhase(t, wfB, wfv1.WorkflowSucceeded)
	vs, err := dbB.AppliedVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantVersions(t, vs, 1, 2, 3)
	a.wantRestored(t)
}

// A migrate-role the login user cannot take fails plan, before anything is
// stopped (it once failed only in migrate, with the application down and
// on-migrate-failure=keep-down keeping it so).
func (s *argoSuite) testWrongRoleRefusedBeforeStopping(t *testing.T) {
	c := s.newCase(t, "role")
	before := c.appState(t)
	wf := c.run(t, "", map[string]string{"migrate-role": "no_such_role"})
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"plan": wfv1.NodeFailed})
	notRun(t, wf, "scale-down", "migrate", "scale-restore", "restore", "rollback")
	if a := engines.ArgoAttempts(wf, "plan"); len(a) != 1 || a[0].ExitCode != "1" {
		t.Errorf("plan attempts %+v, want one, refused with exit 1", a)
	}
	logLine(t, s.argo.StepLogs(context.Background(), wf, 200), "--role: SET ROLE")
	wantVersions(t, c.versions(t))
	after := c.appState(t)
	if after.Generation != before.Generation || len(after.Annotations) != 0 || after.CronSuspended || !maps1Equal(before.Pods, after.Pods) {
		t.Errorf("application touched: before %+v after %+v", before, after)
	}
}
