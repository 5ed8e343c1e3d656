package e2e

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/chartreuse-go/chartreuse/test/engines"
	"github.com/chartreuse-go/chartreuse/test/gitserver"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// The Argo scenarios run the project's WorkflowTemplate on the real Argo
// Workflows controller, installed once in one namespace (it manages only that
// namespace). Every scenario has its own database, Secret (so its own mutex)
// and application, so they run side by side; each waits for its workflows
// with the typed client and asserts on the database, the application's
// objects and pods, and the Workflow's status (phases, exit codes, outputs).

// argoImage holds every migration set: the "shop" set at /migrations (the image's
// default, as `FROM chartreuse` + `COPY` gives) and the others at /e2e/<set>.
const argoImage = "chartreuse.local/chartreuse-e2e:argo"

var (
	shopSet = MigrationSet{
		"00001_customers.sql": LoggedMigration("1", "customers"),
		"00002_orders.sql":    LoggedMigration("2", "orders"),
		"00003_invoices.sql":  LoggedMigration("3", "invoices"),
	}
	argoSets = map[string]MigrationSet{
		// The first pending migration (2) fails: nothing is applied.
		"fails-first": {
			"00001_customers.sql": LoggedMigration("1", "customers"),
			"00002_orders.sql":    BrokenMigration("orders"),
		},
		// 2 is applied, then 3 fails.
		"fails-second": {
			"00001_customers.sql": LoggedMigration("1", "customers"),
			"00002_orders.sql":    LoggedMigration("2", "orders"),
			"00003_invoices.sql":  BrokenMigration("invoices"),
		},
		// the shop set whose applied 2 was edited afterwards (a comment added).
		"edited-second": {
			"00001_customers.sql": LoggedMigration("1", "customers"),
			"00002_orders.sql":    "-- orders of the shop\n" + LoggedMigration("2", "orders"),
			"00003_invoices.sql":  LoggedMigration("3", "invoices"),
		},
		// fails-second with 3 repaired.
		"fixed": {
			"00001_customers.sql": LoggedMigration("1", "customers"),
			"00002_orders.sql":    LoggedMigration("2", "orders"),
			"00003_invoices.sql":  LoggedMigration("3", "invoices"),
		},
		// fails-second whose 3 runs for 10 s before it fails: time to act while it runs.
		"slow-fails-third": {
			"00001_customers.sql": LoggedMigration("1", "customers"),
			"00002_orders.sql":    LoggedMigration("2", "orders"),
			"00003_invoices.sql":  SlowBrokenMigration("invoices", 10*time.Second),
		},
		// the shop set whose 2 waits until the test creates table go_ahead.
		"waits-second": {
			"00001_customers.sql": LoggedMigration("1", "customers"),
			"00002_orders.sql":    WaitingMigration("2", "orders", "go_ahead"),
			"00003_invoices.sql":  LoggedMigration("3", "invoices"),
		},
		// the shop set whose 2 runs for 20 s (long enough to be evicted after its
		// node's first 10 s).
		"slow-second": {
			"00001_customers.sql": LoggedMigration("1", "customers"),
			"00002_orders.sql":    SlowMigration("2", "orders", 20*time.Second),
			"00003_invoices.sql":  LoggedMigration("3", "invoices"),
		},
	}
)

type argoSuite struct {
	env  *kubeenv.Env
	argo *engines.Argo
	kube kubernetes.Interface
	pg   *pgenv.Server
	git  *gitserver.Server // on the cluster bridge, for argo_git_test.go
}

