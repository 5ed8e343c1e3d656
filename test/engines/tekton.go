package engines

// Tekton Pipelines on the local test cluster (test/kubeenv), installed the way
// its release manifests install it, minus the webhook:
//
//   - the controller, entrypoint, nop and workingdirinit commands are built from
//     the github.com/tektoncd/pipeline module pinned in test/tools/tekton
//     (build.sh) and packed into images (/ko-app/<name>, where ko puts them and
//     the controller expects them), imported into the node's containerd;
//   - from the module's config/: the namespace, the CRDs (300-crds), the RBAC, the
//     config maps (config-*.yaml, feature flags at their defaults but the two
//     set-security-context flags Pod Security "restricted" needs) and the
//     controller Deployment of controller.yaml with its ko:// image references
//     replaced by those images (what `ko resolve` does). The controller runs as
//     a pod, as in a real installation;
//   - not installed: the webhook (so objects must be valid and defaulted when
//     created: CreatePipelineRun/CreateTaskRun run SetDefaults and Validate
//     first, like the webhook would), the events controller and the resolvers
//     deployment (the project's Pipeline refers to its own Tasks by name only);
//   - Tekton Triggers: its CRDs and cluster roles (from the triggers module the
//     main go.mod requires), so that the project's tekton/ kustomization
//     applies as a whole. The Triggers controller, the core interceptors and
//     thus real EventListener pods come with InstallTriggers
//     (tekton_triggers.go), for the tests that send webhooks.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	pipelineclient "github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	triggersclient "github.com/tektoncd/triggers/pkg/client/clientset/versioned"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

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

	cluster  // Kube (kubernetes.Interface), Dynamic (dynamic.Interface)
	Pipeline pipelineclient.Interface
	Triggers triggersclient.Interface

	logf func(string, ...any)
}

// InstallTekton installs Tekton Pipelines (and the Triggers CRDs) into env and
// returns when the controller pod is ready. It is idempotent: on an environment
// where it is installed already (a shared one) it re-applies the same objects
// and changes nothing.
func InstallTekton(ctx context.Context, env *kubeenv.Env, opts TektonOptions) (*Tekton, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	repo, err := findRepo(opts.RepoDir)
	if err != nil {
		return nil, err
	}
	tk := &Tekton{Env: env, RepoDir: repo, logf: logf, Images: map[string]string{}}
	toolsDir := filepath.Join(repo, "test", "tools", "tekton")
	if tk.Version, err = requiredVersion(filepath.Join(toolsDir, "go.mod"), tkPipelineModule); err != nil {
		return nil, err
	}
	if tk.PipelineDir, err = moduleDir(ctx, toolsDir, tkPipelineModule+"@"+tk.Version); err != nil {
		return nil, err
	}
	triggersVersion, err := requiredVersion(filepath.Join(repo, "go.mod"), tkTriggersModule)
	if err != nil {
		return nil, err
	}
	if tk.TriggersDir, err = moduleDir(ctx, repo, tkTriggersModule+"@"+triggersVersion); err != nil {
		return nil, err
	}
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
	logf("tekton: Tekton Pipelines %s installed in %s", tk.Version, time.Since(start).Round(100*time.Millisecond))
	return tk, nil
}

func (tk *Tekton) clients() error {
	c, cfg, err := newCluster(tk.Env)
	if err != nil {
		return err
	}
	tk.cluster = c
	if tk.Pipeline, err = pipelineclient.NewForConfig(cfg); err != nil {
		return err
	}
	tk.Triggers, err = triggersclient.NewForConfig(cfg)
	return err
}

// TektonImageRef is the image reference of one of TektonCommands.
func TektonImageRef(cmd, version string) string {
	return "chartreuse.local/tekton-" + cmd + ":" + version
}

