package kubeenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrBusy: another environment is running.
var ErrBusy = errors.New("another chartreuse test environment is running")

type lockInfo struct {
	Dir        string `json:"dir"`
	PID        int    `json:"pid"`
	StartTicks uint64 `json:"startTicks"`
	Detached   bool   `json:"detached"`
}

// acquireLock creates the lock file for dir. A lock left by an environment
// none of whose processes (nor its starter) still run is stale: that
// environment is torn down from its state file and the lock taken over.
//
// If the holder is another test process (not an environment started with
// Detached, i.e. by test/env.sh), acquireLock waits up to wait for it to
// finish, so that `go test ./...` runs packages' environments one after the
// other.
func acquireLock(ctx context.Context, path, dir string, detached bool, wait time.Duration, logf func(string, ...any)) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	waiting := false
	for attempt := 0; attempt < 20; {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			me := lockInfo{Dir: dir, PID: os.Getpid(), Detached: detached}
			if s, err := readProcStat(me.PID); err == nil {
				me.StartTicks = s.startTicks
			}
			b, _ := json.Marshal(me)
			_, werr := f.Write(append(b, '\n'))
			cerr := f.Close()
			return errors.Join(werr, cerr)
		}
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("lock %s: %w", path, err)
		}
		other, err := readLock(path)
		if err != nil {
			// Being written right now, or garbage: give it a moment.
			if fi, serr := os.Stat(path); serr == nil && time.Since(fi.ModTime()) > 10*time.Second {
				_ = os.Remove(path)
			}
			attempt++
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if who := lockHolderAlive(other); who != "" {
			if !other.Detached && time.Now().Before(deadline) {
				if !waiting {
					logf("waiting (up to %s) for the test environment of pid %d (%s) to be torn down", time.Until(deadline).Round(time.Second), other.PID, other.Dir)
					waiting = true
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(500 * time.Millisecond):
				}
				continue
			}
			return fmt.Errorf("%w (state dir %s, %s; lock %s). Stop it with `test/env.sh down` "+
				"(or `go run ./test/cmd/localenv down --state-dir %s`), or point tests at it with CHARTREUSE_TEST_ENV=%s",
				ErrBusy, other.Dir, who, path, other.Dir, other.Dir)
		}
		logf("found a stale environment in %s (lock %s): tearing it down first", other.Dir, path)
		if err := teardownDir(other.Dir, logf); err != nil {
			return fmt.Errorf("tear down stale environment %s: %w", other.Dir, err)
		}
		_ = releaseLock(path, other.Dir)
		attempt++
	}
	return fmt.Errorf("could not take the lock %s", path)
}

func readLock(path string) (lockInfo, error) {
	var l lockInfo
	b, err := os.ReadFile(path)
	if err != nil {
		return l, err
	}
	if err := json.Unmarshal(b, &l); err != nil || l.Dir == "" {
		return l, fmt.Errorf("malformed lock file %s", path)
	}
	return l, nil
}

// lockHolderAlive says who keeps the environment alive ("" if nobody).
func lockHolderAlive(l lockInfo) string {
	if (Process{PID: l.PID, StartTicks: l.StartTicks}).alive() {
		return fmt.Sprintf("started by pid %d, still running", l.PID)
	}
	if st, err := ReadState(l.Dir); err == nil {
		for _, p := range st.Processes {
			if p.alive() {
				return fmt.Sprintf("%s pid %d running", p.Name, p.PID)
			}
		}
	}
	return ""
}

