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
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	wfclientset "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/chartreuse-go/chartreuse/test/images"
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

	Kube      kubernetes.Interface
	Workflows wfclientset.Interface
	Dynamic   dynamic.Interface

	kubectl string
	mapper  *restmapper.DeferredDiscoveryRESTMapper
	logf    func(string, ...any)
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
	repo, err := argoFindRepo(opts.RepoDir)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	a := &Argo{Env: env, Namespace: opts.Namespace, RepoDir: repo, logf: logf, Images: map[string]string{}}
	toolsDir := filepath.Join(repo, "test", "tools", "argo")
	if a.Version, err = argoRequiredVersion(filepath.Join(toolsDir, "go.mod"), argoModule); err != nil {
		return nil, err
	}
	if a.ModuleDir, err = argoModuleDir(ctx, toolsDir, argoModule+"@"+a.Version); err != nil {
		return nil, err
	}
	a.kubectl = filepath.Join(env.State().KubeBinDir, "kubectl")
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
	cfg, err := a.Env.RESTConfig()
	if err != nil {
		return err
	}
	cfg = rest.CopyConfig(cfg)
	if a.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if a.Workflows, err = wfclientset.NewForConfig(cfg); err != nil {
		return err
	}
	if a.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	a.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	return nil
}

// ArgoImageRef is the image reference of one of ArgoCommands.
func ArgoImageRef(cmd, version string) string {
	return "chartreuse.local/argo-" + cmd + ":" + version
}

// loadImages packs each command as /bin/<name> (its entrypoint; the controller
// runs "argoexec" from PATH in the executor's init and wait containers) and
// imports the images not yet present.
func (a *Argo) loadImages(ctx context.Context, binDir string) error {
	tmp, err := os.MkdirTemp("", "chartreuse-argo-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, c := range ArgoCommands {
		ref := ArgoImageRef(c, a.Version)
		a.Images[c] = ref
		ok, err := images.Present(ctx, a.Env.ContainerdSocket, ref)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		bin := filepath.Join(binDir, c)
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("argo: %w (build with test/tools/argo/build.sh)", err)
		}
		tar := filepath.Join(tmp, c+".tar")
		spec := images.Spec{
			Ref:   ref,
			Files: []images.File{{Path: "/bin/" + c, Source: bin, Mode: 0o755}},
			Config: images.Config{
				Entrypoint: []string{"/bin/" + c},
				User:       "8737",
				Labels:     map[string]string{"org.opencontainers.image.version": a.Version, "org.opencontainers.image.source": "https://" + strings.TrimSuffix(argoModule, "/v3")},
			},
		}
		if err := images.WriteTarball(spec, tar); err != nil {
			return err
		}
		if err := a.Env.LoadImage(ctx, tar); err != nil {
			return err
		}
	}
	return nil
}

// argoControllerConfig is the workflow-controller-configmap's data: the executor
// image is only on the node (the --executor-image flag sets the image, this its
// pull policy).
var argoControllerConfig = map[string]any{
	"executor": "imagePullPolicy: Never\n",
}

