package helmchart

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
	"helm.sh/helm/v4/pkg/release/common"
	release "helm.sh/helm/v4/pkg/release/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/chartreuse-go/chartreuse/test/e2e"
	engine "github.com/chartreuse-go/chartreuse/test/engines"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// helmImage is the step image with the scenarios' migration sets at /e2e/<set>.
const helmImage = "chartreuse.local/chartreuse-helm:test"

// helmSets: each upgrade points migrations.dir at one of them.
var helmSets = map[string]e2e.MigrationSet{
	"v1": {"00001_customers.sql": e2e.LoggedMigration("1", "customers")},
	"v2": {
		"00001_customers.sql": e2e.LoggedMigration("1", "customers"),
		"00002_orders.sql":    e2e.LoggedMigration("2", "orders"),
	},
	// 3 fails: nothing of it is applied.
	"broken": {
		"00001_customers.sql": e2e.LoggedMigration("1", "customers"),
		"00002_orders.sql":    e2e.LoggedMigration("2", "orders"),
		"00003_invoices.sql":  e2e.BrokenMigration("invoices"),
	},
	// broken, repaired.
	"fixed": {
		"00001_customers.sql": e2e.LoggedMigration("1", "customers"),
		"00002_orders.sql":    e2e.LoggedMigration("2", "orders"),
		"00003_invoices.sql":  e2e.LoggedMigration("3", "invoices"),
	},
	// fixed, and 4.
	"v4": {
		"00001_customers.sql": e2e.LoggedMigration("1", "customers"),
		"00002_orders.sql":    e2e.LoggedMigration("2", "orders"),
		"00003_invoices.sql":  e2e.LoggedMigration("3", "invoices"),
		"00004_payments.sql":  e2e.LoggedMigration("4", "payments"),
	},
	"v5": {
		"00001_customers.sql": e2e.LoggedMigration("1", "customers"),
		"00002_orders.sql":    e2e.LoggedMigration("2", "orders"),
		"00003_invoices.sql":  e2e.LoggedMigration("3", "invoices"),
		"00004_payments.sql":  e2e.LoggedMigration("4", "payments"),
		"00005_refunds.sql":   e2e.LoggedMigration("5", "refunds"),
	},
}

// shopChart is the sample application chart of testdata/shop with this repository's
// charts/chartreuse as its dependency (what `helm dependency build` puts in charts/).
func shopChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(filepath.Join("testdata", "shop"))
	if err != nil {
		t.Fatal(err)
	}
	c.AddDependency(loadChart(t))
	return c
}

func asRelease(t *testing.T, r any) *release.Release {
	t.Helper()
	switch rel := r.(type) {
	case *release.Release:
		return rel
	case release.Release:
		return &rel
	}
	t.Fatalf("release of type %T", r)
	return nil
}

// TestHelmArgo: the sample application chart, with charts/chartreuse as a dependency,
// installed and upgraded with Helm's v4 SDK on the test cluster, where the real Argo
// controller runs the migrations against a real PostgreSQL. The hook runs in post
// mode (the default); each step is a `helm install` / `helm upgrade`:
//
//  1. install: the post-install hook migrates an empty database to 1;
//  2. upgrade, 2 pending: migrated, the application stopped and restored;
//  3. upgrade, nothing pending: no workload touched (no pod deleted or created);
//  4. upgrade, a failing migration: the release fails, the database stays at 2 and the
//     application stays down (onMigrateFailure: keep-down), and Helm prints the hook's
//     log naming the failed step;
//  5. upgrade with the fix: migrated to 3, the application back, nothing deleted by hand;
//  6. upgrade with hook.mode: pre and 4 pending: migrated before Helm applies, the
//     application stopped and restored;
//  7. upgrade with databases.list: the shop's database held at its version and a new
//     billing database migrated to 5 in one run, the application stopped once.
func TestHelmArgo(t *testing.T) { helmScenarios(t, "argo") }

