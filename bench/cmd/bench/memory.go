package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// Section 5: migrate's peak RSS against the number and size of the migration
// files, for --plan and for a real run. A plan pod has a 320 Mi limit and a
// migrate pod 256 Mi, so memory must not grow with the applied files (which
// only need their version) and must be bounded by the largest pending file
// (which has to be parsed to run).

// memCase is one directory against one database state.
type memCase struct {
	name     string
	dir      string
	template string // database the runs start from (cloned for each run)
	plan     []int64
	run      []int64 // peak RSS (KiB) per binary, largest over the runs
}

type memoryResult struct {
	fileBytes int64 // size of one large file
	stmts     int   // INSERT statements in one large file
	runs      int
	binaries  []string
	cases     []*memCase
	// This build on the one-large-pending case with the Go memory limit pkg/step
	// sets in a pod: 90% of the plan pod's and of the migrate pod's limit.
	podPlan, podRun int64
}

// Memory limits of the plan and migrate pods (workflowtemplates, tekton).
const (
	planPodLimit    = 320 << 20 // 256Mi before the risk analysis (its parser start peaks near 270 MiB)
	migratePodLimit = 256 << 20
)

// podGoMemLimit is the GOMEMLIMIT pkg/step derives from a container limit.
func podGoMemLimit(limit int64) string { return fmt.Sprintf("GOMEMLIMIT=%d", limit/10*9) }

// rowsPerInsert is the rows of one INSERT of a large file (about 100 KB).
const rowsPerInsert = 1000

// writeLarge writes a migration of about size bytes: a table and INSERTs of
// 1,000 rows, one row a line (goose's parser reads lines). It returns the number
// of INSERT statements.
func writeLarge(path string, v int, size int64) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	n := int64(0)
	put := func(format string, args ...any) {
		k, _ := fmt.Fprintf(w, format, args...)
		n += int64(k)
	}
	put("-- +goose Up\nCREATE TABLE large_%d (id bigint PRIMARY KEY, payload text NOT NULL);\n", v)
	stmts, id := 0, 0
	for n < size {
		put("INSERT INTO large_%d (id, payload) VALUES\n", v)
		for r := 0; r < rowsPerInsert; r++ {
			id++
			sep := ","
			if r == rowsPerInsert-1 {
				sep = ";"
			}
			put("(%d, 'payload %080d')%s\n", id, id, sep)
		}
		stmts++
	}
	put("-- +goose Down\nDROP TABLE large_%d;\n", v)
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	return stmts, f.Close()
}

func writeSmall(path string, v int) error {
	up, down := migration(v)
	return os.WriteFile(path, []byte("-- +goose Up\n"+up+"\n-- +goose Down\n"+down+"\n"), 0o644)
}

