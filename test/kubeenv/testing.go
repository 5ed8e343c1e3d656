package kubeenv

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EnvVar names the environment variable that points tests at a running
// environment's state directory (started with `test/env.sh up`). Unset, each
// test package that calls Main starts its own environment, on first use, and
// stops it after its tests.
const EnvVar = "CHARTREUSE_TEST_ENV"

var (
	mainOpts   Options
	mainCalled bool
	sharedOnce sync.Once
	shared     *Env
	sharedErr  error
)

// RaiseParallel sets -test.parallel to n unless the command line gave it: go
// test's default, GOMAXPROCS, is 2 on the CI node, and these tests mostly wait
// for pods. Call it from TestMain before Main.
func RaiseParallel(n int) {
	if !flag.Parsed() {
		flag.Parse()
	}
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		_ = flag.Set("test.parallel", strconv.Itoa(n))
	}
}

// Main runs a test package whose tests use Shared or NewNamespace:
//
//	func TestMain(m *testing.M) { kubeenv.Main(m) }
//
// The environment is connected (CHARTREUSE_TEST_ENV) or started when a test
// first asks for it, and stopped after all tests (also on SIGINT/SIGTERM).
// When tests failed, the server logs are copied to a directory that outlives
// the teardown, and their tails are printed. Main calls os.Exit.
func Main(m *testing.M, opts ...Options) {
	if len(opts) > 0 {
		mainOpts = opts[0]
	}
	mainCalled = true
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "kubeenv: %s: tearing the test environment down\n", s)
		runAfterTests()
		stopShared(false)
		os.Exit(130)
	}()
	code := m.Run()
	runAfterTests()
	stopShared(code != 0)
	os.Exit(code)
}

var (
	afterMu    sync.Mutex
	afterTests []func()
)

// AfterTests registers f to run once the package's tests have ended (or Main
// was interrupted), before Main tears the environment down: the place to
// stop, by PID, a server the package's tests shared.
func AfterTests(f func()) {
	afterMu.Lock()
	defer afterMu.Unlock()
	afterTests = append(afterTests, f)
}

// runAfterTests runs what AfterTests registered, the last first, once each.
func runAfterTests() {
	afterMu.Lock()
	fs := afterTests
	afterTests = nil
	afterMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

func stopShared(failed bool) {
	sharedOnce.Do(func() { sharedErr = errors.New("test environment already stopped") })
	if shared == nil || shared.isStopped() {
		return
	}
	if failed {
		if shared.owned {
			if dir, err := shared.SaveLogs(""); err == nil {
				fmt.Fprintf(os.Stderr, "kubeenv: tests failed; server logs saved in %s\n", dir)
			}
			fmt.Fprint(os.Stderr, shared.LogTails(30))
		} else {
			fmt.Fprintf(os.Stderr, "kubeenv: tests failed; server logs are in %s\n", shared.st.LogDir)
		}
	}
	if err := shared.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "kubeenv: teardown: %v\n", err)
	}
}

// Shared returns the package's environment, starting or connecting it on
// first use. It skips the test under -short, and when not running as root (outside CI), and
// fails it for any other problem, including a missing root in CI (CI=true).
func Shared(t testing.TB) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the real Kubernetes environment (not run with -short)")
	}
	sharedOnce.Do(func() {
		if !mainCalled {
			sharedErr = errors.New("kubeenv.Shared needs `func TestMain(m *testing.M) { kubeenv.Main(m) }` in the package")
			return
		}
		if dir := os.Getenv(EnvVar); dir != "" {
			shared, sharedErr = Connect(dir)
			return
		}
		if sharedErr = Preflight(); sharedErr != nil {
			return
		}
		opts := mainOpts
		if opts.LockWait == 0 {
			opts.LockWait = 10 * time.Minute
		}
		shared, sharedErr = Start(context.Background(), opts)
	})
	if sharedErr != nil {
		if errors.Is(sharedErr, ErrNotRoot) && os.Getenv("CI") != "true" {
			t.Skipf("skipping: %v (run the tests as root)", sharedErr)
		}
		t.Fatalf("Kubernetes test environment: %v", sharedErr)
	}
	return shared
}

