package kubeenv_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
)

func TestMain(m *testing.M) { kubeenv.Main(m) }

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// (a) The network-safety rules were in place before the kubelet (and so
// any pod) started, and still are. Everything is checked by reading routes,
// iptables rules and configuration, never by sending traffic.
func TestNetworkSafetyBeforeFirstPod(t *testing.T) {
	env := kubeenv.Shared(t)
	st := env.State()

	// The check Start made before it started the kubelet.
	if st.Safety == nil {
		t.Fatal("no safety report recorded before the kubelet started")
	}
	if len(st.Safety.Problems) > 0 {
		t.Fatalf("safety problems before the kubelet started: %v", st.Safety.Problems)
	}
	if !st.Safety.At.Before(st.Timings.KubeletAt) {
		t.Fatalf("safety verified at %s, not before the kubelet started at %s", st.Safety.At, st.Timings.KubeletAt)
	}
	for _, c := range st.Safety.Checks {
		t.Logf("verified before the kubelet: %s", c)
	}
	cs := clientset(t, env)
	ctx := context.Background()
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if !p.CreationTimestamp.Time.After(st.Safety.At.Add(-time.Second)) {
			t.Errorf("pod %s/%s created at %s, before the safety check at %s", p.Namespace, p.Name, p.CreationTimestamp, st.Safety.At)
		}
	}

	// The same, read again now, independently of VerifyNetworkSafety.
	if out := sh(t, "ip", "route", "show", "type", "blackhole"); !strings.Contains(out, "blackhole "+st.ServiceCIDR) {
		t.Errorf("no blackhole route for %s:\n%s", st.ServiceCIDR, out)
	}
	drop := fmt.Sprintf("-A FORWARD -i %s ! -o %s -m comment --comment chartreuse-env -j DROP", st.Bridge, st.Bridge)
	for _, table := range []string{"filter", "mangle"} {
		rules := sh(t, "iptables", "-w", "-t", table, "-S", "FORWARD")
		var first string
		for _, l := range strings.Split(rules, "\n") {
			if strings.HasPrefix(l, "-A FORWARD") {
				first = l
				break
			}
		}
		if first != drop {
			t.Errorf("first rule of %s FORWARD is %q, want %q\n%s", table, first, drop, rules)
		}
	}
	if out := sh(t, "ip6tables", "-w", "-S", "FORWARD"); !strings.Contains(out, drop) {
		t.Errorf("ip6tables FORWARD lacks %q:\n%s", drop, out)
	}
	confs, _ := filepath.Glob(filepath.Join(st.CNIConfDir, "*"))
	if len(confs) != 1 {
		t.Fatalf("CNI conf dir %s holds %v", st.CNIConfDir, confs)
	}
	var conf struct {
		Plugins []struct {
			Type   string `json:"type"`
			Bridge string `json:"bridge"`
			IPMasq *bool  `json:"ipMasq"`
		} `json:"plugins"`
	}
	b, _ := os.ReadFile(confs[0])
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.Plugins) != 1 || conf.Plugins[0].Type != "bridge" || conf.Plugins[0].Bridge != st.Bridge ||
		conf.Plugins[0].IPMasq == nil || *conf.Plugins[0].IPMasq {
		t.Errorf("CNI config is not one bridge on %s with ipMasq false:\n%s", st.Bridge, b)
	}
	if b, err := os.ReadFile(st.ResolvConf); err != nil {
		t.Error(err)
	} else if strings.Contains(string(b), "\nnameserver") || strings.Contains(string(b), "\nsearch") {
		t.Errorf("resolv.conf for pods %s names a server or search domain:\n%s", st.ResolvConf, b)
	}
	// The kubelet's live configuration, through the API server.
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", st.NodeName, "proxy", "configz").DoRaw(ctx)
	if err != nil {
		t.Fatalf("kubelet configz: %v", err)
	}
	var cz struct {
		KubeletConfig struct {
			ResolvConf string `json:"resolvConf"`
			Address    string `json:"address"`
		} `json:"kubeletconfig"`
	}
	if err := json.Unmarshal(raw, &cz); err != nil {
		t.Fatal(err)
	}
	if cz.KubeletConfig.ResolvConf != st.ResolvConf || cz.KubeletConfig.Address != st.BridgeIP {
		t.Errorf("kubelet runs with resolvConf %q address %q, want %q %q", cz.KubeletConfig.ResolvConf, cz.KubeletConfig.Address, st.ResolvConf, st.BridgeIP)
	}
	// The API server listens on the bridge address only.
	if u := env.APIServerURL; !strings.HasPrefix(u, "https://"+st.BridgeIP+":") {
		t.Errorf("API server URL %s is not on the bridge", u)
	}
	if rep := kubeenv.VerifyNetworkSafety(&st); len(rep.Problems) > 0 {
		t.Errorf("safety problems now: %v", rep.Problems)
	}
}

