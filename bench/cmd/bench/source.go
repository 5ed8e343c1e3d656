package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/chartreuse-go/chartreuse/test/gitserver"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
	"github.com/chartreuse-go/chartreuse/test/registry"
)

// Section 6: what the place migrate takes its migrations from costs a plan.
// The same small migrations (-history, 100), all pending on an empty database,
// are read from a directory, from git over HTTP (with and without the server
// allowing a blob:none filter, in a repository that also holds other files)
// and from a migrations image in a local registry.

// sourceRow is what one source's server sent in a run: the most of any run
// (runs differ only by git's progress messages); -1 when there is no server.
type sourceRow struct {
	bytes, requests int64
}

type sourceResult struct {
	n         int
	junkBytes int64 // other files in the git repository
	junkFiles int
	layer     int64  // the image's layer, compressed
	git       string // git's version (the server's http-backend)
	series    []*series
	rows      []sourceRow
}

// Files beside the migrations in the git repository: random, so that neither
// zlib nor git's deltas shrink them.
const sourceJunkFile = 1 << 20

func sectionSource(ctx context.Context, c *config, srv *pgenv.Server, rep *report) error {
	n := c.history
	logf("section 6: migrate --plan of %d migrations from a directory, git and an image, %d runs per source", n, c.runs6)
	return withTB(c.work, func(tb *benchTB) error {
		dir := filepath.Join(c.work, "source-dir")
		if err := writeGoose(dir, n); err != nil {
			return err
		}
		migrations := map[string]string{}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				return err
			}
			migrations[e.Name()] = string(b)
		}
		res := &sourceResult{n: n, junkFiles: c.junkMB, junkBytes: int64(c.junkMB) * sourceJunkFile}

		// git: one repository that allows a filter, one that refuses it, both
		// with the same commit: the migrations under db/migrations and junk.
		logf("  preparing the git repositories (%d MiB of other files, packed; not measured)", c.junkMB)
		gs := gitserver.Start(tb, "127.0.0.1:0")
		tree := map[string]string{"README.md": "bench\n"}
		for name, body := range migrations {
			tree["db/migrations/"+name] = body
		}
		rng := rand.NewChaCha8([32]byte{6}) // the same files every run
		for i := range c.junkMB {
			b := make([]byte, sourceJunkFile)
			_, _ = rng.Read(b)
			tree[fmt.Sprintf("assets/blob-%03d.bin", i)] = string(b)
		}
		repos := map[bool]*gitserver.Repo{}
		for _, filter := range []bool{true, false} {
			r := gs.NewRepo(tb, fmt.Sprintf("bench-filter-%t", filter), gitserver.AllowFilter(filter))
			r.Commit(tb, tree, "migrations and assets")
			// A forge serves packed repositories: pack-objects then copies the
			// stored objects instead of compressing loose ones for every fetch.
			repack := exec.CommandContext(ctx, "git", "--git-dir", r.Dir(), "repack", "-a", "-d", "-q")
			repack.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
			if out, err := repack.CombinedOutput(); err != nil {
				return fmt.Errorf("git repack %s: %v\n%s", r.Dir(), err, out)
			}
			repos[filter] = r
		}
		clear(tree)
		if out, err := exec.CommandContext(ctx, "git", "--version").Output(); err == nil {
			res.git = strings.TrimSpace(string(out))
		}

		// The image: one layer holding /migrations, pulled through a proxy that
		// counts what the registry sent.
		logf("  preparing the migrations image (not measured)")
		reg := registry.Start(tb, "127.0.0.1:0")
		files := map[string]string{}
		for name, body := range migrations {
			files["migrations/"+name] = body
		}
		layer := registry.Layer(tb, files)
		if res.layer, err = layer.Size(); err != nil {
			return err
		}
		reg.PushImage(tb, "bench-migrations", "1", registry.Image(tb, layer))
		counter, err := startCounter(reg.Host())
		if err != nil {
			return err
		}
		defer counter.close()

		db, err := srv.CreateDatabase(ctx, "bench_source")
		if err != nil {
			return err
		}
		defer srv.DropDatabase(context.Background(), db)
		// Anonymous whatever this machine holds at the default credentials
		// paths, and the fetched files in the run's work directory (removed at
		// the end) rather than in /tmp.
		none := filepath.Join(c.work, "no-credentials")
		if err := os.MkdirAll(none, 0o755); err != nil {
			return err
		}
		env := append(c.stepEnv(srv.URL(db)), "TMPDIR="+c.work,
			"CHARTREUSE_GIT_CREDENTIALS="+none, "CHARTREUSE_REGISTRY_CREDENTIALS="+none)
		plan := func(args ...string) func(string) []command {
			return func(string) []command {
				return []command{{argv: append([]string{c.bin("migrate"), "--plan"}, args...), env: env}}
			}
		}
		gitArgs := func(r *gitserver.Repo) []string {
			return []string{"--git-url", r.URL(), "--git-revision", "main", "--dir", "db/migrations"}
		}
		tools := []tool{
			{"directory (--dir)", plan("--dir", dir)},
			{"git over HTTP, filter allowed (blob:none)", plan(gitArgs(repos[true])...)},
			{"git over HTTP, filter refused", plan(gitArgs(repos[false])...)},
			{"migrations image, local registry", plan("--migrations-image", counter.host+"/bench-migrations:1", "--dir", "/migrations")},
		}
		// What each server sent during each run, taken around the run.
		res.rows = make([]sourceRow, len(tools))
		sent := func(i int) (int64, int64) {
			switch i {
			case 1, 2:
				var b, k int64
				for _, r := range gs.Requests() {
					b, k = b+r.Bytes, k+1
				}
				return b, k
			case 3:
				return counter.bytes.Load(), counter.requests.Load()
			}
			return -1, -1
		}
		fresh := func(i int) (string, func(), error) {
			b0, k0 := sent(i)
			return db, func() {
				b1, k1 := sent(i)
				if b0 < 0 {
					res.rows[i] = sourceRow{-1, -1}
					return
				}
				res.rows[i] = sourceRow{max(res.rows[i].bytes, b1-b0), max(res.rows[i].requests, k1-k0)}
			}, nil
		}
		if res.series, err = interleave(ctx, tools, c.runs6, true, false, 3, fresh); err != nil {
			return err
		}
		rep.source = res
		return nil
	})
}

