package e2e

import (
	"context"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// An applied migration edited afterwards stops the run at plan (exit 1) before
// anything is stopped; the same run with -p accept-changed=2 records the edit
// (migrate runs with nothing pending, nothing stopped) and the next run needs the
// parameter no more. Every checksum row names the run that wrote it.
func (s *argoSuite) testEditedMigration(t *testing.T) {
	c := s.newCase(t, "edited-migration")
	first := c.run(t, "", nil)
	wantPhase(t, first, wfv1.WorkflowSucceeded)
	wantVersions(t, c.versions(t), 1, 2, 3)

	edited := map[string]string{"migrations-dir": SetsRoot + "/edited-second"}
	wf := c.run(t, "", edited)
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"plan": wfv1.NodeFailed})
	notRun(t, wf, "scale-down", "migrate")
	c.wantRestored(t)
	pods, err := s.argo.NodePods(t.Context(), wf.Name, "plan")
	if err != nil || len(pods) != 1 {
		t.Fatalf("plan pods: %v (%d)", err, len(pods))
	}
	for _, want := range []string{"00002_orders.sql", "--accept-changed=2"} {
		if ok, err := logContains(t.Context(), s.kube, s.argo.Namespace, pods[0].Name, "main", want); err != nil || !ok {
			t.Errorf("plan's log does not say %q (%v)", want, err)
		}
	}

	accepting := map[string]string{"migrations-dir": SetsRoot + "/edited-second", "accept-changed": "2"}
	wf = c.run(t, "", accepting)
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantOutputs(t, wf, "plan", map[string]string{"pending": "false"})
	wantNodes(t, wf, map[string]wfv1.NodePhase{"migrate": wfv1.NodeSucceeded})
	notRun(t, wf, "scale-down")
	c.wantRestored(t)

	rows := c.checksums(t)
	for v, want := range map[int64][2]string{1: {"applied", first.Name}, 2: {"accepted", wf.Name}, 3: {"applied", first.Name}} {
		if rows[v] != want {
			t.Errorf("checksum row of %d: (recorded, run id) = %v, want %v", v, rows[v], want)
		}
	}
	wf = c.run(t, "", edited)
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	notRun(t, wf, "scale-down", "migrate")
}

// An applied migration edited afterwards fails the PipelineRun at plan before
// anything is stopped; with accept-changed=2 the task record-accepted records the
// edit (nothing pending, nothing stopped), and the next run needs nothing more.
func (s *tektonSuite) testEditedMigration(t *testing.T) {
	c := s.newCase(t, nil)
	first, _ := c.run(t, c.pipelineRun(t, "", nil))
	wantSucceeded(t, first, true)
	c.wantVersions(t, 1, 2, 3)

	pr, trs := c.run(t, c.pipelineRun(t, "edited-second", nil))
	wantSucceeded(t, pr, false)
	wantTasks(t, pr, trs, nil, []string{"plan"}, nil)
	c.wantRestored(t)

	pr, trs = c.run(t, c.pipelineRun(t, "edited-second", map[string]string{"accept-changed": "2"}))
	wantSucceeded(t, pr, true)
	wantTasks(t, pr, trs, []string{"plan", "record-accepted"}, nil,
		append([]string{"wait-for-db", "wait-patroni", "scale-down", "migrate", "scale-restore"}, allFinally...))
	c.wantRestored(t)
	rows := checksums(t, c.db)
	for v, want := range map[int64][2]string{1: {"applied", first.Name}, 2: {"accepted", pr.Name}, 3: {"applied", first.Name}} {
		if rows[v] != want {
			t.Errorf("checksum row of %d: (recorded, run id) = %v, want %v", v, rows[v], want)
		}
	}
	pr, _ = c.run(t, c.pipelineRun(t, "edited-second", nil))
	wantSucceeded(t, pr, true)
}

// checksums reads the checksum rows: version -> (recorded, run id).
func (c *argoCase) checksums(t *testing.T) map[int64][2]string { return checksums(t, c.db) }

func checksums(t *testing.T, d Database) map[int64][2]string {
	t.Helper()
	db, err := d.open()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(context.Background(), "SELECT version, recorded, run_id FROM goose_db_version_sums")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64][2]string{}
	for rows.Next() {
		var v int64
		var recorded, runID string
		if err := rows.Scan(&v, &recorded, &runID); err != nil {
			t.Fatal(err)
		}
		out[v] = [2]string{recorded, runID}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
