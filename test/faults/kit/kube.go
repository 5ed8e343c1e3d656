package kit

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/chartreuse-go/chartreuse/pkg/workload"
)

// The Deployment builder, ServiceAccount, kubeconfig and rules helpers are in
// the leaf package test/kubeobj.

// Replicas reads a Deployment's spec.replicas and its scale-down record
// (recorded=false when there is none).
func Replicas(ctx context.Context, cs kubernetes.Interface, ns, name string) (replicas int32, record string, recorded bool, err error) {
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return 0, "", false, err
	}
	record, recorded = d.Annotations[workload.AnnotationReplicas]
	return ptr.Deref(d.Spec.Replicas, 1), record, recorded, nil
}
