package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chartreuse-go/chartreuse/pkg/databases"
	"github.com/chartreuse-go/chartreuse/test/engines"
)

// Several databases in one run (issue 15), first slice: the plan-databases
// entrypoint checks the databases list, takes the mutex of every Secret it names
// (the same mutexes single-database runs take) and plans each database.

// dbPlan is what plan reported for the entry at index of a databases list.
type dbPlan struct {
	index   int
	outputs map[string]string
	phase   wfv1.NodePhase
	started time.Time
}

var planItemRE = regexp.MustCompile(`^plan\((\d+):`)

// databasePlans returns the plan of each entry, by index: the retry parents of
// plan-db-pod, named plan(<index>:<entry>) by withParam.
func databasePlans(wf *wfv1.Workflow) map[int]dbPlan {
	out := map[int]dbPlan{}
	for _, n := range engines.ArgoNodes(wf) {
		if n.Template != "plan-db-pod" || n.Type != wfv1.NodeTypeRetry {
			continue
		}
		m := planItemRE.FindStringSubmatch(n.Name)
		if m == nil {
			continue
		}
		var i int
		fmt.Sscan(m[1], &i)
		out[i] = dbPlan{index: i, outputs: n.Outputs, phase: n.Phase, started: n.Started}
	}
	return out
}

