package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"

	"github.com/chartreuse-go/chartreuse/test/engines"
)

// waitsForGate's second migration waits for the table gate, which the test keeps
// locked: its run holds the migration lock for as long as the test wants.
var waitsForGate = MigrationSet{
	"00001_items.sql": LoggedMigration("1", "items"),
	"00002_gate.sql": "-- +goose Up\nLOCK TABLE gate IN ACCESS EXCLUSIVE MODE;\nINSERT INTO chartreuse_e2e_log VALUES ('2', clock_timestamp());\n" +
		"-- +goose Down\nDELETE FROM chartreuse_e2e_log WHERE version = '2';\n",
}

// testLockHolderNamed: a PipelineRun's migrate holds the migration lock (its
// migration waits for a table the test keeps locked); a second migrate, a TaskRun
// as chartreuse-pipeline-migrate, gives up after lock-wait and names the holder's
// run, step and pod: the session name the holder's step gave it, its client address
// looked up as a pod IP in the cluster. Then the holder finishes.
func (s *tektonSuite) testLockHolderNamed(t *testing.T) {
	c := s.newCase(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	if err := c.db.Exec(ctx, "CREATE TABLE gate (id int)"); err != nil {
		t.Fatal(err)
	}
	db, err := c.db.open()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "LOCK TABLE gate IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	holder, err := s.tk.CreatePipelineRun(ctx, c.ns, c.pipelineRun(t, "waits-for-gate", map[string]string{"lock-timeout": "0"}))
	if err != nil {
		t.Fatal(err)
	}
	name := "chartreuse/" + holder.Name + "/migrate"
	err = Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE l.relation = 'gate'::regclass AND NOT l.granted AND a.application_name = $1`, name).Scan(&n)
		return n > 0, err
	})
	if err != nil {
		t.Fatalf("no session named %s waits for gate: %v", name, err)
	}
	htr, err := s.tk.PipelineTaskRun(ctx, c.ns, holder.Name, "migrate")
	if err != nil || htr == nil || htr.Status.PodName == "" {
		t.Fatalf("the holder's migrate TaskRun: %v %v", htr, err)
	}

	tr := &pipelinev1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "waiter-"},
		Spec: pipelinev1.TaskRunSpec{
			TaskRef:            &pipelinev1.TaskRef{Name: "chartreuse-migrate"},
			ServiceAccountName: "chartreuse-pipeline-migrate",
			PodTemplate: &pod.Template{SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: new(true), RunAsUser: new(int64(65532)), FSGroup: new(int64(65532)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			}},
		},
	}
	setParams(&tr.Spec.Params, map[string]string{
		"image": tektonImage, "database-secret": tektonSecret, "migrations-dir": SetsRoot + "/waits-for-gate",
		"lock-wait": "1s", "run-id": "waiter",
	})
	created, err := s.tk.CreateTaskRun(ctx, c.ns, tr)
	if err != nil {
		t.Fatal(err)
	}
	done, err := s.tk.WaitTaskRun(ctx, c.ns, created.Name)
	if err != nil {
		t.Fatal(err)
	}
	logs := s.tk.TaskRunLogs(context.Background(), done)
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "another migrator holds the migration lock") {
			t.Log(line)
		}
	}
	if engines.Succeeded(done.Status.GetCondition(apis.ConditionSucceeded)) {
		t.Fatalf("the waiter succeeded while the lock was held:\n%s", logs)
	}
	for _, want := range []string{
		"another migrator holds the migration lock",
		"Chartreuse run " + holder.Name + ", step migrate",
		", pod " + htr.Status.PodName + " (namespace " + c.ns + ")",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the waiter's log lacks %q:\n%s", want, logs)
		}
	}
	if codes := engines.StepExitCodes(done); len(codes) != 1 || codes[0] != "migrate=75" {
		t.Errorf("waiter exit codes %v, want migrate=75", codes)
	}

	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	pr, _ := c.wait(t, ctx, holder.Name)
	wantSucceeded(t, pr, true)
	c.wantVersions(t, 1, 2)
}
