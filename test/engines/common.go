package engines

// What both engines (argo.go, tekton.go) do the same way: the clients of the
// cluster, server-side apply of manifest files, waiting for CRDs and the
// controller Deployment, packing the built commands into images, and finding
// the repository, the pinned versions and the module sources.

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
	"strings"
	"sync"
	"time"

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

// cluster is what an engine holds of the kubeenv environment: the generic
// clients, the REST mapper and kubectl. Argo and Tekton embed it, so Kube and
// Dynamic are their fields.
type cluster struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface

	kubeconfig string
	kubectl    string
	mapper     *restmapper.DeferredDiscoveryRESTMapper
}

// newCluster makes the clients of env and returns the REST configuration the
// engine's own clients are made from.
func newCluster(env *kubeenv.Env) (cluster, *rest.Config, error) {
	c := cluster{kubeconfig: env.Kubeconfig, kubectl: filepath.Join(env.State().KubeBinDir, "kubectl")}
	cfg, err := env.RESTConfig()
	if err != nil {
		return c, nil, err
	}
	cfg = rest.CopyConfig(cfg)
	if c.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return c, nil, err
	}
	if c.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return c, nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return c, nil, err
	}
	c.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	return c, cfg, nil
}

// apply server-side-applies one object (fieldManager, forced), namespaced kinds
// into ns unless ns is "" (then the object's own namespace).
func (c *cluster) apply(ctx context.Context, o *unstructured.Unstructured, ns, fieldManager string) error {
	gvk := o.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		c.mapper.Reset()
		m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
	}
	var ri dynamic.ResourceInterface = c.Dynamic.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if ns != "" {
			o.SetNamespace(ns)
		}
		ri = c.Dynamic.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	_, err = ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("apply %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
	}
	return nil
}

// applyFiles server-side-applies every object of the YAML files (see apply),
// after edit, which may change the object and says whether to apply it (nil:
// all, unchanged). An edit error stops it.
func (c *cluster) applyFiles(ctx context.Context, files []string, ns, fieldManager string, edit func(*unstructured.Unstructured) (bool, error)) error {
	for _, f := range files {
		objs, err := readObjects(f)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if edit != nil {
				keep, err := edit(o)
				if err != nil {
					return fmt.Errorf("%s: %w", filepath.Base(f), err)
				}
				if !keep {
					continue
				}
			}
			if err := c.apply(ctx, o, ns, fieldManager); err != nil {
				return fmt.Errorf("%s: %w", filepath.Base(f), err)
			}
		}
	}
	return nil
}

// kubectlApply runs `kubectl apply --server-side --field-manager fieldManager
// args...` against the environment and returns its combined output.
func (c *cluster) kubectlApply(ctx context.Context, fieldManager string, args ...string) ([]byte, error) {
	args = append([]string{"--kubeconfig", c.kubeconfig, "apply", "--server-side", "--field-manager", fieldManager}, args...)
	return exec.CommandContext(ctx, c.kubectl, args...).CombinedOutput()
}

// waitCRDs waits (up to a minute) until every CustomResourceDefinition of the
// files is established; engine prefixes the error.
func (c *cluster) waitCRDs(ctx context.Context, engine string, files []string) error {
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	var names []string
	for _, f := range files {
		objs, err := readObjects(f)
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
			crd, err := c.Dynamic.Resource(gvr).Get(ctx, n, metav1.GetOptions{})
			if err == nil && conditionTrue(crd, "Established") {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: CRD %s not established: %v", engine, n, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func conditionTrue(u *unstructured.Unstructured, typ string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ && m["status"] == "True" {
			return true
		}
	}
	return false
}

// controller names an engine's controller Deployment and its pods.
type controller struct {
	engine    string // "argo", "tekton": prefixes errors
	namespace string
	name      string // the Deployment
	selector  string // label selector of its pods
	// logEachPod: the diagnosis follows every pod with the log; else the log
	// comes once, after the pods.
	logEachPod bool
}

// waitController waits until the controller Deployment has rolled out its
// current template and its pod is ready.
func (c *cluster) waitController(ctx context.Context, ctl controller, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		d, err := c.Kube.AppsV1().Deployments(ctl.namespace).Get(ctx, ctl.name, metav1.GetOptions{})
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
			return fmt.Errorf("%s: controller not ready after %s (%s)%s", ctl.engine, timeout, last, c.controllerDiagnosis(ctl))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// controllerDiagnosis describes the controller pods and the end of their log.
func (c *cluster) controllerDiagnosis(ctl controller) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := c.Kube.CoreV1().Pods(ctl.namespace).List(ctx, metav1.ListOptions{LabelSelector: ctl.selector})
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
		if ctl.logEachPod {
			fmt.Fprintf(&b, "\n%s", c.controllerLog(ctx, ctl, 40))
		}
	}
	if !ctl.logEachPod {
		fmt.Fprintf(&b, "\n%s", c.controllerLog(ctx, ctl, 40))
	}
	return b.String()
}

