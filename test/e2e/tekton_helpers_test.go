package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/chartreuse-go/chartreuse/images/build"
	"github.com/chartreuse-go/chartreuse/test/engines"
	"github.com/chartreuse-go/chartreuse/test/images"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// TestMain: the package's tests share one Kubernetes environment (the one of
// CHARTREUSE_TEST_ENV, else one started for the package).
func TestMain(m *testing.M) { kubeenv.Main(m) }

// Migration sets, all in one derived image at /migrations/<set>/; a run picks
// one with the Pipeline's migrations-dir param. Every migration records itself
// in migration_log (a down migration with its negated version), so a scenario
// can tell how often and when each one ran.
const (
	m1 = `-- +goose Up
CREATE TABLE migration_log (version int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
INSERT INTO migration_log (version) VALUES (1);
CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL);
-- +goose Down
DROP TABLE items;
DROP TABLE migration_log;
`
	m2 = `-- +goose Up
ALTER TABLE items ADD COLUMN price_cents bigint NOT NULL DEFAULT 0;
INSERT INTO migration_log (version) VALUES (2);
-- +goose Down
ALTER TABLE items DROP COLUMN price_cents;
INSERT INTO migration_log (version) VALUES (-2);
`
	m2slow = `-- +goose Up
SELECT pg_sleep(4);
ALTER TABLE items ADD COLUMN price_cents bigint NOT NULL DEFAULT 0;
INSERT INTO migration_log (version) VALUES (2);
-- +goose Down
ALTER TABLE items DROP COLUMN price_cents;
INSERT INTO migration_log (version) VALUES (-2);
`
	m3 = `-- +goose Up
INSERT INTO items (name, price_cents) VALUES ('first', 100);
INSERT INTO migration_log (version) VALUES (3);
-- +goose Down
DELETE FROM items WHERE name = 'first';
INSERT INTO migration_log (version) VALUES (-3);
`
	// m3broken fails: the column does not exist (SQLSTATE 42703).
	m3broken = `-- +goose Up
INSERT INTO migration_log (version) VALUES (3);
INSERT INTO items (name, no_such_column) VALUES ('first', 100);
-- +goose Down
INSERT INTO migration_log (version) VALUES (-3);
`
)

var tektonSets = engines.MigrationSets{
	"basic":  {"00001_items.sql": m1, "00002_price.sql": m2, "00003_seed.sql": m3},
	"broken": {"00001_items.sql": m1, "00002_price.sql": m2, "00003_seed.sql": m3broken},
	"fixed":  {"00001_items.sql": m1, "00002_price.sql": m2, "00003_seed.sql": m3},
	"slow":   {"00001_items.sql": m1, "00002_price.sql": m2slow, "00003_seed.sql": m3},
}

// tektonSuite is what the Tekton scenarios share: the environment, Tekton, the
// product image with the migration sets, and a PostgreSQL on the bridge.
type tektonSuite struct {
	env   *kubeenv.Env
	tk    *engines.Tekton
	image string
	pg    *pgenv.Server
}

