package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"knative.dev/pkg/apis"

	"github.com/chartreuse-go/chartreuse/test/downtime"
	"github.com/chartreuse-go/chartreuse/test/e2e"
	"github.com/chartreuse-go/chartreuse/test/engines"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// Section 8: downtime on the real engines (issue 13). A sample application
// (e2e.DeployApp: Deployments whose pods keep running for a shutdown delay
// after SIGTERM, a CronJob and an HPA each) and M pending migrations, run
// through the project's WorkflowTemplate on Argo Workflows and its Pipeline on
// Tekton; the window and its floor read from the application's pods
// (test/downtime, as make demo prints them); then, on the same engine, the
// nothing-pending run against one trivial pod.

// engineResult is one engine's figures.
type engineResult struct {
	name    string
	pending []pendingRun
	nothing []time.Duration // nothing-pending runs: submit → end
	onePod  []time.Duration // one trivial pod (Argo: the template's pull-image entrypoint; Tekton: a one-step TaskRun): submit → end
	trivial string          // what the one pod is
}

// pendingRun is one run with the migrations pending.
type pendingRun struct {
	fig      downtime.Figures
	measured bool
	wall     time.Duration // submit → end
	phases   string        // the steps' own durations, in start order
}

type enginesResult struct {
	apps, replicas, migrations int
	delay                      time.Duration
	engines                    []*engineResult
}

const benchMigrationsImage = "chartreuse.local/bench-migrations:downtime"

// migrationSet is m small goose migrations: each creates a table and inserts a row.
func migrationSet(m int) e2e.MigrationSet {
	set := e2e.MigrationSet{}
	for i := 1; i <= m; i++ {
		set[fmt.Sprintf("%05d_bench_%d.sql", i, i)] = fmt.Sprintf(`-- +goose Up
CREATE TABLE bench_%[1]d (id bigint PRIMARY KEY, note text NOT NULL);
INSERT INTO bench_%[1]d VALUES (1, 'row');

-- +goose Down
DROP TABLE bench_%[1]d;
`, i)
	}
	return set
}

func sectionEngines(ctx context.Context, c *config, env *kubeenv.Env, rep *report) error {
	res := &enginesResult{apps: c.downApps, replicas: c.downReplicas, migrations: c.downMigrations, delay: c.downDelay}
	rep.engines = res
	cs, err := env.Clientset()
	if err != nil {
		return err
	}
	suffix := time.Now().Unix() % 100000
	argoNS, tektonNS := fmt.Sprintf("bench-argo-%d", suffix), fmt.Sprintf("bench-tekton-%d", suffix)
	for _, ns := range []string{argoNS, tektonNS} {
		remove, err := benchNamespace(ctx, cs, ns)
		if err != nil {
			return err
		}
		defer remove()
	}

	// Set-up side by side: both engines, the image, the database server.
	logf("section 8: installing Argo Workflows and Tekton, building the image with %d migrations", c.downMigrations)
	t0 := time.Now()
	var wg sync.WaitGroup
	var argo *engines.Argo
	var tk *engines.Tekton
	var argoErr, tkErr, imgErr error
	wg.Go(func() {
		argo, argoErr = engines.InstallArgo(ctx, env, engines.ArgoOptions{Namespace: argoNS, RepoDir: c.repo, Logf: logf})
		if argoErr == nil {
			argoErr = argo.ApplyProject(ctx)
		}
	})
	wg.Go(func() {
		tk, tkErr = engines.InstallTekton(ctx, env, engines.TektonOptions{RepoDir: c.repo, Logf: logf})
		if tkErr == nil {
			tkErr = tk.ApplyProject(ctx, tektonNS)
		}
	})
	wg.Go(func() {
		var tar string
		tar, imgErr = e2e.BuildTestImage(ctx, c.repo, c.work, benchMigrationsImage, migrationSet(c.downMigrations), nil)
		if imgErr == nil {
			imgErr = env.LoadImage(ctx, tar)
		}
	})
	pg, err := pgenv.Start(pgenv.Options{Listen: env.BridgeIP, AllowCIDRs: []string{env.State().PodCIDR}})
	if err != nil {
		wg.Wait()
		return err
	}
	defer pg.Stop()
	wg.Wait()
	if err := errors.Join(argoErr, tkErr, imgErr); err != nil {
		return err
	}
	logf("section 8: set-up took %s", time.Since(t0).Round(100*time.Millisecond))

	argoRes := &engineResult{name: "Argo Workflows " + argo.Version, trivial: "the template's pull-image entrypoint (one pod: wait-for-db --version)"}
	res.engines = append(res.engines, argoRes)
	if err := runEngine(ctx, c, cs, pg, argoNS, argoRes, argoRunner{argo}); err != nil {
		return fmt.Errorf("argo: %w", err)
	}
	tkRes := &engineResult{name: "Tekton Pipelines " + tk.Version, trivial: "a one-step TaskRun (wait-for-db --version), as chartreuse-pipeline"}
	res.engines = append(res.engines, tkRes)
	if err := runEngine(ctx, c, cs, pg, tektonNS, tkRes, tektonRunner{tk, tektonNS}); err != nil {
		return fmt.Errorf("tekton: %w", err)
	}
	return nil
}