// sectionMemory measures every case with this build's migrate and, with
// -baseline, with the migrate of an older commit, in round-robin order.
func sectionMemory(ctx context.Context, c *config, srv *pgenv.Server, rep *report) error {
	size := int64(c.largeMB) * 1000 * 1000
	logf("section 5: migrate's peak RSS with %d MB migration files, %d runs per case", c.largeMB, c.runs5)
	bins := []struct{ label, path string }{{"this build", c.bin("migrate")}}
	if c.baseline != "" {
		p, label, err := baselineMigrate(ctx, c)
		if err != nil {
			return err
		}
		bins = append(bins, struct{ label, path string }{label, p})
	}
	res := &memoryResult{runs: c.runs5}
	for _, b := range bins {
		res.binaries = append(res.binaries, b.label)
	}

	// The large files are written once and hard-linked into each directory.
	lib := filepath.Join(c.work, "large")
	if err := os.MkdirAll(lib, 0o755); err != nil {
		return err
	}
	for v := 1; v <= 3; v++ {
		n, err := writeLarge(filepath.Join(lib, fmt.Sprintf("%05d_large_%d.sql", v, v)), v, size)
		if err != nil {
			return err
		}
		res.stmts = n
	}
	if st, err := os.Stat(filepath.Join(lib, "00001_large_1.sql")); err == nil {
		res.fileBytes = st.Size()
	}
	mkdir := func(name string, large []int, small []int) (string, error) {
		dir := filepath.Join(c.work, "mem-"+name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		for _, v := range large {
			f := fmt.Sprintf("%05d_large_%d.sql", v, v)
			if err := os.Link(filepath.Join(lib, f), filepath.Join(dir, f)); err != nil {
				return "", err
			}
		}
		for _, v := range small {
			if err := writeSmall(filepath.Join(dir, fmt.Sprintf("%05d_bench_%d.sql", v, v)), v); err != nil {
				return "", err
			}
		}
		return dir, nil
	}
	seq := func(from, to int) []int {
		var out []int
		for v := from; v <= to; v++ {
			out = append(out, v)
		}
		return out
	}
	mb := fmt.Sprintf("%d MB", c.largeMB)
	specs := []struct {
		name         string
		large, small []int
		applyTo      int // versions applied in the template (0: none)
	}{
		{"10 small applied, nothing pending", nil, seq(1, 10), 10},
		{"1000 small applied, nothing pending", nil, seq(1, 1000), 1000},
		{"3 × " + mb + " applied, 1 small pending", []int{1, 2, 3}, []int{4}, 3},
		{"1 × " + mb + " pending", []int{1}, nil, 0},
		{"2 × " + mb + " pending", []int{1, 2}, nil, 0},
	}
	defer func() {
		for _, mc := range res.cases {
			_ = srv.DropDatabase(context.Background(), mc.template)
		}
	}()
	for i, s := range specs {
		dir, err := mkdir(fmt.Sprint(i), s.large, s.small)
		if err != nil {
			return err
		}
		tmpl, err := srv.CreateDatabase(ctx, "bench_mem_tmpl")
		if err != nil {
			return err
		}
		mc := &memCase{name: s.name, dir: dir, template: tmpl, plan: make([]int64, len(bins)), run: make([]int64, len(bins))}
		res.cases = append(res.cases, mc)
		if s.applyTo > 0 {
			logf("  preparing %q (not measured)", s.name)
			argv := []string{c.bin("migrate"), "--dir", dir, "--to", fmt.Sprint(s.applyTo)}
			if _, err := runOnce(ctx, []command{{argv: argv, env: c.stepEnv(srv.URL(tmpl))}}, false); err != nil {
				return err
			}
		}
	}

	clones := 0
	for r := 0; r < c.runs5; r++ {
		for _, mc := range res.cases {
			for bi, b := range bins {
				clones++
				db := fmt.Sprintf("bench_mem_%d", clones)
				if err := srv.Exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()+" TEMPLATE "+pgx.Identifier{mc.template}.Sanitize()); err != nil {
					return err
				}
				env := c.stepEnv(srv.URL(db))
				plan, err := runOnce(ctx, []command{{argv: []string{b.path, "--plan", "--dir", mc.dir}, env: env}}, true)
				if err == nil {
					var run sample
					run, err = runOnce(ctx, []command{{argv: []string{b.path, "--dir", mc.dir}, env: env}}, true)
					if err == nil {
						mc.plan[bi] = max(mc.plan[bi], plan.rss[0])
						mc.run[bi] = max(mc.run[bi], run.rss[0])
					}
				}
				_ = srv.DropDatabase(ctx, db)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", mc.name, b.label, err)
				}
			}
		}
		logf("  run %d/%d done", r+1, c.runs5)
	}
	// Inside its pod, pkg/step gives the Go runtime 90% of the container's limit;
	// here there is none, so the same limit is set through GOMEMLIMIT.
	one := res.cases[3]
	for r := 0; r < c.runs5; r++ {
		clones++
		db := fmt.Sprintf("bench_mem_%d", clones)
		if err := srv.Exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()+" TEMPLATE "+pgx.Identifier{one.template}.Sanitize()); err != nil {
			return err
		}
		env := c.stepEnv(srv.URL(db))
		plan, err := runOnce(ctx, []command{{argv: []string{c.bin("migrate"), "--plan", "--dir", one.dir}, env: append(env, podGoMemLimit(planPodLimit))}}, true)
		if err == nil {
			var run sample
			run, err = runOnce(ctx, []command{{argv: []string{c.bin("migrate"), "--dir", one.dir}, env: append(env, podGoMemLimit(migratePodLimit))}}, true)
			if err == nil {
				res.podPlan, res.podRun = max(res.podPlan, plan.rss[0]), max(res.podRun, run.rss[0])
			}
		}
		_ = srv.DropDatabase(ctx, db)
		if err != nil {
			return fmt.Errorf("%s with the pods' memory limits: %w", one.name, err)
		}
	}
	rep.memory = res
	return nil
}

// baselineMigrate builds the migrate binary of commit c.baseline once into the
// cache (git archive of that commit, then go build as `make build` does) and
// returns its path and a label.
func baselineMigrate(ctx context.Context, c *config) (path, label string, err error) {
	out, err := exec.CommandContext(ctx, "git", "-C", c.repo, "rev-parse", "--short=7", c.baseline+"^{commit}").Output()
	if err != nil {
		return "", "", fmt.Errorf("-baseline %s: not a commit of %s: %v", c.baseline, c.repo, err)
	}
	short := strings.TrimSpace(string(out))
	dir := filepath.Join(c.cacheDir, "migrate-"+short)
	bin := filepath.Join(dir, "migrate")
	label = "at " + short
	if _, err := os.Stat(bin); err == nil {
		return bin, label, nil
	}
	logf("building migrate at %s", short)
	src := filepath.Join(dir, "src")
	if err := os.RemoveAll(src); err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", "", err
	}
	archive := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", c.repo, short, src)
	if b, err := archive.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("extracting %s: %v\n%s", short, err, b)
	}
	ver, err := os.ReadFile(filepath.Join(src, "VERSION"))
	if err != nil {
		return "", "", err
	}
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", "urfave_cli_no_docs",
		"-ldflags", "-s -w -X github.com/chartreuse-go/chartreuse/pkg/version.Version="+strings.TrimSpace(string(ver)),
		"-o", bin, "./steps/migrate")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("building migrate at %s: %v\n%s", short, err, b)
	}
	_ = os.RemoveAll(src)
	return bin, label, nil
}