// newTektonSuite installs Tekton and builds and loads the image; the server
// is stopped when t (the parent of the scenarios) ends.
func newTektonSuite(t *testing.T) *tektonSuite {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the real cluster and Tekton (not run with -short)")
	}
	env := kubeenv.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	tk, err := engines.InstallTekton(ctx, env, engines.TektonOptions{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tk.Close)
	image := loadTektonImage(ctx, t, env, tk.RepoDir)
	pg, err := pgenv.Start(pgenv.Options{Listen: env.BridgeIP, AllowCIDRs: []string{env.State().PodCIDR}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Stop)
	t.Logf("tekton suite ready in %s (image %s, PostgreSQL %s:%d)", time.Since(start).Round(100*time.Millisecond), image, pg.Host, pg.Port)
	return &tektonSuite{env: env, tk: tk, image: image, pg: pg}
}

var productImage struct {
	once sync.Once
	ref  string
	err  error
}

// loadTektonImage builds the product image (images/build) plus the migration
// sets, tags it by content and imports it unless containerd has it.
func loadTektonImage(ctx context.Context, t *testing.T, env *kubeenv.Env, repo string) string {
	productImage.once.Do(func() {
		base, _, err := build.Image(ctx, repo, build.Options{})
		if err != nil {
			productImage.err = err
			return
		}
		img, err := engines.WithMigrationSets(base, tektonSets)
		if err != nil {
			productImage.err = err
			return
		}
		d, err := img.Digest()
		if err != nil {
			productImage.err = err
			return
		}
		ref := "chartreuse.local/chartreuse-e2e:" + d.Hex[:16]
		ok, err := images.Present(ctx, env.ContainerdSocket, ref)
		if err != nil || ok {
			productImage.ref, productImage.err = ref, err
			return
		}
		file := filepath.Join(t.TempDir(), "chartreuse.tar")
		if err := build.WriteTarball(img, ref, file); err != nil {
			productImage.err = err
			return
		}
		productImage.ref, productImage.err = ref, env.LoadImage(ctx, file)
	})
	if productImage.err != nil {
		t.Fatal(productImage.err)
	}
	return productImage.ref
}

// tektonCase is one scenario's namespace: the project's tekton/ objects, the
// sample app, a database and its Secret "app-database".
type tektonCase struct {
	s   *tektonSuite
	ns  string
	db  string
	url string
	app *engines.TektonApp
	rec *engines.PodRecorder
}

const dbSecret = "app-database" // the TriggerTemplate's default

func (s *tektonSuite) newCase(t *testing.T, pg *pgenv.Server) *tektonCase {
	t.Helper()
	if pg == nil {
		pg = s.pg
	}
	ctx := context.Background()
	ns := s.env.NewNamespace(t)
	if err := s.tk.ApplyProject(ctx, ns); err != nil {
		t.Fatal(err)
	}
	db, err := pg.CreateDatabase(ctx, "tekton")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pg.DropDatabase(context.Background(), db); err != nil && pg.PID() != 0 {
			t.Errorf("drop database %s: %v", db, err)
		}
	})
	c := &tektonCase{s: s, ns: ns, db: db, url: pg.URL(db)}
	if err := engines.CreateDatabaseSecret(ctx, s.tk.Kube, ns, dbSecret, c.url); err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if c.app, err = engines.DeployTektonApp(actx, s.tk.Kube, ns, engines.TektonAppOptions{Image: s.env.AppImage}); err != nil {
		t.Fatal(err)
	}
	if c.rec, err = engines.RecordPods(ctx, s.tk.Kube, ns, c.app.Selector); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.rec.Stop)
	return c
}

// gooseTo applies set's migrations up to version on the case's database from
// this process (goose itself), to give a scenario its starting version.
func (c *tektonCase) gooseTo(t *testing.T, set string, version int64) {
	t.Helper()
	db, err := sql.Open("pgx", c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fsys := fstest.MapFS{}
	for name, body := range tektonSets[set] {
		fsys[name] = &fstest.MapFile{Data: []byte(body), Mode: 0o644}
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fs.FS(fsys), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(context.Background(), version); err != nil {
		t.Fatal(err)
	}
}

// pipelineRun is tekton/examples/pipelinerun.yaml with the case's params.
func (c *tektonCase) pipelineRun(t *testing.T, set string, params map[string]string) *pipelinev1.PipelineRun {
	t.Helper()
	pr, err := c.s.tk.ExamplePipelineRun()
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]string{
		"image":             c.s.image,
		"database-secret":   dbSecret,
		"workload-selector": c.app.Selector,
		"migrations-dir":    "/migrations/" + set,
	}
	for k, v := range params {
		base[k] = v
	}
	for k, v := range base {
		engines.SetTektonParam(&pr.Spec.Params, k, v)
	}
	return pr
}

// run creates the PipelineRun and waits until it is done.
func (c *tektonCase) run(t *testing.T, pr *pipelinev1.PipelineRun) (*pipelinev1.PipelineRun, map[string]*pipelinev1.TaskRun) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	created, err := c.s.tk.CreatePipelineRun(ctx, c.ns, pr)
	if err != nil {
		t.Fatal(err)
	}
	return c.wait(t, ctx, created.Name)
}

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
	d := done.Status.CompletionTime.Sub(done.Status.StartTime.Time)
	t.Logf("%s (%s)", strings.TrimSpace(c.s.tk.DescribeRun(ctx, done)), d.Round(100*time.Millisecond))
	return done, trs
}

// taskRun creates a TaskRun of one of the project's Tasks the way
// tekton/README.md shows (ServiceAccount chartreuse-pipeline, non-root pod)
// and waits for it.
func (c *tektonCase) taskRun(t *testing.T, task string, params map[string]string) *pipelinev1.TaskRun {
	t.Helper()
	tr := &pipelinev1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{GenerateName: task + "-"},
		Spec: pipelinev1.TaskRunSpec{
			TaskRef:            &pipelinev1.TaskRef{Name: task},
			ServiceAccountName: "chartreuse-pipeline",
			PodTemplate: &pod.Template{SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptrTo(true), RunAsUser: ptrTo[int64](65532), FSGroup: ptrTo[int64](65532),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			}},
		},
	}
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		engines.SetTektonParam(&tr.Spec.Params, k, params[k])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	created, err := c.s.tk.CreateTaskRun(ctx, c.ns, tr)
	if err != nil {
		t.Fatal(err)
	}
	done, err := c.s.tk.WaitTaskRun(ctx, c.ns, created.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TaskRun %s: %s exit codes %v results %v", done.Name, engines.RunCondition(done.Status.GetCondition("Succeeded")),
		engines.StepExitCodes(done), engines.TaskRunResults(done))
	return done
}

