package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/images/build"
	"github.com/chartreuse-go/chartreuse/test/engines"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// cliAppImage stands in for registry.example.com/shop-migrations:1.4.0@sha256:…, the
// application's own image of the docs (FROM chartreuse, migrations in
// /migrations).
const cliAppImage = "chartreuse.local/app-migrations:1.4.0"

// cliShop is the application's migrations: db/migrations at tag v1.4.0 and
// /migrations in cliAppImage. v1.5.0 adds cliBroken, which fails.
var (
	cliShop = MigrationSet{
		"00001_customers.sql": LoggedMigration("1", "customers"),
		"00002_orders.sql":    LoggedMigration("2", "orders"),
		"00003_invoices.sql":  LoggedMigration("3", "invoices"),
	}
	cliBroken = MigrationSet{"00004_refunds.sql": BrokenMigration("refunds")}
)

// The build scripts print these directories (test/run-tests.sh exports them).
const (
	argoCLIEnv = "CHARTREUSE_ARGO_CLI_BIN" // test/tools/argo-cli/build.sh
	tknEnv     = "CHARTREUSE_TKN_BIN"      // test/tools/tkn/build.sh
)

type cliSuite struct {
	env  *kubeenv.Env
	repo string
	kube kubernetes.Interface
	pg   *pgenv.Server
	git  string // URL of the application's repository
	sh   *cliShell
}

// TestCLI runs the docs' commands as written. It takes the commands users are
// told to run from README.md, workflowtemplates/README.md, tekton/README.md and
// the CI example (workflowtemplates/examples/github-actions.yaml running
// submit.sh), replaces the example's namespace, Secret, selector, repository
// and image by the test's own (values only), and runs them with bash and the
// real `argo` (kube mode, no argo-server) and `tkn` command lines against the
// real controllers. A command that does not work as written fails the test.
//
// The example's world is reproduced: the application's migrations come from a
// git repository (served over HTTP from this process to the pods, tags v1.4.0
// and v1.5.0), the steps run from the product image under the manifests'
// default reference (what a cluster would pull), and cliAppImage stands in for
// the application's own migrations image.
func TestCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the argo and tkn CLIs on the local cluster (not with -short)")
	}
	argoDir, tknDir := cliBinDir(t, argoCLIEnv, "argo-cli"), cliBinDir(t, tknEnv, "tkn")
	// Its own namespaces, images and database server: it may run beside the
	// engines' suites.
	t.Parallel()
	if argoDir == "" && tknDir == "" {
		t.Skipf("neither %s nor %s is set: build the CLIs with test/tools/argo-cli/build.sh and test/tools/tkn/build.sh and export the directories they print (make test does)", argoCLIEnv, tknEnv)
	}
	env := kubeenv.Shared(t)
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Minute)
	defer cancel()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s := &cliSuite{env: env, repo: repo}

	// Set-up side by side: the engines, the images, the git server, PostgreSQL.
	var wg sync.WaitGroup
	var argo *engines.Argo
	var tk *engines.Tekton
	var argoErr, tkErr, imageErr error
	if argoDir != "" {
		ns := env.NewNamespace(t)
		wg.Go(func() {
			argo, argoErr = engines.InstallArgo(ctx, env, engines.ArgoOptions{Namespace: ns, RepoDir: repo, Logf: t.Logf})
			if argoErr == nil {
				argoErr = argo.ApplyProject(ctx)
			}
		})
	}
	if tknDir != "" {
		wg.Go(func() {
			tk, tkErr = engines.InstallTekton(ctx, env, engines.TektonOptions{RepoDir: repo, Logf: t.Logf})
		})
	}
	wg.Go(func() { imageErr = s.loadImages(ctx, t) })
	s.git = serveGit(t, env.BridgeIP, shopRepository(t))
	s.pg = StartPostgres(t, env)
	wg.Wait()
	for _, err := range []error{argoErr, tkErr, imageErr} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.kube, err = env.Clientset(); err != nil {
		t.Fatal(err)
	}
	s.sh = newCLIShell(t, env, repo, argoDir, tknDir)
	t.Logf("cli: set-up took %s", time.Since(start).Round(100*time.Millisecond))

	var scenarios, extended []scenario
	if argo != nil {
		a := &cliArgo{cliSuite: s, argo: argo}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("--- workflow-controller log:\n%s", argo.ControllerLog(context.Background(), 100))
			}
		})
		scenarios = append(scenarios,
			scenario{"argo/readme-run-it-then-rollback-and-migrate", a.testReadmeRunIt},
			scenario{"argo/ci-job-submit-sh-then-scale-restore", a.testCIJob},
		)
		extended = append(extended,
			// argo stop did not end the waiting scale-down pod for over 8 minutes
			// once (ci16b); TestAttack12Argo stops a run in scale-down too.
			scenario{"argo/stop-runs-the-exit-handler", a.testStop},
			scenario{"argo/retry-after-held-lock", a.testRetry},
			scenario{"argo/resubmit-after-fix", a.testResubmit},
		)
	} else {
		scenarios = append(scenarios, scenario{"argo", func(t *testing.T) {
			t.Skipf("%s is not set: build the argo CLI with test/tools/argo-cli/build.sh and export the directory it prints", argoCLIEnv)
		}})
	}
	if tk != nil {
		k := &cliTekton{cliSuite: s, tk: tk}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("--- Tekton controller log:\n%s", tk.ControllerLog(context.Background(), 100))
			}
		})
		scenarios = append(scenarios,
			scenario{"tekton/readme-ci-run", k.testReadmeCI},
			scenario{"tekton/failed-run-describe-restore-then-last", k.testFailedThenLast},
			scenario{"tekton/task-start-rollback-and-migrate", k.testTaskStart},
		)
	} else {
		scenarios = append(scenarios, scenario{"tekton", func(t *testing.T) {
			t.Skipf("%s is not set: build tkn with test/tools/tkn/build.sh and export the directory it prints", tknEnv)
		}})
	}
	runScenarios(t, "cli", scenarios, extended...)
	t.Logf("cli: all scenarios done in %s", time.Since(start).Round(100*time.Millisecond))
}