// (b) A Deployment of the test app runs on the node; scaled to 0 its pods
// go away, and terminationGracePeriodSeconds and the app's shutdown delay
// are honoured.
func TestDeploymentScaleToZeroHonoursGracePeriod(t *testing.T) {
	env := kubeenv.Shared(t)
	ns := kubeenv.NewNamespace(t)
	cs := clientset(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// fast: exits at once on SIGTERM. slow: exits 3s after SIGTERM, well
	// within its 30s grace period. stubborn: would wait 60s but has 2s of
	// grace, so it is SIGKILLed (137). Only bounds that load cannot break are
	// checked: a loaded node makes every pod slower, never faster, and none
	// of them comes near the 30s or 60s that a grace period ignored would take.
	cases := []struct {
		name     string
		delay    string
		grace    int64
		min, max time.Duration // time Terminating
		exitCode int32
	}{
		{"fast", "0s", 30, 0, 25 * time.Second, 0},
		{"slow", "3s", 30, 2500 * time.Millisecond, 25 * time.Second, 0},
		{"stubborn", "60s", 2, 1500 * time.Millisecond, 45 * time.Second, 137},
	}
	for _, c := range cases {
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, appDeployment(c.name, 2, c.delay, c.grace), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	for _, c := range cases {
		pods := waitPods(ctx, t, cs, ns, "app="+c.name, 2, func(p corev1.Pod) bool { return podReady(p) })
		_, podNet, _ := net.ParseCIDR(env.State().PodCIDR)
		for _, p := range pods {
			if p.Spec.NodeName != env.NodeName {
				t.Errorf("pod %s on node %q, want %q", p.Name, p.Spec.NodeName, env.NodeName)
			}
			if ip := net.ParseIP(p.Status.PodIP); ip == nil || !podNet.Contains(ip) {
				t.Errorf("pod %s has IP %q outside %s", p.Name, p.Status.PodIP, podNet)
			}
		}
	}
	t.Logf("6 pods Running and Ready in %s", time.Since(t0).Round(100*time.Millisecond))
	checkSandboxResolvConf(t, env)

	// Watch the pods while all three deployments scale to 0.
	w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	type record struct {
		app                  string
		terminating, deleted time.Time
		exitCode             *int32
		// Server-side times (whole seconds): how long the container ran after
		// the pod was deleted.
		deletedAt, finishedAt time.Time
	}
	var mu sync.Mutex
	recs := map[string]*record{}
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			now := time.Now()
			mu.Lock()
			r := recs[p.Name]
			if r == nil {
				r = &record{app: p.Labels["app"]}
				recs[p.Name] = r
			}
			if p.DeletionTimestamp != nil && r.terminating.IsZero() {
				r.terminating = now
				// deletionTimestamp is the deadline: deletion time plus the grace period.
				r.deletedAt = p.DeletionTimestamp.Time
				if g := p.DeletionGracePeriodSeconds; g != nil {
					r.deletedAt = r.deletedAt.Add(-time.Duration(*g) * time.Second)
				}
			}
			for _, s := range p.Status.ContainerStatuses {
				if s.State.Terminated != nil {
					code := s.State.Terminated.ExitCode
					r.exitCode = &code
					r.finishedAt = s.State.Terminated.FinishedAt.Time
				}
			}
			if ev.Type == watch.Deleted {
				r.deleted = now
			}
			mu.Unlock()
		}
	}()
	for _, c := range cases {
		scale, err := cs.AppsV1().Deployments(ns).GetScale(ctx, c.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		scale.Spec.Replicas = 0
		if _, err := cs.AppsV1().Deployments(ns).UpdateScale(ctx, c.name, scale, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cases {
		waitPods(ctx, t, cs, ns, "app="+c.name, 0, nil)
	}
	time.Sleep(200 * time.Millisecond) // let the watch deliver the last events
	w.Stop()
	<-watchDone

	mu.Lock()
	defer mu.Unlock()
	for _, c := range cases {
		n := 0
		for name, r := range recs {
			if r.app != c.name {
				continue
			}
			n++
			if r.terminating.IsZero() || r.deleted.IsZero() {
				t.Errorf("%s pod %s: terminating at %v, deleted at %v: events missed", c.name, name, r.terminating, r.deleted)
				continue
			}
			d := r.deleted.Sub(r.terminating)
			t.Logf("%s pod %s (APP_SHUTDOWN_DELAY=%s, grace %ds) was Terminating for %s, exit code %v",
				c.name, name, c.delay, c.grace, d.Round(10*time.Millisecond), deref(r.exitCode))
			if d < c.min || d > c.max {
				t.Errorf("%s pod %s Terminating for %s; want %s to %s", c.name, name, d, c.min, c.max)
			}
			switch {
			case r.exitCode == nil:
				t.Errorf("%s pod %s: its exit code was never reported", c.name, name)
			case *r.exitCode != c.exitCode:
				t.Errorf("%s pod %s exited with %d, want %d", c.name, name, *r.exitCode, c.exitCode)
			case c.name == "slow" && r.finishedAt.Sub(r.deletedAt) < 2*time.Second:
				// APP_SHUTDOWN_DELAY=3s, timestamps in whole seconds.
				t.Errorf("slow pod %s: its container finished %s after the pod was deleted, want at least 2s", name, r.finishedAt.Sub(r.deletedAt))
			}
		}
		if n != 2 {
			t.Errorf("%s: saw %d pods terminate, want 2", c.name, n)
		}
	}
}

func deref(p *int32) any {
	if p == nil {
		return "unknown"
	}
	return *p
}

// checkSandboxResolvConf reads the resolv.conf containerd gave each pod: no
// name server, so pods cannot resolve (or reach) names off the machine.
func checkSandboxResolvConf(t *testing.T, env *kubeenv.Env) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(env.State().ContainerdRoot, "io.containerd.grpc.v1.cri", "sandboxes", "*", "resolv.conf"))
	if len(files) == 0 {
		t.Error("found no pod resolv.conf")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Error(err)
			continue
		}
		if strings.Contains(string(b), "nameserver") {
			t.Errorf("%s names a server:\n%s", f, b)
		}
	}
}

