package runwatch_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/chartreuse-go/chartreuse/pkg/binaries"
	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/test/faultproxy"
	"github.com/chartreuse-go/chartreuse/test/syncbuf"
)

// Attacks on --watch-run (attack35): a hostile operator, a careless
// template, a flaky network. Each failed before the fix its comment names.

// writeMigrations writes files (name -> body) into a fresh directory.
func writeMigrations(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, s := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func quickMigrations(t *testing.T) string {
	return writeMigrations(t, map[string]string{
		"00001_a.sql": "-- +goose Up\nCREATE TABLE a (id int);\n-- +goose Down\nDROP TABLE a;\n",
		"00002_b.sql": "-- +goose Up\nCREATE TABLE b (id int);\n-- +goose Down\nDROP TABLE b;\n",
		"00003_c.sql": "-- +goose Up\nCREATE TABLE c (id int);\n-- +goose Down\nDROP TABLE c;\n",
	})
}

type attackOutcome struct {
	outcome
	afterDuring time.Duration // from during() returning to the step's end
	dirty       int           // rows in the dirty table (-1: no table)
}

// attack runs migrate on a fresh database over dir with the extra flags;
// when sleeping is true it waits for a pg_sleep of the run and calls during,
// else it calls during at once (before the step starts).
func (f *fixture) attack(t *testing.T, dir, kubeconfig string, extra []string, sleeping bool, during func()) attackOutcome {
	t.Helper()
	db, err := f.pg.CreateDatabase(t.Context(), "runwatch")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", kubeconfig)
	args := append([]string{"migrate", "--skip-version-check", "--database-url", f.pg.URL(db), "--dir", dir,
		"--results-dir", t.TempDir(), "--watch-run-namespace", f.ns, "--watch-run-interval", "200ms"}, extra...)
	var stdout bytes.Buffer
	stderr := &syncbuf.Buffer{}
	if !sleeping {
		during()
	}
	done := make(chan int, 1)
	go func() { done <- step.Run(context.Background(), binaries.Migrate(), args, &stdout, stderr) }()
	var o attackOutcome
	t0 := time.Now()
	if sleeping {
		conn, err := pgx.Connect(t.Context(), f.pg.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		for s := false; !s; {
			select {
			case code := <-done:
				t.Fatalf("migrate ended (exit %d) before a migration slept:\n%s", code, stderr.String())
			case <-time.After(50 * time.Millisecond):
			}
			if err := conn.QueryRow(t.Context(), "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()", db).Scan(&s); err != nil {
				t.Fatal(err)
			}
		}
		conn.Close(context.Background())
		during()
		t0 = time.Now()
	}
	select {
	case o.code = <-done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("migrate did not end:\n%s", stderr.String())
	}
	o.afterDuring = time.Since(t0)
	o.stderr = stderr.String()
	dbConn, err := pgx.Connect(t.Context(), f.pg.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer dbConn.Close(context.Background())
	rows, err := dbConn.Query(t.Context(), "SELECT version_id FROM goose_db_version WHERE version_id > 0 AND is_applied ORDER BY id")
	if err == nil {
		o.applied, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	}
	if err != nil {
		t.Logf("reading the version table: %v", err)
	}
	o.dirty = -1
	_ = dbConn.QueryRow(t.Context(), "SELECT count(*) FROM goose_db_version_dirty").Scan(&o.dirty)
	t.Logf("exit %d, applied %v, dirty %d, %s after during\n%s\nstdout: %s", o.code, o.applied, o.dirty, o.afterDuring.Round(time.Millisecond), o.stderr, stdout.String())
	return o
}

// runwatchGoroutines counts the goroutines running code of pkg/runwatch.
func runwatchGoroutines() int {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	n := 0
	for _, g := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(g, "chartreuse/pkg/runwatch.") {
			n++
		}
	}
	return n
}

// TestAttackCancelledBeforeStart: the TaskRun is already cancelled when the
// step starts (Tekton cancelled it while its pod was being scheduled or its
// init containers ran). The watch's first read races the migrations: a
// cancelled run must not have a migration applied.
func TestAttackCancelledBeforeStart(t *testing.T) {
	f := newFixture(t)
	t.Run("direct", func(t *testing.T) {
		tr := f.taskRun("tr-precancelled", "migrate", nil)
		f.patchSpec(taskRuns, tr.GetName(), "status", "TaskRunCancelled")
		o := f.attack(t, quickMigrations(t), f.kubeconfig, watchOf("taskrun", tr), false, func() {})
		if len(o.applied) != 0 || o.code != failure.CodeTransient {
			t.Errorf("exit %d, applied %v for a run cancelled before the step started: want 75 and nothing applied", o.code, o.applied)
		}
	})
	t.Run("api-server-answers-in-500ms", func(t *testing.T) {
		tr := f.taskRun("tr-precancelled-slow", "migrate", nil)
		f.patchSpec(taskRuns, tr.GetName(), "status", "TaskRunCancelled")
		cfg, err := f.env.RESTConfig()
		if err != nil {
			t.Fatal(err)
		}
		p := faultproxy.New(t, cfg, &faultproxy.Rule{Method: "GET", Path: "/taskruns/", Action: faultproxy.Delay, Delay: 500 * time.Millisecond})
		kc := f.env.WriteKubeconfig(t, p.Point)
		o := f.attack(t, quickMigrations(t), kc, watchOf("taskrun", tr), false, func() {})
		if len(o.applied) != 0 || o.code != failure.CodeTransient {
			t.Errorf("exit %d, applied %v for a run cancelled before the step started (API server answering in 500ms): want 75 and nothing applied", o.code, o.applied)
		}
	})
	// A busy API server (a mass cancel is when it is busiest) answers the
	// first read after migrate's own start-up (about 0.5s here): the
	// migrations of a run cancelled before the step began are applied.
	t.Run("api-server-answers-in-2s", func(t *testing.T) {
		tr := f.taskRun("tr-precancelled-slower", "migrate", nil)
		f.patchSpec(taskRuns, tr.GetName(), "status", "TaskRunCancelled")
		cfg, err := f.env.RESTConfig()
		if err != nil {
			t.Fatal(err)
		}
		p := faultproxy.New(t, cfg, &faultproxy.Rule{Method: "GET", Path: "/taskruns/", Action: faultproxy.Delay, Delay: 2 * time.Second})
		kc := f.env.WriteKubeconfig(t, p.Point)
		o := f.attack(t, quickMigrations(t), kc, watchOf("taskrun", tr), false, func() {})
		if len(o.applied) != 0 || o.code != failure.CodeTransient {
			t.Errorf("exit %d, applied %v for a run cancelled before the step started (API server answering in 2s): want 75 and nothing applied", o.code, o.applied)
		}
	})
}

// TestAttackDeletionPending: the TaskRun (or Workflow) is deleted but held by
// a finalizer (Tekton Chains, Argo's artifact GC, a foreground cascade): it
// has a deletionTimestamp and will never run on. The watch should take it
// for gone.
func TestAttackDeletionPending(t *testing.T) {
	f := newFixture(t)
	for _, kind := range []string{"taskrun", "workflow"} {
		t.Run(kind, func(t *testing.T) {
			gvr, name := taskRuns, "tr-finalized"
			if kind == "workflow" {
				gvr, name = workflows, "wf-finalized"
				f.workflow(name)
			} else {
				f.taskRun(name, "migrate", nil)
			}
			u, err := f.dyn.Resource(gvr).Namespace(f.ns).Patch(t.Context(), name, types.MergePatchType, []byte(`{"metadata":{"finalizers":["chartreuse.test/hold"]}}`), metav1.PatchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_, _ = f.dyn.Resource(gvr).Namespace(f.ns).Patch(context.Background(), name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
			})
			o := f.attack(t, migrations(t, 10*time.Second), f.kubeconfig, watchOf(kind, u), true, func() {
				if err := f.dyn.Resource(gvr).Namespace(f.ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			})
			if o.code != failure.CodeTransient || !slices.Equal(o.applied, []int64{1}) {
				t.Errorf("exit %d, applied %v after the %s was deleted (held by a finalizer): want 75 and [1]", o.code, o.applied, kind)
			}
		})
	}
}

// TestAttackWrongIdentity: a template that passes the wrong uid (the
// PipelineRun's) or a namespace where the run is not. The run was never
// seen: that is a misconfiguration, not a cancel. Before, every run of the
// step was "interrupted" (exit 75, retried as transient) and never migrated;
// now it is refused (exit 2) before anything changes.
func TestAttackWrongIdentity(t *testing.T) {
	f := newFixture(t)
	t.Run("pipelinerun-uid", func(t *testing.T) {
		pr := f.pipelineRun("pr-wronguid")
		tr := f.taskRun("pr-wronguid-migrate", "migrate", pr)
		watch := []string{"--watch-run", "taskrun/" + tr.GetName(), "--watch-run-uid", string(pr.GetUID())}
		o := f.attack(t, migrations(t, 2*time.Second), f.kubeconfig, watch, false, func() {})
		if o.code != failure.CodeUsage || len(o.applied) != 0 || !strings.Contains(o.stderr, "pass this step's own run") {
			t.Errorf("exit %d (%q), applied %v for a uid that never matched: want exit %d, nothing applied, the flags named", o.code, firstInterrupted(o.stderr), o.applied, failure.CodeUsage)
		}
	})
	t.Run("other-namespace", func(t *testing.T) {
		tr := f.taskRun("tr-wrongns", "migrate", nil)
		other := f.env.NewNamespace(t)
		// the admin's kubeconfig, which may read every namespace
		watch := append(watchOf("taskrun", tr), "--watch-run-namespace", other)
		o := f.attack(t, migrations(t, 2*time.Second), os.Getenv("KUBECONFIG"), watch, false, func() {})
		if o.code != failure.CodeUsage || len(o.applied) != 0 {
			t.Errorf("exit %d (%q), applied %v for a run never found in its namespace: want exit %d and nothing applied", o.code, firstInterrupted(o.stderr), o.applied, failure.CodeUsage)
		}
	})
}

func firstInterrupted(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "interrupted") {
			return l
		}
	}
	return ""
}

// TestAttackFlakyAPIServer: the API server behind a flaky gateway.
func TestAttackFlakyAPIServer(t *testing.T) {
	f := newFixture(t)
	cfg, err := f.env.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	proxied := func(t *testing.T, rules ...*faultproxy.Rule) (string, *faultproxy.Proxy) {
		p := faultproxy.New(t, cfg, rules...)
		return f.env.WriteKubeconfig(t, func(c *clientcmdapi.Config) { p.Point(c) }), p
	}
	t.Run("every-read-503", func(t *testing.T) {
		tr := f.taskRun("tr-503", "migrate", nil)
		kc, p := proxied(t, &faultproxy.Rule{Method: "GET", Path: "/taskruns/", Action: faultproxy.Status, Status: 503})
		o := f.attack(t, migrations(t, 2*time.Second), kc, watchOf("taskrun", tr), true, func() {})
		if o.code != 0 || !slices.Equal(o.applied, []int64{1, 2, 3}) || len(p.Hits()) == 0 {
			t.Errorf("exit %d, applied %v, hits %d: want 0, [1 2 3] and the fault met", o.code, o.applied, len(p.Hits()))
		}
		if n := strings.Count(o.stderr, "reading the run failed"); n != 1 {
			t.Errorf("%d warnings of failed reads, want 1 (once a minute)", n)
		}
	})
	t.Run("every-read-hangs", func(t *testing.T) {
		tr := f.taskRun("tr-hang", "migrate", nil)
		kc, p := proxied(t, &faultproxy.Rule{Method: "GET", Path: "/taskruns/", Action: faultproxy.HoldUnsent})
		before := runwatchGoroutines()
		o := f.attack(t, migrations(t, 2*time.Second), kc, watchOf("taskrun", tr), true, func() {})
		if o.code != 0 || !slices.Equal(o.applied, []int64{1, 2, 3}) || len(p.Hits()) == 0 {
			t.Errorf("exit %d, applied %v, hits %d: want 0, [1 2 3] and the fault met", o.code, o.applied, len(p.Hits()))
		}
		// migration 2 sleeps 2s: the step is done about then
		if o.afterDuring > 5*time.Second {
			t.Errorf("the step took %s after migration 2 began sleeping 2s: a hanging read delays it", o.afterDuring)
		}
		time.Sleep(200 * time.Millisecond)
		if n := runwatchGoroutines(); n > before {
			t.Errorf("%d goroutines of runwatch left after the step returned (before: %d)", n, before)
		}
	})
	t.Run("one-read-hangs-then-cancel", func(t *testing.T) {
		// the first read (at the start) and the second pass; the third hangs
		// (a gateway that lost one request), then the operator cancels
		tr := f.taskRun("tr-hang-once", "migrate", nil)
		kc, p := proxied(t, &faultproxy.Rule{Method: "GET", Path: "/taskruns/", Skip: 2, Times: 1, Action: faultproxy.HoldUnsent})
		o := f.attack(t, migrations(t, 60*time.Second), kc, watchOf("taskrun", tr), true, func() {
			for len(p.Hits()) == 0 {
				time.Sleep(20 * time.Millisecond)
			}
			f.patchSpec(taskRuns, tr.GetName(), "status", "TaskRunCancelled")
		})
		if o.code != failure.CodeTransient || !slices.Equal(o.applied, []int64{1}) {
			t.Errorf("exit %d, applied %v: want 75 and [1]", o.code, o.applied)
		}
		if o.afterDuring > 5*time.Second {
			t.Errorf("the cancel was acted on %s after it was made (one read hung; polling every 200ms): a single lost request blinds the watch for kube.RequestTimeout", o.afterDuring.Round(time.Millisecond))
		}
	})
}

// TestAttackNoCluster: --watch-run where no cluster can be reached.
func TestAttackNoCluster(t *testing.T) {
	f := newFixture(t)
	tr := f.taskRun("tr-nocluster", "migrate", nil)
	t.Run("no-kubeconfig", func(t *testing.T) {
		t.Setenv("HOME", t.TempDir())
		o := f.attack(t, migrations(t, time.Second), filepath.Join(t.TempDir(), "absent"), watchOf("taskrun", tr), true, func() {})
		if o.code != 0 || !slices.Equal(o.applied, []int64{1, 2, 3}) {
			t.Errorf("exit %d, applied %v: want 0, [1 2 3]", o.code, o.applied)
		}
		if !strings.Contains(o.stderr, "cannot watch the run") {
			t.Error("the log does not say the run cannot be watched")
		}
	})
	t.Run("server-refuses-connections", func(t *testing.T) {
		kc := f.env.WriteKubeconfig(t, func(c *clientcmdapi.Config) {
			for _, cl := range c.Clusters {
				cl.Server = "https://127.0.0.1:1"
			}
		})
		o := f.attack(t, migrations(t, time.Second), kc, watchOf("taskrun", tr), true, func() {})
		if o.code != 0 || !slices.Equal(o.applied, []int64{1, 2, 3}) {
			t.Errorf("exit %d, applied %v: want 0, [1 2 3]", o.code, o.applied)
		}
	})
}

// TestAttackRetryAfterInterrupt: with --retry-transient-for, an interrupt by
// the watch must not be followed by another attempt.
func TestAttackRetryAfterInterrupt(t *testing.T) {
	f := newFixture(t)
	tr := f.taskRun("tr-retry", "migrate", nil)
	watch := append(watchOf("taskrun", tr), "--retry-transient-for", "1m")
	o := f.attack(t, migrations(t, 30*time.Second), f.kubeconfig, watch, true, func() {
		f.patchSpec(taskRuns, tr.GetName(), "status", "TaskRunCancelled")
	})
	if o.code != failure.CodeTransient || !slices.Equal(o.applied, []int64{1}) || strings.Contains(o.stderr, "trying again") {
		t.Errorf("exit %d, applied %v: want 75, [1] and no second attempt", o.code, o.applied)
	}
}

// TestAttackNoTransaction: a cancel during a statement of a migration
// without a transaction.
func TestAttackNoTransaction(t *testing.T) {
	f := newFixture(t)
	tr := f.taskRun("tr-notx", "migrate", nil)
	dir := writeMigrations(t, map[string]string{
		"00001_a.sql": "-- +goose Up\nCREATE TABLE a (id int);\n-- +goose Down\nDROP TABLE a;\n",
		"00002_b.sql": "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE b (id int);\nSELECT pg_sleep(30);\nCREATE TABLE b2 (id int);\n-- +goose Down\nDROP TABLE b;\n",
		"00003_c.sql": "-- +goose Up\nCREATE TABLE c (id int);\n-- +goose Down\nDROP TABLE c;\n",
	})
	o := f.attack(t, dir, f.kubeconfig, watchOf("taskrun", tr), true, func() {
		f.patchSpec(taskRuns, tr.GetName(), "status", "TaskRunCancelled")
	})
	if !slices.Equal(o.applied, []int64{1}) || o.dirty != 1 {
		t.Errorf("applied %v dirty %d: want [1] and migration 2 recorded as stopped partway", o.applied, o.dirty)
	}
	if !strings.Contains(o.stderr, "interrupted (TaskRun tr-notx was cancelled)") {
		t.Error("the error does not name the cancel")
	}
	if o.afterDuring > 5*time.Second {
		t.Errorf("took %s to stop", o.afterDuring)
	}
	t.Logf("exit code %d (a migration stopped partway: final)", o.code)
	_ = fmt.Sprint
}

// TestAttackCancelDuringRetryBackoff: with --retry-transient-for, the watch
// runs only inside an attempt. While the database is unreachable each attempt
// fails within milliseconds, before the watch's first read is answered, and
// the waits between attempts are not watched: a cancel made meanwhile is
// never seen, and the step goes on retrying (and would migrate as soon as the
// database is back, racing its first read).
func TestAttackCancelDuringRetryBackoff(t *testing.T) {
	f := newFixture(t)
	tr := f.taskRun("tr-backoff", "migrate", nil)
	t.Setenv("KUBECONFIG", f.kubeconfig)
	args := []string{"migrate", "--skip-version-check", "--database-url", "postgres://postgres@127.0.0.1:1/app?sslmode=disable&connect_timeout=2",
		"--dir", quickMigrations(t), "--results-dir", t.TempDir(), "--watch-run-namespace", f.ns, "--watch-run-interval", "200ms",
		"--retry-transient-for", "40s", "--watch-run", "taskrun/" + tr.GetName(), "--watch-run-uid", string(tr.GetUID())}
	var stdout bytes.Buffer
	stderr := &syncbuf.Buffer{}
	done := make(chan int, 1)
	go func() { done <- step.Run(context.Background(), binaries.Migrate(), args, &stdout, stderr) }()
	time.Sleep(4 * time.Second)
	f.patchSpec(taskRuns, tr.GetName(), "status", "TaskRunCancelled")
	t0 := time.Now()
	var code int
	select {
	case code = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("migrate did not end:\n%s", stderr.String())
	}
	took := time.Since(t0)
	t.Logf("exit %d, %s after the cancel\n%s\nstdout: %s", code, took.Round(time.Millisecond), stderr.String(), stdout.String())
	if took > 5*time.Second || !strings.Contains(stdout.String(), "interrupted (TaskRun tr-backoff was cancelled)") {
		t.Errorf("the step ended %s after the cancel, its error not naming it: the waits between attempts are not watched", took.Round(time.Millisecond))
	}
}