// cliBinDir returns the directory of a CLI from envVar. Unset, the test skips
// that CLI's scenarios, except in CI ($CI set), where make test must run them.
func cliBinDir(t *testing.T, envVar, tool string) string {
	t.Helper()
	dir := os.Getenv(envVar)
	if dir == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set in CI: test/run-tests.sh exports what test/tools/%s/build.sh prints", envVar, tool)
		}
		return ""
	}
	return dir
}

// loadImages builds the product image once and loads it twice: under the
// manifests' default reference (ghcr.io/chartreuse-go/chartreuse:<version>),
// and with the shop migrations at /migrations as cliAppImage.
func (s *cliSuite) loadImages(ctx context.Context, t *testing.T) error {
	t0 := time.Now()
	product, version, err := build.Image(ctx, s.repo, build.Options{})
	if err != nil {
		return err
	}
	entries := []build.Entry{{Path: build.MigrationsDir, Dir: true, Mode: 0o755}}
	for _, f := range cliShop.Files() {
		entries = append(entries, build.Entry{Path: path.Join(build.MigrationsDir, f), Data: []byte(cliShop[f]), Mode: 0o644})
	}
	app, err := build.AppendEntries(product, "COPY db/migrations/ /migrations/", entries)
	if err != nil {
		return err
	}
	dir := t.TempDir()
	for i, im := range []struct {
		ref string
		img v1.Image
	}{{build.DefaultRef(version), product}, {cliAppImage, app}} {
		tar := filepath.Join(dir, fmt.Sprintf("image-%d.tar", i))
		if err := build.WriteTarball(im.img, im.ref, tar); err != nil {
			return err
		}
		if err := s.env.LoadImage(ctx, tar); err != nil {
			return err
		}
	}
	t.Logf("cli: images %s and %s built and loaded in %s", build.DefaultRef(version), cliAppImage, time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// ---------------------------------------------------------------- the application's repository

// shopRepository makes the application's repository as a bare git repository:
// db/migrations with cliShop, tagged v1.4.0; then cliBroken added, tagged
// v1.5.0, which is also main. Returns the directory holding app.git.
func shopRepository(t *testing.T) string {
	t.Helper()
	root, work := t.TempDir(), t.TempDir()
	git := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+work, "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=shop", "GIT_AUTHOR_EMAIL=shop@example.com",
			"GIT_COMMITTER_NAME=shop", "GIT_COMMITTER_EMAIL=shop@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	write := func(set MigrationSet) {
		t.Helper()
		dir := filepath.Join(work, "db", "migrations")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f, body := range set {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	git(work, "init", "-q", "-b", "main")
	write(cliShop)
	git(work, "add", ".")
	git(work, "commit", "-q", "-m", "release 1.4.0")
	git(work, "tag", "v1.4.0")
	write(cliBroken)
	git(work, "add", ".")
	git(work, "commit", "-q", "-m", "release 1.5.0")
	git(work, "tag", "v1.5.0")
	git(root, "clone", "-q", "--bare", work, "app.git")
	return root
}

// serveGit serves the repositories under root over HTTP, git's smart protocol
// (git http-backend as a CGI), on ip (the cluster bridge, which the pods
// reach), until the test ends. Returns the URL of app.git.
func serveGit(t *testing.T, ip, root string) string {
	t.Helper()
	backend, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	h := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(backend)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String() + "/app.git"
}

// ---------------------------------------------------------------- the shell

// cliShell runs commands with bash the way a user or a CI job does: the CLIs
// and kubectl on PATH, KUBECONFIG set, a HOME of its own, no terminal.
type cliShell struct {
	dir string // working directory: the repository's root
	env []string
}

func newCLIShell(t *testing.T, env *kubeenv.Env, repo, argoDir, tknDir string) *cliShell {
	var dirs []string
	for _, d := range []string{argoDir, tknDir, env.State().KubeBinDir} {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	dirs = append(dirs, "/usr/local/bin", "/usr/bin", "/bin")
	return &cliShell{dir: repo, env: []string{
		"PATH=" + strings.Join(dirs, ":"), "KUBECONFIG=" + env.Kubeconfig, "HOME=" + t.TempDir(), "LANG=C.UTF-8",
	}}
}

// cliResult is what a script did.
type cliResult struct {
	Stdout, Stderr string
	Code           int  // exit status (-1: killed)
	TimedOut       bool // still running at the deadline, killed
}

// run runs script with `bash -e` (as CI runners do) in dir ("" = the
// repository) with extra environment variables, until it ends or timeout
// passes (then it and its children are killed), and logs it.
func (sh *cliShell) run(t *testing.T, timeout time.Duration, dir, script string, env ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Dir = sh.dir
	if dir != "" {
		cmd.Dir = dir
	}
	cmd.Env = append(slices.Clone(sh.env), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	t0 := time.Now()
	err := cmd.Run()
	r := cliResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		r.Code, r.TimedOut = -1, true
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		t.Fatalf("bash: %v", err)
	}
	status := fmt.Sprintf("exit %d after %s", r.Code, time.Since(t0).Round(100*time.Millisecond))
	if r.TimedOut {
		status += ", killed at the deadline"
	}
	t.Logf("$ %s\n[%s]\n%s%s", script, status, tail(r.Stdout, 6000), tail(r.Stderr, 3000))
	return r
}

// must runs script in the repository and fails the test unless it exits with
// want.
func (sh *cliShell) must(t *testing.T, want int, timeout time.Duration, script string, env ...string) cliResult {
	t.Helper()
	r := sh.run(t, timeout, "", script, env...)
	if r.TimedOut {
		t.Fatalf("still running after %s: %s", timeout, script)
	}
	if r.Code != want {
		t.Fatalf("exit status %d, want %d: %s", r.Code, want, script)
	}
	return r
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]" + s[len(s)-n:]
}

// ---------------------------------------------------------------- the docs

// docBlocks returns the fenced ```sh blocks of a file of the repository.
func (s *cliSuite) docBlocks(t *testing.T, file string) []string {
	t.Helper()
	return s.docFences(t, file, "sh")
}

// docFences returns the fenced blocks of a file of the repository whose
// language is lang.
func (s *cliSuite) docFences(t *testing.T, file, lang string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.repo, file))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur *strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```"+lang:
			cur = &strings.Builder{}
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	return blocks
}

// docBlock returns the one sh block of file that holds every marker.
func (s *cliSuite) docBlock(t *testing.T, file string, markers ...string) string {
	t.Helper()
	return s.docFence(t, file, "sh", markers...)
}

// docFence returns the one lang block of file that holds every marker.
func (s *cliSuite) docFence(t *testing.T, file, lang string, markers ...string) string {
	t.Helper()
	var found []string
	for _, b := range s.docFences(t, file, lang) {
		if containsAll(b, markers) {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d %s blocks hold %q, want 1 (the test follows the docs: update it with them)", file, len(found), lang, markers)
	}
	return found[0]
}

// docCommand returns the one command of file's sh blocks (a line and its
// backslash continuations) that holds every marker.
func (s *cliSuite) docCommand(t *testing.T, file string, markers ...string) string {
	t.Helper()
	var found []string
	for _, b := range s.docBlocks(t, file) {
		var cmd strings.Builder
		for _, line := range strings.SplitAfter(b, "\n") {
			cmd.WriteString(line)
			if strings.HasSuffix(strings.TrimRight(line, "\n"), "\\") {
				continue
			}
			if c := strings.TrimSpace(cmd.String()); containsAll(c, markers) {
				found = append(found, c)
			}
			cmd.Reset()
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d commands hold %q, want 1 (the test follows the docs: update it with them)", file, len(found), markers)
	}
	return found[0]
}

var inlineCode = regexp.MustCompile("`([^`\n]+)`")

// docInline returns the one inline code span of file that holds every marker.
func (s *cliSuite) docInline(t *testing.T, file string, markers ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.repo, file))
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, m := range inlineCode.FindAllStringSubmatch(string(b), -1) {
		if containsAll(m[1], markers) {
			found[m[1]] = true
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d inline commands hold %q, want 1: %v", file, len(found), markers, found)
	}
	for c := range found {
		return c
	}
	return ""
}

func containsAll(s string, markers []string) bool {
	for _, m := range markers {
		if !strings.Contains(s, m) {
			return false
		}
	}
	return true
}

// docValues are the values of one scenario that replace the docs' example
// values (application shop in namespace shop).
type docValues struct {
	ns, secret, selector, git, run string
}

var leftover = regexp.MustCompile(`\bshop\b|<[a-z][a-z-]*>|example\.com`)

// local returns cmd with the docs' example values replaced by v's, failing
// the test when an example value is left (the docs changed: teach the test).
func (v docValues) local(t *testing.T, cmd string, more ...string) string {
	t.Helper()
	pairs := append(slices.Clone(more),
		"https://github.com/acme/shop.git", v.git,
		"registry.example.com/shop-migrations:1.4.0@sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945", cliAppImage,
		"app.kubernetes.io/name=shop", v.selector,
		"shop-db", v.secret,
		"-n shop", "-n "+v.ns,
	)
	if v.run != "" {
		pairs = append(pairs, "<run>", v.run, "<name>", v.run)
	}
	out := strings.NewReplacer(pairs...).Replace(cmd)
	if m := leftover.FindString(out); m != "" {
		t.Fatalf("%q is left in %q after replacing the example values: teach the test the docs' new value", m, out)
	}
	return out
}

// cliCase is one scenario's database, Secret and application in namespace ns.
type cliCase struct {
	docValues
	db  Database
	app *App
}

func (s *cliSuite) newCase(t *testing.T, ns, name string, o AppOptions) *cliCase {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c := &cliCase{db: NewDatabase(t, s.pg, "cli")}
	c.ns, c.secret, c.git = ns, name+"-db", s.git
	if err := CreateSecret(ctx, s.kube, ns, c.secret, c.db.URL()); err != nil {
		t.Fatal(err)
	}
	o.Name = name
	app, err := DeployApp(ctx, s.kube, ns, o)
	if err != nil {
		t.Fatal(err)
	}
	c.app, c.selector = app, app.Selector
	return c
}

func (c *cliCase) wantVersions(t *testing.T, want ...int64) {
	t.Helper()
	got, err := c.db.AppliedVersions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("applied versions %v, want %v", got, want)
	}
}

// strayTable creates the table migration 2 creates, as someone did by hand:
// migration 2 then fails (exit 1) until dropStrayTable, the fix.
func (c *cliCase) strayTable(t *testing.T) {
	t.Helper()
	if err := c.db.Exec(t.Context(), `CREATE TABLE orders (id int)`); err != nil {
		t.Fatal(err)
	}
}

func (c *cliCase) dropStrayTable(t *testing.T) {
	t.Helper()
	if err := c.db.Exec(t.Context(), `DROP TABLE orders`); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------- Argo

// cliArgo runs the Argo scenarios in the namespace the controller manages.
type cliArgo struct {
	*cliSuite
	argo *engines.Argo
}

func (a *cliArgo) newCase(t *testing.T, name string, o AppOptions) *cliCase {
	t.Helper()
	return a.cliSuite.newCase(t, a.argo.Namespace, name, o)
}

// workflows returns c's workflows (those of its Secret), oldest first.
func (a *cliArgo) workflows(t *testing.T, c *cliCase) []wfv1.Workflow {
	t.Helper()
	list, err := a.argo.Workflows.ArgoprojV1alpha1().Workflows(a.argo.Namespace).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []wfv1.Workflow
	for _, wf := range list.Items {
		for _, p := range wf.Spec.Arguments.Parameters {
			if p.Name == "database-secret" && p.Value != nil && p.Value.String() == c.secret {
				out = append(out, wf)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreationTimestamp.Before(&out[j].CreationTimestamp) })
	return out
}

// finished reads the workflow, which the CLI said has completed, and logs it;
// on a failing test the step logs too.
func (a *cliArgo) finished(t *testing.T, name string, want wfv1.WorkflowPhase) *wfv1.Workflow {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	wf, err := a.argo.Wait(ctx, name, nil) // completed already: returns at once
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", engines.ArgoDescribe(wf))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- step logs of %s:\n%s", wf.Name, a.argo.StepLogs(context.Background(), wf, 30))
		}
	})
	if wf.Status.Phase != want {
		t.Fatalf("workflow %s is %s (%s), want %s", wf.Name, wf.Status.Phase, wf.Status.Message, want)
	}
	return wf
}

