package gate

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// stoppingPod starts a pod of the run on the node, owned by its PipelineRun as
// Tekton's pods are (through their TaskRun), and returns it once it runs. Its
// preStop hook sleeps through a long grace period, so once the garbage
// collector deletes it the pod stays Running with a deletion timestamp: a step
// still stopping. (An unscheduled pod held by a finalizer is no such stand-in:
// the pod garbage collector marks a deleted unscheduled pod Failed within its
// 20 s period, and that flaked this test in CI.)
func (c *cluster) stoppingPod(pr *unstructured.Unstructured, taskRun string) string {
	c.t.Helper()
	const grace = 120
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "tr-",
			Labels:       map[string]string{labelRunUID: string(pr.GetUID()), labelTaskRun: taskRun},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: PipelineRuns.GroupVersion().String(), Kind: "PipelineRun", Name: pr.GetName(), UID: pr.GetUID(),
			}},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "step", Image: c.env.PauseImage, ImagePullPolicy: corev1.PullNever,
				Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: grace}}},
			}},
			TerminationGracePeriodSeconds: new(int64(grace)),
			AutomountServiceAccountToken:  new(false),
		},
	}
	created, err := c.cs.CoreV1().Pods(c.ns).Create(c.t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	name := created.Name
	c.t.Cleanup(func() {
		err := c.cs.CoreV1().Pods(c.ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		if err != nil && !apierrors.IsNotFound(err) {
			c.t.Error(err)
		}
	})
	waitFor(c.t, func() bool {
		got, err := c.cs.CoreV1().Pods(c.ns).Get(c.t.Context(), name, metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning
	})
	return name
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
	pod := c.stoppingPod(a, "run-a-migrate")
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
		if p.Status.Phase != corev1.PodRunning {
			t.Fatalf("pod %s stopped (%s) before the test could see it stopping", pod, p.Status.Phase)
		}
		ls := c.lease()
		return ls == nil || len(ls.OwnerReferences) == 0
	})
	r := c.mustRun(failure.CodeTransient, b, "--timeout", "1s")
	wantLog(t, r, "its PipelineRun is gone; waiting for pod "+pod+" to stop")
	c.deletePod(pod) // at once: the step has stopped
	wantLog(t, c.mustRun(0, b), "taking the gate over from a run that is done: its PipelineRun is gone", "gate taken")
	c.wantHolder(b)
}
