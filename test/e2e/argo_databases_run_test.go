package e2e

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"github.com/chartreuse-go/chartreuse/test/engines"
)

// Several databases in one run (issue 15), the whole run on the real Argo
// controller: plan each, stop the application once, migrate in rounds (canary,
// parallelism), restore once; after a failure the policy over all the databases
// (keep-down, restore, rollback) and the run summary; two runs that share the
// workload namespace never overlap.
//
// Every run with databases holds chartreuse.workloads.<namespace>, and all the
// scenarios share one namespace: such runs take turns, so they wait longer than
// a single-database run (dbWait).

// dbFixture is one database of a scenario's list: its own database and Secret.
type dbFixture struct {
	db     Database
	secret string
}

// newDatabases makes a database and Secret per name, the first being the case's own.
func (c *argoCase) newDatabases(t *testing.T, names ...string) []dbFixture {
	t.Helper()
	out := []dbFixture{{db: c.db, secret: c.secret}}
	for _, n := range names {
		d := NewDatabase(t, c.s.pg, c.name+n)
		secret := c.name + "-" + n
		if err := CreateSecret(t.Context(), c.s.kube, c.s.argo.Namespace, secret, d.URL()); err != nil {
			t.Fatal(err)
		}
		out = append(out, dbFixture{db: d, secret: secret})
	}
	return out
}

// dbList renders a databases parameter: one entry per fixture, with dirs[i]
// as its migrations directory when not "".
func dbList(dbs []dbFixture, dirs ...string) string {
	var entries []map[string]string
	for i, d := range dbs {
		e := map[string]string{"secret": d.secret}
		if i < len(dirs) && dirs[i] != "" {
			e["dir"] = dirs[i]
		}
		entries = append(entries, e)
	}
	b, _ := json.Marshal(entries)
	return string(b)
}

// holderOf is the database list a run of dbs names on the workloads: each secret/key
// (CreateSecret's key, url), sorted, joined by +.
func holderOf(dbs []dbFixture) string {
	var s []string
	for _, d := range dbs {
		s = append(s, d.secret+"/url")
	}
	sort.Strings(s)
	return strings.Join(s, "+")
}

// dbWait waits for a run with databases: it may first wait for the other
// scenarios' runs to let go of the workload namespace's mutex.
func (c *argoCase) dbWait(t *testing.T, wf *wfv1.Workflow, onChange func(*wfv1.Workflow)) *wfv1.Workflow {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 35*time.Minute)
	defer cancel()
	done, err := c.s.argo.Wait(ctx, wf.Name, onChange)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.s.argo.StepLogs(context.Background(), wf, 30))
	}
	t.Logf("%s", engines.ArgoDescribe(done))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- step logs of %s:\n%s", done.Name, c.s.argo.StepLogs(context.Background(), done, 40))
		}
	})
	return done
}

// dbRow is one database of the run summary (check-databases --action=summary).
type dbRow struct {
	Name            string  `json:"name"`
	PlannedVersion  string  `json:"planned-version"`
	TargetVersion   string  `json:"target-version"`
	CurrentVersion  string  `json:"current-version"`
	AppliedVersions []int64 `json:"applied-versions"`
	Seconds         float64 `json:"seconds"`
	Outcome         string  `json:"outcome"`
	Error           string  `json:"error"`
}

// summaryOf reads the run summary: the summary node's databases output.
func summaryOf(t *testing.T, wf *wfv1.Workflow) []dbRow {
	t.Helper()
	n, ok := engines.ArgoNodeByName(wf, "summary")
	if !ok || n.Phase != wfv1.NodeSucceeded {
		t.Fatalf("no summary (node %+v)\n%s", n, engines.ArgoDescribe(wf))
	}
	var rows []dbRow
	if err := json.Unmarshal([]byte(n.Outputs["databases"]), &rows); err != nil {
		t.Fatalf("summary databases %q: %v", n.Outputs["databases"], err)
	}
	if out := engines.ArgoOutputs(wf)["databases-summary"]; out != n.Outputs["databases"] {
		t.Errorf("workflow output databases-summary %q differs from the summary's", out)
	}
	return rows
}

// rowWant is what a summary row must say.
type rowWant struct {
	outcome, planned, target, current string
	applied                           []int64
	errorHas                          string
}

