package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"k8s.io/client-go/kubernetes"

	"github.com/chartreuse-go/chartreuse/test/e2e"
	"github.com/chartreuse-go/chartreuse/test/engines"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// Section 9: several databases in one run (issue 15), on the real Argo
// controller. N databases, each its own Secret and one tiny migration pending,
// behind one small application: one run with the databases parameter at each
// parallelism, then N single-database runs of fresh databases. Per case: wall
// time (submit → every run done), the pods the runs started (their pod nodes,
// retries included), the largest workflow object and its node count, and the
// workflow controller's peak resident memory while the case ran (VmHWM of its
// process, reset before the case through /proc/<pid>/clear_refs).

const benchDatabasesImage = "chartreuse.local/bench-migrations:databases"

// databasesCase is one measured case of section 9.
type databasesCase struct {
	what      string
	wall      time.Duration
	pods      int
	nodes     int   // of the largest workflow
	objectKB  int   // the largest workflow object as stored, JSON
	peakRSS   int64 // KiB; 0 when not measured
	baseRSS   int64 // KiB, the controller's resident memory before the case
	runs      int
	compacted bool // the controller compressed a workflow's node status
	// One run's phases (a multi-database run): first pod start → last pod end.
	phases runPhases
}

// runPhases are the spans of a databases run's phases, from its pod nodes.
type runPhases struct {
	plan, migrate time.Duration
	// down: scale-down's pod starting → scale-restore's pod ending, the
	// application's stop as far as the run is concerned.
	down time.Duration
}

// phasesOf reads the phases from a workflow's nodes; zero where a phase's pods
// did not all start and end.
func phasesOf(nodes []engines.ArgoNode) runPhases {
	first, last := map[string]time.Time{}, map[string]time.Time{}
	for _, n := range nodes {
		if n.Type != wfv1.NodeTypePod || n.Started.IsZero() || n.Finished.IsZero() {
			continue
		}
		if f, ok := first[n.Template]; !ok || n.Started.Before(f) {
			first[n.Template] = n.Started
		}
		if l, ok := last[n.Template]; !ok || n.Finished.After(l) {
			last[n.Template] = n.Finished
		}
	}
	span := func(from, to string) time.Duration {
		f, ok1 := first[from]
		l, ok2 := last[to]
		if !ok1 || !ok2 || l.Before(f) {
			return 0
		}
		return l.Sub(f)
	}
	return runPhases{
		plan:    span("plan-db-pod", "plan-db-pod"),
		migrate: span("migrate-db-pod", "migrate-db-pod"),
		down:    span("scale-down-pod", "scale-restore-pod"),
	}
}

type databasesResult struct {
	n       int
	version string
	cases   []databasesCase
}

