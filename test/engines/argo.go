package engines

// Argo Workflows on the local test cluster (test/kubeenv), installed the way
// its namespace-install manifests install it:
//
//   - workflow-controller and argoexec are built from the
//     github.com/argoproj/argo-workflows/v3 module pinned in test/tools/argo
//     (build.sh; argoexec from a vendored copy with signal_linux.go restored) and
//     packed into images (/bin/<name>, user 8737 like the release images),
//     imported into the node's containerd;
//   - from the module's manifests/: the minimal CRDs (base/crds/minimal, what the
//     release's install.yaml uses), the controller's ServiceAccount, ConfigMap and
//     Deployment (base/workflow-controller) and its namespaced Role and
//     RoleBinding (namespace-install/workflow-controller-rbac), all in one
//     namespace, with the namespace-install overlay's --namespaced flag. The
//     controller runs as a pod there, watching only that namespace;
//   - changed for this cluster: images are ours with imagePullPolicy Never (the
//     executor's through the ConfigMap's `executor:` block, as the docs say),
//     leader election off (one replica), and DEFAULT_REQUEUE_TIME=1s so steps
//     follow each other within a second or two instead of 10–50 s (Argo's
//     documented minimum; the default 10 s is a throughput/latency trade-off for
//     busy clusters);
//   - what Pod Security "restricted" needs, as a user must set it: the
//     executor's securityContext in the ConfigMap and a seccomp profile for the
//     controller's pod (it runs in the workflows' namespace here);
//   - not installed: argo-server (no UI/API needed: workflows are created with
//     the typed client exactly as `argo submit --from workflowtemplate/...`
//     creates them), the PriorityClass (one node, nothing to pre-empt), no
//     artifact repository (the project's templates use none).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	wfclientset "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	"github.com/argoproj/argo-workflows/v3/workflow/packer"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
)

const (
	// ArgoController is the controller Deployment's name (base/workflow-controller).
	ArgoController = "workflow-controller"
	// ArgoFieldManager owns every field the Argo engine applies (server-side apply).
	ArgoFieldManager = "chartreuse-tests-argo"
	// ArgoTemplate is the project's WorkflowTemplate (workflowtemplates/).
	ArgoTemplate = "chartreuse"
	// ArgoDefaultRequeueTime is the controller's DEFAULT_REQUEUE_TIME here.
	ArgoDefaultRequeueTime = "1s"
	argoModule             = "github.com/argoproj/argo-workflows/v3"
)

// ArgoCommands are the commands build.sh builds and InstallArgo turns into images.
var ArgoCommands = []string{"workflow-controller", "argoexec"}

// ArgoOptions configure InstallArgo.
type ArgoOptions struct {
	// Namespace to install the controller into; it manages only this namespace,
	// where workflows (and the project's WorkflowTemplate) live. Required.
	Namespace string
	// RepoDir is the repository root. Default: $CHARTREUSE_REPO, else found from
	// the working directory.
	RepoDir string
	// BuildDir is what test/tools/argo/build.sh prints (it holds bin/).
	// Default: $CHARTREUSE_ARGO_DIR, else build.sh is run (it builds the first time).
	BuildDir string
	// RequeueTime overrides ArgoDefaultRequeueTime (a Go duration).
	RequeueTime string
	// Logf receives progress lines. Default: discarded.
	Logf func(format string, args ...any)
	// ReadyTimeout bounds the wait for the controller (default 3 minutes).
	ReadyTimeout time.Duration
}

// Argo is Argo Workflows installed on a kubeenv environment, managing one namespace.
type Argo struct {
	Env       *kubeenv.Env
	Namespace string
	Version   string // argo-workflows module version, e.g. v3.7.18
	ModuleDir string // the module's source in the module cache (manifests/ is read from it)
	RepoDir   string
	// Images maps each of ArgoCommands to its image reference.
	Images map[string]string
	// InstallTime is how long InstallArgo took (images, manifests, controller ready).
	InstallTime time.Duration

	cluster   // Kube (kubernetes.Interface), Dynamic (dynamic.Interface)
	Workflows wfclientset.Interface

	logf func(string, ...any)
}

