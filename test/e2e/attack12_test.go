package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/chartreuse-go/chartreuse/test/engines"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
)

// Session 12's attacks on the workflow definitions, on the real Argo
// controller: what a person does to a run that went wrong (argo stop, then
// argo retry), and what the WorkflowTemplate must still guarantee: no
// migration runs while the application runs, no rollback undoes another run's
// migrations, and a rerun either finishes the job or refuses saying why.
//
// argo retry keeps every succeeded node (scale-down among them) and runs the
// exit handler again from scratch. After an exit handler that put the
// application back (on-migrate-failure=restore or rollback, or a run stopped
// before migrate), a retried migrate found the application running, and
// nothing stopped it again.
func TestAttack12Argo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Argo Workflows on the local cluster (not with -short)")
	}
	cli := cliBinDir(t, argoCLIEnv, "argo-cli")
	if cli == "" {
		t.Skipf("%s is not set: build the argo CLI with test/tools/argo-cli/build.sh and export the directory it prints", argoCLIEnv)
	}
	// Beside the other suites, in the shared slots.
	t.Parallel()
	env := kubeenv.Shared(t)
	start := time.Now()
	s := newArgoSuite(t, env, env.NewNamespace(t))
	a := &attackArgo{argoSuite: s, cli: filepath.Join(cli, "argo"), kubeconfig: env.Kubeconfig}
	runScenarios(t, "argo", []scenario{
		{"retry-after-restore-refused", a.testRetryAfterRestore},
		{"retry-after-stop-during-scale-down-finishes", a.testRetryAfterStopDuringScaleDown},
		{"databases-retry-after-rollback-refused", a.testDatabasesRetryAfterRollback},
	},
		// Variants of the retries above (make test-full).
		scenario{"retry-after-keep-down-finishes", a.testRetryAfterKeepDown},
		scenario{"databases-stopped-between-rounds-keeps-down", a.testDatabasesStoppedBetweenRounds},
		scenario{"retry-after-rollback-leaves-a-later-run-alone", a.testRetryAfterRollback},
		scenario{"retry-after-a-manual-scale-restore", a.testRetryAfterManualRestore},
		scenario{"retry-of-an-older-run-leaves-a-later-keep-down", a.testRetryOfOlderRunLeavesLaterKeepDown},
		// The exit handler after a failed final restore (session 24's fix).
		scenario{"databases-failed-final-restore-runs-the-exit-handler", a.testDatabasesFailedFinalRestore},
		// The failure path's rollback and another migrator (session 25).
		scenario{"rollback-leaves-another-migrators-versions", a.testRollbackLeavesAnotherMigrator},
	)
	t.Logf("attack12 argo: done in %s", time.Since(start).Round(100*time.Millisecond))
}

type attackArgo struct {
	*argoSuite
	cli, kubeconfig string
}

// argo runs the real argo CLI (kube mode, no argo-server) and returns its
// output; a non-zero exit fails the test.
func (a *attackArgo) argoCLI(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.cli, append(args, "-n", a.argo.Namespace)...)
	cmd.Env = []string{"KUBECONFIG=" + a.kubeconfig, "HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("argo %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	t.Logf("argo %s:\n%s", strings.Join(args, " "), out.String())
	return out.String()
}

// stoppedDuringMigration submits a run of waits-second (the database at 1, so
// migration 2 waits for table go_ahead) with policy, stops it while migration
// 2 waits and returns the finished (Failed) run.
func (a *attackArgo) stoppedDuringMigration(t *testing.T, c *argoCase, policy string) *wfv1.Workflow {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	if err := c.db.MigrateTo(ctx, argoSets["waits-second"], 1); err != nil {
		t.Fatal(err)
	}
	wf := c.submit(t, "", map[string]string{"migrations-dir": SetsRoot + "/waits-second", "on-migrate-failure": policy})
	c.db.waitSleeping(t, ctx)
	a.argoCLI(t, "stop", wf.Name)
	if err := a.argo.StopSeen(ctx, wf.Name); err != nil {
		t.Fatal(err)
	}
	wf = c.wait(t, wf, nil)
	wantPhase(t, wf, wfv1.WorkflowFailed)
	// Argo marks the stopped migrate Failed at once and signals its container
	// later: the exit handler's settle keeps the run from ending until its pods
	// have. Before it (session12 workflow finding 3), a keep-down run ended while
	// its migrate still waited in the database, and with go_ahead created then
	// that migrate went on and committed 2 and 3 after the run had ended.
	a.wantPodsEnded(t, wf)
	a.wantMigrateWatched(t, wf)
	if busy, err := c.db.sleeping(ctx); err != nil || busy {
		t.Fatalf("%s: the run ended while its stopped migration still waited in the database (sleeping %v, %v)", policy, busy, err)
	}
	// From now on migration 2 no longer waits: a migrate that runs applies it.
	if err := c.db.Exec(ctx, "CREATE TABLE go_ahead ()"); err != nil {
		t.Fatal(err)
	}
	wantVersions(t, c.versions(t), 1)
	return wf
}

