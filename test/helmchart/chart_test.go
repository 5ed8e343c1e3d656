package helmchart

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	release "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository root, seen from this package's directory.
const repoRoot = "../.."

func chartPath() string { return filepath.Join(repoRoot, ChartDir) }

// minimal are the fewest values the schema accepts for an engine.
func minimal(engine string) map[string]any {
	return map[string]any{
		"engine":    engine,
		"database":  map[string]any{"secret": "shop-db"},
		"workloads": map[string]any{"selector": "app.kubernetes.io/name=shop"},
	}
}

// ciValues reads charts/chartreuse/ci/<engine>-values.yaml, the typical values.
func ciValues(t testing.TB, engine string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartPath(), "ci", engine+"-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	v := map[string]any{}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartPath())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// render does what `helm template shop charts/chartreuse -n shop` does, with Helm's
// SDK: values merged with the chart's, checked against values.schema.json, rendered.
func render(t testing.TB, c *chart.Chart, vals map[string]any) (*release.Release, error) {
	t.Helper()
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = "shop"
	install.Namespace = "shop"
	install.Replace = true
	r, err := install.Run(c, vals)
	if err != nil {
		return nil, err
	}
	switch rel := r.(type) {
	case *release.Release:
		return rel, nil
	case release.Release:
		return &rel, nil
	}
	t.Fatalf("release of type %T", r)
	return nil, nil
}

func mustRender(t testing.TB, vals map[string]any) *release.Release {
	t.Helper()
	rel, err := render(t, loadChart(t), vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return rel
}

// object is one YAML document of a manifest.
type object struct {
	raw []byte
	obj *unstructured.Unstructured
}

func (o object) key() string { return o.obj.GetKind() + "/" + o.obj.GetName() }

// splitObjects returns the documents of a YAML stream that hold an object.
func splitObjects(t testing.TB, b []byte) []object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out []object
	for {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]any{}
		if err := yaml.Unmarshal(d, &m); err != nil {
			t.Fatalf("%v in\n%s", err, d)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, object{raw: d, obj: &unstructured.Unstructured{Object: m}})
	}
}