// runner runs the project's pipeline on one engine.
type runner interface {
	// full runs the whole pipeline with params and returns migrate's
	// sql-seconds ("" when it did not run) and the steps' durations.
	full(ctx context.Context, params map[string]string) (sqlSeconds, phases string, err error)
	// onePod runs one trivial pod on the engine and waits for its end.
	onePod(ctx context.Context) error
}

func runEngine(ctx context.Context, c *config, cs kubernetes.Interface, pg *pgenv.Server, ns string, res *engineResult, r runner) error {
	var names []string
	var apps []*e2e.App
	for i := range c.downApps {
		name := fmt.Sprintf("bench-app-%02d", i)
		app, err := e2e.DeployApp(ctx, cs, ns, e2e.AppOptions{Name: name, Replicas: int32(c.downReplicas), ShutdownDelay: c.downDelay})
		if err != nil {
			return err
		}
		names = append(names, name)
		apps = append(apps, app)
	}
	selector := "app.kubernetes.io/name in (" + strings.Join(names, ",") + ")"
	pods := c.downApps * c.downReplicas
	// The node runs at most 110 pods: remove this engine's application before
	// the next engine's starts.
	defer removeApps(cs, ns, selector)
	logf("section 8: %s: %d Deployments × %d pods running (%s shutdown delay)", res.name, c.downApps, c.downReplicas, c.downDelay)
	for run := range c.runs8 {
		dbName, err := pg.CreateDatabase(ctx, "bench")
		if err != nil {
			return err
		}
		db := e2e.Database{Server: pg, Name: dbName}
		secret := fmt.Sprintf("bench-db-%d", run)
		if err := e2e.CreateSecret(ctx, cs, ns, secret, db.URL()); err != nil {
			return err
		}
		params := map[string]string{"image": benchMigrationsImage, "database-secret": secret, "workload-selector": selector}

		// Migrations pending: the window and its floor.
		watch, err := e2e.WatchPods(ctx, cs, ns, selector)
		if err != nil {
			return err
		}
		start := time.Now()
		sql, phases, err := r.full(ctx, params)
		wall := time.Since(start)
		if err == nil {
			// scale-restore does not wait for readiness by default: wait for the
			// application, then for the watch to have seen it.
			wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			for _, a := range apps {
				if err = a.WaitReady(wctx, cs, a.Replicas); err != nil {
					break
				}
			}
			downtime.WaitWindow(wctx, watch, start)
			cancel()
		}
		watch.Stop()
		if err != nil {
			return err
		}
		fig, ok := downtime.Measure(watch, start, sql, pods)
		res.pending = append(res.pending, pendingRun{fig: fig, measured: ok, wall: wall, phases: phases})
		if ok {
			logf("section 8: %s: %s; %s", res.name, fig.WindowLine(), fig.FloorLine())
		}
		if v, err := db.Version(ctx); err != nil || v != int64(c.downMigrations) {
			return fmt.Errorf("database at version %d after the run, want %d (%v)", v, c.downMigrations, err)
		}

		// Nothing pending against one trivial pod, alternately.
		for range c.runsNothing8 {
			t := time.Now()
			if _, _, err := r.full(ctx, params); err != nil {
				return fmt.Errorf("nothing pending: %w", err)
			}
			res.nothing = append(res.nothing, time.Since(t))
			t = time.Now()
			if err := r.onePod(ctx); err != nil {
				return fmt.Errorf("one pod: %w", err)
			}
			res.onePod = append(res.onePod, time.Since(t))
		}
		logf("section 8: %s: nothing pending %s, one pod %s", res.name, ms(median(res.nothing)), ms(median(res.onePod)))
	}
	return nil
}