func TestArgo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Argo Workflows on the local cluster (not with -short)")
	}
	// Beside TestTekton and TestCLI: its own namespace, image and database server.
	t.Parallel()
	env := kubeenv.Shared(t)
	start := time.Now()
	s := newArgoSuite(t, env, env.NewNamespace(t))

	// The scenarios run side by side, in the shared slots (t.Run from several
	// goroutines), whatever -test.parallel says: they mostly wait for pods.
	scenarios := []scenario{
		{"nothing-pending", s.testNothingPending},
		{"migrations-pending", s.testMigrationsPending},
		{"keep-down-then-manual-rerun", s.testKeepDownThenRerun},
		// the next successful run lets go of a keep-down (keepdown_release_test.go)
		{"restore", s.testRestorePolicy},
		{"rollback", s.testRollbackPolicy},
		// stop-workloads=auto (downtime_test.go).
		// The failure paths (argo_failure_test.go).
		{"invalid-parameters-fail-closed", s.testInvalidParameters},
		// Migrations from git (argo_git_test.go).
		{"git-rollback-reads-the-planned-commit", s.testGitRollback},
		// Several databases in one run (argo_databases_run_test.go).
		{"databases-happy", s.testDatabasesHappy},
	}
	// Variants of paths taken above, and paths Tekton's suite takes too with the
	// same step code (make test-full). An Argo run costs about twice a Tekton
	// run's pods and pod time on the CI node (an init container and a wait
	// sidecar per step, and a Workflow object of about 0.5 MB that every step's
	// update rewrites), so this suite is the one cut to fit.
	extended := []scenario{
		// Out of make test for its CI time (2026-12-07, a run over its 70 minutes):
		// argo stop runs in TestAttack12Argo's core (a stop during scale-down),
		// Tekton's core stops for auto-blocking and lets go of a keep-down with
		// nothing pending; a rollback waiting on a held lock runs in test-full only.
		{"stop-restores-only-its-own", s.testStopRestoresOnlyItsOwn},
		{"stopped-rollback-outlasts-held-lock", s.testStoppedRollbackOutlastsLock},
		{"auto-blocking-stops", s.testAutoBlocking},
		{"keep-down-hold-nothing-pending-restores", s.testHoldNothingPending},
		{"evicted-migrate-is-retried", s.testEvictedMigrate},
		{"keep-down-hold-auto-additive-restores", s.testHoldAutoAdditive},
		{"keep-down-hold-stop-workloads-false-leaves-it", s.testHoldNoStop},
		{"person-scale-down-kept-by-nothing-pending-run", s.testPersonHoldKept},
		{"two-runs-one-database", s.testConcurrent},
		{"transient-lock-busy", s.testTransient},
		{"image-tag-pushed-again", s.testImageTagPushedAgain},
		{"two-databases-one-application", s.testTwoDatabasesShareWorkloads},
		{"auto-additive-keeps-running", s.testAutoAdditive},
		{"auto-additive-fails-rolls-back", s.testAutoAdditiveFailsRollsBack},
		{"auto-additive-fails-keep-down", s.testAutoAdditiveFailsKeepDown},
		{"auto-unbounded-lock-timeout-stops", s.testAutoUnboundedLockTimeout},
		{"wrong-role-refused-before-stopping", s.testWrongRoleRefusedBeforeStopping},
		{"not-ready-fails-the-run", s.testNotReady},
		{"git-revisions", s.testGitRevisions},
		{"git-private-repository", s.testGitPrivate},
		{"wrong-image-fails-fast", s.testWrongImage},
		{"migrations-image", s.testMigrationsImage},
		{"edited-migration-refused-then-accepted", s.testEditedMigration},
		{"parameters", s.testParameters},
		{"databases-plan", s.testDatabasesPlan},
		{"databases-bad-input", s.testDatabasesBadInput},
		{"databases-keep-down", s.testDatabasesKeepDown},
		{"databases-restore", s.testDatabasesRestore},
		{"databases-rollback", s.testDatabasesRollback},
		{"databases-share-workloads", s.testDatabasesShareWorkloads},
		{"databases-nesting-limit", s.testDatabasesNestingLimit},
		{"databases-size-worst-case", s.testDatabasesSizeWorstCase},
	}
	runScenarios(t, "argo", scenarios, extended...)
	t.Logf("argo: all scenarios done in %s", time.Since(start).Round(100*time.Millisecond))
}

