package workload

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/labels"
)

// SelectOptions choose the workloads: --selector and/or --workload.
type SelectOptions struct {
	Selector  string
	Workloads cli.StringSlice
	// RequireSome refuses an empty selection (scale-down must not stop "everything").
	RequireSome bool

	sel Selection
}

// Flags implements step.Options.
func (o *SelectOptions) Flags() []cli.Flag {
	selUsage := "label selector of the workloads (Deployments, StatefulSets, CronJobs), e.g. app.kubernetes.io/part-of=shop"
	wlUsage := "a workload as kind/name (deployment, statefulset, cronjob or deploy, sts, cj); repeatable, or comma-separated"
	if !o.RequireSome {
		selUsage += " (default: every workload carrying a scale-down record)"
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "selector", Usage: selUsage, Destination: &o.Selector},
		&cli.StringSliceFlag{Name: "workload", Usage: wlUsage, Destination: &o.Workloads},
	}
}

// Validate implements step.Options.
func (o *SelectOptions) Validate() error {
	o.sel = Selection{}
	if s := strings.TrimSpace(o.Selector); s != "" {
		sel, err := labels.Parse(s)
		if err != nil {
			return fmt.Errorf("--selector %q is not a valid label selector: %v", o.Selector, oneLine(err))
		}
		o.sel.Selector = sel
	}
	for _, v := range o.Workloads.Value() {
		if strings.TrimSpace(v) == "" {
			continue
		}
		r, err := ParseRef(v)
		if err != nil {
			return err
		}
		o.sel.Refs = append(o.sel.Refs, r)
	}
	if o.RequireSome && o.sel.Empty() {
		return errors.New("no workloads chosen: pass --selector and/or --workload kind/name")
	}
	return nil
}

// Selection is the validated selection.
func (o *SelectOptions) Selection() Selection { return o.sel }

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// RunOptions are the flags shared by scale-down and scale-restore.
type RunOptions struct {
	RunID         string
	Timeout       time.Duration
	ProgressEvery time.Duration
	// WaitReady is a flag of scale-restore only.
	WaitReady     bool
	withWaitReady bool
}

// DownOptions returns the run flags of scale-down.
func DownOptions() *RunOptions { return &RunOptions{} }

// RestoreOptions returns the run flags of scale-restore (with --wait-ready).
func RestoreOptions() *RunOptions { return &RunOptions{withWaitReady: true} }

// Flags implements step.Options.
func (o *RunOptions) Flags() []cli.Flag {
	timeoutUsage := "how long to wait for the workloads' pods to stop"
	if o.withWaitReady {
		timeoutUsage = "how long to wait for the restored workloads to be ready (with --wait-ready)"
	}
	flags := []cli.Flag{
		&cli.StringFlag{Name: "run-id", Usage: "who is doing this, recorded on each workload and in its Events, e.g. the workflow name (default: the host name, i.e. the pod name)", Destination: &o.RunID},
		&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: timeoutUsage, Destination: &o.Timeout},
		&cli.DurationFlag{Name: "progress-interval", Value: 10 * time.Second, Usage: "how often to log progress while waiting", Destination: &o.ProgressEvery},
	}
	if o.withWaitReady {
		flags = append(flags, &cli.BoolFlag{Name: "wait-ready", Usage: "wait until the restored Deployments and StatefulSets report all replicas ready", Destination: &o.WaitReady})
	}
	return flags
}

// Validate implements step.Options.
func (o *RunOptions) Validate() error {
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout %s must be positive, e.g. 10m", o.Timeout)
	}
	if o.ProgressEvery <= 0 {
		return fmt.Errorf("--progress-interval %s must be positive, e.g. 10s", o.ProgressEvery)
	}
	o.RunID = strings.TrimSpace(o.RunID)
	if o.RunID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "unknown"
		}
		o.RunID = h
	}
	if len(o.RunID) > 253 || strings.ContainsAny(o.RunID, "\n\r") {
		return fmt.Errorf("--run-id must be one line of at most 253 characters, e.g. the workflow name")
	}
	return nil
}
