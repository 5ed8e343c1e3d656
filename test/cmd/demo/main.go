// Command demo is `make demo` (run by test/demo.sh, which installs the Debian
// packages and builds the Kubernetes and Argo binaries first). On this machine it
//
//  1. starts the local single-node Kubernetes (test/kubeenv) — or uses the one
//     CHARTREUSE_TEST_ENV names, and then leaves it running;
//  2. installs Argo Workflows in namespace chartreuse-demo and applies the
//     project's workflowtemplates/ there (`kubectl apply -k`);
//  3. builds the Chartreuse image (images/build, what `make image` builds) and an
//     application's migrations image FROM it with examples/migrations/*.sql at
//     /migrations, and loads it into the node;
//  4. starts a PostgreSQL on the cluster bridge, stores its URL in the Secret
//     shop-db, deploys the sample application "shop" (Deployment with 2 pods,
//     CronJob, HPA);
//  5. submits the workflow from the template twice — with the example migrations
//     pending, then with nothing pending — and prints a short report of each run:
//     phases and durations, database version before/after, which workloads
//     stopped and for how long;
//  6. tears everything down (also on Ctrl-C).
//
// Flags: -keep leaves the namespace (and a started environment) running for a look
// around with the printed KUBECONFIG.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chartreuse-go/chartreuse/images/build"
	"github.com/chartreuse-go/chartreuse/pkg/sqlrisk"
	"github.com/chartreuse-go/chartreuse/test/downtime"
	"github.com/chartreuse-go/chartreuse/test/e2e"
	"github.com/chartreuse-go/chartreuse/test/engines"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

const (
	namespace = "chartreuse-demo"
	appName   = "shop"
	secret    = "shop-db"
	imageRef  = "chartreuse.local/shop-migrations:demo"
)

func main() {
	keep := flag.Bool("keep", false, "leave the demo running (namespace, database, environment) instead of tearing it down")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	err := run(ctx, *keep)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("\ndemo: done in %s\n", time.Since(start).Round(time.Second))
}

func say(format string, args ...any) {
	fmt.Printf("demo: "+format+"\n", args...)
}