// removeApps deletes the application's Deployments (and their pods) and
// CronJobs, and waits up to two minutes for the pods to be gone.
func removeApps(cs kubernetes.Interface, ns, selector string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bg := metav1.DeletePropagationBackground
	del := metav1.DeleteOptions{PropagationPolicy: &bg}
	list := metav1.ListOptions{LabelSelector: selector}
	if err := cs.AppsV1().Deployments(ns).DeleteCollection(ctx, del, list); err != nil {
		logf("section 8: removing the application in %s: %v", ns, err)
	}
	_ = cs.BatchV1().CronJobs(ns).DeleteCollection(ctx, del, list)
	err := pollUntil(ctx, 2*time.Minute, func() bool {
		p, err := cs.CoreV1().Pods(ns).List(ctx, list)
		return err == nil && len(p.Items) == 0
	})
	if err != nil {
		logf("section 8: the application's pods in %s not gone: %v", ns, err)
	}
}

type argoRunner struct{ a *engines.Argo }

func (r argoRunner) full(ctx context.Context, params map[string]string) (string, string, error) {
	wf, err := r.wait(ctx, engines.ArgoRun{Params: params})
	if err != nil {
		return "", "", err
	}
	var phases []string
	sql := ""
	for _, nd := range engines.ArgoNodes(wf) {
		if nd.Type != wfv1.NodeTypePod || nd.Started.IsZero() || nd.Finished.IsZero() {
			continue
		}
		phases = append(phases, fmt.Sprintf("%s %s", strings.TrimSuffix(nd.Name, "(0)"), nd.Finished.Sub(nd.Started).Round(100*time.Millisecond)))
	}
	if m, ok := engines.ArgoNodeByName(wf, "migrate"); ok {
		sql = m.Outputs["sql-seconds"]
	}
	return sql, strings.Join(phases, ", "), nil
}

func (r argoRunner) onePod(ctx context.Context) error {
	_, err := r.wait(ctx, engines.ArgoRun{Entrypoint: "pull-image", Params: map[string]string{"image": benchMigrationsImage, "database-secret": "bench-db-0"}})
	return err
}

func (r argoRunner) wait(ctx context.Context, run engines.ArgoRun) (*wfv1.Workflow, error) {
	wf, err := r.a.Submit(ctx, run)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	wf, err = r.a.Wait(wctx, wf.Name, nil)
	if err != nil {
		return nil, err
	}
	if wf.Status.Phase != wfv1.WorkflowSucceeded {
		return nil, fmt.Errorf("workflow %s ended %s\n%s\n%s", wf.Name, wf.Status.Phase, engines.ArgoDescribe(wf), r.a.StepLogs(ctx, wf, 20))
	}
	return wf, nil
}

type tektonRunner struct {
	tk *engines.Tekton
	ns string
}

func (r tektonRunner) full(ctx context.Context, params map[string]string) (string, string, error) {
	pr, err := r.tk.ExamplePipelineRun()
	if err != nil {
		return "", "", err
	}
	for _, k := range []string{"image", "database-secret", "workload-selector"} {
		engines.SetTektonParam(&pr.Spec.Params, k, params[k])
	}
	created, err := r.tk.CreatePipelineRun(ctx, r.ns, pr)
	if err != nil {
		return "", "", err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	done, err := r.tk.WaitPipelineRun(wctx, r.ns, created.Name)
	if err != nil {
		return "", "", err
	}
	if !engines.Succeeded(done.Status.GetCondition(apis.ConditionSucceeded)) {
		return "", "", fmt.Errorf("%s", r.tk.DescribeRun(ctx, done))
	}
	trs, err := r.tk.ChildTaskRuns(ctx, done)
	if err != nil {
		return "", "", err
	}
	type phase struct {
		name string
		at   time.Time
		took time.Duration
	}
	var list []phase
	for name, tr := range trs {
		if tr.Status.StartTime == nil || tr.Status.CompletionTime == nil {
			continue
		}
		list = append(list, phase{name, tr.Status.StartTime.Time, tr.Status.CompletionTime.Sub(tr.Status.StartTime.Time)})
	}
	slices.SortFunc(list, func(a, b phase) int { return a.at.Compare(b.at) })
	var phases []string
	for _, p := range list {
		phases = append(phases, fmt.Sprintf("%s %s", p.name, p.took.Round(100*time.Millisecond)))
	}
	sql := ""
	if m, ok := trs["migrate"]; ok {
		sql = engines.TaskRunResults(m)["sql-seconds"]
	}
	return sql, strings.Join(phases, ", "), nil
}

func (r tektonRunner) onePod(ctx context.Context) error {
	tr := &pipelinev1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-one-pod-"},
		Spec: pipelinev1.TaskRunSpec{
			ServiceAccountName: "chartreuse-pipeline",
			PodTemplate: &pod.Template{SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532), FSGroup: ptr.To[int64](65532),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			}},
			TaskSpec: &pipelinev1.TaskSpec{Steps: []pipelinev1.Step{{
				Name:    "version",
				Image:   benchMigrationsImage,
				Command: []string{"/usr/local/bin/wait-for-db"},
				Args:    []string{"--version"},
				SecurityContext: &corev1.SecurityContext{
					RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
			}}},
		},
	}
	created, err := r.tk.CreateTaskRun(ctx, r.ns, tr)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	done, err := r.tk.WaitTaskRun(wctx, r.ns, created.Name)
	if err != nil {
		return err
	}
	if !engines.Succeeded(done.Status.GetCondition(apis.ConditionSucceeded)) {
		return fmt.Errorf("TaskRun %s: %s", done.Name, engines.RunCondition(done.Status.GetCondition(apis.ConditionSucceeded)))
	}
	return nil
}

