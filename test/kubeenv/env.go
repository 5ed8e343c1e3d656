// Package kubeenv starts and tears down a real single-node Kubernetes on this
// machine for tests: etcd (Debian), kube-apiserver, kube-controller-manager,
// kube-scheduler, kube-proxy and kubelet (built from k8s.io/kubernetes by
// test/tools/kube/build.sh), containerd, runc and the CNI bridge plugin
// (Debian), with images built without Docker (package test/images).
//
// Network safety comes first: before any server starts, a bridge with the
// gateway address, a blackhole route for the service range and FORWARD rules
// that drop whatever would leave the bridge for another interface are put in
// place; the CNI bridge does not masquerade and pods get an empty
// resolv.conf. VerifyNetworkSafety reads all of it back before the kubelet
// (hence any pod) starts.
//
// Everything lives in one state directory whose state.json records every
// process, path and host change, so Teardown can undo a complete or a
// half-started environment from that file alone. A lock file keeps two
// environments from running at once.
//
// Tests use Main/Shared/NewNamespace (see testing.go); test/cmd/localenv and
// test/env.sh start and stop the same environment by hand.
package kubeenv

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/chartreuse-go/chartreuse/test/images"
)

// Images every environment holds (imported at start; use imagePullPolicy: Never).
const (
	PauseImage = "chartreuse.local/pause:v1"
	// AppImage runs test/images/app: it sleeps until SIGTERM, then waits
	// APP_SHUTDOWN_DELAY before exiting; HTTP /healthz and /readyz on :8080.
	AppImage = "chartreuse.local/test-app:v1"
)

// DefaultLockFile guards against two environments at once.
const DefaultLockFile = "/run/chartreuse-env.lock"

// Options configure Start.
type Options struct {
	// StateDir holds everything of the environment; it must not exist or be
	// empty. Default: a new /tmp/chartreuse-env-XXXX.
	StateDir string
	// KubeBinDir holds kube-apiserver, ..., kubelet. Default:
	// $CHARTREUSE_KUBE_BIN, else what test/tools/kube/build.sh prints (it
	// builds them the first time).
	KubeBinDir string
	// RepoDir is the repository root. Default: $CHARTREUSE_REPO, else found
	// from the working directory.
	RepoDir string
	// Detached keeps the servers running after the calling process exits
	// (localenv up). Otherwise they are killed with it.
	Detached bool
	// Logf receives progress lines. Default: stderr.
	Logf func(format string, args ...any)
	// Verbosity is the -v of the Kubernetes servers (default 1).
	Verbosity int
	// ReadyTimeout bounds the whole start (default 5 minutes, not counting
	// the first build of the binaries).
	ReadyTimeout time.Duration
	// LockFile (default DefaultLockFile).
	LockFile string
	// AuditLog turns on the API server's audit log (default off): every
	// request that changes Deployments, ReplicaSets, StatefulSets, CronJobs
	// or pods, and every read and write of a scale subresource, as one JSON
	// line in State.AuditLog, with who made it (user, user agent) and when it
	// was received and answered. Requests to apps resources are logged with
	// their bodies (level Request), pods without (Metadata).
	AuditLog bool
	// LockWait is how long Start waits for another test process's
	// environment to go away (default 0: fail at once; Main uses 10m). An
	// environment started by test/env.sh is never waited for.
	LockWait time.Duration

	failAfter string // tests: fail right after this step
	keepLock  bool   // tests: keep the lock when a start fails
}

// Env is a running environment.
type Env struct {
	Dir              string // state directory
	Kubeconfig       string // admin kubeconfig (system:masters)
	BridgeIP         string
	ContainerdSocket string
	APIServerURL     string
	NodeName         string
	PauseImage       string
	AppImage         string
	// StartupTime is how long Start took (0 when connected with Connect).
	StartupTime time.Duration

	st       *State
	owned    bool
	repo     string
	lockFile string
	logf     func(string, ...any)
	exited   map[string]chan struct{}

	mu        sync.Mutex
	stopped   bool
	clientset *kubernetes.Clientset
}