// normalised is a document as canonical JSON (keys sorted, no comments, one spelling
// per scalar): two documents are the same YAML exactly when these bytes are equal.
func normalised(t testing.TB, doc []byte) []byte {
	t.Helper()
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sourceObjects are the objects of the source manifests the chart installs for an
// engine, read from workflowtemplates/ or tekton/ themselves (not from the copies).
func sourceObjects(t testing.TB, engine string) map[string]object {
	t.Helper()
	copies, err := Copies(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	dir := map[string]string{"argo": "workflowtemplates", "tekton": "tekton"}[engine]
	out := map[string]object{}
	prefix := ChartDir + "/files/" + engine + "/"
	for p := range copies {
		rel, ok := strings.CutPrefix(p, prefix)
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(repoRoot, dir, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range splitObjects(t, b) {
			out[o.key()] = o
		}
	}
	return out
}

// TestCopiesAreCurrent fails while charts/chartreuse/files/ differs from the sources.
func TestCopiesAreCurrent(t *testing.T) {
	copies, err := Copies(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	if len(copies) < 10 {
		t.Fatalf("only %d manifests to copy: %v", len(copies), copies)
	}
	stale, err := Stale(repoRoot, copies)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) > 0 {
		t.Fatalf("charts/chartreuse/files/ is out of date (run `go run ./test/cmd/chartsync`): %s", strings.Join(stale, ", "))
	}
}

// TestLint runs Helm's linter (`helm lint --strict`) with the typical values of each
// engine: no error, no warning, and no information but the missing icon.
func TestLint(t *testing.T) {
	for _, engine := range []string{"argo", "tekton"} {
		t.Run(engine, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict = true
			lint.Namespace = "shop"
			res := lint.Run([]string{chartPath()}, ciValues(t, engine))
			for _, m := range res.Messages {
				if m.Severity == support.InfoSev && strings.Contains(m.Err.Error(), "icon is recommended") {
					continue
				}
				t.Errorf("lint: %s", m)
			}
			for _, err := range res.Errors {
				t.Errorf("lint error: %v", err)
			}
			if res.TotalChartsLinted != 1 {
				t.Errorf("linted %d charts, want 1", res.TotalChartsLinted)
			}
		})
	}
	// Without a database Secret the chart is not usable: lint says so, naming the value.
	res := action.NewLint().Run([]string{chartPath()}, nil)
	if len(res.Errors) == 0 || !strings.Contains(errors.Join(res.Errors...).Error(), "/database/secret") {
		t.Errorf("lint with the default values: want an error naming /database/secret, got %v", res.Errors)
	}
}

// TestManifestsAreTheSources: what the chart installs for each engine is exactly the
// engine's manifests in workflowtemplates/ or tekton/ (triggers aside), object for
// object, equal after YAML normalisation; Argo's {{...}} and Tekton's $(...) included.
func TestManifestsAreTheSources(t *testing.T) {
	for _, engine := range []string{"argo", "tekton"} {
		for name, vals := range map[string]map[string]any{"minimal": minimal(engine), "typical": ciValues(t, engine)} {
			t.Run(engine+"/"+name, func(t *testing.T) {
				rel := mustRender(t, vals)
				want := sourceObjects(t, engine)
				got := map[string]object{}
				for _, o := range splitObjects(t, []byte(rel.Manifest)) {
					if o.obj.GetKind() == "ConfigMap" && o.obj.GetName() == "shop-chartreuse-run" {
						continue
					}
					if _, dup := got[o.key()]; dup {
						t.Errorf("%s rendered twice", o.key())
					}
					got[o.key()] = o
				}
				for k, w := range want {
					g, ok := got[k]
					if !ok {
						t.Errorf("%s: in the sources, not rendered", k)
						continue
					}
					if gn, wn := normalised(t, g.raw), normalised(t, w.raw); !bytes.Equal(gn, wn) {
						t.Errorf("%s: rendered differs from its source:\n%s", k, firstDifference(string(gn), string(wn)))
					}
				}
				for k := range got {
					if _, ok := want[k]; !ok {
						t.Errorf("%s: rendered, not in the sources", k)
					}
				}
				// The hooks are the chart's own (TestHooksRendered).
			})
		}
	}
}

// TestTemplateExpressionsSurvive counts the engines' own expressions in the sources
// and in the rendered manifest: each one reaches the cluster as written.
func TestTemplateExpressionsSurvive(t *testing.T) {
	for _, tc := range []struct{ engine, open string }{{"argo", "{{"}, {"tekton", "$("}} {
		rel := mustRender(t, ciValues(t, tc.engine))
		var src, rendered int
		for _, o := range sourceObjects(t, tc.engine) {
			src += bytes.Count(normalised(t, o.raw), []byte(tc.open))
		}
		for _, o := range splitObjects(t, []byte(rel.Manifest)) {
			if o.obj.GetKind() != "ConfigMap" {
				rendered += bytes.Count(normalised(t, o.raw), []byte(tc.open))
			}
		}
		if src < 50 || rendered != src {
			t.Errorf("%s: %d %q expressions in the sources, %d rendered", tc.engine, src, tc.open, rendered)
		}
	}
	for _, expr := range []string{"{{workflow.parameters.database-secret}}", "{{=", "{{inputs.parameters."} {
		if rel := mustRender(t, minimal("argo")); !strings.Contains(rel.Manifest, expr) {
			t.Errorf("argo: %q not in the rendered manifest", expr)
		}
	}
	if rel := mustRender(t, minimal("tekton")); !strings.Contains(rel.Manifest, "$(params.database-secret)") {
		t.Errorf("tekton: $(params.database-secret) not in the rendered manifest")
	}
}

func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) && i < len(w); i++ {
		if g[i] != w[i] {
			return "line " + itoa(i+1) + ":\n rendered: " + g[i] + "\n source:   " + w[i]
		}
	}
	return "rendered has " + itoa(len(g)) + " lines, source " + itoa(len(w))
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// runOf returns the Workflow or PipelineRun in the release's run ConfigMap.
func runOf(t testing.TB, rel *release.Release) (engine string, run []byte) {
	t.Helper()
	for _, o := range splitObjects(t, []byte(rel.Manifest)) {
		if o.obj.GetKind() != "ConfigMap" || o.obj.GetName() != "shop-chartreuse-run" {
			continue
		}
		data, _, _ := unstructured.NestedStringMap(o.obj.Object, "data")
		return data["engine"], []byte(data["run.yaml"])
	}
	t.Fatal("no ConfigMap shop-chartreuse-run rendered")
	return "", nil
}

// TestRunHasEveryParameter: the run the chart describes gives every parameter of the
// WorkflowTemplate / Pipeline, and nothing else, with the values set; it decodes
// strictly into the engine's own types.
func TestRunHasEveryParameter(t *testing.T) {
	// argo
	wft := sourceObjects(t, "argo")["WorkflowTemplate/chartreuse"]
	var tmpl wfv1.WorkflowTemplate
	if err := yaml.UnmarshalStrict(wft.raw, &tmpl); err != nil {
		t.Fatal(err)
	}
	var argoParams []string
	for _, p := range tmpl.Spec.Arguments.Parameters {
		argoParams = append(argoParams, p.Name)
	}
	engine, run := runOf(t, mustRender(t, ciValues(t, "argo")))
	if engine != "argo" {
		t.Errorf("engine %q, want argo", engine)
	}
	var wf wfv1.Workflow
	if err := yaml.UnmarshalStrict(run, &wf); err != nil {
		t.Fatalf("the run is no Workflow: %v\n%s", err, run)
	}
	if wf.Spec.WorkflowTemplateRef == nil || wf.Spec.WorkflowTemplateRef.Name != "chartreuse" || wf.GenerateName != "shop-chartreuse-" {
		t.Errorf("Workflow: generateName %q, workflowTemplateRef %+v", wf.GenerateName, wf.Spec.WorkflowTemplateRef)
	}
	got := map[string]string{}
	var names []string
	for _, p := range wf.Spec.Arguments.Parameters {
		names = append(names, p.Name)
		if p.Value == nil {
			t.Errorf("parameter %s has no value", p.Name)
			continue
		}
		got[p.Name] = p.Value.String()
	}
	sameSet(t, "argo parameters", names, argoParams)
	for k, v := range map[string]string{
		"database-secret": "shop-db", "workload-selector": "app.kubernetes.io/name=shop", "workload": "cronjob/report",
		"stop-workloads": "auto", "on-migrate-failure": "rollback", "risk-policy": "fail", "statement-timeout": "5m",
		"image":      "registry.example.com/shop-migrations:1.4.0@sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
		"wait-ready": "true", "patroni": "false", "lock-timeout": "10s", "run-id": "",
	} {
		if got[k] != v {
			t.Errorf("argo parameter %s = %q, want %q", k, got[k], v)
		}
	}

	// tekton
	pl := sourceObjects(t, "tekton")["Pipeline/chartreuse"]
	var pipeline tektonv1.Pipeline
	if err := yaml.UnmarshalStrict(pl.raw, &pipeline); err != nil {
		t.Fatal(err)
	}
	var tektonParams []string
	for _, p := range pipeline.Spec.Params {
		if p.Name != "run-id" { // given only when set: its default is the PipelineRun's name
			tektonParams = append(tektonParams, p.Name)
		}
	}
	engine, run = runOf(t, mustRender(t, ciValues(t, "tekton")))
	if engine != "tekton" {
		t.Errorf("engine %q, want tekton", engine)
	}
	var pr tektonv1.PipelineRun
	if err := yaml.UnmarshalStrict(run, &pr); err != nil {
		t.Fatalf("the run is no PipelineRun: %v\n%s", err, run)
	}
	got = map[string]string{}
	names = nil
	for _, p := range pr.Spec.Params {
		names = append(names, p.Name)
		got[p.Name] = p.Value.StringVal
	}
	sameSet(t, "tekton parameters", names, tektonParams)
	for k, v := range map[string]string{
		"database-secret": "shop-db", "migrations-dir": "db/migrations", "git-url": "https://github.com/acme/shop.git",
		"git-revision": "v1.4.0", "on-migrate-failure": "restore", "patroni": "true", "patroni-url": "http://shop-db:8008",
		"stop-workloads": "true", "gate-timeout": "1h",
	} {
		if got[k] != v {
			t.Errorf("tekton parameter %s = %q, want %q", k, got[k], v)
		}
	}
	if pr.Spec.PipelineRef == nil || pr.Spec.PipelineRef.Name != "chartreuse" {
		t.Errorf("PipelineRun: pipelineRef %+v", pr.Spec.PipelineRef)
	}
	if pr.Spec.Timeouts == nil || pr.Spec.Timeouts.Pipeline == nil || pr.Spec.Timeouts.Pipeline.Duration != 0 {
		t.Errorf("PipelineRun: timeouts %+v, want pipeline 0 (no run-level timeout)", pr.Spec.Timeouts)
	}
	pod := pr.Spec.TaskRunTemplate.PodTemplate
	if pr.Spec.TaskRunTemplate.ServiceAccountName != "chartreuse-pipeline" || pod == nil ||
		len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "registry-credentials" {
		t.Errorf("PipelineRun: taskRunTemplate %+v", pr.Spec.TaskRunTemplate)
	}
	sa := map[string]string{}
	for _, s := range pr.Spec.TaskRunSpecs {
		sa[s.PipelineTaskName] = s.ServiceAccountName
	}
	for task, want := range map[string]string{"gate": "chartreuse-gate", "release-gate": "chartreuse-gate", "plan": "chartreuse-pipeline-migrate", "migrate": "chartreuse-pipeline-migrate", "record-accepted": "chartreuse-pipeline-migrate"} {
		if sa[task] != want {
			t.Errorf("PipelineRun: task %s runs as %q, want %q", task, sa[task], want)
		}
	}
	// The taskRunSpecs name tasks of the Pipeline (a rename there must show here).
	var tasks []string
	for _, pt := range append(pipeline.Spec.Tasks, pipeline.Spec.Finally...) {
		tasks = append(tasks, pt.Name)
	}
	for task := range sa {
		if !slices.Contains(tasks, task) {
			t.Errorf("taskRunSpecs name %s, which the Pipeline has not", task)
		}
	}

	// A run-id that is set reaches the PipelineRun.
	vals := minimal("tekton")
	vals["runId"] = "release-1.4.0"
	_, run = runOf(t, mustRender(t, vals))
	pr = tektonv1.PipelineRun{}
	if err := yaml.UnmarshalStrict(run, &pr); err != nil {
		t.Fatal(err)
	}
	runID := "(not passed)"
	for _, p := range pr.Spec.Params {
		if p.Name == "run-id" {
			runID = p.Value.StringVal
		}
	}
	if runID != "release-1.4.0" {
		t.Errorf("run-id set to release-1.4.0, passed as %s", runID)
	}
}

func sameSet(t testing.TB, what string, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	sort.Strings(g)
	sort.Strings(w)
	if !slices.Equal(g, w) {
		t.Errorf("%s: got %v, want %v", what, g, w)
	}
}

// set returns a copy of vals with path (a.b.c) set to v; v nil deletes the key.
func set(vals map[string]any, path string, v any) map[string]any {
	b, _ := json.Marshal(vals)
	out := map[string]any{}
	_ = json.Unmarshal(b, &out)
	m := out
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	if v == nil {
		delete(m, keys[len(keys)-1])
	} else {
		m[keys[len(keys)-1]] = v
	}
	return out
}

// TestRunOfAList: with databases.list the run migrates the list. Argo: the
// WorkflowTemplate's databases, parallelism and canary parameters; Tekton: a
// PipelineRun of chartreuse-databases setting exactly parameters that Pipeline
// declares, with its tasks' ServiceAccounts as tekton/examples sets them.
func TestRunOfAList(t *testing.T) {
	list := []any{map[string]any{"secret": "orders-db", "dir": "/migrations/orders"}, map[string]any{"secret": "billing-db", "key": "dsn"}}
	withList := func(engine string) map[string]any {
		return set(set(set(set(minimal(engine), "database.secret", ""), "databases.list", list), "databases.parallelism", 4), "databases.canary", false)
	}
	const want = `[{"dir":"/migrations/orders","secret":"orders-db"},{"key":"dsn","secret":"billing-db"}]`

	_, run := runOf(t, mustRender(t, withList("argo")))
	var wf wfv1.Workflow
	if err := yaml.UnmarshalStrict(run, &wf); err != nil {
		t.Fatalf("the run is no Workflow: %v\n%s", err, run)
	}
	got := map[string]string{}
	for _, p := range wf.Spec.Arguments.Parameters {
		got[p.Name] = p.Value.String()
	}
	for k, v := range map[string]string{"databases": want, "parallelism": "4", "canary": "false", "database-secret": ""} {
		if got[k] != v {
			t.Errorf("argo parameter %s = %q, want %q", k, got[k], v)
		}
	}

	pl := sourceObjects(t, "tekton")["Pipeline/chartreuse-databases"]
	var pipeline tektonv1.Pipeline
	if err := yaml.UnmarshalStrict(pl.raw, &pipeline); err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, p := range pipeline.Spec.Params {
		if p.Name != "run-id" {
			declared = append(declared, p.Name)
		}
	}
	rel := mustRender(t, withList("tekton"))
	// the hook may read the list's Pipeline (its --check-declared), and no other
	var readsPipeline []string
	for _, h := range rel.Hooks {
		for _, o := range splitObjects(t, []byte(h.Manifest)) {
			if o.obj.GetKind() != "Role" {
				continue
			}
			rules, _, _ := unstructured.NestedSlice(o.obj.Object, "rules")
			for _, r := range rules {
				m, _ := r.(map[string]any)
				if res, _ := m["resources"].([]any); len(res) == 1 && res[0] == "pipelines" {
					for _, n := range m["resourceNames"].([]any) {
						readsPipeline = append(readsPipeline, n.(string))
					}
				}
			}
		}
	}
	if !slices.Equal(readsPipeline, []string{"chartreuse-databases"}) {
		t.Errorf("the hook's Role reads the Pipelines %v, want [chartreuse-databases]", readsPipeline)
	}
	_, run = runOf(t, rel)
	var pr tektonv1.PipelineRun
	if err := yaml.UnmarshalStrict(run, &pr); err != nil {
		t.Fatalf("the run is no PipelineRun: %v\n%s", err, run)
	}
	if pr.Spec.PipelineRef == nil || pr.Spec.PipelineRef.Name != "chartreuse-databases" {
		t.Errorf("PipelineRun: pipelineRef %+v, want chartreuse-databases", pr.Spec.PipelineRef)
	}
	var names []string
	got = map[string]string{}
	for _, p := range pr.Spec.Params {
		names = append(names, p.Name)
		got[p.Name] = p.Value.StringVal
	}
	sameSet(t, "tekton list parameters", names, declared)
	for k, v := range map[string]string{"databases": want, "parallelism": "4", "canary": "false"} {
		if got[k] != v {
			t.Errorf("tekton parameter %s = %q, want %q", k, got[k], v)
		}
	}
	sa := map[string]string{}
	for _, s := range pr.Spec.TaskRunSpecs {
		sa[s.PipelineTaskName] = s.ServiceAccountName
	}
	example := map[string]string{}
	var ex tektonv1.PipelineRun
	b, err := os.ReadFile(filepath.Join(repoRoot, "tekton", "examples", "databases-pipelinerun.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ex); err != nil {
		t.Fatal(err)
	}
	for _, s := range ex.Spec.TaskRunSpecs {
		example[s.PipelineTaskName] = s.ServiceAccountName
	}
	if !maps.Equal(sa, example) || len(sa) == 0 {
		t.Errorf("PipelineRun's tasks run as %v, want as tekton/examples/databases-pipelinerun.yaml: %v", sa, example)
	}
}

// TestSchemaRefuses: each bad value fails `helm install` / `helm template` before
// anything reaches the cluster, with an error naming the value and what it must be.
func TestSchemaRefuses(t *testing.T) {
	c := loadChart(t)
	base := minimal("argo")
	for _, tc := range []struct {
		name  string
		vals  map[string]any
		wants []string // each must be in the error
	}{
		{"unknown engine", set(base, "engine", "kubeflow"), []string{"/engine", "argo", "tekton"}},
		{"no database secret", set(base, "database.secret", nil), []string{"/database", "secret"}},
		{"empty database secret", set(base, "database.secret", ""), []string{"/database/secret"}},
		{"database secret not a name", set(base, "database.secret", "Shop_DB"), []string{"/database/secret"}},
		{"duration without unit", set(base, "timeouts.wait", "300"), []string{"/timeouts/wait"}},
		{"duration in words", set(base, "timeouts.scale", "10 minutes"), []string{"/timeouts/scale"}},
		{"negative duration", set(base, "timeouts.lock", "-1s"), []string{"/timeouts/lock"}},
		{"duration as a number", set(base, "timeouts.statement", 0), []string{"/timeouts/statement"}},
		{"patroni timeout", set(base, "patroni.timeout", "1 minute"), []string{"/patroni/timeout"}},
		{"failure policy capitalised", set(base, "onMigrateFailure", "Rollback"), []string{"/onMigrateFailure", "keep-down"}},
		{"failure policy unknown", set(base, "onMigrateFailure", "retry"), []string{"/onMigrateFailure"}},
		{"blank run id", set(base, "runId", " "), []string{"/runId"}},
		{"out of order with rollback", set(set(base, "migrations.allowOutOfOrder", true), "onMigrateFailure", "rollback"), []string{"/onMigrateFailure", "keep-down"}},
		{"risk policy unknown", set(base, "migrations.riskPolicy", "strict"), []string{"/migrations/riskPolicy", "warn"}},
		{"stop-workloads typo", set(base, "workloads.stop", "True"), []string{"/workloads/stop"}},
		{"log format capitalised", set(base, "logFormat", "JSON"), []string{"/logFormat"}},
		{"boolean as a string", set(base, "patroni.enabled", "yes"), []string{"/patroni/enabled"}},
		{"stop with nothing selected", set(base, "workloads.selector", ""), []string{"/workloads"}},
		{"workload of an unknown kind", set(base, "workloads.names", []any{"pod/web"}), []string{"/workloads/names/0"}},
		{"git with an absolute dir", set(set(set(base, "migrations.git.url", "https://github.com/acme/shop.git"), "migrations.git.revision", "v1"), "migrations.dir", "/migrations"), []string{"/migrations/dir"}},
		{"git without a revision", set(set(base, "migrations.git.url", "https://github.com/acme/shop.git"), "migrations.dir", "db/migrations"), []string{"/migrations/git/revision"}},
		{"version not a number", set(base, "migrations.to", "v2"), []string{"/migrations/to"}},
		{"misspelt value", set(base, "timeouts.lockwait", "5m"), []string{"/timeouts", "lockwait"}},
		{"misspelt top-level value", set(base, "onMigrationFailure", "restore"), []string{"onMigrationFailure"}},
		{"hook mode unknown", set(base, "hook.mode", "before"), []string{"/hook/mode", "post", "pre"}},
		{"hook timeout zero", set(base, "hook.timeout", "0s"), []string{"/hook/timeout"}},
		{"hook timeout without unit", set(base, "hook.timeout", "3600"), []string{"/hook/timeout"}},
		{"hook misspelt", set(base, "hook.enable", true), []string{"/hook", "enable"}},
		{"list entry with an unknown key", set(base, "databases.list", []any{map[string]any{"secret": "a-db", "directory": "/m"}}), []string{"/databases/list/0", "directory"}},
		{"list entry secret not a name", set(base, "databases.list", []any{map[string]any{"secret": "A_DB"}}), []string{"/databases/list/0/secret"}},
		{"list with patroni", set(set(set(base, "databases.list", []any{map[string]any{"secret": "a-db"}}), "patroni.enabled", true), "patroni.url", "http://db:8008"), []string{"/patroni/enabled"}},
		{"list parallelism 0", set(base, "databases.parallelism", 0), []string{"/databases/parallelism"}},
		{"tekton list with other registry credentials", set(set(set(minimal("tekton"), "databases.list", []any{map[string]any{"secret": "a-db"}}), "migrations.image", "registry.example.com/m:1"), "migrations.registryCredentialsSecret", "mine"), []string{"/migrations/registryCredentialsSecret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, c, tc.vals)
			if err == nil {
				t.Fatal("rendered; want the schema to refuse it")
			}
			msg := err.Error()
			for _, w := range tc.wants {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not name %q:\n%s", w, msg)
				}
			}
			t.Logf("%s", msg)
		})
	}
	// and what is good passes: stop false needs no selection; auto with names only.
	for _, vals := range []map[string]any{
		set(set(base, "workloads.selector", ""), "workloads.stop", false),
		set(set(base, "workloads.selector", ""), "workloads.names", []any{"deploy/web", "cj/report"}),
		set(base, "workloads.stop", "auto"),
		set(base, "timeouts.statement", "1h30m"),
		set(base, "timeouts.lock", "0"),
		// a list: database.secret may stay empty, the entries name theirs
		set(set(base, "database.secret", ""), "databases.list", []any{map[string]any{"secret": "a-db"}, map[string]any{"secret": "b-db", "dir": "/migrations/b"}}),
	} {
		if _, err := render(t, c, vals); err != nil {
			t.Errorf("refused good values %v: %v", vals, err)
		}
	}
}

// TestAsDependency renders an application's chart that has this chart as a
// dependency (charts/chartreuse, condition chartreuse.enabled), values under
// chartreuse:, as an application adopts it.
func TestAsDependency(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "shop")
	if err := os.MkdirAll(filepath.Join(app, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(app, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Chart.yaml", "apiVersion: v2\nname: shop\nversion: 1.4.0\ndependencies:\n  - name: chartreuse\n    version: 0.1.0\n    repository: file://../chartreuse\n    condition: chartreuse.enabled\n")
	write("values.yaml", "chartreuse:\n  enabled: true\n  engine: tekton\n  database:\n    secret: shop-db\n  workloads:\n    selector: app.kubernetes.io/name=shop\n")
	write("templates/deployment.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shop\n  labels: {app.kubernetes.io/name: shop}\nspec:\n  selector: {matchLabels: {app.kubernetes.io/name: shop}}\n  template:\n    metadata: {labels: {app.kubernetes.io/name: shop}}\n    spec: {containers: [{name: shop, image: shop:1.4.0}]}\n")
	if err := os.CopyFS(filepath.Join(app, "charts", "chartreuse"), os.DirFS(chartPath())); err != nil {
		t.Fatal(err)
	}
	c, err := loader.Load(app)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := render(t, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range splitObjects(t, []byte(rel.Manifest)) {
		kinds[o.obj.GetKind()]++
	}
	if kinds["Deployment"] != 1 || kinds["Pipeline"] != 2 || kinds["Task"] != 16 || kinds["ConfigMap"] != 1 || kinds["WorkflowTemplate"] != 0 {
		t.Errorf("rendered kinds %v", kinds)
	}
	// The dependency's schema applies to the values under chartreuse:.
	if _, err := render(t, c, map[string]any{"chartreuse": map[string]any{"engine": "argo-workflows"}}); err == nil || !strings.Contains(err.Error(), "/engine") {
		t.Errorf("a bad chartreuse.engine in the application's values: want the schema's error, got %v", err)
	}
	// A second database: the same chart again under an alias, installManifests false.
	write("Chart.yaml", "apiVersion: v2\nname: shop\nversion: 1.4.0\ndependencies:\n  - name: chartreuse\n    version: 0.1.0\n    repository: file://../chartreuse\n  - name: chartreuse\n    alias: chartreuse-analytics\n    version: 0.1.0\n    repository: file://../chartreuse\n")
	write("values.yaml", "chartreuse:\n  database: {secret: shop-db}\n  workloads: {selector: app.kubernetes.io/name=shop}\nchartreuse-analytics:\n  installManifests: false\n  database: {secret: shop-analytics-db}\n  workloads: {selector: app.kubernetes.io/name=shop}\n")
	if c, err = loader.Load(app); err != nil {
		t.Fatal(err)
	}
	if rel, err = render(t, c, nil); err != nil {
		t.Fatal(err)
	}
	kinds = map[string]int{}
	runs := map[string]string{}
	for _, o := range splitObjects(t, []byte(rel.Manifest)) {
		kinds[o.obj.GetKind()]++
		if o.obj.GetKind() == "ConfigMap" {
			data, _, _ := unstructured.NestedStringMap(o.obj.Object, "data")
			runs[o.obj.GetName()] = data["run.yaml"]
		}
	}
	if kinds["WorkflowTemplate"] != 1 || kinds["ConfigMap"] != 2 {
		t.Errorf("two aliases, one installing the manifests: rendered kinds %v", kinds)
	}
	if r := runs["shop-chartreuse-run"]; !strings.Contains(r, "value: shop-db\n") || !strings.Contains(r, "generateName: shop-chartreuse-\n") {
		t.Errorf("run of the first database:\n%s", r)
	}
	if r := runs["shop-chartreuse-analytics-run"]; !strings.Contains(r, "value: shop-analytics-db\n") || !strings.Contains(r, "generateName: shop-chartreuse-analytics-\n") {
		t.Errorf("run of the second database (alias chartreuse-analytics):\n%s", r)
	}

	// Disabled, it renders nothing of chartreuse.
	write("Chart.yaml", "apiVersion: v2\nname: shop\nversion: 1.4.0\ndependencies:\n  - name: chartreuse\n    version: 0.1.0\n    repository: file://../chartreuse\n    condition: chartreuse.enabled\n")
	if c, err = loader.Load(app); err != nil {
		t.Fatal(err)
	}
	rel, err = render(t, c, map[string]any{"chartreuse": map[string]any{"enabled": false}})
	if err != nil {
		t.Fatal(err)
	}
	if objs := splitObjects(t, []byte(rel.Manifest)); len(objs) != 1 {
		t.Errorf("chartreuse.enabled=false: %d objects rendered, want the Deployment alone", len(objs))
	}
}

// TestPackaged: `helm package` keeps files/ (what the chart renders) and leaves ci/
// out (.helmignore); the packaged chart renders the same manifest as the directory.
func TestPackaged(t *testing.T) {
	c := loadChart(t)
	tgz, err := chartutil.Save(c, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(tgz) != "chartreuse-0.1.0.tgz" {
		t.Errorf("packaged as %s", filepath.Base(tgz))
	}
	p, err := loader.Load(tgz)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, f := range p.Files {
		files = append(files, f.Name)
	}
	if !slices.Contains(files, "files/argo/workflowtemplate.yaml") || !slices.Contains(files, "files/tekton/pipeline.yaml") {
		t.Errorf("packaged chart's files lack the manifests: %v", files)
	}
	for _, f := range files {
		if strings.HasPrefix(f, "ci/") {
			t.Errorf("packaged chart holds %s (ci/ is in .helmignore)", f)
		}
	}
	for _, engine := range []string{"argo", "tekton"} {
		fromDir := mustRender(t, ciValues(t, engine)).Manifest
		rel, err := render(t, p, ciValues(t, engine))
		if err != nil {
			t.Fatal(err)
		}
		if rel.Manifest != fromDir {
			t.Errorf("%s: the packaged chart renders another manifest than the directory", engine)
		}
	}
}
