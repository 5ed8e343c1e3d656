package engines

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"
)

// ExamplePipelineRun loads tekton/examples/pipelinerun.yaml, the PipelineRun a
// user copies and edits (set its params with SetTektonParam).
func (tk *Tekton) ExamplePipelineRun() (*pipelinev1.PipelineRun, error) {
	return tk.Example("pipelinerun.yaml")
}

// Example reads the PipelineRun of tekton/examples/<file>.
func (tk *Tekton) Example(file string) (*pipelinev1.PipelineRun, error) {
	b, err := os.ReadFile(filepath.Join(tk.RepoDir, "tekton", "examples", file))
	if err != nil {
		return nil, err
	}
	var pr pipelinev1.PipelineRun
	if err := yaml.UnmarshalStrict(b, &pr); err != nil {
		return nil, fmt.Errorf("tekton/examples/%s: %w", file, err)
	}
	return &pr, nil
}

// SetTektonParam sets (or adds) a string param.
func SetTektonParam(params *pipelinev1.Params, name, value string) {
	for i := range *params {
		if (*params)[i].Name == name {
			(*params)[i].Value = *pipelinev1.NewStructuredValues(value)
			return
		}
	}
	*params = append(*params, pipelinev1.Param{Name: name, Value: *pipelinev1.NewStructuredValues(value)})
}

// CreatePipelineRun creates pr in namespace ns after doing what the (absent)
// admission webhook would: SetDefaults, then Validate, refusing an invalid run.
func (tk *Tekton) CreatePipelineRun(ctx context.Context, ns string, pr *pipelinev1.PipelineRun) (*pipelinev1.PipelineRun, error) {
	pr = pr.DeepCopy()
	pr.Namespace = ns
	pr.SetDefaults(ctx)
	v := pr.DeepCopy()
	if v.Name == "" {
		v.Name = v.GenerateName + "xxxxx" // the API server names the run before admission
	}
	if ferr := v.Validate(ctx); ferr != nil {
		return nil, fmt.Errorf("PipelineRun %s%s would be refused by the webhook: %w", pr.Name, pr.GenerateName, ferr)
	}
	return tk.Pipeline.TektonV1().PipelineRuns(ns).Create(ctx, pr, metav1.CreateOptions{FieldManager: TektonFieldManager})
}

// CreateTaskRun is CreatePipelineRun for a TaskRun.
func (tk *Tekton) CreateTaskRun(ctx context.Context, ns string, tr *pipelinev1.TaskRun) (*pipelinev1.TaskRun, error) {
	tr = tr.DeepCopy()
	tr.Namespace = ns
	tr.SetDefaults(ctx)
	v := tr.DeepCopy()
	if v.Name == "" {
		v.Name = v.GenerateName + "xxxxx"
	}
	if ferr := v.Validate(ctx); ferr != nil {
		return nil, fmt.Errorf("TaskRun %s%s would be refused by the webhook: %w", tr.Name, tr.GenerateName, ferr)
	}
	return tk.Pipeline.TektonV1().TaskRuns(ns).Create(ctx, tr, metav1.CreateOptions{FieldManager: TektonFieldManager})
}

// WaitPipelineRun waits until the run is done (its Succeeded condition is
// True or False) and returns it.
func (tk *Tekton) WaitPipelineRun(ctx context.Context, ns, name string) (*pipelinev1.PipelineRun, error) {
	return waitDone(ctx, "PipelineRun", ns, name, tk.Pipeline.TektonV1().PipelineRuns(ns).Get)
}

// WaitTaskRun waits until the TaskRun is done and returns it.
func (tk *Tekton) WaitTaskRun(ctx context.Context, ns, name string) (*pipelinev1.TaskRun, error) {
	return waitDone(ctx, "TaskRun", ns, name, tk.Pipeline.TektonV1().TaskRuns(ns).Get)
}

// tektonRun is a *PipelineRun or a *TaskRun.
type tektonRun interface {
	comparable
	IsDone() bool
	GetStatusCondition() apis.ConditionAccessor
}