// retried runs `argo retry` on wf, recording the application's pods, and
// returns the finished run and the pods' history.
func (a *attackArgo) retried(t *testing.T, c *argoCase, wf *wfv1.Workflow) (*wfv1.Workflow, *PodWatch) {
	t.Helper()
	pods, err := WatchPods(t.Context(), a.kube, a.argo.Namespace, c.app.Selector)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pods.Stop)
	// The run ended, so its migrate and rollback pods have (settle). argo retry
	// deletes the failed pods and makes new ones of the same names; before settle
	// a new migrate pod whose namesake was still terminating stayed Pending for 9
	// minutes. settle does not wait for the other steps' pods (a stopped step whose
	// pod then exits 0 leaves a run that argo retry cannot resume): wait for them
	// here before retrying.
	a.wantPodsEnded(t, wf)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		l, err := a.kube.CoreV1().Pods(a.argo.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "workflows.argoproj.io/workflow=" + wf.Name})
		if err != nil {
			return false, err
		}
		for _, p := range l.Items {
			if p.DeletionTimestamp != nil || (p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed) {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		t.Fatalf("the pods of %s did not end: %v", wf.Name, err)
	}
	a.argoCLI(t, "retry", wf.Name)
	return c.wait(t, wf, nil), pods
}

// wantPodsEnded: every migrate and rollback pod of the finished run wf has
// stopped (the exit handler's settle). They are told by their template's name
// in the pod's name, not by the label settle selects them with, so that the
// check holds a template without settle to account too.
func (a *attackArgo) wantPodsEnded(t *testing.T, wf *wfv1.Workflow) {
	t.Helper()
	l, err := a.kube.CoreV1().Pods(a.argo.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: "workflows.argoproj.io/workflow=" + wf.Name})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range l.Items {
		if !strings.Contains(p.Name, "-migrate-pod-") && !strings.Contains(p.Name, "-migrate-db-pod-") &&
			!strings.Contains(p.Name, "-rollback-pod-") && !strings.Contains(p.Name, "-rollback-db-pod-") {
			continue
		}
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			t.Errorf("run %s ended (%s at %s) while its pod %s is %s (deleting: %v)", wf.Name, wf.Status.Phase, wf.Status.FinishedAt.Format(time.RFC3339), p.Name, p.Status.Phase, p.DeletionTimestamp != nil)
		}
	}
}

// wantMigrateWatched: the run's migrate pods watched the Workflow
// (--watch-run with its name and uid, the Role's get granted).
func (a *attackArgo) wantMigrateWatched(t *testing.T, wf *wfv1.Workflow) {
	t.Helper()
	l, err := a.kube.CoreV1().Pods(a.argo.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: "workflows.argoproj.io/workflow=" + wf.Name})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range l.Items {
		if !strings.Contains(p.Name, "-migrate-pod-") && !strings.Contains(p.Name, "-migrate-db-pod-") {
			continue
		}
		n++
		b, err := a.kube.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: "main"}).DoRaw(t.Context())
		if err != nil {
			t.Fatalf("logs of %s: %v", p.Name, err)
		}
		wantRunWatched(t, string(b), "workflow/"+wf.Name)
	}
	if n == 0 {
		t.Errorf("run %s has no migrate pod", wf.Name)
	}
}

// noMigrationWhileRunning: no migration of the log ran while a pod of the
// application existed.
func noMigrationWhileRunning(t *testing.T, c *argoCase, pods *PodWatch) {
	t.Helper()
	log, err := c.db.MigrationLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for v, at := range log {
		if live := pods.Existing(at); len(live) != 0 {
			t.Errorf("migration %s ran at %s while the application's pods %v ran", v, at.Format("15:04:05.000"), live)
		}
	}
}

