package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/chartreuse-go/chartreuse/test/engines"
)

// stop-workloads=auto (issue 17 section 3): the application is stopped only
// when plan's needs-downtime is true. Both sets start from their version 1
// (a customers table the application uses) applied.
var (
	// 2 and 3 only add: a table, columns the old version need not know
	// (nullable, or NOT NULL with a constant default), an index built
	// CONCURRENTLY. The running version survives them: nothing is stopped.
	autoAdditive = MigrationSet{
		"00001_customers.sql": LoggedMigration("1", "customers"),
		"00002_notes.sql": `-- +goose Up
CREATE TABLE notes (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers (id), body text NOT NULL);
ALTER TABLE customers ADD COLUMN nickname text, ADD COLUMN score int NOT NULL DEFAULT 0;
COMMENT ON COLUMN customers.score IS 'loyalty points';

-- +goose Down
ALTER TABLE customers DROP COLUMN nickname, DROP COLUMN score;
DROP TABLE notes;
`,
		"00003_customers_score.sql": `-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_score ON customers (score);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS customers_score;
`,
	}
	// autoAdditive and a 4th additive migration that fails when it runs (the
	// column exists by then): the failure policies with nothing stopped.
	autoAdditiveFails = func() MigrationSet {
		m := MigrationSet{"00004_nickname_again.sql": `-- +goose Up
ALTER TABLE customers ADD COLUMN nickname text;

-- +goose Down
SELECT 1;
`}
		for k, v := range autoAdditive {
			m[k] = v
		}
		return m
	}()
	// 2 builds an index without CONCURRENTLY (writes wait for it): the
	// application is stopped. Its log row tells when it ran.
	autoBlocking = MigrationSet{
		"00001_customers.sql": LoggedMigration("1", "customers"),
		"00002_customers_created.sql": `-- +goose Up
CREATE INDEX customers_created ON customers (created_at);
INSERT INTO chartreuse_e2e_log VALUES ('2', clock_timestamp());

-- +goose Down
DROP INDEX customers_created;
DELETE FROM chartreuse_e2e_log WHERE version = '2';
`,
	}
)

func init() {
	for _, sets := range []map[string]MigrationSet{argoSets, tektonSets} {
		sets["auto-additive"] = autoAdditive
		sets["auto-blocking"] = autoBlocking
		sets["auto-additive-fails"] = autoAdditiveFails
	}
}

// badSelector is a workload-selector with a typo (an unclosed set).
const badSelector = "app.kubernetes.io/name in (auto-add"

// logLine logs plan's line saying why it needs downtime; the line's words are
// pkg/migrate's tests' to check (the step logs are only as complete as the
// engine keeps them).
func logLine(t *testing.T, logs, want string) {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, want) {
			t.Logf("plan: %s", strings.TrimSpace(l))
			return
		}
	}
	t.Logf("plan's log line %q not among the step logs read", want)
}

// wantAdditiveApplied: 2 and 3 of autoAdditive are in the database.
func wantAdditiveApplied(t *testing.T, db Database) {
	t.Helper()
	vs, err := db.AppliedVersions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantVersions(t, vs, 1, 2, 3)
	conn, err := db.open()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var cols, valid int
	if err := conn.QueryRowContext(t.Context(), `SELECT (SELECT count(*) FROM information_schema.columns WHERE table_name = 'customers' AND column_name IN ('nickname', 'score')),
		(SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('customers_score') AND indisvalid)`).Scan(&cols, &valid); err != nil {
		t.Fatal(err)
	}
	if cols != 2 || valid != 1 {
		t.Errorf("customers has %d of the new columns, %d valid customers_score index; want 2 and 1", cols, valid)
	}
}

