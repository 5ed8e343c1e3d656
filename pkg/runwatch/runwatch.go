package runwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/kube"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// The kinds of run --watch-run names.
const (
	KindTaskRun  = "taskrun"  // Tekton: the step's own TaskRun
	KindWorkflow = "workflow" // Argo: the step's Workflow
)

// complainEvery spaces the log lines about reads that fail.
const complainEvery = time.Minute

// Options are the flags that name the run to watch.
type Options struct {
	Run       string // KIND/NAME
	UID       string
	Namespace string
	Every     time.Duration

	kind, name string
}

// Flags implements step.Options.
func (o *Options) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "watch-run", Usage: "the run this step belongs to, as taskrun/NAME (Tekton: taskrun/$(context.taskRun.name); a cancel of the TaskRun, or of its PipelineRun unless the TaskRun is one of finally's, stops the step) or workflow/NAME (Argo: workflow/{{workflow.name}}; argo stop or terminate stops it): once the run asks for it the step stops as on SIGTERM (a migration in a transaction rolls back, none after it starts, exit 75), before the engine's own signal reaches the pod; empty: no watch", Destination: &o.Run},
		&cli.StringFlag{Name: "watch-run-uid", Usage: "the uid of that TaskRun or Workflow ($(context.taskRun.uid), {{workflow.uid}}), required with --watch-run: no object of that name with this uid when the step starts is refused (exit 2, nothing changed); once seen, another object with its name counts as the run gone", Destination: &o.UID},
		&cli.StringFlag{Name: "watch-run-namespace", Usage: "namespace of the run (default: the pod's own namespace in a cluster, else the kubeconfig context's)", Destination: &o.Namespace},
		&cli.DurationFlag{Name: "watch-run-interval", Value: time.Second, Usage: "how often the run is read, from 100ms to 1m", Destination: &o.Every},
	}
}

// Validate implements step.Options.
func (o *Options) Validate() error {
	if o.Run == "" {
		if o.UID != "" {
			return failure.Usagef("--watch-run-uid without --watch-run: pass both (taskrun/$(context.taskRun.name) or workflow/{{workflow.name}}, and its uid), or neither")
		}
		return nil
	}
	kind, name, _ := strings.Cut(o.Run, "/")
	if kind != KindTaskRun && kind != KindWorkflow {
		return failure.Usagef("--watch-run %q: want taskrun/NAME (Tekton: taskrun/$(context.taskRun.name)) or workflow/NAME (Argo: workflow/{{workflow.name}})", o.Run)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return failure.Usagef("--watch-run %q: %q is not an object name: %s", o.Run, name, strings.Join(errs, "; "))
	}
	if o.UID == "" {
		return failure.Usagef("--watch-run %s needs --watch-run-uid, the object's uid ($(context.taskRun.uid), {{workflow.uid}}), so that another object of the same name is not taken for it", o.Run)
	}
	if o.Every < 100*time.Millisecond || o.Every > time.Minute {
		return failure.Usagef("--watch-run-interval %s: want 100ms to 1m", o.Every)
	}
	if err := (&kube.Options{Namespace: o.Namespace}).Validate(); err != nil {
		return failure.Usagef("--watch-run-namespace: %w", err)
	}
	o.kind, o.name = kind, name
	return nil
}

// Stopping returns spec with the Options added and its Run watched: when the
// run named asks for a stop, the step is interrupted (step.Env.Interrupt). The
// run is read once before the step's first attempt starts, so that a run
// already cancelled migrates nothing; then in the background for as long as
// the step runs, its retries and the waits between them included.
func Stopping(spec step.Spec) step.Spec {
	o := &Options{}
	spec.Options = append(spec.Options, o)
	run := spec.Run
	started := false
	spec.Run = func(ctx context.Context, env *step.Env) error {
		if o.kind == "" || env.Interrupt == nil || started {
			return run(ctx, env)
		}
		started = true
		w, err := o.connect(spec.Name, env.Log)
		if err != nil {
			env.Log.Warn("cannot watch the run: a cancel stops this step only when the engine signals its pod", "run", o.Run, "error", err.Error())
			return run(ctx, env)
		}
		why, err := w.first(ctx)
		switch {
		case why != "":
			env.Log.Warn("the run asked this step to stop before it started", "why", why)
			env.Interrupt(why)
			return failure.Transientf("%s did not start", spec.Name)
		case errors.Is(err, errNotThisRun):
			return failure.Usagef("--watch-run %s: %w: pass this step's own run (Tekton: taskrun/$(context.taskRun.name) and $(context.taskRun.uid); Argo: workflow/{{workflow.name}} and {{workflow.uid}}) in its namespace (--watch-run-namespace, default the pod's); nothing was changed", o.Run, err)
		}
		// The step's context ends when the step does (step.Run), after its
		// last attempt.
		go w.watch(ctx, env.Interrupt, err)
		return run(ctx, env)
	}
	return spec
}