func releaseLock(path, dir string) error {
	l, err := readLock(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if l.Dir != dir {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Teardown stops the environment recorded in stateDir/state.json and undoes
// every host change, then removes the directory and releases the lock. It is
// idempotent and works on a half-started environment, or (best effort, from
// the fixed network layout) on a directory whose state file is missing.
func Teardown(stateDir string, logf func(string, ...any)) error {
	if logf == nil {
		logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, "kubeenv: "+f+"\n", a...) }
	}
	dir, err := filepath.Abs(stateDir)
	if err != nil {
		return err
	}
	t := time.Now()
	lock := DefaultLockFile
	if st, rerr := ReadState(dir); rerr == nil && st.LockFile != "" {
		lock = st.LockFile
	}
	err = teardownDir(dir, logf)
	if rerr := releaseLock(lock, dir); rerr != nil && err == nil {
		err = rerr
	}
	logf("torn down in %s", time.Since(t).Round(100*time.Millisecond))
	return err
}

func teardownDir(dir string, logf func(string, ...any)) error {
	if !filepath.IsAbs(dir) || strings.Count(filepath.Clean(dir), "/") < 2 {
		return fmt.Errorf("refusing to tear down %q: not a state directory", dir)
	}
	st, err := ReadState(dir)
	// The bridge, route and iptables chains have fixed names: never remove
	// them from under another environment that holds the lock.
	lockFile := DefaultLockFile
	if st != nil && st.LockFile != "" {
		lockFile = st.LockFile
	}
	if l, lerr := readLock(lockFile); lerr == nil && l.Dir != dir {
		if who := lockHolderAlive(l); who != "" {
			if errors.Is(err, fs.ErrNotExist) {
				logf("no environment in %s; the running one is %s (%s): leaving it alone", dir, l.Dir, who)
				return nil
			}
			return fmt.Errorf("not tearing down %s while the environment %s (%s) holds the lock %s: stop that one first", dir, l.Dir, who, lockFile)
		}
	}
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			logf("%v; cleaning up from the fixed layout", err)
		}
		st = &State{Dir: dir, Bridge: BridgeName, BridgeIP: BridgeIP, PodCIDR: PodCIDR, ServiceCIDR: ServiceCIDR,
			FirstServiceIP: FirstServiceIP, NodeName: NodeName, CNINetwork: CNINetwork,
			ContainerdSocket: filepath.Join(dir, "containerd", "containerd.sock"),
			ContainerdState:  filepath.Join(dir, "containerd", "state")}
	}
	return teardown(st, logf)
}

// stopOrder is the reverse of the start order: nothing is left to restart
// what was just stopped.
var stopOrder = []string{"kubelet", "containerd", "kube-proxy", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"}

func teardown(st *State, logf func(string, ...any)) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	shimSockets := shimSocketFiles(st)
	ids := containerIDs(st)

	// 1. Processes, by recorded PID, in reverse start order; the containers
	//    go with containerd.
	byName := map[string]Process{}
	for _, p := range st.Processes {
		byName[p.Name] = p
	}
	for _, name := range stopOrder {
		p, ok := byName[name]
		if !ok {
			continue
		}
		if name == "containerd" && p.alive() {
			removeContainers(st)
		}
		grace := 10 * time.Second
		if name == "kubelet" || name == "kube-proxy" {
			grace = 5 * time.Second
		}
		t := time.Now()
		add(stopProcess(p, grace))
		if d := time.Since(t); d > 2*time.Second {
			logf("stopping %s took %s", name, d.Round(100*time.Millisecond))
		}
		delete(byName, name)
	}
	for _, p := range byName { // anything else recorded
		add(stopProcess(p, 5*time.Second))
	}
	// Whatever still refers to the state directory: containerd shims (their
	// command line holds our socket) and, through them, the containers.
	if left := processesMentioning(st.Dir); len(left) > 0 {
		logf("killing %d leftover processes (containerd shims and their containers)", len(left))
		add(killAll(left))
	}

	// 2. Host rules of kube-proxy, the kubelet and CNI.
	if st.KubeBinDir != "" {
		if out, err := exec.Command(filepath.Join(st.KubeBinDir, "kube-proxy"), "--cleanup", "--v=0").CombinedOutput(); err != nil {
			if _, statErr := os.Stat(filepath.Join(st.KubeBinDir, "kube-proxy")); statErr == nil {
				logf("kube-proxy --cleanup: %v: %s", err, strings.TrimSpace(string(out)))
			}
		}
	}
	add(removeKubeChains())

	// 3. Mounts (pod volumes, container root filesystems, sandbox network
	//    namespaces) under the state directory; freeing the network
	//    namespaces deletes the pods' veth pairs.
	add(unmountUnder(st.Dir))

	// 4. Bridge, blackhole route, our FORWARD rules; sysctls back.
	add(teardownNetwork(st))
	if st.Net.Sysctls != nil {
		add(restoreSysctls(st.Net.Sysctls))
	}

	// 5. Files, directories and cgroups the servers leave outside the state
	//    directory.
	add(removeHostFiles(st, shimSockets, ids))
	add(removeCgroups(st, ids))
	add(removeCreatedDirs(st))

	// 6. Check, then remove the state directory. The check is the verdict: a
	//    step that failed because its object was already gone (another
	//    teardown of the same stale state got there first) left nothing behind.
	if left := Leftovers(st); len(left) > 0 {
		add(fmt.Errorf("left behind (state kept in %s):\n  %s", st.Dir, strings.Join(left, "\n  ")))
		return errors.Join(errs...)
	}
	if len(errs) > 0 {
		logf("teardown steps failed but nothing is left behind (already removed?): %v", errors.Join(errs...))
	}
	return os.RemoveAll(st.Dir)
}