// Argo, additive: plan says needs-downtime false, scale-down is skipped, the
// migrations are applied with every application pod running throughout; the
// scale-restore after migrate still runs (it lets go of earlier holds) and
// restores nothing.
func (s *argoSuite) testAutoAdditive(t *testing.T) {
	c := s.newCase(t, "auto-add")
	if err := c.db.MigrateTo(t.Context(), autoAdditive, 1); err != nil {
		t.Fatal(err)
	}
	before := c.appState(t)
	pods, err := WatchPods(t.Context(), s.kube, s.argo.Namespace, c.app.Selector)
	if err != nil {
		t.Fatal(err)
	}
	defer pods.Stop()
	// A typo in the selector first: plan refuses it before anything changes
	// (scale-restore, the first step to read it here, runs after migrate).
	bad := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/auto-additive", "stop-workloads": "auto", "workload-selector": badSelector})
	wantPhase(t, bad, wfv1.WorkflowFailed)
	wantNodes(t, bad, map[string]wfv1.NodePhase{"plan": wfv1.NodeFailed})
	notRun(t, bad, "scale-down", "migrate", "scale-restore", "restore", "rollback")
	if a := engines.ArgoAttempts(bad, "plan"); len(a) != 1 || a[0].ExitCode != "2" {
		t.Errorf("plan attempts %+v, want one, refused with exit 2", a)
	}
	wantVersions(t, c.versions(t), 1)
	start := time.Now()
	wf := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/auto-additive", "stop-workloads": "auto"})
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"plan": wfv1.NodeSucceeded, "migrate": wfv1.NodeSucceeded, "scale-restore": wfv1.NodeSucceeded})
	notRun(t, wf, "scale-down", "restore", "recheck", "rollback")
	wantOutputs(t, wf, "plan", map[string]string{"pending": "true", "needs-downtime": "false", "current-version": "1"})
	wantOutputs(t, wf, "migrate", map[string]string{"applied": "2", "current-version": "3"})
	wantOutputs(t, wf, "scale-restore", map[string]string{"restored": "0", "downtime-seconds": ""})
	noMetricsError(t, wf) // the downtime metric's when: not emitted, no error either
	wantAdditiveApplied(t, c.db)
	after := c.appState(t)
	if after.Generation != before.Generation || len(after.Annotations) != 0 || after.CronSuspended || !maps1Equal(before.Pods, after.Pods) {
		t.Errorf("application touched: before %+v after %+v", before, after)
	}
	for _, e := range pods.Events() {
		if e.Type == watch.Deleted || e.Terminating {
			t.Errorf("app pod %s was stopped (%s)", e.Name, e.Type)
		}
	}
	t.Logf("additive run: %s, no pod stopped (pods %d throughout)", time.Since(start).Round(100*time.Millisecond), len(before.Pods))
}

// Argo, blocking: plan says needs-downtime true, so auto stops the
// application as true does: every pod gone before migration 2 ran, the
// application back after.
func (s *argoSuite) testAutoBlocking(t *testing.T) {
	c := s.newCase(t, "auto-block")
	if err := c.db.MigrateTo(t.Context(), autoBlocking, 1); err != nil {
		t.Fatal(err)
	}
	before := c.appState(t)
	pods, err := WatchPods(t.Context(), s.kube, s.argo.Namespace, c.app.Selector)
	if err != nil {
		t.Fatal(err)
	}
	defer pods.Stop()
	start := time.Now()
	wf := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/auto-blocking", "stop-workloads": "auto"})
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"plan": wfv1.NodeSucceeded, "scale-down": wfv1.NodeSucceeded, "migrate": wfv1.NodeSucceeded, "scale-restore": wfv1.NodeSucceeded})
	notRun(t, wf, "restore", "recheck", "rollback")
	wantOutputs(t, wf, "plan", map[string]string{"pending": "true", "needs-downtime": "true"})
	wantVersions(t, c.versions(t), 1, 2)
	logLine(t, s.argo.StepLogs(context.Background(), wf, 200), "needs-downtime true: 00002_customers_created.sql:2 is not additive: CREATE INDEX without CONCURRENTLY")
	log, err := c.db.MigrationLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ran := log["2"]
	gone := pods.LastDeleted(before.Pods)
	if gone.IsZero() || !gone.Before(ran) {
		t.Errorf("last pod deleted at %s, migration 2 ran at %s: want the pods gone first", gone.Format(time.StampMicro), ran.Format(time.StampMicro))
	}
	if live := pods.Existing(ran); len(live) != 0 {
		t.Errorf("pods existed when migration 2 ran: %v", live)
	}
	c.wantRestored(t)
	down, up := pods.Window(start)
	t.Logf("blocking run: %s; downtime: pods stopping from %s, first new pod at %s (%s)", time.Since(start).Round(100*time.Millisecond),
		down.Format("15:04:05.000"), up.Format("15:04:05.000"), up.Sub(down).Round(100*time.Millisecond))
}