// errNotThisRun: the object named was never read with the uid given, so it
// is not this step's run (or no longer there when the step began).
var errNotThisRun = errors.New("not found")

// readTimeout bounds one read of the run: a request the network lost must
// not blind the watch until client-go's own timeout (kube.RequestTimeout).
func (w *watcher) readTimeout() time.Duration {
	return min(max(3*w.every, 2*time.Second), 30*time.Second)
}

// firstReadTimeout bounds the read before the step starts: past it the step
// starts, and the watch goes on in the background.
const firstReadTimeout = 3 * time.Second

// watcher reads one run.
type watcher struct {
	dyn        dynamic.Interface
	ns         string
	kind, name string
	uid        string
	every      time.Duration
	log        *slog.Logger
	seen       bool // the run was read with its uid: gone from then on means gone
}

func (o *Options) connect(stepName string, log *slog.Logger) (*watcher, error) {
	c, err := (&kube.Options{Namespace: o.Namespace}).ConnectStep(stepName, log)
	if err != nil {
		return nil, err
	}
	dyn, err := c.Dynamic()
	if err != nil {
		return nil, err
	}
	return &watcher{dyn: dyn, ns: c.Namespace, kind: o.kind, name: o.name, uid: o.UID, every: o.Every, log: log}, nil
}

// first reads the run before the step starts, for at most firstReadTimeout.
func (w *watcher) first(ctx context.Context) (string, error) {
	rctx, cancel := context.WithTimeout(ctx, firstReadTimeout)
	defer cancel()
	return w.check(rctx)
}

// watch reads the run every w.every until ctx ends, the run asks for a stop
// (stop is then called with why) or it may not be read. prev is the error of
// the read before (first's).
func (w *watcher) watch(ctx context.Context, stop func(string), prev error) {
	w.log.Info("watching the run: a cancel stops this step as soon as it is seen", "run", w.kind+"/"+w.name, "namespace", w.ns, "every", w.every.String())
	var complained time.Time
	t := time.NewTicker(w.every)
	defer t.Stop()
	for err := prev; ; {
		switch {
		case apierrors.IsForbidden(err):
			w.log.Warn("may not read the run (its ServiceAccount lacks the Role's get): a cancel stops this step only when the engine signals its pod", "error", err.Error())
			return
		case errors.Is(err, errNotThisRun):
			w.log.Warn("cannot watch the run: it was never found with its uid in the namespace (check --watch-run, --watch-run-uid, --watch-run-namespace); a cancel stops this step only when the engine signals its pod", "run", w.kind+"/"+w.name, "namespace", w.ns, "error", err.Error())
			return
		case err != nil && ctx.Err() == nil && time.Since(complained) >= complainEvery:
			w.log.Warn("reading the run failed; trying again", "error", err.Error())
			complained = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, w.readTimeout())
		var why string
		why, err = w.check(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case why != "":
			w.log.Warn("the run asked this step to stop: stopping as on SIGTERM", "why", why)
			stop(why)
			return
		}
	}
}