// newArgoSuite installs Argo into ns (it manages only that namespace) and
// applies the project's WorkflowTemplate there, builds and loads the image and
// starts the database server, side by side; all stop when t ends.
func newArgoSuite(t *testing.T, env *kubeenv.Env, ns string) *argoSuite {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Minute)
	defer cancel()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()

	// Set-up in parallel: the engine, the image, the database server.
	s := &argoSuite{env: env}
	var wg sync.WaitGroup
	var installErr, imageErr error
	wg.Go(func() {
		s.argo, installErr = engines.InstallArgo(ctx, env, engines.ArgoOptions{Namespace: ns, RepoDir: repo, Logf: t.Logf})
		if installErr == nil {
			installErr = s.argo.ApplyProject(ctx)
		}
	})
	wg.Go(func() {
		imageErr = BuildAndLoadTestImage(ctx, t, env, "argo", repo, argoImage, shopSet, argoSets)
	})
	s.pg = StartPostgres(t, env)
	s.git = gitserver.Start(t, net.JoinHostPort(env.BridgeIP, "0"))
	wg.Wait()
	if installErr != nil {
		t.Fatal(installErr)
	}
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	s.kube = s.argo.Kube
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- workflow-controller log:\n%s", s.argo.ControllerLog(context.Background(), 150))
		}
	})
	t.Logf("argo: set-up took %s (engine install %s)", time.Since(start).Round(100*time.Millisecond), s.argo.InstallTime.Round(100*time.Millisecond))
	return s
}

// argoCase is one scenario's database, Secret and application.
type argoCase struct {
	s      *argoSuite
	name   string
	db     Database
	secret string
	app    *App
}

func (s *argoSuite) newCase(t *testing.T, name string) *argoCase {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c := &argoCase{s: s, name: name, secret: name + "-db"}
	c.db = NewDatabase(t, s.pg, name)
	if err := CreateSecret(ctx, s.kube, s.argo.Namespace, c.secret, c.db.URL()); err != nil {
		t.Fatal(err)
	}
	app, err := DeployApp(ctx, s.kube, s.argo.Namespace, AppOptions{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	c.app = app
	return c
}

// params are the -p values of a run: this case's Secret and application, the
// test image, short waits; extra overrides.
func (c *argoCase) params(extra map[string]string) map[string]string {
	p := map[string]string{
		"image":             argoImage,
		"database-secret":   c.secret,
		"workload-selector": c.app.Selector,
		"wait-timeout":      "60s",
		"scale-timeout":     "2m",
		"lock-wait":         "2m",
	}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

func (c *argoCase) submit(t *testing.T, entrypoint string, params map[string]string) *wfv1.Workflow {
	t.Helper()
	wf, err := c.s.argo.Submit(t.Context(), engines.ArgoRun{Entrypoint: entrypoint, Params: c.params(params)})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return wf
}

// wait waits for the workflow to complete and logs its nodes; on a failing test
// the step logs too.
func (c *argoCase) wait(t *testing.T, wf *wfv1.Workflow, onChange func(*wfv1.Workflow)) *wfv1.Workflow {
	t.Helper()
	// In ci17b a rollback run (7 pods) was still in its exit handler after 8
	// minutes, on a node at load 23 where each pod took over a minute to start.
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	done, err := c.s.argo.Wait(ctx, wf.Name, onChange)
	if err != nil {
		t.Fatalf("%v\n%s\n--- workflow-controller log about %s:\n%s", err, c.s.argo.StepLogs(context.Background(), wf, 30),
			wf.Name, c.s.argo.ControllerLogAbout(context.Background(), wf.Name, 200))
	}
	t.Logf("%s", engines.ArgoDescribe(done))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- step logs of %s:\n%s", done.Name, c.s.argo.StepLogs(context.Background(), done, 30))
		}
	})
	return done
}

func (c *argoCase) run(t *testing.T, entrypoint string, params map[string]string) *wfv1.Workflow {
	t.Helper()
	return c.wait(t, c.submit(t, entrypoint, params), nil)
}

func (c *argoCase) appState(t *testing.T) AppState {
	t.Helper()
	return appState(t, c.s.kube, c.app)
}

