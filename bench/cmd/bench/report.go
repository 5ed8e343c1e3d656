package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/kube"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

type report struct {
	started   time.Time
	cfg       *config
	machine   string
	pg        string
	alembic   string
	nothing   []*series // psql, chartreuse, goose, alembic
	apply     []*series // psql, chartreuse, goose, alembic
	workloads *workloadResult
	footprint *footprint
	memory    *memoryResult
	source    *sourceResult
	risk      *riskResult
	engines   *enginesResult
	databases *databasesResult
	warnings  []string
}

func (r *report) host() {
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	h, _ := os.Hostname()
	r.machine = fmt.Sprintf("%s, %d CPUs, %s, load average at start %s", h, runtime.NumCPU(), runtime.Version(), load)
}

func (r *report) pgVersion(ctx context.Context, srv *pgenv.Server) {
	conn, err := pgx.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&r.pg)
}

type verdict bool

func (v verdict) String() string {
	if v {
		return "met"
	}
	return "MISSED"
}

func (r *report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Chartreuse %s benchmarks — %s\n", r.cfg.version, r.started.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "machine: %s\n", r.machine)
	if r.pg != "" {
		fmt.Fprintf(&b, "PostgreSQL %s (test/pgenv: fsync off, local TCP)\n", r.pg)
	}
	fmt.Fprintf(&b, "wall times are medians (min–max in brackets); peak RSS is the largest ru_maxrss of any run\n")
	if s := r.nothing; s != nil {
		fmt.Fprintf(&b, "\n1. Nothing to do — %d applied migrations, %d runs per tool, interleaved\n", r.cfg.history, len(s[0].samples))
		floor, ours, goose, alembic := s[0], s[1], s[2], s[3]
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "   tool\twall\t\tpeak RSS\tvs psql\tvs chartreuse\n")
		for _, x := range s {
			fmt.Fprintf(tw, "   %s\t%s\t[%s]\t%s\t%.2f×\t%.2f×\n", x.name, ms(x.median()), spread(x.walls()), mib(x.peakAll()),
				ratio(x.median(), floor.median()), ratio(x.median(), ours.median()))
		}
		tw.Flush()
		fmt.Fprintf(&b, "   %s\n", r.alembic)
		fmt.Fprintf(&b, "   targets: within 1.5× of psql: %.2f× %s; faster than goose status: %.2f× its time %s; faster than alembic current: %.2f× its time %s\n",
			ratio(ours.median(), floor.median()), verdict(ratio(ours.median(), floor.median()) <= 1.5),
			ratio(ours.median(), goose.median()), verdict(ours.median() < goose.median()),
			ratio(ours.median(), alembic.median()), verdict(ours.median() < alembic.median()))
	}
	if s := r.apply; s != nil {
		fmt.Fprintf(&b, "\n2. Applying %d migrations to an empty database — %d runs per tool, interleaved, fresh database each\n", r.cfg.many, len(s[0].samples))
		floor, ours, goose := s[0], s[1], s[2]
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "   tool\twall\t\tper migration\tpeak RSS\tvs psql\tvs chartreuse\n")
		for _, x := range s {
			fmt.Fprintf(tw, "   %s\t%s\t[%s]\t%s\t%s\t%.2f×\t%.2f×\n", x.name, ms(x.median()), spread(x.walls()),
				ms(x.median()/time.Duration(r.cfg.many)), mib(x.peakAll()), ratio(x.median(), floor.median()), ratio(x.median(), ours.median()))
		}
		tw.Flush()
		fmt.Fprintf(&b, "   targets: no slower than goose up: %.2f× its time %s; within 3× of psql -f: %.2f× %s\n",
			ratio(ours.median(), goose.median()), verdict(ours.median() <= goose.median()),
			ratio(ours.median(), floor.median()), verdict(ratio(ours.median(), floor.median()) <= 3))
	}
	if w := r.workloads; w != nil && len(w.cycles) > 0 {
		fmt.Fprintf(&b, "\n3. Stopping and restoring %d Deployments (%d with a running pod, %d with a Pending pod, %d at 0) — %d cycles\n",
			w.n, w.running, w.pending, w.n-w.running-w.pending, len(w.cycles))
		fmt.Fprintf(&b, "   sequential: client-go GetScale + UpdateScale one Deployment after another, with the steps' client limits (%d requests/s, burst %d)\n", int(kube.DefaultQPS), kube.DefaultBurst)
		col := func(f func(workloadCycle) time.Duration) []time.Duration {
			var out []time.Duration
			for _, c := range w.cycles {
				out = append(out, f(c))
			}
			return out
		}
		downAPI, seqAPI := col(func(c workloadCycle) time.Duration { return c.downAPI }), col(func(c workloadCycle) time.Duration { return c.seqDownAPI })
		downAll, seqAll := col(func(c workloadCycle) time.Duration { return c.downWall }), col(func(c workloadCycle) time.Duration { return c.seqDownTotal })
		rest, seqRest := col(func(c workloadCycle) time.Duration { return c.restoreWall }), col(func(c workloadCycle) time.Duration { return c.seqRestore })
		restAPI := col(func(c workloadCycle) time.Duration { return c.restoreAPI })
		lat := col(func(c workloadCycle) time.Duration { return c.lastPodToReturn })
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "   measure\tchartreuse\t\tsequential\t\tspeed-up\n")
		row := func(name string, ours, seq []time.Duration) {
			fmt.Fprintf(tw, "   %s\t%s\t[%s]\t%s\t[%s]\t%.2f×\n", name, ms(median(ours)), spread(ours), ms(median(seq)), spread(seq), ratio(median(seq), median(ours)))
		}
		row("scale-down, API part (until every Deployment is recorded and at 0)", downAPI, seqAPI)
		row("scale-down, until its pods are gone (chartreuse: until it returns)", downAll, seqAll)
		row("scale-restore, API part (until every Deployment is back, record removed)", restAPI, seqRest)
		row("scale-restore, until it returns (its Events included)", rest, seqRest)
		tw.Flush()
		if c0 := w.cycles[0]; c0.defDown > 0 {
			fmt.Fprintf(&b, "   sequential UpdateScale with client-go's default limits (5 requests/s, burst 10; first cycle only): scale-down %s (%.1f× chartreuse's API part), restore %s (%.1f× chartreuse's restore API part)\n",
				ms(c0.defDown), ratio(c0.defDown, median(downAPI)), ms(c0.defRestore), ratio(c0.defRestore, median(restAPI)))
		}
		if c0 := w.cycles[0]; c0.kubectlDown > 0 {
			fmt.Fprintf(&b, "   kubectl scale, one process per Deployment (first cycle only): scale-down %s (%.1f× chartreuse's API part), restore %s (%.1f× chartreuse's restore API part)\n",
				ms(c0.kubectlDown), ratio(c0.kubectlDown, median(downAPI)), ms(c0.kubectlRestore), ratio(c0.kubectlRestore, median(restAPI)))
		}
		fmt.Fprintf(&b, "   last pod gone → scale-down returned: %s [%s]\n", ms(median(lat)), spread(lat))
		b.WriteString(w.trace)
		fmt.Fprintf(&b, "   targets: at least 5× faster than sequential: scale-down API %.2f× %s, scale-restore API %.2f× %s; last pod → return under 100 ms: %s %s; until the pods are gone no slower than sequential: %.2f× its time %s\n",
			ratio(median(seqAPI), median(downAPI)), verdict(ratio(median(seqAPI), median(downAPI)) >= 5),
			ratio(median(seqRest), median(restAPI)), verdict(ratio(median(seqRest), median(restAPI)) >= 5),
			ms(median(lat)), verdict(median(lat) < 100*time.Millisecond),
			ratio(median(downAll), median(seqAll)), verdict(median(downAll) <= median(seqAll)))
	}
	if fp := r.footprint; fp != nil {
		fmt.Fprintf(&b, "\n4. Footprint\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "   step\tbinary\tpeak RSS\tmeasured on\n")
		type rss struct {
			kib int64
			on  string
		}
		peaks := map[string][]rss{}
		if s := r.nothing; s != nil {
			peaks["wait-for-db"] = append(peaks["wait-for-db"], rss{s[4].peak(0), "section 1"})
			peaks["migrate"] = append(peaks["migrate"], rss{s[1].peak(0), "section 1 (--plan)"})
		}
		if s := r.apply; s != nil {
			peaks["migrate"] = append(peaks["migrate"], rss{s[1].peak(0), fmt.Sprintf("section 2 (%d migrations)", r.cfg.many)})
		}
		if fp.waitPatroni != nil {
			peaks["wait-patroni"] = append(peaks["wait-patroni"], rss{fp.waitPatroni.peak(0), "roles and default privileges probe, plain PostgreSQL"})
		}
		if w := r.workloads; w != nil {
			var d, rr int64
			for _, c := range w.cycles {
				d, rr = max(d, c.downRSS), max(rr, c.restoreRSS)
			}
			peaks["scale-down"] = append(peaks["scale-down"], rss{d, fmt.Sprintf("section 3 (%d Deployments)", w.n)})
			peaks["scale-restore"] = append(peaks["scale-restore"], rss{rr, fmt.Sprintf("section 3 (%d Deployments)", w.n)})
		}
		worst := int64(0)
		for _, step := range []string{"wait-for-db", "wait-patroni", "scale-down", "migrate", "scale-restore"} {
			ps := peaks[step]
			if len(ps) == 0 {
				ps = []rss{{0, "not measured"}}
			}
			for i, p := range ps {
				size := ""
				if i == 0 {
					size = mib(fp.sizes[step] / 1024)
				}
				fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\n", step, size, mib(p.kib), p.on)
				worst = max(worst, p.kib)
			}
		}
		tw.Flush()
		if fp.image > 0 {
			fmt.Fprintf(&b, "   image (images/build, docker-save tarball, compressed layers): %s\n", mib(fp.image/1024))
		} else {
			fmt.Fprintf(&b, "   image: %s\n", fp.imageNote)
		}
		fmt.Fprintf(&b, "   target: every step under 50 MB peak RSS: largest %s %s\n", mib(worst), verdict(worst*1024 < 50*1000*1000))
	}
	if m := r.memory; m != nil && len(m.cases) == 5 {
		r.memoryTable(&b, m)
	}
	if s := r.source; s != nil {
		r.sourceTable(&b, s)
	}
	if s := r.risk; s != nil {
		r.riskTable(&b, s)
	}
	if s := r.engines; s != nil {
		enginesTable(&b, s)
	}
	if s := r.databases; s != nil {
		databasesTable(&b, s)
	}
	for _, w := range r.warnings {
		fmt.Fprintf(&b, "WARNING: %s\n", w)
	}
	return b.String()
}

