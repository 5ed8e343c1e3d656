package e2e

import (
	"strings"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"knative.dev/pkg/apis"
)

// A wrong image: Tekton fails the first TaskRun (the gate) as soon as its pod
// reports ImagePullBackOff, naming the image; nothing else starts, and a run
// with the right image goes through next (the gate's Lease was never taken).
func (s *tektonSuite) testWrongImage(t *testing.T) {
	c := s.newCase(t, nil)
	const image = "chartreuse.local/no-such-image:0.0.0"
	start := time.Now()
	pr, trs := c.run(t, c.pipelineRun(t, "", map[string]string{"image": image}))
	took := time.Since(start)
	wantSucceeded(t, pr, false)
	gate := trs["gate"]
	if gate == nil {
		t.Fatalf("no gate TaskRun: %v", keys(trs))
	}
	cond := gate.Status.GetCondition(apis.ConditionSucceeded)
	if cond == nil || cond.Reason != string(pipelinev1.TaskRunReasonImagePullFailed) || !strings.Contains(cond.Message, image) {
		t.Errorf("gate: %+v, want %s naming %s", cond, pipelinev1.TaskRunReasonImagePullFailed, image)
	}
	for _, task := range append([]string{"wait-for-db"}, phases...) {
		if tr := trs[task]; tr != nil {
			t.Errorf("task %s ran after the gate failed to start", task)
		}
	}
	c.wantVersions(t)
	c.wantUntouched(t)
	t.Logf("the run with image %s failed after %s", image, took.Round(time.Second))

	pr, _ = c.run(t, c.pipelineRun(t, "", nil))
	wantSucceeded(t, pr, true)
	c.wantVersions(t, 1, 2, 3)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