func (a *Argo) applyInstall(ctx context.Context, requeue string) error {
	m := filepath.Join(a.ModuleDir, "manifests")
	crds, err := filepath.Glob(filepath.Join(m, "base", "crds", "minimal", "argoproj.io_*.yaml"))
	if err != nil || len(crds) == 0 {
		return fmt.Errorf("argo: no CRDs in %s (%v)", m, err)
	}
	if err := a.applyFiles(ctx, crds, "", nil); err != nil {
		return err
	}
	if err := a.waitCRDs(ctx, crds); err != nil {
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
	return a.applyFiles(ctx, files, a.Namespace, func(u *unstructured.Unstructured) error {
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
	})
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

func (a *Argo) waitCRDs(ctx context.Context, files []string) error {
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	var names []string
	for _, f := range files {
		objs, err := argoReadObjects(f)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if o.GetKind() == "CustomResourceDefinition" {
				names = append(names, o.GetName())
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, n := range names {
		for {
			crd, err := a.Dynamic.Resource(gvr).Get(ctx, n, metav1.GetOptions{})
			if err == nil && argoConditionTrue(crd, "Established") {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("argo: CRD %s not established: %v", n, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func argoConditionTrue(u *unstructured.Unstructured, typ string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ && m["status"] == "True" {
			return true
		}
	}
	return false
}

// waitController waits until the controller Deployment has rolled out and its
// pod is ready.
func (a *Argo) waitController(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		d, err := a.Kube.AppsV1().Deployments(a.Namespace).Get(ctx, ArgoController, metav1.GetOptions{})
		if err == nil {
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			if d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want &&
				d.Status.AvailableReplicas == want && d.Status.Replicas == want {
				return nil
			}
			last = fmt.Sprintf("generation %d observed %d, updated %d, available %d", d.Generation, d.Status.ObservedGeneration, d.Status.UpdatedReplicas, d.Status.AvailableReplicas)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("argo: controller not ready after %s (%s)%s", timeout, last, a.controllerDiagnosis())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (a *Argo) controllerDiagnosis() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := a.Kube.CoreV1().Pods(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=workflow-controller"})
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "\npod %s: phase %s", p.Name, p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			fmt.Fprintf(&b, "; %s ready=%v restarts=%d", cs.Name, cs.Ready, cs.RestartCount)
			if w := cs.State.Waiting; w != nil {
				fmt.Fprintf(&b, " waiting %s: %s", w.Reason, w.Message)
			}
		}
	}
	fmt.Fprintf(&b, "\n%s", a.ControllerLog(ctx, 40))
	return b.String()
}

// ControllerLog returns the last lines of the controller's log.
func (a *Argo) ControllerLog(ctx context.Context, lines int64) string {
	pods, err := a.Kube.CoreV1().Pods(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=workflow-controller"})
	if err != nil || len(pods.Items) == 0 {
		return ""
	}
	raw, err := a.Kube.CoreV1().Pods(a.Namespace).GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{TailLines: &lines}).DoRaw(ctx)
	if err != nil {
		return err.Error()
	}
	return string(raw)
}

// ApplyProject applies the project's workflowtemplates/ kustomization into the
// managed namespace exactly as its README tells a user to:
// `kubectl apply -n <ns> -k workflowtemplates/` (server-side).
func (a *Argo) ApplyProject(ctx context.Context) error {
	dir := filepath.Join(a.RepoDir, "workflowtemplates")
	cmd := exec.CommandContext(ctx, a.kubectl, "--kubeconfig", a.Env.Kubeconfig, "apply", "--server-side",
		"--field-manager", ArgoFieldManager, "-n", a.Namespace, "-k", dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl apply --server-side -n %s -k workflowtemplates/: %w\n%s", a.Namespace, err, out)
	}
	a.logf("argo: applied workflowtemplates/ into %s:\n%s", a.Namespace, bytes.TrimSpace(out))
	return nil
}

// applyFiles server-side-applies every object of the YAML files into ns (for
// namespaced kinds; "" keeps the file's), after edit (nil: unchanged).
func (a *Argo) applyFiles(ctx context.Context, files []string, ns string, edit func(*unstructured.Unstructured) error) error {
	for _, f := range files {
		objs, err := argoReadObjects(f)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if edit != nil {
				if err := edit(o); err != nil {
					return fmt.Errorf("%s: %w", filepath.Base(f), err)
				}
			}
			if err := a.Apply(ctx, o, ns); err != nil {
				return fmt.Errorf("%s: %w", filepath.Base(f), err)
			}
		}
	}
	return nil
}

// Apply server-side-applies one object (field manager ArgoFieldManager, forced),
// namespaced kinds into ns unless ns is "".
func (a *Argo) Apply(ctx context.Context, o *unstructured.Unstructured, ns string) error {
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		a.mapper.Reset()
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
	}
	var ri dynamic.ResourceInterface = a.Dynamic.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if ns != "" {
			o.SetNamespace(ns)
		}
		ri = a.Dynamic.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	_, err = ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: ArgoFieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("apply %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
	}
	return nil
}

// argoReadObjects parses a multi-document YAML file (empty documents skipped).
func argoReadObjects(file string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 64*1024)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
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

// argoRequiredVersion reads the version a go.mod requires of module.
func argoRequiredVersion(gomod, module string) (string, error) {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	re := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(module) + `\s+(v[0-9][^\s]*)`)
	m := re.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s does not require %s", gomod, module)
	}
	return string(m[1]), nil
}

// argoModuleDir returns the module cache directory of module@version (go mod
// download is a no-op when it is there).
func argoModuleDir(ctx context.Context, dir, modVersion string) (string, error) {
	cmd := exec.CommandContext(ctx, argoGo(), "mod", "download", "-json", modVersion)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go mod download %s: %w\n%s%s", modVersion, err, out, ee.Stderr)
		}
		return "", fmt.Errorf("go mod download %s: %w", modVersion, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("go mod download %s: %w", modVersion, err)
	}
	if info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %s", modVersion, info.Error)
	}
	return info.Dir, nil
}

var argoBuildMu sync.Mutex

// ArgoBuild runs test/tools/argo/build.sh (a no-op once built) and returns the
// directory it prints.
func ArgoBuild(ctx context.Context, repo string, logf func(string, ...any)) (string, error) {
	argoBuildMu.Lock()
	defer argoBuildMu.Unlock()
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "test", "tools", "argo", "build.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("test/tools/argo/build.sh: %w\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if s := strings.TrimSpace(stderr.String()); s != "" && logf != nil {
		logf("%s", s)
	}
	return lines[len(lines)-1], nil
}

func argoGo() string {
	if p := os.Getenv("GO"); p != "" {
		return p
	}
	return "go"
}

// argoFindRepo returns the repository root: given, $CHARTREUSE_REPO, or the
// nearest parent of the working directory whose go.mod is the project's.
func argoFindRepo(given string) (string, error) {
	if given == "" {
		given = os.Getenv("CHARTREUSE_REPO")
	}
	if given != "" {
		return filepath.Abs(given)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/chartreuse-go/chartreuse\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root not found; set CHARTREUSE_REPO")
		}
		dir = parent
	}
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
func (a *Argo) Get(ctx context.Context, name string) (*wfv1.Workflow, error) {
	return a.Workflows.ArgoprojV1alpha1().Workflows(a.Namespace).Get(ctx, name, metav1.GetOptions{})
}

// Wait polls the workflow until it has completed (Succeeded, Failed or Error)
// and returns it. onChange, when not nil, sees every new resourceVersion.
func (a *Argo) Wait(ctx context.Context, name string, onChange func(*wfv1.Workflow)) (*wfv1.Workflow, error) {
	var rv string
	for {
		wf, err := a.Get(ctx, name)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		if err == nil {
			if onChange != nil && wf.ResourceVersion != rv {
				onChange(wf)
			}
			rv = wf.ResourceVersion
			if wf.Status.Phase.Completed() && wf.Status.FinishedAt.Time.After(time.Time{}) {
				return wf, nil
			}
		}
		select {
		case <-ctx.Done():
			if wf != nil {
				return wf, fmt.Errorf("workflow %s still %s: %w\n%s", name, wf.Status.Phase, ctx.Err(), ArgoDescribe(wf))
			}
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ArgoNode is one node of a completed workflow, by display name.
type ArgoNode struct {
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
			Name: n.DisplayName, Template: n.TemplateName, Type: n.Type, Phase: n.Phase,
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