func (c *argoCase) versions(t *testing.T) []int64 {
	t.Helper()
	vs, err := c.db.AppliedVersions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// wantRestored: the application runs as before, with no record left.
func (c *argoCase) wantRestored(t *testing.T) {
	t.Helper()
	wantAppRestored(t, c.s.kube, c.app)
}

// wantStopped: the application is stopped, no pod left, the record in place.
func (c *argoCase) wantStopped(t *testing.T) {
	t.Helper()
	wantAppStopped(t, c.s.kube, c.app)
}

func wantPhase(t *testing.T, wf *wfv1.Workflow, want wfv1.WorkflowPhase) {
	t.Helper()
	if wf.Status.Phase != want {
		t.Fatalf("workflow %s is %s (%s), want %s\n%s", wf.Name, wf.Status.Phase, wf.Status.Message, want, engines.ArgoDescribe(wf))
	}
}

// wantNodes checks the phase of the named nodes (display names; a retried step
// by its retry node). A name absent from the workflow counts as "absent".
func wantNodes(t *testing.T, wf *wfv1.Workflow, want map[string]wfv1.NodePhase) {
	t.Helper()
	for name, phase := range want {
		n, ok := engines.ArgoNodeByName(wf, name)
		got := wfv1.NodePhase("absent")
		if ok {
			got = n.Phase
		}
		if got != phase {
			t.Errorf("node %s: %s, want %s", name, got, phase)
		}
	}
}

// notRun: the node is absent or Skipped/Omitted.
func notRun(t *testing.T, wf *wfv1.Workflow, names ...string) {
	t.Helper()
	for _, name := range names {
		if n, ok := engines.ArgoNodeByName(wf, name); ok && n.Phase != wfv1.NodeSkipped && n.Phase != wfv1.NodeOmitted {
			t.Errorf("node %s ran: %s", name, n.Phase)
		}
	}
}

func wantOutputs(t *testing.T, wf *wfv1.Workflow, node string, want map[string]string) {
	t.Helper()
	n, ok := engines.ArgoNodeByName(wf, node)
	if !ok {
		t.Errorf("no node %s", node)
		return
	}
	for k, v := range want {
		if n.Outputs[k] != v {
			t.Errorf("node %s output %s = %q, want %q", node, k, n.Outputs[k], v)
		}
	}
}

func wantVersions(t *testing.T, got []int64, want ...int64) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("applied versions %v, want %v", got, want)
	}
}

// 1. Nothing pending: the run succeeds, nothing is stopped.
func (s *argoSuite) testNothingPending(t *testing.T) {
	c := s.newCase(t, "nothing")
	if err := c.db.MigrateTo(t.Context(), shopSet, 3); err != nil {
		t.Fatal(err)
	}
	before := c.appState(t)
	pods, err := WatchPods(t.Context(), s.kube, s.argo.Namespace, c.app.Selector)
	if err != nil {
		t.Fatal(err)
	}
	defer pods.Stop()

	wf := c.run(t, "", nil)
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"plan": wfv1.NodeSucceeded})
	notRun(t, wf, "wait-for-db", "scale-down", "migrate", "scale-restore", "restore", "recheck", "rollback")
	wantOutputs(t, wf, "plan", map[string]string{"pending": "false", "current-version": "3"})
	wantVersions(t, c.versions(t), 1, 2, 3)

	after := c.appState(t)
	if after.Generation != before.Generation || len(after.Annotations) != 0 || after.CronSuspended {
		t.Errorf("application touched: before %+v after %+v", before, after)
	}
	for _, e := range pods.Events() {
		if e.Type == "DELETED" {
			t.Errorf("pod %s deleted during the run", e.Name)
		}
	}
	if !maps1Equal(before.Pods, after.Pods) {
		t.Errorf("pods changed: %v -> %v", before.Pods, after.Pods)
	}
}