func run(ctx context.Context, keep bool) (err error) {
	repo, err := repoRoot()
	if err != nil {
		return err
	}
	// 1. The cluster.
	var env *kubeenv.Env
	if dir := os.Getenv(kubeenv.EnvVar); dir != "" {
		say("using the running environment %s", dir)
		if env, err = kubeenv.Connect(dir); err != nil {
			return err
		}
	} else {
		say("starting a local single-node Kubernetes (etcd, apiserver, controller-manager, scheduler, kube-proxy, kubelet, containerd)")
		stop := heartbeat("starting the cluster", say)
		env, err = kubeenv.Start(ctx, kubeenv.Options{RepoDir: repo, LockWait: 10 * time.Minute, Logf: quiet})
		stop()
		if err != nil {
			return err
		}
		say("cluster up in %s", env.StartupTime.Round(100*time.Millisecond))
	}
	defer func() {
		if keep {
			say("-keep: left running; KUBECONFIG=%s (namespace %s)", env.Kubeconfig, namespace)
			return
		}
		if env.Owned() {
			say("tearing the cluster down")
		}
		stop := heartbeat("tearing down", say)
		defer stop()
		if serr := env.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	cs, err := env.Clientset()
	if err != nil {
		return err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("namespace %s: %w (left from an earlier -keep? delete it)", namespace, err)
	}
	defer func() {
		if keep {
			return
		}
		stop := heartbeat("deleting namespace "+namespace, say)
		defer stop()
		policy := metav1.DeletePropagationForeground
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), namespace, metav1.DeleteOptions{PropagationPolicy: &policy})
		waitGone(cs.CoreV1().Namespaces().Get, namespace)
	}()
	if err := waitServiceAccount(ctx, env); err != nil {
		return err
	}

	// 2. Argo and the WorkflowTemplate; 3. the images; 4. the database — side by side.
	type result struct {
		what string
		err  error
	}
	results := make(chan result, 2)
	var argo *engines.Argo
	go func() {
		t := time.Now()
		a, err := engines.InstallArgo(ctx, env, engines.ArgoOptions{Namespace: namespace, RepoDir: repo, Logf: say})
		if err == nil {
			err = a.ApplyProject(ctx)
		}
		argo = a
		results <- result{fmt.Sprintf("Argo Workflows installed and workflowtemplates/ applied in %s", time.Since(t).Round(100*time.Millisecond)), err}
	}()
	go func() {
		t := time.Now()
		msg, err := buildImages(ctx, env, repo)
		results <- result{msg + fmt.Sprintf(" (%s)", time.Since(t).Round(100*time.Millisecond)), err}
	}()
	stop := heartbeat("installing Argo Workflows, building the image, starting PostgreSQL", say)
	defer stop() // also stopped below, once both are done
	say("starting PostgreSQL on %s (the cluster bridge only)", env.BridgeIP)
	pg, err := pgenv.Start(pgenv.Options{Listen: env.BridgeIP, AllowCIDRs: []string{env.State().PodCIDR}})
	if err != nil {
		return err
	}
	defer func() {
		if !keep {
			pg.Stop()
		}
	}()
	for range 2 {
		r := <-results
		if r.err != nil {
			return r.err
		}
		say("%s", r.what)
	}
	stop()
	dbName, err := pg.CreateDatabase(ctx, appName)
	if err != nil {
		return err
	}
	db := e2e.Database{Server: pg, Name: dbName}
	if err := e2e.CreateSecret(ctx, cs, namespace, secret, db.URL()); err != nil {
		return err
	}
	app, err := e2e.DeployApp(ctx, cs, namespace, e2e.AppOptions{Name: appName, Replicas: 2, ShutdownDelay: 3 * time.Second})
	if err != nil {
		return err
	}
	say("sample application %q running: Deployment (2 pods), CronJob %s-report, HPA; database %s, Secret %s", appName, appName, dbName, secret)

	set, err := e2e.ReadMigrationSet(filepath.Join(repo, "examples", "migrations"))
	if err != nil {
		return err
	}
	params := map[string]string{
		"image":             imageRef,
		"database-secret":   secret,
		"workload-selector": app.Selector,
	}
	fmt.Printf("\n   argo submit -n %s --from workflowtemplate/chartreuse -p image=%s -p database-secret=%s -p workload-selector=%s\n",
		namespace, imageRef, secret, app.Selector)
	for i, title := range []string{
		fmt.Sprintf("first run: %d example migrations pending", len(set)),
		"second run: nothing pending",
	} {
		wf, err := submitAndReport(ctx, argo, db, app, params, i+1, title)
		if err != nil {
			return err
		}
		if wf.Status.Phase != wfv1.WorkflowSucceeded {
			return fmt.Errorf("run %s ended %s", wf.Name, wf.Status.Phase)
		}
	}
	return nil
}

// buildImages builds the product image and the application's migrations image
// (FROM it + examples/migrations at /migrations) and loads the latter.
func buildImages(ctx context.Context, env *kubeenv.Env, repo string) (string, error) {
	sizes := map[string]int64{}
	img, version, err := build.Image(ctx, repo, build.Options{Sizes: sizes})
	if err != nil {
		return "", err
	}
	img, err = build.WithMigrations(img, filepath.Join(repo, "examples", "migrations"))
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "chartreuse-demo-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	tar := filepath.Join(dir, "image.tar")
	if err := build.WriteTarball(img, imageRef, tar); err != nil {
		return "", err
	}
	st, err := os.Stat(tar)
	if err != nil {
		return "", err
	}
	if err := env.LoadImage(ctx, tar); err != nil {
		return "", err
	}
	return fmt.Sprintf("image %s built (chartreuse %s + examples/migrations, %.0f MiB) and loaded into the node", imageRef, version, float64(st.Size())/(1<<20)), nil
}