// 1. on-migrate-failure=restore: the run is stopped while migration 2 runs;
// nothing was applied, so the exit handler puts the application back. argo
// retry then reran migrate alone, with the application running (it applied
// 2 and 3 under it). It must refuse instead, saying why, and leave the
// application running and the database as it was.
func (a *attackArgo) testRetryAfterRestore(t *testing.T) {
	c := a.newCase(t, "atkrestore")
	wf := a.stoppedDuringMigration(t, c, "restore")
	wantNodes(t, wf, map[string]wfv1.NodePhase{"recheck": wfv1.NodeSucceeded, "restore-if-unchanged": wfv1.NodeSucceeded})
	c.wantRestored(t)

	wf, pods := a.retried(t, c, wf)
	noMigrationWhileRunning(t, c, pods)
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantVersions(t, c.versions(t), 1)
	if at := engines.ArgoAttempts(wf, "migrate"); len(at) != 1 || at[0].ExitCode != "2" {
		t.Errorf("retried migrate's attempts %+v, want one refused with exit 2", at)
	}
	if logs := a.argo.StepLogs(context.Background(), wf, 50); !strings.Contains(logs, "argo retry would migrate with it running") {
		t.Errorf("the retried migrate's log does not say why it refused")
	}
	c.wantRestored(t)
}

// 2. on-migrate-failure=rollback: run A is stopped while migration 2 runs;
// its exit handler rolls back to 1 (nothing to undo) and puts the application
// back. Run B then applies 2 and 3. argo retry of A must neither migrate with
// the application running nor roll B's migrations back under it (A's exit
// handler would roll back to A's planned version 1 once its migrate failed).
func (a *attackArgo) testRetryAfterRollback(t *testing.T) {
	c := a.newCase(t, "atkrollback")
	wf := a.stoppedDuringMigration(t, c, "rollback")
	wantNodes(t, wf, map[string]wfv1.NodePhase{"rollback": wfv1.NodeSucceeded, "restore-after-rollback": wfv1.NodeSucceeded})
	c.wantRestored(t)
	b := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/waits-second"})
	wantPhase(t, b, wfv1.WorkflowSucceeded)
	wantVersions(t, c.versions(t), 1, 2, 3)

	wf, pods := a.retried(t, c, wf)
	noMigrationWhileRunning(t, c, pods)
	wantPhase(t, wf, wfv1.WorkflowFailed)
	notRun(t, wf, "rollback")
	wantVersions(t, c.versions(t), 1, 2, 3)
	c.wantRestored(t)
}

// 3. The retry the docs recommend still works: keep-down, stopped while
// migration 2 runs, the application stays stopped; argo retry migrates (the
// application still stopped) and restores it.
func (a *attackArgo) testRetryAfterKeepDown(t *testing.T) {
	c := a.newCase(t, "atkkeep")
	wf := a.stoppedDuringMigration(t, c, "keep-down")
	c.wantStopped(t)

	impatientShutdown(t, a.kube, c.app) // the retry's scale-down: no 10-minute delay
	wf, pods := a.retried(t, c, wf)
	noMigrationWhileRunning(t, c, pods)
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantVersions(t, c.versions(t), 1, 2, 3)
	c.wantRestored(t)
}