// (c) After Stop nothing of the environment is left: no process, no mount,
// no network namespace, no bridge, route, iptables rule or chain. Runs last
// (it stops the package's environment), with pods running and mounts in place.
func TestStopLeavesNothingBehind(t *testing.T) {
	env := kubeenv.Shared(t)
	if !env.Owned() {
		t.Skipf("the environment was started by test/env.sh (%s=%s); `localenv down` verifies the same and fails on leftovers", kubeenv.EnvVar, env.Dir)
	}
	ns := kubeenv.NewNamespace(t)
	cs := clientset(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, appDeployment("leftover", 2, "0s", 30), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPods(ctx, t, cs, ns, "app=leftover", 2, podReady)

	st := env.State()
	mounts := mountsUnder(st.Dir)
	if len(mounts) == 0 {
		t.Fatal("no mounts under the state directory while pods run; the check below would prove nothing")
	}
	netns := 0
	for _, m := range mounts {
		if strings.Contains(m, "/netns/") {
			netns++
		}
	}
	veths := vethsOn(t, st.Bridge)
	t.Logf("before Stop: %d processes, %d mounts (%d pod network namespaces), %d veths on %s",
		len(st.Processes), len(mounts), netns, len(veths), st.Bridge)
	if netns == 0 || len(veths) == 0 {
		t.Fatalf("pods have no network namespace mounts (%d) or veths (%v)", netns, veths)
	}

	start := time.Now()
	// Keep the lock while checking, so that no other test process's
	// environment starts (and creates the same bridge) in the meantime.
	release, err := kubeenv.StopKeepingLock(env)
	defer func() {
		if err := release(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(st.LockFile); err == nil {
			if l, _ := os.ReadFile(st.LockFile); strings.Contains(string(l), st.Dir) {
				t.Errorf("lock file %s still names %s", st.LockFile, st.Dir)
			}
		}
	}()
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("Stop took %s", time.Since(start).Round(100*time.Millisecond))

	if left := kubeenv.Leftovers(&st); len(left) > 0 {
		t.Errorf("left behind:\n  %s", strings.Join(left, "\n  "))
	}
	// Independent reads.
	for _, p := range st.Processes {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID)); err == nil {
			if stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID)); !strings.Contains(string(stat), ") Z ") {
				t.Errorf("%s (pid %d) still exists", p.Name, p.PID)
			}
		}
	}
	if out, _ := exec.Command("pgrep", "-f", st.Dir).Output(); len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("processes mentioning %s remain: %s", st.Dir, out)
	}
	if out, _ := exec.Command("pgrep", "-f", "containerd-shim-runc-v2.*"+st.ContainerdSocket).Output(); len(out) > 0 {
		t.Errorf("containerd shims remain: %s", out)
	}
	if m := mountsUnder(st.Dir); len(m) > 0 {
		t.Errorf("mounts remain: %v", m)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), "cni-") {
		t.Errorf("a CNI network namespace is still mounted:\n%s", mi)
	}
	if _, err := os.Stat("/sys/class/net/" + st.Bridge); err == nil {
		t.Errorf("bridge %s still exists", st.Bridge)
	}
	for _, v := range veths {
		if _, err := os.Stat("/sys/class/net/" + v); err == nil {
			t.Errorf("veth %s still exists", v)
		}
	}
	if out := sh(t, "ip", "route", "show", "table", "all"); strings.Contains(out, st.ServiceCIDR) || strings.Contains(out, st.PodCIDR) {
		t.Errorf("routes remain:\n%s", out)
	}
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out := sh(t, cmd)
		for _, bad := range []string{"KUBE-", "CNI-", "chartreuse"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s still has %s:\n%s", cmd, bad, out)
			}
		}
	}
	if _, err := os.Stat(st.Dir); err == nil {
		t.Errorf("state directory %s still exists", st.Dir)
	}
}

