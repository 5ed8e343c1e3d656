package workload

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/chartreuse-go/chartreuse/pkg/kube"
)

// kindOps is everything the steps do that depends on a workload's kind: its
// names, its API calls, and how its controller's status reads in the watch.
// Adding a kind is adding a row to kinds.
type kindOps struct {
	kind     Kind
	kindName string // as spelled in objects
	group    string
	scalable bool // stopped by scaling to 0 (else by suspending)

	list  func(ctx context.Context, cs kubernetes.Interface, ns string, opts metav1.ListOptions) ([]*Workload, error)
	get   func(ctx context.Context, cs kubernetes.Interface, ns, name string) (w *Workload, found bool, err error)
	patch func(ctx context.Context, cs kubernetes.Interface, ns, name string, body []byte, opts metav1.PatchOptions) (*Workload, error)
	// status reads the workload's controller status from the watch; ok is false
	// when it is not there (deleted) or the kind has no replicas to wait for.
	status func(w *watcher, name string) (s controllerStatus, ok bool)
}

// controllerStatus is what a Deployment's or StatefulSet's controller reports.
type controllerStatus struct {
	generation, observed int64
	want                 int32 // spec.replicas
	replicas             int32 // status.replicas
	ready                int32 // status.readyReplicas
	// up counts the replicas at the current spec: a Deployment's
	// updatedReplicas, a StatefulSet's replicas.
	up int32
}

var kinds = map[Kind]kindOps{
	Deployment: withAPI(kindOps{kind: Deployment, kindName: "Deployment", group: "apps", scalable: true,
		status: func(w *watcher, name string) (controllerStatus, bool) {
			d, err := w.deployments.Get(name)
			if err != nil {
				return controllerStatus{}, false
			}
			return controllerStatus{generation: d.Generation, observed: d.Status.ObservedGeneration, want: replicas(d.Spec.Replicas),
				replicas: d.Status.Replicas, ready: d.Status.ReadyReplicas, up: d.Status.UpdatedReplicas}, true
		},
	}, deployments, func(l *appsv1.DeploymentList) []appsv1.Deployment { return l.Items }, fromDeployment),
	StatefulSet: withAPI(kindOps{kind: StatefulSet, kindName: "StatefulSet", group: "apps", scalable: true,
		status: func(w *watcher, name string) (controllerStatus, bool) {
			s, err := w.statefulSets.Get(name)
			if err != nil {
				return controllerStatus{}, false
			}
			return controllerStatus{generation: s.Generation, observed: s.Status.ObservedGeneration, want: replicas(s.Spec.Replicas),
				replicas: s.Status.Replicas, ready: s.Status.ReadyReplicas, up: s.Status.Replicas}, true
		},
	}, statefulSets, func(l *appsv1.StatefulSetList) []appsv1.StatefulSet { return l.Items }, fromStatefulSet),
	CronJob: withAPI(kindOps{kind: CronJob, kindName: "CronJob", group: "batch",
		status: func(*watcher, string) (controllerStatus, bool) { return controllerStatus{}, false },
	}, cronJobs, func(l *batchv1.CronJobList) []batchv1.CronJob { return l.Items }, fromCronJob),
}

// typedClient is what the steps use of a kind's typed client
// (kubernetes.Interface's Deployments, StatefulSets, CronJobs).
type typedClient[T, L any] interface {
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
}

func deployments(cs kubernetes.Interface, ns string) typedClient[*appsv1.Deployment, *appsv1.DeploymentList] {
	return cs.AppsV1().Deployments(ns)
}

func statefulSets(cs kubernetes.Interface, ns string) typedClient[*appsv1.StatefulSet, *appsv1.StatefulSetList] {
	return cs.AppsV1().StatefulSets(ns)
}

func cronJobs(cs kubernetes.Interface, ns string) typedClient[*batchv1.CronJob, *batchv1.CronJobList] {
	return cs.BatchV1().CronJobs(ns)
}

// withAPI fills in o's API calls, made with the typed client, their errors
// classified (a workload that does not exist is found=false, not an error).
func withAPI[O, L any](o kindOps, client func(kubernetes.Interface, string) typedClient[*O, L], items func(L) []O, from func(*O) (*Workload, error)) kindOps {
	// Not resourceName: it reads kinds, which this initialises.
	resource := kube.Describe(o.kind.Resource(), o.group, "")
	o.list = func(ctx context.Context, cs kubernetes.Interface, ns string, opts metav1.ListOptions) ([]*Workload, error) {
		l, err := client(cs, ns).List(ctx, opts)
		if err != nil {
			return nil, kube.Classify(fmt.Errorf("listing %s in %s: %w", o.kind.Resource(), ns, err), "list", resource)
		}
		objs := items(l)
		out := make([]*Workload, 0, len(objs))
		for i := range objs {
			w, err := from(&objs[i])
			if err != nil {
				return nil, err
			}
			out = append(out, w)
		}
		return out, nil
	}
	o.get = func(ctx context.Context, cs kubernetes.Interface, ns, name string) (*Workload, bool, error) {
		obj, err := client(cs, ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil, false, nil
		case err != nil:
			return nil, false, kube.Classify(fmt.Errorf("reading %s in %s: %w", Ref{o.kind, name}, ns, err), "get", resource)
		}
		w, err := from(obj)
		return w, true, err
	}
	o.patch = func(ctx context.Context, cs kubernetes.Interface, ns, name string, body []byte, opts metav1.PatchOptions) (*Workload, error) {
		obj, err := client(cs, ns).Patch(ctx, name, types.MergePatchType, body, opts)
		var w *Workload
		if err == nil {
			w, err = from(obj)
		}
		if err != nil {
			return nil, kube.Classify(fmt.Errorf("patching %s: %w", Ref{o.kind, name}, err), "patch", resource)
		}
		return w, nil
	}
	return o
}