// Start brings the environment up and returns when the node is Ready. On
// failure it tears down whatever it had started and returns the error with
// the tail of the failing server's log.
func Start(ctx context.Context, opts Options) (_ *Env, err error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, "kubeenv: "+f+"\n", a...) }
	}
	repo, binDir, dir, lockFile, err := claim(ctx, opts, logf)
	if err != nil {
		return nil, err
	}

	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := time.Now()

	st := newState(opts, dir, lockFile, binDir, t0)
	e := &Env{st: st, owned: true, repo: repo, lockFile: lockFile, logf: logf, exited: map[string]chan struct{}{}}
	e.fill()
	for _, d := range []string{"logs", "pki", "etcd", "containerd", "cni/net.d", "cni/ipam", "kubelet/root",
		"kubelet/pki", "kubelet/pod-logs", "kube-proxy", "kcm", "images", "audit"} {
		if err := os.MkdirAll(st.path(d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := st.save(); err != nil {
		_ = releaseLock(lockFile, dir)
		return nil, err
	}
	defer func() {
		if err == nil {
			return
		}
		logf("start failed after %s: %v", time.Since(t0).Round(time.Millisecond), err)
		logf("tearing down what was started (logs were in %s)", st.LogDir)
		tails := e.LogTails(30)
		if saved, serr := e.SaveLogs(""); serr == nil {
			logf("server logs saved in %s", saved)
		}
		if terr := e.stopWith(!opts.keepLock); terr != nil {
			err = fmt.Errorf("%w\nteardown: %v", err, terr)
		}
		if tails != "" {
			err = fmt.Errorf("%w\n%s", err, tails)
		}
	}()

	logf("starting in %s (Kubernetes binaries from %s)", dir, binDir)
	if err := e.bringUp(ctx, opts); err != nil {
		return nil, err
	}
	st.Ready = true
	e.StartupTime = time.Since(t0)
	st.Timings.StartupSecs = e.StartupTime.Seconds()
	if err := st.save(); err != nil {
		return nil, err
	}
	logf("environment up in %s (node %s Ready; kubeconfig %s)", e.StartupTime.Round(100*time.Millisecond), st.NodeName, st.Kubeconfig)
	return e, nil
}

// claim checks the host, finds the repository and the Kubernetes binaries,
// makes the state directory and takes the environment's lock.
func claim(ctx context.Context, opts Options, logf func(string, ...any)) (repo, binDir, dir, lockFile string, err error) {
	if err := Preflight(); err != nil {
		return "", "", "", "", err
	}
	if repo, err = repoDir(opts.RepoDir); err != nil {
		return "", "", "", "", err
	}
	if binDir, err = kubeBinDir(ctx, opts.KubeBinDir, repo, logf); err != nil {
		return "", "", "", "", err
	}
	dir = opts.StateDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "chartreuse-env-"); err != nil {
			return "", "", "", "", err
		}
	} else if err := ensureEmptyDir(dir); err != nil {
		return "", "", "", "", err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return "", "", "", "", err
	}
	lockFile = opts.LockFile
	if lockFile == "" {
		lockFile = DefaultLockFile
	}
	if err := acquireLock(ctx, lockFile, dir, opts.Detached, opts.LockWait, logf); err != nil {
		_ = os.Remove(dir) // only if still empty
		return "", "", "", "", err
	}
	return repo, binDir, dir, lockFile, nil
}

// newState is the state of an environment about to start in dir.
func newState(opts Options, dir, lockFile, binDir string, t0 time.Time) *State {
	st := &State{
		Dir: dir, OwnerPID: os.Getpid(), LockFile: lockFile, Detached: opts.Detached, KubeBinDir: binDir,
		Bridge: BridgeName, BridgeIP: BridgeIP, PodCIDR: PodCIDR, ServiceCIDR: ServiceCIDR,
		FirstServiceIP: FirstServiceIP, NodeName: NodeName, CNINetwork: CNINetwork,
		PauseImage: PauseImage, AppImage: AppImage,
	}
	st.Kubeconfig = st.path("kubeconfig")
	st.CACert = st.path("pki", "ca.crt")
	st.ContainerdSocket = st.path("containerd", "containerd.sock")
	st.ContainerdRoot = st.path("containerd", "root")
	st.ContainerdState = st.path("containerd", "state")
	st.KubeletRoot = st.path("kubelet", "root")
	st.CNIConfDir = st.path("cni", "net.d")
	st.ResolvConf = st.path("resolv.conf")
	st.LogDir = st.path("logs")
	if opts.AuditLog {
		// Not in LogDir: its lines would swamp the server log tails.
		st.AuditLog = st.path("audit", "audit.log")
	}
	st.Timings = Timings{StartedAt: t0, Steps: map[string]int64{}}
	st.Net.Sysctls = readSysctls()
	st.HostDirsCreated = missingHostDirs()
	return st
}

