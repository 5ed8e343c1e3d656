package helmchart

import (
	"bytes"
	"strings"
	"testing"

	action3 "helm.sh/helm/v3/pkg/action"
	loader3 "helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
)

// render3 does what Helm 3's `helm template shop charts/chartreuse -n shop` does, with
// Helm 3's SDK (helm.sh/helm/v3): the chart is apiVersion v2, which Helm 3 reads.
func render3(t testing.TB, vals map[string]any) (string, error) {
	t.Helper()
	c, err := loader3.Load(chartPath())
	if err != nil {
		t.Fatal(err)
	}
	install := action3.NewInstall(&action3.Configuration{})
	install.DryRun = true
	install.ClientOnly = true
	install.ReleaseName = "shop"
	install.Namespace = "shop"
	install.Replace = true
	install.KubeVersion = &chartutil.KubeVersion{Version: "v1.34.0", Major: "1", Minor: "34"}
	rel, err := install.Run(c, vals)
	if err != nil {
		return "", err
	}
	return rel.Manifest, nil
}

// TestHelm3 renders and lints the chart with Helm 3's SDK: the same objects as the
// sources, the same run as Helm 4 renders, lint clean, and the schema refusing.
func TestHelm3(t *testing.T) {
	for _, engine := range []string{"argo", "tekton"} {
		t.Run(engine, func(t *testing.T) {
			vals := ciValues(t, engine)
			m, err := render3(t, vals)
			if err != nil {
				t.Fatal(err)
			}
			want := sourceObjects(t, engine)
			n := 0
			var run []byte
			for _, o := range splitObjects(t, []byte(m)) {
				if o.obj.GetKind() == "ConfigMap" {
					run = normalised(t, o.raw)
					continue
				}
				n++
				w, ok := want[o.key()]
				if !ok {
					t.Errorf("%s: rendered, not in the sources", o.key())
				} else if !bytes.Equal(normalised(t, w.raw), normalised(t, o.raw)) {
					t.Errorf("%s: rendered by Helm 3, differs from its source", o.key())
				}
			}
			if n != len(want) {
				t.Errorf("%d objects rendered, %d in the sources", n, len(want))
			}
			for _, o := range splitObjects(t, []byte(mustRender(t, vals).Manifest)) {
				if o.obj.GetKind() == "ConfigMap" && !bytes.Equal(normalised(t, o.raw), run) {
					t.Errorf("the run's ConfigMap differs between Helm 3 and Helm 4:\n%s", firstDifference(string(run), string(normalised(t, o.raw))))
				}
			}
			lint := action3.NewLint()
			lint.Strict = true
			lint.Namespace = "shop"
			res := lint.Run([]string{chartPath()}, vals)
			for _, e := range res.Errors {
				t.Errorf("helm 3 lint: %v", e)
			}
			for _, m := range res.Messages {
				if !strings.Contains(m.Err.Error(), "icon is recommended") {
					t.Errorf("helm 3 lint: %s", m)
				}
			}
		})
	}
	_, err := render3(t, set(minimal("argo"), "onMigrateFailure", "Rollback"))
	if err == nil || !strings.Contains(err.Error(), "at '/onMigrateFailure': value must be one of 'keep-down', 'restore', 'rollback'") {
		t.Errorf("Helm 3 with onMigrateFailure=Rollback: want the schema's error, got %v", err)
	}
}
