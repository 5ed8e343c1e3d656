package gate

import (
	"context"
	"encoding/json"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

const holdFinalizer = "chartreuse.io/test-hold"

// terminatingPod creates a pod of the run owned by its PipelineRun, as Tekton's
// pods are (through their TaskRun), with a finalizer that keeps it after the
// garbage collector deletes it: a step still in its termination grace period.
func (c *cluster) terminatingPod(pr *unstructured.Unstructured, taskRun string) string {
	c.t.Helper()
	name := c.pod(pr, taskRun)
	c.t.Cleanup(func() { c.release(name) })
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"finalizers": []string{holdFinalizer},
		"ownerReferences": []metav1.OwnerReference{{
			APIVersion: PipelineRuns.GroupVersion().String(), Kind: "PipelineRun", Name: pr.GetName(), UID: pr.GetUID(),
		}},
	}})
	if _, err := c.cs.CoreV1().Pods(c.ns).Patch(c.t.Context(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		c.t.Fatal(err)
	}
	return name
}

// release drops the test finalizer: the pod then goes if it was deleted.
func (c *cluster) release(pod string) {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": nil}})
	_, err := c.cs.CoreV1().Pods(c.ns).Patch(context.Background(), pod, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		c.t.Error(err)
	}
}

// Deleting the holder's PipelineRun while one of its pods is still stopping
// (the garbage collector deletes the pods with their grace period) must not let
// the next run in before that pod has stopped: the same rule as for a holder
// that finished. The Lease's owner reference to the run let the garbage
// collector delete it at once, and the waiting run took the gate while the old
// run's migrate or restore was still at work.
func TestClusterDeletedHolderWaitsForItsStoppingPods(t *testing.T) {
	c := newCluster(t)
	a, b := c.pipelineRun("run-a"), c.pipelineRun("run-b")
	c.mustRun(0, a)
	pod := c.terminatingPod(a, "run-a-migrate")
	if err := c.dyn.Resource(PipelineRuns).Namespace(c.ns).Delete(t.Context(), a.GetName(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The collector has done its work: the run is gone, its pod is stopping, and
	// the Lease is gone or has no owner for the collector to follow.
	waitFor(t, func() bool {
		_, err := c.dyn.Resource(PipelineRuns).Namespace(c.ns).Get(t.Context(), a.GetName(), metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return false
		}
		p, err := c.cs.CoreV1().Pods(c.ns).Get(t.Context(), pod, metav1.GetOptions{})
		if err != nil || p.DeletionTimestamp == nil {
			return false
		}
		ls := c.lease()
		return ls == nil || len(ls.OwnerReferences) == 0
	})
	r := c.mustRun(failure.CodeTransient, b, "--timeout", "1s")
	wantLog(t, r, "its PipelineRun is gone; waiting for pod "+pod+" to stop")
	c.release(pod)
	waitFor(t, func() bool {
		_, err := c.cs.CoreV1().Pods(c.ns).Get(t.Context(), pod, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	wantLog(t, c.mustRun(0, b), "taking the gate over from a run that is done: its PipelineRun is gone", "gate taken")
	c.wantHolder(b)
}