func maps1Equal[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// 2. Migrations pending: the pods are gone before the first migration runs, the
// migrations are applied, the application comes back; versions and results are
// on the Workflow.
func (s *argoSuite) testMigrationsPending(t *testing.T) {
	c := s.newCase(t, "pending")
	before := c.appState(t)
	pods, err := WatchPods(t.Context(), s.kube, s.argo.Namespace, c.app.Selector)
	if err != nil {
		t.Fatal(err)
	}
	defer pods.Stop()
	start := time.Now()

	wf := c.run(t, "", nil) // migrations-dir: the image's /migrations
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantNodes(t, wf, map[string]wfv1.NodePhase{
		"plan": wfv1.NodeSucceeded, "scale-down": wfv1.NodeSucceeded,
		"migrate": wfv1.NodeSucceeded, "scale-restore": wfv1.NodeSucceeded,
	})
	notRun(t, wf, "wait-for-db", "wait-patroni", "restore", "recheck", "rollback")
	wantOutputs(t, wf, "plan", map[string]string{"pending": "true", "current-version": "0", "target-version": "3"})
	wantOutputs(t, wf, "migrate", map[string]string{"applied": "3", "current-version": "3"})
	out := engines.ArgoOutputs(wf)
	if out["pending"] != "true" || out["planned-version"] != "0" || out["pending-versions"] != "[1,2,3]" ||
		out["applied-versions"] != "[1,2,3]" || out["migrate-current-version"] != "3" {
		t.Errorf("workflow outputs %v, want pending=true planned-version=0 pending-versions=applied-versions=[1,2,3] migrate-current-version=3", out)
	}
	wantVersions(t, c.versions(t), 1, 2, 3)
	// What the run did, on the controller's metrics endpoint.
	noMetricsError(t, wf)
	s.wantMetric(t, "argo_workflows_chartreuse_migrations_applied", c.labelsOf(), 3)
	s.wantMetric(t, "argo_workflows_chartreuse_runs", c.labelsOf("status", "Succeeded", "entrypoint", "main", "policy", "keep-down"), 1)
	s.wantMetric(t, "argo_workflows_chartreuse_workloads_stopped", c.labelsOf(), 0)
	// Seconds the steps measured: the workflow outputs, and the same on the metrics.
	for name, m := range map[string]struct {
		metric string
		least  float64
	}{
		"downtime-seconds":        {"argo_workflows_chartreuse_downtime_seconds", 0.1},
		"lock-wait-seconds":       {"argo_workflows_chartreuse_migration_lock_wait_seconds", 0},
		"table-lock-wait-seconds": {"argo_workflows_chartreuse_table_lock_wait_seconds", 0},
	} {
		v, err := strconv.ParseFloat(out[name], 64)
		if err != nil || v < m.least {
			t.Errorf("workflow output %s = %q, want seconds >= %v", name, out[name], m.least)
			continue
		}
		s.wantMetric(t, m.metric, c.labelsOf(), v)
	}
	// Least privilege on the pods the controller made (permissions_test.go).
	wantLeastPrivilegePods(t, s.kube, runPods(t, s.kube, s.argo.Namespace, "workflows.argoproj.io/workflow="+wf.Name), true)

	// Every pod that ran before was gone before the first migration ran, and no
	// pod of the application existed while the migrations ran.
	log, err := c.db.MigrationLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 3 {
		t.Fatalf("migration log %v, want 3 entries", log)
	}
	first, last := log["1"], log["3"]
	gone := pods.LastDeleted(before.Pods)
	if gone.IsZero() {
		t.Fatalf("the application's pods %v were never deleted", before.Pods)
	}
	if !gone.Before(first) {
		t.Errorf("last pod deleted at %s, after the first migration at %s", gone.Format(time.RFC3339Nano), first.Format(time.RFC3339Nano))
	}
	if live := pods.Existing(first); len(live) != 0 {
		t.Errorf("pods existed when the first migration ran: %v", live)
	}
	if live := pods.Existing(last); len(live) != 0 {
		t.Errorf("pods existed when the last migration ran: %v", live)
	}
	c.wantRestored(t)
	down, up := pods.Window(start)
	t.Logf("downtime: pods stopping from %s, first new pod at %s (%s); migrations %s..%s",
		down.Format("15:04:05.000"), up.Format("15:04:05.000"), up.Sub(down).Round(100*time.Millisecond),
		first.Format("15:04:05.000"), last.Format("15:04:05.000"))
}

// 3. Transient failures: another session holds migrate's advisory lock.
// While plan runs, plan exits 75 at once (a plan judged during another
// migration is stale) and nothing is stopped; the test lets go, Argo retries
// plan, it passes. Taken again once the application is being stopped,
// migrate gives up after --lock-wait with exit 75, Argo retries it after its
// backoff, the lock is free by then, the run succeeds.
func (s *argoSuite) testTransient(t *testing.T) {
	c := s.newCase(t, "transient")
	release, err := c.db.HoldLock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { release() }()
	wf := c.submit(t, "", map[string]string{"lock-wait": "3s"})
	var planReleased, migrateHeld, migrateReleased bool
	wf = c.wait(t, wf, func(w *wfv1.Workflow) {
		failed := func(step string) bool {
			for _, a := range engines.ArgoAttempts(w, step) {
				if a.Phase == wfv1.NodeFailed || a.Phase == wfv1.NodeError {
					return true
				}
			}
			return false
		}
		switch {
		case !planReleased && failed("plan"):
			if st := c.appState(t); st.SpecReplicas != c.app.Replicas || st.CronSuspended || len(st.Annotations) != 0 {
				t.Errorf("plan refused, yet the application was touched: %+v", st)
			}
			release()
			planReleased = true
		case planReleased && !migrateHeld && len(engines.ArgoAttempts(w, "scale-down")) > 0:
			// scale-down waits for the application's pods to end, then
			// migrate's pod starts: seconds before migrate asks for the lock.
			if release, err = c.db.HoldLock(t.Context()); err != nil {
				t.Error(err)
				release = func() {}
			}
			migrateHeld = true
		case migrateHeld && !migrateReleased && failed("migrate"):
			release() // the "other migrator" is done
			migrateReleased = true
		}
	})
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	if at := engines.ArgoAttempts(wf, "plan"); len(at) < 2 || at[0].ExitCode != "75" || at[len(at)-1].Phase != wfv1.NodeSucceeded {
		t.Errorf("plan's attempts: %+v, want one refused with exit 75 while the lock was held, then one that passed", at)
	}
	attempts := engines.ArgoAttempts(wf, "migrate")
	if len(attempts) < 2 {
		t.Fatalf("migrate ran %d times, want a failed attempt and a retry", len(attempts))
	}
	if a := attempts[0]; a.Phase != wfv1.NodeFailed || a.ExitCode != "75" {
		t.Errorf("first attempt: %s exit %s (%s), want Failed with exit code 75", a.Phase, a.ExitCode, a.Message)
	}
	if a := attempts[len(attempts)-1]; a.Phase != wfv1.NodeSucceeded || a.ExitCode != "0" {
		t.Errorf("last attempt: %s exit %s, want Succeeded", a.Phase, a.ExitCode)
	}
	if !attempts[1].Started.After(attempts[0].Finished) {
		t.Error("the retry did not start after the failed attempt")
	}
	t.Logf("retry started %s after the failed attempt ended", attempts[1].Started.Sub(attempts[0].Finished))
	wantNodes(t, wf, map[string]wfv1.NodePhase{"migrate": wfv1.NodeSucceeded, "scale-restore": wfv1.NodeSucceeded})
	wantVersions(t, c.versions(t), 1, 2, 3)
	c.wantRestored(t)

	// Issue 12, bug 1: no attempt, the retry included, gets a deadline from the
	// first attempt's start; migrate none at all, the others the one derived from
	// their timeout parameters (c.params: wait-timeout 60s, scale-timeout 2m;
	// ready-timeout 5m by default) plus 5 minutes for the pod to start.
	wantOwnDeadlines(t, s.argo, wf, "migrate", nil)
	wantOwnDeadlines(t, s.argo, wf, "plan", ptr.To[int64](60+300))
	wantOwnDeadlines(t, s.argo, wf, "scale-down", ptr.To[int64](120+300))
	wantOwnDeadlines(t, s.argo, wf, "scale-restore", ptr.To[int64](120+300+300))
}

// 4a + 5. keep-down: migrate fails with an SQL error; the workloads stay down and
// the run fails. Then, as a person would after repairing the migration: rerun
// the migrate phase alone (--entrypoint migrate) with the fixed files, then
// scale-restore alone.
func (s *argoSuite) testKeepDownThenRerun(t *testing.T) {
	c := s.newCase(t, "keepdown")
	if err := c.db.MigrateTo(t.Context(), argoSets["fixed"], 1); err != nil {
		t.Fatal(err)
	}
	wf := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/fails-second", "on-migrate-failure": "keep-down"})
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"scale-down": wfv1.NodeSucceeded, "migrate": wfv1.NodeFailed})
	notRun(t, wf, "scale-restore", "restore", "recheck", "rollback", "restore-after-rollback", "restore-if-unchanged")
	if a := engines.ArgoAttempts(wf, "migrate"); len(a) != 1 || a[0].ExitCode != "1" {
		t.Errorf("migrate attempts %+v, want one, exit code 1 (SQL errors are not retried)", a)
	}
	if out := engines.ArgoOutputs(wf); out["planned-version"] != "1" {
		t.Errorf("planned-version %q, want 1", out["planned-version"])
	}
	wantVersions(t, c.versions(t), 1, 2) // 2 applied, 3 failed in its transaction
	if ok, _ := c.db.TableExists(t.Context(), "invoices"); ok {
		t.Error("the failed migration's table exists")
	}
	c.wantStopped(t)
	noMetricsError(t, wf)
	var scaled float64
	if n, ok := engines.ArgoNodeByName(wf, "scale-down"); ok {
		scaled, _ = strconv.ParseFloat(n.Outputs["scaled"], 64)
	}
	if scaled < 1 {
		t.Errorf("scale-down reported %v workloads stopped", scaled)
	}
	s.wantMetric(t, "argo_workflows_chartreuse_workloads_stopped", c.labelsOf(), scaled)
	s.wantMetric(t, "argo_workflows_chartreuse_runs", c.labelsOf("status", "Failed", "entrypoint", "main", "policy", "keep-down"), 1)

	// The manual rerun: the failed phase with the repaired migration.
	wf = c.run(t, "migrate", map[string]string{"migrations-dir": SetsRoot + "/fixed"})
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantOutputs(t, wf, "migrate", map[string]string{"applied": "1", "current-version": "3"}) // the phase's node, after pull-image
	wantNodes(t, wf, map[string]wfv1.NodePhase{"pull-image": wfv1.NodeSucceeded})
	wantVersions(t, c.versions(t), 1, 2, 3)
	c.wantStopped(t) // migrate alone does not restore
	// A person's scale-down phase joins the holders under its own run, naming
	// the bare Secret: a person's hold, which no run's secret/key lets go of.
	down := c.run(t, "scale-down", nil)
	wantPhase(t, down, wfv1.WorkflowSucceeded)
	if held := c.appState(t).Annotations["deployment/"+heldByAnnotation]; !strings.HasSuffix(held, ","+holderFor(down, c.secret)) {
		t.Errorf("held by %q, want the scale-down phase's run last, as %s:%s", held, down.UID, c.secret)
	}
	wf = c.run(t, "scale-restore", nil)
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	c.wantRestored(t)
	s.wantMetric(t, "argo_workflows_chartreuse_workloads_stopped", c.labelsOf(), 0)
	s.wantMetric(t, "argo_workflows_chartreuse_migrations_applied", c.labelsOf(), 1) // the rerun's: a failed migrate reports none
}