// 4. Stopped while scale-down waits for the application's pods (one held by a
// finalizer): the exit handler puts the application back, nothing migrated.
// argo retry reruns the failed scale-down, which stops the application again,
// so the retried migrate may run (the application is stopped) and the run
// finishes the job.
func (a *attackArgo) testRetryAfterStopDuringScaleDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	c := &argoCase{s: a.argoSuite, name: "atkscale", secret: "atkscale-db"}
	c.db = NewDatabase(t, a.pg, c.name)
	if err := CreateSecret(ctx, a.kube, a.argo.Namespace, c.secret, c.db.URL()); err != nil {
		t.Fatal(err)
	}
	app, err := DeployApp(ctx, a.kube, a.argo.Namespace, AppOptions{Name: c.name, ShutdownDelay: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c.app = app
	// The pods stay running after SIGTERM until release ends them: with 25 s the
	// stop once came after scale-down had finished on a loaded CI node, and the
	// run was stopped in migrate instead.
	held, release := holdPod(t, a.kube, c.app)
	wf := c.submit(t, "", nil)
	if err := Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		p, err := a.kube.CoreV1().Pods(a.argo.Namespace).Get(ctx, held, metav1.GetOptions{})
		return err == nil && p.DeletionTimestamp != nil, nil
	}); err != nil {
		t.Fatalf("scale-down never stopped the application: %v", err)
	}
	a.argoCLI(t, "stop", wf.Name)
	if err := a.argo.StopSeen(ctx, wf.Name); err != nil {
		t.Fatal(err)
	}
	wf = c.wait(t, wf, nil)
	release()
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"restore": wfv1.NodeSucceeded})
	wantVersions(t, c.versions(t))
	c.wantRestored(t)

	impatientShutdown(t, a.kube, c.app) // the retry's scale-down: no 10-minute delay
	wf, pods := a.retried(t, c, wf)
	noMigrationWhileRunning(t, c, pods)
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantVersions(t, c.versions(t), 1, 2, 3)
	c.wantRestored(t)
}

// 5. keep-down, stopped while migration 2 runs: the application stays stopped.
// Someone then puts it back by hand (`--entrypoint scale-restore`, the docs'
// command) and later runs argo retry on the old run: its scale-down is kept and
// its exit handler never restored anything (workloads-stopped is still true),
// so the retried migrate ran with the application running (session12 workflow
// finding 2). Now migrate checks that the workloads its run stopped are still
// stopped (--stopped-selector) and refuses with exit 2, changing nothing.
func (a *attackArgo) testRetryAfterManualRestore(t *testing.T) {
	c := a.newCase(t, "atkmanual")
	wf := a.stoppedDuringMigration(t, c, "keep-down")
	c.wantStopped(t)
	restore := c.run(t, "scale-restore", nil)
	wantPhase(t, restore, wfv1.WorkflowSucceeded)
	c.wantRestored(t)

	wf, pods := a.retried(t, c, wf)
	noMigrationWhileRunning(t, c, pods)
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantVersions(t, c.versions(t), 1)
	if at := engines.ArgoAttempts(wf, "migrate"); len(at) != 1 || at[0].ExitCode != "2" {
		t.Errorf("retried migrate's attempts %+v, want one refused with exit 2", at)
	}
	if logs := a.argo.StepLogs(context.Background(), wf, 50); !strings.Contains(logs, "the application runs again") {
		t.Errorf("the retried migrate's log does not say why it refused")
	}
	c.wantRestored(t)
}

// 6. keep-down, run A stopped while migration 2 runs: the application stays
// stopped, held by A. A later run B for the same database fails too (its
// migration 2 is broken) and keeps it down, held by A and B. argo retry of A
// then migrates (the application is stopped) and succeeds; its scale-restore
// supersedes the holds of runs for the same database, and took B's off too,
// bringing the application back against B's decision. Only the runs that
// joined before A are superseded now: B keeps holding, the application stays
// stopped.
func (a *attackArgo) testRetryOfOlderRunLeavesLaterKeepDown(t *testing.T) {
	c := a.newCase(t, "atkolder")
	wf := a.stoppedDuringMigration(t, c, "keep-down")
	c.wantStopped(t)
	b := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/fails-first", "on-migrate-failure": "keep-down"})
	wantPhase(t, b, wfv1.WorkflowFailed)
	wantNodes(t, b, map[string]wfv1.NodePhase{"scale-down": wfv1.NodeSucceeded, "migrate": wfv1.NodeFailed})
	c.wantStopped(t)

	wf, _ = a.retried(t, c, wf)
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantVersions(t, c.versions(t), 1, 2, 3)
	c.wantStopped(t)
	if held := c.appState(t).Annotations["deployment/"+heldByAnnotation]; held != holderFor(b, c.secret+"/url") {
		t.Errorf("held by %q, want only the later run B (%s:%s/url)", held, b.UID, c.secret)
	}
}