// waitDone gets the run of kind (for messages) named name in ns until it is
// done, and returns it; when ctx ends first, the error says how the run stands.
func waitDone[R tektonRun](ctx context.Context, kind, ns, name string, get func(context.Context, string, metav1.GetOptions) (R, error)) (R, error) {
	var none R
	for {
		r, err := get(ctx, name, metav1.GetOptions{})
		if err == nil && r.IsDone() {
			return r, nil
		}
		select {
		case <-ctx.Done():
			if r != none {
				return r, fmt.Errorf("%s %s/%s not done: %w (%s)", kind, ns, name, ctx.Err(), RunCondition(r.GetStatusCondition().GetCondition(apis.ConditionSucceeded)))
			}
			return none, fmt.Errorf("%s %s/%s: %w (%v)", kind, ns, name, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// RunCondition renders a Succeeded condition as "status reason: message".
func RunCondition(c *apis.Condition) string {
	if c == nil {
		return "no Succeeded condition"
	}
	return fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message)
}

// Succeeded reports whether a run's Succeeded condition is True.
func Succeeded(c *apis.Condition) bool { return c != nil && c.Status == corev1.ConditionTrue }

// ChildTaskRuns returns the run's TaskRuns (from status.childReferences) by
// pipeline task name.
func (tk *Tekton) ChildTaskRuns(ctx context.Context, pr *pipelinev1.PipelineRun) (map[string]*pipelinev1.TaskRun, error) {
	out := map[string]*pipelinev1.TaskRun{}
	for _, ref := range pr.Status.ChildReferences {
		if ref.Kind != "TaskRun" {
			continue
		}
		tr, err := tk.Pipeline.TektonV1().TaskRuns(pr.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		out[ref.PipelineTaskName] = tr
	}
	return out, nil
}

// TaskRunResults returns a TaskRun's results as strings.
func TaskRunResults(tr *pipelinev1.TaskRun) map[string]string {
	out := map[string]string{}
	for _, r := range tr.Status.Results {
		out[r.Name] = strings.TrimSpace(r.Value.StringVal)
	}
	return out
}

// StepResults returns the step results of one step of a TaskRun (its last
// attempt), e.g. the recheck step of chartreuse-restore-if-unchanged.
func StepResults(tr *pipelinev1.TaskRun, step string) map[string]string {
	out := map[string]string{}
	for _, s := range tr.Status.Steps {
		if s.Name != step {
			continue
		}
		for _, r := range s.Results {
			out[r.Name] = strings.TrimSpace(r.Value.StringVal)
		}
	}
	return out
}

// SkippedTasks maps each skipped pipeline task to the reason Tekton gives.
func SkippedTasks(pr *pipelinev1.PipelineRun) map[string]string {
	out := map[string]string{}
	for _, s := range pr.Status.SkippedTasks {
		out[s.Name] = string(s.Reason)
	}
	return out
}

// StepExitCodes lists, for every attempt of a TaskRun (retries first, in
// order, then the last attempt), the exit code of each terminated step, e.g.
// ["migrate=75", "migrate=0"].
func StepExitCodes(tr *pipelinev1.TaskRun) []string {
	var out []string
	add := func(st pipelinev1.TaskRunStatus) {
		var parts []string
		for _, s := range st.Steps {
			if s.Terminated != nil {
				parts = append(parts, fmt.Sprintf("%s=%d", s.Name, s.Terminated.ExitCode))
			}
		}
		out = append(out, strings.Join(parts, ","))
	}
	for _, r := range tr.Status.RetriesStatus {
		add(r)
	}
	add(tr.Status)
	return out
}

// DescribeRun summarizes a PipelineRun and its TaskRuns (for failure messages).
func (tk *Tekton) DescribeRun(ctx context.Context, pr *pipelinev1.PipelineRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "PipelineRun %s/%s: %s\n", pr.Namespace, pr.Name, RunCondition(pr.Status.GetCondition(apis.ConditionSucceeded)))
	trs, _ := tk.ChildTaskRuns(ctx, pr)
	names := make([]string, 0, len(trs))
	for n := range trs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		tr := trs[n]
		fmt.Fprintf(&b, "  %s (%s): %s exit codes %v results %v; %s\n", n, tr.Name, RunCondition(tr.Status.GetCondition(apis.ConditionSucceeded)), StepExitCodes(tr), TaskRunResults(tr), timeline(pr, tr))
	}
	for n, r := range SkippedTasks(pr) {
		fmt.Fprintf(&b, "  %s skipped: %s\n", n, r)
	}
	return b.String()
}

// timeline tells when the TaskRun started and ended relative to the
// PipelineRun's start, and how long its steps ran.
func timeline(pr *pipelinev1.PipelineRun, tr *pipelinev1.TaskRun) string {
	if pr.Status.StartTime == nil || tr.Status.StartTime == nil || tr.Status.CompletionTime == nil {
		return "no times"
	}
	t0 := pr.Status.StartTime.Time
	var steps time.Duration
	for _, s := range tr.Status.Steps {
		if s.Terminated != nil {
			steps += s.Terminated.FinishedAt.Sub(s.Terminated.StartedAt.Time)
		}
	}
	return fmt.Sprintf("t+%s..t+%s (steps %s)", tr.Status.StartTime.Sub(t0), tr.Status.CompletionTime.Sub(t0), steps)
}

// TaskRunLogs returns the logs of every step container of the TaskRun's pod.
func (tk *Tekton) TaskRunLogs(ctx context.Context, tr *pipelinev1.TaskRun) string {
	if tr.Status.PodName == "" {
		return ""
	}
	pod, err := tk.Kube.CoreV1().Pods(tr.Namespace).Get(ctx, tr.Status.PodName, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, c := range pod.Spec.Containers {
		raw, err := tk.Kube.CoreV1().Pods(tr.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: c.Name}).DoRaw(ctx)
		if err != nil {
			fmt.Fprintf(&b, "[%s] %v\n", c.Name, err)
			continue
		}
		fmt.Fprintf(&b, "[%s]\n%s", c.Name, raw)
	}
	return b.String()
}

// SetRunStatus sets a PipelineRun's spec.status, as `tkn pipelinerun cancel`
// does (Cancelled) or the other graceful stops (CancelledRunFinally,
// StoppedRunFinally).
func (tk *Tekton) SetRunStatus(ctx context.Context, ns, name string, status pipelinev1.PipelineRunSpecStatus) error {
	patch := fmt.Sprintf(`{"spec":{"status":%q}}`, status)
	_, err := tk.Pipeline.TektonV1().PipelineRuns(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// PipelineTaskRun returns the TaskRun of one pipeline task of a running
// PipelineRun (nil while there is none).
func (tk *Tekton) PipelineTaskRun(ctx context.Context, ns, pipelineRun, task string) (*pipelinev1.TaskRun, error) {
	trs, err := tk.Pipeline.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{
		LabelSelector: "tekton.dev/pipelineRun=" + pipelineRun + ",tekton.dev/pipelineTask=" + task})
	if err != nil || len(trs.Items) == 0 {
		return nil, err
	}
	return &trs.Items[0], nil
}