// loadImages packs each command as /ko-app/<name> (its entrypoint, user
// 65532 like the release images) and imports the images not yet present.
func (tk *Tekton) loadImages(ctx context.Context, binDir string) error {
	return loadCommandImages(ctx, tk.Env, binDir, commandImages{
		engine: "tekton", cmds: TektonCommands, version: tk.Version, ref: TektonImageRef,
		dir: "/ko-app/", user: "65532:65532", source: "https://" + tkPipelineModule,
	}, tk.Images)
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
	if err := tk.waitCRDs(ctx, "tekton", crds); err != nil {
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
	if err := tk.applyFiles(ctx, others, setFeatureFlags); err != nil {
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

// tektonFeatureFlags change the release's feature-flags ConfigMap: the
// containers Tekton adds to a TaskRun's pod (prepare, place-scripts,
// working-dir-initializer, the results sidecar) get the securityContext Pod
// Security "restricted" requires (pkg/pod.LinuxSecurityContext: no privilege
// escalation, all capabilities dropped, non-root, seccomp RuntimeDefault) and a
// read-only root filesystem. Without them they get none and a restricted
// namespace refuses every TaskRun's pod. docs/operations.md tells users the same.
var tektonFeatureFlags = map[string]string{
	"set-security-context":                           "true",
	"set-security-context-read-only-root-filesystem": "true",
}

// setFeatureFlags applies tektonFeatureFlags to the feature-flags ConfigMap
// and keeps every object.
func setFeatureFlags(u *unstructured.Unstructured) bool {
	if u.GetKind() != "ConfigMap" || u.GetName() != "feature-flags" {
		return true
	}
	data, _, _ := unstructured.NestedStringMap(u.Object, "data")
	if data == nil {
		data = map[string]string{}
	}
	for k, v := range tektonFeatureFlags {
		data[k] = v
	}
	_ = unstructured.SetNestedStringMap(u.Object, data, "data")
	return true
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

// tektonController is the controller Deployment of TektonNamespace.
func tektonController() controller {
	return controller{engine: "tekton", namespace: TektonNamespace, name: TektonController, selector: "app.kubernetes.io/name=controller", logEachPod: true}
}

// waitController waits until the controller Deployment has rolled out its
// current template and its pod is ready.
func (tk *Tekton) waitController(ctx context.Context, timeout time.Duration) error {
	return tk.cluster.waitController(ctx, tektonController(), timeout)
}

// ControllerLog returns the last lines of the controller's log.
func (tk *Tekton) ControllerLog(ctx context.Context, lines int64) string {
	return tk.controllerLog(ctx, tektonController(), lines)
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
	out, err := tk.kubectlApply(ctx, TektonFieldManager, "-k", dst)
	if err != nil {
		return fmt.Errorf("kubectl apply --server-side -k tekton/ (namespace %s): %w\n%s", ns, err, out)
	}
	tk.logf("tekton: applied tekton/ into %s (%d objects)", ns, bytes.Count(bytes.TrimSpace(out), []byte("\n"))+1)
	return nil
}

// applyFiles server-side-applies every object of the YAML files, keeping
// those keep accepts (nil keeps all; keep may modify the object).
func (tk *Tekton) applyFiles(ctx context.Context, files []string, keep func(*unstructured.Unstructured) bool) error {
	var edit func(*unstructured.Unstructured) (bool, error)
	if keep != nil {
		edit = func(u *unstructured.Unstructured) (bool, error) { return keep(u), nil }
	}
	return tk.cluster.applyFiles(ctx, files, "", TektonFieldManager, edit)
}

// Apply server-side-applies one object (field manager TektonFieldManager, forced).
func (tk *Tekton) Apply(ctx context.Context, o *unstructured.Unstructured) error {
	return tk.apply(ctx, o, "", TektonFieldManager)
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

var tkBuildMu sync.Mutex

// tkBuild runs test/tools/tekton/build.sh (a no-op once built) and returns
// the directory it prints.
func tkBuild(ctx context.Context, toolsDir string, logf func(string, ...any)) (string, error) {
	return runBuildScript(ctx, &tkBuildMu, filepath.Join(toolsDir, "build.sh"), "test/tools/tekton/build.sh", logf)
}
