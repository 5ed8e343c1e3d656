package kit

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// SnapshotNamespace lists the resourceVersion of every Deployment, StatefulSet,
// CronJob and HorizontalPodAutoscaler in ns, and the Events the steps wrote (a
// step that changes a workload also records an Event), to compare before and
// after a run that must change nothing.
func SnapshotNamespace(ctx context.Context, cs kubernetes.Interface, ns string) (string, error) {
	var lines []string
	add := func(kind, name, rv string) { lines = append(lines, fmt.Sprintf("%s/%s rv=%s", kind, name, rv)) }
	opts := metav1.ListOptions{}
	ds, err := cs.AppsV1().Deployments(ns).List(ctx, opts)
	if err != nil {
		return "", err
	}
	for _, o := range ds.Items {
		add("deployment", o.Name, o.ResourceVersion)
	}
	ss, err := cs.AppsV1().StatefulSets(ns).List(ctx, opts)
	if err != nil {
		return "", err
	}
	for _, o := range ss.Items {
		add("statefulset", o.Name, o.ResourceVersion)
	}
	cjs, err := cs.BatchV1().CronJobs(ns).List(ctx, opts)
	if err != nil {
		return "", err
	}
	for _, o := range cjs.Items {
		add("cronjob", o.Name, o.ResourceVersion)
	}
	hpas, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).List(ctx, opts)
	if err != nil {
		return "", err
	}
	for _, o := range hpas.Items {
		add("hpa", o.Name, o.ResourceVersion)
	}
	evs, err := cs.CoreV1().Events(ns).List(ctx, opts)
	if err != nil {
		return "", err
	}
	for _, o := range evs.Items {
		// Only the steps' own Events: the controllers write theirs asynchronously.
		if o.Source.Component == "chartreuse" || strings.HasPrefix(o.ReportingController, "chartreuse") {
			add("event", o.Name+" "+o.Reason, o.ResourceVersion)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n"), nil
}

// Quiet waits until the namespace's snapshot stays the same for a second (the
// controllers have finished updating status), at most timeout, and returns it.
func Quiet(ctx context.Context, cs kubernetes.Interface, ns string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	prev, err := SnapshotNamespace(ctx, cs, ns)
	if err != nil {
		return "", err
	}
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Second):
		}
		cur, err := SnapshotNamespace(ctx, cs, ns)
		if err != nil {
			return "", err
		}
		if cur == prev {
			return cur, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("namespace %s still changing after %s:\n%s", ns, timeout, Diff(prev, cur))
		}
		prev = cur
	}
}
