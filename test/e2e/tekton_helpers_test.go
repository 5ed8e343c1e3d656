package e2e

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"knative.dev/pkg/apis"

	"github.com/chartreuse-go/chartreuse/test/engines"
	"github.com/chartreuse-go/chartreuse/test/gitserver"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
	"github.com/chartreuse-go/chartreuse/test/registry"
)

// TestMain: the package's tests share one Kubernetes environment (the one of
// CHARTREUSE_TEST_ENV, else one started for the package).
func TestMain(m *testing.M) {
	kubeenv.RaiseParallel(suiteParallel)
	kubeenv.Main(m)
}

// tektonImage holds every migration set: tektonShop at /migrations (the
// image's default, what `FROM chartreuse` + `COPY` gives; the Pipeline's
// default migrations-dir) and the others at /e2e/<set>.
const tektonImage = "chartreuse.local/chartreuse-e2e:tekton"

var (
	tektonShop = MigrationSet{
		"00001_items.sql":  LoggedMigration("1", "items"),
		"00002_prices.sql": LoggedMigration("2", "prices"),
		"00003_orders.sql": LoggedMigration("3", "orders"),
	}
	tektonSets = map[string]MigrationSet{
		// 3, without a transaction, creates its table and then fails: the
		// database is left dirty (migrate and migrate --plan refuse it).
		"dirty-third": {
			"00001_items.sql":  LoggedMigration("1", "items"),
			"00002_prices.sql": LoggedMigration("2", "prices"),
			"00003_orders.sql": "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE orders (id bigserial PRIMARY KEY);\nSELECT no_such_column FROM orders;\n\n-- +goose Down\nDROP TABLE IF EXISTS orders;\n",
		},
		// 3 fails with an SQL error.
		"broken": {
			"00001_items.sql":  LoggedMigration("1", "items"),
			"00002_prices.sql": LoggedMigration("2", "prices"),
			"00003_orders.sql": BrokenMigration("orders"),
		},
		// tektonShop whose applied 2 was edited afterwards (a comment added).
		"edited-second": {
			"00001_items.sql":  LoggedMigration("1", "items"),
			"00002_prices.sql": "-- prices of the shop\n" + LoggedMigration("2", "prices"),
			"00003_orders.sql": LoggedMigration("3", "orders"),
		},
		// broken with 3 repaired.
		"fixed": {
			"00001_items.sql":  LoggedMigration("1", "items"),
			"00002_prices.sql": LoggedMigration("2", "prices"),
			"00003_orders.sql": LoggedMigration("3", "orders"),
		},
		// tektonShop whose 2 waits until the test creates table go_ahead.
		"waits-second": {
			"00001_items.sql":  LoggedMigration("1", "items"),
			"00002_prices.sql": WaitingMigration("2", "prices", "go_ahead"),
			"00003_orders.sql": LoggedMigration("3", "orders"),
		},
		// tektonShop with a migration 2 that takes 8 s: time for a second
		// run to wait at the gate, or to cancel the first while it migrates.
		"slow": {
			"00001_items.sql":  LoggedMigration("1", "items"),
			"00002_prices.sql": SlowMigration("2", "prices", 8*time.Second),
			"00003_orders.sql": LoggedMigration("3", "orders"),
		},
		// tektonShop with a migration 2 that takes 40 s: a run is still
		// migrating when another has started and waits at the gate.
		"slower": {
			"00001_items.sql":  LoggedMigration("1", "items"),
			"00002_prices.sql": SlowMigration("2", "prices", 40*time.Second),
			"00003_orders.sql": LoggedMigration("3", "orders"),
		},
		// broken whose 3 runs for 10 s before it fails: time to act while it runs.
		"waits-for-gate": waitsForGate,
		"slow-broken": {
			"00001_items.sql":  LoggedMigration("1", "items"),
			"00002_prices.sql": LoggedMigration("2", "prices"),
			"00003_orders.sql": SlowBrokenMigration("orders", 10*time.Second),
		},
	}
)

// tektonSuite is what the Tekton scenarios share: the environment, Tekton
// (installed once, cluster-wide), the image, and a PostgreSQL, a git server and
// a registry (plain http, one htpasswd account) on the bridge (the pods reach
// them there; nothing else does).
type tektonSuite struct {
	env  *kubeenv.Env
	tk   *engines.Tekton
	kube kubernetes.Interface
	pg   *pgenv.Server
	git  *gitserver.Server
	reg  *registry.Registry
}

