package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/test/tektonembed"
)

// repoRoot is the repository root, seen from this package's directory.
const repoRoot = "../.."

// manifestDirs hold the manifests this package checks.
var manifestDirs = []string{"workflowtemplates", "tekton"}

// notObjects are YAML files in those directories that are not Kubernetes objects.
var notObjects = map[string]bool{
	"workflowtemplates/kustomization.yaml":           true,
	"tekton/kustomization.yaml":                      true,
	"workflowtemplates/examples/github-actions.yaml": true,
	// the Pipeline as written, with taskRefs: tekton/pipeline.yaml, generated from
	// it, is the one installed (tektonPipeline reads the source)
	tektonembed.SourceFile:          true,
	tektonembed.DatabasesSourceFile: true,
}

// doc is one YAML document of a manifest file.
type doc struct {
	File  string // relative to the repository root
	Index int    // position in the file
	Raw   []byte // the document's YAML
	Obj   *unstructured.Unstructured
}

func (d doc) String() string {
	return d.File + "#" + strconv.Itoa(d.Index) + " " + d.Obj.GetKind() + "/" + name(d.Obj)
}

func name(o *unstructured.Unstructured) string {
	if n := o.GetName(); n != "" {
		return n
	}
	return o.GetGenerateName() + "*"
}

// yamlFiles lists the YAML files under dir, relative to the repository root, sorted.
func yamlFiles(t testing.TB, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			rel, _ := filepath.Rel(repoRoot, path)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// splitYAML returns the non-empty documents of a YAML stream.
func splitYAML(b []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		var probe map[string]any
		if err := yaml.Unmarshal(d, &probe); err != nil {
			return nil, err
		}
		if len(probe) == 0 {
			continue
		}
		docs = append(docs, d)
	}
}

// loadDocs reads every Kubernetes object of the manifests.
func loadDocs(t testing.TB) []doc {
	t.Helper()
	var docs []doc
	for _, dir := range manifestDirs {
		for _, file := range yamlFiles(t, dir) {
			if notObjects[file] {
				continue
			}
			b, err := os.ReadFile(filepath.Join(repoRoot, file))
			if err != nil {
				t.Fatal(err)
			}
			parts, err := splitYAML(b)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			for i, raw := range parts {
				j, err := yaml.YAMLToJSON(raw)
				if err != nil {
					t.Fatalf("%s#%d: %v", file, i, err)
				}
				u := &unstructured.Unstructured{}
				if err := u.UnmarshalJSON(j); err != nil {
					t.Fatalf("%s#%d: not a Kubernetes object: %v", file, i, err)
				}
				docs = append(docs, doc{File: file, Index: i, Raw: raw, Obj: u})
			}
		}
	}
	if len(docs) == 0 {
		t.Fatal("no manifests found")
	}
	return docs
}

// docsOfKind returns the documents of one apiVersion/kind.
func docsOfKind(docs []doc, apiVersion, kind string) []doc {
	var out []doc
	for _, d := range docs {
		if d.Obj.GetAPIVersion() == apiVersion && d.Obj.GetKind() == kind {
			out = append(out, d)
		}
	}
	return out
}

// decodeStrict decodes a document into a typed object, refusing unknown fields.
func decodeStrict(t testing.TB, d doc, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(d.Raw, into); err != nil {
		t.Fatalf("%s: %v", d, err)
	}
}

// repoVersion is the VERSION file.
func repoVersion(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
