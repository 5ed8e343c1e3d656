package workload

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/chartreuse-go/chartreuse/pkg/kube"
)

// Selection says which workloads a step works on: those matching Selector (nil:
// none by selector) plus those named in Refs.
type Selection struct {
	Selector labels.Selector
	Refs     []Ref
}

// Empty reports whether neither a selector nor names were given.
func (s Selection) Empty() bool { return s.Selector == nil && len(s.Refs) == 0 }

func (s Selection) String() string {
	switch {
	case s.Empty():
		return "every workload"
	case s.Selector == nil:
		return fmt.Sprintf("workloads %v", s.Refs)
	case len(s.Refs) == 0:
		return fmt.Sprintf("selector %q", s.Selector.String())
	}
	return fmt.Sprintf("selector %q and workloads %v", s.Selector.String(), s.Refs)
}

// finder reads workloads from one namespace.
type finder struct {
	cs kubernetes.Interface
	ns string
}

func resourceName(k Kind, sub string) string { return kube.Describe(k.Resource(), k.Group(), sub) }

// list returns the workloads of every kind that match sel.
func (f finder) list(ctx context.Context, sel labels.Selector) ([]*Workload, error) {
	opts := metav1.ListOptions{LabelSelector: sel.String()}
	var out []*Workload
	for _, k := range Kinds() {
		ws, err := kinds[k].list(ctx, f.cs, f.ns, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, ws...)
	}
	return out, nil
}

// get reads one workload; a missing one is reported with found=false.
func (f finder) get(ctx context.Context, r Ref) (*Workload, bool, error) {
	o, ok := kinds[r.Kind]
	if !ok {
		return nil, false, fmt.Errorf("unsupported kind %q", r.Kind)
	}
	return o.get(ctx, f.cs, f.ns, r.Name)
}

// find resolves a selection. Named workloads that do not exist are returned in
// missing. Duplicates (named and selected) appear once.
func (f finder) find(ctx context.Context, s Selection) (ws []*Workload, missing []Ref, err error) {
	seen := map[Ref]bool{}
	add := func(w *Workload) {
		if !seen[w.Ref] {
			seen[w.Ref] = true
			ws = append(ws, w)
		}
	}
	if s.Selector != nil {
		listed, err := f.list(ctx, s.Selector)
		if err != nil {
			return nil, nil, err
		}
		for _, w := range listed {
			add(w)
		}
	}
	for _, r := range s.Refs {
		if seen[r] {
			continue
		}
		w, found, err := f.get(ctx, r)
		if err != nil {
			return nil, nil, err
		}
		if !found {
			missing = append(missing, r)
			continue
		}
		add(w)
	}
	return ws, missing, nil
}
