package engines

import (
	"context"
	"strings"
	"testing"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	pipelinefake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
)

func succeeded(status corev1.ConditionStatus, reason string) duckv1.Status {
	return duckv1.Status{Conditions: duckv1.Conditions{{Type: apis.ConditionSucceeded, Status: status, Reason: reason}}}
}

// The wait returns a done run at once, and when its context ends first, it says
// how the run stands, or that it could not be read.
func TestWaitRuns(t *testing.T) {
	meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: "ns"} }
	done, running := succeeded(corev1.ConditionTrue, "Succeeded"), succeeded(corev1.ConditionUnknown, "Running")
	prDone := &pipelinev1.PipelineRun{ObjectMeta: meta("pr-done")}
	prDone.Status.Status = done
	prRunning := &pipelinev1.PipelineRun{ObjectMeta: meta("pr-running")}
	prRunning.Status.Status = running
	trDone := &pipelinev1.TaskRun{ObjectMeta: meta("tr-done")}
	trDone.Status.Status = done
	trRunning := &pipelinev1.TaskRun{ObjectMeta: meta("tr-running")}
	trRunning.Status.Status = running
	tk := &Tekton{Pipeline: pipelinefake.NewSimpleClientset(prDone, prRunning, trDone, trRunning)}

	ctx := context.Background()
	if pr, err := tk.WaitPipelineRun(ctx, "ns", "pr-done"); err != nil || pr.Name != "pr-done" {
		t.Errorf("done PipelineRun: %v, %v", pr, err)
	}
	if tr, err := tk.WaitTaskRun(ctx, "ns", "tr-done"); err != nil || tr.Name != "tr-done" {
		t.Errorf("done TaskRun: %v, %v", tr, err)
	}

	ended, cancel := context.WithCancel(ctx)
	cancel()
	for _, tt := range []struct {
		name string
		wait func() (any, error)
		want string
	}{
		{"pr-running", func() (any, error) { return tk.WaitPipelineRun(ended, "ns", "pr-running") }, "PipelineRun ns/pr-running not done: context canceled (Unknown Running"},
		{"tr-running", func() (any, error) { return tk.WaitTaskRun(ended, "ns", "tr-running") }, "TaskRun ns/tr-running not done: context canceled (Unknown Running"},
	} {
		if _, err := tt.wait(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
}
