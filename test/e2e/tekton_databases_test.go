package e2e

import (
	"encoding/json"
	"slices"
	"testing"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	pr, trs := c.run(t, c.databasesRun(t, []string{tektonSecret, "orders-db", "users-db"}, nil))
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
	c := s.newCase(t, nil)
	c.migrateTo(t, 3)
	broken, later := NewDatabase(t, s.pg, "tekton"), NewDatabase(t, s.pg, "tekton")
	if err := later.MigrateTo(t.Context(), tektonShop, 1); err != nil {
		t.Fatal(err)
	}
	for secret, db := range map[string]Database{"broken-db": broken, "later-db": later} {
		if err := CreateSecret(t.Context(), s.kube, c.ns, secret, db.URL()); err != nil {
			t.Fatal(err)
		}
	}
	list := `[{"secret": "` + tektonSecret + `"}, {"secret": "broken-db", "dir": "` + SetsRoot + `/broken"}, {"secret": "later-db"}]`
	pr := c.databasesRun(t, nil, map[string]string{"databases": list})
	done, _ := c.run(t, pr)
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
}