// removeContainers kills and deletes every task in containerd's k8s.io
// namespace while containerd still runs, so the shims exit cleanly (and
// remove their sockets, cgroups and mounts).
func removeContainers(st *State) {
	out, err := run("ctr", "--address", st.ContainerdSocket, "--namespace", "k8s.io", "tasks", "list", "--quiet")
	if err != nil {
		return
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return
	}
	args := append([]string{"--address", st.ContainerdSocket, "--namespace", "k8s.io", "tasks", "delete", "--force"}, ids...)
	_, _ = run("ctr", args...)
}

// shimSocketFiles lists the sockets of this environment's containerd shims
// (written outside the state directory, under /run/containerd/s); each task
// bundle records its shim's address.
func shimSocketFiles(st *State) []string {
	if st.ContainerdState == "" {
		return nil
	}
	files, _ := filepath.Glob(filepath.Join(st.ContainerdState, "io.containerd.runtime.v2.task", "*", "*", "address"))
	var socks []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		a := strings.TrimSpace(string(b))
		a = strings.TrimPrefix(a, "unix://")
		if strings.HasPrefix(a, "/run/containerd/s/") {
			socks = append(socks, a)
		}
	}
	return socks
}

// hostDirs are the directories outside the state directory that the servers
// create; cgroupParents adds containerd's per-namespace cgroup parents.
var hostDirs = []string{"/run/containerd", "/var/lib/cni", "/var/lib/kubelet", "/var/log/containers", "/var/log/pods"}

func cgroupParents() []string {
	ctrls, _ := os.ReadDir("/sys/fs/cgroup")
	var out []string
	for _, c := range ctrls {
		if c.IsDir() {
			out = append(out, filepath.Join("/sys/fs/cgroup", c.Name(), "k8s.io"))
		}
	}
	return out
}

func missingHostDirs() []string {
	var out []string
	for _, d := range append(append([]string(nil), hostDirs...), cgroupParents()...) {
		if _, err := os.Lstat(d); errors.Is(err, fs.ErrNotExist) {
			out = append(out, d)
		}
	}
	return out
}

func isCgroupPath(p string) bool { return strings.HasPrefix(p, "/sys/fs/cgroup/") }

