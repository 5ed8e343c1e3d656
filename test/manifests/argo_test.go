package manifests

import (
	"fmt"
	"sort"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/argoproj/argo-workflows/v3/workflow/templateresolution"
	"github.com/argoproj/argo-workflows/v3/workflow/validate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// phaseEntrypoints are the templates usable alone with
// `argo submit --from workflowtemplate/chartreuse --entrypoint <phase>`, with the
// parameters each needs beyond the workflow's.
var phaseEntrypoints = map[string]map[string]string{
	"wait-for-db":   nil,
	"wait-patroni":  nil,
	"plan":          nil,
	"scale-down":    nil,
	"migrate":       nil,
	"rollback":      {"down-to": "20240101120000"},
	"scale-restore": nil,
	"recheck":       nil,
}

// argoTemplate returns the one WorkflowTemplate, decoded strictly.
func argoTemplate(t testing.TB) *wfv1.WorkflowTemplate {
	t.Helper()
	ds := docsOfKind(loadDocs(t), "argoproj.io/v1alpha1", "WorkflowTemplate")
	if len(ds) != 1 {
		t.Fatalf("want exactly one WorkflowTemplate, found %d", len(ds))
	}
	wft := &wfv1.WorkflowTemplate{}
	decodeStrict(t, ds[0], wft)
	if wft.Name != "chartreuse" {
		t.Fatalf("WorkflowTemplate is named %q, want chartreuse", wft.Name)
	}
	return wft
}

type templateGetter map[string]*wfv1.WorkflowTemplate

func (g templateGetter) Get(name string) (*wfv1.WorkflowTemplate, error) {
	if w, ok := g[name]; ok {
		return w.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Group: "argoproj.io", Resource: "workflowtemplates"}, name)
}

// TestArgoLint runs Argo's own validation on the WorkflowTemplate: lint mode (what
// `argo lint --offline` does) and the stricter mode the Argo server applies on create.
func TestArgoLint(t *testing.T) {
	wft := argoTemplate(t)
	getter := templateGetter{wft.Name: wft}
	for _, opts := range []validate.ValidateOpts{{Lint: true}, {}} {
		if err := validate.ValidateWorkflowTemplate(getter, &templateresolution.NullClusterWorkflowTemplateGetter{}, wft.DeepCopy(), nil, opts); err != nil {
			t.Errorf("ValidateWorkflowTemplate(%+v): %v", opts, err)
		}
	}
}

// TestArgoEntrypoints validates, as a submitted Workflow, the full run and each phase
// run alone (`argo submit --from workflowtemplate/chartreuse --entrypoint <phase>`).
func TestArgoEntrypoints(t *testing.T) {
	wft := argoTemplate(t)
	getter := templateGetter{wft.Name: wft}
	have := map[string]bool{}
	for _, tmpl := range wft.Spec.Templates {
		have[tmpl.Name] = true
	}
	entrypoints := []string{"main"}
	for ep := range phaseEntrypoints {
		entrypoints = append(entrypoints, ep)
	}
	sort.Strings(entrypoints)
	for _, ep := range entrypoints {
		t.Run(ep, func(t *testing.T) {
			if !have[ep] {
				t.Fatalf("no template %q", ep)
			}
			wf := submittedWorkflow(wft.Name, ep, phaseEntrypoints[ep])
			if err := validate.ValidateWorkflow(getter, &templateresolution.NullClusterWorkflowTemplateGetter{}, wf, nil, validate.ValidateOpts{Submit: true}); err != nil {
				t.Errorf("submit --entrypoint %s: %v", ep, err)
			}
		})
	}
}

// submittedWorkflow is what `argo submit --from workflowtemplate/<name> --entrypoint ep
// -p database-secret=app-db [-p k=v]...` creates.
func submittedWorkflow(template, ep string, extra map[string]string) *wfv1.Workflow {
	params := []wfv1.Parameter{{Name: "database-secret", Value: wfv1.AnyStringPtr("app-db")}}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		params = append(params, wfv1.Parameter{Name: k, Value: wfv1.AnyStringPtr(extra[k])})
	}
	return &wfv1.Workflow{
		TypeMeta:   metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: fmt.Sprintf("%s-%s-", template, ep)},
		Spec: wfv1.WorkflowSpec{
			WorkflowTemplateRef: &wfv1.WorkflowTemplateRef{Name: template},
			Entrypoint:          ep,
			Arguments:           wfv1.Arguments{Parameters: params},
		},
	}
}
