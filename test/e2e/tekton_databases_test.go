package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/chartreuse-go/chartreuse/pkg/databases"
	"github.com/chartreuse-go/chartreuse/test/engines"
)

// databasesRun is the example PipelineRun of chartreuse-databases
// (tekton/examples/databases-pipelinerun.yaml, its identities) over the
// databases of secrets (one entry per Secret).
func (c *tektonCase) databasesRun(t *testing.T, secrets []string, extra map[string]string) *pipelinev1.PipelineRun {
	t.Helper()
	pr, err := c.s.tk.Example("databases-pipelinerun.yaml")
	if err != nil {
		t.Fatal(err)
	}
	entries := []map[string]string{}
	for _, s := range secrets {
		entries = append(entries, map[string]string{"secret": s})
	}
	list, _ := json.Marshal(entries)
	p := map[string]string{"image": tektonImage, "workload-selector": c.app.Selector, "databases": string(list)}
	for k, v := range extra {
		p[k] = v
	}
	setParams(&pr.Spec.Params, p)
	return pr
}

// Three databases, a Secret each: one with nothing pending, two pending. One run
// plans all three, stops the application once, migrates the two (the first alone,
// then the other: parallelism 1), restores once.
func (s *tektonSuite) testDatabasesList(t *testing.T) {
	c := s.newCase(t, nil)
	c.migrateTo(t, 3)
	b, cc := NewDatabase(t, s.pg, "tekton"), NewDatabase(t, s.pg, "tekton")
	if err := b.MigrateTo(t.Context(), tektonShop, 1); err != nil {
		t.Fatal(err)
	}
	for secret, db := range map[string]Database{"orders-db": b, "users-db": cc} {
		if err := CreateSecret(t.Context(), s.kube, c.ns, secret, db.URL()); err != nil {
			t.Fatal(err)
		}
	}
	// A list whose names would not fit the results that name every database
	// (check --max-names-bytes, TestResultsFitTheTektonNamesBound): refused by
	// check, before the gate, with nothing changed.
	var long []string
	for i := range 60 {
		long = append(long, fmt.Sprintf("tenant-%013d-db", i))
	}
	pr, trs := c.run(t, c.databasesRun(t, long, nil))
	wantSucceeded(t, pr, false)
	for _, n := range []string{"gate", "plan", "rounds", "scale-down", "migrate"} {
		if trs[n] != nil {
			t.Errorf("a list too long for the results: %s ran (TaskRuns %v)", n, ran(trs))
		}
	}
	if trs["check"] == nil {
		t.Errorf("a list too long for the results: no check TaskRun (%v)", ran(trs))
	} else if log := s.tk.TaskRunLogs(t.Context(), trs["check"]); !strings.Contains(log, "the names of the 60 databases (Secret/key) take 1923 bytes in a result, more than the 1300") {
		t.Errorf("check's log does not name the bound:\n%s", log)
	}
	if st := appState(t, s.kube, c.app); len(st.Annotations) != 0 || st.CronSuspended {
		t.Errorf("application touched by the refused run: %+v", st)
	}

	pr, trs = c.run(t, c.databasesRun(t, []string{tektonSecret, "orders-db", "users-db"}, nil))
	wantSucceeded(t, pr, true)
	c.wantVersions(t, 1, 2, 3)
	for name, db := range map[string]Database{"orders-db": b, "users-db": cc} {
		v, err := db.AppliedVersions(t.Context())
		if err != nil || len(v) != 3 {
			t.Errorf("%s: versions %v (%v), want 1, 2, 3", name, v, err)
		}
	}
	wantAppRestored(t, s.kube, c.app)
	wantTurns(t, c, pr, []string{"orders-db", "users-db"})
	wantTektonSummary(t, trs, true, "3 databases: 2 migrated, 1 nothing-pending", map[string]string{"orders-db": databases.Migrated, "users-db": databases.Migrated, tektonSecret: databases.NothingPending})
	t.Logf("TaskRuns: %d", len(trs))
}