// InstallArgo installs Argo Workflows into opts.Namespace of env and returns when
// the controller pod is ready. Installing into a namespace where it is installed
// already re-applies the same objects. The CRDs are cluster-wide and shared by
// every install.
func InstallArgo(ctx context.Context, env *kubeenv.Env, opts ArgoOptions) (*Argo, error) {
	if opts.Namespace == "" {
		return nil, errors.New("InstallArgo: no namespace")
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	repo, err := findRepo(opts.RepoDir)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	a := &Argo{Env: env, Namespace: opts.Namespace, RepoDir: repo, logf: logf, Images: map[string]string{}}
	toolsDir := filepath.Join(repo, "test", "tools", "argo")
	if a.Version, err = requiredVersion(filepath.Join(toolsDir, "go.mod"), argoModule); err != nil {
		return nil, err
	}
	if a.ModuleDir, err = moduleDir(ctx, toolsDir, argoModule+"@"+a.Version); err != nil {
		return nil, err
	}
	if err := a.clients(); err != nil {
		return nil, err
	}
	buildDir := opts.BuildDir
	if buildDir == "" {
		buildDir = os.Getenv("CHARTREUSE_ARGO_DIR")
	}
	if buildDir == "" {
		if buildDir, err = ArgoBuild(ctx, repo, logf); err != nil {
			return nil, err
		}
	}
	if err := a.loadImages(ctx, filepath.Join(buildDir, "bin")); err != nil {
		return nil, err
	}
	logf("argo: images ready after %s", time.Since(start).Round(100*time.Millisecond))
	requeue := opts.RequeueTime
	if requeue == "" {
		requeue = ArgoDefaultRequeueTime
	}
	if err := a.applyInstall(ctx, requeue); err != nil {
		return nil, err
	}
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	if err := a.waitController(ctx, timeout); err != nil {
		return nil, err
	}
	a.InstallTime = time.Since(start)
	logf("argo: Argo Workflows %s installed in namespace %s in %s", a.Version, a.Namespace, a.InstallTime.Round(100*time.Millisecond))
	return a, nil
}

func (a *Argo) clients() error {
	c, cfg, err := newCluster(a.Env)
	if err != nil {
		return err
	}
	a.cluster = c
	a.Workflows, err = wfclientset.NewForConfig(cfg)
	return err
}

// ArgoImageRef is the image reference of one of ArgoCommands.
func ArgoImageRef(cmd, version string) string {
	return "chartreuse.local/argo-" + cmd + ":" + version
}

// loadImages packs each command as /bin/<name> (its entrypoint; the controller
// runs "argoexec" from PATH in the executor's init and wait containers) and
// imports the images not yet present.
func (a *Argo) loadImages(ctx context.Context, binDir string) error {
	return loadCommandImages(ctx, a.Env, binDir, commandImages{
		engine: "argo", cmds: ArgoCommands, version: a.Version, ref: ArgoImageRef,
		dir: "/bin/", user: "8737", source: "https://" + strings.TrimSuffix(argoModule, "/v3"),
	}, a.Images)
}

// argoControllerConfig is the workflow-controller-configmap's data: the executor
// image is only on the node (the --executor-image flag sets the image, this its
// pull policy), and its init and wait containers get the securityContext Pod
// Security "restricted" requires (Argo gives them none of their own; the
// workflow's pod-level securityContext covers the user and seccomp, but not
// allowPrivilegeEscalation and capabilities, which are per container).
// docs/operations.md tells users the same.
var argoControllerConfig = map[string]any{
	"executor": `imagePullPolicy: Never
securityContext:
  runAsNonRoot: true
  allowPrivilegeEscalation: false
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
`,
}

func (a *Argo) applyInstall(ctx context.Context, requeue string) error {
	m := filepath.Join(a.ModuleDir, "manifests")
	crds, err := filepath.Glob(filepath.Join(m, "base", "crds", "minimal", "argoproj.io_*.yaml"))
	if err != nil || len(crds) == 0 {
		return fmt.Errorf("argo: no CRDs in %s (%v)", m, err)
	}
	if err := a.applyFiles(ctx, crds, "", ArgoFieldManager, nil); err != nil {
		return err
	}
	if err := a.waitCRDs(ctx, "argo", crds); err != nil {
		return err
	}
	a.mapper.Reset()
	files := []string{
		filepath.Join(m, "base", "workflow-controller", "workflow-controller-sa.yaml"),
		filepath.Join(m, "base", "workflow-controller", "workflow-controller-configmap.yaml"),
		filepath.Join(m, "namespace-install", "workflow-controller-rbac", "workflow-controller-role.yaml"),
		filepath.Join(m, "namespace-install", "workflow-controller-rbac", "workflow-controller-rolebinding.yaml"),
		filepath.Join(m, "base", "workflow-controller", "workflow-controller-deployment.yaml"),
	}
	return a.applyFiles(ctx, files, a.Namespace, ArgoFieldManager, func(u *unstructured.Unstructured) (bool, error) {
		return true, a.edit(u, requeue)
	})
}

// edit changes the install's objects for this cluster.
func (a *Argo) edit(u *unstructured.Unstructured, requeue string) error {
	switch u.GetKind() {
	case "ConfigMap":
		return unstructured.SetNestedField(u.Object, argoControllerConfig, "data")
	case "RoleBinding":
		// namespace-install's binding names the ServiceAccount without a
		// namespace (kustomize adds it); name it here.
		subjects, _, _ := unstructured.NestedSlice(u.Object, "subjects")
		for i := range subjects {
			s := subjects[i].(map[string]any)
			if s["kind"] == "ServiceAccount" {
				s["namespace"] = a.Namespace
			}
		}
		return unstructured.SetNestedSlice(u.Object, subjects, "subjects")
	case "Deployment":
		return a.resolveController(u, requeue)
	}
	return nil
}

// resolveController turns base/workflow-controller's Deployment into the
// namespace-install one for this cluster: our image, the namespaced flags, the
// executor image, no leader election, the requeue time.
func (a *Argo) resolveController(u *unstructured.Unstructured, requeue string) error {
	var d appsv1.Deployment
	if err := runtimeFromUnstructured(u, &d); err != nil {
		return err
	}
	if len(d.Spec.Template.Spec.Containers) != 1 || d.Spec.Template.Spec.Containers[0].Name != ArgoController {
		return fmt.Errorf("argo: workflow-controller-deployment.yaml changed shape: want one container %q", ArgoController)
	}
	d.Spec.Template.Spec.PriorityClassName = ""
	// The release's pod runs as non-root but names no seccomp profile, which
	// Pod Security "restricted" requires: a namespace-install into a restricted
	// namespace must add it.
	if d.Spec.Template.Spec.SecurityContext == nil {
		d.Spec.Template.Spec.SecurityContext = &corev1.PodSecurityContext{}
	}
	d.Spec.Template.Spec.SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	c := &d.Spec.Template.Spec.Containers[0]
	c.Image = a.Images["workflow-controller"]
	c.ImagePullPolicy = corev1.PullNever
	c.Args = append(c.Args,
		"--namespaced",
		"--managed-namespace", a.Namespace,
		"--executor-image", a.Images["argoexec"],
		"--executor-image-pull-policy", "Never",
		"--workflow-workers", "8",
	)
	c.Env = append(c.Env,
		corev1.EnvVar{Name: "LEADER_ELECTION_DISABLE", Value: "true"},
		corev1.EnvVar{Name: "DEFAULT_REQUEUE_TIME", Value: requeue},
	)
	c.Resources = corev1.ResourceRequirements{} // none in the release either
	obj, err := runtimeToUnstructured(&d)
	if err != nil {
		return err
	}
	obj.SetAPIVersion("apps/v1")
	obj.SetKind("Deployment")
	unstructured.RemoveNestedField(obj.Object, "status")
	unstructured.RemoveNestedField(obj.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(obj.Object, "spec", "template", "metadata", "creationTimestamp")
	u.Object = obj.Object
	return nil
}

// argoController is the workflow-controller Deployment of the managed namespace.
func (a *Argo) argoController() controller {
	return controller{engine: "argo", namespace: a.Namespace, name: ArgoController, selector: "app=workflow-controller"}
}

// waitController waits until the controller Deployment has rolled out and its
// pod is ready.
func (a *Argo) waitController(ctx context.Context, timeout time.Duration) error {
	return a.cluster.waitController(ctx, a.argoController(), timeout)
}

// ControllerLog returns the last lines of the controller's log.
func (a *Argo) ControllerLog(ctx context.Context, lines int64) string {
	return a.controllerLog(ctx, a.argoController(), lines)
}

// ControllerLogAbout returns the last max lines of the workflow-controller's
// log that mention the workflow name.
func (a *Argo) ControllerLogAbout(ctx context.Context, name string, max int) string {
	return a.controllerLogAbout(ctx, a.argoController(), name, max)
}

// Metrics returns the controller's Prometheus metrics (the text exposition),
// read through the API server's pod proxy: the controller serves them on port
// 9090 with a self-signed certificate by default (metricsConfig.secure), plain
// HTTP when that is turned off.
func (a *Argo) Metrics(ctx context.Context) (string, error) {
	ctl := a.argoController()
	pods, err := a.Kube.CoreV1().Pods(ctl.namespace).List(ctx, metav1.ListOptions{LabelSelector: ctl.selector})
	if err != nil {
		return "", err
	}
	if len(pods.Items) == 0 {
		return "", fmt.Errorf("argo: no controller pod (%s) in %s", ctl.selector, ctl.namespace)
	}
	var errs []error
	for _, scheme := range []string{"https", "http"} {
		raw, err := a.Kube.CoreV1().Pods(ctl.namespace).ProxyGet(scheme, pods.Items[0].Name, "9090", "/metrics", nil).DoRaw(ctx)
		if err == nil {
			return string(raw), nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", scheme, err))
	}
	return "", fmt.Errorf("argo: reading the controller's metrics: %w", errors.Join(errs...))
}

// ApplyProject applies the project's workflowtemplates/ kustomization into the
// managed namespace exactly as its README tells a user to:
// `kubectl apply -n <ns> -k workflowtemplates/` (server-side).
func (a *Argo) ApplyProject(ctx context.Context) error {
	dir := filepath.Join(a.RepoDir, "workflowtemplates")
	out, err := a.kubectlApply(ctx, ArgoFieldManager, "-n", a.Namespace, "-k", dir)
	if err != nil {
		return fmt.Errorf("kubectl apply --server-side -n %s -k workflowtemplates/: %w\n%s", a.Namespace, err, out)
	}
	a.logf("argo: applied workflowtemplates/ into %s:\n%s", a.Namespace, bytes.TrimSpace(out))
	return nil
}

// Apply server-side-applies one object (field manager ArgoFieldManager, forced),
// namespaced kinds into ns unless ns is "".
func (a *Argo) Apply(ctx context.Context, o *unstructured.Unstructured, ns string) error {
	return a.apply(ctx, o, ns, ArgoFieldManager)
}

func runtimeFromUnstructured(u *unstructured.Unstructured, into any) error {
	b, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}

func runtimeToUnstructured(v any) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &unstructured.Unstructured{Object: m}, nil
}

var argoBuildMu sync.Mutex

// ArgoBuild runs test/tools/argo/build.sh (a no-op once built) and returns the
// directory it prints.
func ArgoBuild(ctx context.Context, repo string, logf func(string, ...any)) (string, error) {
	return runBuildScript(ctx, &argoBuildMu, filepath.Join(repo, "test", "tools", "argo", "build.sh"), "test/tools/argo/build.sh", logf)
}

// ---------------------------------------------------------------- workflows

// ArgoRun describes a workflow submitted from the project's WorkflowTemplate.
type ArgoRun struct {
	Entrypoint string            // "" = the template's (main)
	Params     map[string]string // -p name=value
	Labels     map[string]string
}

// Submit creates a Workflow from the WorkflowTemplate exactly as
// `argo submit -n <ns> --from workflowtemplate/chartreuse [--entrypoint e] -p ...`
// does: generateName "chartreuse-", the workflow-template label,
// spec.workflowTemplateRef, spec.entrypoint and spec.arguments.parameters.
func (a *Argo) Submit(ctx context.Context, r ArgoRun) (*wfv1.Workflow, error) {
	wf := &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: ArgoTemplate + "-",
			Namespace:    a.Namespace,
			Labels:       map[string]string{"workflows.argoproj.io/workflow-template": ArgoTemplate},
		},
		Spec: wfv1.WorkflowSpec{
			WorkflowTemplateRef: &wfv1.WorkflowTemplateRef{Name: ArgoTemplate},
			Entrypoint:          r.Entrypoint,
		},
	}
	for k, v := range r.Labels {
		wf.Labels[k] = v
	}
	names := make([]string, 0, len(r.Params))
	for n := range r.Params {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		wf.Spec.Arguments.Parameters = append(wf.Spec.Arguments.Parameters, wfv1.Parameter{Name: n, Value: wfv1.AnyStringPtr(r.Params[n])})
	}
	return a.Workflows.ArgoprojV1alpha1().Workflows(a.Namespace).Create(ctx, wf, metav1.CreateOptions{})
}

