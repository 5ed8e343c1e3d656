package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/apis"

	"github.com/chartreuse-go/chartreuse/test/engines"
)

// The migration parameters (issue 12, item 10) on both engines: the same runs,
// each on a database and application of its own, against the image's default
// migrations (1, 2, 3).
type paramRun struct {
	name string
	// from: versions of the default set applied before the run (goose, in-process).
	from []int64
	// params: the run's parameters, given the application.
	params func(app *App) map[string]string
	ok     bool
	// table holding the versions (empty: goose_db_version); want: the versions
	// applied, in the order applied.
	table string
	want  []int64
	// stopped: the run stopped and restored the application (else untouched).
	stopped bool
	// jsonLogs: the steps whose log must be JSON lines.
	jsonLogs []string
}

// customTable is the version table of the "table" run; schema-qualified, as
// --table allows.
const customTable = "public.shop_versions"

var paramRuns = []paramRun{
	// --table, --to, --workload without a selector, --log-format json, together:
	// only 1 and 2 are applied, into the custom table; the two listed workloads
	// are stopped and brought back.
	{name: "table-to-workload-json", ok: true, table: customTable, want: []int64{1, 2}, stopped: true,
		jsonLogs: []string{"plan", "scale-down", "migrate", "scale-restore"},
		params: func(app *App) map[string]string {
			return map[string]string{"table": customTable, "to": "2", "workload-selector": "",
				"workload": "deployment/" + app.Name + ",cj/" + app.Name + "-report", "log-format": "json"}
		}},
	// 1 and 3 applied, 2 pending below the current version: refused by default...
	{name: "out-of-order-refused", from: []int64{1, 3}, ok: false, want: []int64{1, 3},
		params: func(*App) map[string]string { return nil }},
	// ...applied with allow-out-of-order.
	{name: "out-of-order-allowed", from: []int64{1, 3}, ok: true, want: []int64{1, 3, 2}, stopped: true,
		params: func(*App) map[string]string { return map[string]string{"allow-out-of-order": "true"} }},
	// An empty database with allow-empty-database=false: refused before anything stops.
	{name: "empty-database-refused", ok: false,
		params: func(*App) map[string]string { return map[string]string{"allow-empty-database": "false"} }},
}

// prepare applies r.from of set to db.
func (r paramRun) prepare(t *testing.T, db Database, set MigrationSet) {
	t.Helper()
	if len(r.from) == 0 {
		return
	}
	sub := MigrationSet{}
	for f, body := range set {
		v, _, _ := strings.Cut(f, "_")
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("migration file %s: %v", f, err)
		}
		if slices.Contains(r.from, n) {
			sub[f] = body
		}
	}
	if err := db.MigrateTo(t.Context(), sub, slices.Max(r.from)); err != nil {
		t.Fatal(err)
	}
}