func submitAndReport(ctx context.Context, argo *engines.Argo, db e2e.Database, app *e2e.App, params map[string]string, n int, title string) (*wfv1.Workflow, error) {
	cs := argo.Kube
	before, err := db.Version(ctx)
	if err != nil {
		return nil, err
	}
	pods, err := e2e.WatchPods(ctx, cs, namespace, app.Selector)
	if err != nil {
		return nil, err
	}
	defer pods.Stop()
	start := time.Now()
	wf, err := argo.Submit(ctx, engines.ArgoRun{Params: params})
	if err != nil {
		return nil, err
	}
	fmt.Printf("\n== Run %d (%s): workflow %s\n", n, title, wf.Name)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	stop := heartbeat(fmt.Sprintf("   run %d", n), func(format string, args ...any) { fmt.Printf(format+"\n", args...) })
	defer stop()
	wf, err = argo.Wait(wctx, wf.Name, nil)
	if err != nil {
		return nil, err
	}
	// Let the restored pods become Ready before reading the window.
	if wf.Status.Phase == wfv1.WorkflowSucceeded {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
		_ = app.WaitReady(rctx, cs, app.Replicas)
		rcancel()
	}
	stop()
	after, err := db.Version(ctx)
	if err != nil {
		return nil, err
	}
	report(wf, before, after, pods, start)
	return wf, nil
}

func report(wf *wfv1.Workflow, before, after int64, pods *e2e.PodWatch, start time.Time) {
	took := wf.Status.FinishedAt.Sub(wf.Status.StartedAt.Time)
	fmt.Printf("   %s in %s\n", wf.Status.Phase, took.Round(100*time.Millisecond))
	fmt.Printf("   %-22s %-10s %8s %9s\n", "phase", "status", "took", "at")
	var skipped []string
	var scaleDown, migrate engines.ArgoNode
	for _, nd := range engines.ArgoNodes(wf) {
		if nd.Type == wfv1.NodeTypeDAG || nd.Type == wfv1.NodeTypeSteps || strings.HasSuffix(nd.Name, ")") {
			continue // the DAGs themselves and the retry attempts
		}
		if nd.Phase == wfv1.NodeSkipped || nd.Phase == wfv1.NodeOmitted || nd.Started.IsZero() {
			skipped = append(skipped, nd.Name)
			continue
		}
		where := ""
		if nd.BoundaryName != "" && nd.BoundaryName != wf.Name {
			where = " (" + nd.BoundaryName + ")"
		}
		fmt.Printf("   %-22s %-10s %8s %+8.1fs%s\n", nd.Name, nd.Phase, nd.Finished.Sub(nd.Started).Round(100*time.Millisecond),
			nd.Started.Sub(wf.Status.StartedAt.Time).Seconds(), where)
		switch nd.Name {
		case "scale-down":
			scaleDown = nd
		case "migrate":
			migrate = nd
		}
	}
	if len(skipped) > 0 {
		sort.Strings(skipped)
		fmt.Printf("   skipped: %s\n", strings.Join(skipped, ", "))
	}
	out := engines.ArgoOutputs(wf)
	fmt.Printf("   database version: %d -> %d", before, after)
	if plan, ok := engines.ArgoNodeByName(wf, "plan"); ok {
		fmt.Printf(" (plan: pending=%s, %s)", plan.Outputs["pending"], orNone(plan.Outputs["pending-versions"]))
	}
	if migrate.Outputs != nil {
		fmt.Printf("; migrate applied %s", migrate.Outputs["applied"])
	}
	fmt.Println()
	if plan, ok := engines.ArgoNodeByName(wf, "plan"); ok && plan.Outputs["pending"] == "true" {
		reportRisks(plan.Outputs["needs-downtime"], plan.Outputs["risks"])
	}
	if scaleDown.Outputs == nil {
		fmt.Printf("   workloads: none stopped (pending=%s)\n", out["pending"])
		for _, e := range pods.Events() {
			if e.Type == "DELETED" {
				fmt.Printf("   (pod %s was deleted during the run!)\n", e.Name)
			}
		}
		return
	}
	var stopped []string
	_ = json.Unmarshal([]byte(scaleDown.Outputs["workloads"]), &stopped)
	fmt.Printf("   workloads stopped: %s\n", strings.Join(stopped, ", "))
	if f, ok := downtime.Measure(pods, start, migrate.Outputs["sql-seconds"], 0); ok {
		fmt.Printf("   %s\n", f.WindowLine())
		// The floor (issue 13): what no orchestration can save, measured in this run.
		if line := f.FloorLine(); line != "" {
			fmt.Printf("   %s\n", line)
		}
	}
	if d := out["downtime-seconds"]; d != "" {
		fmt.Printf("   scale-restore measured %ss down (recorded stop -> restored and ready: output downtime-seconds, metric argo_workflows_chartreuse_downtime_seconds)\n", d)
	}
	if restore, ok := engines.ArgoNodeByName(wf, "scale-restore"); ok && !restore.Finished.IsZero() {
		fmt.Printf("   CronJob suspended for %s (scale-down end -> scale-restore end)\n", restore.Finished.Sub(scaleDown.Finished).Round(100*time.Millisecond))
	}
}

