package engines

// Tekton Pipelines on the local test cluster (test/kubeenv), installed the way
// its release manifests install it, minus the webhook:
//
//   - the controller, entrypoint, nop and workingdirinit commands are built from
//     the github.com/tektoncd/pipeline module pinned in test/tools/tekton
//     (build.sh) and packed into images (/ko-app/<name>, where ko puts them and
//     the controller expects them), imported into the node's containerd;
//   - from the module's config/: the namespace, the CRDs (300-crds), the RBAC, the
//     config maps (config-*.yaml, feature flags at their defaults) and the
//     controller Deployment of controller.yaml with its ko:// image references
//     replaced by those images (what `ko resolve` does). The controller runs as
//     a pod, as in a real installation;
//   - not installed: the webhook (so objects must be valid and defaulted when
//     created: CreatePipelineRun/CreateTaskRun run SetDefaults and Validate
//     first, like the webhook would), the events controller and the resolvers
//     deployment. The hub resolver's requests are answered by a stand-in in this
//     process (see hubStandIn): Tekton resolves every taskRef of a Pipeline when
//     a PipelineRun starts, the skipped fetch-source's included, and Artifact Hub
//     is not reachable from here;
//   - Tekton Triggers: only its CRDs and cluster roles (from the triggers module
//     the main go.mod requires), so that the project's tekton/ kustomization
//     applies as a whole. No Triggers controller, no EventListener pod (its sink
//     image is not built); RenderTrigger runs the EventListener's interceptor
//     chain and template resolution in this process with the Triggers library.

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

	pipelineclient "github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	resolutionclient "github.com/tektoncd/pipeline/pkg/client/resolution/clientset/versioned"
	triggersclient "github.com/tektoncd/triggers/pkg/client/clientset/versioned"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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
	// TektonNamespace is where the controller runs (config/100-namespace).
	TektonNamespace = "tekton-pipelines"
	// TektonController is the controller Deployment's name (config/controller.yaml).
	TektonController = "tekton-pipelines-controller"
	// TektonFieldManager owns every field the test engines apply (server-side apply).
	TektonFieldManager = "chartreuse-tests"
	tkPipelineModule   = "github.com/tektoncd/pipeline"
	tkTriggersModule   = "github.com/tektoncd/triggers"
	tkKoPrefix         = "ko://" + tkPipelineModule + "/cmd/"
)

// TektonCommands are the commands build.sh builds and Install turns into images.
var TektonCommands = []string{"controller", "entrypoint", "nop", "workingdirinit"}

// TektonOptions configure InstallTekton.
type TektonOptions struct {
	// RepoDir is the repository root. Default: $CHARTREUSE_REPO, else found
	// from the working directory.
	RepoDir string
	// BinDir holds the commands of TektonCommands. Default: $CHARTREUSE_TEKTON_BIN,
	// else what test/tools/tekton/build.sh prints (it builds them the first time).
	BinDir string
	// Logf receives progress lines. Default: discarded.
	Logf func(format string, args ...any)
	// ReadyTimeout bounds the wait for the controller (default 3 minutes).
	ReadyTimeout time.Duration
}

// Tekton is Tekton Pipelines installed on a kubeenv environment.
type Tekton struct {
	Env         *kubeenv.Env
	Version     string // github.com/tektoncd/pipeline version, e.g. v1.15.1
	PipelineDir string // the pipeline module's source (config/ is read from it)
	TriggersDir string // the triggers module's source
	RepoDir     string
	// Images maps each of TektonCommands to its image reference.
	Images map[string]string

	Kube       kubernetes.Interface
	Pipeline   pipelineclient.Interface
	Resolution resolutionclient.Interface
	Triggers   triggersclient.Interface
	Dynamic    dynamic.Interface

	kubectl string
	mapper  *restmapper.DeferredDiscoveryRESTMapper
	logf    func(string, ...any)
	hub     *hubStandIn
}

