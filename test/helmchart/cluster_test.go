package helmchart

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
)

const fieldManager = "chartreuse-test-helmchart"

// withCRDs is the shared test cluster, its REST config and a dynamic client, with
// the engines' CRDs in place.
func withCRDs(t *testing.T) (*kubeenv.Env, *rest.Config, dynamic.Interface) {
	t.Helper()
	env := kubeenv.Shared(t)
	cfg, err := env.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := kubeenv.EnsureCRDs(ctx, dyn, fieldManager, append(kubeenv.ArgoCRDs, kubeenv.TektonCRDs...)...); err != nil {
		t.Fatal(err)
	}
	return env, cfg, dyn
}

// TestOnCluster, on the real kube-apiserver of the test environment with the pinned
// engines' CRDs: every object the chart renders for each engine passes a server-side
// dry-run apply with strict field validation, and so does the creation of the run
// its ConfigMap holds; then Helm's SDK installs the chart for real, upgrades it with
// other values and uninstalls it, and the WorkflowTemplate / Pipeline stored in the
// cluster is its source, expressions included.
func TestOnCluster(t *testing.T) {
	env, cfg, dyn := withCRDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))

	for _, engine := range []string{"argo", "tekton"} {
		t.Run(engine, func(t *testing.T) {
			ns := env.NewNamespace(t)
			// No engine controller here: the hook is TestHelmArgo's.
			vals := set(ciValues(t, engine), "hook.enabled", false)
			rel := mustRender(t, vals)
			objs := splitObjects(t, []byte(rel.Manifest))
			_, run := runOf(t, rel)
			objs = append(objs, splitObjects(t, run)...)
			for _, o := range objs {
				if err := serverDryRun(ctx, dyn, mapper, ns, o.obj); err != nil {
					t.Errorf("%s: server-side dry run: %v", o.key(), err)
				}
			}

			helmInstallUpgradeUninstall(ctx, t, env.State().Kubeconfig, ns, engine, vals, dyn, mapper)
		})
		// the run of a databases list passes the server's strict validation too
		t.Run(engine+"-list", func(t *testing.T) {
			ns := env.NewNamespace(t)
			vals := set(set(set(ciValues(t, engine), "hook.enabled", false), "patroni.enabled", false), "databases.list",
				[]any{map[string]any{"secret": "orders-db"}, map[string]any{"secret": "billing-db", "dir": "db/billing"}})
			_, run := runOf(t, mustRender(t, vals))
			for _, o := range splitObjects(t, run) {
				if err := serverDryRun(ctx, dyn, mapper, ns, o.obj); err != nil {
					t.Errorf("%s: server-side dry run: %v", o.key(), err)
				}
			}
		})
	}
}

// serverDryRun applies u in ns as `kubectl apply --server-side --dry-run=server
// --validate=strict` does; an object with only generateName is created (dry run), as
// `kubectl create` does.
func serverDryRun(ctx context.Context, dyn dynamic.Interface, mapper meta.RESTMapper, ns string, u *unstructured.Unstructured) error {
	gvk := u.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	u = u.DeepCopy()
	u.SetNamespace(ns)
	ri := dyn.Resource(m.Resource).Namespace(ns)
	dryRun := []string{metav1.DryRunAll}
	if u.GetName() == "" {
		_, err = ri.Create(ctx, u, metav1.CreateOptions{DryRun: dryRun, FieldManager: fieldManager, FieldValidation: "Strict"})
		return err
	}
	body, err := json.Marshal(u)
	if err != nil {
		return err
	}
	force := true
	_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{DryRun: dryRun, FieldManager: fieldManager, Force: &force, FieldValidation: "Strict"})
	return err
}

func helmConfig(t *testing.T, kubeconfig, ns string) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &kubeconfig
	flags.Namespace = &ns
	cfg := action.NewConfiguration()
	if err := cfg.Init(flags, ns, "secret"); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// helmInstallUpgradeUninstall: `helm install`, `helm upgrade` with other values, and
// `helm uninstall` of the chart in ns, checking what the cluster holds after each.
func helmInstallUpgradeUninstall(ctx context.Context, t *testing.T, kubeconfig, ns, engine string, vals map[string]any, dyn dynamic.Interface, mapper meta.RESTMapper) {
	t.Helper()
	cfg := helmConfig(t, kubeconfig, ns)
	c := loadChart(t)

	install := action.NewInstall(cfg)
	install.ReleaseName = "shop"
	install.Namespace = ns
	install.WaitStrategy = kube.HookOnlyStrategy
	install.Timeout = 2 * time.Minute
	if _, err := install.RunWithContext(ctx, c, vals); err != nil {
		t.Fatalf("helm install: %v", err)
	}

	// The engine's definition, as stored, is its source (the server adds no field to
	// these CRs' specs; metadata aside).
	kind, name := "WorkflowTemplate", "chartreuse"
	gvk := schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: kind}
	if engine == "tekton" {
		kind = "Pipeline"
		gvk = schema.GroupVersionKind{Group: "tekton.dev", Version: "v1", Kind: kind}
	}
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := dyn.Resource(m.Resource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("%s/%s after helm install: %v", kind, name, err)
	}
	src := sourceObjects(t, engine)[kind+"/"+name]
	gotSpec, _ := yaml.Marshal(stored.Object["spec"])
	wantSpec, _ := yaml.Marshal(src.obj.Object["spec"])
	if !bytes.Equal(normalised(t, gotSpec), normalised(t, wantSpec)) {
		t.Errorf("%s/%s stored in the cluster differs from its source:\n%s", kind, name, firstDifference(string(normalised(t, gotSpec)), string(normalised(t, wantSpec))))
	}
	if stored.GetAnnotations()["meta.helm.sh/release-name"] != "shop" {
		t.Errorf("%s/%s: annotations %v, want Helm's release-name shop", kind, name, stored.GetAnnotations())
	}

	// helm upgrade with another failure policy: the run's ConfigMap follows.
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = ns
	upgrade.WaitStrategy = kube.HookOnlyStrategy
	upgrade.Timeout = 2 * time.Minute
	if _, err := upgrade.RunWithContext(ctx, "shop", c, set(vals, "onMigrateFailure", "keep-down")); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	cm, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace(ns).Get(ctx, "shop-chartreuse-run", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	run, _, _ := unstructured.NestedString(cm.Object, "data", "run.yaml")
	if !strings.Contains(run, "value: keep-down\n") {
		t.Errorf("after helm upgrade with onMigrateFailure=keep-down, the run is:\n%s", run)
	}

	// A bad value is refused by the schema: the release stays at revision 2.
	if _, err := action.NewUpgrade(cfg).RunWithContext(ctx, "shop", c, set(vals, "timeouts.wait", "five minutes")); err == nil || !strings.Contains(err.Error(), "/timeouts/wait") {
		t.Errorf("helm upgrade with timeouts.wait='five minutes': want the schema's error, got %v", err)
	}
	if h, err := action.NewHistory(cfg).Run("shop"); err != nil || len(h) != 2 {
		t.Errorf("release history after a refused upgrade: %d revisions (%v), want 2", len(h), err)
	}

	uninstall := action.NewUninstall(cfg)
	uninstall.WaitStrategy = kube.HookOnlyStrategy
	uninstall.Timeout = 2 * time.Minute
	if _, err := uninstall.Run("shop"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	if _, err = dyn.Resource(m.Resource).Namespace(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("%s/%s after helm uninstall: %v, want NotFound", kind, name, err)
	}
}
