// Package helmwait is the waiter of the Helm chart's hook (charts/chartreuse, issue 16):
// it creates the run the release's values describe — the Workflow or PipelineRun in the
// ConfigMap <release>-chartreuse-run — under a name fixed by the release's revision, and
// follows it until it ends, logging each step as it starts and ends. The binary
// steps/helm-wait runs it (Spec) in the chart's hook Job (charts/chartreuse/README.md,
// "Hooks").
//
// A rerun of the same revision (the hook Job's pod restarted or retried) finds the run
// it created before and follows that one: one revision never starts two migrations.
// The waiter never stops or deletes a run: a run ends by its steps' own timeouts.
package helmwait

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/kube"
)

// Label on the run: the Helm revision it was created for.
const RevisionLabel = "chartreuse.io/helm-revision"

// HookAnnotation on the run: the uid of the hook Job that created it. Helm
// counts revisions from 1 again after `helm uninstall`, and the runs an earlier
// install created stay behind, so a name and a revision label are not enough
// to tell this install's run from an earlier one's.
const HookAnnotation = "chartreuse.io/hook-job-uid"

// Run is a run to create: a Workflow or a PipelineRun, as rendered by the chart.
type Run struct {
	obj *unstructured.Unstructured
	gvr schema.GroupVersionResource
}

// Parse reads the chart's run.yaml: an argoproj.io/v1alpha1 Workflow or a
// tekton.dev/v1 PipelineRun with a generateName.
func Parse(runYAML []byte) (*Run, error) {
	m := map[string]any{}
	if err := yaml.Unmarshal(runYAML, &m); err != nil {
		return nil, failure.Permanentf("the run is not YAML: %v; check the ConfigMap <release>-chartreuse-run", err)
	}
	u := &unstructured.Unstructured{Object: m}
	r := &Run{obj: u}
	switch u.GroupVersionKind() {
	case schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Workflow"}:
		r.gvr = kube.Workflows
	case schema.GroupVersionKind{Group: "tekton.dev", Version: "v1", Kind: "PipelineRun"}:
		r.gvr = kube.PipelineRuns
	default:
		return nil, failure.Permanentf("the run is a %s %s, want an argoproj.io/v1alpha1 Workflow or a tekton.dev/v1 PipelineRun", u.GetAPIVersion(), u.GetKind())
	}
	if u.GetGenerateName() == "" {
		return nil, failure.Permanentf("the run has no metadata.generateName to name it after")
	}
	return r, nil
}

// Name is the run's name for a revision of the release: its generateName and the
// revision, e.g. shop-chartreuse-7.
func (r *Run) Name(revision int) string {
	return r.obj.GetGenerateName() + strconv.Itoa(revision)
}

// Kind is Workflow or PipelineRun.
func (r *Run) Kind() string { return r.obj.GetKind() }

// Result is how a run ended.
type Result struct {
	Name      string
	Succeeded bool
	Phase     string // Argo's phase, or Tekton's Succeeded condition's reason
	Message   string
	Created   bool // false: the run existed already (a rerun of the same revision)
	// FailedSteps are the steps (Argo's pod nodes, Tekton's TaskRuns) that failed,
	// each as "name: message".
	FailedSteps []string
}

// Waiter creates runs and follows them.
type Waiter struct {
	Client    dynamic.Interface
	Namespace string
	Log       *slog.Logger
	// HookUID is the uid of the hook Job this runs in, recorded on the run
	// (HookAnnotation); an existing run of the same name is followed only if
	// it carries the same. Empty: not recorded, not checked.
	HookUID string
}