func helmScenarios(t *testing.T, engineName string) {
	if testing.Short() {
		t.Skip("runs the workflow engine on the local cluster (not with -short)")
	}
	// Argo's and Tekton's upgrades side by side: each mostly waits for its
	// hook's pods, and one after the other they were the package's 15 minutes.
	t.Parallel()
	env := kubeenv.Shared(t)
	ns := env.NewNamespace(t)
	// Bounds, not targets: each upgrade takes about a minute alone, several times
	// that on a 2-core CI node running e2e beside it.
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Minute)
	defer cancel()
	repo, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}

	// The engine, the image and the database server, side by side.
	start := time.Now()
	var argo *engine.Argo
	var tekton *engine.Tekton
	var wg sync.WaitGroup
	var installErr, imageErr error
	wg.Go(func() {
		if engineName == "argo" {
			argo, installErr = engine.InstallArgo(ctx, env, engine.ArgoOptions{Namespace: ns, RepoDir: repo, Logf: t.Logf})
		} else {
			tekton, installErr = engine.InstallTekton(ctx, env, engine.TektonOptions{RepoDir: repo, Logf: t.Logf})
		}
	})
	wg.Go(func() {
		tar, err := e2e.BuildTestImage(ctx, repo, t.TempDir(), helmImage, helmSets["v1"], helmSets)
		if err == nil {
			err = env.LoadImage(ctx, tar)
		}
		imageErr = err
	})
	pg, err := pgenv.Start(pgenv.Options{Listen: env.BridgeIP, AllowCIDRs: []string{env.State().PodCIDR}})
	if err != nil {
		t.Fatalf("PostgreSQL: %v", err)
	}
	defer pg.Stop()
	wg.Wait()
	if installErr != nil {
		t.Fatal(installErr)
	}
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	t.Logf("%s: set-up %s", engineName, time.Since(start).Round(100*time.Millisecond))
	var kc kubernetes.Interface
	if argo != nil {
		kc = argo.Kube
	} else {
		kc = tekton.Kube
	}
	defer func() {
		if !t.Failed() {
			return
		}
		if argo != nil {
			t.Logf("--- workflow-controller log:\n%s", argo.ControllerLog(context.Background(), 100))
		} else {
			t.Logf("--- tekton controller log:\n%s", tekton.ControllerLog(context.Background(), 100))
		}
	}()
	rc, err := env.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	dbName, err := pg.CreateDatabase(ctx, "helm")
	if err != nil {
		t.Fatal(err)
	}
	db := e2e.Database{Server: pg, Name: dbName}
	if err := e2e.CreateSecret(ctx, kc, ns, "shop-db", db.URL()); err != nil {
		t.Fatal(err)
	}

	cfg := helmConfig(t, env.State().Kubeconfig, ns)
	var hookLog bytes.Buffer
	var hookMu sync.Mutex
	cfg.SetHookOutputFunc(func(_, pod, container string) io.Writer {
		hookMu.Lock()
		defer hookMu.Unlock()
		fmt.Fprintf(&hookLog, "--- %s/%s\n", pod, container)
		return &lockedWriter{mu: &hookMu, w: &hookLog}
	})
	logs := func() string {
		hookMu.Lock()
		defer hookMu.Unlock()
		return hookLog.String()
	}
	c := shopChart(t)
	app := &e2e.App{Namespace: ns, Name: "shop", Selector: "app.kubernetes.io/name=shop", Replicas: 1}
	mode := "post"
	var list []any // databases.list
	values := func(set string) map[string]any {
		v := map[string]any{
			"engine":     engineName,
			"image":      helmImage,
			"migrations": map[string]any{"dir": e2e.SetsRoot + "/" + set},
			"hook":       map[string]any{"mode": mode},
		}
		if list != nil {
			v["databases"] = map[string]any{"list": list}
		}
		return map[string]any{"chartreuse": v}
	}
	wantVersion := func(step string, want int64) {
		t.Helper()
		if v, err := db.Version(ctx); err != nil || v != want {
			t.Errorf("%s: database at version %d (%v), want %d", step, v, err, want)
		}
	}
	// wantRun: the run of a revision ended as want says (Argo's phase; Tekton's
	// Succeeded condition: Succeeded when True, else its reason).
	runs := schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"}
	if engineName == "tekton" {
		runs = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelineruns"}
	}
	wantRun := func(step string, revision int, want string) {
		t.Helper()
		name := fmt.Sprintf("shop-chartreuse-%d", revision)
		u, err := dyn.Resource(runs).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("%s: run %s: %v", step, name, err)
			return
		}
		got, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Succeeded" && engineName == "tekton" {
				got, _ = m["reason"].(string)
				// Completed: succeeded with tasks skipped (scale-down with nothing pending).
				if m["status"] == "True" {
					got = "Succeeded"
				}
			}
		}
		if got != want {
			status, _ := json.MarshalIndent(u.Object["status"], "", "  ")
			t.Errorf("%s: run %s ended %q, want %q; status:\n%s", step, name, got, want, status)
		}
	}
	upgrade := func(step, set string) (*release.Release, time.Duration, error) {
		t.Helper()
		u := action.NewUpgrade(cfg)
		u.Namespace = ns
		u.WaitStrategy = kube.HookOnlyStrategy
		u.Timeout = 12 * time.Minute
		t0 := time.Now()
		r, err := u.RunWithContext(ctx, "shop", c, values(set))
		d := time.Since(t0)
		t.Logf("%s: helm upgrade took %s", step, d.Round(100*time.Millisecond))
		if r == nil {
			return nil, d, err
		}
		return asRelease(t, r), d, err
	}

	detailsCommand := "argo get"
	if engineName == "tekton" {
		detailsCommand = "tkn pipelinerun describe"
	}

	install := func(step, set string) (any, error) {
		t.Helper()
		in := action.NewInstall(cfg)
		in.ReleaseName = "shop"
		in.Namespace = ns
		in.WaitStrategy = kube.HookOnlyStrategy
		in.Timeout = 12 * time.Minute
		t0 := time.Now()
		r, err := in.RunWithContext(ctx, c, values(set))
		t.Logf("%s: helm install took %s", step, time.Since(t0).Round(100*time.Millisecond))
		return r, err
	}
	resetLogs := func() {
		hookMu.Lock()
		hookLog.Reset()
		hookMu.Unlock()
	}

	// 1. install: the post-install hook migrates to 1.
	r, err := install("install", "v1")
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, logs())
	}
	if rel := asRelease(t, r); rel.Info.Status != common.StatusDeployed {
		t.Fatalf("install: release %s", rel.Info.Status)
	}
	wantVersion("install", 1)
	wantRun("install", 1, "Succeeded")
	if err := app.WaitReady(ctx, kc, app.Replicas); err != nil {
		t.Fatal(err)
	}

	// 2. upgrade with 2 pending: migrated; the application stopped and restored.
	before, err := app.State(ctx, kc)
	if err != nil {
		t.Fatal(err)
	}
	pw, err := e2e.WatchPods(ctx, kc, ns, app.Selector)
	if err != nil {
		t.Fatal(err)
	}
	rel, _, err := upgrade("pending", "v2")
	pw.Stop()
	if err != nil || rel.Info.Status != common.StatusDeployed {
		t.Fatalf("upgrade with a migration pending: %v\n%s", err, logs())
	}
	wantVersion("pending", 2)
	wantRun("pending", 2, "Succeeded")
	if deleted := deletedPods(pw, before.Pods); len(deleted) != len(before.Pods) {
		t.Errorf("pending: %d of the %d pods running before were deleted, want all (the application stopped)", len(deleted), len(before.Pods))
	}
	wantRestored(t, ctx, app, kc)

	// 3. upgrade with nothing pending: no workload touched.
	before, err = app.State(ctx, kc)
	if err != nil {
		t.Fatal(err)
	}
	pw, err = e2e.WatchPods(ctx, kc, ns, app.Selector)
	if err != nil {
		t.Fatal(err)
	}
	rel, _, err = upgrade("nothing-pending", "v2")
	pw.Stop()
	if err != nil || rel.Info.Status != common.StatusDeployed {
		t.Fatalf("upgrade with nothing pending: %v\n%s", err, logs())
	}
	wantVersion("nothing-pending", 2)
	wantRun("nothing-pending", 3, "Succeeded")
	for _, ev := range pw.Events() {
		if _, existed := before.Pods[ev.UID]; ev.Type != watch.Modified && (ev.Type != watch.Added || !existed) {
			t.Errorf("nothing-pending: pod %s %s (want no pod deleted or created)", ev.Name, ev.Type)
		}
	}
	after, err := app.State(ctx, kc)
	if err != nil {
		t.Fatal(err)
	}
	if after.Generation != before.Generation || after.CronSuspended || len(after.Annotations) != 0 {
		t.Errorf("nothing-pending: Deployment generation %d -> %d, CronJob suspended %v, records %v; want the workloads untouched",
			before.Generation, after.Generation, after.CronSuspended, after.Annotations)
	}

	// 4. upgrade with a failing migration: the release fails; keep-down.
	resetLogs()
	rel, _, err = upgrade("failing", "broken")
	if err == nil {
		t.Fatal("upgrade with a failing migration succeeded")
	}
	t.Logf("failing: helm upgrade: %v", err)
	if !strings.Contains(err.Error(), "shop-chartreuse-hook") {
		t.Errorf("failing: the error does not name the hook Job: %v", err)
	}
	if rel != nil && rel.Info.Status != common.StatusFailed {
		t.Errorf("failing: release %s, want failed", rel.Info.Status)
	}
	st, err := action.NewStatus(cfg).Run("shop")
	if err != nil {
		t.Fatal(err)
	}
	if s := asRelease(t, st); s.Version != 4 || s.Info.Status != common.StatusFailed {
		t.Errorf("failing: release revision %d %s, want 4 failed", s.Version, s.Info.Status)
	}
	wantVersion("failing", 2)
	wantRun("failing", 4, "Failed")
	for _, w := range []string{"shop-chartreuse-4", "step ended", "migrate", detailsCommand + " -n " + ns + " shop-chartreuse-4"} {
		if !strings.Contains(logs(), w) {
			t.Errorf("failing: the hook's log that Helm printed does not say %q:\n%s", w, logs())
		}
	}
	// The failed run fails the Job at once (podFailurePolicy): no pod retried to
	// follow a run that has ended.
	if job, err := kc.BatchV1().Jobs(ns).Get(ctx, "shop-chartreuse-hook", metav1.GetOptions{}); err != nil || job.Status.Failed != 1 {
		t.Errorf("failing: the hook Job: %v; want 1 failed pod, got %+v", err, job.Status)
	}
	down, err := app.State(ctx, kc)
	if err != nil {
		t.Fatal(err)
	}
	if down.SpecReplicas != 0 || !down.CronSuspended || down.Annotations["deployment/chartreuse.io/replicas-before-migration"] != "1" {
		t.Errorf("failing: want the application kept down with its record (keep-down): %+v", down)
	}

	// 5. the team goes back to the last good release (its migrations, 1 and 2, are
	// applied): nothing pending, and the run lets go of the keep-down above (plan's
	// superseded-holds). Before, it Succeeded and left the application at 0.
	rel, _, err = upgrade("revert", "v2")
	if err != nil || rel.Info.Status != common.StatusDeployed {
		t.Fatalf("upgrade back to the last good migrations: %v\n%s", err, logs())
	}
	wantVersion("revert", 2)
	wantRun("revert", 5, "Succeeded")
	if st, err := app.State(ctx, kc); err != nil || st.SpecReplicas == 0 {
		t.Fatalf("revert: the release is deployed and its run Succeeded, but the application is at 0 replicas, held by the failed run's record %v (%v)", st.Annotations, err)
	}
	wantRestored(t, ctx, app, kc)

	// 6. the fix, upgraded as usual: nothing deleted by hand.
	rel, _, err = upgrade("fixed", "fixed")
	if err != nil || rel.Info.Status != common.StatusDeployed {
		t.Fatalf("upgrade with the fix: %v\n%s", err, logs())
	}
	wantVersion("fixed", 3)
	wantRun("fixed", 6, "Succeeded")
	wantRestored(t, ctx, app, kc)

	// 7. hook.mode: pre, with 4 pending: the pre-upgrade hook runs this revision's run
	// (the new migrations.dir, from the hook's own ConfigMap: the release's is still
	// revision 6's then), checks it against the installed WorkflowTemplate / Pipeline,
	// stops and restores the application, and Helm applies the release after it.
	mode = "pre"
	before, err = app.State(ctx, kc)
	if err != nil {
		t.Fatal(err)
	}
	pw, err = e2e.WatchPods(ctx, kc, ns, app.Selector)
	if err != nil {
		t.Fatal(err)
	}
	rel, _, err = upgrade("pre", "v4")
	pw.Stop()
	if err != nil || rel.Info.Status != common.StatusDeployed {
		t.Fatalf("upgrade in pre mode: %v\n%s", err, logs())
	}
	wantVersion("pre", 4)
	wantRun("pre", 7, "Succeeded")
	if deleted := deletedPods(pw, before.Pods); len(deleted) != len(before.Pods) {
		t.Errorf("pre: %d of the %d pods running before were deleted, want all (the application stopped)", len(deleted), len(before.Pods))
	}
	wantRestored(t, ctx, app, kc)

	// 8. databases.list: the shop's database, held at 4 (nothing pending), and a
	// new, empty billing database migrated to 5 in the same run: the application
	// stopped once and restored (on Tekton a PipelineRun of chartreuse-databases).
	mode = "post"
	billingName, err := pg.CreateDatabase(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	billing := e2e.Database{Server: pg, Name: billingName}
	if err := e2e.CreateSecret(ctx, kc, ns, "billing-db", billing.URL()); err != nil {
		t.Fatal(err)
	}
	list = []any{map[string]any{"secret": "shop-db", "to": "4"}, map[string]any{"secret": "billing-db"}}
	before, err = app.State(ctx, kc)
	if err != nil {
		t.Fatal(err)
	}
	pw, err = e2e.WatchPods(ctx, kc, ns, app.Selector)
	if err != nil {
		t.Fatal(err)
	}
	rel, _, err = upgrade("list", "v5")
	pw.Stop()
	list = nil
	if err != nil || rel.Info.Status != common.StatusDeployed {
		t.Fatalf("upgrade with a databases list: %v\n%s", err, logs())
	}
	wantVersion("list", 4)
	if v, err := billing.Version(ctx); err != nil || v != 5 {
		t.Errorf("list: billing database at version %d (%v), want 5", v, err)
	}
	wantRun("list", 8, "Succeeded")
	if deleted := deletedPods(pw, before.Pods); len(deleted) != len(before.Pods) {
		t.Errorf("list: %d of the %d pods running before were deleted, want all (the application stopped once)", len(deleted), len(before.Pods))
	}
	wantRestored(t, ctx, app, kc)

	// 9. helm uninstall, then an install of a release of the same name with one
	// more migration. Helm counts revisions from 1 again and the earlier install's
	// runs stay: the new hook once followed the old shop-chartreuse-1 (Succeeded)
	// and Helm reported the install done with migration 5 never run. It refuses
	// now, naming the run; with the old runs deleted, the install migrates.
	// Tekton only: the waiter's code is the same for both engines.
	if engineName != "tekton" {
		return
	}
	mode = "post"
	uninstall := func(step string) {
		t.Helper()
		un := action.NewUninstall(cfg)
		un.WaitStrategy = kube.HookOnlyStrategy
		un.Timeout = 5 * time.Minute
		if _, err := un.Run("shop"); err != nil {
			t.Fatalf("%s: helm uninstall: %v", step, err)
		}
	}
	uninstall("reinstall")
	resetLogs()
	if _, err := install("reinstall over the old runs", "v5"); err == nil {
		t.Errorf("reinstall over the earlier install's runs: helm install succeeded, want the hook to refuse shop-chartreuse-1")
	}
	wantVersion("reinstall over the old runs", 4)
	if !strings.Contains(logs(), "another hook Job created it") || !strings.Contains(logs(), "shop-chartreuse-1") {
		t.Errorf("reinstall over the old runs: the hook's log does not name the earlier install's run:\n%s", logs())
	}
	uninstall("reinstall, old runs deleted")
	if err := dyn.Resource(runs).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=shop,chartreuse.io/helm-revision"}); err != nil {
		t.Fatal(err)
	}
	if _, err := install("reinstall, old runs deleted", "v5"); err != nil {
		t.Fatalf("reinstall with the old runs deleted: %v\n%s", err, logs())
	}
	wantVersion("reinstall, old runs deleted", 5)
	wantRun("reinstall, old runs deleted", 1, "Succeeded")
}

// wantRestored: the application runs as before, no record left, the HPA untouched.
func wantRestored(t *testing.T, ctx context.Context, app *e2e.App, kc kubernetes.Interface) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := app.WaitReady(wctx, kc, app.Replicas); err != nil {
		t.Error(err)
	}
	st, err := app.State(ctx, kc)
	if err != nil {
		t.Fatal(err)
	}
	if st.CronSuspended || len(st.Annotations) != 0 || st.HPAMin != app.Replicas || st.HPAMax != app.Replicas+2 {
		t.Errorf("want the application restored: CronJob suspended %v, records %v, HPA %d-%d", st.CronSuspended, st.Annotations, st.HPAMin, st.HPAMax)
	}
}

// deletedPods returns the pods of before that pw saw deleted.
func deletedPods(pw *e2e.PodWatch, before map[types.UID]string) []string {
	var out []string
	for _, ev := range pw.Events() {
		if _, ok := before[ev.UID]; ok && ev.Type == watch.Deleted {
			out = append(out, ev.Name)
		}
	}
	return out
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
