package runwatch_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
	"github.com/chartreuse-go/chartreuse/test/rbacrules"
)

// The Cluster tests run the migrate binary's step (pkg/binaries) in process
// against a real PostgreSQL and the real API server of test/kubeenv, with real
// TaskRuns, PipelineRuns and Workflows (the engines' CRDs from their modules)
// that no engine runs: the test plays the engine's part by changing them while
// a migration sleeps.

var (
	taskRuns     = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "taskruns"}
	pipelineRuns = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelineruns"}
	workflows    = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"}
)

type fixture struct {
	t          *testing.T
	env        *kubeenv.Env
	dyn        dynamic.Interface
	ns         string
	pg         *pgenv.Server
	kubeconfig string // the step's: the ServiceAccount of migrate's Role
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := kubeenv.Shared(t)
	cfg, err := env.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := kubeenv.EnsureCRDs(ctx, dyn, "chartreuse-test-runwatch", append(kubeenv.ArgoCRDs, kubeenv.TektonCRDs...)...); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, env: env, dyn: dyn, ns: env.NewNamespace(t), pg: sharedServer(t)}
	rules, err := rbacrules.Migrate()
	if err != nil {
		t.Fatal(err)
	}
	f.kubeconfig = env.ServiceAccountKubeconfig(t, f.ns, "chartreuse-migrate", &rbacv1.Role{Rules: rules})
	return f
}

var (
	pgOnce sync.Once
	pg     *pgenv.Server
	pgErr  error
)

// sharedServer is the package's PostgreSQL, started by the first test that
// needs it and stopped after the last (each test has databases of its own):
// one server for all, as starting one per test cost minutes on a loaded CI
// node.
func sharedServer(t *testing.T) *pgenv.Server {
	t.Helper()
	pgOnce.Do(func() {
		pg, pgErr = pgenv.Start(pgenv.Options{})
		if pgErr == nil {
			kubeenv.AfterTests(pg.Stop)
		}
	})
	if pgErr != nil {
		t.Fatalf("PostgreSQL: %v", pgErr)
	}
	return pg
}

// create makes an object from YAML in the fixture's namespace.
func (f *fixture) create(gvr schema.GroupVersionResource, doc string) *unstructured.Unstructured {
	f.t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		f.t.Fatal(err)
	}
	out, err := f.dyn.Resource(gvr).Namespace(f.ns).Create(f.t.Context(), u, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatalf("creating %s %s: %v", gvr.Resource, u.GetName(), err)
	}
	return out
}