// Tekton, additive: as on Argo.
func (s *tektonSuite) testAutoAdditive(t *testing.T) {
	c := s.newCase(t, nil)
	if err := c.db.MigrateTo(t.Context(), autoAdditive, 1); err != nil {
		t.Fatal(err)
	}
	// First with a typo in the selector: with auto and nothing that needs
	// downtime, scale-down would not run, and scale-restore once read the
	// selector only after migrate. plan refuses it before anything changes.
	bad, badTRs := c.run(t, c.pipelineRun(t, "auto-additive", map[string]string{"stop-workloads": "auto", "workload-selector": badSelector}))
	wantSucceeded(t, bad, false)
	wantTasks(t, bad, badTRs, nil, []string{"plan"}, nil)
	if codes := engines.StepExitCodes(badTRs["plan"]); len(codes) == 0 || slices.ContainsFunc(codes, func(c string) bool { return c != "plan=2" }) {
		t.Errorf("plan exit codes %v, want 2 in every attempt (bad input)", codes)
	}
	c.wantVersions(t, 1)

	start := time.Now()
	before := c.pods.Existing(start)
	pr, trs := c.run(t, c.pipelineRun(t, "auto-additive", map[string]string{"stop-workloads": "auto"}))
	wantSucceeded(t, pr, true)
	wantTasks(t, pr, trs, []string{"plan", "migrate", "scale-restore"}, nil, append([]string{"wait-for-db", "wait-patroni", "scale-down"}, allFinally...))
	wantResults(t, trs, "plan", map[string]string{"pending": "true", "needs-downtime": "false", "current-version": "1"})
	wantResults(t, trs, "migrate", map[string]string{"applied": "2", "current-version": "3"})
	wantResults(t, trs, "scale-restore", map[string]string{"restored": "0", "downtime-seconds": ""})
	wantAdditiveApplied(t, c.db)
	c.wantUntouched(t)
	if after := c.pods.Existing(time.Now()); len(after) != len(before) {
		t.Errorf("app pods %v before, %v after", before, after)
	}
	st := appState(t, s.kube, c.app)
	if len(st.Annotations) != 0 || st.CronSuspended {
		t.Errorf("application touched: %+v", st)
	}
	t.Logf("additive run: %s, no pod stopped (pods %d throughout)", pr.Status.CompletionTime.Sub(pr.Status.StartTime.Time), len(before))
}

// Tekton, blocking: as on Argo.
func (s *tektonSuite) testAutoBlocking(t *testing.T) {
	c := s.newCase(t, nil)
	if err := c.db.MigrateTo(t.Context(), autoBlocking, 1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	before := c.pods.Existing(start)
	pr, trs := c.run(t, c.pipelineRun(t, "auto-blocking", map[string]string{"stop-workloads": "auto"}))
	wantSucceeded(t, pr, true)
	wantTasks(t, pr, trs, phases, nil, append([]string{"wait-for-db", "wait-patroni"}, allFinally...))
	wantResults(t, trs, "plan", map[string]string{"pending": "true", "needs-downtime": "true"})
	wantResults(t, trs, "scale-down", map[string]string{"scaled": "2"})
	wantResults(t, trs, "scale-restore", map[string]string{"restored": "2"})
	logLine(t, s.tk.TaskRunLogs(context.Background(), trs["plan"]), "needs-downtime true: 00002_customers_created.sql:2 is not additive: CREATE INDEX without CONCURRENTLY")
	log, err := c.db.MigrationLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ran := log["2"]
	gone := c.pods.LastDeleted(before)
	if gone.IsZero() || !gone.Before(ran) {
		t.Errorf("last app pod gone at %s, migration 2 ran at %s: want the pods gone first", gone.Format(time.StampMicro), ran.Format(time.StampMicro))
	}
	if live := c.pods.Existing(ran); len(live) != 0 {
		t.Errorf("app pods existed when migration 2 ran: %v", live)
	}
	c.wantRestored(t)
	var down, up time.Time
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_ = Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		down, up = c.pods.Window(start)
		return !up.IsZero(), nil
	})
	t.Logf("blocking run: %s; downtime %s (app down at %s, a new pod ready at %s)", pr.Status.CompletionTime.Sub(pr.Status.StartTime.Time),
		up.Sub(down).Round(time.Millisecond), down.Format(time.StampMilli), up.Format(time.StampMilli))
}

// Argo, additive but failing, on-migrate-failure=rollback: nothing was
// stopped, so the rollback branch rolls the migrations back to plan's version
// with the application running throughout, and the run fails.
func (s *argoSuite) testAutoAdditiveFailsRollsBack(t *testing.T) {
	c := s.newCase(t, "auto-fail")
	if err := c.db.MigrateTo(t.Context(), autoAdditiveFails, 1); err != nil {
		t.Fatal(err)
	}
	before := c.appState(t)
	pods, err := WatchPods(t.Context(), s.kube, s.argo.Namespace, c.app.Selector)
	if err != nil {
		t.Fatal(err)
	}
	defer pods.Stop()
	wf := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/auto-additive-fails", "stop-workloads": "auto", "on-migrate-failure": "rollback"})
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"plan": wfv1.NodeSucceeded, "migrate": wfv1.NodeFailed, "rollback": wfv1.NodeSucceeded})
	notRun(t, wf, "scale-down", "scale-restore")
	wantOutputs(t, wf, "plan", map[string]string{"pending": "true", "needs-downtime": "false", "current-version": "1"})
	wantOutputs(t, wf, "rollback", map[string]string{"current-version": "1"})
	wantVersions(t, c.versions(t), 1)
	after := c.appState(t)
	if len(after.Annotations) != 0 || after.CronSuspended || !maps1Equal(before.Pods, after.Pods) {
		t.Errorf("application touched: before %+v after %+v", before, after)
	}
	for _, e := range pods.Events() {
		if e.Type == watch.Deleted || e.Terminating {
			t.Errorf("app pod %s was stopped (%s)", e.Name, e.Type)
		}
	}
}