// newTektonSuite installs Tekton, builds and loads the image and starts the
// database, git and registry servers, side by side; all stop when t ends.
func newTektonSuite(t *testing.T) *tektonSuite {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the real cluster and Tekton (not run with -short)")
	}
	env := kubeenv.Shared(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s := &tektonSuite{env: env}
	var wg sync.WaitGroup
	var installErr, imageErr error
	wg.Go(func() {
		s.tk, installErr = engines.InstallTekton(ctx, env, engines.TektonOptions{RepoDir: repo, Logf: t.Logf})
	})
	wg.Go(func() {
		imageErr = BuildAndLoadTestImage(ctx, t, env, "tekton", repo, tektonImage, tektonShop, tektonSets)
	})
	s.pg = StartPostgres(t, env)
	s.git = gitserver.Start(t, net.JoinHostPort(env.BridgeIP, "0"))
	s.reg = registry.Start(t, net.JoinHostPort(env.BridgeIP, "0"), registry.WithHtpasswd(tektonRegistryUser, tektonRegistryPassword))
	wg.Wait()
	if installErr != nil {
		t.Fatal(installErr)
	}
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	s.kube = s.tk.Kube
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- Tekton controller log:\n%s", s.tk.ControllerLog(context.Background(), 150))
		}
	})
	t.Logf("tekton: set-up took %s", time.Since(start).Round(100*time.Millisecond))
	return s
}

// tektonCase is one scenario's namespace: the project's tekton/ objects
// (kubectl apply -k), the sample app (named "app" and the database Secret
// "app-database": the TriggerTemplate's defaults), a database, and a
// recording of the app's pods.
type tektonCase struct {
	s    *tektonSuite
	ns   string
	db   Database
	app  *App
	pods *PodWatch
}

const tektonSecret = "app-database"

func (s *tektonSuite) newCase(t *testing.T, pg *pgenv.Server) *tektonCase {
	t.Helper()
	if pg == nil {
		pg = s.pg
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c := &tektonCase{s: s, ns: s.env.NewNamespace(t)}
	if err := s.tk.ApplyProject(ctx, c.ns); err != nil {
		t.Fatal(err)
	}
	c.db = NewDatabase(t, pg, "tekton")
	if err := CreateSecret(ctx, s.kube, c.ns, tektonSecret, c.db.URL()); err != nil {
		t.Fatal(err)
	}
	app, err := DeployApp(ctx, s.kube, c.ns, AppOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.app = app
	if c.pods, err = WatchPods(context.Background(), s.kube, c.ns, app.Selector); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.pods.Stop)
	return c
}

// migrateTo gives the database its starting version (goose, from this process).
func (c *tektonCase) migrateTo(t *testing.T, version int64) {
	t.Helper()
	if err := c.db.MigrateTo(t.Context(), tektonShop, version); err != nil {
		t.Fatal(err)
	}
}

// pipelineRun is tekton/examples/pipelinerun.yaml with this case's Secret,
// app, the test image, set's migrations ("" for the image's default
// /migrations) and extra params.
func (c *tektonCase) pipelineRun(t *testing.T, set string, extra map[string]string) *pipelinev1.PipelineRun {
	t.Helper()
	pr, err := c.s.tk.ExamplePipelineRun()
	if err != nil {
		t.Fatal(err)
	}
	p := map[string]string{
		"image":             tektonImage,
		"database-secret":   tektonSecret,
		"workload-selector": c.app.Selector,
	}
	if set != "" {
		p["migrations-dir"] = SetsRoot + "/" + set
	}
	for k, v := range extra {
		p[k] = v
	}
	setParams(&pr.Spec.Params, p)
	return pr
}

// setParams sets the params p, in name order.
func setParams(params *pipelinev1.Params, p map[string]string) {
	names := make([]string, 0, len(p))
	for k := range p {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		engines.SetTektonParam(params, k, p[k])
	}
}

// run creates the PipelineRun and waits until it is done.
func (c *tektonCase) run(t *testing.T, pr *pipelinev1.PipelineRun) (*pipelinev1.PipelineRun, map[string]*pipelinev1.TaskRun) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	created, err := c.s.tk.CreatePipelineRun(ctx, c.ns, pr)
	if err != nil {
		t.Fatal(err)
	}
	return c.wait(t, ctx, created.Name)
}