// check asserts the database and the application after the run; before is the
// application's state before it.
func (r paramRun) check(t *testing.T, kube kubernetes.Interface, db Database, app *App, before AppState) {
	t.Helper()
	var got []int64
	var err error
	if r.table == "" {
		got, err = db.AppliedVersions(t.Context())
	} else {
		got, err = db.versionsIn(t.Context(), r.table)
		if ok, _ := db.TableExists(t.Context(), "goose_db_version"); ok {
			t.Errorf("goose_db_version exists: a step used the default table instead of %s", r.table)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, r.want) {
		t.Errorf("applied versions (%s) %v, want %v", cmpOr(r.table, "goose_db_version"), got, r.want)
	}
	log, err := db.MigrationLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ran := slices.Sorted(maps.Keys(log)); len(ran) != len(r.want) {
		t.Errorf("migrations that ran: %v, want %v", ran, r.want)
	}
	if r.stopped {
		wantAppRestored(t, kube, app)
		return
	}
	after := appState(t, kube, app)
	if after.Generation != before.Generation || len(after.Annotations) != 0 || after.CronSuspended {
		t.Errorf("application touched: before %+v after %+v", before, after)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// versionsIn lists the applied versions recorded in a goose version table
// other than goose_db_version, in the order applied (no rollbacks here).
func (d Database) versionsIn(ctx context.Context, table string) ([]int64, error) {
	db, err := d.open()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT version_id FROM `+table+` WHERE is_applied AND version_id > 0 ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// wantJSONLog: every line the step printed is a JSON object (--log-format json).
// Argo's emissary adds a line of its own to the main container's log (text,
// with argo=true); it is not the step's.
func wantJSONLog(t *testing.T, kube kubernetes.Interface, ns, pod, container string) {
	t.Helper()
	raw, err := kube.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(t.Context())
	if err != nil {
		t.Errorf("log of %s/%s: %v", pod, container, err)
		return
	}
	lines := 0
	for l := range strings.Lines(string(raw)) {
		if strings.TrimSpace(l) == "" || strings.Contains(l, " argo=true") {
			continue
		}
		lines++
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("%s/%s: a log line is not JSON (%v): %q", pod, container, err, l)
			return
		}
	}
	if lines == 0 {
		t.Errorf("%s/%s: no log line", pod, container)
	}
}

// testParameters runs paramRuns on Argo, side by side.
func (s *argoSuite) testParameters(t *testing.T) {
	var wg sync.WaitGroup
	for i, r := range paramRuns {
		wg.Go(func() {
			t.Run(r.name, func(t *testing.T) {
				c := s.newCase(t, fmt.Sprintf("param%d", i))
				r.prepare(t, c.db, shopSet)
				before := c.appState(t)
				wf := c.run(t, "", r.params(c.app))
				if r.ok {
					wantPhase(t, wf, wfv1.WorkflowSucceeded)
				} else {
					wantPhase(t, wf, wfv1.WorkflowFailed)
					wantNodes(t, wf, map[string]wfv1.NodePhase{"plan": wfv1.NodeFailed})
					notRun(t, wf, "scale-down", "migrate", "scale-restore", "restore")
				}
				if r.name == "table-to-workload-json" {
					wantOutputs(t, wf, "plan", map[string]string{"pending": "true", "current-version": "0", "target-version": "2"})
					wantOutputs(t, wf, "scale-down", map[string]string{"scaled": "2"})
					wantOutputs(t, wf, "migrate", map[string]string{"applied": "2", "current-version": "2"})
				}
				for _, step := range r.jsonLogs {
					pods, err := s.argo.NodePods(t.Context(), wf.Name, step)
					if err != nil || len(pods) == 0 {
						t.Errorf("pods of %s: %v %v", step, pods, err)
						continue
					}
					wantJSONLog(t, s.kube, s.argo.Namespace, pods[len(pods)-1].Name, "main")
				}
				r.check(t, s.kube, c.db, c.app, before)
			})
		})
	}
	wg.Wait()
}

// testParameters runs paramRuns on Tekton, side by side.
func (s *tektonSuite) testParameters(t *testing.T) {
	var wg sync.WaitGroup
	for _, r := range paramRuns {
		wg.Go(func() {
			t.Run(r.name, func(t *testing.T) {
				c := s.newCase(t, nil)
				r.prepare(t, c.db, tektonShop)
				before := appState(t, s.kube, c.app)
				pr, trs := c.run(t, c.pipelineRun(t, "", r.params(c.app)))
				wantSucceeded(t, pr, r.ok)
				if !r.ok {
					if tr := trs["plan"]; tr == nil || engines.Succeeded(tr.Status.GetCondition(apis.ConditionSucceeded)) {
						t.Errorf("plan did not fail (ran: %v)", ran(trs))
					}
					for _, n := range append([]string{"scale-down", "migrate", "scale-restore"}, allFinally...) {
						if trs[n] != nil {
							t.Errorf("%s ran", n)
						}
					}
				}
				if r.name == "table-to-workload-json" {
					wantResults(t, trs, "plan", map[string]string{"pending": "true", "current-version": "0", "target-version": "2"})
					wantResults(t, trs, "scale-down", map[string]string{"scaled": "2"})
					wantResults(t, trs, "migrate", map[string]string{"applied": "2", "current-version": "2"})
				}
				for _, step := range r.jsonLogs {
					if tr := trs[step]; tr == nil || tr.Status.PodName == "" {
						t.Errorf("no pod for %s", step)
					} else {
						wantJSONLog(t, s.kube, c.ns, tr.Status.PodName, "step-"+step)
					}
				}
				r.check(t, s.kube, c.db, c.app, before)
			})
		})
	}
	wg.Wait()
}