// InstallTekton installs Tekton Pipelines (and the Triggers CRDs) into env and
// returns when the controller pod is ready and the hub resolver stand-in
// answers. It is idempotent: on an environment where it is installed already
// (a shared one) it re-applies the same objects and changes nothing. Close
// stops the stand-in.
func InstallTekton(ctx context.Context, env *kubeenv.Env, opts TektonOptions) (*Tekton, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	repo, err := tkFindRepo(opts.RepoDir)
	if err != nil {
		return nil, err
	}
	tk := &Tekton{Env: env, RepoDir: repo, logf: logf, Images: map[string]string{}}
	toolsDir := filepath.Join(repo, "test", "tools", "tekton")
	if tk.Version, err = tkRequiredVersion(filepath.Join(toolsDir, "go.mod"), tkPipelineModule); err != nil {
		return nil, err
	}
	if tk.PipelineDir, err = tkModuleDir(ctx, toolsDir, tkPipelineModule+"@"+tk.Version); err != nil {
		return nil, err
	}
	triggersVersion, err := tkRequiredVersion(filepath.Join(repo, "go.mod"), tkTriggersModule)
	if err != nil {
		return nil, err
	}
	if tk.TriggersDir, err = tkModuleDir(ctx, repo, tkTriggersModule+"@"+triggersVersion); err != nil {
		return nil, err
	}
	tk.kubectl = filepath.Join(env.State().KubeBinDir, "kubectl")
	if err := tk.clients(); err != nil {
		return nil, err
	}

	start := time.Now()
	binDir := opts.BinDir
	if binDir == "" {
		binDir = os.Getenv("CHARTREUSE_TEKTON_BIN")
	}
	if binDir == "" {
		if binDir, err = tkBuild(ctx, toolsDir, logf); err != nil {
			return nil, err
		}
	}
	if err := tk.loadImages(ctx, binDir); err != nil {
		return nil, err
	}
	logf("tekton: images ready in %s", time.Since(start).Round(100*time.Millisecond))

	if err := tk.applyConfig(ctx); err != nil {
		return nil, err
	}
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	if err := tk.waitController(ctx, timeout); err != nil {
		return nil, err
	}
	tk.hub = startHubStandIn(tk)
	logf("tekton: Tekton Pipelines %s installed in %s", tk.Version, time.Since(start).Round(100*time.Millisecond))
	return tk, nil
}

// Close stops the hub resolver stand-in. Tekton stays installed (the
// environment's teardown removes it with everything else).
func (tk *Tekton) Close() {
	if tk.hub != nil {
		tk.hub.stop()
	}
}

func (tk *Tekton) clients() error {
	cfg, err := tk.Env.RESTConfig()
	if err != nil {
		return err
	}
	cfg = rest.CopyConfig(cfg)
	if tk.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if tk.Pipeline, err = pipelineclient.NewForConfig(cfg); err != nil {
		return err
	}
	if tk.Resolution, err = resolutionclient.NewForConfig(cfg); err != nil {
		return err
	}
	if tk.Triggers, err = triggersclient.NewForConfig(cfg); err != nil {
		return err
	}
	if tk.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	tk.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	return nil
}

// TektonImageRef is the image reference of one of TektonCommands.
func TektonImageRef(cmd, version string) string {
	return "chartreuse.local/tekton-" + cmd + ":" + version
}

// loadImages packs each command as /ko-app/<name> (its entrypoint, user
// 65532 like the release images) and imports the images not yet present.
func (tk *Tekton) loadImages(ctx context.Context, binDir string) error {
	tmp, err := os.MkdirTemp("", "chartreuse-tekton-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, c := range TektonCommands {
		ref := TektonImageRef(c, tk.Version)
		tk.Images[c] = ref
		ok, err := images.Present(ctx, tk.Env.ContainerdSocket, ref)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		bin := filepath.Join(binDir, c)
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("tekton: %w (build with test/tools/tekton/build.sh)", err)
		}
		tar := filepath.Join(tmp, c+".tar")
		spec := images.Spec{
			Ref:   ref,
			Files: []images.File{{Path: "/ko-app/" + c, Source: bin, Mode: 0o755}},
			Config: images.Config{
				Entrypoint: []string{"/ko-app/" + c},
				User:       "65532:65532",
				Labels:     map[string]string{"org.opencontainers.image.version": tk.Version, "org.opencontainers.image.source": "https://" + tkPipelineModule},
			},
		}
		if err := images.WriteTarball(spec, tar); err != nil {
			return err
		}
		if err := tk.Env.LoadImage(ctx, tar); err != nil {
			return err
		}
	}
	return nil
}