// wantTurns: the run's migrate TaskRuns migrated one at a time (parallelism 1),
// in order: each one's migrate step started after the one before had ended.
func wantTurns(t *testing.T, c *tektonCase, pr *pipelinev1.PipelineRun, order []string) {
	t.Helper()
	trs, err := c.s.tk.Pipeline.TektonV1().TaskRuns(c.ns).List(t.Context(), metav1.ListOptions{LabelSelector: "tekton.dev/pipelineRun=" + pr.Name + ",tekton.dev/pipelineTask=migrate"})
	if err != nil {
		t.Fatal(err)
	}
	type span struct{ start, end metav1.Time }
	spans := map[string]span{}
	for _, tr := range trs.Items {
		secret := ""
		for _, p := range tr.Spec.Params {
			if p.Name == "secret" {
				secret = p.Value.StringVal
			}
		}
		for _, st := range tr.Status.Steps {
			if st.Name == "migrate" && st.Terminated != nil {
				spans[secret] = span{st.Terminated.StartedAt, st.Terminated.FinishedAt}
			}
		}
	}
	for i, s := range order {
		sp, ok := spans[s]
		if !ok {
			t.Errorf("no migrate step ran for %s (%d migrate TaskRuns)", s, len(trs.Items))
			continue
		}
		if i > 0 {
			if prev, ok := spans[order[i-1]]; ok && sp.start.Before(&prev.end) {
				t.Errorf("%s's migrate started at %s, before %s's ended at %s: not one at a time", s, sp.start, order[i-1], prev.end)
			}
		}
		t.Logf("migrate %s: %s to %s", s, sp.start.Format("15:04:05"), sp.end.Format("15:04:05"))
	}
}

// The first pending database's migration fails (3 of the broken set): the run
// Failed, the other pending database was not reached (its migrate TaskRun did
// not start migrating) and stays at its version, and the application stays
// stopped, held by the run for its databases (keep-down, the list's policy).
func (s *tektonSuite) testDatabasesListKeepDown(t *testing.T) {
	c, broken, later, list := s.failingList(t, 0)
	pr := c.databasesRun(t, nil, map[string]string{"databases": list})
	done, trs := c.run(t, pr)
	wantSucceeded(t, done, false)
	for name, want := range map[string][]int64{"broken-db": {1, 2}, "later-db": {1}} {
		db := map[string]Database{"broken-db": broken, "later-db": later}[name]
		v, err := db.AppliedVersions(t.Context())
		if err != nil || !slices.Equal(v, want) {
			t.Errorf("%s: versions %v (%v), want %v", name, v, err, want)
		}
	}
	c.wantVersions(t, 1, 2, 3)
	wantHeld(t, s.kube, c.app, done, tektonSecret+"/url+broken-db/url+later-db")
	// Each migrate TaskRun reported its database as a line and succeeded; the
	// summary says each database's outcome and failed the run, its restore skipped.
	lines := migrateLines(t, c, done)
	if l := lines["broken-db"]; l["ran"] != "true" || l["failed"] != "true" || !strings.Contains(l["error"], "SQLSTATE") {
		t.Errorf("broken-db's line %v, want ran, failed and its SQLSTATE error", l)
	}
	if l := lines["later-db"]; l["ran"] != "false" || !strings.Contains(l["why"], "the migrate of broken-db failed") {
		t.Errorf("later-db's line %v, want not ran because broken-db failed", l)
	}
	if _, ok := lines[tektonSecret]; ok {
		t.Errorf("a migrate TaskRun for %s, which had nothing pending", tektonSecret)
	}
	// the summary succeeded (it says what happened), the verdict failed the run;
	// keep-down: no recheck, no decision, no restore
	wantTektonSummary(t, trs, true, "3 databases: 1 failed, 1 not-reached, 1 nothing-pending", map[string]string{"broken-db": databases.Failed, "later-db": databases.NotReached, tektonSecret: databases.NothingPending})
	wantTektonSummary(t, map[string]*pipelinev1.TaskRun{"summary": trs["verdict"]}, false, "3 databases: 1 failed, 1 not-reached, 1 nothing-pending", map[string]string{"broken-db": databases.Failed, "later-db": databases.NotReached, tektonSecret: databases.NothingPending})
	for _, n := range []string{"scale-restore", "recheck", "decide", "restore-after-failure"} {
		if _, ok := trs[n]; ok {
			t.Errorf("%s ran after a failed migration with keep-down", n)
		}
	}
}