// submit runs workflowtemplates/README.md's `argo submit ... -o name` with
// extra arguments appended and returns the name it prints.
func (a *cliArgo) submit(t *testing.T, c *cliCase, extra string) string {
	t.Helper()
	cmd := c.local(t, a.docCommand(t, "workflowtemplates/README.md", "argo submit", "-o name")) + extra
	out := strings.TrimSpace(a.sh.must(t, 0, 2*time.Minute, cmd).Stdout)
	name := strings.TrimPrefix(out, "workflow.argoproj.io/")
	if name == "" || strings.ContainsAny(name, " \n") {
		t.Fatalf("argo submit -o name printed %q, want a workflow name", out)
	}
	return name
}

// argoCmd is the command of workflowtemplates/README.md's §1 block holding
// marker, for c's run.
func (a *cliArgo) argoCmd(t *testing.T, c *cliCase, marker string) string {
	t.Helper()
	return c.local(t, a.docCommand(t, "workflowtemplates/README.md", marker, "<name>"))
}

// The README's "Run it" §1 as a CI job runs it (bash -e): submit from the
// WorkflowTemplate with the migrations from git at tag v1.4.0, argo wait,
// argo get. Then §3's manual reruns: the rollback entrypoint with the same -p
// values as the run, and workflowtemplates/README.md's migrate entrypoint with
// the application's image.
func (a *cliArgo) testReadmeRunIt(t *testing.T) {
	if r := a.sh.must(t, 0, time.Minute, "argo version --short"); !strings.Contains(r.Stdout, "argo: "+a.argo.Version) {
		t.Errorf("the argo CLI is not the controller's version %s", a.argo.Version)
	}
	c := a.newCase(t, "runit", AppOptions{})
	r := a.sh.must(t, 0, runBound, c.local(t, a.docBlock(t, "README.md", "name=$(argo submit", "argo wait", "argo get")))
	wfs := a.workflows(t, c)
	if len(wfs) != 1 {
		t.Fatalf("%d workflows, want the one submitted", len(wfs))
	}
	wf := a.finished(t, wfs[0].Name, wfv1.WorkflowSucceeded)
	c.wantVersions(t, 1, 2, 3) // v1.4.0's, not v1.5.0's 4
	wantAppRestored(t, a.kube, c.app)
	for _, want := range []string{wf.Name + " Succeeded", "plan", "scale-down", "migrate", "scale-restore"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("the script's output lacks %q (argo wait, then argo get's nodes)", want)
		}
	}

	rollback := a.docCommand(t, "README.md", "--entrypoint rollback")
	if other := a.docCommand(t, "workflowtemplates/README.md", "--entrypoint rollback"); other != rollback {
		t.Errorf("README.md and workflowtemplates/README.md give different rollback commands:\n%s\n%s", rollback, other)
	}
	a.sh.must(t, 0, runBound, c.local(t, rollback, "down-to=20240101120000", "down-to=1"))
	c.wantVersions(t, 1)
	a.sh.must(t, 0, runBound, c.local(t, a.docCommand(t, "workflowtemplates/README.md", "--entrypoint migrate")))
	c.wantVersions(t, 1, 2, 3)
	wantAppRestored(t, a.kube, c.app) // single phases do not touch the workloads
}