// (d) A start that fails half-way (here: right after the kubelet started)
// tears down what it had started.
func TestFailedStartTearsDown(t *testing.T) {
	env := kubeenv.Shared(t)
	if !env.Owned() {
		t.Skipf("an environment started by test/env.sh holds the lock; this test needs to start its own")
	}
	if err := env.Stop(); err != nil { // normally done by TestStopLeavesNothingBehind
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "env")
	var opts kubeenv.Options
	opts.StateDir = dir
	opts.Logf = func(format string, a ...any) {
		t.Logf(format, a...)
		// The expected failure saves the server logs; do not keep them.
		if strings.HasPrefix(format, "server logs saved in ") && len(a) == 1 {
			saved := fmt.Sprint(a[0])
			t.Cleanup(func() { os.RemoveAll(saved) })
		}
	}
	opts.LockWait = 10 * time.Minute // another package's environment may be running
	kubeenv.FailAfter(&opts, "kubelet")
	kubeenv.KeepLockOnFailure(&opts) // no other environment starts while we check
	defer func() {
		if err := kubeenv.ReleaseLock(dir); err != nil {
			t.Error(err)
		}
	}()
	start := time.Now()
	_, err := kubeenv.Start(context.Background(), opts)
	if err == nil {
		t.Fatal("Start succeeded despite the injected failure")
	}
	if !strings.Contains(err.Error(), "injected failure after step kubelet") {
		t.Fatalf("unexpected error: %v", err)
	}
	t.Logf("failed start and teardown took %s", time.Since(start).Round(100*time.Millisecond))
	st := &kubeenv.State{Dir: dir, Bridge: kubeenv.BridgeName, ServiceCIDR: kubeenv.ServiceCIDR, PodCIDR: kubeenv.PodCIDR}
	if left := kubeenv.Leftovers(st); len(left) > 0 {
		t.Errorf("left behind:\n  %s", strings.Join(left, "\n  "))
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory %s still exists (%v)", dir, err)
	}
}

// ------------------------------------------------------------------ helpers

func clientset(t *testing.T, env *kubeenv.Env) *kubernetes.Clientset {
	t.Helper()
	cs, err := env.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func appDeployment(name string, replicas int32, delay string, grace int64) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name:            "app",
						Image:           kubeenv.AppImage,
						ImagePullPolicy: corev1.PullNever,
						Env:             []corev1.EnvVar{{Name: "APP_SHUTDOWN_DELAY", Value: delay}},
						Ports:           []corev1.ContainerPort{{ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 1,
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}},
					}},
					Volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}},
				},
			},
		},
	}
}

func podReady(p corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitPods waits until the selector matches exactly n pods, all satisfying ok.
func waitPods(ctx context.Context, t *testing.T, cs *kubernetes.Clientset, ns, selector string, n int, ok func(corev1.Pod) bool) []corev1.Pod {
	t.Helper()
	for {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil && len(list.Items) == n {
			all := true
			for _, p := range list.Items {
				if ok != nil && !ok(p) {
					all = false
				}
			}
			if all {
				return list.Items
			}
		}
		select {
		case <-ctx.Done():
			var states []string
			if list != nil {
				for _, p := range list.Items {
					states = append(states, fmt.Sprintf("%s=%s", p.Name, p.Status.Phase))
				}
			}
			t.Fatalf("waiting for %d pods %s in %s: %v (now: %v)", n, selector, ns, ctx.Err(), states)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

func vethsOn(t *testing.T, bridge string) []string {
	t.Helper()
	out := sh(t, "ip", "-j", "link", "show", "master", bridge)
	var links []struct {
		IfName string `json:"ifname"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.IfName)
	}
	return names
}