// A databases run with on-migrate-failure=rollback and stop-workloads=false:
// the canary x migrates, b fails (a table of its migration 2 is already there,
// left by hand), and the exit handler rolls back what moved. Someone then drops
// that table, and argo retry reruns only b's failed round: b would migrate and
// the run succeed, with x rolled back under it. The retried migrate must refuse,
// and leave both databases where the rollback left them.
func (a *attackArgo) testDatabasesRetryAfterRollback(t *testing.T) {
	c := a.newCase(t, "atkdbrb")
	dbs := c.newDatabases(t, "b")
	if err := dbs[1].db.Exec(t.Context(), "CREATE TABLE orders ()"); err != nil {
		t.Fatal(err)
	}
	wf := c.dbWait(t, c.submit(t, "", map[string]string{"databases": dbList(dbs), "on-migrate-failure": "rollback", "stop-workloads": "false"}), nil)
	wantPhase(t, wf, wfv1.WorkflowFailed)
	migrates := perDatabaseNodes(wf, "migrate-db-pod")
	if len(migrates) != 2 || migrates[0].phase != wfv1.NodeSucceeded || migrates[1].phase != wfv1.NodeFailed {
		t.Fatalf("migrates %+v: want the canary x succeeded, b failed", migrates)
	}
	if rollbacks := perDatabaseNodes(wf, "rollback-db-pod"); rollbacks[0].phase != wfv1.NodeSucceeded {
		t.Fatalf("rollbacks %+v: want the canary x rolled back", rollbacks)
	}
	wantDBVersions(t, dbs, nil, nil)
	if err := dbs[1].db.Exec(t.Context(), "DROP TABLE orders"); err != nil {
		t.Fatal(err)
	}

	wf, _ = a.retried(t, c, wf)
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantDBVersions(t, dbs, nil, nil)
	if logs := a.argo.StepLogs(context.Background(), wf, 50); !strings.Contains(logs, "this run already rolled databases back after its failure") {
		t.Errorf("the retried migrate's log does not say why it refused")
	}
}

