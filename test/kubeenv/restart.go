package kubeenv

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// StopAPIServer stops kube-apiserver the way a restart or an upgrade does (SIGTERM,
// then SIGKILL after a grace period), leaving every other server running. Fault
// tests use it to interrupt steps in the middle of their work.
func (e *Env) StopAPIServer() error {
	p := e.st.process("kube-apiserver")
	if p == nil {
		return fmt.Errorf("kube-apiserver is not part of this environment")
	}
	if err := stopProcess(*p, 10*time.Second); err != nil {
		return err
	}
	return nil
}

// StartAPIServer starts kube-apiserver again with the flags it had (same port,
// certificates and etcd) and waits until it reports ready.
func (e *Env) StartAPIServer(ctx context.Context) error {
	old := e.st.process("kube-apiserver")
	if old == nil {
		return fmt.Errorf("kube-apiserver is not part of this environment")
	}
	if old.alive() {
		return fmt.Errorf("kube-apiserver (pid %d) is still running: stop it first", old.PID)
	}
	binary, args := old.Binary, append([]string(nil), old.Args...)
	e.forget("kube-apiserver")
	p, err := e.startProcess("kube-apiserver", binary, args, nil)
	if err != nil {
		return err
	}
	tlsCfg, err := e.adminTLS()
	if err != nil {
		return err
	}
	if err := e.waitHTTP(ctx, p, e.st.APIServerURL+"/readyz", tlsCfg, func(b string) bool { return strings.TrimSpace(b) == "ok" }); err != nil {
		return err
	}
	// Observed here: after the API server came back, kube-controller-manager kept
	// running but its serviceaccount controller created no default ServiceAccount
	// in new namespaces any more. Restart the controllers too, as a control-plane
	// restart would, so later tests get a working cluster.
	for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
		if err := e.restartProcess(name); err != nil {
			return err
		}
	}
	return e.superviseControllerManager(ctx)
}

// superviseControllerManager waits until kube-controller-manager has started
// its controllers, starting it again when it exits first, as the kubelet or
// systemd that runs it in a real cluster would. It exits on its own when the API
// server fails it during start-up (its 10 s wait for a healthy API server, a
// failed discovery), which a loaded node makes likely right after a restart
// (stop CI on 0f2afad: TestAPIServerRestartKeepsTheCluster found it gone).
func (e *Env) superviseControllerManager(ctx context.Context) error {
	const attempts = 3
	var err error
	for range attempts {
		if err = e.waitControllersStarted(ctx); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		if p := e.st.process("kube-controller-manager"); p != nil && p.alive() {
			break // up but not ready in time: restarting would not help
		}
		if rerr := e.restartProcess("kube-controller-manager"); rerr != nil {
			return rerr
		}
	}
	return err
}

// restartProcess stops a recorded server and starts it again with the same flags.
func (e *Env) restartProcess(name string) error {
	old := e.st.process(name)
	if old == nil {
		return fmt.Errorf("%s is not part of this environment", name)
	}
	if err := stopProcess(*old, 10*time.Second); err != nil {
		return err
	}
	binary, args := old.Binary, append([]string(nil), old.Args...)
	e.forget(name)
	_, err := e.startProcess(name, binary, args, nil)
	return err
}

// RestartAPIServer stops kube-apiserver, keeps it down for downtime, and starts it
// again.
func (e *Env) RestartAPIServer(ctx context.Context, downtime time.Duration) error {
	if err := e.StopAPIServer(); err != nil {
		return err
	}
	select {
	case <-time.After(downtime):
	case <-ctx.Done():
	}
	return e.StartAPIServer(ctx)
}

// forget drops a stopped process from the recorded state so its replacement is the
// only one teardown knows by that name.
func (e *Env) forget(name string) {
	kept := e.st.Processes[:0]
	for _, p := range e.st.Processes {
		if p.Name != name {
			kept = append(kept, p)
		}
	}
	e.st.Processes = kept
	delete(e.exited, name)
}
