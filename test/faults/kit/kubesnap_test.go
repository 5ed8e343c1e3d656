package kit

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// The snapshot names each workload kind with its generation, labels and own
// annotations, and only the steps' Events, sorted; other namespaces stay out.
func TestSnapshotNamespace(t *testing.T) {
	meta := func(name string, gen int64) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: "ns", Generation: gen,
			Labels:      map[string]string{"app": name, "tier": "web"},
			Annotations: map[string]string{"chartreuse.io/replicas": "3", "deployment.kubernetes.io/revision": "7"}}
	}
	cs := fake.NewClientset(
		&appsv1.Deployment{ObjectMeta: meta("web", 2)},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "other"}},
		&appsv1.StatefulSet{ObjectMeta: meta("db", 1)},
		&batchv1.CronJob{ObjectMeta: meta("nightly", 4)},
		&autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: meta("web", 3)},
		&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e1", Namespace: "ns", ResourceVersion: "11"}, Reason: "ScaledDown", Source: corev1.EventSource{Component: "chartreuse"}},
		&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e2", Namespace: "ns", ResourceVersion: "12"}, Reason: "Restored", ReportingController: "chartreuse/scale-restore"},
		&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e3", Namespace: "ns"}, Reason: "ScalingReplicaSet", Source: corev1.EventSource{Component: "deployment-controller"}},
	)
	got, err := SnapshotNamespace(context.Background(), cs, "ns")
	if err != nil {
		t.Fatal(err)
	}
	want := "cronjob/nightly generation=4 labels={app=nightly,tier=web} annotations={chartreuse.io/replicas=3}\n" +
		"deployment/web generation=2 labels={app=web,tier=web} annotations={chartreuse.io/replicas=3}\n" +
		"event/e1 ScaledDown rv=11\n" +
		"event/e2 Restored rv=12\n" +
		"hpa/web generation=3 labels={app=web,tier=web} annotations={chartreuse.io/replicas=3}\n" +
		"statefulset/db generation=1 labels={app=db,tier=web} annotations={chartreuse.io/replicas=3}"
	if got != want {
		t.Errorf("snapshot:\n%s\nwant:\n%s", got, want)
	}
}
