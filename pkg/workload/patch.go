package workload

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/chartreuse-go/chartreuse/pkg/kube"
)

// fieldManager names the steps in managedFields, so GitOps tools and people can see
// who changed replicas, suspend and the annotations.
const fieldManager = "chartreuse"

// patcher changes workloads with JSON merge patches. Patches that carry
// metadata.resourceVersion only apply to that version (409 Conflict otherwise).
type patcher struct {
	cs kubernetes.Interface
	ns string
}

func mergePatch(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("workload: encoding a patch: %v", err))
	}
	return b
}

// object patches the workload object itself and returns it as changed.
func (p patcher) object(ctx context.Context, r Ref, patch map[string]any) (*Workload, error) {
	body := mergePatch(patch)
	opts := metav1.PatchOptions{FieldManager: fieldManager}
	var (
		w   *Workload
		err error
	)
	switch r.Kind {
	case Deployment:
		d, perr := p.cs.AppsV1().Deployments(p.ns).Patch(ctx, r.Name, types.MergePatchType, body, opts)
		if err = perr; err == nil {
			w, err = fromDeployment(d)
		}
	case StatefulSet:
		s, perr := p.cs.AppsV1().StatefulSets(p.ns).Patch(ctx, r.Name, types.MergePatchType, body, opts)
		if err = perr; err == nil {
			w, err = fromStatefulSet(s)
		}
	case CronJob:
		c, perr := p.cs.BatchV1().CronJobs(p.ns).Patch(ctx, r.Name, types.MergePatchType, body, opts)
		if err = perr; err == nil {
			w = fromCronJob(c)
		}
	default:
		return nil, fmt.Errorf("unsupported kind %q", r.Kind)
	}
	if err != nil {
		return nil, kube.Classify(fmt.Errorf("patching %s: %w", r, err), "patch", resourceName(r.Kind, ""))
	}
	return w, nil
}