// Get reads a workflow.
// The controller stores a workflow's nodes compressed once it passes 1 MiB
// (status.compressedNodes); Get returns them uncompressed.
func (a *Argo) Get(ctx context.Context, name string) (*wfv1.Workflow, error) {
	wf, err := a.Workflows.ArgoprojV1alpha1().Workflows(a.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if err := packer.DecompressWorkflow(wf); err != nil {
		return nil, fmt.Errorf("workflow %s: its compressed nodes: %w", name, err)
	}
	return wf, nil
}

// ArgoSize is a workflow object's size as the API server holds it (JSON).
type ArgoSize struct {
	Total int
	// Templates is the part that does not grow with the run: the copies of the
	// WorkflowTemplate the controller keeps in the status, and the spec, but
	// for the run's arguments (in both the spec and the stored copy).
	Templates int
	// Compressed: the controller had to compress the nodes to fit; Argo fails
	// a workflow whose object stays over 1 MiB compressed.
	Compressed bool
}

// StoredSize measures the workflow object as stored.
func (a *Argo) StoredSize(ctx context.Context, name string) (ArgoSize, error) {
	wf, err := a.Workflows.ArgoprojV1alpha1().Workflows(a.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return ArgoSize{}, err
	}
	size := func(v any) int {
		raw, _ := json.Marshal(v)
		return len(raw)
	}
	return ArgoSize{
		Total:      size(wf),
		Templates:  size(wf.Spec) + size(wf.Status.StoredTemplates) + size(wf.Status.StoredWorkflowSpec) - 2*size(wf.Spec.Arguments),
		Compressed: wf.Status.CompressedNodes != "",
	}, nil
}

// quietBeforeNudge is how long Wait lets an unfinished workflow go unchanged
// before it makes the controller look at it again.
const quietBeforeNudge = 2 * time.Minute

// Wait polls the workflow until it has completed (Succeeded, Failed or Error)
// and returns it. onChange, when not nil, sees every new resourceVersion.
//
// An unfinished workflow that has not changed for quietBeforeNudge gets its
// annotation changed (see nudge), and the log says so: Argo v3.7 can lose the
// update an argo retry or argo stop made (ci on 4e2aeca: a retried run still
// Running 20 minutes later at the retry's resourceVersion, no pod made).
// Changing an annotation costs a running workflow one more reconciliation.
func (a *Argo) Wait(ctx context.Context, name string, onChange func(*wfv1.Workflow)) (*wfv1.Workflow, error) {
	var rv string
	changed := time.Now()
	for {
		wf, err := a.Get(ctx, name)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		if err == nil {
			if wf.ResourceVersion != rv {
				if onChange != nil {
					onChange(wf)
				}
				changed = time.Now()
			}
			rv = wf.ResourceVersion
			if wf.Status.Phase.Completed() && wf.Status.FinishedAt.Time.After(time.Time{}) {
				return wf, nil
			}
			if time.Since(changed) > quietBeforeNudge {
				if err := a.nudge(ctx, wf, fmt.Sprintf("unchanged for %s while %s", quietBeforeNudge, wf.Status.Phase)); err != nil {
					return nil, err
				}
				changed = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			if wf != nil {
				// spec.shutdown and the resourceVersion tell a stop the controller
				// never acted on from one it acted on without effect.
				return wf, fmt.Errorf("workflow %s still %s (spec.shutdown %q, resourceVersion %s): %w\n%s",
					name, wf.Status.Phase, wf.Spec.Shutdown, wf.ResourceVersion, ctx.Err(), ArgoDescribe(wf))
			}
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// nudge changes an annotation of wf so that the controller reads it afresh, as
// docs/troubleshooting.md tells users to. Argo v3.7 writes each workflow it
// saved back into its informer's cache (INFORMER_WRITE_BACK, on by default)
// without comparing versions: an update that reached the cache just before is
// overwritten by the older copy, and the controller does not act on it until
// the object changes again.
func (a *Argo) nudge(ctx context.Context, wf *wfv1.Workflow, why string) error {
	a.logf("argo: %s (resourceVersion %s) %s: changing an annotation so that the controller reads it again", wf.Name, wf.ResourceVersion, why)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{"chartreuse.io/test-nudge":%q}}}`, time.Now().Format(time.RFC3339Nano))
	_, err := a.Workflows.ArgoprojV1alpha1().Workflows(a.Namespace).Patch(ctx, wf.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// Stop does what `argo stop` does: it sets spec.shutdown=Stop on the workflow.
// The controller stops its running pods, starts no new step, and runs the exit
// handler (where it retries nothing).
func (a *Argo) Stop(ctx context.Context, name string) error {
	_, err := a.Workflows.ArgoprojV1alpha1().Workflows(a.Namespace).Patch(ctx, name, types.MergePatchType,
		[]byte(`{"spec":{"shutdown":"Stop"}}`), metav1.PatchOptions{})
	if err != nil {
		return err
	}
	return a.StopSeen(ctx, name)
}

// stopUnseenAfter is how long StopSeen gives the controller to take a stop in.
const stopUnseenAfter = time.Minute

// StopSeen waits until the controller has taken in the workflow's stop (it
// copies spec.shutdown into status.storedWorkflowSpec) or the workflow has
// ended. Each minute without it, it nudges the workflow (ci20a and ci21a: a
// stopped run still Running 15 minutes later, processed at the
// resourceVersion before the stop).
func (a *Argo) StopSeen(ctx context.Context, name string) error {
	deadline := time.Now().Add(stopUnseenAfter)
	for {
		wf, err := a.Get(ctx, name)
		if err != nil {
			return err
		}
		if wf.Status.Phase.Completed() || (wf.Status.StoredWorkflowSpec != nil && wf.Status.StoredWorkflowSpec.Shutdown == wf.Spec.Shutdown) {
			return nil
		}
		if time.Now().After(deadline) {
			if err := a.nudge(ctx, wf, fmt.Sprintf("stop not taken in by the controller after %s", stopUnseenAfter)); err != nil {
				return err
			}
			deadline = time.Now().Add(stopUnseenAfter)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the controller never took in the stop of %s: %w", name, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// NodePods returns the pods of wf's nodes whose display name is display or one
// of its attempts ("<display>(0)", ...), oldest first.
func (a *Argo) NodePods(ctx context.Context, wf string, display string) ([]corev1.Pod, error) {
	pods, err := a.Kube.CoreV1().Pods(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "workflows.argoproj.io/workflow=" + wf})
	if err != nil {
		return nil, err
	}
	re := regexp.MustCompile(`\.` + regexp.QuoteMeta(display) + `(\(\d+\))?$`)
	var out []corev1.Pod
	for _, p := range pods.Items {
		if re.MatchString(p.Annotations["workflows.argoproj.io/node-name"]) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreationTimestamp.Before(&out[j].CreationTimestamp) })
	return out, nil
}

// ArgoNode is one node of a completed workflow, by display name.
type ArgoNode struct {
	ID           string // the node ID (a pod's workflows.argoproj.io/node-id)
	Name         string // display name, e.g. "migrate", "migrate(0)", "restore"
	Template     string
	Type         wfv1.NodeType
	Phase        wfv1.NodePhase
	Message      string
	ExitCode     string
	Started      time.Time
	Finished     time.Time
	Outputs      map[string]string
	BoundaryName string // the DAG (main, exit-handler) it belongs to
	Children     []string
}

// ArgoNodes lists the nodes of wf in start order.
func ArgoNodes(wf *wfv1.Workflow) []ArgoNode {
	var out []ArgoNode
	for _, n := range wf.Status.Nodes {
		an := ArgoNode{
			ID: n.ID, Name: n.DisplayName, Template: n.TemplateName, Type: n.Type, Phase: n.Phase,
			Message: n.Message, Started: n.StartedAt.Time, Finished: n.FinishedAt.Time,
			Outputs: map[string]string{},
		}
		if b, ok := wf.Status.Nodes[n.BoundaryID]; ok {
			an.BoundaryName = b.DisplayName
		}
		for _, c := range n.Children {
			if cn, ok := wf.Status.Nodes[c]; ok {
				an.Children = append(an.Children, cn.DisplayName)
			}
		}
		if n.Outputs != nil {
			if n.Outputs.ExitCode != nil {
				an.ExitCode = *n.Outputs.ExitCode
			}
			for _, p := range n.Outputs.Parameters {
				if p.Value != nil {
					an.Outputs[p.Name] = p.Value.String()
				}
			}
		}
		out = append(out, an)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// ArgoNodeByName returns the node with that display name (the retry parent for
// a retried step; its attempts are "<name>(0)", "<name>(1)", ...).
func ArgoNodeByName(wf *wfv1.Workflow, display string) (ArgoNode, bool) {
	var found ArgoNode
	ok := false
	for _, n := range ArgoNodes(wf) {
		if n.Name != display {
			continue
		}
		if n.Type == wfv1.NodeTypeRetry {
			return n, true
		}
		found, ok = n, true
	}
	return found, ok
}

// ArgoAttempts returns the pod attempts of the step with that display name
// ("migrate(0)", "migrate(1)", ...) in order.
func ArgoAttempts(wf *wfv1.Workflow, display string) []ArgoNode {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(display) + `\((\d+)\)$`)
	var out []ArgoNode
	for _, n := range ArgoNodes(wf) {
		if n.Type == wfv1.NodeTypePod && re.MatchString(n.Name) {
			out = append(out, n)
		}
	}
	return out
}

// ArgoOutputs returns the workflow's global outputs (globalName parameters).
func ArgoOutputs(wf *wfv1.Workflow) map[string]string {
	out := map[string]string{}
	if wf.Status.Outputs != nil {
		for _, p := range wf.Status.Outputs.Parameters {
			if p.Value != nil {
				out[p.Name] = p.Value.String()
			}
		}
	}
	return out
}

// ArgoDescribe renders the workflow's phase and nodes, one per line (for failure
// messages and the demo).
func ArgoDescribe(wf *wfv1.Workflow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "workflow %s: %s %s (entrypoint %s)\n", wf.Name, wf.Status.Phase, wf.Status.Message, wf.Spec.Entrypoint)
	for _, n := range ArgoNodes(wf) {
		if n.Type == wfv1.NodeTypeDAG && n.Name == wf.Name {
			continue
		}
		d := ""
		if !n.Finished.IsZero() && !n.Started.IsZero() {
			d = n.Finished.Sub(n.Started).Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(&b, "  %-24s %-10s %-9s %6s", n.Name, n.Type, n.Phase, d)
		if n.ExitCode != "" {
			fmt.Fprintf(&b, " exit=%s", n.ExitCode)
		}
		if n.Message != "" {
			fmt.Fprintf(&b, " %q", n.Message)
		}
		if len(n.Outputs) > 0 && n.Type == wfv1.NodeTypePod {
			keys := make([]string, 0, len(n.Outputs))
			for k := range n.Outputs {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(&b, " %s=%s", k, n.Outputs[k])
			}
		}
		b.WriteByte('\n')
	}
	if o := ArgoOutputs(wf); len(o) > 0 {
		fmt.Fprintf(&b, "  outputs: %v\n", o)
	}
	return b.String()
}

// StepLogs returns the main container's log of every pod of wf (for failure
// messages).
func (a *Argo) StepLogs(ctx context.Context, wf *wfv1.Workflow, lines int64) string {
	pods, err := a.Kube.CoreV1().Pods(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "workflows.argoproj.io/workflow=" + wf.Name})
	if err != nil {
		return err.Error()
	}
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].CreationTimestamp.Before(&pods.Items[j].CreationTimestamp) })
	var b strings.Builder
	for _, p := range pods.Items {
		for _, c := range []string{"init", "main", "wait"} {
			raw, err := a.Kube.CoreV1().Pods(a.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: c, TailLines: &lines}).DoRaw(ctx)
			if err != nil {
				continue
			}
			if c != "main" && !bytes.Contains(raw, []byte("level=error")) && !bytes.Contains(raw, []byte("level=warn")) {
				continue
			}
			fmt.Fprintf(&b, "--- %s [%s] (%s)\n%s\n", p.Name, c, p.Annotations["workflows.argoproj.io/node-name"], bytes.TrimSpace(raw))
		}
	}
	return b.String()
}
