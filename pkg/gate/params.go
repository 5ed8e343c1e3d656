package gate

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/kube"
)

// ErrUnknownParameters: the PipelineRun sets a parameter its Pipeline does not
// declare. Tekton passes such a parameter on without a word, so a misspelt name
// would leave its default in force.
var ErrUnknownParameters = errors.New("unknown parameters")

// multiDatabase is the Argo WorkflowTemplate's list of databases, which the
// Pipeline does not take: a run given it would migrate database-secret alone.
const multiDatabase = "databases"

// specWait bounds the wait for the run's resolved Pipeline in its status.
const specWait = 30 * time.Second

// CheckParameters refuses (exit 2, before the gate is taken) a run whose
// PipelineRun sets a parameter that its Pipeline, as Tekton resolved it into the
// run's status, does not declare (it names the parameters, never their values),
// or that has a run-level timeout (ErrRunTimeout).
func (g *Gate) CheckParameters(ctx context.Context) error {
	var (
		pr       *unstructured.Unstructured
		declared []any
	)
	// Tekton stores the resolved Pipeline in the run's status in the same
	// reconcile that creates the first TaskRuns, so it is there by the time this
	// pod runs, unless that status write was retried: wait a little for it.
	deadline := time.Now().Add(specWait)
	for {
		var err error
		pr, err = g.Dynamic.Resource(PipelineRuns).Namespace(g.Namespace).Get(ctx, g.RunName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return failure.Permanentf("this run's PipelineRun %s is gone: nothing was changed", g.RunName)
		}
		if err != nil {
			return kube.Classify(err, "get", "pipelineruns.tekton.dev")
		}
		if string(pr.GetUID()) != g.RunUID {
			return failure.Permanentf("PipelineRun %s is another run (uid %s, this run's is %s): nothing was changed", g.RunName, pr.GetUID(), g.RunUID)
		}
		var found bool
		declared, found, err = unstructured.NestedSlice(pr.Object, "status", "pipelineSpec", "params")
		if err == nil && found {
			break
		}
		if !time.Now().Before(deadline) {
			return failure.Permanentf("PipelineRun %s has no status.pipelineSpec.params to check its parameters against after %s: nothing was changed", g.RunName, specWait)
		}
		if err := sleep(ctx, g.Poll); err != nil {
			return failure.Transientf("waiting for PipelineRun %s's status: %w", g.RunName, err)
		}
	}
	g.Created = pr.GetCreationTimestamp().Time
	given, _, err := unstructured.NestedSlice(pr.Object, "spec", "params")
	if err != nil {
		return failure.Permanentf("PipelineRun %s: reading spec.params: %w", g.RunName, err)
	}
	if err := UnknownParameters(unknownParameters(names(given), names(declared))); err != nil {
		return err
	}
	return RunTimeouts(pr)
}

// ErrRunTimeout: the PipelineRun has a run-level timeout. When it expires
// Tekton cancels whatever runs, a migration or finally's restore included, and
// starts nothing after it, so the application can stay stopped with no record
// of why. Only the steps' own timeouts may end a run.
var ErrRunTimeout = errors.New("run-level timeout")

// RunTimeouts refuses a run whose timeouts.pipeline is not "0" (Tekton's
// webhook fills in its default, 1 h, when the run gives none), whose
// timeouts.finally is set to anything else, or that gives a pipeline task a
// TaskRun timeout (taskRunSpecs). timeouts.tasks may be set: when it expires
// Tekton stops the tasks and runs finally, which restores or rolls back.
func RunTimeouts(pr *unstructured.Unstructured) error {
	check := func(field string, unset string) error {
		v, found, err := unstructured.NestedString(pr.Object, "spec", "timeouts", field)
		if err != nil {
			return failure.Usagef("PipelineRun %s has a %w (spec.timeouts.%s: %w); nothing was changed", pr.GetName(), ErrRunTimeout, field, err)
		}
		if !found {
			if unset == "" {
				return nil
			}
			v = unset
		} else if noTimeout(v) {
			return nil
		}
		return failure.Usagef("PipelineRun %s has a %w (timeouts.%s %s): when it expires Tekton stops the migration or finally's restore and runs nothing after; start the run with timeouts: {pipeline: \"0\"} (tkn pipeline start --pipeline-timeout 0; tekton/examples/pipelinerun.yaml has it); nothing was changed",
			pr.GetName(), ErrRunTimeout, field, v)
	}
	if err := check("pipeline", "unset, Tekton's default"); err != nil {
		return err
	}
	if err := check("finally", ""); err != nil {
		return err
	}
	// A TaskRun's own timeout, set for one pipeline task, ends its attempts as
	// timeouts.finally would (the Pipeline gives every task "0").
	specs, _, _ := unstructured.NestedSlice(pr.Object, "spec", "taskRunSpecs")
	for _, x := range specs {
		m, _ := x.(map[string]any)
		v, ok := m["timeout"].(string)
		if !ok || noTimeout(v) {
			continue
		}
		return failure.Usagef("PipelineRun %s has a %w (taskRunSpecs timeout %s for task %v): when it expires Tekton stops that task, a migration or a restore included; remove it, only the steps' own timeout parameters may end them; nothing was changed",
			pr.GetName(), ErrRunTimeout, v, m["pipelineTaskName"])
	}
	return nil
}

// noTimeout says whether a Tekton timeout value is zero ("0", "0s"): none.
func noTimeout(v string) bool {
	d, err := time.ParseDuration(v)
	return err == nil && d == 0
}

// UnknownParameters is the usage error naming the parameters a run sets that
// its Pipeline does not declare (nil for none).
func UnknownParameters(unknown []string) error {
	if len(unknown) == 0 {
		return nil
	}
	hint := ""
	if slices.Contains(unknown, multiDatabase) {
		hint = "; several databases in one run (databases) are not on Tekton yet: start one PipelineRun per database, or use the Argo WorkflowTemplate"
	}
	return failure.Usagef("%w %s: the Pipeline has no such parameter (check the spelling against tekton/README.md)%s; nothing was changed",
		ErrUnknownParameters, strings.Join(unknown, ", "), hint)
}

// names are the name fields of a params list.
func names(params []any) []string {
	var out []string
	for _, p := range params {
		if m, ok := p.(map[string]any); ok {
			if n, ok := m["name"].(string); ok {
				out = append(out, n)
			}
		}
	}
	return out
}

// unknownParameters lists the given names that are not declared, sorted, once each.
func unknownParameters(given, declared []string) []string {
	var unknown []string
	for _, n := range given {
		if !slices.Contains(declared, n) && !slices.Contains(unknown, n) {
			unknown = append(unknown, n)
		}
	}
	slices.Sort(unknown)
	return unknown
}
