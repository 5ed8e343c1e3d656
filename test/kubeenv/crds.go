package kubeenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

// CRDSource is where the CRDs of an engine are: files matching Glob inside
// the directory of Module (a module of go.mod).
type CRDSource struct{ Module, Glob string }

// The engines' CRDs as their pinned modules ship them. Argo's "full" CRDs
// carry the complete schema, so the API server checks every field.
var (
	ArgoCRDs = []CRDSource{
		{"github.com/argoproj/argo-workflows/v3", "manifests/base/crds/full/argoproj.io_workflowtemplates.yaml"},
		{"github.com/argoproj/argo-workflows/v3", "manifests/base/crds/full/argoproj.io_workflows.yaml"},
	}
	TektonCRDs = []CRDSource{{"github.com/tektoncd/pipeline", "config/300-crds/300-*.yaml"}}
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// EnsureCRDs creates the CRDs of srcs that the cluster lacks (it never
// changes one that is there: a cluster running the real controllers keeps
// theirs) and waits until each serves.
func EnsureCRDs(ctx context.Context, dyn dynamic.Interface, fieldManager string, srcs ...CRDSource) error {
	var names []string
	for _, src := range srcs {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", src.Module).Output()
		if err != nil || strings.TrimSpace(string(out)) == "" {
			return fmt.Errorf("go list -m %s: %v", src.Module, err)
		}
		files, err := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), src.Glob))
		if err != nil || len(files) == 0 {
			return fmt.Errorf("no CRDs %s in %s", src.Glob, src.Module)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			objs, err := yamlObjects(b)
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			for _, o := range objs {
				if o.GetKind() != "CustomResourceDefinition" {
					continue
				}
				names = append(names, o.GetName())
				_, err := dyn.Resource(crdResource).Create(ctx, o, metav1.CreateOptions{FieldManager: fieldManager})
				if err != nil && !apierrors.IsAlreadyExists(err) {
					return fmt.Errorf("CRD %s: %w", o.GetName(), err)
				}
			}
		}
	}
	for _, n := range names {
		for {
			crd, err := dyn.Resource(crdResource).Get(ctx, n, metav1.GetOptions{})
			if err == nil && crdEstablished(crd) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CRD %s not established: %v (%w)", n, err, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

func crdEstablished(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// yamlObjects splits a multi-document YAML file into its objects.
func yamlObjects(b []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out []*unstructured.Unstructured
	for {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		m := map[string]any{}
		if err := yaml.Unmarshal(d, &m); err != nil {
			return nil, err
		}
		if len(m) > 0 {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
}