// A databases run stopped between its rounds: the canary x (waits-second, its
// migration 2 waiting for table go_ahead) migrates while the run is suspended,
// so no later round starts; then argo stop and argo resume. b and c were never
// reached (no pod, no output) while x moved: the old application must not come
// back over that mixed state. decide took "no migrate failed" for "nothing
// went wrong with the databases" and restored it, whatever the policy.
func (a *attackArgo) testDatabasesStoppedBetweenRounds(t *testing.T) {
	c := a.newCase(t, "atkdbstop")
	dbs := c.newDatabases(t, "b", "c")
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	wf := c.submit(t, "", map[string]string{"databases": dbList(dbs, SetsRoot+"/waits-second"), "on-migrate-failure": "keep-down"})
	dbs[0].db.waitSleeping(t, ctx) // the canary x migrates: the application is stopped
	a.argoCLI(t, "suspend", wf.Name)
	if err := Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		w, err := a.argo.Get(ctx, wf.Name)
		return err == nil && w.Spec.Suspend != nil && *w.Spec.Suspend, err
	}); err != nil {
		t.Fatal(err)
	}
	if err := dbs[0].db.Exec(ctx, "CREATE TABLE go_ahead ()"); err != nil {
		t.Fatal(err)
	}
	// The canary's pod finishes under the suspension (Argo still follows its
	// pods, but moves nothing else on: the retry node above stays Running), and
	// no later round starts.
	if err := Poll(ctx, time.Second, func() (bool, error) {
		w, err := a.argo.Get(ctx, wf.Name)
		if err != nil {
			return false, err
		}
		for _, n := range engines.ArgoNodes(w) {
			if n.Template == "migrate-db-pod" && n.Type == wfv1.NodeTypePod && n.Phase == wfv1.NodeSucceeded {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("the canary did not finish while suspended: %v", err)
	}
	a.argoCLI(t, "stop", wf.Name)
	if err := a.argo.StopSeen(ctx, wf.Name); err != nil {
		t.Fatal(err)
	}
	a.argoCLI(t, "resume", wf.Name)
	wf = c.wait(t, wf, nil)
	wantPhase(t, wf, wfv1.WorkflowFailed)
	// The stop marks b's round Failed before any pod of it ran: no migrate output
	// of b or c, the case decide must not take for "nothing failed".
	if wf.Status.Outputs != nil {
		for _, p := range wf.Status.Outputs.Parameters {
			if strings.HasPrefix(p.Name, "db-1-migrate-") || strings.HasPrefix(p.Name, "db-2-migrate-") {
				t.Errorf("output %s: b or c was reached, the scenario did not happen", p.Name)
			}
		}
	}
	wantNodes(t, wf, map[string]wfv1.NodePhase{"decide": wfv1.NodeSucceeded})
	notRun(t, wf, "scale-restore", "restore", "rollback", "restore-after-rollback")
	wantDBVersions(t, dbs, []int64{1, 2, 3}, nil, nil)
	c.wantStopped(t)
	wantSummary(t, summaryOf(t, wf), dbs, []rowWant{
		{outcome: "migrated", planned: "0", target: "3", current: "3", applied: []int64{1, 2, 3}},
		{outcome: "not-reached", planned: "0", target: "3", current: "0"},
		{outcome: "not-reached", planned: "0", target: "3", current: "0"},
	})
}

// A databases run whose every migration succeeded but whose final scale-restore
// failed (an API outage, a permission taken away): its failure path must still
// run. scale-restore-pod used to export workloads-stopped=false whatever its
// exit code (Argo's wait container reports outputs of a failed step too), and
// the exit handler's databases task, gated on that mark, was skipped: the
// application stayed down and nothing in the run said the exit handler had
// tried. Here an admission policy refuses to scale the application's
// Deployment up, so both the final restore and the exit handler's fail; the
// exit handler must have decided to restore and tried.
func (a *attackArgo) testDatabasesFailedFinalRestore(t *testing.T) {
	c := a.newCase(t, "atkdbfinal")
	dbs := c.newDatabases(t, "b")
	denyScaleUp(t, a.kube, a.argo.Namespace, c.app.Name)
	wf := c.dbWait(t, c.submit(t, "", map[string]string{"databases": dbList(dbs), "on-migrate-failure": "keep-down"}), nil)
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantDBVersions(t, dbs, []int64{1, 2, 3}, []int64{1, 2, 3})
	var restores []string
	for _, n := range engines.ArgoNodes(wf) {
		if n.Template == "scale-restore-pod" && n.Type == wfv1.NodeTypeRetry {
			restores = append(restores, n.Name+"="+string(n.Phase))
		}
	}
	// the DAG's scale-restore and the exit handler's restore (databases-exit), both refused
	slices.Sort(restores)
	if want := []string{"restore=" + string(wfv1.NodeFailed), "scale-restore=" + string(wfv1.NodeFailed)}; !slices.Equal(restores, want) {
		t.Errorf("scale-restore nodes %v: want the final one and the exit handler's, both Failed\n%s", restores, engines.ArgoDescribe(wf))
	}
	wantNodes(t, wf, map[string]wfv1.NodePhase{"decide": wfv1.NodeSucceeded, "summary": wfv1.NodeSucceeded})
	if d, _ := engines.ArgoNodeByName(wf, "decide"); d.Outputs["restore"] != "true" {
		t.Errorf("decide's restore output %q, want true (every database at its target)", d.Outputs["restore"])
	}
	if st := c.appState(t); st.SpecReplicas != 0 || st.Annotations["deployment/"+heldByAnnotation] != holderFor(wf, holderOf(dbs)) {
		t.Errorf("Deployment: %d replicas, held by %q; want 0, held by this run for %s", st.SpecReplicas, st.Annotations["deployment/"+heldByAnnotation], holderOf(dbs))
	}
	wantSummary(t, summaryOf(t, wf), dbs, []rowWant{
		{outcome: "migrated", planned: "0", target: "3", current: "3", applied: []int64{1, 2, 3}},
		{outcome: "migrated", planned: "0", target: "3", current: "3", applied: []int64{1, 2, 3}},
	})
}

// denyScaleUp makes the API server refuse every change that leaves the
// Deployment name in namespace ns with replicas above 0 (a ValidatingAdmissionPolicy
// and its binding, removed at the end of the test), and waits until it does.
func denyScaleUp(t *testing.T, kube kubernetes.Interface, ns, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	policy := "e2e-deny-scale-up-" + ns + "-" + name
	fail := admissionregistrationv1.Fail
	vap := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: policy},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionregistrationv1.MatchResources{
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					ResourceNames: []string{name},
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments", "deployments/scale"}},
					},
				}},
			},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "object.spec.replicas == 0",
				Message:    "e2e: this Deployment may not be scaled up (a restore made to fail)",
				Reason:     ptr.To(metav1.StatusReasonForbidden),
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: policy},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			},
		},
	}
	api := kube.AdmissionregistrationV1()
	if _, err := api.ValidatingAdmissionPolicies().Create(ctx, vap, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = api.ValidatingAdmissionPolicyBindings().Delete(context.Background(), policy, metav1.DeleteOptions{})
		_ = api.ValidatingAdmissionPolicies().Delete(context.Background(), policy, metav1.DeleteOptions{})
	})
	if _, err := api.ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// in force once a dry run of one more replica is refused
	if err := Poll(ctx, 500*time.Millisecond, func() (bool, error) {
		d, err := kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		d.Spec.Replicas = ptr.To(ptr.Deref(d.Spec.Replicas, 1) + 1)
		_, err = kube.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
		switch {
		case apierrors.IsForbidden(err):
			return true, nil
		case err == nil, apierrors.IsConflict(err):
			return false, nil
		}
		return false, err
	}); err != nil {
		t.Fatalf("the admission policy refusing %s/%s to scale up never took effect: %v", ns, name, err)
	}
}

