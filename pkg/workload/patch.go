package workload

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
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
	o, ok := kinds[r.Kind]
	if !ok {
		return nil, fmt.Errorf("unsupported kind %q", r.Kind)
	}
	return o.patch(ctx, p.cs, p.ns, r.Name, mergePatch(patch), metav1.PatchOptions{FieldManager: fieldManager})
}