func wantSummary(t *testing.T, rows []dbRow, dbs []dbFixture, want []rowWant) {
	t.Helper()
	if len(rows) != len(want) {
		t.Fatalf("summary has %d databases, want %d: %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		r := rows[i]
		applied := r.AppliedVersions
		if applied == nil {
			applied = []int64{}
		}
		if w.applied == nil {
			w.applied = []int64{}
		}
		if r.Name != dbs[i].secret || r.Outcome != w.outcome || r.PlannedVersion != w.planned || r.TargetVersion != w.target ||
			r.CurrentVersion != w.current || !slices.Equal(applied, w.applied) || (w.errorHas == "") != (r.Error == "") || !strings.Contains(r.Error, w.errorHas) {
			t.Errorf("summary of %s: %+v, want %+v", dbs[i].secret, r, w)
		}
		if strings.Contains(r.Error, "postgres://") {
			t.Errorf("summary of %s: the error holds a URL: %s", dbs[i].secret, r.Error)
		}
	}
}

// wantDBVersions checks each database's version table.
func wantDBVersions(t *testing.T, dbs []dbFixture, want ...[]int64) {
	t.Helper()
	for i, d := range dbs {
		got, err := d.db.AppliedVersions(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want[i]) {
			t.Errorf("%s: applied versions %v, want %v", d.secret, got, want[i])
		}
	}
}

var (
	itemIndexRE = regexp.MustCompile(`index:(\d+)`)
	roundRE     = regexp.MustCompile(`^round\((\d+):`)
)

// dbNode is a per-database step of the run (migrate-db-pod, rollback-db-pod, ...):
// the entry's index and, for migrate, its round.
type dbNode struct {
	index, round     int
	phase            wfv1.NodePhase
	started, finshed time.Time
}

// perDatabase returns the retry nodes of template by entry index.
func perDatabaseNodes(wf *wfv1.Workflow, template string) map[int]dbNode {
	out := map[int]dbNode{}
	for _, n := range engines.ArgoNodes(wf) {
		if n.Template != template || n.Type != wfv1.NodeTypeRetry {
			continue
		}
		m := itemIndexRE.FindStringSubmatch(n.Name)
		if m == nil {
			continue
		}
		i, _ := strconv.Atoi(m[1])
		round := -1
		if r := roundRE.FindStringSubmatch(n.BoundaryName); r != nil {
			round, _ = strconv.Atoi(r[1])
		}
		out[i] = dbNode{index: i, round: round, phase: n.Phase, started: n.Started, finshed: n.Finished}
	}
	return out
}

// wantNoPods: no pod of these templates ran.
func wantNoPods(t *testing.T, wf *wfv1.Workflow, templates ...string) {
	t.Helper()
	for _, tmpl := range templates {
		if n := countPods(wf, tmpl); n > 0 {
			t.Errorf("%d pods of %s ran", n, tmpl)
		}
	}
}

// countPods counts the pods of the run whose template is one of templates.
func countPods(wf *wfv1.Workflow, templates ...string) int {
	n := 0
	for _, nd := range engines.ArgoNodes(wf) {
		if nd.Type == wfv1.NodeTypePod && (len(templates) == 0 || slices.Contains(templates, nd.Template)) {
			n++
		}
	}
	return n
}

// policyRun is the run every policy scenario makes: three databases, a with
// nothing pending, b pending (the shop set), and a failing one; the failing
// one is the canary when failFirst (entries a, c, b), else it comes last
// (a, b, c: b is migrated first).
func (s *argoSuite) policyRun(t *testing.T, name, policy string, failFirst bool, failSet string, note func(*wfv1.Workflow)) (*argoCase, []dbFixture, *wfv1.Workflow) {
	c := s.newCase(t, name)
	dbs := c.newDatabases(t, "b", "c")
	if err := dbs[0].db.MigrateTo(t.Context(), shopSet, 3); err != nil {
		t.Fatal(err)
	}
	if err := dbs[2].db.MigrateTo(t.Context(), argoSets[failSet], 1); err != nil {
		t.Fatal(err)
	}
	dirs := []string{"", "", SetsRoot + "/" + failSet}
	if failFirst {
		dbs[1], dbs[2] = dbs[2], dbs[1]
		dirs[1], dirs[2] = dirs[2], dirs[1]
	}
	wf := c.dbWait(t, c.submit(t, "", map[string]string{"databases": dbList(dbs, dirs...), "on-migrate-failure": policy}), note)
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"check-databases": wfv1.NodeSucceeded, "rounds": wfv1.NodeSucceeded, "scale-down": wfv1.NodeSucceeded, "decide": wfv1.NodeSucceeded})
	// the single-database path never ran
	wantNoPods(t, wf, "wait-for-db-pod", "plan-pod", "migrate-pod", "recheck-pod", "rollback-pod")
	if n := countPods(wf, "scale-down-pod"); n != 1 {
		t.Errorf("%d scale-down pods, want 1", n)
	}
	t.Logf("%s: %d pods in all", name, countPods(wf))
	return c, dbs, wf
}