// containerIDs lists the sandbox and container IDs containerd knows of.
func containerIDs(st *State) []string {
	seen := map[string]bool{}
	var ids []string
	var globs []string
	if st.ContainerdRoot != "" {
		globs = append(globs, filepath.Join(st.ContainerdRoot, "io.containerd.grpc.v1.cri", "*", "*"))
	}
	if st.ContainerdState != "" {
		globs = append(globs, filepath.Join(st.ContainerdState, "io.containerd.grpc.v1.cri", "*", "*"),
			filepath.Join(st.ContainerdState, "io.containerd.runtime.v2.task", "*", "*"))
	}
	for _, g := range globs {
		ms, _ := filepath.Glob(g)
		for _, m := range ms {
			id := filepath.Base(m)
			if len(id) == 64 && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// removeCgroups removes the containers' cgroups (runc leaves them when its
// shim is killed) and the k8s.io parents containerd created.
func removeCgroups(st *State, ids []string) error {
	created := map[string]bool{}
	for _, d := range st.HostDirsCreated {
		created[d] = true
	}
	var errs []error
	for _, parent := range cgroupParents() {
		if _, err := os.Stat(parent); err != nil {
			continue
		}
		children := ids
		if created[parent] { // all of it is ours
			children = nil
			ents, _ := os.ReadDir(parent)
			for _, e := range ents {
				if e.IsDir() {
					children = append(children, e.Name())
				}
			}
		}
		for _, id := range children {
			if err := rmdirRetry(filepath.Join(parent, id)); err != nil {
				errs = append(errs, err)
			}
		}
		if created[parent] {
			if err := rmdirRetry(parent); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func rmdirRetry(dir string) error {
	var err error
	for i := 0; i < 20; i++ {
		err = syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("rmdir %s: %w", dir, err)
}

// removeCreatedDirs removes the host directories that did not exist before
// the start (never one with a mount below it).
func removeCreatedDirs(st *State) error {
	var errs []error
	for _, d := range st.HostDirsCreated {
		if isCgroupPath(d) {
			continue
		}
		if len(mountsUnder(d)) > 0 {
			errs = append(errs, fmt.Errorf("not removing %s: something is mounted below it", d))
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func removeHostFiles(st *State, shimSockets, ids []string) error {
	var errs []error
	for _, s := range shimSockets {
		if err := os.Remove(s); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// The kubelet's /var/log/containers symlinks into our pod log directory.
	for _, l := range containerLogLinks(st.Dir) {
		if err := os.Remove(l); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// libcni's result cache (our network and containerd's loopback).
	cached, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", st.CNINetwork+"-*"))
	for _, id := range ids {
		cached = append(cached, filepath.Join("/var/lib/cni/results", "cni-loopback-"+id+"-lo"))
	}
	for _, f := range cached {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func containerLogLinks(dir string) []string {
	ents, _ := os.ReadDir("/var/log/containers")
	var out []string
	for _, e := range ents {
		p := filepath.Join("/var/log/containers", e.Name())
		if t, err := os.Readlink(p); err == nil && strings.HasPrefix(t, dir+"/") {
			out = append(out, p)
		}
	}
	return out
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unmountUnder(dir string) error {
	for round := 0; round < 10; round++ {
		mps := mountsUnder(dir)
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			if err := syscall.Unmount(mp, 0); err != nil {
				_ = syscall.Unmount(mp, syscall.MNT_DETACH)
			}
		}
	}
	if left := mountsUnder(dir); len(left) > 0 {
		return fmt.Errorf("still mounted: %s", strings.Join(left, ", "))
	}
	return nil
}

// Leftovers lists what of the environment described by st is still on the
// machine: processes, mounts, network devices, routes, iptables rules and
// chains, host files, changed sysctls. Empty after a complete teardown.
func Leftovers(st *State) []string {
	var left []string
	for _, p := range st.Processes {
		if p.alive() {
			left = append(left, fmt.Sprintf("process %s (pid %d)", p.Name, p.PID))
		}
	}
	for _, p := range processesMentioning(st.Dir) {
		left = append(left, fmt.Sprintf("process %d: %s", p.pid, p.cmdline))
	}
	for _, m := range mountsUnder(st.Dir) {
		left = append(left, "mount "+m)
	}
	if _, err := os.Stat("/sys/class/net/" + st.Bridge); err == nil {
		left = append(left, "network interface "+st.Bridge)
	}
	if routes, err := readRoutes(); err == nil {
		for _, r := range routes {
			if r.Dst == st.ServiceCIDR || r.Dst == st.PodCIDR || r.Dev == st.Bridge {
				left = append(left, fmt.Sprintf("route %s %s dev %s", r.Type, r.Dst, r.Dev))
			}
		}
	}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		for _, table := range iptablesTables {
			out, err := run(cmd, "-w", "5", "-t", table, "-S")
			if err != nil {
				continue
			}
			for _, l := range strings.Split(out, "\n") {
				f := strings.Fields(l)
				switch {
				case strings.Contains(l, ruleComment):
					left = append(left, fmt.Sprintf("%s -t %s: %s", cmd, table, l))
				case len(f) >= 2 && f[0] == "-N" && isKubeChain(f[1]):
					left = append(left, fmt.Sprintf("%s -t %s chain %s", cmd, table, f[1]))
				case len(f) >= 2 && f[0] == "-A" && jumpsToKubeChain(l):
					left = append(left, fmt.Sprintf("%s -t %s: %s", cmd, table, l))
				}
			}
		}
	}
	for _, l := range containerLogLinks(st.Dir) {
		left = append(left, "symlink "+l)
	}
	for _, d := range st.HostDirsCreated {
		if _, err := os.Lstat(d); err == nil {
			left = append(left, "directory "+d+" (created by the environment)")
		}
	}
	for k, v := range st.Net.Sysctls {
		if b, err := os.ReadFile(sysctlPath(k)); err == nil && strings.TrimSpace(string(b)) != v {
			left = append(left, fmt.Sprintf("sysctl %s=%s (was %s)", k, strings.TrimSpace(string(b)), v))
		}
	}
	sort.Strings(left)
	return left
}

// LockedStateDir returns the state directory named by the lock file, i.e.
// of the environment that runs (or ran and was not torn down).
func LockedStateDir(lockFile string) (string, error) {
	l, err := readLock(lockFile)
	if err != nil {
		return "", err
	}
	return l.Dir, nil
}