// bringUp starts the servers one step after another, each timed in the state,
// while the images are built alongside.
func (e *Env) bringUp(ctx context.Context, opts Options) (err error) {
	st := e.st
	// Images are built (Go cross-builds) while the control plane starts.
	imgDone := make(chan struct{})
	var imgErr error
	go func() { defer close(imgDone); imgErr = e.buildImages(ctx) }()
	waitImages := func() error {
		select {
		case <-imgDone:
			return imgErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer func() {
		if err != nil {
			select { // let a running build finish before the directory goes
			case <-imgDone:
			case <-time.After(30 * time.Second):
			}
		}
	}()

	v := opts.Verbosity
	if v == 0 {
		v = 1
	}
	for _, s := range []struct {
		name string
		run  func() error
	}{
		{"network", e.startNetwork},
		{"pki", e.makePKI},
		{"etcd", func() error { return e.startEtcd(ctx) }},
		{"kube-apiserver", func() error { return e.startAPIServer(ctx, v) }},
		{"controllers", func() error { return e.startControllers(v) }},
		{"kube-proxy", func() error { return e.startKubeProxy(v) }},
		{"containerd", func() error { return e.startContainerd(ctx) }},
		{"images", func() error { return e.loadImages(ctx, waitImages) }},
		{"safety", e.checkSafety},
		{"kubelet", func() error { return e.startKubelet(v) }},
		{"ready", func() error { return e.waitReady(ctx) }},
	} {
		began := time.Now()
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if err := s.run(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		st.Timings.Steps[s.name] = time.Since(began).Milliseconds()
		if err := st.save(); err != nil {
			return err
		}
		if opts.failAfter == s.name {
			return fmt.Errorf("injected failure after step %s", s.name)
		}
	}
	return nil
}

// loadImages loads the pause and application images once they are built.
func (e *Env) loadImages(ctx context.Context, built func() error) error {
	if err := built(); err != nil {
		return err
	}
	for _, ref := range []string{PauseImage, AppImage} {
		if err := e.LoadImage(ctx, e.imageTar(ref)); err != nil {
			return err
		}
	}
	return nil
}

// checkSafety writes the kubelet's configuration and refuses to go on unless
// the host network is protected from what the node will run.
func (e *Env) checkSafety() error {
	if err := e.writeKubeletConfig(); err != nil {
		return err
	}
	if err := pinForwardRule(); err != nil {
		return err
	}
	rep := VerifyNetworkSafety(e.st)
	e.st.Safety = rep
	if len(rep.Problems) > 0 {
		return fmt.Errorf("network safety not in place, not starting the kubelet:\n  %s", strings.Join(rep.Problems, "\n  "))
	}
	e.logf("network safety verified before the kubelet starts (%d checks)", len(rep.Checks))
	return nil
}

// Connect attaches to an environment started elsewhere (test/env.sh up); the
// returned Env does not own it: Stop leaves it running.
func Connect(stateDir string) (*Env, error) {
	st, err := ReadState(stateDir)
	if err != nil {
		return nil, fmt.Errorf("connect to test environment %s: %w", stateDir, err)
	}
	if !st.Ready {
		return nil, fmt.Errorf("test environment %s is not ready (half started?); run `test/env.sh down` and `up` again", stateDir)
	}
	for _, p := range st.Processes {
		if !p.alive() {
			return nil, fmt.Errorf("test environment %s: %s (pid %d) is not running; run `test/env.sh down` and `up` again", stateDir, p.Name, p.PID)
		}
	}
	e := &Env{st: st, logf: func(string, ...any) {}, exited: map[string]chan struct{}{}}
	e.fill()
	e.repo, _ = repoDir("")
	return e, nil
}

func (e *Env) fill() {
	st := e.st
	e.Dir, e.Kubeconfig, e.BridgeIP, e.ContainerdSocket = st.Dir, st.Kubeconfig, st.BridgeIP, st.ContainerdSocket
	e.APIServerURL, e.NodeName, e.PauseImage, e.AppImage = st.APIServerURL, st.NodeName, st.PauseImage, st.AppImage
}

// State returns a copy of the recorded state (paths, processes, host changes,
// the safety report, timings).
func (e *Env) State() State {
	if st, err := ReadState(e.st.Dir); err == nil {
		return *st
	}
	return *e.st
}

// Owned reports whether this process started the environment (and Stop
// tears it down).
func (e *Env) Owned() bool { return e.owned }

// Stop tears the environment down if this process started it; for a
// connected environment it does nothing. Safe to call more than once.
func (e *Env) Stop() error {
	if !e.owned {
		return nil
	}
	return e.stop()
}

func (e *Env) stop() error { return e.stopWith(true) }

// stopWith tears down; releaseTheLock false keeps the lock (tests check the
// machine afterwards without another environment starting meanwhile).
func (e *Env) stopWith(releaseTheLock bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return nil
	}
	e.stopped = true
	t := time.Now()
	err := teardown(e.st, e.logf)
	if releaseTheLock {
		if rerr := releaseLock(e.lockFile, e.st.Dir); rerr != nil && err == nil {
			err = rerr
		}
	}
	e.logf("torn down in %s", time.Since(t).Round(100*time.Millisecond))
	return err
}

func (e *Env) isStopped() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stopped
}

// RESTConfig is the admin (system:masters) client configuration.
func (e *Env) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", e.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// Clientset is an admin clientset (shared, safe for concurrent use).
func (e *Env) Clientset() (*kubernetes.Clientset, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.clientset != nil {
		return e.clientset, nil
	}
	cfg, err := e.RESTConfig()
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	e.clientset = cs
	return cs, nil
}

// LoadImage imports an image tarball (docker save format, as written by
// images.WriteTarball) into the node's containerd.
func (e *Env) LoadImage(ctx context.Context, tarball string) error {
	return images.Import(ctx, e.ContainerdSocket, tarball)
}

// LoadGoImage cross-builds the Go main package pkg of the repository (e.g.
// "./test/images/app") into an image ref and imports it.
func (e *Env) LoadGoImage(ctx context.Context, pkg, ref string, cfg images.Config) error {
	if e.repo == "" {
		return errors.New("repository root unknown; set CHARTREUSE_REPO")
	}
	f, err := os.CreateTemp("", "chartreuse-image-*.tar")
	if err != nil {
		return err
	}
	f.Close()
	defer os.Remove(f.Name())
	if err := images.BuildGoImage(ctx, e.repo, pkg, ref, f.Name(), cfg); err != nil {
		return err
	}
	return e.LoadImage(ctx, f.Name())
}

// LogFiles maps each server's name to its log file.
func (e *Env) LogFiles() map[string]string {
	m := map[string]string{}
	for _, p := range e.State().Processes {
		m[p.Name] = p.Log
	}
	return m
}

// LogTails returns the last n lines of every server log.
func (e *Env) LogTails(n int) string {
	var b strings.Builder
	for _, p := range e.State().Processes {
		fmt.Fprintf(&b, "----- last %d lines of %s (%s)\n%s", n, p.Name, p.Log, tail(p.Log, n))
	}
	return b.String()
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error() + "\n"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 256<<10 {
		_, _ = f.Seek(-256<<10, io.SeekEnd)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// ---------------------------------------------------------------- steps

func (e *Env) startNetwork() error {
	st := e.st
	if err := e.setupNetwork(); err != nil {
		return err
	}
	conf, err := cniConfig(st)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(st.CNIConfDir, "10-"+st.CNINetwork+".conflist"), conf, 0o644); err != nil {
		return err
	}
	return os.WriteFile(st.ResolvConf, []byte(resolvConf), 0o644)
}

// resolvConf is the kubelet's resolvConf: no name server and no search
// domain. It cannot be empty: given an empty DNS configuration, containerd
// copies the host's /etc/resolv.conf (and its name server) into the pod.
const resolvConf = `# chartreuse test environment: pods get no name server (lookups go to
# 127.0.0.1 inside the pod and fail at once). Not empty on purpose: containerd
# copies the host's /etc/resolv.conf into pods whose DNS configuration is empty.
options ndots:1
`

func (e *Env) makePKI() error {
	st := e.st
	p, err := newPKI(st.path("pki"))
	if err != nil {
		return err
	}
	bridge, first := net.ParseIP(st.BridgeIP), net.ParseIP(st.FirstServiceIP)
	reqs := []certRequest{
		{name: "apiserver", cn: "kube-apiserver", server: true,
			dnsNames: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"},
			ips:      []net.IP{first, bridge, net.ParseIP("127.0.0.1")}},
		{name: "admin", cn: "chartreuse-admin", orgs: []string{"system:masters"}, client: true},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}, client: true},
		{name: "controller-manager", cn: "system:kube-controller-manager", client: true},
		{name: "scheduler", cn: "system:kube-scheduler", client: true},
		{name: "kube-proxy", cn: "system:kube-proxy", client: true},
		{name: "kubelet", cn: "system:node:" + st.NodeName, orgs: []string{"system:nodes"}, client: true},
		{name: "kubelet-serving", cn: st.NodeName, server: true, dnsNames: []string{st.NodeName}, ips: []net.IP{bridge}},
	}
	for _, r := range reqs {
		if err := p.issue(r); err != nil {
			return err
		}
	}
	if err := p.serviceAccountKeys(); err != nil {
		return err
	}
	return nil
}