// counter is a reverse proxy that counts the requests it passes and the bytes
// of their response bodies (test/registry records requests, not bytes).
type counter struct {
	host            string
	srv             *http.Server
	bytes, requests atomic.Int64
}

func startCounter(backend string) (*counter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &counter{host: ln.Addr().String()}
	target := &url.URL{Scheme: "http", Host: backend}
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host // URLs the registry builds lead back through here
	}}
	p.srv = &http.Server{ReadHeaderTimeout: time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		proxy.ServeHTTP(&countingWriter{ResponseWriter: w, n: &p.bytes}, r)
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *counter) close() { _ = p.srv.Close() }

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	k, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(k))
	return k, err
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// benchTB lets the benchmark start the test servers, whose constructors take a
// testing.TB. Only the methods they call are implemented (the embedded nil TB
// panics on any other); Fatal ends the section through a panic that withTB
// turns into its error.
type benchTB struct {
	testing.TB
	dir      string
	cleanups []func()
}

type tbFatal struct{ msg string }

func (t *benchTB) Helper()                           {}
func (t *benchTB) Fatal(args ...any)                 { panic(tbFatal{fmt.Sprint(args...)}) }
func (t *benchTB) Fatalf(format string, args ...any) { panic(tbFatal{fmt.Sprintf(format, args...)}) }
func (t *benchTB) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }

func (t *benchTB) TempDir() string {
	d, err := os.MkdirTemp(t.dir, "server-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// withTB runs f with a benchTB whose clean-ups (the servers' Close) run when f
// returns or panics, last first.
func withTB(dir string, f func(*benchTB) error) (err error) {
	tb := &benchTB{dir: dir}
	defer func() {
		p := recover()
		for i := len(tb.cleanups) - 1; i >= 0; i-- {
			tb.cleanups[i]()
		}
		if p == nil {
			return
		}
		ft, ok := p.(tbFatal)
		if !ok {
			panic(p)
		}
		err = errors.New(ft.msg)
	}()
	return f(tb)
}

func size(b int64) string {
	switch {
	case b < 0:
		return "—"
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

// sourceTable prints section 6.
func (r *report) sourceTable(b *strings.Builder, s *sourceResult) {
	fmt.Fprintf(b, "\n6. Where migrate --plan takes its migrations from — %d small migrations, all pending on an empty database, %d runs per source, interleaved\n",
		s.n, len(s.series[0].samples))
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "   source\twall\t\tpeak RSS\tvs directory\tserver sent\trequests\n")
	dir := s.series[0]
	for i, x := range s.series {
		reqs := "—"
		if s.rows[i].requests >= 0 {
			reqs = fmt.Sprint(s.rows[i].requests)
		}
		fmt.Fprintf(tw, "   %s\t%s\t[%s]\t%s\t%.2f×\t%s\t%s\n", x.name, ms(x.median()), spread(x.walls()), mib(x.peakAll()),
			ratio(x.median(), dir.median()), size(s.rows[i].bytes), reqs)
	}
	tw.Flush()
	fmt.Fprintf(b, "   git: test/gitserver (git http-backend, %s), a packed repository: the migrations in db/migrations and %d random files of %s (%s in all); --git-revision main\n",
		s.git, s.junkFiles, size(sourceJunkFile), size(s.junkBytes))
	fmt.Fprintf(b, "   image: test/registry (Debian docker-registry behind its recording proxy), one layer of the migrations (%s gzip), plain http on 127.0.0.1; bytes counted by one more proxy in front\n", size(s.layer))
	fmt.Fprintf(b, "   server sent: response bodies of one run (the most of any run), HTTP headers not counted\n")
}
