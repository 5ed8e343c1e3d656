package workload

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/kube"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// StoppedOptions are the flags of a step that must not run while the
// application runs (migrate, and its rollback): the workloads this run's
// scale-down stopped. The step checks them first and refuses while any runs.
//
// Argo's `argo retry` keeps the succeeded scale-down node and reruns migrate.
// If something put the application back in between (a scale-restore run, a
// person, a later run's restore), only this check stands between the retried
// migrate and a schema change under the running application.
//
// Tekton's Pipeline cannot pass the selection only when scale-down ran (a task
// that reads a skipped task's result is skipped too), so it passes it always,
// with the two values its scale-down's when expressions read: StopWorkloads
// and NeedsDowntime. The check then applies only when they made scale-down
// run; Argo passes neither and the selection only when scale-down ran.
type StoppedOptions struct {
	Selector      string
	Workloads     cli.StringSlice
	Namespace     string
	StopWorkloads string // the run's stop-workloads: true, false, auto; empty: check
	NeedsDowntime string // plan's needs-downtime result, read with auto
	// CheckOnly: check, then exit without running the step. Tekton's rollback
	// runs the check in a step of its own, which holds the API token of the
	// Task's pod (it may also scale, for the restore after the rollback), so that
	// the step running the down migrations holds none.
	CheckOnly bool

	sel Selection
}

// StopsWorkloads says whether a run with stop-workloads stop and plan's
// needs-downtime result needs stops the workloads before migrate: the
// Pipeline's scale-down when expressions (test/manifests checks that they
// agree). Empty stop means a caller that passes the selection only when it
// did. A missing needs-downtime counts as true.
func StopsWorkloads(stop, needs string) bool {
	switch stop {
	case "false":
		return false
	case "auto":
		return needs != "false"
	}
	return true
}

// Flags implements step.Options.
func (o *StoppedOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "stopped-selector", Usage: "label selector of the workloads this run's scale-down stopped: before changing anything, refuse (exit 2) while any of them runs (a Deployment or StatefulSet with replicas or a pod left, a CronJob not suspended), so that a rerun after the application was put back never migrates under it; empty, with no --stopped-workload: no check", Destination: &o.Selector},
		&cli.StringSliceFlag{Name: "stopped-workload", Usage: "a workload this run's scale-down stopped, as kind/name; repeatable, or comma-separated (see --stopped-selector)", Destination: &o.Workloads},
		&cli.StringFlag{Name: "stopped-namespace", Usage: "namespace of those workloads (default: the pod's own namespace in a cluster, else the kubeconfig context's)", Destination: &o.Namespace},
		&cli.StringFlag{Name: "stop-workloads", Usage: "the run's stop-workloads (true, false or auto), for a workflow that passes --stopped-selector whether or not scale-down ran (Tekton): false, or auto with --needs-downtime false, means it stopped nothing, so no check; empty: check", Destination: &o.StopWorkloads},
		&cli.StringFlag{Name: "needs-downtime", Usage: "plan's needs-downtime result (true or false), read with --stop-workloads auto", Destination: &o.NeedsDowntime},
		&cli.BoolFlag{Name: "stopped-check-only", Usage: "check the workloads (--stopped-selector, --stopped-workload), then exit without connecting to the database or doing anything else: for a step of its own before the one that migrates", Destination: &o.CheckOnly},
	}
}

// Validate implements step.Options.
func (o *StoppedOptions) Validate() error {
	if !slices.Contains([]string{"", "true", "false", "auto"}, o.StopWorkloads) {
		return failure.Usagef("--stop-workloads %q: want true, false or auto (the run's stop-workloads parameter)", o.StopWorkloads)
	}
	if !slices.Contains([]string{"", "true", "false"}, o.NeedsDowntime) {
		return failure.Usagef("--needs-downtime %q: want true or false (plan's needs-downtime result)", o.NeedsDowntime)
	}
	sel, err := parseSelectionIn("--stopped-selector", o.Selector, o.Workloads.Value(), o.Namespace)
	o.sel = sel
	return err
}

