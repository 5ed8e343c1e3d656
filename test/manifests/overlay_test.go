package manifests

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The namespace overlay (examples/tekton-namespace) is built with kustomize's own Go
// API: sigs.k8s.io/kustomize/api v0.19.0 (kustomize v5.6.0), the newest that builds
// with this module's k8s.io versions (v0.20.x, kubectl 1.34's kustomize v5.7.1, moves
// kube-openapi, structured-merge-diff and go-openapi forward; v0.21.3 needs Go 1.27).

// clusterScoped are the kinds of the Tekton manifests that have no namespace.
var clusterScoped = []string{"ClusterRole", "ClusterRoleBinding"}

func kustomizeBuild(t *testing.T, dir string) resmap.ResMap {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return m
}

// TestNamespaceOverlay builds the overlay as shipped (namespace shop) and as its
// comment tells a user to copy it (another directory, another namespace, the base by
// its path from there): every object of tekton/ is there, every namespaced one in the
// chosen namespace, every ServiceAccount subject of a (Cluster)RoleBinding follows,
// and the ClusterRoleBinding is named after the namespace.
func TestNamespaceOverlay(t *testing.T) {
	base := kustomizeBuild(t, filepath.Join(repoRoot, "tekton"))
	shipped := filepath.Join(repoRoot, "examples", "tekton-namespace")
	b, err := os.ReadFile(filepath.Join(shipped, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tektonDir, err := filepath.Abs(filepath.Join(repoRoot, "tekton"))
	if err != nil {
		t.Fatal(err)
	}
	copied := t.TempDir()
	y := strings.ReplaceAll(string(b), "shop", "team-a")
	if !strings.Contains(y, "  - ../../tekton\n") {
		t.Fatalf("the overlay's resources are not ../../tekton:\n%s", b)
	}
	rel, err := filepath.Rel(copied, tektonDir) // kustomize refuses an absolute base
	if err != nil {
		t.Fatal(err)
	}
	y = strings.Replace(y, "  - ../../tekton\n", "  - "+rel+"\n", 1)
	if err := os.WriteFile(filepath.Join(copied, "kustomization.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ dir, ns string }{{shipped, "shop"}, {copied, "team-a"}} {
		t.Run(tc.ns, func(t *testing.T) {
			built := kustomizeBuild(t, tc.dir)
			var want, got []string
			for _, r := range base.Resources() {
				name := r.GetName()
				if r.GetKind() == "ClusterRoleBinding" {
					name += "-" + tc.ns
				}
				want = append(want, r.GetKind()+"/"+name)
			}
			for _, r := range built.Resources() {
				got = append(got, r.GetKind()+"/"+r.GetName())
				where := r.GetKind() + "/" + r.GetName()
				if slices.Contains(clusterScoped, r.GetKind()) {
					if r.GetNamespace() != "" {
						t.Errorf("%s: cluster-scoped, namespace %q", where, r.GetNamespace())
					}
				} else if r.GetNamespace() != tc.ns {
					t.Errorf("%s: namespace %q, want %s", where, r.GetNamespace(), tc.ns)
				}
				if k := r.GetKind(); k != "RoleBinding" && k != "ClusterRoleBinding" {
					continue
				}
				obj, err := r.Map()
				if err != nil {
					t.Fatal(err)
				}
				subjects, _ := obj["subjects"].([]any)
				if len(subjects) == 0 {
					t.Errorf("%s: no subjects", where)
				}
				for _, s := range subjects {
					s := s.(map[string]any)
					if s["kind"] == "ServiceAccount" && s["namespace"] != tc.ns {
						t.Errorf("%s: subject ServiceAccount %v in namespace %v, want %s", where, s["name"], s["namespace"], tc.ns)
					}
				}
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("the overlay builds\n  %v\ntekton/ builds\n  %v", got, want)
			}
			if len(got) < 15 {
				t.Errorf("only %d objects", len(got))
			}
		})
	}
}