// CI: the GitHub Actions job of workflowtemplates/examples runs submit.sh with
// its environment, for tag v1.4.0 (exit 0) and then v1.5.0, whose migration 4
// fails (non-zero; keep-down leaves the application stopped). Then the
// README's single-phase rerun brings it back: --entrypoint scale-restore
// --wait --log. All as CI's own identity: the token of the submitter
// ServiceAccount (workflowtemplates/examples/submitter-rbac.yaml).
func (a *cliArgo) testCIJob(t *testing.T) {
	c := a.newCase(t, "cijob", AppOptions{})
	run, env := a.githubActionsStep(t, c)
	ci := submitterKubeconfig(t, a.env, a.kube, a.repo, "argo", c.ns)
	env = append(env, ci)
	// The job's working directory holds this repository checked out as chartreuse/.
	work := t.TempDir()
	if err := os.Symlink(a.repo, filepath.Join(work, "chartreuse")); err != nil {
		t.Fatal(err)
	}
	job := func(tag string) cliResult {
		r := a.sh.run(t, runBound, work, run, append(env, "GIT_REVISION="+tag)...)
		if r.TimedOut {
			t.Fatalf("%s still running at the deadline", run)
		}
		return r
	}
	if r := job("v1.4.0"); r.Code != 0 {
		t.Fatalf("the job failed for v1.4.0 (exit %d)", r.Code)
	}
	c.wantVersions(t, 1, 2, 3)
	wantAppRestored(t, a.kube, c.app)

	r := job("v1.5.0")
	if r.Code == 0 {
		t.Fatal("the job succeeded for v1.5.0, whose migration 4 fails")
	}
	if wfs := a.workflows(t, c); len(wfs) != 2 || !strings.Contains(r.Stdout, wfs[1].Name) {
		t.Errorf("the job's log does not name the failed workflow (%d workflows)", len(wfs))
	} else {
		a.finished(t, wfs[1].Name, wfv1.WorkflowFailed)
	}
	c.wantVersions(t, 1, 2, 3)
	wantAppStopped(t, a.kube, c.app)

	a.sh.must(t, 0, runBound, c.local(t, a.docCommand(t, "README.md", "--entrypoint scale-restore")), ci)
	wantAppRestored(t, a.kube, c.app)
}