// applyConfig applies the release configuration from the pipeline module's
// config/ directory (and the Triggers CRDs), webhook excluded.
func (tk *Tekton) applyConfig(ctx context.Context) error {
	cfg := filepath.Join(tk.PipelineDir, "config")
	trg := filepath.Join(tk.TriggersDir, "config")
	crds, err := tkGlob(filepath.Join(cfg, "300-crds", "*.yaml"), filepath.Join(trg, "300-*.yaml"))
	if err != nil {
		return err
	}
	if err := tk.applyFiles(ctx, []string{filepath.Join(cfg, "100-namespace", "100-namespace.yaml")}, nil); err != nil {
		return err
	}
	if err := tk.applyFiles(ctx, crds, nil); err != nil {
		return err
	}
	if err := tk.waitCRDs(ctx, crds); err != nil {
		return err
	}
	tk.mapper.Reset()

	// RBAC and configuration of the pipelines release (webhook objects are
	// harmless without the webhook Deployment and kept for fidelity).
	others, err := tkGlob(
		filepath.Join(cfg, "200-*.yaml"), filepath.Join(cfg, "201-*.yaml"),
		filepath.Join(cfg, "clusterrole-aggregate-*.yaml"), filepath.Join(cfg, "config-*.yaml"))
	if err != nil {
		return err
	}
	if err := tk.applyFiles(ctx, others, nil); err != nil {
		return err
	}
	// Triggers: only the cluster roles the project's RoleBindings refer to.
	if err := tk.applyFiles(ctx, []string{filepath.Join(trg, "200-clusterrole.yaml")}, func(u *unstructured.Unstructured) bool {
		return u.GetKind() == "ClusterRole"
	}); err != nil {
		return err
	}
	var resolveErr error
	err = tk.applyFiles(ctx, []string{filepath.Join(cfg, "controller.yaml")}, func(u *unstructured.Unstructured) bool {
		if u.GetKind() != "Deployment" {
			return true
		}
		resolveErr = tk.resolveController(u)
		return resolveErr == nil
	})
	if resolveErr != nil {
		return resolveErr // the release file changed shape: adapt resolveController
	}
	return err
}

// resolveController does to the controller Deployment what `ko resolve` does:
// ko:// references become our images. The two shell images (only used for
// `script` steps, which the project's Tasks do not have) are not available
// offline and point at the nop image, so that nothing ever refers to an image
// the node does not hold; so does the sidecar-logs results image (only used
// with results-from: sidecar-logs, not the default).
func (tk *Tekton) resolveController(u *unstructured.Unstructured) error {
	containers, _, err := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	if err != nil || len(containers) != 1 {
		return fmt.Errorf("controller.yaml: want one container (%v)", err)
	}
	c := containers[0].(map[string]any)
	img, _ := c["image"].(string)
	if img != tkKoPrefix+"controller" {
		return fmt.Errorf("controller.yaml: unexpected image %q", img)
	}
	c["image"] = tk.Images["controller"]
	c["imagePullPolicy"] = "Never"
	args, _ := c["args"].([]any)
	for i := 0; i < len(args); i++ {
		a, _ := args[i].(string)
		switch {
		case strings.HasPrefix(a, tkKoPrefix):
			cmd := strings.TrimPrefix(a, tkKoPrefix)
			ref, ok := tk.Images[cmd]
			if !ok {
				ref = tk.Images["nop"]
			}
			args[i] = ref
		case (a == "-shell-image" || a == "-shell-image-win") && i+1 < len(args):
			args[i+1] = tk.Images["nop"]
			i++
		}
	}
	for _, a := range args {
		if s, _ := a.(string); strings.Contains(s, "://") || strings.Contains(s, "@sha256:") {
			return fmt.Errorf("controller.yaml: unresolved image argument %q", s)
		}
	}
	c["args"] = args
	containers[0] = c
	return unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", "containers")
}