func sectionDatabases(ctx context.Context, c *config, env *kubeenv.Env, rep *report) error {
	res := &databasesResult{n: c.dbCount}
	rep.databases = res
	cs, err := env.Clientset()
	if err != nil {
		return err
	}
	ns := fmt.Sprintf("bench-databases-%d", time.Now().Unix()%100000)
	remove, err := benchNamespace(ctx, cs, ns)
	if err != nil {
		return err
	}
	defer remove()
	logf("section 9: installing Argo Workflows, building the image with one migration")
	t0 := time.Now()
	var (
		wg             sync.WaitGroup
		argo           *engines.Argo
		argoErr, imErr error
	)
	wg.Go(func() {
		argo, argoErr = engines.InstallArgo(ctx, env, engines.ArgoOptions{Namespace: ns, RepoDir: c.repo, Logf: logf})
		if argoErr == nil {
			argoErr = argo.ApplyProject(ctx)
		}
	})
	wg.Go(func() {
		var tar string
		tar, imErr = e2e.BuildTestImage(ctx, c.repo, c.work, benchDatabasesImage, migrationSet(1), nil)
		if imErr == nil {
			imErr = env.LoadImage(ctx, tar)
		}
	})
	pg, err := pgenv.Start(pgenv.Options{Listen: env.BridgeIP, AllowCIDRs: []string{env.State().PodCIDR}})
	if err != nil {
		wg.Wait()
		return err
	}
	defer pg.Stop()
	wg.Wait()
	if err := errors.Join(argoErr, imErr); err != nil {
		return err
	}
	res.version = argo.Version
	logf("section 9: set-up took %s", time.Since(t0).Round(100*time.Millisecond))
	app, err := e2e.DeployApp(ctx, cs, ns, e2e.AppOptions{Name: "bench-tenants", Replicas: 1, ShutdownDelay: time.Second})
	if err != nil {
		return err
	}
	b := &databasesBench{c: c, cs: cs, ns: ns, pg: pg, argo: argo, selector: app.Selector}

	for _, p := range c.dbParallelism {
		secrets, err := b.databases(ctx, fmt.Sprintf("p%d", p))
		if err != nil {
			return err
		}
		var list []map[string]string
		for _, s := range secrets {
			list = append(list, map[string]string{"secret": s})
		}
		raw, err := json.Marshal(list)
		if err != nil {
			return err
		}
		params := b.params(secrets[0])
		params["databases"], params["parallelism"] = string(raw), strconv.Itoa(p)
		dc, err := b.measure(ctx, fmt.Sprintf("one run, %d databases, parallelism %d", c.dbCount, p), []map[string]string{params}, false)
		if err != nil {
			return err
		}
		res.cases = append(res.cases, dc)
		if err := b.wantMigrated(ctx, secrets); err != nil {
			return err
		}
	}
	if c.dbSingles != "none" {
		secrets, err := b.databases(ctx, "single")
		if err != nil {
			return err
		}
		var runs []map[string]string
		for _, s := range secrets {
			runs = append(runs, b.params(s))
		}
		together := c.dbSingles == "together"
		what := fmt.Sprintf("%d single-database runs, each submitted when the one before ended", c.dbCount)
		if together {
			what = fmt.Sprintf("%d single-database runs, submitted back to back", c.dbCount)
		}
		dc, err := b.measure(ctx, what, runs, together)
		if err != nil {
			return err
		}
		res.cases = append(res.cases, dc)
		if err := b.wantMigrated(ctx, secrets); err != nil {
			return err
		}
	}
	return nil
}

type databasesBench struct {
	c        *config
	cs       kubernetes.Interface
	ns       string
	pg       *pgenv.Server
	argo     *engines.Argo
	selector string
	dbs      map[string]e2e.Database // by Secret
}

// databases creates c.dbCount fresh databases, a Secret each, and returns the
// Secrets' names.
func (b *databasesBench) databases(ctx context.Context, tag string) ([]string, error) {
	if b.dbs == nil {
		b.dbs = map[string]e2e.Database{}
	}
	var secrets []string
	for i := range b.c.dbCount {
		name, err := b.pg.CreateDatabase(ctx, "tenant")
		if err != nil {
			return nil, err
		}
		db := e2e.Database{Server: b.pg, Name: name}
		secret := fmt.Sprintf("tenant-%s-%02d", tag, i)
		if err := e2e.CreateSecret(ctx, b.cs, b.ns, secret, db.URL()); err != nil {
			return nil, err
		}
		b.dbs[secret] = db
		secrets = append(secrets, secret)
	}
	return secrets, nil
}

func (b *databasesBench) params(secret string) map[string]string {
	return map[string]string{"image": benchDatabasesImage, "database-secret": secret, "workload-selector": b.selector}
}

// wantMigrated fails unless every database is at version 1.
func (b *databasesBench) wantMigrated(ctx context.Context, secrets []string) error {
	for _, s := range secrets {
		if v, err := b.dbs[s].Version(ctx); err != nil || v != 1 {
			return fmt.Errorf("database of %s at version %d after the runs, want 1 (%v)", s, v, err)
		}
	}
	return nil
}