func (e *Env) kubeconfigFor(user string) string {
	return e.st.path("pki", user+".kubeconfig")
}

func (e *Env) startEtcd(ctx context.Context) error {
	st := e.st
	client, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	peer, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	// etcd's data lives in memory: on a busy 2-core machine (PostgreSQL
	// checkpoints and image builds of parallel packages) a WAL fsync on disk
	// once took long enough that etcd answered "request timed out" for 30 s
	// and a whole test package failed. The cluster lives for one run only.
	if err := syscall.Mount("tmpfs", st.path("etcd"), "tmpfs", 0, "size=2g,mode=0700"); err != nil {
		return fmt.Errorf("mount a tmpfs for etcd's data: %w", err)
	}
	st.EtcdURL = fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	p, err := e.startProcess("etcd", "etcd", []string{
		"--name=chartreuse", "--data-dir=" + st.path("etcd"),
		"--listen-client-urls=" + st.EtcdURL, "--advertise-client-urls=" + st.EtcdURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=chartreuse=" + peerURL, "--initial-cluster-state=new",
		"--logger=zap", "--log-outputs=stderr", "--snapshot-count=10000",
	}, nil)
	if err != nil {
		return err
	}
	return e.waitHTTP(ctx, p, st.EtcdURL+"/health", nil, func(b string) bool { return strings.Contains(b, `"health":"true"`) })
}

