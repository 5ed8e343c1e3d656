// Command localenv starts, inspects and stops the local Kubernetes test
// environment (package test/kubeenv) by hand, for debugging and for running
// several test packages against one environment:
//
//	localenv up     [--state-dir DIR] [--kube-bin DIR] [-v N]   start it; the servers keep running
//	localenv status [--state-dir DIR]                           what runs, is the node Ready (exit 1 if not up)
//	localenv env    [--state-dir DIR]                           print export lines for the shell
//	localenv down   [--state-dir DIR]                           stop it and undo every host change
//
// Without --state-dir, status/env/down use the running environment named by
// the lock file (/run/chartreuse-env.lock). Tests use a running environment
// when CHARTREUSE_TEST_ENV names its state directory. test/env.sh wraps this.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	stateDir := fs.String("state-dir", "", "state directory of the environment")
	kubeBin := fs.String("kube-bin", "", "directory of the Kubernetes binaries (default: test/tools/kube/build.sh)")
	verbosity := fs.Int("v", 1, "log verbosity of the Kubernetes servers")
	audit := fs.Bool("audit", false, "up: write the API server's audit log of workload and pod changes (state.json's auditLog)")
	_ = fs.Parse(args)

	var err error
	switch cmd {
	case "up":
		err = up(*stateDir, *kubeBin, *verbosity, *audit)
	case "down":
		err = down(*stateDir)
	case "status":
		err = status(*stateDir)
	case "env":
		err = printEnv(*stateDir)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "localenv %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: localenv up|status|env|down [--state-dir DIR] [--kube-bin DIR] [-v N] [--audit]")
	os.Exit(2)
}

func up(dir, kubeBin string, v int, audit bool) error {
	if dir != "" {
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
		// A previous environment in the same directory: refuse if it runs,
		// clean it up if it is dead.
		if st, err := kubeenv.ReadState(dir); err == nil {
			if running(st) {
				return fmt.Errorf("an environment is already running in %s (`localenv down --state-dir %s` stops it)", dir, dir)
			}
			fmt.Fprintf(os.Stderr, "localenv: cleaning up a dead environment in %s\n", dir)
			if err := kubeenv.Teardown(dir, nil); err != nil {
				return err
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	env, err := kubeenv.Start(ctx, kubeenv.Options{StateDir: dir, KubeBinDir: kubeBin, Detached: true, Verbosity: v, AuditLog: audit,
		// Another test process may be using the machine's one environment: wait for it.
		LockWait: 15 * time.Minute})
	if err != nil {
		return err
	}
	st := env.State()
	fmt.Fprintf(os.Stderr, "environment up in %.1fs\n", st.Timings.StartupSecs)
	fmt.Printf("export %s=%s\n", kubeenv.EnvVar, env.Dir)
	fmt.Printf("export KUBECONFIG=%s\n", env.Kubeconfig)
	return nil
}

func running(st *kubeenv.State) bool {
	for _, p := range st.Processes {
		if p.Alive() {
			return true
		}
	}
	return false
}

// resolve finds the state directory: the flag, else $CHARTREUSE_TEST_ENV,
// else the lock file of the running environment.
func resolve(dir string) (string, error) {
	if dir != "" {
		return filepath.Abs(dir)
	}
	if d := os.Getenv(kubeenv.EnvVar); d != "" {
		return d, nil
	}
	d, err := kubeenv.LockedStateDir(kubeenv.DefaultLockFile)
	if err != nil {
		return "", fmt.Errorf("no running environment found (%v)", err)
	}
	return d, nil
}

func down(dir string) error {
	d, err := resolve(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || dir == "" {
			fmt.Fprintf(os.Stderr, "localenv: %v; nothing to do\n", err)
			return nil
		}
		return err
	}
	return kubeenv.Teardown(d, nil)
}

func status(dir string) error {
	d, err := resolve(dir)
	if err != nil {
		return err
	}
	st, err := kubeenv.ReadState(d)
	if err != nil {
		return err
	}
	fmt.Printf("state dir:   %s\nkubeconfig:  %s\napiserver:   %s\nbridge:      %s %s (pods %s, services %s)\n",
		st.Dir, st.Kubeconfig, st.APIServerURL, st.Bridge, st.BridgeIP, st.PodCIDR, st.ServiceCIDR)
	fmt.Printf("started:     %s (up in %.1fs)\n", st.Timings.StartedAt.Format(time.RFC3339), st.Timings.StartupSecs)
	allUp := st.Ready
	for _, p := range st.Processes {
		state := "running"
		if !p.Alive() {
			state, allUp = "NOT RUNNING", false
		}
		fmt.Printf("  %-24s pid %-7d %-12s log %s\n", p.Name, p.PID, state, p.Log)
	}
	if st.Safety != nil {
		fmt.Printf("network safety verified at %s before the kubelet started: %d checks, %d problems\n",
			st.Safety.At.Format(time.RFC3339), len(st.Safety.Checks), len(st.Safety.Problems))
	}
	if rep := kubeenv.VerifyNetworkSafety(st); len(rep.Problems) > 0 {
		allUp = false
		for _, p := range rep.Problems {
			fmt.Printf("  SAFETY PROBLEM: %s\n", p)
		}
	}
	if allUp {
		env, err := kubeenv.Connect(d)
		if err == nil {
			cs, err := env.Clientset()
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				n, err := cs.CoreV1().Nodes().Get(ctx, st.NodeName, metav1.GetOptions{})
				if err != nil {
					allUp = false
					fmt.Printf("node %s: %v\n", st.NodeName, err)
				} else {
					for _, c := range n.Status.Conditions {
						if c.Type == corev1.NodeReady {
							fmt.Printf("node %s: Ready=%s\n", n.Name, c.Status)
							allUp = allUp && c.Status == corev1.ConditionTrue
						}
					}
				}
			}
		}
	}
	if !allUp {
		return errors.New("environment is not (fully) up")
	}
	return nil
}

func printEnv(dir string) error {
	d, err := resolve(dir)
	if err != nil {
		return err
	}
	st, err := kubeenv.ReadState(d)
	if err != nil {
		return err
	}
	fmt.Printf("export %s=%s\nexport KUBECONFIG=%s\n", kubeenv.EnvVar, st.Dir, st.Kubeconfig)
	return nil
}