// patchSpec sets one field of an object's spec (a merge patch: the status
// an engine may be writing meanwhile is not touched).
func (f *fixture) patchSpec(gvr schema.GroupVersionResource, name, field, value string) {
	f.t.Helper()
	p := fmt.Sprintf(`{"spec":{%q:%q}}`, field, value)
	if _, err := f.dyn.Resource(gvr).Namespace(f.ns).Patch(f.t.Context(), name, types.MergePatchType, []byte(p), metav1.PatchOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// pipelineRun creates a PipelineRun that stays pending, whose inline Pipeline
// has the task migrate and the finally task release.
func (f *fixture) pipelineRun(name string) *unstructured.Unstructured {
	f.t.Helper()
	return f.create(pipelineRuns, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: `+name+`}
spec:
  status: PipelineRunPending
  pipelineSpec:
    tasks:
      - name: migrate
        taskSpec: {steps: [{name: s, image: chartreuse.invalid/none}]}
    finally:
      - name: release
        taskSpec: {steps: [{name: s, image: chartreuse.invalid/none}]}
`)
}

// taskRun creates a TaskRun of the Pipeline task task, owned by pr (nil: a
// TaskRun of its own). Neither its name (Tekton's would be <run>-<task>) nor
// a tekton.dev/pipelineRun label makes a Tekton controller running in the
// cluster take it for one of the run's: it would cancel it with the run
// (seen when the names were Tekton's).
func (f *fixture) taskRun(name, task string, pr *unstructured.Unstructured) *unstructured.Unstructured {
	f.t.Helper()
	owner := ""
	if pr != nil {
		owner = fmt.Sprintf("\n  ownerReferences: [{apiVersion: tekton.dev/v1, kind: PipelineRun, name: %s, uid: %s, controller: true}]", pr.GetName(), pr.GetUID())
	}
	return f.create(taskRuns, `
apiVersion: tekton.dev/v1
kind: TaskRun
metadata:
  name: `+name+`
  labels: {tekton.dev/pipelineTask: `+task+`}`+owner+`
spec:
  taskSpec: {steps: [{name: s, image: chartreuse.invalid/none}]}
`)
}

// workflow creates a suspended Workflow (no pod).
func (f *fixture) workflow(name string) *unstructured.Unstructured {
	f.t.Helper()
	return f.create(workflows, `
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: `+name+`}
spec:
  entrypoint: main
  suspend: true
  templates: [{name: main, suspend: {}}]
`)
}

// migrations writes three migrations; the second sleeps for sleep in its
// transaction, then creates its table.
func migrations(t *testing.T, sleep time.Duration) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"00001_a.sql": "-- +goose Up\nCREATE TABLE a (id int);\n-- +goose Down\nDROP TABLE a;\n",
		"00002_b.sql": fmt.Sprintf("-- +goose Up\nSELECT pg_sleep(%g);\nCREATE TABLE b (id int);\n-- +goose Down\nDROP TABLE b;\n", sleep.Seconds()),
		"00003_c.sql": "-- +goose Up\nCREATE TABLE c (id int);\n-- +goose Down\nDROP TABLE c;\n",
	}
	for n, s := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type outcome struct {
	code    int
	stderr  string
	applied []int64
}

// migrate runs the migrate step on a fresh database with watch (the
// --watch-run flags), calls during once migration 2 sleeps, and returns what
// the step did.
func (f *fixture) migrate(t *testing.T, sleep time.Duration, kubeconfig string, watch []string, during func()) outcome {
	t.Helper()
	return f.attack(t, migrations(t, sleep), kubeconfig, watch, true, during).outcome
}

// TestClusterCancelStopsMigrate: a cancel the step sees stops it at once as
// SIGTERM would (exit 75, migration 2 rolled back, 3 never started), before
// the engine's own signal, which never comes here; what is not a cancel of
// this step lets it finish. Without the watch every case runs to 3.
func TestClusterCancelStopsMigrate(t *testing.T) {
	f := newFixture(t)
	const long, short = 30 * time.Second, 3 * time.Second
	cases := []struct {
		name string
		// setup creates the objects and returns the step's --watch-run flags
		// and what happens while migration 2 sleeps
		setup func(t *testing.T) ([]string, func())
		sleep time.Duration
		stops string // "" runs to the end; else what the error names
	}{
		{"taskrun-cancelled", func(t *testing.T) ([]string, func()) {
			tr := f.taskRun("tr-cancelled", "migrate", nil)
			return watchOf("taskrun", tr), func() {
				f.patchSpec(taskRuns, tr.GetName(), "status", "TaskRunCancelled")
			}
		}, long, "TaskRun tr-cancelled was cancelled"},
		{"pipelinerun-cancelled-run-finally", func(t *testing.T) ([]string, func()) {
			pr := f.pipelineRun("pr-cancelled")
			tr := f.taskRun("m-pr-cancelled", "migrate", pr)
			return watchOf("taskrun", tr), func() {
				f.patchSpec(pipelineRuns, pr.GetName(), "status", "CancelledRunFinally")
			}
		}, long, "PipelineRun pr-cancelled was cancelled (CancelledRunFinally)"},
		{"pipelinerun-stopped-run-finally", func(t *testing.T) ([]string, func()) {
			pr := f.pipelineRun("pr-stopped")
			tr := f.taskRun("m-pr-stopped", "migrate", pr)
			return watchOf("taskrun", tr), func() {
				f.patchSpec(pipelineRuns, pr.GetName(), "status", "StoppedRunFinally")
			}
		}, short, ""},
		{"finally-task-of-a-cancelled-run", func(t *testing.T) ([]string, func()) {
			pr := f.pipelineRun("pr-finally")
			tr := f.taskRun("r-pr-finally", "release", pr)
			return watchOf("taskrun", tr), func() {
				f.patchSpec(pipelineRuns, pr.GetName(), "status", "CancelledRunFinally")
			}
		}, short, ""},
		{"pipelinerun-plainly-cancelled-finally-too", func(t *testing.T) ([]string, func()) {
			pr := f.pipelineRun("pr-plain")
			tr := f.taskRun("r-pr-plain", "release", pr)
			return watchOf("taskrun", tr), func() {
				f.patchSpec(pipelineRuns, pr.GetName(), "status", "Cancelled")
			}
		}, long, "PipelineRun pr-plain was cancelled (Cancelled)"},
		{"taskrun-deleted", func(t *testing.T) ([]string, func()) {
			tr := f.taskRun("tr-deleted", "migrate", nil)
			return watchOf("taskrun", tr), func() {
				if err := f.dyn.Resource(taskRuns).Namespace(f.ns).Delete(t.Context(), tr.GetName(), metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}, long, "TaskRun tr-deleted is gone"},
		{"workflow-stopped", func(t *testing.T) ([]string, func()) {
			wf := f.workflow("wf-stopped")
			return watchOf("workflow", wf), func() {
				f.patchSpec(workflows, wf.GetName(), "shutdown", "Stop")
			}
		}, long, "Workflow wf-stopped was stopped (spec.shutdown Stop)"},
		{"workflow-running-on", func(t *testing.T) ([]string, func()) {
			wf := f.workflow("wf-running")
			return watchOf("workflow", wf), func() {}
		}, short, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			watch, during := c.setup(t)
			o := f.migrate(t, c.sleep, f.kubeconfig, watch, during)
			if c.stops == "" {
				if o.code != 0 || !slices.Equal(o.applied, []int64{1, 2, 3}) {
					t.Errorf("exit %d, applied %v: want 0 and [1 2 3] (nothing asked this step to stop)", o.code, o.applied)
				}
				return
			}
			if o.code != failure.CodeTransient || !slices.Equal(o.applied, []int64{1}) {
				t.Errorf("exit %d, applied %v: want %d and [1] (migration 2 rolled back, 3 never started)", o.code, o.applied, failure.CodeTransient)
			}
			if want := "interrupted (" + c.stops; !strings.Contains(o.stderr, want) {
				t.Errorf("the log does not say %q", want)
			}
		})
	}
}

// TestClusterWatchWithoutPermission: a ServiceAccount whose Role lacks the
// watch's get (manifests older than the step) logs that the run cannot be
// watched and migrates as before, to the end.
func TestClusterWatchWithoutPermission(t *testing.T) {
	f := newFixture(t)
	tr := f.taskRun("tr-unreadable", "migrate", nil)
	kc := f.env.ServiceAccountKubeconfig(t, f.ns, "no-watch", nil)
	o := f.migrate(t, 3*time.Second, kc, watchOf("taskrun", tr), func() {
		f.patchSpec(taskRuns, tr.GetName(), "status", "TaskRunCancelled")
	})
	if o.code != 0 || !slices.Equal(o.applied, []int64{1, 2, 3}) {
		t.Errorf("exit %d, applied %v: want 0 and [1 2 3]", o.code, o.applied)
	}
	if !strings.Contains(o.stderr, "may not read the run") {
		t.Error("the log does not say the run may not be read")
	}
}

func watchOf(kind string, u *unstructured.Unstructured) []string {
	return []string{"--watch-run", kind + "/" + u.GetName(), "--watch-run-uid", string(u.GetUID())}
}