func (tk *Tekton) waitCRDs(ctx context.Context, files []string) error {
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	var names []string
	for _, f := range files {
		objs, err := tkReadObjects(f)
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
			crd, err := tk.Dynamic.Resource(gvr).Get(ctx, n, metav1.GetOptions{})
			if err == nil && tkConditionTrue(crd, "Established") {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("tekton: CRD %s not established: %v", n, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func tkConditionTrue(u *unstructured.Unstructured, typ string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ && m["status"] == "True" {
			return true
		}
	}
	return false
}

// waitController waits until the controller Deployment has rolled out its
// current template and its pod is ready.
func (tk *Tekton) waitController(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		d, err := tk.Kube.AppsV1().Deployments(TektonNamespace).Get(ctx, TektonController, metav1.GetOptions{})
		if err == nil && tkRolledOut(d) {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("generation %d observed %d, updated %d, available %d", d.Generation, d.Status.ObservedGeneration, d.Status.UpdatedReplicas, d.Status.AvailableReplicas)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tekton: controller not ready after %s (%s)%s", timeout, last, tk.controllerDiagnosis())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func tkRolledOut(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want &&
		d.Status.AvailableReplicas == want && d.Status.Replicas == want
}

// controllerDiagnosis describes the controller pods and the end of their log.
func (tk *Tekton) controllerDiagnosis() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := tk.Kube.CoreV1().Pods(TektonNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=controller"})
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
		fmt.Fprintf(&b, "\n%s", tk.ControllerLog(ctx, 40))
	}
	return b.String()
}

// ControllerLog returns the last lines of the controller's log.
func (tk *Tekton) ControllerLog(ctx context.Context, lines int64) string {
	pods, err := tk.Kube.CoreV1().Pods(TektonNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=controller"})
	if err != nil || len(pods.Items) == 0 {
		return ""
	}
	raw, err := tk.Kube.CoreV1().Pods(TektonNamespace).GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{TailLines: &lines}).DoRaw(ctx)
	if err != nil {
		return err.Error()
	}
	return string(raw)
}

// ApplyProject applies the project's tekton/ kustomization into namespace ns
// the way its README says a user does: set `namespace:` in
// kustomization.yaml, then `kubectl apply -k` (server-side). It works on a
// copy of the directory.
func (tk *Tekton) ApplyProject(ctx context.Context, ns string) error {
	src := filepath.Join(tk.RepoDir, "tekton")
	dst, err := os.MkdirTemp("", "chartreuse-tekton-kustomize-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dst)
	if err := tkCopyTree(src, dst); err != nil {
		return err
	}
	kf := filepath.Join(dst, "kustomization.yaml")
	k, err := os.ReadFile(kf)
	if err != nil {
		return err
	}
	re := regexp.MustCompile(`(?m)^namespace: .*$`)
	if !re.Match(k) {
		return errors.New("tekton/kustomization.yaml has no `namespace:` line")
	}
	if err := os.WriteFile(kf, re.ReplaceAll(k, []byte("namespace: "+ns)), 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, tk.kubectl, "--kubeconfig", tk.Env.Kubeconfig, "apply", "--server-side",
		"--field-manager", TektonFieldManager, "-k", dst)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl apply --server-side -k tekton/ (namespace %s): %w\n%s", ns, err, out)
	}
	tk.logf("tekton: applied tekton/ into %s (%d objects)", ns, bytes.Count(bytes.TrimSpace(out), []byte("\n"))+1)
	return nil
}

// applyFiles server-side-applies every object of the YAML files, keeping
// those keep accepts (nil keeps all; keep may modify the object).
func (tk *Tekton) applyFiles(ctx context.Context, files []string, keep func(*unstructured.Unstructured) bool) error {
	for _, f := range files {
		objs, err := tkReadObjects(f)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if keep != nil && !keep(o) {
				continue
			}
			if err := tk.Apply(ctx, o); err != nil {
				return fmt.Errorf("%s: %w", filepath.Base(f), err)
			}
		}
	}
	return nil
}

// Apply server-side-applies one object (field manager TektonFieldManager, forced).
func (tk *Tekton) Apply(ctx context.Context, o *unstructured.Unstructured) error {
	gvk := o.GroupVersionKind()
	m, err := tk.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		tk.mapper.Reset()
		m, err = tk.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
	}
	var ri dynamic.ResourceInterface = tk.Dynamic.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = tk.Dynamic.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	_, err = ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: TektonFieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("apply %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
	}
	return nil
}

// tkReadObjects parses a multi-document YAML file (empty documents skipped).
func tkReadObjects(file string) ([]*unstructured.Unstructured, error) {
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

func tkGlob(patterns ...string) ([]string, error) {
	var out []string
	for _, p := range patterns {
		m, err := filepath.Glob(p)
		if err != nil {
			return nil, err
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("no file matches %s", p)
		}
		out = append(out, m...)
	}
	sort.Strings(out)
	return out, nil
}

func tkCopyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// tkRequiredVersion reads the version a go.mod requires of module.
func tkRequiredVersion(gomod, module string) (string, error) {
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

// tkModuleDir returns the module cache directory of module@version, downloading
// it through the module proxy when missing.
func tkModuleDir(ctx context.Context, dir, modVersion string) (string, error) {
	cmd := exec.CommandContext(ctx, tkGo(), "mod", "download", "-json", modVersion)
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

var tkBuildMu sync.Mutex

// tkBuild runs test/tools/tekton/build.sh (a no-op once built) and returns
// the directory it prints.
func tkBuild(ctx context.Context, toolsDir string, logf func(string, ...any)) (string, error) {
	tkBuildMu.Lock()
	defer tkBuildMu.Unlock()
	cmd := exec.CommandContext(ctx, filepath.Join(toolsDir, "build.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("test/tools/tekton/build.sh: %w\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dir := lines[len(lines)-1]
	if s := strings.TrimSpace(stderr.String()); s != "" {
		logf("%s", s)
	}
	return dir, nil
}

func tkGo() string {
	if p := os.Getenv("GO"); p != "" {
		return p
	}
	return "go"
}

// tkFindRepo returns the repository root: given, $CHARTREUSE_REPO, or the
// nearest parent of the working directory whose go.mod is the project's.
func tkFindRepo(given string) (string, error) {
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