// NewNamespace creates a namespace unique to the test in the shared
// environment, waits until pods can be created in it, and deletes it when the
// test ends; if the test failed, the namespace's pods, events and container
// logs and the tails of the server logs are logged first.
func NewNamespace(t testing.TB) string {
	t.Helper()
	return Shared(t).NewNamespace(t)
}

var nsUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// NewNamespace: see the package function.
func (e *Env) NewNamespace(t testing.TB) string {
	t.Helper()
	cs, err := e.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	base := strings.Trim(nsUnsafe.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 40 {
		base = strings.Trim(base[:40], "-")
	}
	name := "t-" + base + "-" + randSuffix(5)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"chartreuse.test/test": "true"}}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if e.isStopped() {
			return
		}
		if t.Failed() {
			e.dumpNamespace(t, name)
			t.Logf("server logs (%s):\n%s", e.st.LogDir, e.LogTails(40))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		policy := metav1.DeletePropagationBackground
		if err := cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	// The ServiceAccount admission plugin rejects pods until the
	// controller-manager has created the namespace's default account.
	for {
		_, err := cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return name
		}
		if !apierrors.IsNotFound(err) {
			t.Fatalf("namespace %s: %v", name, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("namespace %s: no default service account after 1m", name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func randSuffix(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// dumpNamespace logs pods (with container states), events and container
// log tails of the namespace.
func (e *Env) dumpNamespace(t testing.TB, ns string) {
	cs, err := e.Clientset()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var b strings.Builder
	fmt.Fprintf(&b, "===== namespace %s\n", ns)
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "pod %s: phase=%s node=%s ip=%s deleting=%v\n", p.Name, p.Status.Phase, p.Spec.NodeName, p.Status.PodIP, p.DeletionTimestamp != nil)
			for _, c := range p.Status.Conditions {
				fmt.Fprintf(&b, "  condition %s=%s %s %s\n", c.Type, c.Status, c.Reason, c.Message)
			}
			for _, c := range p.Status.ContainerStatuses {
				fmt.Fprintf(&b, "  container %s ready=%v restarts=%d state=%+v\n", c.Name, c.Ready, c.RestartCount, c.State)
			}
			for _, c := range p.Spec.Containers {
				tailLines := int64(50)
				r, err := cs.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: c.Name, TailLines: &tailLines}).Stream(ctx)
				if err != nil {
					fmt.Fprintf(&b, "  logs of %s: %v\n", c.Name, err)
					continue
				}
				logs, _ := io.ReadAll(io.LimitReader(r, 64<<10))
				r.Close()
				fmt.Fprintf(&b, "  --- logs of %s\n%s\n", c.Name, logs)
			}
		}
	}
	events, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		sort.Slice(events.Items, func(i, j int) bool {
			return events.Items[i].LastTimestamp.Before(&events.Items[j].LastTimestamp)
		})
		for _, ev := range events.Items {
			fmt.Fprintf(&b, "event %s %s/%s %s: %s\n", ev.LastTimestamp.Format(time.RFC3339), ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.Reason, ev.Message)
		}
	}
	t.Log(b.String())
}

// SaveLogs copies the server logs to dir (default: a new
// /tmp/chartreuse-env-logs-XXXX) so they outlive the teardown.
func (e *Env) SaveLogs(dir string) (string, error) {
	var err error
	if dir == "" {
		if dir, err = os.MkdirTemp("", "chartreuse-env-logs-"); err != nil {
			return "", err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	files, _ := filepath.Glob(filepath.Join(e.st.LogDir, "*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			return dir, err
		}
	}
	return dir, nil
}