func ptrTo[T any](v T) *T { return &v }

// dbState is what a scenario reads back from the database.
type dbState struct {
	Versions []int64     // goose_db_version rows applied, in order (0 excluded)
	Log      []int       // migration_log versions in order (nil: no table)
	LogAt    []time.Time // when each log entry was written
}

func (c *tektonCase) dbState(t *testing.T) dbState {
	t.Helper()
	db, err := sql.Open("pgx", c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var st dbState
	rows, err := db.Query(`SELECT version_id FROM goose_db_version WHERE is_applied AND version_id > 0 ORDER BY id`)
	if err != nil && !strings.Contains(err.Error(), "does not exist") {
		t.Fatal(err)
	}
	if err == nil {
		for rows.Next() {
			var v int64
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			st.Versions = append(st.Versions, v)
		}
		rows.Close()
	}
	rows, err = db.Query(`SELECT version, at FROM migration_log ORDER BY at`)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return st
		}
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		var at time.Time
		if err := rows.Scan(&v, &at); err != nil {
			t.Fatal(err)
		}
		st.Log = append(st.Log, v)
		st.LogAt = append(st.LogAt, at)
	}
	return st
}

// podUIDs lists the app's current pods.
func (c *tektonCase) podUIDs(t *testing.T) []types.UID {
	t.Helper()
	pods, err := c.app.Pods(context.Background(), c.s.tk.Kube)
	if err != nil {
		t.Fatal(err)
	}
	var out []types.UID
	for _, p := range pods {
		out = append(out, p.UID)
	}
	return out
}

// appState reads the workloads.
func (c *tektonCase) appState(t *testing.T) engines.TektonAppState {
	t.Helper()
	st, err := c.app.State(context.Background(), c.s.tk.Kube)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// wantRestored checks that the workloads are back as they were before the
// run (2 ready replicas, CronJob running, the record cleared, HPA untouched).
func (c *tektonCase) wantRestored(t *testing.T) {
	t.Helper()
	st := c.appState(t)
	if st.Replicas != c.app.Replicas || st.Suspended || !st.HPAExists {
		t.Errorf("workloads not restored: replicas %d (want %d), CronJob suspended %v, HPA present %v", st.Replicas, c.app.Replicas, st.Suspended, st.HPAExists)
	}
	wantNoRecord(t, "Deployment", st.Annotations)
	wantNoRecord(t, "CronJob", st.CronJobAnn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.app.WaitReady(ctx, c.s.tk.Kube); err != nil {
		t.Error(err)
	}
}

// wantStopped checks that the workloads are stopped and their pods gone.
func (c *tektonCase) wantStopped(t *testing.T) {
	t.Helper()
	st := c.appState(t)
	if st.Replicas != 0 || !st.Suspended {
		t.Errorf("workloads not stopped: replicas %d, CronJob suspended %v", st.Replicas, st.Suspended)
	}
	if st.Annotations["chartreuse.io/replicas-before-migration"] != fmt.Sprint(c.app.Replicas) {
		t.Errorf("Deployment record: %v", st.Annotations)
	}
	if uids := c.podUIDs(t); len(uids) != 0 {
		t.Errorf("app pods still there: %v", uids)
	}
}

func wantNoRecord(t *testing.T, what string, ann map[string]string) {
	t.Helper()
	for k, v := range ann {
		if strings.HasPrefix(k, "chartreuse.io/") && k != "chartreuse.io/stop-priority" {
			t.Errorf("%s still has %s=%s", what, k, v)
		}
	}
}

// hostPathPV creates a PersistentVolume (no storage class, so the
// TriggerTemplate's volumeClaimTemplate binds to it) on a host directory
// holding files, and deletes both at the end of the test.
func hostPathPV(t *testing.T, s *tektonSuite, files map[string]string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "chartreuse-pv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	name := "chartreuse-e2e-" + filepath.Base(dir)[len("chartreuse-pv-"):]
	name = strings.ToLower(name)
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"chartreuse.test/test": "true"}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              "",
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: dir, Type: ptrTo(corev1.HostPathDirectory),
			}},
		},
	}
	ctx := context.Background()
	if _, err := s.tk.Kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.tk.Kube.CoreV1().PersistentVolumes().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}