// testDatabasesKeepDown: b migrated (canary), c fails after applying its 2:
// keep-down keeps the application down, held by the run for all three
// databases; nothing is rolled back or restored.
func (s *argoSuite) testDatabasesKeepDown(t *testing.T) {
	c, dbs, wf := s.policyRun(t, "dbkeep", "keep-down", false, "fails-second", nil)
	notRun(t, wf, "scale-restore", "restore", "rollback", "restore-after-rollback")
	wantDBVersions(t, dbs, []int64{1, 2, 3}, []int64{1, 2, 3}, []int64{1, 2})
	c.wantStopped(t)
	if held := c.appState(t).Annotations["deployment/chartreuse.io/held-by"]; held != holderFor(wf, holderOf(dbs)) {
		t.Errorf("held by %q, want %q", held, string(wf.UID)+":"+holderOf(dbs))
	}
	migrates := perDatabaseNodes(wf, "migrate-db-pod")
	if len(migrates) != 2 || migrates[1].round != 0 || migrates[2].round != 1 || migrates[1].phase != wfv1.NodeSucceeded || migrates[2].phase != wfv1.NodeFailed {
		t.Errorf("migrates %+v: want b in round 0 (succeeded), c in round 1 (failed)", migrates)
	}
	wantSummary(t, summaryOf(t, wf), dbs, []rowWant{
		{outcome: "nothing-pending", planned: "3", target: "3", current: "3"},
		{outcome: "migrated", planned: "0", target: "3", current: "3", applied: []int64{1, 2, 3}},
		{outcome: "failed", planned: "1", target: "3", current: "2", applied: []int64{2}, errorHas: "no_such_column"},
	})

	// The same list again, c no further than 2: nothing pending anywhere. The run
	// lets go of the keep-down above (rounds' superseded-holds) and brings the
	// application back; before, it Succeeded with the application at 0.
	list, _ := json.Marshal([]map[string]string{{"secret": dbs[0].secret}, {"secret": dbs[1].secret}, {"secret": dbs[2].secret, "dir": SetsRoot + "/fails-second", "to": "2"}})
	next := c.dbWait(t, c.submit(t, "", map[string]string{"databases": string(list)}), nil)
	wantPhase(t, next, wfv1.WorkflowSucceeded)
	wantDBVersions(t, dbs, []int64{1, 2, 3}, []int64{1, 2, 3}, []int64{1, 2})
	wantHoldReleased(t, s.kube, c.app, next.Name)
}

// testDatabasesRestore: the canary c fails inside its transaction, so no later
// round starts (b is not reached) and every database is still at its planned
// version: restore brings the application back.
func (s *argoSuite) testDatabasesRestore(t *testing.T) {
	c, dbs, wf := s.policyRun(t, "dbrestore", "restore", true, "fails-first", nil)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"restore": wfv1.NodeSucceeded})
	notRun(t, wf, "scale-restore", "rollback", "restore-after-rollback")
	migrates := perDatabaseNodes(wf, "migrate-db-pod")
	if len(migrates) != 1 || migrates[1].phase != wfv1.NodeFailed {
		t.Errorf("migrates %+v: want only the canary c, failed", migrates)
	}
	wantDBVersions(t, dbs, []int64{1, 2, 3}, []int64{1}, nil)
	c.wantRestored(t)
	wantSummary(t, summaryOf(t, wf), dbs, []rowWant{
		{outcome: "nothing-pending", planned: "3", target: "3", current: "3"},
		{outcome: "failed", planned: "1", target: "2", current: "1", errorHas: "no_such_column"},
		{outcome: "not-reached", planned: "0", target: "3", current: "0"},
	})
}