// memoryTable prints section 5. Cases, in order: 10 small applied, 1000 small
// applied, 3 large applied + 1 small pending, 1 large pending, 2 large pending.
func (r *report) memoryTable(b *strings.Builder, m *memoryResult) {
	fmt.Fprintf(b, "\n5. Memory of migrate against its migration files — peak RSS (GNU time), largest of %d runs per case and binary\n", m.runs)
	fmt.Fprintf(b, "   each large file: %.1f MB, one CREATE TABLE and %d INSERTs of %d rows; a fresh copy of the database for every run\n",
		float64(m.fileBytes)/1e6, m.stmts, rowsPerInsert)
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "   case")
	for _, l := range m.binaries {
		fmt.Fprintf(tw, "\t%s: --plan\tmigrate", l)
	}
	fmt.Fprintf(tw, "\n")
	for _, c := range m.cases {
		fmt.Fprintf(tw, "   %s", c.name)
		for i := range m.binaries {
			fmt.Fprintf(tw, "\t%s\t%s", mib(c.plan[i]), mib(c.run[i]))
		}
		fmt.Fprintf(tw, "\n")
	}
	tw.Flush()
	small, many, largeApplied, onePending, twoPending := m.cases[0], m.cases[1], m.cases[2], m.cases[3], m.cases[4]
	d := func(a, base int64) string { return fmt.Sprintf("%+.1f MiB", float64(a-base)/1024) }
	fileMiB := float64(m.fileBytes) / (1 << 20)
	for i, l := range m.binaries {
		grow := func(c *memCase) float64 { return float64(c.run[i]-small.run[i]) / 1024 }
		fmt.Fprintf(b, "   %s: applied files: 1000 small vs 10 small %s (--plan), %s (migrate); 3 large vs 10 small %s (--plan, with the risk analysis' parser start for its one small pending file), %s (migrate)\n",
			l, d(many.plan[i], small.plan[i]), d(many.run[i], small.run[i]), d(largeApplied.plan[i], small.plan[i]), d(largeApplied.run[i], small.run[i]))
		fmt.Fprintf(b, "   %s: pending large files, migrate over the 10-small case: one %.1f MiB (%.2f× the file), two %.1f MiB (%.2f× one); --plan: one %s, two %s\n",
			l, grow(onePending), grow(onePending)/fileMiB, grow(twoPending), ratioF(grow(twoPending), grow(onePending)),
			d(onePending.plan[i], small.plan[i]), d(twoPending.plan[i], small.plan[i]))
	}
	fmt.Fprintf(b, "   this build with the Go memory limit pkg/step sets in its pod (90%% of the limit: %s for --plan, %s for migrate): %s: --plan %s, migrate %s\n",
		mib(planPodLimit/1024/10*9), mib(migratePodLimit/1024/10*9), onePending.name, mib(m.podPlan), mib(m.podRun))
	// Targets, for this build; --plan and migrate with a pending large file as in their pods.
	planMax, runMax := m.podPlan, m.podRun
	for _, c := range []*memCase{small, many, largeApplied} {
		planMax, runMax = max(planMax, c.plan[0]), max(runMax, c.run[0])
	}
	runMax = max(runMax, twoPending.run[0])
	// The 3-large-applied case has one small pending file, for which --plan
	// starts the risk analysis' parser (section 7): its growth with the applied
	// files is read on the real run, which does not analyse.
	flat := max(many.plan[0]-small.plan[0], many.run[0]-small.run[0], largeApplied.run[0]-small.run[0]) <= 4*1024
	bounded := float64(twoPending.run[0]-small.run[0]) <= 1.25*float64(onePending.run[0]-small.run[0])
	fmt.Fprintf(b, "   targets (this build): --plan under the plan pod's %s limit: largest %s %s; migrate under its pod's 256 Mi: largest %s %s; no growth with applied files (within 4 MiB): %s; two large pending within 1.25× of one: %s\n",
		mib(planPodLimit/1024), mib(planMax), verdict(planMax < planPodLimit/1024), mib(runMax), verdict(runMax < migratePodLimit/1024), verdict(flat), verdict(bounded))
}

func ratioF(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}