// githubActionsStep reads workflowtemplates/examples/github-actions.yaml: the
// Migrate step's command and its environment with c's values (GIT_REVISION
// left to the caller); and checks that the job installs the pinned argo CLI.
func (a *cliArgo) githubActionsStep(t *testing.T, c *cliCase) (string, []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.repo, "workflowtemplates", "examples", "github-actions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				Name string            `json:"name"`
				Run  string            `json:"run"`
				Env  map[string]string `json:"env"`
			} `json:"steps"`
		} `json:"jobs"`
	}
	if err := yaml.Unmarshal(b, &wf); err != nil {
		t.Fatal(err)
	}
	var run string
	var env []string
	for _, st := range wf.Jobs["migrate"].Steps {
		if st.Name != "Migrate" {
			continue
		}
		run = st.Run
		for k, v := range st.Env {
			switch {
			case k == "GIT_REVISION":
				continue
			case k == "NAMESPACE" && v == "shop":
				v = c.ns
			default:
				v = c.local(t, v, "${{ github.server_url }}/${{ github.repository }}.git", c.git)
			}
			env = append(env, k+"="+v)
		}
	}
	if run == "" {
		t.Fatal("github-actions.yaml: no Migrate step in job migrate")
	}
	if !bytes.Contains(b, []byte("argo-workflows/releases/download/"+a.argo.Version+"/")) {
		t.Errorf("github-actions.yaml does not install the argo CLI %s (the version the manifests are tested with)", a.argo.Version)
	}
	sort.Strings(env)
	return run, env
}

// argo retry: the migration lock is taken (by another session) once plan has
// passed (plan itself refuses while it is held) and held longer than migrate's
// lock-wait and retries; the run fails, argo logs says why; once the lock is
// free, argo retry reruns the failed nodes and the run succeeds.
func (a *cliArgo) testRetry(t *testing.T) {
	c := a.newCase(t, "retry", AppOptions{})
	c.run = a.submit(t, c, " -p lock-wait=5s")
	var release func()
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	if _, err := a.argo.Wait(ctx, c.run, func(w *wfv1.Workflow) {
		// scale-down waits for the application's pods to end, then migrate's
		// pod starts: seconds before migrate asks for the lock.
		if release == nil && len(engines.ArgoAttempts(w, "scale-down")) > 0 {
			var err error
			if release, err = c.db.HoldLock(t.Context()); err != nil {
				t.Fatal(err)
			}
			cancel()
		}
	}); release == nil {
		t.Fatalf("scale-down never started: %v", err)
	}
	defer release()
	a.sh.must(t, 1, runBound, a.argoCmd(t, c, "argo wait"))
	wf := a.finished(t, c.run, wfv1.WorkflowFailed)
	attempts := engines.ArgoAttempts(wf, "migrate")
	if len(attempts) < 2 {
		t.Errorf("migrate ran %d attempts, want its retries", len(attempts))
	}
	for _, at := range attempts {
		if at.ExitCode != "75" {
			t.Errorf("migrate attempt %s: exit %s, want 75 (lock busy)", at.Name, at.ExitCode)
		}
	}
	wantAppStopped(t, a.kube, c.app) // keep-down
	if r := a.sh.must(t, 0, 2*time.Minute, a.argoCmd(t, c, "argo get")); !strings.Contains(r.Stdout, "migrate") {
		t.Error("argo get does not show migrate")
	}
	if r := a.sh.must(t, 0, 2*time.Minute, c.local(t, a.docInline(t, "README.md", "argo logs"))); !strings.Contains(r.Stdout, "another migrator holds the migration lock") {
		t.Error("argo logs does not say the lock was held")
	}
	if r := a.sh.must(t, 0, time.Minute, c.local(t, a.docInline(t, "README.md", "jq .spec.arguments"))); !strings.Contains(r.Stdout, `"`+c.secret+`"`) {
		t.Error("the run's parameters (argo get | jq .spec.arguments) do not show its database-secret")
	}
	if r := a.sh.must(t, 0, time.Minute, c.local(t, a.docInline(t, "workflowtemplates/README.md", "jq -r", "planned-version"))); strings.TrimSpace(r.Stdout) != "0" {
		t.Errorf("the run's planned-version is %q, want 0", r.Stdout)
	}

	release()
	a.sh.must(t, 0, 2*time.Minute, c.local(t, a.docInline(t, "README.md", "argo retry")))
	a.sh.must(t, 0, runBound, a.argoCmd(t, c, "argo wait"))
	a.finished(t, c.run, wfv1.WorkflowSucceeded)
	c.wantVersions(t, 1, 2, 3)
	wantAppRestored(t, a.kube, c.app)
}

