package gate

import (
	"context"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/kube"
)

// The labels Argo puts on a workflow's pods.
const (
	labelWorkflow = "workflows.argoproj.io/workflow"
	labelOnExit   = "workflows.argoproj.io/on-exit"
)

// Settle waits until every pod of the Argo workflow RunName (uid RunUID) that
// is not part of its exit handler, and matches PodSelector, has stopped. After
// `argo stop` Argo marks the stopped steps failed at once and only then
// signals their pods, so without it
// the exit handler, and the workflow with it, can end while a stopped migrate
// is still at work: the mutex is freed under it, and an `argo retry` creates
// the retried pod under the name of the one still terminating. A pod the
// workflow does not own (another workflow that had the same name) is not
// waited for.
//
// When pods are still running at the timeout it fails transient (exit 75)
// naming them; the exit handler goes on either way.
func (g *Gate) Settle(ctx context.Context) error {
	start := time.Now()
	deadline := start.Add(g.Timeout)
	var lastProgress time.Time
	for {
		left, err := g.workflowPodsRunning(ctx)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			g.Log.Info("every step of the run has stopped", "workflow", g.RunName, "waited", time.Since(start).Round(time.Millisecond).String())
			return nil
		}
		now := time.Now()
		if !now.Before(deadline) {
			return failure.Transientf("workflow %s: %s still running after %s: a node that does not answer keeps its pods; "+
				"check them before a retry or another run for the same database", g.RunName, strings.Join(left, ", "), g.Timeout)
		}
		if lastProgress.IsZero() || (g.ProgressEvery > 0 && now.Sub(lastProgress) >= g.ProgressEvery) {
			g.Log.Info("waiting until the run's stopped steps have ended", "workflow", g.RunName, "still-running", strings.Join(left, ", "))
			lastProgress = now
		}
		if err := sleep(ctx, min(g.Poll, time.Until(deadline))); err != nil {
			return failure.Transientf("waiting for the run's stopped steps to end: %w", err)
		}
	}
}

// workflowPodsRunning lists the pods of this workflow, outside its exit
// handler, that have not stopped.
func (g *Gate) workflowPodsRunning(ctx context.Context) ([]string, error) {
	sel := labelWorkflow + "=" + g.RunName + ",!" + labelOnExit
	if g.PodSelector != "" {
		sel += "," + g.PodSelector
	}
	pods, err := g.Client.CoreV1().Pods(g.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, kube.Classify(err, "list", "pods")
	}
	var left []string
	for i := range pods.Items {
		p := &pods.Items[i]
		if !ownedBy(p, types.UID(g.RunUID)) {
			continue
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		left = append(left, "pod "+p.Name)
	}
	sort.Strings(left)
	return left, nil
}

func ownedBy(p *corev1.Pod, uid types.UID) bool {
	for _, o := range p.OwnerReferences {
		if o.UID == uid {
			return true
		}
	}
	return false
}
