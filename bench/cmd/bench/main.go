// Command bench measures Chartreuse against the alternatives, side by side in one
// run on the same PostgreSQL and the same cluster, and prints a table (also
// written to -out). `make bench` runs it through bench/run.sh; bench/README.md
// explains every figure.
//
// Sections:
//
//  1. nothing to do: migrate --plan --wait-timeout (the workflows' plan step) on an up-to-date database, against
//     goose status (v3.28.0), alembic current and psql -c 'select 1' (the floor);
//  2. applying 1,000 small migrations to an empty database: migrate against goose
//     up, alembic upgrade head and one psql -f of the concatenated SQL (the floor);
//  3. stopping and restoring 200 Deployments: scale-down and scale-restore against
//     client-go UpdateScale calls one after another;
//  4. footprint: binary and image sizes, peak RSS of every step;
//  5. memory: migrate's peak RSS (--plan and a real run) with many applied files,
//     large applied files and large pending files, against an older commit's
//     migrate with -baseline;
//  6. migrations source: migrate --plan of 100 migrations from a directory, git
//     over HTTP (with and without a blob:none filter) and a migrations image;
//  7. risk analysis: migrate --plan with nothing, one and 100 statements
//     pending, i.e. what starting the SQL parser (WebAssembly) costs a plan;
//  8. downtime on the real engines: a sample application whose pods have a
//     shutdown delay and pending migrations, run through Argo Workflows and
//     Tekton; the downtime window against its floor measured in the same run,
//     and the nothing-pending run against one trivial pod on the same engine;
//  9. several databases in one run: 50 databases through one Argo run at
//     parallelism 1, 4 and 8, against 50 single-database runs: wall time, pods,
//     workflow size and the workflow controller's peak memory.
//
// It starts its own PostgreSQL (test/pgenv) and, for sections 3, 8 and 9, connects to
// the test cluster named by CHARTREUSE_TEST_ENV or starts one (test/kubeenv);
// section 6 starts its own git server and registry (test/gitserver,
// test/registry). It needs root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
	"github.com/chartreuse-go/chartreuse/test/stepbin"
)

type config struct {
	repo, binDir, cacheDir, out, work string
	version                           string
	runs1, runs2, runs3               int
	sections                          map[string]bool
	history, many, workloads          int
	defaultLimits                     bool
	kubectlLoop                       bool
	largeMB, runs5                    int
	baseline                          string
	runs6, junkMB                     int
	// section 8
	downApps, downReplicas, downMigrations int
	downDelay                              time.Duration
	runs8, runsNothing8                    int
	// section 9
	dbCount       int
	dbParallelism []int
	dbSingles     string
}