// argo resubmit: migration 2 fails on a table someone created by hand; after
// the fix (the table dropped), argo resubmit runs everything again with the
// same parameters, as a new workflow, and it succeeds.
func (a *cliArgo) testResubmit(t *testing.T) {
	c := a.newCase(t, "resubmit", AppOptions{})
	c.strayTable(t)
	c.run = a.submit(t, c, "")
	a.sh.must(t, 1, runBound, a.argoCmd(t, c, "argo wait"))
	a.finished(t, c.run, wfv1.WorkflowFailed)
	c.wantVersions(t, 1)
	wantAppStopped(t, a.kube, c.app)

	c.dropStrayTable(t)
	r := a.sh.must(t, 0, 2*time.Minute, c.local(t, a.docInline(t, "README.md", "argo resubmit")))
	m := regexp.MustCompile(`(?m)^Name:\s+(\S+)$`).FindStringSubmatch(r.Stdout)
	if m == nil || m[1] == c.run {
		t.Fatalf("argo resubmit did not print a new workflow's name")
	}
	c.run = m[1]
	a.sh.must(t, 0, runBound, a.argoCmd(t, c, "argo wait"))
	a.finished(t, c.run, wfv1.WorkflowSucceeded)
	c.wantVersions(t, 1, 2, 3)
	wantAppRestored(t, a.kube, c.app)
}

// argo stop while scale-down waits for the application's pods to go (one of
// them is held by a finalizer until the run has ended): the exit handler
// restores what the run stopped, the run ends Failed, nothing is migrated.
func (a *cliArgo) testStop(t *testing.T) {
	// The held pod must stay running (Terminating, not yet Succeeded) until the stop
	// arrives: with the default 2 s shutdown its containers ended first, the
	// kubelet marked it terminal and scale-down was done before argo stop came.
	// 25 s was not always enough on a loaded node; release ends the pods.
	c := a.newCase(t, "stop", AppOptions{ShutdownDelay: 10 * time.Minute})
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	held, release := holdPod(t, a.kube, c.app)
	c.run = a.submit(t, c, "")
	if err := Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		p, err := a.kube.CoreV1().Pods(c.ns).Get(ctx, held, metav1.GetOptions{})
		return err == nil && p.DeletionTimestamp != nil, nil
	}); err != nil {
		t.Fatalf("scale-down never stopped the application: %v", err)
	}
	stop := a.docInline(t, "workflowtemplates/README.md", "argo stop")
	a.sh.must(t, 0, 2*time.Minute, c.local(t, stop+" -n shop <run>"))
	if err := a.argo.StopSeen(ctx, c.run); err != nil {
		t.Fatal(err)
	}
	a.sh.must(t, 1, runBound, a.argoCmd(t, c, "argo wait"))
	release()
	wf := a.finished(t, c.run, wfv1.WorkflowFailed)
	// The attempt (Argo may leave a stopped step's retry node Running); Failed
	// or Error ("pod deleted") depending on how the stop reached the pod.
	if at := engines.ArgoAttempts(wf, "scale-down"); len(at) != 1 || !at[0].Phase.FailedOrError() {
		t.Errorf("scale-down's attempts: %+v, want one, stopped while it waited", at)
	}
	if n, ok := engines.ArgoNodeByName(wf, "restore"); !ok || n.Phase != wfv1.NodeSucceeded {
		t.Errorf("the exit handler's restore: %+v, want Succeeded", n)
	}
	if n, ok := engines.ArgoNodeByName(wf, "migrate"); ok && n.Phase != wfv1.NodeSkipped && n.Phase != wfv1.NodeOmitted {
		t.Errorf("migrate ran after argo stop: %s", n.Phase)
	}
	c.wantVersions(t)
	wantAppRestored(t, a.kube, c.app)
}

// holdPod puts a finalizer on one of app's pods, so that it stays once deleted
// until release removes the finalizer (at the latest when the test ends).
// release also deletes at once (grace period 0) every pod of app that is
// terminating: with a long AppOptions.ShutdownDelay the pods stay running
// after SIGTERM, so scale-down waits for them until release, however slowly
// the test gets to its next step on a loaded node. (A pod whose containers
// have ended counts as gone for scale-down, finalizer or not.) Returns the
// held pod's name.
func holdPod(t *testing.T, kube kubernetes.Interface, app *App) (string, func()) {
	t.Helper()
	pods, err := kube.CoreV1().Pods(app.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: app.Selector})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("no pod of %s (%v)", app.Name, err)
	}
	name := pods.Items[0].Name
	patch := func(p string) error {
		_, err := kube.CoreV1().Pods(app.Namespace).Patch(context.Background(), name, types.MergePatchType, []byte(p), metav1.PatchOptions{})
		return err
	}
	if err := patch(`{"metadata":{"finalizers":["chartreuse.test/hold"]}}`); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			if err := patch(`{"metadata":{"finalizers":null}}`); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("releasing pod %s: %v", name, err)
			}
			if err := endTerminating(context.Background(), kube, app); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(release)
	return name, release
}