// testDatabasesRollback: b migrated, c failed after its 2: both moved, both are
// rolled back to their planned versions (each holding its database's mutex
// again), then the application is restored.
func (s *argoSuite) testDatabasesRollback(t *testing.T) {
	// While a rollback runs, the run still holds the database mutexes that
	// hold-databases took (Argo releases them when the workflow ends).
	var mu sync.Mutex
	heldWhileRollingBack := map[string]bool{}
	note := func(w *wfv1.Workflow) {
		rolling := false
		for _, n := range engines.ArgoNodes(w) {
			rolling = rolling || n.Template == "rollback-db-pod" && n.Type == wfv1.NodeTypePod && n.Phase == wfv1.NodeRunning
		}
		if sy := w.Status.Synchronization; rolling && sy != nil && sy.Mutex != nil {
			mu.Lock()
			for _, h := range sy.Mutex.Holding {
				heldWhileRollingBack[h.Mutex[strings.LastIndex(h.Mutex, "/")+1:]] = true
			}
			mu.Unlock()
		}
	}
	c, dbs, wf := s.policyRun(t, "dbrollback", "rollback", false, "fails-second", note)
	mu.Lock()
	for _, d := range dbs {
		if !heldWhileRollingBack["chartreuse-"+d.secret] {
			t.Errorf("mutex chartreuse-%s not seen held while rolling back (held: %v)", d.secret, heldWhileRollingBack)
		}
	}
	mu.Unlock()
	wantNodes(t, wf, map[string]wfv1.NodePhase{"restore-after-rollback": wfv1.NodeSucceeded})
	notRun(t, wf, "scale-restore", "restore")
	rollbacks := perDatabaseNodes(wf, "rollback-db-pod")
	if len(rollbacks) != 2 || rollbacks[1].phase != wfv1.NodeSucceeded || rollbacks[2].phase != wfv1.NodeSucceeded {
		t.Errorf("rollbacks %+v: want b and c, succeeded", rollbacks)
	}
	wantDBVersions(t, dbs, []int64{1, 2, 3}, nil, []int64{1})
	for _, table := range []string{"customers", "orders", "invoices"} {
		if ok, _ := dbs[1].db.TableExists(t.Context(), table); ok {
			t.Errorf("%s: table %s survived the rollback", dbs[1].secret, table)
		}
	}
	c.wantRestored(t)
	wantSummary(t, summaryOf(t, wf), dbs, []rowWant{
		{outcome: "nothing-pending", planned: "3", target: "3", current: "3"},
		{outcome: "rolled-back", planned: "0", target: "3", current: "0", applied: []int64{1, 2, 3}},
		{outcome: "rolled-back", planned: "1", target: "3", current: "1", applied: []int64{2}, errorHas: "no_such_column"},
	})
}

// testDatabasesHappy: four databases, one with nothing pending; parallelism 2
// with the canary: b alone, then c and d in one round; stopped once, restored
// once, superseding the list.
func (s *argoSuite) testDatabasesHappy(t *testing.T) {
	c := s.newCase(t, "dbhappy")
	dbs := c.newDatabases(t, "b", "c", "d")
	if err := dbs[0].db.MigrateTo(t.Context(), shopSet, 3); err != nil {
		t.Fatal(err)
	}
	wf := c.dbWait(t, c.submit(t, "", map[string]string{"databases": dbList(dbs), "parallelism": "2"}), nil)
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"rounds": wfv1.NodeSucceeded, "scale-down": wfv1.NodeSucceeded, "scale-restore": wfv1.NodeSucceeded, "summary": wfv1.NodeSucceeded})
	notRun(t, wf, "recheck", "decide", "restore", "rollback", "restore-after-rollback")
	wantNoPods(t, wf, "wait-for-db-pod", "plan-pod", "migrate-pod", "recheck-pod", "recheck-db-pod", "rollback-pod", "rollback-db-pod")
	if down, up := countPods(wf, "scale-down-pod"), countPods(wf, "scale-restore-pod"); down != 1 || up != 1 {
		t.Errorf("%d scale-down and %d scale-restore pods, want one each", down, up)
	}
	migrates := perDatabaseNodes(wf, "migrate-db-pod")
	if len(migrates) != 3 || migrates[1].round != 0 || migrates[2].round != 1 || migrates[3].round != 1 {
		t.Errorf("migrates %+v: want b in round 0, c and d in round 1", migrates)
	}
	// the second round started once the canary had finished
	for _, i := range []int{2, 3} {
		if migrates[i].started.Before(migrates[1].finshed) {
			t.Errorf("entry %d started %s, before the canary finished %s", i, migrates[i].started, migrates[1].finshed)
		}
	}
	wantOutputs(t, wf, "scale-restore", map[string]string{"restored": "2"})
	wantDBVersions(t, dbs, []int64{1, 2, 3}, []int64{1, 2, 3}, []int64{1, 2, 3}, []int64{1, 2, 3})
	c.wantRestored(t)
	rows := summaryOf(t, wf)
	wantSummary(t, rows, dbs, []rowWant{
		{outcome: "nothing-pending", planned: "3", target: "3", current: "3"},
		{outcome: "migrated", planned: "0", target: "3", current: "3", applied: []int64{1, 2, 3}},
		{outcome: "migrated", planned: "0", target: "3", current: "3", applied: []int64{1, 2, 3}},
		{outcome: "migrated", planned: "0", target: "3", current: "3", applied: []int64{1, 2, 3}},
	})
	t.Logf("dbhappy: %d pods in all, summary %+v", countPods(wf), rows)
}