// migrateLines is the migrate-line result of each migrate TaskRun of the run,
// by Secret, with its result failed as the key "failed". Every one succeeded.
func migrateLines(t *testing.T, c *tektonCase, pr *pipelinev1.PipelineRun) map[string]map[string]string {
	t.Helper()
	trs, err := c.s.tk.Pipeline.TektonV1().TaskRuns(c.ns).List(t.Context(), metav1.ListOptions{LabelSelector: "tekton.dev/pipelineRun=" + pr.Name + ",tekton.dev/pipelineTask=migrate"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, tr := range trs.Items {
		if !engines.Succeeded(tr.Status.GetCondition(apis.ConditionSucceeded)) {
			t.Errorf("migrate TaskRun %s did not succeed: a failed migration is its line", tr.Name)
		}
		res := engines.TaskRunResults(&tr)
		var line map[string]string
		if err := json.Unmarshal([]byte(res["migrate-line"]), &line); err != nil {
			t.Errorf("TaskRun %s: migrate-line %q: %v", tr.Name, res["migrate-line"], err)
			continue
		}
		line["failed"] = res["failed"]
		out[line["secret"]] = line
	}
	return out
}

// wantTektonSummary checks the summary TaskRun (or the verdict's): succeeded or
// not, its count line, migrate-failed, and each database's outcome (by name: an entry's name is its Secret here).
func wantTektonSummary(t *testing.T, trs map[string]*pipelinev1.TaskRun, ok bool, count string, outcomes map[string]string) {
	t.Helper()
	failed := false
	for _, o := range outcomes {
		failed = failed || o == databases.Failed || o == databases.NotReached
	}
	tr := trs["summary"]
	if tr == nil {
		t.Fatalf("no summary TaskRun (ran: %v)", ran(trs))
	}
	if got := engines.Succeeded(tr.Status.GetCondition(apis.ConditionSucceeded)); got != ok {
		t.Errorf("summary succeeded %v, want %v", got, ok)
	}
	res := engines.TaskRunResults(tr)
	if res["summary"] != count || res["migrate-failed"] != strconv.FormatBool(failed) {
		t.Errorf("summary results %v, want summary %q and migrate-failed %v", res, count, failed)
	}
	var rows []struct{ Name, Outcome string }
	if err := json.Unmarshal([]byte(res["databases"]), &rows); err != nil {
		t.Fatalf("summary databases %q: %v", res["databases"], err)
	}
	got := map[string]string{}
	for _, r := range rows {
		got[r.Name] = r.Outcome
	}
	if !maps.Equal(got, outcomes) {
		t.Errorf("summary outcomes %v, want %v", got, outcomes)
	}
}

// on-migrate-failure=restore over the list: the canary (broken-db, at 2) fails
// inside its transaction, so it stays at 2, and later-db is never reached. The
// recheck finds every database at its planned version, decide restores the
// application, and the verdict fails the run.
func (s *tektonSuite) testDatabasesListRestore(t *testing.T) {
	c, broken, later, list := s.failingList(t, 2)
	done, trs := c.run(t, c.databasesRun(t, nil, map[string]string{"databases": list, "on-migrate-failure": "restore"}))
	wantSucceeded(t, done, false)
	for name, want := range map[string][]int64{"broken-db": {1, 2}, "later-db": {1}} {
		db := map[string]Database{"broken-db": broken, "later-db": later}[name]
		if v, err := db.AppliedVersions(t.Context()); err != nil || !slices.Equal(v, want) {
			t.Errorf("%s: versions %v (%v), want %v", name, v, err, want)
		}
	}
	c.wantVersions(t, 1, 2, 3)
	wantAppRestored(t, s.kube, c.app)
	wantResults(t, trs, "decide", map[string]string{"restore": "true", "migrate-failed": "true"})
	if why := engines.TaskRunResults(trs["decide"])["why"]; !strings.Contains(why, "every database is still at its planned version") {
		t.Errorf("decide's why %q", why)
	}
	for _, n := range []string{"summary", "restore-after-failure"} {
		if tr := trs[n]; tr == nil || !engines.Succeeded(tr.Status.GetCondition(apis.ConditionSucceeded)) {
			t.Errorf("%s did not succeed (ran: %v)", n, ran(trs))
		}
	}
	wantTektonSummary(t, map[string]*pipelinev1.TaskRun{"summary": trs["verdict"]}, false, "3 databases: 1 failed, 1 not-reached, 1 nothing-pending", map[string]string{"broken-db": databases.Failed, "later-db": databases.NotReached, tektonSecret: databases.NothingPending})
	if _, ok := trs["scale-restore"]; ok {
		t.Errorf("the success path's scale-restore ran after a failed migration")
	}
}

// on-migrate-failure=rollback over the list: the canary (broken-db, empty)
// applies 1 and 2, then 3 fails; later-db is never reached. decide rolls
// broken-db back (it moved), its rollback TaskRun migrates it down to 0
// (only what this run applied), and the application is restored; the verdict
// fails the run.
func (s *tektonSuite) testDatabasesListRollback(t *testing.T) {
	c, broken, later, list := s.failingList(t, 0)
	done, trs := c.run(t, c.databasesRun(t, nil, map[string]string{"databases": list, "on-migrate-failure": "rollback"}))
	wantSucceeded(t, done, false)
	for name, want := range map[string][]int64{"broken-db": {}, "later-db": {1}} {
		db := map[string]Database{"broken-db": broken, "later-db": later}[name]
		if v, err := db.AppliedVersions(t.Context()); err != nil || !slices.Equal(v, want) {
			t.Errorf("%s: versions %v (%v), want %v", name, v, err, want)
		}
	}
	c.wantVersions(t, 1, 2, 3)
	wantAppRestored(t, s.kube, c.app)
	wantResults(t, trs, "decide", map[string]string{"rollback-any": "true", "restore-after-rollback": "true", "restore": "false"})
	if tr := trs["decide"]; tr != nil {
		for _, r := range tr.Status.Results {
			if r.Name == "rollback-order" && !slices.Equal(r.Value.ArrayVal, []string{"broken-db"}) {
				t.Errorf("decide's rollback-order %v, want [broken-db]", r.Value.ArrayVal)
			}
		}
	}
	wantResults(t, trs, "after-rollback", map[string]string{"rollback-failed": "false"})
	for _, n := range []string{"summary", "recheck", "rollback", "after-rollback", "restore-after-rollback"} {
		if tr := trs[n]; tr == nil || !engines.Succeeded(tr.Status.GetCondition(apis.ConditionSucceeded)) {
			t.Errorf("%s did not succeed (ran: %v)", n, ran(trs))
		}
	}
	for _, n := range []string{"scale-restore", "restore-after-failure"} {
		if _, ok := trs[n]; ok {
			t.Errorf("%s ran (ran: %v)", n, ran(trs))
		}
	}
	wantTektonSummary(t, map[string]*pipelinev1.TaskRun{"summary": trs["verdict"]}, false, "3 databases: 1 failed, 1 not-reached, 1 nothing-pending", map[string]string{"broken-db": databases.Failed, "later-db": databases.NotReached, tektonSecret: databases.NothingPending})
}

// failingList is the case of the failure scenarios over a list: the case's own
// database at 3 (nothing pending), broken-db (the broken set, at brokenAt: its
// 3 fails) and later-db (the shop set at 1), a Secret each, in that order, so
// that broken-db is the canary and later-db is never reached.
func (s *tektonSuite) failingList(t *testing.T, brokenAt int64) (*tektonCase, Database, Database, string) {
	t.Helper()
	c := s.newCase(t, nil)
	c.migrateTo(t, 3)
	broken, later := NewDatabase(t, s.pg, "tekton"), NewDatabase(t, s.pg, "tekton")
	if brokenAt > 0 {
		if err := broken.MigrateTo(t.Context(), tektonSets["broken"], brokenAt); err != nil {
			t.Fatal(err)
		}
	}
	if err := later.MigrateTo(t.Context(), tektonShop, 1); err != nil {
		t.Fatal(err)
	}
	for secret, db := range map[string]Database{"broken-db": broken, "later-db": later} {
		if err := CreateSecret(t.Context(), s.kube, c.ns, secret, db.URL()); err != nil {
			t.Fatal(err)
		}
	}
	return c, broken, later, `[{"secret": "` + tektonSecret + `"}, {"secret": "broken-db", "dir": "` + SetsRoot + `/broken"}, {"secret": "later-db"}]`
}

// A list run cancelled (CancelledRunFinally) while scale-down waits for a slow
// pod to end, before any migrate TaskRun: finally's restore-not-migrated puts
// back what it stopped, both databases stay where they were, and the next run
// finishes the job. Before, the list's finally only released the gate and
// the application stayed at 0 (as after a failed scale-down).
func (s *tektonSuite) testDatabasesListCancelRestores(t *testing.T) {
	c := s.newCase(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 2*runBound)
	defer cancel()
	orders := s.twoAtOne(t, c)
	other, err := DeployApp(ctx, s.kube, c.ns, AppOptions{Name: "other", ShutdownDelay: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	both := map[string]string{"workload-selector": "app.kubernetes.io/name in (app,other)"}
	list := []string{tektonSecret, "orders-db"}

	pr, err := s.tk.CreatePipelineRun(ctx, c.ns, c.databasesRun(t, list, both))
	if err != nil {
		t.Fatal(err)
	}
	waitStopped(t, ctx, s.kube, c.ns, other.Name)
	if err := s.tk.SetRunStatus(ctx, c.ns, pr.Name, pipelinev1.PipelineRunSpecStatusCancelledRunFinally); err != nil {
		t.Fatal(err)
	}
	pr, trs := c.wait(t, ctx, pr.Name)
	wantRestoredNotMigrated(t, c, pr, trs, orders, other)

	pr, _ = c.run(t, c.databasesRun(t, list, both))
	wantSucceeded(t, pr, true)
	c.wantVersions(t, 1, 2, 3)
	if v, err := orders.Version(ctx); err != nil || v != 3 {
		t.Errorf("orders-db at %d (%v) after the rerun, want 3", v, err)
	}
	wantAppRestored(t, s.kube, c.app)
	wantAppRestored(t, s.kube, other)
}

// A list run whose scale-down fails (a pod that takes 90 s to stop, a
// scale-timeout of 1 s, three attempts): no migrate TaskRun runs, finally's
// restore-not-migrated puts the application back, and neither database moves.
func (s *tektonSuite) testDatabasesListScaleDownFailsRestores(t *testing.T) {
	c := s.newCase(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	orders := s.twoAtOne(t, c)
	slow, err := DeployApp(ctx, s.kube, c.ns, AppOptions{Name: "slow", Replicas: 1, ShutdownDelay: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pr, trs := c.run(t, c.databasesRun(t, []string{tektonSecret, "orders-db"}, map[string]string{
		"workload-selector": "app.kubernetes.io/name in (app,slow)", "scale-timeout": "1s",
	}))
	if tr := trs["scale-down"]; tr == nil || engines.Succeeded(tr.Status.GetCondition(apis.ConditionSucceeded)) {
		t.Fatalf("scale-down did not fail (TaskRuns %v)", ran(trs))
	}
	wantRestoredNotMigrated(t, c, pr, trs, orders, slow)
}

// twoAtOne puts the case's database at 1 and gives it a second one, orders-db
// (its Secret of that name), at 1 too: a list of two with 2 and 3 pending.
func (s *tektonSuite) twoAtOne(t *testing.T, c *tektonCase) Database {
	t.Helper()
	c.migrateTo(t, 1)
	orders := NewDatabase(t, s.pg, "tekton")
	if err := orders.MigrateTo(t.Context(), tektonShop, 1); err != nil {
		t.Fatal(err)
	}
	if err := CreateSecret(t.Context(), s.kube, c.ns, "orders-db", orders.URL()); err != nil {
		t.Fatal(err)
	}
	return orders
}

// wantRestoredNotMigrated: the list run over twoAtOne's databases failed
// before migrate (no migrate TaskRun, nor restore-migrated), finally's
// restore-not-migrated put back the case's application and also, and
// neither database moved from 1.
func wantRestoredNotMigrated(t *testing.T, c *tektonCase, pr *pipelinev1.PipelineRun, trs map[string]*pipelinev1.TaskRun, orders Database, also *App) {
	t.Helper()
	wantSucceeded(t, pr, false)
	if trs["migrate"] != nil || trs["restore-migrated"] != nil {
		t.Errorf("migrate or restore-migrated ran (TaskRuns %v)", ran(trs))
	}
	if tr := trs["restore-not-migrated"]; tr == nil || !engines.Succeeded(tr.Status.GetCondition(apis.ConditionSucceeded)) {
		t.Errorf("finally's restore-not-migrated did not succeed (TaskRuns %v)", ran(trs))
	}
	wantAppRestored(t, c.s.kube, c.app)
	wantAppRestored(t, c.s.kube, also)
	c.wantVersions(t, 1)
	if v, err := orders.Version(t.Context()); err != nil || v != 1 {
		t.Errorf("orders-db at %d (%v), want 1", v, err)
	}
}

// on-migrate-failure=rollback over a list where the failed migration leaves
// its database dirty (dirty-third: 3 without a transaction fails partway). The
// canary (the case's database, 1 to 3) moved; dirty-db failed. recheck's plan
// of dirty-db is refused (dirty), which before stopped the run ahead of decide
// and left the canary at 3; now its line says the version is not known, and
// decide rolls back the canary and keeps the application down, naming dirty-db.
func (s *tektonSuite) testDatabasesListDirtyRecheck(t *testing.T) {
	c := s.newCase(t, nil)
	c.migrateTo(t, 1)
	dirty := NewDatabase(t, s.pg, "tekton")
	if err := dirty.MigrateTo(t.Context(), tektonSets["dirty-third"], 2); err != nil {
		t.Fatal(err)
	}
	if err := CreateSecret(t.Context(), s.kube, c.ns, "dirty-db", dirty.URL()); err != nil {
		t.Fatal(err)
	}
	list := `[{"secret": "` + tektonSecret + `"}, {"secret": "dirty-db", "dir": "` + SetsRoot + `/dirty-third"}]`
	done, trs := c.run(t, c.databasesRun(t, nil, map[string]string{"databases": list, "on-migrate-failure": "rollback"}))
	wantSucceeded(t, done, false)
	for _, n := range []string{"recheck", "decide", "rollback", "after-rollback"} {
		if tr := trs[n]; tr == nil || !engines.Succeeded(tr.Status.GetCondition(apis.ConditionSucceeded)) {
			t.Errorf("%s did not succeed (ran: %v)", n, ran(trs))
		}
	}
	c.wantVersions(t, 1)
	wantResults(t, trs, "decide", map[string]string{"rollback-any": "true", "restore-after-rollback": "false", "restore": "false"})
	why := ""
	if tr := trs["decide"]; tr != nil {
		why = engines.TaskRunResults(tr)["why"]
	}
	if !strings.Contains(why, "dirty-db") || !strings.Contains(why, "not known") {
		t.Errorf("decide's why %q does not say dirty-db's version is not known", why)
	}
	for _, n := range []string{"scale-restore", "restore-after-failure", "restore-after-rollback", "restore-migrated", "restore-not-migrated"} {
		if _, ok := trs[n]; ok {
			t.Errorf("%s ran (ran: %v)", n, ran(trs))
		}
	}
	c.wantStopped(t)
}

// slowCanaryList is twoAtOne's two databases as a list whose canary (the
// case's database, first) takes the slow set (its 2 sleeps 8 s).
func (s *tektonSuite) slowCanaryList(t *testing.T, c *tektonCase) (Database, string) {
	t.Helper()
	orders := s.twoAtOne(t, c)
	return orders, `[{"secret": "` + tektonSecret + `", "dir": "` + SetsRoot + `/slow"}, {"secret": "orders-db"}]`
}

// stopWhileCanaryMigrates creates a list run over slowCanaryList, sets its
// spec.status to status once the canary's migration 2 sleeps, and returns the
// run when done. With rerunAtOnce the rerun of the same list is created right
// after the stop, while the stopped run's pods may still be terminating, and
// returned too.
func (s *tektonSuite) stopWhileCanaryMigrates(t *testing.T, c *tektonCase, ctx context.Context, list string, status pipelinev1.PipelineRunSpecStatus, rerunAtOnce bool) (*pipelinev1.PipelineRun, map[string]*pipelinev1.TaskRun, *pipelinev1.PipelineRun) {
	t.Helper()
	pr, err := s.tk.CreatePipelineRun(ctx, c.ns, c.databasesRun(t, nil, map[string]string{"databases": list}))
	if err != nil {
		t.Fatal(err)
	}
	c.db.waitSleeping(t, ctx)
	if err := s.tk.SetRunStatus(ctx, c.ns, pr.Name, status); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	t.Logf("%s set at %s while the canary's migration 2 sleeps", status, stoppedAt.UTC().Format("15:04:05.000"))
	var rerun *pipelinev1.PipelineRun
	if rerunAtOnce {
		if rerun, err = s.tk.CreatePipelineRun(ctx, c.ns, c.databasesRun(t, nil, map[string]string{"databases": list})); err != nil {
			t.Fatal(err)
		}
	}
	done, trs := c.wait(t, ctx, pr.Name)
	wantSucceeded(t, done, false)
	if status == pipelinev1.PipelineRunSpecStatusCancelledRunFinally {
		// a cancel kills the canary mid-migration 2: nothing of it stays, and
		// no migration of it runs after the cancel
		log, err := c.db.MigrationLog(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for v, at := range log {
			if at.After(stoppedAt) {
				t.Errorf("migration %s of the cancelled canary ran at %s, after the cancel at %s", v, at.UTC().Format("15:04:05.000"), stoppedAt.UTC().Format("15:04:05.000"))
			}
		}
	}
	return done, trs, rerun
}

// wantStoppedMidList: after a stop or cancel while the canary migrated, the
// case's database is at canary (its applied versions and migration log: none
// twice), orders-db at 1 (its turn never came: no migration of it started),
// no restore ran, and the application is stopped, held by the run.
func wantStoppedMidList(t *testing.T, c *tektonCase, pr *pipelinev1.PipelineRun, trs map[string]*pipelinev1.TaskRun, orders Database, canary ...int64) {
	t.Helper()
	c.wantVersions(t, canary...)
	if v, err := orders.AppliedVersions(t.Context()); err != nil || !slices.Equal(v, []int64{1}) {
		t.Errorf("orders-db: versions %v (%v), want [1]: its turn never came", v, err)
	}
	if log, err := orders.MigrationLog(t.Context()); err != nil || len(log) != 1 {
		t.Errorf("orders-db: migration log %v (%v), want 1 only", log, err)
	}
	for _, n := range []string{"summary", "scale-restore", "restore-not-migrated", "restore-migrated", "recheck", "decide", "restore-after-failure"} {
		if tr := trs[n]; tr != nil {
			t.Errorf("%s ran after a stop mid-migration (TaskRuns %v)", n, ran(trs))
		}
	}
	mtrs, err := c.s.tk.Pipeline.TektonV1().TaskRuns(c.ns).List(t.Context(), metav1.ListOptions{LabelSelector: "tekton.dev/pipelineRun=" + pr.Name + ",tekton.dev/pipelineTask=migrate"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range mtrs.Items {
		cond := tr.Status.GetCondition(apis.ConditionSucceeded)
		t.Logf("migrate TaskRun %s: %s results %v exit codes %v\n%s", tr.Name, engines.RunCondition(cond), engines.TaskRunResults(&tr), engines.StepExitCodes(&tr), c.s.tk.TaskRunLogs(context.Background(), &tr))
	}
	logMigrationTimes(t, c.db)
	wantAppStopped(t, c.s.kube, c.app)
	held := appState(t, c.s.kube, c.app).Annotations["deployment/"+heldByAnnotation]
	if want := holderFor(pr, tektonSecret+"/url+orders-db/url"); held != want {
		t.Errorf("held by %q after the stop, want %q", held, want)
	}
}

// wantRerunFinishes: the rerun of the same list succeeded, both databases at 3
// (each migration applied once), the application restored.
func wantRerunFinishes(t *testing.T, c *tektonCase, pr *pipelinev1.PipelineRun, orders Database) {
	t.Helper()
	wantSucceeded(t, pr, true)
	c.wantVersions(t, 1, 2, 3)
	if v, err := orders.AppliedVersions(t.Context()); err != nil || !slices.Equal(v, []int64{1, 2, 3}) {
		t.Errorf("orders-db: versions %v (%v) after the rerun, want [1 2 3]", v, err)
	}
	wantAppRestored(t, c.s.kube, c.app)
	if st := appState(t, c.s.kube, c.app); len(st.Annotations) != 0 {
		t.Errorf("records left after the rerun: %v", st.Annotations)
	}
}

// Attack: StoppedRunFinally while the canary migrates (its 2 sleeps). The
// canary's TaskRun runs on and finishes (1 to 3); orders-db's, waiting for its
// turn, must not migrate; no restore (finally cannot tell every database is at
// its planned version), the application held; the rerun finishes the job.
func (s *tektonSuite) testDatabasesListStopMidCanary(t *testing.T) {
	c := s.newCase(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 2*runBound)
	defer cancel()
	orders, list := s.slowCanaryList(t, c)
	pr, trs, _ := s.stopWhileCanaryMigrates(t, c, ctx, list, pipelinev1.PipelineRunSpecStatusStoppedRunFinally, false)
	wantStoppedMidList(t, c, pr, trs, orders, 1, 2, 3)
	if l := migrateLines(t, c, pr)["orders-db"]; l["ran"] != "false" || !strings.Contains(l["why"], "stopped") {
		t.Errorf("orders-db's line %v, want not ran because the run was stopped", l)
	}
	// the canary's migrate watched its TaskRun (the context variables
	// substituted, the Role's get granted) and, the run being only stopped,
	// went on to the end
	mtrs, err := s.tk.Pipeline.TektonV1().TaskRuns(c.ns).List(t.Context(), metav1.ListOptions{LabelSelector: "tekton.dev/pipelineRun=" + pr.Name + ",tekton.dev/pipelineTask=migrate"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range mtrs.Items {
		var line map[string]string
		if json.Unmarshal([]byte(engines.TaskRunResults(&tr)["migrate-line"]), &line) == nil && line["ran"] == "true" {
			wantRunWatched(t, s.tk.TaskRunLogs(context.Background(), &tr), "taskrun/"+tr.Name)
		}
	}
	rerun, _ := c.run(t, c.databasesRun(t, nil, map[string]string{"databases": list}))
	wantRerunFinishes(t, c, rerun, orders)
}

// Attack: CancelledRunFinally while the canary migrates (its 2 sleeps): the
// canary's pod is killed and its 2 rolled back with its session (the
// database stays at 1, nothing half applied), orders-db never migrates, the
// application is held; the rerun finishes the job.
func (s *tektonSuite) testDatabasesListCancelMidCanary(t *testing.T) {
	c := s.newCase(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 2*runBound)
	defer cancel()
	orders, list := s.slowCanaryList(t, c)
	pr, trs, _ := s.stopWhileCanaryMigrates(t, c, ctx, list, pipelinev1.PipelineRunSpecStatusCancelledRunFinally, false)
	wantStoppedMidList(t, c, pr, trs, orders, 1)
	if err := Poll(ctx, time.Second, func() (bool, error) { s, err := c.db.sleeping(ctx); return !s, err }); err != nil {
		t.Errorf("the cancelled canary's session still sleeps: %v", err)
	}
	rerun, _ := c.run(t, c.databasesRun(t, nil, map[string]string{"databases": list}))
	wantRerunFinishes(t, c, rerun, orders)
}

// Attack: the same cancel, with the rerun created right after it, while the
// cancelled canary's pod terminates and its session may still hold the
// migration (and the advisory lock): the rerun must wait or take over
// cleanly, finish both databases once each, and restore the application.
func (s *tektonSuite) testDatabasesListRerunDuringCancel(t *testing.T) {
	c := s.newCase(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 2*runBound)
	defer cancel()
	orders, list := s.slowCanaryList(t, c)
	first, _, rerun := s.stopWhileCanaryMigrates(t, c, ctx, list, pipelinev1.PipelineRunSpecStatusCancelledRunFinally, true)
	mtrs, err := s.tk.Pipeline.TektonV1().TaskRuns(c.ns).List(t.Context(), metav1.ListOptions{LabelSelector: "tekton.dev/pipelineRun=" + first.Name + ",tekton.dev/pipelineTask=migrate"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range mtrs.Items {
		t.Logf("cancelled run's migrate TaskRun %s: %s exit codes %v\n%s", tr.Name, engines.RunCondition(tr.Status.GetCondition(apis.ConditionSucceeded)), engines.StepExitCodes(&tr), s.tk.TaskRunLogs(context.Background(), &tr))
	}
	logMigrationTimes(t, c.db)
	done, trs := c.wait(t, ctx, rerun.Name)
	for _, n := range []string{"gate", "plan", "scale-down", "migrate"} {
		if tr := trs[n]; tr != nil && tr.Status.StartTime != nil {
			t.Logf("rerun's %s started %s", n, tr.Status.StartTime.UTC().Format("15:04:05"))
		}
	}
	if !engines.Succeeded(done.Status.GetCondition(apis.ConditionSucceeded)) {
		for n, tr := range trs {
			t.Logf("--- rerun %s:\n%s", n, s.tk.TaskRunLogs(context.Background(), tr))
		}
	}
	wantRerunFinishes(t, c, done, orders)
}

// logMigrationTimes logs when each migration of the database ran (its
// migration log) and goose's version rows.
func logMigrationTimes(t *testing.T, d Database) {
	t.Helper()
	log, err := d.MigrationLog(context.Background())
	for v, at := range log {
		t.Logf("migration %s ran at %s", v, at.UTC().Format("15:04:05.000"))
	}
	vs, err2 := d.AppliedVersions(context.Background())
	t.Logf("applied versions now %v (%v %v)", vs, err, err2)
}

// wantRunWatched: a migrate step's log says it watched its run (--watch-run
// given with the engine's names, the run readable with its Role).
func wantRunWatched(t *testing.T, log, run string) {
	t.Helper()
	if !strings.Contains(log, "watching the run") || !strings.Contains(log, run) {
		t.Errorf("migrate did not watch %s; its log:\n%s", run, log)
	}
	for _, bad := range []string{"cannot watch the run", "may not read the run", "reading the run failed"} {
		if strings.Contains(log, bad) {
			t.Errorf("migrate's log says %q", bad)
		}
	}
}