// 4b. restore: the first pending migration fails (nothing applied); the exit
// handler sees the database still at the planned version and restores.
func (s *argoSuite) testRestorePolicy(t *testing.T) {
	c := s.newCase(t, "restore")
	if err := c.db.MigrateTo(t.Context(), argoSets["fails-first"], 1); err != nil {
		t.Fatal(err)
	}
	wf := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/fails-first", "on-migrate-failure": "restore"})
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantNodes(t, wf, map[string]wfv1.NodePhase{
		"scale-down": wfv1.NodeSucceeded, "migrate": wfv1.NodeFailed,
		"recheck": wfv1.NodeSucceeded, "restore-if-unchanged": wfv1.NodeSucceeded,
	})
	notRun(t, wf, "scale-restore", "rollback", "restore-after-rollback", "restore")
	wantOutputs(t, wf, "recheck", map[string]string{"current-version": "1"})
	wantVersions(t, c.versions(t), 1)
	c.wantRestored(t)
}

// 4c. rollback: 2 is applied, 3 fails; the exit handler migrates down to the
// planned version 1 and restores; the run still fails.
func (s *argoSuite) testRollbackPolicy(t *testing.T) {
	c := s.newCase(t, "rollback")
	if err := c.db.MigrateTo(t.Context(), argoSets["fails-second"], 1); err != nil {
		t.Fatal(err)
	}
	wf := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/fails-second", "on-migrate-failure": "rollback"})
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantNodes(t, wf, map[string]wfv1.NodePhase{
		"scale-down": wfv1.NodeSucceeded, "migrate": wfv1.NodeFailed,
		"rollback": wfv1.NodeSucceeded, "restore-after-rollback": wfv1.NodeSucceeded,
	})
	notRun(t, wf, "scale-restore", "recheck", "restore-if-unchanged", "restore")
	wantOutputs(t, wf, "rollback", map[string]string{"current-version": "1"})
	wantVersions(t, c.versions(t), 1)
	if ok, _ := c.db.TableExists(t.Context(), "orders"); ok {
		t.Error("table orders (migration 2) survived the rollback")
	}
	c.wantRestored(t)
}