// testDatabasesPlan: three databases behind two Secrets (one with a key per tenant),
// planned in one run, which first waits for a single-database run that holds the
// first database's mutex.
func (s *argoSuite) testDatabasesPlan(t *testing.T) {
	c := s.newCase(t, "dbs")
	ctx := t.Context()
	tenantB := NewDatabase(t, s.pg, "dbsb")
	tenantC := NewDatabase(t, s.pg, "dbsc")
	tenants := c.name + "-tenants"
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: tenants}, StringData: map[string]string{"b": tenantB.URL(), "c": tenantC.URL()}}
	if _, err := s.kube.CoreV1().Secrets(s.argo.Namespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// A single-database migrate of the first database, held at its advisory lock:
	// it holds the mutex chartreuse-<secret> (workflow level) meanwhile.
	release, err := c.db.HoldLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	single := c.submit(t, "migrate", nil)
	pollCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := Poll(pollCtx, time.Second, func() (bool, error) {
		w, err := s.argo.Get(ctx, single.Name)
		if err != nil {
			return false, err
		}
		n, ok := engines.ArgoNodeByName(w, "migrate")
		return ok && n.Phase == wfv1.NodeRunning, nil
	}); err != nil {
		t.Fatalf("the single-database migrate never ran: %v", err)
	}

	databases := fmt.Sprintf(`[{}, {"secret": %q, "key": "b"}, {"secret": %q, "key": "c", "table": "tenant_c_versions"}]`, tenants, tenants)
	multi := c.submit(t, "plan-databases", map[string]string{"databases": databases})

	// The run checks its list, then waits for the first database's mutex: no plan
	// starts while the single-database run holds it. (It may first wait for the
	// workload namespace's mutex, which the other scenarios' runs with databases
	// take too.)
	holdCtx, cancelHold := context.WithTimeout(ctx, 20*time.Minute)
	defer cancelHold()
	waitMsg := ""
	if err := Poll(holdCtx, time.Second, func() (bool, error) {
		w, err := s.argo.Get(ctx, multi.Name)
		if err != nil {
			return false, err
		}
		if len(databasePlans(w)) > 0 {
			return false, fmt.Errorf("a plan started while the single-database run held the mutex:\n%s", engines.ArgoDescribe(w))
		}
		for _, n := range engines.ArgoNodes(w) {
			if n.Template == "hold-databases" && n.Phase == wfv1.NodePending && strings.Contains(n.Message, "chartreuse-"+c.secret) {
				waitMsg = n.Message
				return true, nil
			}
		}
		return w.Status.Phase.Completed(), nil
	}); err != nil {
		t.Fatal(err)
	}
	if waitMsg == "" {
		t.Fatal("the run was never seen waiting for the first database's mutex")
	}
	t.Logf("plan-databases waits: %s", waitMsg)
	release()

	var mu sync.Mutex
	held := map[string]bool{}
	note := func(w *wfv1.Workflow) {
		if sy := w.Status.Synchronization; sy != nil && sy.Mutex != nil {
			mu.Lock()
			for _, h := range sy.Mutex.Holding {
				held[h.Mutex] = true
			}
			mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	var ws, wm *wfv1.Workflow
	wg.Go(func() { ws = c.wait(t, single, nil) })
	wg.Go(func() { wm = c.dbWait(t, multi, note) })
	wg.Wait()
	if ws == nil || wm == nil {
		return
	}
	wantPhase(t, ws, wfv1.WorkflowSucceeded)
	wantPhase(t, wm, wfv1.WorkflowSucceeded)
	wantOutputs(t, wm, "check-databases", map[string]string{"count": "3", "secrets": fmt.Sprintf(`[%q,%q]`, c.secret, tenants)})

	plans := databasePlans(wm)
	if len(plans) != 3 {
		t.Fatalf("%d plans, want 3:\n%s", len(plans), engines.ArgoDescribe(wm))
	}
	for i, want := range []map[string]string{
		// migrated to 3 by the single-database run before this run could plan it
		{"pending": "false", "current-version": "3", "target-version": "3"},
		{"pending": "true", "current-version": "0", "target-version": "3"},
		{"pending": "true", "current-version": "0", "target-version": "3"},
	} {
		p := plans[i]
		for k, v := range want {
			if p.outputs[k] != v {
				t.Errorf("plan of entry %d: %s = %q, want %q (outputs %v)", i, k, p.outputs[k], v, p.outputs)
			}
		}
		// the mutex was handed over when the single-database run completed
		// (Argo's timestamps have a resolution of one second)
		if p.started.Before(ws.Status.FinishedAt.Time) {
			t.Errorf("plan of entry %d started %s, before the single-database run finished %s", i, p.started.Format(time.RFC3339), ws.Status.FinishedAt.Format(time.RFC3339))
		}
	}
	// plan changed nothing: no version table in the tenants' databases
	for _, d := range []Database{tenantB, tenantC} {
		for _, table := range []string{"goose_db_version", "tenant_c_versions"} {
			if ok, err := d.TableExists(ctx, table); err != nil || ok {
				t.Errorf("%s: table %s exists after a plan (%v)", d.Name, table, err)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, name := range []string{"chartreuse-" + c.secret, "chartreuse-" + tenants, "chartreuse.workloads." + s.argo.Namespace} {
		found := false
		for h := range held {
			found = found || strings.HasSuffix(h, "/"+name)
		}
		if !found {
			t.Errorf("mutex %s was never seen held (held: %v)", name, held)
		}
	}
}

// testDatabasesBadInput: a bad list fails the run in check-databases, before any
// mutex of a database is taken or any database is read; a missing key too.
func (s *argoSuite) testDatabasesBadInput(t *testing.T) {
	c := s.newCase(t, "dbsbad")
	for _, tc := range []struct {
		name, databases, exit string
		want                  []string
	}{
		{"same database twice", `[{}, {"secret": "` + c.secret + `", "name": "again"}]`, "2",
			[]string{"entry 1 (" + c.secret + "/url) and entry 2 (again) are the same database"}},
		{"missing key", `[{}, {"secret": "` + c.secret + `", "key": "nope"}]`, "1",
			// the log quotes the message (slog, JSON): "nope" comes escaped
			[]string{`entry 2 (` + c.secret + `/nope): Secret ` + c.secret + ` has no key`, `(its keys: url); correct`}},
		{"empty list", `[]`, "2", []string{"the list is empty"}},
		// Past --max-bytes (29440): before it, a list of long values ran, and the
		// exit handler's decide and summary got it in one argument over Linux's
		// 128 KiB, which no program can be started with.
		{"values too long", `[{"name": "short"}, {"secret": "` + c.secret + `", "key": "other", "dir": "/migrations` + strings.Repeat("/.", 17000) + `"}]`, "2",
			[]string{"more than the 29440 one run takes", "its longest entry is entry 2 (" + c.secret + "/other)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wf := c.dbWait(t, c.submit(t, "plan-databases", map[string]string{"databases": tc.databases}), nil)
			wantPhase(t, wf, wfv1.WorkflowFailed)
			n, ok := engines.ArgoNodeByName(wf, "check-databases")
			if !ok || n.ExitCode != tc.exit {
				t.Errorf("check-databases: exit %q, want %s", n.ExitCode, tc.exit)
			}
			if len(engines.ArgoAttempts(wf, "check-databases")) > 1 {
				t.Errorf("check-databases was retried after exit %s", n.ExitCode)
			}
			notRun(t, wf, "hold")
			if len(databasePlans(wf)) > 0 {
				t.Errorf("a plan ran after a refused list")
			}
			logs := s.argo.StepLogs(context.Background(), wf, 50)
			for _, w := range tc.want {
				if !strings.Contains(logs, w) {
					t.Errorf("the step log does not say %q:\n%s", w, logs)
				}
			}
			if strings.Contains(logs, c.db.URL()) {
				t.Errorf("the step log holds the database URL")
			}
		})
	}
}

// testDatabasesNestingLimit: a list of 95 Secrets, each level of hold-databases
// kept a node per entry: after plan and scale-down the workflow was too large for
// Argo to save (it could not even record the error), so it stayed Running with
// the application stopped and every mutex held; and migrate-db-pod would have
// been nested 100 deep, which Argo refuses (at most 94 Secrets: the entrypoint
// is depth 1, hold-databases adds one level per Secret, and migrate-db-pod is 4
// further; test/manifests checks that arithmetic against --max-secrets).
// check-databases now refuses a list past --max-secrets or --max-entries,
// whichever is lower, before anything changes; a list at the limit migrates,
// and the run's nodes grow with the list.
func (s *argoSuite) testDatabasesNestingLimit(t *testing.T) {
	limit := min(s.checkDatabasesFlag(t, "max-secrets"), s.checkDatabasesFlag(t, "max-entries"))
	c := s.newCase(t, "dbsdeep")
	names := make([]string, limit)
	for i := range names {
		names[i] = fmt.Sprintf("n%02d", i+1)
	}
	dbs := c.newDatabases(t, names...)
	// Only the case's own database has something pending: one migrate pod.
	var wg sync.WaitGroup
	errs := make([]error, len(dbs))
	for i := 1; i < len(dbs); i++ {
		wg.Go(func() { errs[i] = dbs[i].db.MigrateTo(t.Context(), shopSet, 3) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	// One Secret too many: refused by check-databases, nothing held, planned or stopped.
	wf := c.dbWait(t, c.submit(t, "", map[string]string{"databases": dbList(dbs)}), nil)
	wantPhase(t, wf, wfv1.WorkflowFailed)
	if n, ok := engines.ArgoNodeByName(wf, "check-databases"); !ok || n.ExitCode != "2" {
		t.Errorf("check-databases: exit %q, want 2 for %d Secrets", n.ExitCode, len(dbs))
	}
	notRun(t, wf, "hold", "scale-down")
	if len(databasePlans(wf)) > 0 {
		t.Errorf("a plan ran after a list with too many Secrets")
	}
	logs := s.argo.StepLogs(context.Background(), wf, 50)
	if want := fmt.Sprintf("more than the %d one run takes", limit); !strings.Contains(logs, want) {
		t.Errorf("the step log does not say %q:\n%s", want, logs)
	}
	c.wantRestored(t)
	wantVersions(t, c.versions(t))

	// At the limit: the deepest template runs, the run migrates and restores.
	dbs = dbs[:limit]
	wf = c.dbWait(t, c.submit(t, "", map[string]string{"databases": dbList(dbs)}), nil)
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	if n := countPods(wf, "migrate-db-pod"); n != 1 {
		t.Errorf("%d migrate-db-pod pods, want 1", n)
	}
	wantVersions(t, c.versions(t), 1, 2, 3)
	c.wantRestored(t)
	// The run's nodes grow with the list, not with its square: before, every
	// hold-databases level kept a skipped node per entry (9025 of them) and a
	// copy of the list, and Argo could not save the workflow (4.9 MB compressed,
	// its limit 1 MiB) once the workloads were stopped.
	nodes := len(engines.ArgoNodes(wf))
	size, err := s.argo.StoredSize(t.Context(), wf.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d databases, %d Secrets: %d nodes; the workflow object is %d bytes, %d of them the templates (nodes compressed: %v)", len(dbs), len(dbs), nodes, size.Total, size.Templates, size.Compressed)
	if most := 6*len(dbs) + 100; nodes > most {
		t.Errorf("%d nodes for %d databases, more than %d", nodes, len(dbs), most)
	}
}

// testDatabasesSizeWorstCase: the largest workflow a list makes, every database
// migrated and the last one failing with the rollback policy (each database then
// has a plan, a migrate, a recheck and a rollback, and their global outputs), at
// 30 databases whose entries each take the average the WorkflowTemplate's
// --max-bytes allows at --max-entries (their dir padded with "/."). Past the
// templates, what the list makes grows about linearly with it, so each is
// projected to --max-entries and must stay well under its limit:
//   - the workflow object: Argo fails one that stays over 1 MiB with its nodes
//     compressed, and may then fail to save even that (the run stays Running);
//   - what the rounds, decide and summary pods are handed (their template and
//     arguments, which hold the list, the plans and the per-database outputs):
//     past 128 KiB Argo needs a ConfigMap its Role may not create.
func (s *argoSuite) testDatabasesSizeWorstCase(t *testing.T) {
	const n = 30
	maxEntries, maxBytes := s.checkDatabasesFlag(t, "max-entries"), s.checkDatabasesFlag(t, "max-bytes")
	c := s.newCase(t, "dbsbig")
	names := make([]string, n-1)
	for i := range names {
		names[i] = fmt.Sprintf("m%02d", i+1)
	}
	dbs := c.newDatabases(t, names...)
	last := dbs[n-1]
	if err := last.db.MigrateTo(t.Context(), argoSets["fails-second"], 1); err != nil {
		t.Fatal(err)
	}
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = "/migrations" // the image's, the run's default
	}
	dirs[n-1] = SetsRoot + "/fails-second"
	list := paddedList(t, dbs, dirs, maxBytes/maxEntries)
	wf := c.dbWait(t, c.submit(t, "", map[string]string{"databases": list, "on-migrate-failure": "rollback", "parallelism": "8"}), nil)
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"restore-after-rollback": wfv1.NodeSucceeded})
	if got := len(perDatabaseNodes(wf, "rollback-db-pod")); got != n {
		t.Errorf("%d databases rolled back, want %d", got, n)
	}
	c.wantRestored(t)
	entries := engines.ArgoOutputs(wf)["databases-entries"]
	// per bytes an entry, a comma between entries, the brackets
	if per := maxBytes / maxEntries; len(entries) < n*per*95/100 || len(entries) > n*(per+1)+1 {
		t.Errorf("the entries result takes %d bytes, want about %d: the padding missed its mark", len(entries), n*per)
	}
	nodes := len(engines.ArgoNodes(wf))
	size, err := s.argo.StoredSize(t.Context(), wf.Name)
	if err != nil {
		t.Fatal(err)
	}
	// The templates stay; the rest grows with the list.
	projected := size.Templates + (size.Total-size.Templates)*maxEntries/n
	t.Logf("%d databases (entries %d bytes), all migrated then rolled back: %d nodes, %d pods; the workflow object is %d bytes, %d of them the templates (nodes compressed: %v); %d at %d entries",
		n, len(entries), nodes, countPods(wf), size.Total, size.Templates, size.Compressed, projected, maxEntries)
	// A quarter of each limit kept free: retries add nodes, errors add text.
	if limit := 3 << 20 / 4; projected >= limit {
		t.Errorf("the object of %d databases (%d bytes) would be %d bytes at %d entries, over 3/4 of Argo's 1 MiB: lower --max-entries or --max-bytes", n, size.Total, projected, maxEntries)
	}
	// Argo hands a pod its template (ARGO_TEMPLATE, arguments included) and
	// its arguments; past 128 KiB it moves them to a ConfigMap, which its own
	// namespaced Role may not create (the pod then fails to start: the exit
	// handler's decide did so four times, before this bound, with 17 entries of
	// 4 KB each), and Linux refuses any one argument past 128 KiB.
	for _, display := range []string{"rounds", "decide", "summary"} {
		pods, err := s.argo.NodePods(t.Context(), wf.Name, display)
		if err != nil || len(pods) == 0 {
			t.Fatalf("the %s pod: %v (%d found)", display, err, len(pods))
		}
		p := s.podPayload(t, pods[len(pods)-1])
		projected := p * maxEntries / n
		t.Logf("%s: its template and arguments take %d bytes; %d at %d entries", display, p, projected, maxEntries)
		if limit := 3 * 131072 / 4; projected >= limit {
			t.Errorf("%s's template and arguments (%d bytes) would take %d bytes at %d entries, over 3/4 of Argo's and Linux's 128 KiB: lower --max-entries or --max-bytes", display, p, projected, maxEntries)
		}
	}
}

// paddedList renders a databases parameter of dbs (dir dirs[i]) whose every
// entry, once check-databases fills in the run's defaults (databases.Parse, with
// the WorkflowTemplate's defaults of the keys not given), takes about per
// bytes: the dir is lengthened with "/." (the same directory).
func paddedList(t *testing.T, dbs []dbFixture, dirs []string, per int) string {
	t.Helper()
	entries := make([]map[string]string, len(dbs))
	for i, d := range dbs {
		entries[i] = map[string]string{"secret": d.secret, "dir": dirs[i]}
	}
	raw, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	full, err := databases.Parse(string(raw), databases.Defaults{Key: "url", Dir: "/migrations", Table: "goose_db_version"})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range full {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if pad := per - len(b); pad > 1 {
			entries[i]["dir"] += strings.Repeat("/.", pad/2)
		}
	}
	if raw, err = json.Marshal(entries); err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// checkDatabasesFlag reads the value the WorkflowTemplate gives check-databases'
// integer flag --<name>.
func (s *argoSuite) checkDatabasesFlag(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.argo.RepoDir, "workflowtemplates", "workflowtemplate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*- --` + regexp.QuoteMeta(name) + `=(\d+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("the WorkflowTemplate gives check-databases no --%s", name)
	}
	v, err := strconv.Atoi(string(m[1]))
	if err != nil || v <= 0 {
		t.Fatalf("--%s=%s", name, m[1])
	}
	return v
}

// podPayload is the larger of what Argo gives pod in one piece: the template
// in the init container's ARGO_TEMPLATE, and the main container's arguments as
// JSON. Argo moves either past 128 KiB to a ConfigMap (the pod then has the
// volume argo-env-config); podPayload fails the test if it did.
func (s *argoSuite) podPayload(t *testing.T, pod corev1.Pod) int {
	t.Helper()
	for _, v := range pod.Spec.Volumes {
		if v.Name == "argo-env-config" {
			t.Fatalf("pod %s: Argo moved its template or arguments to a ConfigMap (over 128 KiB)", pod.Name)
		}
	}
	most := 0
	for _, ctr := range pod.Spec.InitContainers {
		for _, e := range ctr.Env {
			if e.Name == "ARGO_TEMPLATE" {
				most = max(most, len(e.Value))
			}
		}
	}
	for _, ctr := range pod.Spec.Containers {
		if ctr.Name != "main" {
			continue
		}
		b, err := json.Marshal(ctr.Args)
		if err != nil {
			t.Fatal(err)
		}
		most = max(most, len(b))
	}
	if most == 0 {
		t.Fatalf("pod %s: no ARGO_TEMPLATE and no arguments", pod.Name)
	}
	return most
}