// controllerLog returns the last lines of the controller's log.
func (c *cluster) controllerLog(ctx context.Context, ctl controller, lines int64) string {
	log, err := c.readControllerLog(ctx, ctl, &corev1.PodLogOptions{TailLines: &lines})
	if err != nil {
		return err.Error()
	}
	return log
}

// controllerLogAbout returns the last max lines of the controller's log that
// mention about (a run's name): the tail alone holds only what the other
// scenarios sharing the controller did last.
func (c *cluster) controllerLogAbout(ctx context.Context, ctl controller, about string, max int) string {
	limit := int64(64 << 20)
	log, err := c.readControllerLog(ctx, ctl, &corev1.PodLogOptions{LimitBytes: &limit})
	if err != nil {
		return err.Error()
	}
	var keep []string
	for line := range strings.SplitSeq(log, "\n") {
		if strings.Contains(line, about) {
			keep = append(keep, line)
		}
	}
	if len(keep) > max {
		keep = append([]string{fmt.Sprintf("(%d earlier lines left out)", len(keep)-max)}, keep[len(keep)-max:]...)
	}
	return strings.Join(keep, "\n")
}

// readControllerLog reads the log of the controller's (first) pod; "" when
// there is no such pod or it cannot be listed.
func (c *cluster) readControllerLog(ctx context.Context, ctl controller, opts *corev1.PodLogOptions) (string, error) {
	pods, err := c.Kube.CoreV1().Pods(ctl.namespace).List(ctx, metav1.ListOptions{LabelSelector: ctl.selector})
	if err != nil || len(pods.Items) == 0 {
		return "", nil
	}
	raw, err := c.Kube.CoreV1().Pods(ctl.namespace).GetLogs(pods.Items[0].Name, opts).DoRaw(ctx)
	return string(raw), err
}

// commandImages says how an engine packs the commands build.sh built into
// images: one file each, its entrypoint.
type commandImages struct {
	engine  string   // "argo", "tekton": test/tools/<engine>/build.sh builds the commands
	cmds    []string // the commands, in binDir
	version string   // the engine's version
	ref     func(cmd, version string) string
	dir     string // the command goes to dir+<name> in the image, e.g. "/bin/"
	user    string // the image's user
	source  string // the org.opencontainers.image.source label
}

// loadCommandImages records each command's image reference in refs, and packs
// and imports into env the images not yet present.
func loadCommandImages(ctx context.Context, env *kubeenv.Env, binDir string, ci commandImages, refs map[string]string) error {
	tmp, err := os.MkdirTemp("", "chartreuse-"+ci.engine+"-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, c := range ci.cmds {
		ref := ci.ref(c, ci.version)
		refs[c] = ref
		ok, err := images.Present(ctx, env.ContainerdSocket, ref)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		bin := filepath.Join(binDir, c)
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s: %w (build with test/tools/%s/build.sh)", ci.engine, err, ci.engine)
		}
		tar := filepath.Join(tmp, c+".tar")
		spec := images.Spec{
			Ref:   ref,
			Files: []images.File{{Path: ci.dir + c, Source: bin, Mode: 0o755}},
			Config: images.Config{
				Entrypoint: []string{ci.dir + c},
				User:       ci.user,
				Labels:     map[string]string{"org.opencontainers.image.version": ci.version, "org.opencontainers.image.source": ci.source},
			},
		}
		if err := images.WriteTarball(spec, tar); err != nil {
			return err
		}
		if err := env.LoadImage(ctx, tar); err != nil {
			return err
		}
	}
	return nil
}

// runBuildScript runs one of the test/tools/*/build.sh (a no-op once built;
// rel names it in errors), one at a time per mu, and returns the last line it
// prints. Its stderr goes to logf (nil: dropped).
func runBuildScript(ctx context.Context, mu *sync.Mutex, script, rel string, logf func(string, ...any)) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	cmd := exec.CommandContext(ctx, script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", rel, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if s := strings.TrimSpace(stderr.String()); s != "" && logf != nil {
		logf("%s", s)
	}
	return lines[len(lines)-1], nil
}

// readObjects parses a multi-document YAML file (empty documents skipped).
func readObjects(file string) ([]*unstructured.Unstructured, error) {
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

// requiredVersion reads the version a go.mod requires of module.
func requiredVersion(gomod, module string) (string, error) {
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

// moduleDir returns the module cache directory of module@version, run in dir
// (go mod download is a no-op when it is there, else it downloads it through
// the module proxy).
func moduleDir(ctx context.Context, dir, modVersion string) (string, error) {
	cmd := exec.CommandContext(ctx, goCommand(), "mod", "download", "-json", modVersion)
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

// goCommand is $GO, else "go".
func goCommand() string {
	if p := os.Getenv("GO"); p != "" {
		return p
	}
	return "go"
}

// findRepo returns the repository root: given, $CHARTREUSE_REPO, or the
// nearest parent of the working directory whose go.mod is the project's.
func findRepo(given string) (string, error) {
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