// StoppedCheckTimeout bounds RequireStopped's reads: an API server that does
// not answer fails the step as transient (exit 75) instead of holding it.
const StoppedCheckTimeout = 30 * time.Second

// RequireStopped returns spec with the StoppedOptions added and its Run
// preceded by the check: a step that must not change the database while the
// workloads named run refuses before it connects to the database.
func RequireStopped(spec step.Spec) step.Spec {
	o := &StoppedOptions{}
	inner := make([]step.Options, 0, len(spec.Options)+1)
	for _, opt := range spec.Options {
		inner = append(inner, unlessCheckOnly{opt, o})
	}
	spec.Options = append(inner, o)
	run := spec.Run
	spec.Run = func(ctx context.Context, env *step.Env) error {
		switch {
		case o.sel.Empty():
			if o.CheckOnly {
				env.Log.Info("no workloads to check: no --stopped-selector or --stopped-workload")
			}
		case !StopsWorkloads(o.StopWorkloads, o.NeedsDowntime):
			env.Log.Info("no check of the workloads: this run stops none", "stop-workloads", o.StopWorkloads, "needs-downtime", o.NeedsDowntime)
		default:
			c, err := (&kube.Options{Namespace: o.Namespace}).ConnectStep(spec.Name, env.Log)
			if err != nil {
				return err
			}
			cctx, cancel := context.WithTimeout(ctx, StoppedCheckTimeout)
			err = CheckStopped(cctx, c.Interface, c.Namespace, o.sel)
			cancel()
			if err != nil {
				return err
			}
			env.Log.Info("the workloads this run stopped are still stopped", "selection", o.sel.String())
		}
		if o.CheckOnly {
			return nil
		}
		return run(ctx, env)
	}
	return spec
}

// CheckStopped returns nil when every workload of sel in namespace ns is
// stopped: a Deployment or StatefulSet asks for no replica and no pod of it is
// left, a CronJob is suspended. A named workload that no longer exists counts
// as stopped. Otherwise a usage error (exit 2: rerunning the same step cannot
// help) names each running one.
func CheckStopped(ctx context.Context, cs kubernetes.Interface, ns string, sel Selection) error {
	ws, _, err := finder{cs: cs, ns: ns}.find(ctx, sel)
	if err != nil {
		return err
	}
	var running []string
	var scalable []*Workload
	for _, w := range ws {
		switch {
		case w.Kind.Scalable() && w.Replicas > 0:
			running = append(running, fmt.Sprintf("%s (%d replicas)", w, w.Replicas))
		case w.Kind.Scalable():
			scalable = append(scalable, w)
		case !w.Suspended:
			running = append(running, fmt.Sprintf("%s (not suspended)", w))
		}
	}
	if len(scalable) > 0 {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return kube.Classify(fmt.Errorf("listing pods in %s: %w", ns, err), "list", "pods")
		}
		for _, w := range scalable {
			if n := livePods(pods.Items, w.PodSelector); n > 0 {
				running = append(running, fmt.Sprintf("%s (0 replicas, %d pods left)", w, n))
			}
		}
	}
	if len(running) == 0 {
		return nil
	}
	sort.Strings(running)
	return failure.Usagef("the application runs again in namespace %s: %s. This run stopped it, and since then something put it back (a scale-restore run, a person, another run's restore), so this step would change the schema under it; nothing was changed. Start a new run (argo resubmit, or a new PipelineRun), which stops the application first",
		ns, strings.Join(running, ", "))
}

// livePods counts the pods sel matches that have not ended.
func livePods(pods []corev1.Pod, sel labels.Selector) int {
	n := 0
	for i := range pods {
		p := &pods[i]
		if sel != nil && sel.Matches(labels.Set(p.Labels)) && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			n++
		}
	}
	return n
}

// unlessCheckOnly validates the step's own options only when it will run: with
// --stopped-check-only it neither reads migrations nor connects, so a check step
// is not refused for what only the step would need (a migrations directory).
type unlessCheckOnly struct {
	step.Options
	stopped *StoppedOptions
}

func (u unlessCheckOnly) Validate() error {
	if u.stopped.CheckOnly {
		return nil
	}
	return u.Options.Validate()
}