// CreateAndWait creates the run for revision (or finds the one created for it
// before) and waits until it ends. A run that ends failed is a permanent error naming
// it and its message; API errors are transient (a rerun follows the same run).
func (w *Waiter) CreateAndWait(ctx context.Context, r *Run, revision int) (Result, error) {
	name := r.Name(revision)
	res := Result{Name: name}
	ri := w.Client.Resource(r.gvr).Namespace(w.Namespace)
	obj := r.obj.DeepCopy()
	obj.SetGenerateName("")
	obj.SetName(name)
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[RevisionLabel] = strconv.Itoa(revision)
	obj.SetLabels(labels)
	if w.HookUID != "" {
		ann := obj.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		ann[HookAnnotation] = w.HookUID
		obj.SetAnnotations(ann)
	}

	_, err := ri.Create(ctx, obj, metav1.CreateOptions{FieldManager: "chartreuse-helm-wait"})
	switch {
	case err == nil:
		res.Created = true
		w.Log.Info("created the run", "kind", r.Kind(), "name", name, "namespace", w.Namespace)
	case apierrors.IsAlreadyExists(err):
		existing, gerr := ri.Get(ctx, name, metav1.GetOptions{})
		if gerr != nil {
			return res, failure.Transientf("%s %s exists but cannot be read: %w", r.Kind(), name, gerr)
		}
		if got := existing.GetLabels()[RevisionLabel]; got != strconv.Itoa(revision) {
			return res, failure.Permanentf("%s %s exists and was not created for revision %d (its %s label is %q); delete it or rename the release", r.Kind(), name, revision, RevisionLabel, got)
		}
		if got := existing.GetAnnotations()[HookAnnotation]; w.HookUID != "" && got != w.HookUID {
			// An earlier install of a release of this name (Helm counts from 1
			// again after an uninstall): following its run would report this
			// install's migration done without running it.
			return res, failure.Permanentf("%s %s exists but another hook Job created it (%s %q, this hook Job's is %q): it is the run of an earlier install of a release of this name, so it is not followed and nothing was created; delete it (kubectl delete %s -n %s %s) and install or upgrade again",
				r.Kind(), name, HookAnnotation, got, w.HookUID, r.gvr.Resource, w.Namespace, name)
		}
		w.Log.Info("following the run created for this revision before", "kind", r.Kind(), "name", name, "namespace", w.Namespace)
	case apierrors.IsForbidden(err), apierrors.IsInvalid(err), apierrors.IsNotFound(err):
		return res, failure.Permanentf("creating %s %s: %w", r.Kind(), name, err)
	default:
		return res, failure.Transientf("creating %s %s: %w", r.Kind(), name, err)
	}

	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			// A consistent list, not the reflector's resourceVersion "0" (any state
			// the API server's cache holds): that could predate the run just created,
			// which gone below would then take for deleted.
			o.ResourceVersion = ""
			return ri.List(ctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return ri.Watch(ctx, o)
		},
	}
	f := &follower{w: w, gvr: r.gvr, name: name, ctx: ctx, started: map[string]bool{}, ended: map[string]bool{}}
	deleted := false
	// Gone before the first list (deleted right after its creation): no event would come.
	gone := func(store cache.Store) (bool, error) {
		if _, exists, _ := store.GetByKey(w.Namespace + "/" + name); !exists {
			deleted = true
			return false, fmt.Errorf("%s %s was deleted before it ended", r.Kind(), name)
		}
		return false, nil
	}
	_, err = watchtools.UntilWithSync(ctx, lw, &unstructured.Unstructured{}, gone, func(ev watch.Event) (bool, error) {
		if ev.Type == watch.Deleted {
			deleted = true
			return false, fmt.Errorf("%s %s was deleted before it ended", r.Kind(), name)
		}
		u, ok := ev.Object.(*unstructured.Unstructured)
		if !ok {
			return false, nil
		}
		done, ok, phase, msg := ended(r.gvr, u)
		f.observe(u, phase, msg, done)
		if done {
			res.Succeeded, res.Phase, res.Message = ok, phase, msg
			res.FailedSteps = f.failed
		}
		return done, nil
	})
	if deleted {
		return res, failure.AsPermanent(err)
	}
	if err != nil {
		return res, failure.Transientf("following %s %s: %w", r.Kind(), name, err)
	}
	if !res.Succeeded {
		steps := ""
		if len(res.FailedSteps) > 0 {
			steps = "; failed: " + strings.Join(res.FailedSteps, "; ")
		}
		return res, failure.Permanentf("%s %s ended %s: %s%s (details: %s)", r.Kind(), name, res.Phase, res.Message, steps, detailsCommand(r.gvr, w.Namespace, name))
	}
	return res, nil
}