// Argo, additive but failing, keep-down: nothing was stopped, so nothing is
// kept down; the additive migrations that ran stay, the run fails, and the
// application ran throughout.
func (s *argoSuite) testAutoAdditiveFailsKeepDown(t *testing.T) {
	c := s.newCase(t, "auto-keep")
	if err := c.db.MigrateTo(t.Context(), autoAdditiveFails, 1); err != nil {
		t.Fatal(err)
	}
	before := c.appState(t)
	wf := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/auto-additive-fails", "stop-workloads": "auto", "on-migrate-failure": "keep-down"})
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"plan": wfv1.NodeSucceeded, "migrate": wfv1.NodeFailed})
	notRun(t, wf, "scale-down", "scale-restore", "rollback")
	wantAdditiveApplied(t, c.db)
	after := c.appState(t)
	if len(after.Annotations) != 0 || after.CronSuspended || !maps1Equal(before.Pods, after.Pods) {
		t.Errorf("application touched: before %+v after %+v", before, after)
	}
}

// Tekton, additive but failing, rollback: as on Argo.
func (s *tektonSuite) testAutoAdditiveFailsRollsBack(t *testing.T) {
	c := s.newCase(t, nil)
	if err := c.db.MigrateTo(t.Context(), autoAdditiveFails, 1); err != nil {
		t.Fatal(err)
	}
	pr, trs := c.run(t, c.pipelineRun(t, "auto-additive-fails", map[string]string{"stop-workloads": "auto", "on-migrate-failure": "rollback"}))
	wantSucceeded(t, pr, false)
	wantTasks(t, pr, trs, []string{"plan", "rollback"}, []string{"migrate"},
		[]string{"wait-for-db", "wait-patroni", "scale-down", "scale-restore", "restore", "restore-if-unchanged"})
	wantResults(t, trs, "plan", map[string]string{"pending": "true", "needs-downtime": "false", "current-version": "1"})
	wantResults(t, trs, "rollback", map[string]string{"current-version": "1", "restored": "0"})
	c.wantVersions(t, 1)
	c.wantUntouched(t)
	if st := appState(t, s.kube, c.app); len(st.Annotations) != 0 || st.CronSuspended {
		t.Errorf("application touched: %+v", st)
	}
}

// Argo, additive statements but lock-timeout=0 (wait for locks without end):
// plan gets the run's lock-timeout, so it says needs-downtime true and auto
// stops the application (plan once ran with its own 10 s and said false).
func (s *argoSuite) testAutoUnboundedLockTimeout(t *testing.T) {
	c := s.newCase(t, "auto-lt0")
	if err := c.db.MigrateTo(t.Context(), autoAdditive, 1); err != nil {
		t.Fatal(err)
	}
	wf := c.run(t, "", map[string]string{"migrations-dir": SetsRoot + "/auto-additive", "stop-workloads": "auto", "lock-timeout": "0"})
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"plan": wfv1.NodeSucceeded, "scale-down": wfv1.NodeSucceeded, "migrate": wfv1.NodeSucceeded, "scale-restore": wfv1.NodeSucceeded})
	wantOutputs(t, wf, "plan", map[string]string{"pending": "true", "needs-downtime": "true"})
	wantAdditiveApplied(t, c.db)
	c.wantRestored(t)
}

// Tekton, as on Argo.
func (s *tektonSuite) testAutoUnboundedLockTimeout(t *testing.T) {
	c := s.newCase(t, nil)
	if err := c.db.MigrateTo(t.Context(), autoAdditive, 1); err != nil {
		t.Fatal(err)
	}
	pr, trs := c.run(t, c.pipelineRun(t, "auto-additive", map[string]string{"stop-workloads": "auto", "lock-timeout": "0"}))
	wantSucceeded(t, pr, true)
	wantTasks(t, pr, trs, []string{"plan", "scale-down", "migrate", "scale-restore"}, nil, append([]string{"wait-for-db", "wait-patroni"}, allFinally...))
	wantResults(t, trs, "plan", map[string]string{"pending": "true", "needs-downtime": "true"})
	wantAdditiveApplied(t, c.db)
	c.wantRestored(t)
}
