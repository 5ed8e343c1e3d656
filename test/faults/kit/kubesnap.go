package kit

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
)

// SnapshotNamespace fingerprints every Deployment, StatefulSet, CronJob and
// HorizontalPodAutoscaler in ns by what a step can change — the spec (through
// metadata.generation), labels and annotations — and lists the Events the steps
// wrote (a step that changes a workload also records an Event), to compare before
// and after a run that must change nothing. resourceVersion is left out: the
// controllers' status writes bump it whenever they like.
func SnapshotNamespace(ctx context.Context, cs kubernetes.Interface, ns string) (string, error) {
	var lines []string
	opts := metav1.ListOptions{}
	for _, k := range []struct {
		kind string
		list func() (runtime.Object, error)
	}{
		{"deployment", func() (runtime.Object, error) { return cs.AppsV1().Deployments(ns).List(ctx, opts) }},
		{"statefulset", func() (runtime.Object, error) { return cs.AppsV1().StatefulSets(ns).List(ctx, opts) }},
		{"cronjob", func() (runtime.Object, error) { return cs.BatchV1().CronJobs(ns).List(ctx, opts) }},
		{"hpa", func() (runtime.Object, error) {
			return cs.AutoscalingV2().HorizontalPodAutoscalers(ns).List(ctx, opts)
		}},
	} {
		l, err := k.list()
		if err != nil {
			return "", err
		}
		objs, err := apimeta.ExtractList(l)
		if err != nil {
			return "", err
		}
		for _, o := range objs {
			m, err := apimeta.Accessor(o)
			if err != nil {
				return "", err
			}
			lines = append(lines, fmt.Sprintf("%s/%s generation=%d labels=%s annotations=%s",
				k.kind, m.GetName(), m.GetGeneration(), keyValues(m.GetLabels()), keyValues(ownAnnotations(m.GetAnnotations()))))
		}
	}
	evs, err := cs.CoreV1().Events(ns).List(ctx, opts)
	if err != nil {
		return "", err
	}
	for _, o := range evs.Items {
		// Only the steps' own Events: the controllers write theirs asynchronously.
		if o.Source.Component == "chartreuse" || strings.HasPrefix(o.ReportingController, "chartreuse") {
			lines = append(lines, fmt.Sprintf("event/%s %s rv=%s", o.Name, o.Reason, o.ResourceVersion))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n"), nil
}

// ownAnnotations drops the annotations Kubernetes' own controllers keep up to
// date (deployment.kubernetes.io/revision and the like).
func ownAnnotations(a map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		if strings.Contains(k, "kubernetes.io/") {
			continue
		}
		out[k] = v
	}
	return out
}

func keyValues(m map[string]string) string {
	kv := make([]string, 0, len(m))
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return "{" + strings.Join(kv, ",") + "}"
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