func (e *Env) adminTLS() (*tls.Config, error) {
	st := e.st
	ca, err := os.ReadFile(st.CACert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(st.path("pki", "admin.crt"), st.path("pki", "admin.key"))
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}, nil
}

func (e *Env) startAPIServer(ctx context.Context, v int) error {
	st := e.st
	port, err := freePort(st.BridgeIP)
	if err != nil {
		return err
	}
	st.APIServerURL = fmt.Sprintf("https://%s:%d", st.BridgeIP, port)
	e.APIServerURL = st.APIServerURL
	pki := func(f string) string { return st.path("pki", f) }
	for _, u := range []struct{ file, name string }{
		{st.Kubeconfig, "admin"}, {e.kubeconfigFor("controller-manager"), "controller-manager"},
		{e.kubeconfigFor("scheduler"), "scheduler"}, {e.kubeconfigFor("kube-proxy"), "kube-proxy"},
		{e.kubeconfigFor("kubelet"), "kubelet"},
	} {
		if err := writeKubeconfig(u.file, st.APIServerURL, st.CACert, pki(u.name+".crt"), pki(u.name+".key"), u.name); err != nil {
			return err
		}
	}
	args := []string{
		"--etcd-servers=" + st.EtcdURL,
		"--bind-address=" + st.BridgeIP, "--advertise-address=" + st.BridgeIP, fmt.Sprintf("--secure-port=%d", port),
		"--tls-cert-file=" + pki("apiserver.crt"), "--tls-private-key-file=" + pki("apiserver.key"),
		"--client-ca-file=" + st.CACert,
		"--service-cluster-ip-range=" + st.ServiceCIDR,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki("sa.pub"), "--service-account-signing-key-file=" + pki("sa.key"),
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--kubelet-client-certificate=" + pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + pki("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority=" + st.CACert,
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=true",
		// Debian's etcd 3.4.23 cannot report watch progress on request, so
		// with WatchList (beta, on by default in 1.34) a plain watch without
		// a resourceVersion waits for the watch cache to catch up with etcd
		// and fails after 3s ("Too large resource version") on resources
		// that rarely change. Informers are not affected; plain watches are.
		"--feature-gates=WatchList=false",
		"--cert-dir=" + st.path("pki", "apiserver-generated"),
		"--profiling=false",
		fmt.Sprintf("--v=%d", v),
	}
	if st.AuditLog != "" {
		policy := st.path("audit", "policy.yaml")
		if err := writeFile(policy, auditPolicy); err != nil {
			return err
		}
		// batch: the requests do not wait for the file; the events keep the
		// times the server received and answered each request.
		args = append(args, "--audit-policy-file="+policy, "--audit-log-path="+st.AuditLog,
			"--audit-log-format=json", "--audit-log-mode=batch", "--audit-log-maxbackup=0")
	}
	p, err := e.startProcess("kube-apiserver", e.bin("kube-apiserver"), args, nil)
	if err != nil {
		return err
	}
	tlsCfg, err := e.adminTLS()
	if err != nil {
		return err
	}
	return e.waitHTTP(ctx, p, st.APIServerURL+"/readyz", tlsCfg, func(b string) bool { return strings.TrimSpace(b) == "ok" })
}