func main() {
	var c config
	var sections string
	flag.StringVar(&c.binDir, "bin", "bin", "directory holding the step binaries built by `make build`")
	flag.StringVar(&c.out, "out", "", "write the table to this file too (default bench/results-<date>.txt)")
	flag.IntVar(&c.runs1, "runs-nothing", 11, "runs per tool in section 1 (median)")
	flag.IntVar(&c.runs2, "runs-apply", 3, "runs per tool in section 2 (median)")
	flag.IntVar(&c.runs3, "runs-workloads", 3, "cycles in section 3 (median)")
	flag.IntVar(&c.history, "history", 100, "applied migrations in the up-to-date database of section 1, and the pending ones of section 6")
	flag.IntVar(&c.many, "migrations", 1000, "migrations applied in section 2")
	flag.IntVar(&c.workloads, "workloads", 200, "Deployments in section 3")
	flag.IntVar(&c.runs5, "runs-memory", 2, "runs per case and binary in section 5 (largest peak RSS)")
	flag.IntVar(&c.largeMB, "large-mb", 60, "size of each large migration file in section 5, in MB")
	flag.StringVar(&c.baseline, "baseline", "", "section 5: also measure the migrate binary of this commit (built once into .cache/bench), e.g. 24d58ca")
	flag.IntVar(&c.runs6, "runs-source", 11, "runs per source in section 6 (median)")
	flag.IntVar(&c.junkMB, "source-junk-mb", 50, "section 6: MiB of other files in the git repository")
	flag.IntVar(&c.downApps, "downtime-apps", 1, "section 8: Deployments of the sample application (each with a CronJob and an HPA)")
	flag.IntVar(&c.downReplicas, "downtime-pods", 3, "section 8: pods of each Deployment")
	flag.DurationVar(&c.downDelay, "downtime-delay", 2*time.Second, "section 8: how long each pod keeps running after SIGTERM")
	flag.IntVar(&c.downMigrations, "downtime-migrations", 4, "section 8: migrations pending in each run")
	flag.IntVar(&c.runs8, "runs-downtime", 1, "section 8: runs with the migrations pending, per engine (a fresh database each)")
	flag.IntVar(&c.runsNothing8, "runs-downtime-nothing", 3, "section 8: nothing-pending runs and one-pod runs after each of them, per engine (median)")
	flag.IntVar(&c.dbCount, "databases", 50, "section 9: databases in one run, and single-database runs")
	var parallelisms string
	flag.StringVar(&parallelisms, "databases-parallelism", "1,4,8", "section 9: the parallelism of each multi-database run")
	flag.StringVar(&c.dbSingles, "databases-singles", "sequential", "section 9: the single-database runs: sequential (each submitted when the one before ended), together (submitted back to back) or none")
	flag.StringVar(&sections, "sections", "1,2,3,4,5,6,7,8,9", "sections to run")
	flag.BoolVar(&c.defaultLimits, "default-limits", true, "section 3: also time the sequential loop once with client-go's default client limits (5 requests/s)")
	flag.BoolVar(&c.kubectlLoop, "kubectl", true, "section 3: also time `kubectl scale` run once per Deployment, once")
	flag.Parse()
	for p := range strings.SplitSeq(parallelisms, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > 64 {
			fmt.Fprintf(os.Stderr, "bench: -databases-parallelism %q: want integers from 1 to 64, e.g. 1,4,8\n", parallelisms)
			os.Exit(2)
		}
		c.dbParallelism = append(c.dbParallelism, n)
	}
	if c.dbSingles != "sequential" && c.dbSingles != "together" && c.dbSingles != "none" {
		fmt.Fprintf(os.Stderr, "bench: -databases-singles %q: want sequential, together or none\n", c.dbSingles)
		os.Exit(2)
	}
	c.sections = map[string]bool{}
	for _, s := range strings.Split(sections, ",") {
		c.sections[strings.TrimSpace(s)] = true
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := 0
	if err := run(ctx, &c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		code = 1
	}
	os.Exit(code)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func run(ctx context.Context, c *config) (err error) {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (PostgreSQL runs as postgres, the cluster needs a kubelet)")
	}
	if c.repo, err = stepbin.RepoDir(); err != nil {
		return err
	}
	if c.version, err = stepbin.Version(c.repo); err != nil {
		return err
	}
	if !filepath.IsAbs(c.binDir) {
		c.binDir = filepath.Join(c.repo, c.binDir)
	}
	for _, s := range stepbin.Steps {
		if _, err := os.Stat(filepath.Join(c.binDir, s)); err != nil {
			return fmt.Errorf("%s: run `make build` first", filepath.Join(c.binDir, s))
		}
	}
	c.cacheDir = filepath.Join(c.repo, ".cache", "bench")
	if err := os.MkdirAll(c.cacheDir, 0o755); err != nil {
		return err
	}
	if c.work, err = os.MkdirTemp("", "chartreuse-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(c.work)
	scratch = c.work
	if c.out == "" {
		c.out = filepath.Join(c.repo, "bench", "results-"+time.Now().UTC().Format("2006-01-02")+".txt")
	}

	rep := &report{started: time.Now().UTC(), cfg: c}
	rep.host()
	var srv *pgenv.Server
	if c.sections["1"] || c.sections["2"] || c.sections["4"] || c.sections["5"] || c.sections["6"] || c.sections["7"] {
		logf("starting PostgreSQL")
		if srv, err = pgenv.Start(pgenv.Options{}); err != nil {
			return err
		}
		defer srv.Stop()
		rep.pgVersion(ctx, srv)
	}
	// A failed section is reported with the others' figures, not instead of them.
	var failed []string
	fail := func(section string, err error) {
		logf("section %s failed: %v", section, err)
		rep.warnings = append(rep.warnings, fmt.Sprintf("section %s failed: %v", section, err))
		failed = append(failed, section)
	}
	if c.sections["1"] {
		if err := sectionNothing(ctx, c, srv, rep); err != nil {
			fail("1", err)
		}
	}
	if c.sections["2"] {
		if err := sectionApply(ctx, c, srv, rep); err != nil {
			fail("2", err)
		}
	}
	if c.sections["3"] {
		if err := withCluster(ctx, func(env *kubeenv.Env) error { return sectionWorkloads(ctx, c, env, rep) }); err != nil {
			fail("3", err)
		}
	}
	if c.sections["8"] {
		if err := withCluster(ctx, func(env *kubeenv.Env) error { return sectionEngines(ctx, c, env, rep) }); err != nil {
			fail("8", err)
		}
	}
	if c.sections["9"] {
		if err := withCluster(ctx, func(env *kubeenv.Env) error { return sectionDatabases(ctx, c, env, rep) }); err != nil {
			fail("9", err)
		}
	}
	if c.sections["4"] {
		if err := sectionFootprint(ctx, c, srv, rep); err != nil {
			fail("4", err)
		}
	}
	if c.sections["5"] {
		if err := sectionMemory(ctx, c, srv, rep); err != nil {
			fail("5", err)
		}
	}
	if c.sections["6"] {
		if err := sectionSource(ctx, c, srv, rep); err != nil {
			fail("6", err)
		}
	}
	if c.sections["7"] {
		if err := sectionRisk(ctx, c, srv, rep); err != nil {
			fail("7", err)
		}
	}
	text := rep.String()
	fmt.Print(text)
	if err := os.WriteFile(c.out, []byte(text), 0o644); err != nil {
		return err
	}
	logf("results written to %s", c.out)
	if len(failed) > 0 {
		return fmt.Errorf("sections %s failed", strings.Join(failed, ", "))
	}
	return nil
}

// withCluster runs section on a cluster (see cluster) and stops it after.
func withCluster(ctx context.Context, section func(*kubeenv.Env) error) error {
	env, err := cluster(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if serr := env.Stop(); serr != nil {
			logf("stopping the cluster: %v", serr)
		}
	}()
	return section(env)
}

// cluster connects to the environment named by CHARTREUSE_TEST_ENV or starts one
// (waiting up to 10 minutes for another test run's environment to go away).
func cluster(ctx context.Context) (*kubeenv.Env, error) {
	if dir := os.Getenv(kubeenv.EnvVar); dir != "" {
		logf("using the test cluster in %s", dir)
		return kubeenv.Connect(dir)
	}
	logf("starting a test cluster (test/kubeenv)")
	// CHARTREUSE_KUBE_AUDIT=1, as for test/env.sh: section 3 then summarizes
	// the API server's audit log (who wrote what while the pods went).
	return kubeenv.Start(ctx, kubeenv.Options{LockWait: 10 * time.Minute, Logf: logf, AuditLog: os.Getenv("CHARTREUSE_KUBE_AUDIT") != ""})
}