// measure submits the runs (one after another's end, or all at once) and
// waits for them all; every run must succeed.
func (b *databasesBench) measure(ctx context.Context, what string, runs []map[string]string, together bool) (databasesCase, error) {
	dc := databasesCase{what: what, runs: len(runs)}
	pid, pidErr := controllerPID()
	if pidErr == nil {
		dc.baseRSS = procStatusKiB(pid, "VmRSS")
		if err := os.WriteFile(filepath.Join("/proc", strconv.Itoa(pid), "clear_refs"), []byte("5"), 0); err != nil {
			pidErr = fmt.Errorf("resetting the controller's peak RSS: %w", err)
		}
	}
	logf("section 9: %s", what)
	start := time.Now()
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	one := func(params map[string]string) {
		wf, err := b.argo.Submit(ctx, engines.ArgoRun{Params: params})
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, 60*time.Minute)
			wf, err = b.argo.Wait(wctx, wf.Name, nil)
			cancel()
		}
		if err == nil && wf.Status.Phase != wfv1.WorkflowSucceeded {
			err = fmt.Errorf("workflow %s ended %s\n%s", wf.Name, wf.Status.Phase, engines.ArgoDescribe(wf))
		}
		var size engines.ArgoSize
		if err == nil {
			size, err = b.argo.StoredSize(ctx, wf.Name)
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		nodes := engines.ArgoNodes(wf)
		if len(runs) == 1 {
			dc.phases = phasesOf(nodes)
		}
		for _, nd := range nodes {
			if nd.Type == wfv1.NodeTypePod {
				dc.pods++
			}
		}
		if size.Total/1000 > dc.objectKB {
			dc.objectKB, dc.nodes = size.Total/1000, len(nodes)
		}
		dc.compacted = dc.compacted || size.Compressed
	}
	for _, p := range runs {
		if together {
			wg.Go(func() { one(p) })
			continue
		}
		one(p)
		if len(errs) > 0 {
			break
		}
	}
	wg.Wait()
	dc.wall = time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return dc, err
	}
	if pidErr == nil {
		dc.peakRSS = procStatusKiB(pid, "VmHWM")
	} else {
		logf("section 9: the controller's memory is not measured: %v", pidErr)
	}
	logf("section 9: %s: %s, %d pods, peak controller RSS %s", what, ms(dc.wall), dc.pods, mib(dc.peakRSS))
	return dc, nil
}

// controllerPID finds the workflow controller's process on this node (its
// command name, cut to 15 bytes by the kernel).
func controllerPID() (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err == nil && strings.TrimSpace(string(comm)) == "workflow-contro" {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("found %d workflow-controller processes, want 1", len(found))
	}
	return found[0], nil
}

// procStatusKiB reads one "kB" field of /proc/<pid>/status (0 when absent).
func procStatusKiB(pid int, field string) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// databasesTable prints section 9.
func databasesTable(b *strings.Builder, s *databasesResult) {
	fmt.Fprintf(b, "\n9. Several databases in one run — %d databases (a Secret each, one tiny migration pending), one application (1 pod), Argo Workflows %s\n", s.n, s.version)
	fmt.Fprintf(b, "   plan, migrate: a run's first pod of the phase starting → its last ending; stopped: scale-down's pod starting → scale-restore's ending\n")
	fmt.Fprintf(b, "   wall: submit → every run done; pods: the runs' pod nodes (retries included); object: the largest workflow as stored; controller RSS: peak while the case ran (its resident memory before)\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "   case\twall\tplan\tmigrate\tstopped\tpods\tnodes\tobject\tcontroller RSS\n")
	for _, c := range s.cases {
		obj := fmt.Sprintf("%d KB", c.objectKB)
		if c.compacted {
			obj += " (nodes compressed)"
		}
		rss := "not measured"
		if c.peakRSS > 0 {
			rss = fmt.Sprintf("%s (from %s)", mib(c.peakRSS), mib(c.baseRSS))
		}
		phase := func(d time.Duration) string {
			if d == 0 {
				return "-"
			}
			return ms(d)
		}
		fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", c.what, ms(c.wall), phase(c.phases.plan), phase(c.phases.migrate), phase(c.phases.down),
			c.pods, c.nodes, obj, rss)
	}
	tw.Flush()
}