func (e *Env) startControllers(v int) error {
	st := e.st
	pki := func(f string) string { return st.path("pki", f) }
	kcmPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	kcm := e.kubeconfigFor("controller-manager")
	if _, err := e.startProcess("kube-controller-manager", e.bin("kube-controller-manager"), []string{
		"--kubeconfig=" + kcm, "--authentication-kubeconfig=" + kcm, "--authorization-kubeconfig=" + kcm,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", kcmPort),
		"--root-ca-file=" + st.CACert,
		"--service-account-private-key-file=" + pki("sa.key"),
		"--use-service-account-credentials=true",
		"--cluster-signing-cert-file=" + pki("ca.crt"), "--cluster-signing-key-file=" + pki("ca.key"),
		"--service-cluster-ip-range=" + st.ServiceCIDR,
		"--leader-elect=false",
		"--cert-dir=" + st.path("kcm"),
		fmt.Sprintf("--v=%d", v),
	}, nil); err != nil {
		return err
	}
	schedPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	sched := e.kubeconfigFor("scheduler")
	_, err = e.startProcess("kube-scheduler", e.bin("kube-scheduler"), []string{
		"--kubeconfig=" + sched, "--authentication-kubeconfig=" + sched, "--authorization-kubeconfig=" + sched,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", schedPort),
		"--leader-elect=false",
		fmt.Sprintf("--v=%d", v),
	}, nil)
	return err
}

func (e *Env) startKubeProxy(v int) error {
	st := e.st
	cfg := st.path("kube-proxy", "config.yaml")
	if err := writeFile(cfg, kubeProxyConfig(st, e.kubeconfigFor("kube-proxy"))); err != nil {
		return err
	}
	// kube-proxy waits (up to 30s) for its Node to exist before it programs
	// anything, so Start waits for its rules only once the kubelet has
	// registered the node (waitReady). Until then the blackhole route drops
	// service traffic.
	_, err := e.startProcess("kube-proxy", e.bin("kube-proxy"), []string{"--config=" + cfg, fmt.Sprintf("--v=%d", v)}, nil)
	return err
}

func (e *Env) startContainerd(ctx context.Context) error {
	st := e.st
	doc, err := containerdConfig(st)
	if err != nil {
		return err
	}
	cfg := st.path("containerd", "config.toml")
	if err := writeFile(cfg, doc); err != nil {
		return err
	}
	p, err := e.startProcess("containerd", "containerd", []string{"--config=" + cfg},
		[]string{"HTTP_PROXY=" + deadProxy, "HTTPS_PROXY=" + deadProxy, "NO_PROXY="})
	if err != nil {
		return err
	}
	return e.waitFor(ctx, p, "containerd", func() (bool, error) {
		if _, err := os.Stat(st.ContainerdSocket); err != nil {
			return false, nil
		}
		_, err := run("ctr", "--address", st.ContainerdSocket, "version")
		return err == nil, nil
	})
}

