package manifests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	triggersv1beta1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/waitfor"
)

const fieldManager = "chartreuse-test-manifests"

// crdSources are the pinned engines' CRDs, from the module cache: module, then files
// (globs) inside it.
var crdSources = []struct {
	module string
	globs  []string
}{
	// The "full" Argo CRDs carry the complete OpenAPI schema, so the API server checks
	// every field of the WorkflowTemplate and the Workflows.
	{"github.com/argoproj/argo-workflows/v3", []string{
		"manifests/base/crds/full/argoproj.io_workflowtemplates.yaml",
		"manifests/base/crds/full/argoproj.io_workflows.yaml",
		"manifests/base/crds/full/argoproj.io_workflowtaskresults.yaml",
	}},
	{"github.com/tektoncd/pipeline", []string{"config/300-crds/300-*.yaml"}},
	{"github.com/tektoncd/triggers", []string{"config/300-*.yaml"}},
}

// TestServerSideDryRun applies every manifest with a server-side dry run on the real
// kube-apiserver of the test environment, with the pinned Argo Workflows, Tekton
// Pipelines and Tekton Triggers CRDs installed, and strict field validation. It also
// creates (dry run) the Workflow that `argo submit --from` makes for each entrypoint
// and the PipelineRuns the TriggerTemplate makes.
func TestServerSideDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("server-side dry run needs the Kubernetes test environment")
	}
	env := kubeenv.Shared(t)
	dyn, mapper := clients(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	installCRDs(ctx, t, dyn)
	ns := env.NewNamespace(t)

	var objs []*unstructured.Unstructured
	var names []string
	for _, d := range loadDocs(t) {
		objs = append(objs, d.Obj.DeepCopy())
		names = append(names, d.String())
	}
	wft := argoTemplate(t)
	for _, ep := range append([]string{"main"}, sortedKeys(phaseEntrypoints)...) {
		u := toUnstructured(t, submittedWorkflow(wft.Name, ep, phaseEntrypoints[ep]))
		objs = append(objs, u)
		names = append(names, "Workflow for --entrypoint "+ep)
	}
	for _, d := range docsOfKind(loadDocs(t), "triggers.tekton.dev/v1beta1", "TriggerTemplate") {
		tt := &triggersv1beta1.TriggerTemplate{}
		decodeStrict(t, d, tt)
		for _, pr := range triggerTemplatePipelineRuns(t, tt) {
			u := toUnstructured(t, pr)
			u.SetAPIVersion("tekton.dev/v1")
			u.SetKind("PipelineRun")
			objs = append(objs, u)
			names = append(names, "PipelineRun from TriggerTemplate "+tt.Name)
		}
	}

	for i, u := range objs {
		t.Run(names[i], func(t *testing.T) {
			if err := dryRun(ctx, dyn, mapper, ns, u); err != nil {
				t.Errorf("%s: server-side dry run: %v", names[i], err)
			}
		})
	}
}

func toUnstructured(t testing.TB, o any) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u
}

// dryRun applies u in namespace ns (server-side apply, dry run, strict field
// validation); objects with only generateName are created (dry run) instead, as
// kubectl create / argo submit / the EventListener do.
func dryRun(ctx context.Context, dyn dynamic.Interface, mapper meta.RESTMapper, ns string, u *unstructured.Unstructured) error {
	gvk := u.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("mapping %s: %w", gvk, err)
	}
	var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		u.SetNamespace(ns)
		ri = dyn.Resource(m.Resource).Namespace(ns)
	} else if subjects, ok, _ := unstructured.NestedSlice(u.Object, "subjects"); ok {
		// A cluster-scoped binding names its ServiceAccount's namespace (kustomize sets it).
		for _, s := range subjects {
			if sm, ok := s.(map[string]any); ok && sm["kind"] == "ServiceAccount" {
				sm["namespace"] = ns
			}
		}
		_ = unstructured.SetNestedSlice(u.Object, subjects, "subjects")
	}
	if u.GetName() == "" {
		_, err = ri.Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: fieldManager, FieldValidation: "Strict"})
		return err
	}
	body, err := json.Marshal(u)
	if err != nil {
		return err
	}
	force := true
	_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
		DryRun: []string{metav1.DryRunAll}, FieldManager: fieldManager, Force: &force, FieldValidation: "Strict",
	})
	return err
}

// clients are a dynamic client of env's cluster and a REST mapper that reads
// its discovery on first use (after installCRDs).
func clients(t testing.TB, env *kubeenv.Env) (dynamic.Interface, meta.RESTMapper) {
	t.Helper()
	cfg, err := env.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return dyn, restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCRDs creates the engines' CRDs that the environment does not have yet (an
// environment running the real controllers already has them; they are left as they
// are) and waits until they are established.
func installCRDs(ctx context.Context, t testing.TB, dyn dynamic.Interface) {
	t.Helper()
	var files []string
	for _, src := range crdSources {
		dir := moduleDir(t, src.module)
		for _, g := range src.globs {
			m, err := filepath.Glob(filepath.Join(dir, g))
			if err != nil || len(m) == 0 {
				t.Fatalf("no CRDs %s in %s", g, dir)
			}
			files = append(files, m...)
		}
	}
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		parts, err := splitYAML(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range parts {
			j, err := yaml.YAMLToJSON(p)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(j); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if u.GetKind() != "CustomResourceDefinition" {
				continue
			}
			names = append(names, u.GetName())
			_, err = dyn.Resource(crdGVR).Create(ctx, u, metav1.CreateOptions{FieldManager: fieldManager})
			switch {
			case err == nil:
				t.Logf("installed CRD %s (%s)", u.GetName(), filepath.Base(f))
			case apierrors.IsAlreadyExists(err):
			default:
				t.Fatalf("installing CRD %s from %s: %v", u.GetName(), f, err)
			}
		}
	}
	sort.Strings(names)
	var pending string
	var err error
	if werr := waitfor.Until(ctx, 200*time.Millisecond, time.Minute, func() bool {
		for _, n := range names {
			var crd *unstructured.Unstructured
			if crd, err = dyn.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{}); err != nil || !established(crd) {
				pending = n
				return false
			}
		}
		return true
	}); werr != nil {
		t.Fatalf("CRD %s not established after 1m (%v)", pending, err)
	}
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		if cm, ok := c.(map[string]any); ok && cm["type"] == "Established" && cm["status"] == "True" {
			return true
		}
	}
	return false
}

// moduleDir is where the pinned module lies in the module cache.
func moduleDir(t testing.TB, module string) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", module, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatalf("module %s is not in the module cache", module)
	}
	return dir
}