// A rollback after a failed migrate must not undo what another migrator applied
// meanwhile. Two runs for one database through two Secrets (two mutexes, one
// migration lock in the database): A plans, then is suspended until B holds the
// migration lock (B's 1 applied, its 2 waiting for table go_ahead). A's migrate
// finds the lock busy until its retries run out; once A's rollback has started,
// B applies 2 and 3 and lets go. The rollback used to take the lock and roll
// back B's 3, 2 and 1, then restore the application: it must refuse (they are
// not A's, by the checksum records' run ids) and keep it down. Here it refuses
// at its first look, at B's 1 (whether it then waited for the lock depends on
// when its pod started); the check it makes again under the lock is
// pkg/migrate's TestRollbackOnlyThisRunRechecksUnderTheLock.
func (a *attackArgo) testRollbackLeavesAnotherMigrator(t *testing.T) {
	c := a.newCase(t, "atkother")
	ctx, cancel := context.WithTimeout(t.Context(), 2*runBound)
	defer cancel()
	const second = "atkother-db2"
	if err := CreateSecret(ctx, a.kube, a.argo.Namespace, second, c.db.URL()); err != nil {
		t.Fatal(err)
	}
	waitNode := func(name, template string) {
		t.Helper()
		if err := Poll(ctx, 200*time.Millisecond, func() (bool, error) {
			w, err := a.argo.Get(ctx, name)
			return err == nil && countPods(w, template) > 0, err
		}); err != nil {
			t.Fatalf("%s: no %s pod: %v", name, template, err)
		}
	}
	wfA := c.submit(t, "", map[string]string{"migrations-dir": SetsRoot + "/waits-second", "on-migrate-failure": "rollback", "lock-wait": "5s"})
	// plan is done (and its session gone) once scale-down starts
	waitNode(wfA.Name, "scale-down-pod")
	a.argoCLI(t, "suspend", wfA.Name)
	if w, err := a.argo.Get(ctx, wfA.Name); err != nil || countPods(w, "migrate-pod") > 0 {
		t.Fatalf("A's migrate started before A was suspended (%v): the test proves nothing", err)
	}
	wfB := c.submit(t, "", map[string]string{"database-secret": second, "migrations-dir": SetsRoot + "/waits-second", "stop-workloads": "false"})
	c.db.waitSleeping(t, ctx) // B holds the migration lock, 1 applied, 2 waiting
	a.argoCLI(t, "resume", wfA.Name)
	waitNode(wfA.Name, "rollback-pod") // A's migrate gave up; its rollback has started
	if err := c.db.Exec(ctx, "CREATE TABLE go_ahead ()"); err != nil {
		t.Fatal(err)
	}
	wfB = c.wait(t, wfB, nil)
	wantPhase(t, wfB, wfv1.WorkflowSucceeded)
	wfA = c.wait(t, wfA, nil)
	wantPhase(t, wfA, wfv1.WorkflowFailed)
	wantNodes(t, wfA, map[string]wfv1.NodePhase{"migrate": wfv1.NodeFailed, "rollback": wfv1.NodeFailed})
	notRun(t, wfA, "restore-after-rollback")
	wantVersions(t, c.versions(t), 1, 2, 3)
	c.wantStopped(t)
	if logs := a.argo.StepLogs(context.Background(), wfA, 50); !strings.Contains(logs, "rolls back only what it applied") {
		t.Errorf("A's rollback log does not say why it refused")
	}
}