// endTerminating deletes at once (grace period 0) every pod of app that is
// terminating.
func endTerminating(ctx context.Context, kube kubernetes.Interface, app *App) error {
	pods, err := kube.CoreV1().Pods(app.Namespace).List(ctx, metav1.ListOptions{LabelSelector: app.Selector})
	if err != nil {
		return fmt.Errorf("listing the pods of %s to end the terminating ones: %w", app.Name, err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			continue
		}
		err := kube.CoreV1().Pods(app.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("ending terminating pod %s: %w", p.Name, err)
		}
	}
	return nil
}

// impatientShutdown ends app's terminating pods every half second until the
// test ends, as if they had no shutdown delay: for the runs that follow a
// holdPod with a long AppOptions.ShutdownDelay.
func impatientShutdown(t *testing.T, kube kubernetes.Interface, app *App) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never done: it ends with the test (the next round retries an error).
		_ = Poll(ctx, 500*time.Millisecond, func() (bool, error) {
			_ = endTerminating(ctx, kube, app)
			return false, nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// ---------------------------------------------------------------- Tekton

// cliTekton runs the Tekton scenarios, each in a namespace of its own with the
// project's tekton/ applied.
type cliTekton struct {
	*cliSuite
	tk *engines.Tekton
}

func (k *cliTekton) newCase(t *testing.T, name string) *cliCase {
	t.Helper()
	ns := k.env.NewNamespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := k.tk.ApplyProject(ctx, ns); err != nil {
		t.Fatal(err)
	}
	return k.cliSuite.newCase(t, ns, name, AppOptions{})
}

// examplePipelineRun writes tekton/examples/pipelinerun.yaml with its params
// edited for c ("edit its params first"), the application's migrations image
// among them, and returns the file's path.
func (k *cliTekton) examplePipelineRun(t *testing.T, c *cliCase) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(k.repo, "tekton", "examples", "pipelinerun.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			kept = append(kept, line)
		}
	}
	y := strings.Join(kept, "\n")
	y = strings.NewReplacer("value: shop-db", "value: "+c.secret, "value: app.kubernetes.io/name=shop", "value: "+c.selector,
		"value: registry.example.com/shop-migrations:1.4.0@sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945", "value: "+cliAppImage).Replace(y)
	if strings.Contains(y, "shop") || !strings.Contains(y, cliAppImage) {
		t.Fatalf("tekton/examples/pipelinerun.yaml changed: teach the test its params\n%s", y)
	}
	f := filepath.Join(t.TempDir(), "pipelinerun.yaml")
	if err := os.WriteFile(f, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// runs returns the PipelineRuns of c's namespace, oldest first.
func (k *cliTekton) runs(t *testing.T, c *cliCase) []pipelinev1.PipelineRun {
	t.Helper()
	list, err := k.tk.Pipeline.TektonV1().PipelineRuns(c.ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := list.Items
	sort.Slice(out, func(i, j int) bool { return out[i].CreationTimestamp.Before(&out[j].CreationTimestamp) })
	return out
}

// done waits for the PipelineRun and checks how it ended.
func (k *cliTekton) done(t *testing.T, c *cliCase, name string, succeeded bool) *pipelinev1.PipelineRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	pr, err := k.tk.WaitPipelineRun(ctx, c.ns, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", k.tk.DescribeRun(ctx, pr))
	if got := engines.Succeeded(pr.Status.GetCondition(apis.ConditionSucceeded)); got != succeeded {
		t.Fatalf("PipelineRun %s: %s, want succeeded=%v", name, engines.RunCondition(pr.Status.GetCondition(apis.ConditionSucceeded)), succeeded)
	}
	return pr
}

// taskRunDone waits for the TaskRun whose name out (a tkn or kubectl
// create output) gives, and fails the test unless it succeeded.
func (k *cliTekton) taskRunDone(t *testing.T, c *cliCase, out string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)(?:^TaskRun started: |^taskrun\.tekton\.dev/)([a-z0-9.-]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no TaskRun name in %q", out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	tr, err := k.tk.WaitTaskRun(ctx, c.ns, m[1])
	if err != nil {
		t.Fatal(err)
	}
	if cond := tr.Status.GetCondition(apis.ConditionSucceeded); !engines.Succeeded(cond) {
		t.Fatalf("TaskRun %s: %s\n%s", tr.Name, engines.RunCondition(cond), k.tk.TaskRunLogs(context.Background(), tr))
	}
}

// tekton/README.md §1 as a CI job runs it: create the example PipelineRun
// (params edited), follow it, and learn from the exit status whether it
// succeeded; as CI's own identity, the token of the submitter ServiceAccount
// (tekton/examples/submitter-rbac.yaml).
func (k *cliTekton) testReadmeCI(t *testing.T) {
	c := k.newCase(t, "tkci")
	block := k.docBlock(t, "tekton/README.md", "kubectl create", "tekton/examples/pipelinerun.yaml")
	k.sh.must(t, 0, runBound, c.local(t, block, "tekton/examples/pipelinerun.yaml", k.examplePipelineRun(t, c)),
		submitterKubeconfig(t, k.env, k.kube, k.repo, "tekton", c.ns))
	prs := k.runs(t, c)
	if len(prs) != 1 {
		t.Fatalf("%d PipelineRuns, want the one created", len(prs))
	}
	k.done(t, c, prs[0].Name, true)
	c.wantVersions(t, 1, 2, 3)
	wantAppRestored(t, k.kube, c.app)
}

// The README's Tekton flow after a failure: the one-off run (§2, from CI)
// fails on a table someone created by hand and its exit status says so;
// tkn pipelinerun describe and logs show why; tkn task start
// chartreuse-scale-restore brings the application back; after the fix,
// tkn pipeline start --last runs everything again and it succeeds.
func (k *cliTekton) testFailedThenLast(t *testing.T) {
	c := k.newCase(t, "tklast")
	c.strayTable(t)
	block := k.docBlock(t, "README.md", "kubectl create", "tekton/examples/pipelinerun.yaml")
	r := k.sh.run(t, runBound, "", c.local(t, block, "tekton/examples/pipelinerun.yaml", k.examplePipelineRun(t, c)))
	if r.TimedOut || r.Code == 0 {
		t.Errorf("the README's one-off run exited %d (timed out: %v) for a run that failed: CI would carry on", r.Code, r.TimedOut)
	}
	prs := k.runs(t, c)
	if len(prs) != 1 {
		t.Fatalf("%d PipelineRuns, want the one created", len(prs))
	}
	c.run = prs[0].Name
	k.done(t, c, c.run, false)
	c.wantVersions(t, 1)
	wantAppStopped(t, k.kube, c.app)
	if r := k.sh.must(t, 0, 2*time.Minute, c.local(t, k.docInline(t, "README.md", "tkn pipelinerun describe"))); !strings.Contains(r.Stdout, "Failed") || !strings.Contains(r.Stdout, "migrate") {
		t.Error("tkn pipelinerun describe does not show the failed migrate")
	}
	if r := k.sh.must(t, 0, 2*time.Minute, c.local(t, k.docInline(t, "README.md", "tkn pipelinerun logs -n shop <run>"))); !strings.Contains(r.Stdout+r.Stderr, "already exists (SQLSTATE 42P07)") {
		t.Error("tkn pipelinerun logs does not show migrate's error")
	}
	// tekton/README.md §3: the version the failed run started from.
	if r := k.sh.must(t, 0, time.Minute, c.local(t, k.docInline(t, "tekton/README.md", "kubectl get pipelinerun", "childReferences"))); !strings.Contains(r.Stdout, c.run+"-plan") {
		t.Error("the run's childReferences do not name its plan TaskRun")
	}
	if r := k.sh.must(t, 0, time.Minute, c.local(t, k.docInline(t, "tekton/README.md", "tkn taskrun describe", "-plan"))); !regexp.MustCompile(`current-version\s+0`).MatchString(r.Stdout) {
		t.Error("tkn taskrun describe <run>-plan does not show current-version 0")
	}

	r = k.sh.must(t, 0, runBound, c.local(t, k.docCommand(t, "README.md", "tkn task start chartreuse-scale-restore")))
	k.taskRunDone(t, c, r.Stdout)
	if r := k.sh.must(t, 0, time.Minute, c.local(t, k.docInline(t, "README.md", "tkn taskrun describe"))); !strings.Contains(r.Stdout, "Succeeded") {
		t.Error("tkn taskrun describe --last does not say the TaskRun succeeded")
	}
	wantAppRestored(t, k.kube, c.app)

	c.dropStrayTable(t)
	r = k.sh.must(t, 0, 2*time.Minute, c.local(t, k.docInline(t, "README.md", "tkn pipeline start chartreuse")))
	m := regexp.MustCompile(`PipelineRun started: (\S+)`).FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatal("tkn pipeline start did not say which PipelineRun it started")
	}
	k.sh.must(t, 0, runBound, c.local(t, k.docInline(t, "README.md", "tkn pipelinerun logs -n shop --last -f")))
	k.done(t, c, m[1], true)
	c.wantVersions(t, 1, 2, 3)
	wantAppRestored(t, k.kube, c.app)
}

// One phase alone (README.md and tekton/README.md §3), with the
// application's image: tkn task start chartreuse-migrate, then
// chartreuse-rollback to 1, then the TaskRun of tekton/README.md created with
// kubectl migrates again.
func (k *cliTekton) testTaskStart(t *testing.T) {
	c := k.newCase(t, "tktask")
	if err := c.db.MigrateTo(t.Context(), cliShop, 1); err != nil {
		t.Fatal(err)
	}
	r := k.sh.must(t, 0, runBound, c.local(t, k.docCommand(t, "tekton/README.md", "tkn task start chartreuse-migrate")))
	k.taskRunDone(t, c, r.Stdout)
	c.wantVersions(t, 1, 2, 3)

	rollback := k.docCommand(t, "README.md", "tkn task start chartreuse-rollback")
	if other := k.docCommand(t, "tekton/README.md", "tkn task start chartreuse-rollback"); other != rollback {
		t.Errorf("README.md and tekton/README.md give different rollback commands:\n%s\n%s", rollback, other)
	}
	r = k.sh.must(t, 0, runBound, c.local(t, rollback, "down-to=20240101120000", "down-to=1"))
	k.taskRunDone(t, c, r.Stdout)
	c.wantVersions(t, 1)

	f := filepath.Join(t.TempDir(), "taskrun.yaml")
	if err := os.WriteFile(f, []byte(c.local(t, k.docFence(t, "tekton/README.md", "yaml", "kind: TaskRun"))), 0o644); err != nil {
		t.Fatal(err)
	}
	r = k.sh.must(t, 0, time.Minute, c.local(t, "kubectl create -n shop -f "+f))
	k.taskRunDone(t, c, r.Stdout)
	c.wantVersions(t, 1, 2, 3)
	wantAppRestored(t, k.kube, c.app)
}