// testDatabasesShareWorkloads: two runs of two databases each, for one
// application: they share the workload namespace's mutex, so the second
// starts only once the first has ended, exit handler included; both migrate
// their databases and the application runs at the end.
func (s *argoSuite) testDatabasesShareWorkloads(t *testing.T) {
	c := s.newCase(t, "dbshare")
	dbs := c.newDatabases(t, "b", "c", "d")
	var mu sync.Mutex
	waited := map[string]string{}
	note := func(w *wfv1.Workflow) {
		if sy := w.Status.Synchronization; sy != nil && sy.Mutex != nil {
			for _, h := range sy.Mutex.Waiting {
				mu.Lock()
				waited[w.Name] = h.Mutex
				mu.Unlock()
			}
		}
	}
	x := c.submit(t, "", map[string]string{"databases": dbList(dbs[:2])})
	y := c.submit(t, "", map[string]string{"databases": dbList(dbs[2:])})
	var wg sync.WaitGroup
	var wx, wy *wfv1.Workflow
	wg.Go(func() { wx = c.dbWait(t, x, note) })
	wg.Go(func() { wy = c.dbWait(t, y, note) })
	wg.Wait()
	if wx == nil || wy == nil {
		return
	}
	wantPhase(t, wx, wfv1.WorkflowSucceeded)
	wantPhase(t, wy, wfv1.WorkflowSucceeded)
	first, second := wx, wy
	if firstStart(wy).Before(firstStart(wx)) {
		first, second = wy, wx
	}
	// Argo's timestamps have a resolution of one second
	if firstStart(second).Before(first.Status.FinishedAt.Time) {
		t.Errorf("%s started %s, before %s ended %s (exit handler included): the runs overlapped",
			second.Name, firstStart(second).Format(time.RFC3339), first.Name, first.Status.FinishedAt.Format(time.RFC3339))
	}
	mu.Lock()
	if w := waited[second.Name]; !strings.HasSuffix(w, "/Mutex/chartreuse.workloads."+s.argo.Namespace) {
		t.Errorf("%s was never seen waiting for chartreuse.workloads.%s (waited on %q)", second.Name, s.argo.Namespace, w)
	}
	mu.Unlock()
	wantDBVersions(t, dbs, []int64{1, 2, 3}, []int64{1, 2, 3}, []int64{1, 2, 3}, []int64{1, 2, 3})
	c.wantRestored(t)
	t.Logf("dbshare: %s then %s; %d and %d pods", first.Name, second.Name, countPods(first), countPods(second))
}

// firstStart is when the run's first node started (after its workflow-level mutex).
func firstStart(wf *wfv1.Workflow) time.Time {
	var t0 time.Time
	for _, n := range engines.ArgoNodes(wf) {
		if !n.Started.IsZero() && (t0.IsZero() || n.Started.Before(t0)) {
			t0 = n.Started
		}
	}
	return t0
}