// runBroken is the start of the failure-policy scenarios: a case at version
// from runs the "broken" set (3 fails) with on-migrate-failure policy, and the
// run fails.
func (s *tektonSuite) runBroken(t *testing.T, from int64, policy string) (*tektonCase, *pipelinev1.PipelineRun, map[string]*pipelinev1.TaskRun) {
	t.Helper()
	c := s.newCase(t, nil)
	c.migrateTo(t, from)
	pr, trs := c.run(t, c.pipelineRun(t, "broken", map[string]string{"on-migrate-failure": policy}))
	wantSucceeded(t, pr, false)
	return c, pr, trs
}

// wait waits for the PipelineRun, logs its TaskRuns (and on a failing test
// their step logs) and returns it with its TaskRuns by pipeline task.
func (c *tektonCase) wait(t *testing.T, ctx context.Context, name string) (*pipelinev1.PipelineRun, map[string]*pipelinev1.TaskRun) {
	t.Helper()
	done, err := c.s.tk.WaitPipelineRun(ctx, c.ns, name)
	if err != nil {
		if done != nil {
			t.Log(c.s.tk.DescribeRun(context.Background(), done))
		}
		t.Fatal(err)
	}
	trs, err := c.s.tk.ChildTaskRuns(ctx, done)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s (%s)", strings.TrimSpace(c.s.tk.DescribeRun(ctx, done)), done.Status.CompletionTime.Sub(done.Status.StartTime.Time))
	t.Cleanup(func() {
		if t.Failed() {
			for n, tr := range trs {
				t.Logf("--- %s (%s):\n%s", n, tr.Name, c.s.tk.TaskRunLogs(context.Background(), tr))
			}
		}
	})
	return done, trs
}

// taskRun creates a TaskRun of one of the project's Tasks as tekton/README.md
// shows (ServiceAccount chartreuse-pipeline, non-root pod) and waits for it.
func (c *tektonCase) taskRun(t *testing.T, task string, params map[string]string) *pipelinev1.TaskRun {
	t.Helper()
	tr := &pipelinev1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{GenerateName: task + "-"},
		Spec: pipelinev1.TaskRunSpec{
			TaskRef:            &pipelinev1.TaskRef{Name: task},
			ServiceAccountName: "chartreuse-pipeline",
			PodTemplate: &pod.Template{SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: new(true), RunAsUser: new(int64(65532)), FSGroup: new(int64(65532)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			}},
		},
	}
	setParams(&tr.Spec.Params, params)
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	created, err := c.s.tk.CreateTaskRun(ctx, c.ns, tr)
	if err != nil {
		t.Fatal(err)
	}
	done, err := c.s.tk.WaitTaskRun(ctx, c.ns, created.Name)
	if err != nil {
		t.Fatal(err)
	}
	cond := done.Status.GetCondition(apis.ConditionSucceeded)
	t.Logf("TaskRun %s: %s exit codes %v results %v", done.Name, engines.RunCondition(cond), engines.StepExitCodes(done), engines.TaskRunResults(done))
	if !engines.Succeeded(cond) {
		t.Fatalf("TaskRun %s failed:\n%s", done.Name, c.s.tk.TaskRunLogs(context.Background(), done))
	}
	return done
}

// wantVersions checks goose's applied versions and the migration log.
func (c *tektonCase) wantVersions(t *testing.T, want ...int64) {
	t.Helper()
	got, err := c.db.AppliedVersions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("applied versions %v, want %v", got, want)
	}
	log, err := c.db.MigrationLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var logged []string
	for v := range log {
		logged = append(logged, v)
	}
	sort.Strings(logged)
	var wantLog []string
	for _, v := range want {
		wantLog = append(wantLog, fmt.Sprint(v))
	}
	if !slices.Equal(logged, wantLog) {
		t.Errorf("migration log %v, want %v", logged, wantLog)
	}
}

// wantRestored: the application runs as before, with no record left and the
// HPA untouched.
func (c *tektonCase) wantRestored(t *testing.T) {
	t.Helper()
	wantAppRestored(t, c.s.kube, c.app)
}

// wantStopped: the application is stopped, no pod left, the record in place.
func (c *tektonCase) wantStopped(t *testing.T) {
	t.Helper()
	wantAppStopped(t, c.s.kube, c.app)
}

// wantUntouched: no app pod was deleted or began terminating.
func (c *tektonCase) wantUntouched(t *testing.T) {
	t.Helper()
	for _, e := range c.pods.Events() {
		if e.Type == watch.Deleted || e.Terminating {
			t.Errorf("app pod %s was stopped (%s)", e.Name, e.Type)
		}
	}
}
