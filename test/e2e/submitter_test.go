package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/rbacrules"
)

// The CI submitter (issue 12, item 12): each engine's examples hold a
// ServiceAccount chartreuse-submitter and its Role, for CI to start runs with.
// TestSubmitterPermissions asks the API server what it may do; the CLI tests
// (cli_test.go) run submit.sh and the Tekton CI commands with its token.

const submitterSA = "chartreuse-submitter"

var submitterFiles = map[string]string{
	"argo":   "workflowtemplates/examples/submitter-rbac.yaml",
	"tekton": "tekton/examples/submitter-rbac.yaml",
}

// applySubmitter applies an engine's submitter-rbac.yaml to ns as its comment
// says (kubectl apply -n <ns> -f <file>, as the cluster's admin).
func applySubmitter(t *testing.T, env *kubeenv.Env, repo, engine, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(env.State().KubeBinDir, "kubectl"), "--kubeconfig", env.Kubeconfig,
		"apply", "-n", ns, "-f", filepath.Join(repo, submitterFiles[engine])).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply -f %s: %v\n%s", submitterFiles[engine], err, out)
	}
}

// submitterKubeconfig applies the engine's submitter RBAC to ns, asks for a
// token of its ServiceAccount (kubectl create token does the same) and writes
// a kubeconfig holding only that token. It returns "KUBECONFIG=<file>", for a
// CI job's environment.
func submitterKubeconfig(t *testing.T, env *kubeenv.Env, kube kubernetes.Interface, repo, engine, ns string) string {
	t.Helper()
	applySubmitter(t, env, repo, engine, ns)
	tr, err := kube.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), submitterSA,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := env.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	ca := admin.CAData
	if len(ca) == 0 && admin.CAFile != "" {
		if ca, err = os.ReadFile(admin.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cluster"] = &clientcmdapi.Cluster{Server: admin.Host, CertificateAuthorityData: ca}
	cfg.AuthInfos[submitterSA] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["ci"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: submitterSA, Namespace: ns}
	cfg.CurrentContext = "ci"
	f := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, f); err != nil {
		t.Fatal(err)
	}
	return "KUBECONFIG=" + f
}

// reviewBeyond is what ServiceAccount sa of ns may do there (reviewAs) that is
// not in baseline (what every ServiceAccount may).
func reviewBeyond(t *testing.T, ctx context.Context, admin *rest.Config, ns, sa string, baseline []string) []string {
	t.Helper()
	var out []string
	for _, r := range reviewAs(t, ctx, admin, ns, serviceAccountUser(ns, sa), nil) {
		if !slices.Contains(baseline, r) {
			out = append(out, r)
		}
	}
	return out
}

// rbacSettle bounds how long settledReview asks again.
const rbacSettle = 30 * time.Second

// settledReview is reviewBeyond asked until it answers want, for at most
// rbacSettle; it returns the last answer. The API server's RBAC authorizer
// reads Roles and RoleBindings through its own informers, so a review just
// after kubectl apply can show none of them yet (the CI of 8f7cd51 saw
// "may: []" 0.6 s after applying the submitter's Role). A wrong Role still
// fails, only later.
func settledReview(t *testing.T, ctx context.Context, admin *rest.Config, ns, sa string, baseline, want []string) []string {
	t.Helper()
	settle, cancel := context.WithTimeout(ctx, rbacSettle)
	defer cancel()
	var got []string
	_ = Poll(settle, 250*time.Millisecond, func() (bool, error) {
		got = reviewBeyond(t, ctx, admin, ns, sa, baseline)
		return slices.Equal(got, want), nil
	})
	return got
}

// TestSubmitterPermissions applies each engine's submitter RBAC to a fresh
// namespace and asks the API server (a rules review as the ServiceAccount) what
// it may do there besides what every ServiceAccount may: exactly its Role
// (rbacrules), so no write on pods and nothing on Secrets.
func TestSubmitterPermissions(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the real cluster (not run with -short)")
	}
	env := kubeenv.Shared(t)
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"argo":   rbacrules.Expand(rbacrules.ArgoSubmitter),
		"tekton": rbacrules.Expand(rbacrules.TektonSubmitter),
	}
	for _, engine := range []string{"argo", "tekton"} {
		t.Run(engine, func(t *testing.T) {
			ns := env.NewNamespace(t)
			applySubmitter(t, env, repo, engine, ns)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			baseline := reviewAs(t, ctx, cfg, ns, serviceAccountUser(ns, "chartreuse-test-unbound"), nil)
			got := settledReview(t, ctx, cfg, ns, submitterSA, baseline, want[engine])
			t.Logf("%s may: %v", submitterFiles[engine], got)
			if !slices.Equal(got, want[engine]) {
				t.Errorf("%s may\n  %v\nwant exactly\n  %v", submitterSA, got, want[engine])
			}
			for _, g := range got {
				verb, res, _ := strings.Cut(g, " ")
				pods := res == "/pods" || strings.HasPrefix(res, "/pods/")
				if pods && res != "/pods/log" && !slices.Contains([]string{"get", "list", "watch"}, verb) || res == "/secrets" || strings.HasPrefix(res, "/secrets") || strings.Contains(res, "*") {
					t.Errorf("%s may %s", submitterSA, g)
				}
			}
		})
	}
}