func (e *Env) writeKubeletConfig() error {
	hp, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	return writeFile(e.st.path("kubelet", "config.yaml"), kubeletConfig(e.st, hp))
}

func (e *Env) startKubelet(v int) error {
	st := e.st
	cfg := st.path("kubelet", "config.yaml")
	st.Timings.KubeletAt = time.Now()
	_, err := e.startProcess("kubelet", e.bin("kubelet"), []string{
		"--config=" + cfg, "--kubeconfig=" + e.kubeconfigFor("kubelet"),
		"--root-dir=" + st.KubeletRoot, "--cert-dir=" + st.path("kubelet", "pki"),
		"--hostname-override=" + st.NodeName, "--node-ip=" + st.BridgeIP,
		fmt.Sprintf("--v=%d", max(v, 2)),
	}, nil)
	return err
}

// waitReady waits until the node is Ready and the control plane can run pods
// (the default service account exists).
func (e *Env) waitReady(ctx context.Context) error {
	cs, err := e.Clientset()
	if err != nil {
		return err
	}
	kubelet := e.st.process("kubelet")
	if err := e.waitFor(ctx, kubelet, "node "+e.st.NodeName+" Ready", func() (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, e.st.NodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	}); err != nil {
		return err
	}
	if err := e.waitFor(ctx, e.st.process("kube-controller-manager"), "the default service account", func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, nil
	}); err != nil {
		return err
	}
	if err := e.superviseControllerManager(ctx); err != nil {
		return err
	}
	// A misspelt configuration field only makes the servers warn; fail instead.
	for _, name := range []string{"kubelet", "kube-proxy"} {
		if p := e.st.process(name); p != nil {
			if b, err := os.ReadFile(p.Log); err == nil && strings.Contains(string(b), "strict decoding error") {
				return fmt.Errorf("%s ignored part of its configuration (\"strict decoding error\" in %s)", name, p.Log)
			}
		}
	}
	// kube-proxy has programmed the kubernetes service.
	if err := e.waitFor(ctx, e.st.process("kube-proxy"), "kube-proxy to program the kubernetes service", func() (bool, error) {
		out, err := run("iptables", "-w", "5", "-t", "nat", "-S", "KUBE-SERVICES")
		return err == nil && strings.Contains(out, e.st.FirstServiceIP+"/32"), nil
	}); err != nil {
		return err
	}
	// kube-proxy has prepended its jumps to FORWARD: put ours first again
	// and check everything once more.
	if err := pinForwardRule(); err != nil {
		return err
	}
	rep := VerifyNetworkSafety(e.st)
	e.st.SafetyReady = rep
	if len(rep.Problems) > 0 {
		return fmt.Errorf("network safety broken after start-up:\n  %s", strings.Join(rep.Problems, "\n  "))
	}
	return nil
}

func (e *Env) buildImages(ctx context.Context) error {
	for _, im := range []struct{ pkg, ref string }{
		{"./test/images/pause", PauseImage},
		{"./test/images/app", AppImage},
	} {
		if err := images.BuildGoImage(ctx, e.repo, im.pkg, im.ref, e.imageTar(im.ref), images.Config{}); err != nil {
			return err
		}
	}
	return nil
}

func (e *Env) imageTar(ref string) string {
	r := strings.NewReplacer("/", "_", ":", "_")
	return e.st.path("images", r.Replace(ref)+".tar")
}

func (e *Env) bin(name string) string { return filepath.Join(e.st.KubeBinDir, name) }

// ---------------------------------------------------------------- helpers

// waitFor polls cond every 200ms until it holds, the context ends, or p
// exits (then the error says so and Start adds the log tail).
func (e *Env) waitFor(ctx context.Context, p *Process, what string, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if p != nil {
			if ch, found := e.exited[p.Name]; found {
				select {
				case <-ch:
					return fmt.Errorf("%s exited while waiting for %s; see %s", p.Name, what, p.Log)
				default:
				}
			} else if !p.alive() {
				return fmt.Errorf("%s is not running while waiting for %s; see %s", p.Name, what, p.Log)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (e *Env) waitHTTP(ctx context.Context, p *Process, url string, tlsCfg *tls.Config, ok func(body string) bool) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: nil}}
	return e.waitFor(ctx, p, url, func() (bool, error) {
		resp, err := c.Get(url)
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return resp.StatusCode == http.StatusOK && ok(string(b)), nil
	})
}

