package manifests

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// kubectl finds a kubectl: the test environment's build, else PATH.
func kubectl(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("CHARTREUSE_KUBE_BIN"); dir != "" {
		if p := filepath.Join(dir, "kubectl"); fileExists(p) {
			return p
		}
	}
	if m, _ := filepath.Glob(filepath.Join(repoRoot, ".cache", "kube-*", "bin", "kubectl")); len(m) > 0 {
		return m[len(m)-1]
	}
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p
	}
	t.Skip("no kubectl to run kustomize with (build it with test/tools/kube/build.sh)")
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestKustomizations builds both kustomizations with kubectl's kustomize and checks
// that they hold every object of their directory except the examples, and that the
// Tekton one moves everything, the ClusterRoleBinding's subject included, into its
// namespace.
func TestKustomizations(t *testing.T) {
	k := kubectl(t)
	all := loadDocs(t)
	for _, dir := range manifestDirs {
		t.Run(dir, func(t *testing.T) {
			out, err := exec.Command(k, "kustomize", filepath.Join(repoRoot, dir)).Output()
			if err != nil {
				if ee, ok := err.(*exec.ExitError); ok {
					t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, ee.Stderr)
				}
				t.Fatal(err)
			}
			parts, err := splitYAML(out)
			if err != nil {
				t.Fatal(err)
			}
			var got, want []string
			var built []*unstructured.Unstructured
			for _, p := range parts {
				j, _ := yaml.YAMLToJSON(p)
				u := &unstructured.Unstructured{}
				if err := u.UnmarshalJSON(j); err != nil {
					t.Fatal(err)
				}
				built = append(built, u)
				got = append(got, u.GetKind()+"/"+u.GetName())
			}
			for _, d := range all {
				if strings.HasPrefix(d.File, dir+"/") && !strings.HasPrefix(d.File, dir+"/examples/") {
					want = append(want, d.Obj.GetKind()+"/"+d.Obj.GetName())
				}
			}
			sort.Strings(got)
			sort.Strings(want)
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("kustomize build has\n  %v\nthe directory has\n  %v", got, want)
			}
			if dir != "tekton" {
				return
			}
			for _, u := range built {
				if u.GetKind() == "ClusterRoleBinding" {
					subjects, _, _ := unstructured.NestedSlice(u.Object, "subjects")
					for _, s := range subjects {
						if ns := s.(map[string]any)["namespace"]; ns != "app" {
							t.Errorf("ClusterRoleBinding %s: subject namespace %v, want the kustomization's (app)", u.GetName(), ns)
						}
					}
				} else if u.GetNamespace() != "app" {
					t.Errorf("%s/%s: namespace %q, want app", u.GetKind(), u.GetName(), u.GetNamespace())
				}
			}
		})
	}
}