// reportRisks prints what plan's analysis said of the pending statements: the
// needs-downtime result and each risk (file:line, rule, lock, table and size).
func reportRisks(needsDowntime, risks string) {
	fmt.Printf("   plan: needs-downtime=%s", orNone(needsDowntime))
	var list []sqlrisk.Risk
	if err := json.Unmarshal([]byte(risks), &list); err != nil {
		fmt.Printf("; risks: %s\n", orNone(risks))
		return
	}
	noun := "risks"
	if len(list) == 1 {
		noun = "risk"
	}
	fmt.Printf("; %d lock %s\n", len(list), noun)
	for _, r := range list {
		allowed := ""
		if r.Allowed {
			allowed = " (allowed by the file)"
		}
		fmt.Printf("     %s %s:%d %s: %s on %s (%s)%s\n", r.Level, r.File, r.Line, r.Rule, r.Lock, r.Table, r.Size, allowed)
	}
}

func orNone(s string) string {
	if s == "" || s == "[]" {
		return "none"
	}
	return s
}

func quiet(string, ...any) {}

// heartbeat says "<what>: 40s elapsed" through logf after 10 s and then every
// 30 s (CHARTREUSE_PROGRESS_FIRST and _TICK, in seconds, as
// test/tools/progress.sh) until stop is called, so that no step of the demo is
// silent for long. stop waits for the last line and may be called again.
func heartbeat(what string, logf func(string, ...any)) (stop func()) {
	first, every := interval("CHARTREUSE_PROGRESS_FIRST", 10*time.Second), interval("CHARTREUSE_PROGRESS_TICK", 30*time.Second)
	start := time.Now()
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTimer(first)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				logf("%s: %s elapsed", what, time.Since(start).Round(time.Second))
				t.Reset(every)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-ended
	}
}

// interval reads a duration in seconds from the environment variable name.
func interval(name string, def time.Duration) time.Duration {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil && v > 0 {
		return time.Duration(v * float64(time.Second))
	}
	return def
}

func waitServiceAccount(ctx context.Context, env *kubeenv.Env) error {
	cs, err := env.Clientset()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return e2e.Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(namespace).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

func waitGone[T any](get func(context.Context, string, metav1.GetOptions) (T, error), name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_ = e2e.Poll(ctx, 500*time.Millisecond, func() (bool, error) {
		_, err := get(ctx, name, metav1.GetOptions{})
		return err != nil, nil
	})
}

func repoRoot() (string, error) {
	if r := os.Getenv("CHARTREUSE_REPO"); r != "" {
		return filepath.Abs(r)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module github.com/chartreuse-go/chartreuse\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from the repository (or set CHARTREUSE_REPO)")
		}
		dir = parent
	}
}