// enginesTable prints section 8.
func enginesTable(b *strings.Builder, s *enginesResult) {
	fmt.Fprintf(b, "\n8. Downtime on the real engines — %d Deployment(s) × %d pods (shutdown delay %s, readiness probe every 1 s), %d migrations pending\n",
		s.apps, s.replicas, s.delay, s.migrations)
	fmt.Fprintf(b, "   window: first application pod stopping → first new pod Ready; floor: pods terminating (first stopping → last gone) + migrate's sql-seconds + a new pod starting (seen → Ready), same run\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "   engine\trun\twindow\tfloor\t= terminating\t+ SQL\t+ starting\twindow/floor\tall pods Ready again\n")
	for _, e := range s.engines {
		for _, p := range e.pending {
			if !p.measured {
				fmt.Fprintf(tw, "   %s\t%s\tnot measured (no pod stopped, or none came back)\t\t\t\t\t\t\n", e.name, ms(p.wall))
				continue
			}
			f := p.fig
			all := "-"
			if !f.AllUp.IsZero() {
				all = ms(f.AllUp.Sub(f.Down))
			}
			fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f×\t%s\n", e.name, ms(p.wall), ms(f.Window), ms(f.Floor),
				ms(f.Stopping), ms(f.SQL), ms(f.Starting), f.Ratio(), all)
		}
	}
	tw.Flush()
	for _, e := range s.engines {
		for _, p := range e.pending {
			fmt.Fprintf(b, "   %s steps (the engine's times, whole seconds): %s\n", e.name, p.phases)
		}
	}
	fmt.Fprintf(b, "   nothing pending (submit → run done, seen by polling every 250 ms) against one trivial pod on the same engine:\n")
	tw = tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "   engine\tnothing pending\t\tone pod\t\tratio\tone pod is\n")
	for _, e := range s.engines {
		if len(e.nothing) == 0 || len(e.onePod) == 0 {
			continue
		}
		fmt.Fprintf(tw, "   %s\t%s\t[%s]\t%s\t[%s]\t%.2f×\t%s\n", e.name, ms(median(e.nothing)), spread(e.nothing),
			ms(median(e.onePod)), spread(e.onePod), ratio(median(e.nothing), median(e.onePod)), e.trivial)
	}
	tw.Flush()
	for _, e := range s.engines {
		var targets []string
		for _, p := range e.pending {
			if p.fig.Floor > 0 {
				targets = append(targets, fmt.Sprintf("window within 1.5× the floor: %.2f× %s", p.fig.Ratio(), verdict(p.fig.Ratio() <= 1.5)))
			}
		}
		if len(e.nothing) > 0 && len(e.onePod) > 0 {
			r := ratio(median(e.nothing), median(e.onePod))
			targets = append(targets, fmt.Sprintf("nothing pending costs one pod start (within 1.5× of it): %.2f× %s", r, verdict(r <= 1.5)))
		}
		if len(targets) > 0 {
			fmt.Fprintf(b, "   targets (issue 13), %s: %s\n", e.name, strings.Join(targets, "; "))
		}
	}
}
