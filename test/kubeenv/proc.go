package kubeenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procStat is what /proc/<pid>/stat tells about a process.
type procStat struct {
	state      byte
	ppid       int
	startTicks uint64
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procStat{state: f[0][0], ppid: ppid, startTicks: start}, nil
}

// Alive reports whether the recorded process still runs (a zombie does not
// count, nor a different process that got the same PID).
func (p Process) Alive() bool { return p.alive() }

func (p Process) alive() bool {
	if p.PID <= 0 {
		return false
	}
	s, err := readProcStat(p.PID)
	if err != nil {
		return false
	}
	if p.StartTicks != 0 && s.startTicks != p.StartTicks {
		return false
	}
	return s.state != 'Z' && s.state != 'X'
}

// startProcess starts a server in its own session with stdout and stderr
// appended to logs/<name>.log, records it in the state and saves the state
// before returning, so teardown knows about it even if the caller fails next.
func (e *Env) startProcess(name, binary string, args []string, env []string) (*Process, error) {
	st := e.st
	logPath := filepath.Join(st.LogDir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), binary, strings.Join(args, " "))
	cmd := exec.Command(binary, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = st.Dir
	cmd.Env = append(cleanEnv(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if !st.Detached {
		// If the test binary dies without tearing down (killed, or a test
		// timeout), its servers die with it; the next Start then finds the
		// stale state and cleans up the rest.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := Process{Name: name, PID: cmd.Process.Pid, Binary: binary, Args: args, Log: logPath}
	if s, err := readProcStat(p.PID); err == nil {
		p.StartTicks = s.startTicks
	}
	st.Processes = append(st.Processes, p)
	done := make(chan struct{})
	e.exited[name] = done
	go func() { _ = cmd.Wait(); close(done) }() // reap it when it exits
	if err := st.save(); err != nil {
		return nil, err
	}
	return st.process(name), nil
}

// cleanEnv is the caller's environment without proxy settings, which would
// send the servers' own connections (webhooks, the kubelet) elsewhere.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "KUBECONFIG":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// stopProcess sends SIGTERM, waits up to grace, then SIGKILLs, and waits until
// the process is gone.
func stopProcess(p Process, grace time.Duration) error {
	if !p.alive() {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	if waitGone(p, grace) {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGKILL)
	if waitGone(p, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Name, p.PID)
}

func waitGone(p Process, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if !p.alive() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processInfo is one entry of the process table.
type processInfo struct {
	pid, ppid  int
	startTicks uint64
	cmdline    string
}

func processTable() []processInfo {
	ents, _ := os.ReadDir("/proc")
	var out []processInfo
	for _, de := range ents {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		s, err := readProcStat(pid)
		if err != nil || s.state == 'Z' {
			continue
		}
		cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, processInfo{pid: pid, ppid: s.ppid, startTicks: s.startTicks,
			cmdline: strings.TrimSpace(string(bytes.ReplaceAll(cl, []byte{0}, []byte{' '})))})
	}
	return out
}

// processesMentioning lists the live server processes (see isServer) whose
// command line contains s (the state directory: containerd shims carry our
// socket path), with all their descendants (the containers the shims run),
// descendants first.
func processesMentioning(s string) []processInfo {
	table := processTable()
	children := map[int][]processInfo{}
	for _, p := range table {
		children[p.ppid] = append(children[p.ppid], p)
	}
	self := os.Getpid()
	seen := map[int]bool{}
	var out []processInfo
	var walk func(p processInfo, depth int)
	walk = func(p processInfo, depth int) {
		if seen[p.pid] || p.pid == self || p.pid == 1 {
			return
		}
		seen[p.pid] = true
		for _, c := range children[p.pid] {
			walk(c, depth+1)
		}
		out = append(out, p) // after its children
	}
	for _, p := range table {
		if strings.Contains(p.cmdline, s) && isServer(p.cmdline) {
			walk(p, 0)
		}
	}
	return out
}

// isServer: only the environment's own kinds of programs are swept, never,
// say, a `tail -f` of one of its logs or the test binary.
func isServer(cmdline string) bool {
	f := strings.Fields(cmdline)
	if len(f) == 0 {
		return false
	}
	switch filepath.Base(f[0]) {
	case "containerd-shim-runc-v2", "containerd-shim", "containerd", "etcd", "kube-apiserver",
		"kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet":
		return true
	}
	return false
}

// killAll SIGKILLs the processes and waits until they are gone.
func killAll(ps []processInfo) error {
	for _, p := range ps {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
	var left []string
	for _, p := range ps {
		if !waitGone(Process{Name: "pid", PID: p.pid, StartTicks: p.startTicks}, 5*time.Second) {
			left = append(left, fmt.Sprintf("%d (%s)", p.pid, p.cmdline))
		}
	}
	if len(left) > 0 {
		sort.Strings(left)
		return errors.New("processes survived SIGKILL: " + strings.Join(left, ", "))
	}
	return nil
}