// check reads the run once: why is not empty when it asks this step to stop.
func (w *watcher) check(ctx context.Context) (why string, err error) {
	if w.kind == KindWorkflow {
		wf, why, err := w.get(ctx, kube.Workflows, "Workflow", w.name, w.uid)
		if wf == nil {
			return why, err
		}
		if s, _, _ := unstructured.NestedString(wf.Object, "spec", "shutdown"); s != "" {
			return fmt.Sprintf("Workflow %s was stopped (spec.shutdown %s)", w.name, s), nil
		}
		return "", nil
	}
	tr, why, err := w.get(ctx, kube.TaskRuns, "TaskRun", w.name, w.uid)
	if tr == nil {
		return why, err
	}
	if s, _, _ := unstructured.NestedString(tr.Object, "spec", "status"); s == "TaskRunCancelled" {
		why = fmt.Sprintf("TaskRun %s was cancelled", w.name)
		if m, _, _ := unstructured.NestedString(tr.Object, "spec", "statusMessage"); m != "" {
			why += ": " + strings.TrimSuffix(m, ".")
		}
		return why, nil
	}
	owner := pipelineRunOf(tr)
	if owner == nil {
		return "", nil // a TaskRun of its own
	}
	pr, why, err := w.get(ctx, kube.PipelineRuns, "PipelineRun", owner.Name, string(owner.UID))
	if pr == nil {
		return why, err
	}
	s, _, _ := unstructured.NestedString(pr.Object, "spec", "status")
	switch {
	case s == "Cancelled":
	case s == "CancelledRunFinally" && !inFinally(pr, tr):
	default:
		// StoppedRunFinally lets running TaskRuns finish; a finally
		// TaskRun runs because of the cancel
		return "", nil
	}
	return fmt.Sprintf("PipelineRun %s was cancelled (%s)", owner.Name, s), nil
}

// get reads one object: nil with why when it is gone, being deleted (a
// finalizer holds it) or another object has its name; nil with err when it
// could not be read. The step's own run, until read once with its uid, is
// errNotThisRun instead of gone.
func (w *watcher) get(ctx context.Context, gvr schema.GroupVersionResource, kind, name, uid string) (*unstructured.Unstructured, string, error) {
	own := name == w.name && uid == w.uid
	u, err := w.dyn.Resource(gvr).Namespace(w.ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case own && !w.seen && (apierrors.IsNotFound(err) || (err == nil && string(u.GetUID()) != uid)):
		return nil, "", fmt.Errorf("%s %s with uid %s: %w in namespace %s", kind, name, uid, errNotThisRun, w.ns)
	case apierrors.IsNotFound(err):
		return nil, fmt.Sprintf("%s %s is gone", kind, name), nil
	case err != nil:
		return nil, "", kube.Classify(err, "get", gvr.GroupResource().String())
	case string(u.GetUID()) != uid:
		return nil, fmt.Sprintf("%s %s is gone (another object now has its name)", kind, name), nil
	}
	if own {
		w.seen = true
	}
	if u.GetDeletionTimestamp() != nil {
		return nil, fmt.Sprintf("%s %s is being deleted", kind, name), nil
	}
	return u, "", nil
}

// pipelineRunOf is the TaskRun's owning PipelineRun, nil for a TaskRun of its
// own.
func pipelineRunOf(tr *unstructured.Unstructured) *metav1.OwnerReference {
	for _, r := range tr.GetOwnerReferences() {
		if r.Kind == "PipelineRun" && strings.HasPrefix(r.APIVersion, "tekton.dev/") && r.Controller != nil && *r.Controller {
			return &r
		}
	}
	return nil
}

// inFinally reports whether the TaskRun runs one of the PipelineRun's finally
// tasks, as the resolved Pipeline in the run's status says (Tekton writes it
// before it creates a TaskRun), else the run's own inline Pipeline. When
// neither is there it cannot be told apart from one, and only a cancel of the
// TaskRun itself stops it.
func inFinally(pr, tr *unstructured.Unstructured) bool {
	spec, ok, _ := unstructured.NestedMap(pr.Object, "status", "pipelineSpec")
	if !ok {
		if spec, ok, _ = unstructured.NestedMap(pr.Object, "spec", "pipelineSpec"); !ok {
			return true
		}
	}
	task := tr.GetLabels()["tekton.dev/pipelineTask"]
	fin, _, _ := unstructured.NestedSlice(spec, "finally")
	return slices.ContainsFunc(fin, func(x any) bool {
		m, _ := x.(map[string]any)
		return m["name"] == task
	})
}
