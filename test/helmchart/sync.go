// Package helmchart keeps charts/chartreuse in step with the workflow definitions and
// tests it with Helm's Go SDK (helm.sh/helm/v4): lint, render for both engines, the
// values schema, and that the rendered WorkflowTemplate, Pipeline, Tasks and RBAC are
// the sources in workflowtemplates/ and tekton/, Argo's {{...}} and Tekton's $(...)
// untouched.
//
// The chart reads those manifests with .Files.Get from copies under
// charts/chartreuse/files/, which `go run ./test/cmd/chartsync` writes; the tests
// fail when a copy differs from its source or when a copy is left over.
package helmchart

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// ChartDir is the chart's directory, relative to the repository root.
const ChartDir = "charts/chartreuse"

// engines: the engine's name in the chart (files/<name>/) and the directory of its
// kustomization in the repository. Resources under triggers/ are left out: the chart
// starts runs itself, and the EventListener's ClusterRoleBinding needs per-namespace
// naming that the Tekton overlay does.
var engines = []struct{ name, dir string }{
	{"argo", "workflowtemplates"},
	{"tekton", "tekton"},
}

// Copies returns the chart's copies of the workflow manifests, keyed by their path
// relative to the repository root, with the content of their sources: every resource
// of workflowtemplates/kustomization.yaml and of tekton/kustomization.yaml but
// Tekton's triggers.
func Copies(root string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, e := range engines {
		b, err := os.ReadFile(filepath.Join(root, e.dir, "kustomization.yaml"))
		if err != nil {
			return nil, err
		}
		var k struct {
			Resources []string `json:"resources"`
		}
		if err := yaml.Unmarshal(b, &k); err != nil {
			return nil, fmt.Errorf("%s/kustomization.yaml: %w", e.dir, err)
		}
		for _, r := range k.Resources {
			if strings.HasPrefix(r, "triggers/") {
				continue
			}
			if path.IsAbs(r) || strings.HasPrefix(path.Clean(r), "..") || !strings.HasSuffix(r, ".yaml") {
				return nil, fmt.Errorf("%s/kustomization.yaml: resource %q is not a YAML file inside %s/", e.dir, r, e.dir)
			}
			src, err := os.ReadFile(filepath.Join(root, e.dir, filepath.FromSlash(r)))
			if err != nil {
				return nil, err
			}
			out[path.Join(ChartDir, "files", e.name, r)] = src
		}
	}
	return out, nil
}

// Stale lists the copies that differ from Copies(root) or are missing, and the files
// under charts/chartreuse/files/ that no source gives any more, sorted.
func Stale(root string, copies map[string][]byte) ([]string, error) {
	var stale []string
	for p, want := range copies {
		got, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
		if err != nil || !bytes.Equal(got, want) {
			stale = append(stale, p)
		}
	}
	filesDir := filepath.Join(root, ChartDir, "files")
	err := filepath.WalkDir(filesDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == filesDir {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if _, ok := copies[filepath.ToSlash(rel)]; !ok {
			stale = append(stale, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(stale)
	return stale, err
}

// Sync writes the copies and removes the left-over files; it returns what it changed.
func Sync(root string) ([]string, error) {
	copies, err := Copies(root)
	if err != nil {
		return nil, err
	}
	stale, err := Stale(root, copies)
	if err != nil {
		return nil, err
	}
	for _, p := range stale {
		full := filepath.Join(root, filepath.FromSlash(p))
		b, ok := copies[p]
		if !ok {
			if err := os.Remove(full); err != nil {
				return nil, err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			return nil, err
		}
	}
	return stale, nil
}