// ended reads a run's status: whether it ended, whether it succeeded, its phase and
// message.
func ended(gvr schema.GroupVersionResource, u *unstructured.Unstructured) (done, ok bool, phase, msg string) {
	if gvr == kube.Workflows {
		phase, _, _ = unstructured.NestedString(u.Object, "status", "phase")
		msg, _, _ = unstructured.NestedString(u.Object, "status", "message")
		switch phase {
		case "Succeeded":
			return true, true, phase, msg
		case "Failed", "Error":
			return true, false, phase, msg
		}
		if phase == "" {
			phase = "Pending"
		}
		return false, false, phase, msg
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] != "Succeeded" {
			continue
		}
		reason, _ := m["reason"].(string)
		msg, _ = m["message"].(string)
		switch m["status"] {
		case "True":
			return true, true, reason, msg
		case "False":
			return true, false, reason, msg
		}
		return false, false, reason, msg
	}
	return false, false, "Pending", ""
}

func detailsCommand(gvr schema.GroupVersionResource, ns, name string) string {
	if gvr == kube.Workflows {
		return fmt.Sprintf("argo get -n %s %s", ns, name)
	}
	return fmt.Sprintf("tkn pipelinerun describe -n %s %s", ns, name)
}

// CheckDeclared reads the WorkflowTemplate or Pipeline the run refers to, as installed
// in the namespace, and refuses (permanently, naming them) the parameters the run
// sets that it does not declare. In the hook's pre-upgrade mode the installed one is
// still the previous release's, which may predate a parameter of this chart version.
func (w *Waiter) CheckDeclared(ctx context.Context, r *Run) error {
	var defGVR schema.GroupVersionResource
	var defKind, ref string
	var runParams []any
	if r.gvr == kube.Workflows {
		defGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflowtemplates"}
		defKind = "WorkflowTemplate"
		ref, _, _ = unstructured.NestedString(r.obj.Object, "spec", "workflowTemplateRef", "name")
		runParams, _, _ = unstructured.NestedSlice(r.obj.Object, "spec", "arguments", "parameters")
	} else {
		defGVR = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelines"}
		defKind = "Pipeline"
		ref, _, _ = unstructured.NestedString(r.obj.Object, "spec", "pipelineRef", "name")
		runParams, _, _ = unstructured.NestedSlice(r.obj.Object, "spec", "params")
	}
	if ref == "" {
		return failure.Permanentf("the %s names no %s to run (spec.%s)", r.Kind(), defKind, map[bool]string{true: "workflowTemplateRef.name", false: "pipelineRef.name"}[r.gvr == kube.Workflows])
	}
	def, err := w.Client.Resource(defGVR).Namespace(w.Namespace).Get(ctx, ref, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return failure.Permanentf("%s %s is not installed in namespace %s: install the chart's manifests there (installManifests: true in one release of the namespace)", defKind, ref, w.Namespace)
	case err != nil:
		return failure.Transientf("reading %s %s: %w", defKind, ref, err)
	}
	var declared []any
	if r.gvr == kube.Workflows {
		declared, _, _ = unstructured.NestedSlice(def.Object, "spec", "arguments", "parameters")
	} else {
		declared, _, _ = unstructured.NestedSlice(def.Object, "spec", "params")
	}
	names := map[string]bool{}
	for _, p := range declared {
		if m, ok := p.(map[string]any); ok {
			n, _ := m["name"].(string)
			names[n] = true
		}
	}
	var missing []string
	for _, p := range runParams {
		if m, ok := p.(map[string]any); ok {
			if n, _ := m["name"].(string); !names[n] {
				missing = append(missing, n)
			}
		}
	}
	if len(missing) > 0 {
		return failure.Permanentf("the installed %s %s does not declare the parameter(s) %s that this chart version sets (it is an earlier release's); run this upgrade once with the hook after the deployment (post-upgrade), or apply the new manifests first",
			defKind, ref, strings.Join(missing, ", "))
	}
	return nil
}