// 6. Two runs for the same database at once: Argo's mutex (keyed by the Secret)
// runs them one after the other; each migration is applied once.
func (s *argoSuite) testConcurrent(t *testing.T) {
	c := s.newCase(t, "twice")
	a := c.submit(t, "", nil)
	b := c.submit(t, "", nil)
	var mu sync.Mutex
	waited := map[string]bool{}
	note := func(w *wfv1.Workflow) {
		if sy := w.Status.Synchronization; sy != nil && sy.Mutex != nil && len(sy.Mutex.Waiting) > 0 {
			mu.Lock()
			waited[w.Name] = true
			mu.Unlock()
		}
		if strings.Contains(w.Status.Message, "Waiting for") {
			mu.Lock()
			waited[w.Name] = true
			mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	var wa, wb *wfv1.Workflow
	wg.Go(func() { wa = c.wait(t, a, note) })
	wg.Go(func() { wb = c.wait(t, b, note) })
	wg.Wait()
	if wa == nil || wb == nil {
		return
	}
	wantPhase(t, wa, wfv1.WorkflowSucceeded)
	wantPhase(t, wb, wfv1.WorkflowSucceeded)
	first, second := wa, wb
	if wb.Status.StartedAt.Before(&wa.Status.StartedAt) || podSpan(wb).start.Before(podSpan(wa).start) {
		first, second = wb, wa
	}
	// The mutex is held by the whole first run (its exit handler included) and
	// handed over when it completes: the second run's first pod comes after that
	// (Argo's timestamps have a resolution of one second).
	f, sc := podSpan(first), podSpan(second)
	if sc.start.Before(first.Status.FinishedAt.Time) || sc.start.Before(f.end) {
		t.Errorf("runs overlapped: %s pods %s..%s (finished %s), %s pods %s..%s", first.Name, f.start.Format(time.RFC3339), f.end.Format(time.RFC3339),
			first.Status.FinishedAt.Format(time.RFC3339), second.Name, sc.start.Format(time.RFC3339), sc.end.Format(time.RFC3339))
	}
	t.Logf("%s started its first pod %s after %s finished", second.Name, sc.start.Sub(first.Status.FinishedAt.Time), first.Name)
	mu.Lock()
	if !waited[second.Name] {
		t.Errorf("%s was never seen waiting for the mutex (status.synchronization)", second.Name)
	}
	mu.Unlock()
	wantOutputs(t, first, "migrate", map[string]string{"applied": "3"})
	wantOutputs(t, second, "plan", map[string]string{"pending": "false", "current-version": "3"})
	notRun(t, second, "scale-down", "migrate", "scale-restore")
	wantVersions(t, c.versions(t), 1, 2, 3)
	if _, err := c.db.MigrationLog(t.Context()); err != nil {
		t.Error(err) // a migration that ran twice
	}
	c.wantRestored(t)
}

type span struct{ start, end time.Time }

// podSpan is when the workflow's first pod started and its last one finished.
func podSpan(wf *wfv1.Workflow) span {
	var s span
	for _, n := range engines.ArgoNodes(wf) {
		if n.Type != wfv1.NodeTypePod || n.Started.IsZero() {
			continue
		}
		if s.start.IsZero() || n.Started.Before(s.start) {
			s.start = n.Started
		}
		if n.Finished.After(s.end) {
			s.end = n.Finished
		}
	}
	return s
}