func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func ensureEmptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("state directory %s is not empty", dir)
	}
	return nil
}

// Preflight checks that this process can run the environment: root and the
// host programs. The error tells what is missing (test/install-deps.sh
// installs the packages).
func Preflight() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	var missing []string
	for _, b := range []string{"etcd", "containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip6tables", "ip", "mount", "umount", "nsenter", "conntrack"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		missing = append(missing, "/usr/lib/cni/bridge")
	}
	if _, err := os.Stat("/usr/lib/cni/host-local"); err != nil {
		missing = append(missing, "/usr/lib/cni/host-local")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s (run test/install-deps.sh)", ErrMissingDeps, strings.Join(missing, ", "))
	}
	return nil
}

var (
	// ErrNotRoot: the environment needs root (network, mounts, containers).
	ErrNotRoot = errors.New("the Kubernetes test environment needs root")
	// ErrMissingDeps: host programs are missing.
	ErrMissingDeps = errors.New("programs the Kubernetes test environment needs are missing")
)

// repoDir finds the repository root (the directory with the product go.mod).
func repoDir(given string) (string, error) {
	if given != "" {
		return filepath.Abs(given)
	}
	if d := os.Getenv("CHARTREUSE_REPO"); d != "" {
		return filepath.Abs(d)
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, d := range starts {
		for ; ; d = filepath.Dir(d) {
			b, err := os.ReadFile(filepath.Join(d, "go.mod"))
			if err == nil && strings.Contains(string(b), "module github.com/chartreuse-go/chartreuse\n") {
				return d, nil
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	return "", errors.New("cannot find the repository root (go.mod of github.com/chartreuse-go/chartreuse); set CHARTREUSE_REPO")
}

// kubeBinDir returns the directory of the Kubernetes binaries, building them
// with test/tools/kube/build.sh when needed.
func kubeBinDir(ctx context.Context, given, repo string, logf func(string, ...any)) (string, error) {
	dir := given
	if dir == "" {
		dir = os.Getenv("CHARTREUSE_KUBE_BIN")
	}
	if dir == "" {
		script := filepath.Join(repo, "test", "tools", "kube", "build.sh")
		cmd := exec.CommandContext(ctx, script)
		cmd.Stderr = os.Stderr
		t := time.Now()
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("%s: %w", script, err)
		}
		if d := time.Since(t); d > 5*time.Second {
			logf("Kubernetes binaries built in %s", d.Round(time.Second))
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		dir = strings.TrimSpace(lines[len(lines)-1])
	}
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("the Kubernetes binaries: %w", err)
		}
	}
	return dir, nil
}

// waitControllersStarted waits until kube-controller-manager's /healthz lists
// its controllers: it adds their checks once every controller has started, and
// until then an API server outage can make it exit.
func (e *Env) waitControllersStarted(ctx context.Context) error {
	p := e.st.process("kube-controller-manager")
	if p == nil {
		return fmt.Errorf("kube-controller-manager is not part of this environment")
	}
	var port string
	for _, a := range p.Args {
		if v, ok := strings.CutPrefix(a, "--secure-port="); ok {
			port = v
		}
	}
	// Its serving certificate is self-signed in --cert-dir, written at start.
	pool := x509.NewCertPool()
	if err := e.waitFor(ctx, p, "kube-controller-manager's serving certificate", func() (bool, error) {
		b, err := os.ReadFile(e.st.path("kcm", "kube-controller-manager.crt"))
		return err == nil && pool.AppendCertsFromPEM(b), nil
	}); err != nil {
		return err
	}
	tlsCfg := &tls.Config{ServerName: "localhost", RootCAs: pool, MinVersion: tls.VersionTLS12}
	return e.waitHTTP(ctx, p, "https://127.0.0.1:"+port+"/healthz?verbose", tlsCfg, func(b string) bool {
		return strings.Contains(b, "[+]serviceaccount-controller ok")
	})
}
