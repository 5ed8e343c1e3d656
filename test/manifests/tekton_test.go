package manifests

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	triggersv1beta1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/pkg/migrate"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
	"github.com/chartreuse-go/chartreuse/test/tektonembed"
)

// tektonCtx is the context Tekton's webhook validates with when the feature-flags
// and config-defaults ConfigMaps hold their defaults (no alpha features).
func tektonCtx() context.Context {
	ctx := context.Background()
	return config.ToContext(ctx, config.FromContextOrDefaults(ctx))
}

func tektonTasks(t testing.TB) map[string]*pipelinev1.Task {
	t.Helper()
	tasks := map[string]*pipelinev1.Task{}
	for _, d := range docsOfKind(loadDocs(t), "tekton.dev/v1", "Task") {
		task := &pipelinev1.Task{}
		decodeStrict(t, d, task)
		tasks[task.Name] = task
	}
	return tasks
}

// tektonPipeline is the Pipeline as written (tekton/pipeline-source.yaml): each
// task names its Task of tekton/tasks. TestPipelineEmbedsTheTasks checks that the
// installed one is this with the Tasks embedded.
func tektonPipeline(t testing.TB) *pipelinev1.Pipeline {
	t.Helper()
	return pipelineSource(t, tektonembed.SourceFile)
}

// pipelineSource is the Pipeline of the source file source, as written.
func pipelineSource(t testing.TB, source string) *pipelinev1.Pipeline {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, source))
	if err != nil {
		t.Fatal(err)
	}
	p := &pipelinev1.Pipeline{}
	if err := yaml.UnmarshalStrict(b, p); err != nil {
		t.Fatalf("%s: %v", source, err)
	}
	return p
}

// TestPipelineEmbedsTheTasks: the installed Pipeline is the source's with every
// Task embedded, so a run's later tasks never resolve a Task changed after it
// started (package test/tektonembed), and it is current (make docs).
func TestPipelineEmbedsTheTasks(t *testing.T) {
	installed := map[string]*pipelinev1.Pipeline{}
	for _, d := range docsOfKind(loadDocs(t), "tekton.dev/v1", "Pipeline") {
		p := &pipelinev1.Pipeline{}
		decodeStrict(t, d, p)
		installed[d.File] = p
	}
	if len(installed) != len(tektonembed.Pipelines) {
		t.Fatalf("want the %d Pipelines of tektonembed.Pipelines installed, found %d", len(tektonembed.Pipelines), len(installed))
	}
	tasks := tektonTasks(t)
	for _, files := range tektonembed.Pipelines {
		source, out := files[0], files[1]
		want, err := tektonembed.GenerateFrom(repoRoot, source)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(repoRoot, out))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s is out of date: run make docs", out)
		}
		if installed[out] == nil {
			t.Fatalf("%s is not installed", out)
		}
		checkEmbedded(t, pipelineSource(t, source), installed[out], tasks)
	}
}

// checkEmbedded: the installed Pipeline is the source's with each Task embedded,
// and every pipeline task passes the params its Task shares with the Pipeline.
func checkEmbedded(t *testing.T, src, installed *pipelinev1.Pipeline, tasks map[string]*pipelinev1.Task) {
	t.Helper()
	// Tekton replaces $(params.x) in an embedded Task with the Pipeline's param x
	// unless the pipeline task passes x itself: a Task default would be lost.
	pipelineParams := map[string]bool{}
	for _, ps := range src.Spec.Params {
		pipelineParams[ps.Name] = true
	}
	for _, pt := range append(slices.Clone(src.Spec.Tasks), src.Spec.Finally...) {
		task := tasks[pt.TaskRef.Name]
		if task == nil {
			continue
		}
		for _, ps := range task.Spec.Params {
			passed := slices.ContainsFunc(pt.Params, func(p pipelinev1.Param) bool { return p.Name == ps.Name })
			if pt.Matrix != nil {
				passed = passed || slices.ContainsFunc(pt.Matrix.Params, func(p pipelinev1.Param) bool { return p.Name == ps.Name })
			}
			if pipelineParams[ps.Name] && !passed {
				t.Errorf("%s: pipeline task %s does not pass %s: embedded, its Task would get the Pipeline's %s, not its own default %v", src.Name, pt.Name, ps.Name, ps.Name, ps.Default)
			}
		}
	}
	all := append(slices.Clone(installed.Spec.Tasks), installed.Spec.Finally...)
	if len(all) != len(src.Spec.Tasks)+len(src.Spec.Finally) {
		t.Fatalf("%s: %d pipeline tasks installed, %d in the source", src.Name, len(all), len(src.Spec.Tasks)+len(src.Spec.Finally))
	}
	for i, pt := range append(slices.Clone(src.Spec.Tasks), src.Spec.Finally...) {
		got := all[i]
		if got.TaskRef != nil || got.TaskSpec == nil {
			t.Errorf("installed pipeline task %s: taskRef %v, want its Task embedded", got.Name, got.TaskRef)
			continue
		}
		task := tasks[pt.TaskRef.Name]
		if task == nil || got.Name != pt.Name || got.TaskSpec.Metadata.Annotations[tektonembed.TaskAnnotation] != task.Name || !equality.Semantic.DeepEqual(got.TaskSpec.TaskSpec, task.Spec) {
			t.Errorf("installed pipeline task %s is not the source's %s with Task %s embedded", got.Name, pt.Name, pt.TaskRef.Name)
		}
	}
}

var ttParamRE = regexp.MustCompile(`\$\(tt\.params\.([A-Za-z0-9_-]+)\)`)

// triggerTemplatePipelineRuns returns the PipelineRuns a TriggerTemplate creates, with
// $(tt.params.x) replaced by the param's default or by "sample-x".
func triggerTemplatePipelineRuns(t testing.TB, tt *triggersv1beta1.TriggerTemplate) []*pipelinev1.PipelineRun {
	t.Helper()
	values := map[string]string{}
	for _, p := range tt.Spec.Params {
		if p.Default != nil {
			values[p.Name] = *p.Default
		} else {
			values[p.Name] = "sample-" + p.Name
		}
	}
	values["git-url"] = "https://github.com/acme/shop.git"
	values["git-revision"] = "v1.4.0"
	var prs []*pipelinev1.PipelineRun
	for _, rt := range tt.Spec.ResourceTemplates {
		raw := ttParamRE.ReplaceAllStringFunc(string(rt.Raw), func(m string) string {
			v := values[ttParamRE.FindStringSubmatch(m)[1]]
			b, _ := json.Marshal(v)
			return strings.Trim(string(b), `"`)
		})
		pr := &pipelinev1.PipelineRun{}
		if err := yaml.UnmarshalStrict([]byte(raw), pr); err != nil {
			t.Fatalf("TriggerTemplate %s: resource template: %v", tt.Name, err)
		}
		prs = append(prs, pr)
	}
	return prs
}

// TestTektonValidate runs Tekton's and Tekton Triggers' own defaulting and validation
// (what their admission webhooks do) on every object.
func TestTektonValidate(t *testing.T) {
	ctx := tektonCtx()
	docs := loadDocs(t)
	check := func(what string, err *apis.FieldError) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	// What the webhooks do to every kind of object: default it, then validate it.
	type webhookObject interface {
		SetDefaults(context.Context)
		Validate(context.Context) *apis.FieldError
	}
	n := 0
	for _, d := range docs {
		var o webhookObject
		switch d.Obj.GetAPIVersion() + "/" + d.Obj.GetKind() {
		case "tekton.dev/v1/Task":
			o = &pipelinev1.Task{}
		case "tekton.dev/v1/Pipeline":
			o = &pipelinev1.Pipeline{}
		case "tekton.dev/v1/PipelineRun":
			o = &pipelinev1.PipelineRun{}
		case "triggers.tekton.dev/v1beta1/EventListener":
			o = &triggersv1beta1.EventListener{}
		case "triggers.tekton.dev/v1beta1/TriggerBinding":
			o = &triggersv1beta1.TriggerBinding{}
		case "triggers.tekton.dev/v1beta1/TriggerTemplate":
			o = &triggersv1beta1.TriggerTemplate{}
		default:
			continue
		}
		decodeStrict(t, d, o)
		if pr, ok := o.(*pipelinev1.PipelineRun); ok {
			generateName(&pr.ObjectMeta)
		}
		o.SetDefaults(ctx)
		check(d.String(), o.Validate(ctx))
		if tt, ok := o.(*triggersv1beta1.TriggerTemplate); ok {
			for _, pr := range triggerTemplatePipelineRuns(t, tt) {
				generateName(&pr.ObjectMeta)
				pr.SetDefaults(ctx)
				check(d.String()+" resource template", pr.Validate(ctx))
			}
		}
		n++
	}
	if n < 12 {
		t.Errorf("validated only %d Tekton objects", n)
	}
}

// generateName does what the API server does before admission for generateName.
func generateName(m *metav1.ObjectMeta) {
	if m.Name == "" && m.GenerateName != "" {
		m.Name = m.GenerateName + "x7k2p"
	}
}

// TestTektonPipelineWiring checks what Pipeline.Validate cannot see because it does not
// resolve task references: every param a PipelineTask passes is declared by its Task,
// every Task param without a default is passed, workspaces are bound by name, and every
// $(tasks.X.results.Y) is a result Task X declares.
func TestTektonPipelineWiring(t *testing.T) {
	tasks := tektonTasks(t)
	p := tektonPipeline(t)
	declared := map[string]map[string]bool{} // pipeline task -> results of its Task
	all := append(append([]pipelinev1.PipelineTask{}, p.Spec.Tasks...), p.Spec.Finally...)
	for _, pt := range all {
		if pt.TaskRef == nil || pt.TaskRef.Resolver != "" {
			t.Errorf("pipeline task %s: not a Task of tekton/tasks by name (no resolver, no hub or catalog Task at run time)", pt.Name)
			continue
		}
		task, ok := tasks[pt.TaskRef.Name]
		if !ok {
			t.Errorf("pipeline task %s: no Task %s in tekton/tasks", pt.Name, pt.TaskRef.Name)
			continue
		}
		declared[pt.Name] = map[string]bool{}
		for _, r := range task.Spec.Results {
			declared[pt.Name][r.Name] = true
		}
		passed := map[string]bool{}
		for _, prm := range pt.Params {
			passed[prm.Name] = true
		}
		taskParams := map[string]bool{}
		for _, ps := range task.Spec.Params {
			taskParams[ps.Name] = true
			if ps.Default == nil && !passed[ps.Name] {
				t.Errorf("pipeline task %s: Task %s param %s has no default and is not passed", pt.Name, task.Name, ps.Name)
			}
		}
		for name := range passed {
			if !taskParams[name] {
				t.Errorf("pipeline task %s: passes %s, which Task %s does not declare", pt.Name, name, task.Name)
			}
		}
		bound := map[string]bool{}
		for _, w := range pt.Workspaces {
			bound[w.Name] = true
		}
		for _, w := range task.Spec.Workspaces {
			if !w.Optional && !bound[w.Name] {
				t.Errorf("pipeline task %s: required workspace %s of Task %s not bound", pt.Name, w.Name, task.Name)
			}
			delete(bound, w.Name)
		}
		for w := range bound {
			t.Errorf("pipeline task %s: binds workspace %s that Task %s does not declare", pt.Name, w, task.Name)
		}
	}
	b, _ := json.Marshal(p.Spec)
	for _, m := range regexp.MustCompile(`\$\(tasks\.([a-z0-9-]+)\.results\.([a-z0-9-]+)\)`).FindAllStringSubmatch(string(b), -1) {
		if res, ok := declared[m[1]]; !ok || !res[m[2]] {
			t.Errorf("%s: task %s declares no result %s", m[0], m[1], m[2])
		}
	}
}

// TestTektonPipelineDAG pins the order and guards of the Pipeline.
func TestTektonPipelineDAG(t *testing.T) {
	p := tektonPipeline(t)
	type want struct {
		runAfter []string
		when     []string
		retries  bool
	}
	expect := map[string]want{
		// plan waits for the database itself; wait-for-db only comes before wait-patroni
		"wait-for-db":  {nil, []string{"$(params.patroni) in [true]"}, true},
		"wait-patroni": {[]string{"wait-for-db"}, []string{"$(params.patroni) in [true]"}, true},
		"plan":         {[]string{"wait-patroni"}, nil, true},
		// stop-workloads=auto: only when plan's needs-downtime is not false
		"scale-down": {[]string{"plan"}, []string{"$(tasks.plan.results.pending) in [true]", "$(params.stop-workloads) in [true,auto]",
			"$(params.stop-workloads)/$(tasks.plan.results.needs-downtime) notin [auto/false]"}, true},
		// migrate is retried after any failure (pod-level ones are why): safe, see pipeline.yaml
		"migrate": {[]string{"scale-down"}, []string{"$(tasks.plan.results.pending) in [true]"}, true},
		// nothing pending: migrate only records the edits accept-changed names, nothing stopped
		"record-accepted": {[]string{"plan"}, []string{"$(tasks.plan.results.pending) in [false]", "$(params.accept-changed) notin []"}, true},
		// scale-restore is not: a rerun would not know whether the workloads are ready
		// with auto too, stopped or not: it also lets go what earlier keep-down runs held
		"scale-restore": {[]string{"migrate"}, []string{"$(tasks.plan.results.pending) in [true]", "$(params.stop-workloads) in [true,auto]"}, false},
		// nothing pending: lets go of the earlier runs' holds plan found (a keep-down)
		"release-holds": {[]string{"record-accepted"}, []string{"$(tasks.plan.results.pending) in [false]", "$(params.stop-workloads) in [true,auto]", "$(tasks.plan.results.superseded-holds) notin []"}, true},
	}
	// A guard per enum-like parameter, before the gate; the two roots after the gate.
	var guards []string
	for name, allowed := range map[string]string{
		"stop-workloads": "true,false,auto", "patroni": "true,false", "wait-ready": "true,false",
		"on-migrate-failure": "keep-down,restore,rollback", "allow-out-of-order": "true,false",
		"allow-empty-database": "true,false", "log-format": "text,json", "risk-policy": "warn,fail",
	} {
		guards = append(guards, "invalid-"+name)
		expect["invalid-"+name] = want{nil, []string{"$(params." + name + ") notin [" + allowed + "]"}, false}
	}
	// and one for a combination (TestOutOfOrderPolicyRefused)
	guards = append(guards, tektonOutOfOrderGuard)
	expect[tektonOutOfOrderGuard] = want{nil, []string{"$(params.allow-out-of-order) in [true]", "$(params.on-migrate-failure) in [restore,rollback]"}, false}
	guards = append(guards, tektonRunIDGuard)
	expect[tektonRunIDGuard] = want{nil, []string{"$(params.run-id) in []"}, false}
	sort.Strings(guards)
	expect["gate"] = want{guards, nil, true}
	w := expect["wait-for-db"]
	w.runAfter = []string{"gate"}
	expect["wait-for-db"] = w
	if len(p.Spec.Tasks) != len(expect) {
		t.Errorf("pipeline has %d tasks, want %d", len(p.Spec.Tasks), len(expect))
	}
	for _, pt := range p.Spec.Tasks {
		w, ok := expect[pt.Name]
		if !ok {
			t.Errorf("unexpected task %s", pt.Name)
			continue
		}
		ra := append([]string{}, pt.RunAfter...)
		sort.Strings(ra)
		if strings.Join(ra, ",") != strings.Join(w.runAfter, ",") {
			t.Errorf("%s: runAfter %v, want %v", pt.Name, ra, w.runAfter)
		}
		if got := whenStrings(pt.When); strings.Join(got, "; ") != strings.Join(w.when, "; ") {
			t.Errorf("%s: when %v, want %v", pt.Name, got, w.when)
		}
		if (pt.Retries > 0) != w.retries {
			t.Errorf("%s: retries %d", pt.Name, pt.Retries)
		}
		// Only a step's own timeout parameters may end an attempt: no literal timeout
		// on the chartreuse tasks ("0": none). The guards have no timeout parameter
		// of their own.
		switch {
		case pt.Timeout == nil:
			t.Errorf("%s: no timeout (Tekton would apply its default, 1 h)", pt.Name)
		case strings.HasPrefix(pt.Name, "invalid-"):
		case pt.Timeout.Duration != 0:
			t.Errorf("%s: timeout %s, want \"0\"", pt.Name, pt.Timeout.Duration)
		}
	}
	for _, pt := range p.Spec.Finally {
		if pt.Timeout == nil || pt.Timeout.Duration != 0 {
			t.Errorf("finally %s: timeout %v, want \"0\"", pt.Name, pt.Timeout)
		}
		if pt.Retries == 0 {
			t.Errorf("finally %s: no retries", pt.Name)
		}
	}
}

func whenStrings(wes pipelinev1.WhenExpressions) []string {
	var out []string
	for _, we := range wes {
		out = append(out, we.Input+" "+string(we.Operator)+" ["+strings.Join(we.Values, ",")+"]")
	}
	return out
}

// TestTektonFinallyPolicies evaluates the finally tasks' when expressions with Tekton's
// own substitution and evaluation, for each way a run can end. A finally task that
// references a result its task did not produce is skipped (Tekton's
// "MissingResultsSkip"); that is modelled too.
func TestTektonFinallyPolicies(t *testing.T) {
	p := tektonPipeline(t)
	type state struct {
		params   map[string]string
		status   map[string]string // $(tasks.<t>.status): Succeeded, Failed, None
		results  map[string]string // $(tasks.plan.results.<r>) that exist
		tasksAll string            // $(tasks.status)
	}
	// plan always writes git-commit and migrations-digest: empty without git-url or
	// migrations-image, which must not skip a finally task that passes them on.
	planned := map[string]string{"pending": "true", "needs-downtime": "true", "current-version": "41", "target-version": "43", "git-commit": "", "migrations-digest": ""}
	fromGit := map[string]string{"pending": "true", "needs-downtime": "true", "current-version": "41", "target-version": "43", "git-commit": "0123456789abcdef0123456789abcdef01234567", "migrations-digest": ""}
	fromImage := map[string]string{"pending": "true", "needs-downtime": "true", "current-version": "41", "target-version": "43", "git-commit": "",
		"migrations-digest": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	base := func(s state) state {
		params := map[string]string{}
		for _, ps := range p.Spec.Params {
			if ps.Default != nil {
				params[ps.Name] = ps.Default.StringVal
			}
		}
		params["database-secret"] = "shop-db"
		params["workload-selector"] = "app.kubernetes.io/name=shop"
		for k, v := range s.params {
			params[k] = v
		}
		s.params = params
		st := map[string]string{}
		for _, pt := range p.Spec.Tasks {
			st[pt.Name] = "None"
		}
		for k, v := range s.status {
			st[k] = v
		}
		s.status = st
		return s
	}
	ok := map[string]string{"plan": "Succeeded", "scale-down": "Succeeded"}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	tests := []struct {
		name string
		s    state
		want []string
	}{
		{"success", state{status: with(ok, "migrate", "Succeeded", "scale-restore", "Succeeded"), results: planned}, nil},
		{"nothing pending", state{status: with(ok, "scale-down", "None"), results: map[string]string{"pending": "false", "current-version": "43", "git-commit": "", "migrations-digest": ""}}, nil},
		{"database never came up", state{status: map[string]string{"plan": "Failed"}}, nil},
		{"scale-down failed", state{status: with(ok, "scale-down", "Failed"), results: planned}, []string{"restore"}},
		{"restore in tasks failed", state{status: with(ok, "migrate", "Succeeded", "scale-restore", "Failed"), results: planned}, []string{"restore"}},
		{"stop-workloads=false", state{params: map[string]string{"stop-workloads": "false"}, status: with(ok, "scale-down", "None", "migrate", "Failed"), results: planned}, nil},
		{"keep-down", state{status: with(ok, "migrate", "Failed"), results: planned}, nil},
		{"restore policy", state{params: map[string]string{"on-migrate-failure": "restore"}, status: with(ok, "migrate", "Failed"), results: planned}, []string{"restore-if-unchanged"}},
		{"rollback policy", state{params: map[string]string{"on-migrate-failure": "rollback"}, status: with(ok, "migrate", "Failed"), results: planned}, []string{"rollback"}},
		{"restore policy, migrations from git", state{params: map[string]string{"on-migrate-failure": "restore"}, status: with(ok, "migrate", "Failed"), results: fromGit}, []string{"restore-if-unchanged"}},
		{"rollback policy, migrations from git", state{params: map[string]string{"on-migrate-failure": "rollback"}, status: with(ok, "migrate", "Failed"), results: fromGit}, []string{"rollback"}},
		{"restore policy, migrations image", state{params: map[string]string{"on-migrate-failure": "restore"}, status: with(ok, "migrate", "Failed"), results: fromImage}, []string{"restore-if-unchanged"}},
		{"rollback policy, migrations image", state{params: map[string]string{"on-migrate-failure": "rollback"}, status: with(ok, "migrate", "Failed"), results: fromImage}, []string{"rollback"}},
		{"no selector", state{params: map[string]string{"workload-selector": ""}, status: with(ok, "scale-down", "Failed"), results: planned}, nil},
		{"a workload list and no selector", state{params: map[string]string{"workload-selector": "", "workload": "deployment/web"}, status: with(ok, "scale-down", "Failed"), results: planned}, []string{"restore"}},
		// stop-workloads=auto: the failure paths restore this run's records as with true
		{"auto: scale-down failed", state{params: map[string]string{"stop-workloads": "auto"}, status: with(ok, "scale-down", "Failed"), results: planned}, []string{"restore"}},
		{"auto: restore in tasks failed", state{params: map[string]string{"stop-workloads": "auto"}, status: with(ok, "migrate", "Succeeded", "scale-restore", "Failed"), results: planned}, []string{"restore"}},
		{"auto, additive: nothing stopped, migrate failed", state{params: map[string]string{"stop-workloads": "auto"}, status: with(ok, "scale-down", "None", "migrate", "Failed"), results: planned}, nil},
		{"auto, restore policy", state{params: map[string]string{"stop-workloads": "auto", "on-migrate-failure": "restore"}, status: with(ok, "migrate", "Failed"), results: planned}, []string{"restore-if-unchanged"}},
		{"auto, rollback policy", state{params: map[string]string{"stop-workloads": "auto", "on-migrate-failure": "rollback"}, status: with(ok, "migrate", "Failed"), results: planned}, []string{"rollback"}},
		{"restore policy, stop-workloads=false", state{params: map[string]string{"on-migrate-failure": "restore", "stop-workloads": "false"}, status: with(ok, "scale-down", "None", "migrate", "Failed"), results: planned}, nil},
		{"rollback policy, stop-workloads=false", state{params: map[string]string{"on-migrate-failure": "rollback", "stop-workloads": "false"}, status: with(ok, "scale-down", "None", "migrate", "Failed"), results: planned}, []string{"rollback"}},
		{"rollback policy, scale-down failed", state{params: map[string]string{"on-migrate-failure": "rollback"}, status: with(ok, "scale-down", "Failed"), results: planned}, []string{"restore"}},
		// never a rollback without the version plan reported
		{"rollback policy, plan's version empty", state{params: map[string]string{"on-migrate-failure": "rollback"}, status: with(ok, "migrate", "Failed"), results: map[string]string{"pending": "true", "current-version": "", "git-commit": "", "migrations-digest": ""}}, nil},
		{"rollback policy, plan's version missing", state{params: map[string]string{"on-migrate-failure": "rollback"}, status: with(ok, "migrate", "Failed"), results: map[string]string{"pending": "true", "git-commit": "", "migrations-digest": ""}}, nil},
	}
	resultRE := regexp.MustCompile(`\$\(tasks\.plan\.results\.([a-z-]+)\)`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base(tt.s)
			repl := map[string]string{"tasks.status": s.tasksAll}
			for k, v := range s.params {
				repl["params."+k] = v
			}
			for k, v := range s.status {
				repl["tasks."+k+".status"] = v
			}
			for k, v := range s.results {
				repl["tasks.plan.results."+k] = v
			}
			var ran []string
			for _, ft := range p.Spec.Finally {
				missing := false
				b, _ := json.Marshal(ft)
				for _, m := range resultRE.FindAllStringSubmatch(string(b), -1) {
					if _, ok := s.results[m[1]]; !ok {
						missing = true
					}
				}
				if missing {
					continue
				}
				// ReplaceVariables substitutes in place: evaluate a copy.
				if append(pipelinev1.WhenExpressions{}, ft.When...).ReplaceVariables(repl, nil).AllowsExecution(nil) {
					ran = append(ran, ft.Name)
				}
			}
			// release-gate runs at the end of every run whose plan found something
			// pending; otherwise the next run takes the Lease over.
			want := slices.Clone(tt.want)
			if s.results["pending"] == "true" {
				want = append(want, "release-gate")
			}
			if strings.Join(ran, ",") != strings.Join(want, ",") {
				t.Errorf("finally ran %v, want %v", ran, want)
			}
		})
	}
}

// TestTektonStepWhen checks the step-level guards of the composite finally Tasks.
func TestTektonStepWhen(t *testing.T) {
	tasks := tektonTasks(t)
	ru := tasks["chartreuse-restore-if-unchanged"]
	if ru == nil || len(ru.Spec.Steps) != 2 {
		t.Fatal("chartreuse-restore-if-unchanged: want steps recheck, scale-restore")
	}
	for _, tc := range []struct {
		recheck, planned string
		restore          bool
	}{{"41", "41", true}, {"43", "41", false}} {
		w := append(pipelinev1.WhenExpressions{}, ru.Spec.Steps[1].When...).ReplaceVariables(map[string]string{
			"steps.recheck.results.current-version": tc.recheck,
			"params.planned-version":                tc.planned,
		}, nil)
		if got := w.AllowsExecution(nil); got != tc.restore {
			t.Errorf("recheck %s, planned %s: restore %v, want %v", tc.recheck, tc.planned, got, tc.restore)
		}
	}
	rb := tasks["chartreuse-rollback"]
	if rb == nil || len(rb.Spec.Steps) != 3 || rb.Spec.Steps[0].Name != "check-stopped" || rb.Spec.Steps[1].Name != "rollback" || rb.Spec.Steps[2].Name != "scale-restore" {
		t.Fatal("chartreuse-rollback: want steps check-stopped, rollback, scale-restore")
	}
	if len(rb.Spec.Steps[0].When)+len(rb.Spec.Steps[1].When) != 0 {
		t.Error("chartreuse-rollback: check-stopped and rollback must always run")
	}
	// restore is the Pipeline's stop-workloads: auto restores as true does
	for restore, want := range map[string]bool{"true": true, "auto": true, "false": false} {
		w := append(pipelinev1.WhenExpressions{}, rb.Spec.Steps[2].When...).ReplaceVariables(map[string]string{"params.restore": restore}, nil)
		if got := w.AllowsExecution(nil); got != want {
			t.Errorf("rollback with restore=%s: scale-restore %v, want %v", restore, got, want)
		}
	}
}

// TestTektonScaleDownAuto evaluates the scale-down and scale-restore tasks' whens
// with Tekton's own code: stop-workloads=auto stops only when plan's needs-downtime
// is not false; true stops whatever it says; the restore after migrate runs with
// true and auto alike (it also lets go of earlier keep-down runs' holds).
func TestTektonScaleDownAuto(t *testing.T) {
	p := tektonPipeline(t)
	tasks := map[string]pipelinev1.PipelineTask{}
	for _, pt := range p.Spec.Tasks {
		tasks[pt.Name] = pt
	}
	for _, c := range []struct {
		stop, downtime   string
		down, restoreRun bool
	}{
		{"true", "true", true, true}, {"true", "false", true, true},
		{"auto", "true", true, true}, {"auto", "false", false, true},
		{"false", "true", false, false}, {"false", "false", false, false},
	} {
		repl := map[string]string{"params.stop-workloads": c.stop, "tasks.plan.results.needs-downtime": c.downtime, "tasks.plan.results.pending": "true"}
		for name, want := range map[string]bool{"scale-down": c.down, "scale-restore": c.restoreRun} {
			w := append(pipelinev1.WhenExpressions{}, tasks[name].When...).ReplaceVariables(repl, nil)
			if got := w.AllowsExecution(nil); got != want {
				t.Errorf("stop-workloads=%s, needs-downtime=%s: %s runs %v, want %v", c.stop, c.downtime, name, got, want)
			}
		}
		// migrate and rollback check that the workloads are still stopped exactly
		// when scale-down ran: the step reads the same two values.
		if got := workload.StopsWorkloads(c.stop, c.downtime); got != c.down {
			t.Errorf("stop-workloads=%s, needs-downtime=%s: migrate's check applies %v, scale-down runs %v", c.stop, c.downtime, got, c.down)
		}
	}
	want := map[string]string{
		"stop-workloads": "$(params.stop-workloads)", "needs-downtime": "$(tasks.plan.results.needs-downtime)",
		"workload-selector": "$(params.workload-selector)", "workload": "$(params.workload)", "namespace": "$(params.namespace)",
	}
	for _, pt := range append(slices.Clone(p.Spec.Tasks), p.Spec.Finally...) {
		if pt.Name != "migrate" && pt.Name != "rollback" {
			continue
		}
		for k, v := range want {
			if got := pipelineParam(pt, k); got != v {
				t.Errorf("pipeline task %s: param %s = %q, want %q (the check that the workloads are still stopped)", pt.Name, k, got, v)
			}
		}
	}
}

// fetchedSource is a place the steps fetch migrations from themselves (git, a
// migrations image): the params every Task that reads migrations takes, with their
// defaults; the flags its reading step gets from them; the Secret param and where
// the step mounts that Secret (where migrate looks by default); and plan's result
// that pins the source for the run's later tasks, passed to them as the param of the
// same name.
type fetchedSource struct {
	defaults    map[string]string
	flags       []string
	secretParam string
	mountPath   string
	pinned      string
}

var (
	gitSource = fetchedSource{
		defaults:    map[string]string{"git-url": "", "git-revision": "", "git-commit": "", "git-credentials-secret": "chartreuse-git-credentials"},
		flags:       []string{"git-url", "git-revision", "git-commit"},
		secretParam: "git-credentials-secret",
		mountPath:   migrate.DefaultGitCredentials,
		pinned:      "git-commit",
	}
	imageSource = fetchedSource{
		defaults: map[string]string{"migrations-image": "", "migrations-digest": "",
			"registry-credentials-secret": "chartreuse-registry-credentials", "insecure-registry": "false"},
		flags:       []string{"migrations-image", "migrations-digest", "insecure-registry"},
		secretParam: "registry-credentials-secret",
		mountPath:   migrate.DefaultRegistryCredentials,
		pinned:      "migrations-digest",
	}
	// migrationReaders: each Task that reads migrations, and its step that does.
	migrationReaders = map[string]string{
		"chartreuse-plan": "plan", "chartreuse-migrate": "migrate",
		"chartreuse-rollback": "rollback", "chartreuse-restore-if-unchanged": "recheck",
	}
)

// checkFetchedSource: every Task that reads migrations takes src's params with their
// defaults and passes its flags; mounts its Secret (optional, read-only) at
// src.mountPath in the reading step only, and gives that step a writable TMPDIR on an
// emptyDir (the root filesystem is read-only). plan has the result src.pinned. The
// Pipeline passes src's params from its own and plan's src.pinned to every later task
// that reads migrations (plan resolves it: none), finally tasks included.
func checkFetchedSource(t *testing.T, src fetchedSource) {
	t.Helper()
	tasks := tektonTasks(t)
	for name, stepName := range migrationReaders {
		task := tasks[name]
		if task == nil {
			t.Errorf("no Task %s", name)
			continue
		}
		defaults := map[string]string{}
		for _, p := range task.Spec.Params {
			if p.Default != nil {
				defaults[p.Name] = p.Default.StringVal
			}
		}
		for p, want := range src.defaults {
			if got, ok := defaults[p]; !ok || got != want {
				t.Errorf("Task %s: param %s default %q (declared: %v), want %q", name, p, got, ok, want)
			}
		}
		vols := map[string]corev1.Volume{}
		for _, v := range task.Spec.Volumes {
			vols[v.Name] = v
		}
		var st *pipelinev1.Step
		for i := range task.Spec.Steps {
			if task.Spec.Steps[i].Name == stepName {
				st = &task.Spec.Steps[i]
			}
		}
		if st == nil {
			t.Errorf("Task %s: no step %s", name, stepName)
			continue
		}
		where := "Task " + name + " step " + stepName
		for _, f := range src.flags {
			if !slices.Contains(st.Args, "--"+f+"=$(params."+f+")") {
				t.Errorf("%s: does not pass --%s=$(params.%s)", where, f, f)
			}
		}
		mounts := map[string]corev1.VolumeMount{}
		for _, m := range st.VolumeMounts {
			mounts[m.MountPath] = m
		}
		cred, ok := mounts[src.mountPath]
		if v := vols[cred.Name]; !ok || !cred.ReadOnly || v.Secret == nil || v.Secret.SecretName != "$(params."+src.secretParam+")" ||
			v.Secret.Optional == nil || !*v.Secret.Optional {
			t.Errorf("%s: want the Secret $(params.%s), optional, mounted read-only at %s", where, src.secretParam, src.mountPath)
		}
		tmp := ""
		for _, e := range st.Env {
			if e.Name == "TMPDIR" {
				tmp = e.Value
			}
		}
		if m, ok := mounts[tmp]; tmp == "" || !ok || m.ReadOnly || vols[m.Name].EmptyDir == nil {
			t.Errorf("%s: TMPDIR %q is not a writable emptyDir mount", where, tmp)
		}
		for _, other := range task.Spec.Steps {
			for _, m := range other.VolumeMounts {
				if other.Name != stepName && (m.Name == cred.Name && cred.Name != "") {
					t.Errorf("Task %s step %s mounts the %s it does not use", name, other.Name, src.secretParam)
				}
			}
		}
	}
	if res := tasks["chartreuse-plan"]; res != nil && !slices.ContainsFunc(res.Spec.Results, func(r pipelinev1.TaskResult) bool { return r.Name == src.pinned }) {
		t.Errorf("Task chartreuse-plan: no result %s", src.pinned)
	}

	p := tektonPipeline(t)
	for _, pt := range append(append([]pipelinev1.PipelineTask{}, p.Spec.Tasks...), p.Spec.Finally...) {
		if pt.TaskRef == nil {
			continue
		}
		if _, reads := migrationReaders[pt.TaskRef.Name]; !reads {
			continue
		}
		passed := map[string]string{}
		for _, prm := range pt.Params {
			passed[prm.Name] = prm.Value.StringVal
		}
		for n := range src.defaults {
			if n == src.pinned {
				continue
			}
			if passed[n] != "$(params."+n+")" {
				t.Errorf("pipeline task %s: %s = %q, want $(params.%s)", pt.Name, n, passed[n], n)
			}
		}
		want := "$(tasks.plan.results." + src.pinned + ")"
		if pt.Name == "plan" {
			want = "" // plan resolves it
		}
		if passed[src.pinned] != want {
			t.Errorf("pipeline task %s: %s = %q, want %q", pt.Name, src.pinned, passed[src.pinned], want)
		}
	}
}

// TestTektonGitSource: migrations from git are fetched by the steps themselves
// (checkFetchedSource). The Tasks that read migrations, and only they, take
// migrations-dir, and keep the optional source workspace as their working directory
// (a checkout of the user's own). The Pipeline passes plan's git-commit to
// scale-down too (its Events name the commit), runs no clone Task, and its source
// workspace is optional; the TriggerTemplate binds no workspace.
func TestTektonGitSource(t *testing.T) {
	checkFetchedSource(t, gitSource)
	tasks := tektonTasks(t)
	for name, task := range tasks {
		if strings.HasPrefix(name, "chartreuse-databases-") {
			// the list's Tasks: migrations-dir is the entries' default dir; no
			// checkout of your own (no source workspace) on Tekton's list yet
			continue
		}
		hasDir := false
		for _, p := range task.Spec.Params {
			hasDir = hasDir || p.Name == "migrations-dir"
		}
		if _, ok := migrationReaders[name]; hasDir != ok {
			t.Errorf("Task %s: takes migrations-dir %v, want %v", name, hasDir, ok)
		}
	}
	for name, stepName := range migrationReaders {
		task := tasks[name]
		if task == nil {
			continue
		}
		if ws := task.Spec.Workspaces; len(ws) != 1 || ws[0].Name != "source" || !ws[0].Optional {
			t.Errorf("Task %s: workspaces %+v, want only source, optional", name, ws)
		}
		for _, st := range task.Spec.Steps {
			if st.Name == stepName && st.WorkingDir != "$(workspaces.source.path)" {
				t.Errorf("Task %s step %s: workingDir %q, want $(workspaces.source.path)", name, stepName, st.WorkingDir)
			}
		}
	}

	p := tektonPipeline(t)
	if ws := p.Spec.Workspaces; len(ws) != 1 || ws[0].Name != "source" || !ws[0].Optional {
		t.Errorf("Pipeline workspaces %+v, want only source, optional", ws)
	}
	for _, pt := range p.Spec.Tasks {
		if pt.Name == "scale-down" {
			if got := pipelineParam(pt, "git-commit"); got != "$(tasks.plan.results.git-commit)" {
				t.Errorf("pipeline task scale-down: git-commit = %q, want plan's result", got)
			}
		}
		if pt.TaskRef == nil {
			continue
		}
		if _, reads := migrationReaders[pt.TaskRef.Name]; reads && pipelineParam(pt, "migrations-dir") != "$(params.migrations-dir)" {
			t.Errorf("pipeline task %s: migrations-dir = %q, want $(params.migrations-dir)", pt.Name, pipelineParam(pt, "migrations-dir"))
		}
	}
	for _, d := range docsOfKind(loadDocs(t), "triggers.tekton.dev/v1beta1", "TriggerTemplate") {
		tt := &triggersv1beta1.TriggerTemplate{}
		decodeStrict(t, d, tt)
		for _, pr := range triggerTemplatePipelineRuns(t, tt) {
			if len(pr.Spec.Workspaces) != 0 {
				t.Errorf("TriggerTemplate %s: binds workspaces %+v: plan fetches the tag itself", tt.Name, pr.Spec.Workspaces)
			}
		}
	}
}

// TestTektonMigrationsImage: migrations from an image of their own are pulled by the
// steps themselves (checkFetchedSource), at the digest plan resolved; the Secret is
// found where migrate looks by default, so no task passes --registry-credentials. The
// Pipeline's params have the WorkflowTemplate's defaults (TestParameterSets) and the
// TriggerTemplate passes them on with those defaults, so a run it starts without
// migrations-image takes the migrations from git as before.
func TestTektonMigrationsImage(t *testing.T) {
	checkFetchedSource(t, imageSource)
	for _, c := range containers(t) {
		if got, ok := c.flag("registry-credentials"); ok && c.Engine == "tekton" {
			t.Errorf("%s: --registry-credentials=%s: mount the Secret at %s instead", c.Where, got, migrate.DefaultRegistryCredentials)
		}
	}
	for _, d := range docsOfKind(loadDocs(t), "triggers.tekton.dev/v1beta1", "TriggerTemplate") {
		tt := &triggersv1beta1.TriggerTemplate{}
		decodeStrict(t, d, tt)
		defaults := map[string]string{}
		for _, p := range tt.Spec.Params {
			if p.Default != nil {
				defaults[p.Name] = *p.Default
			}
		}
		for n, want := range imageSource.defaults {
			if got, ok := defaults[n]; n != imageSource.pinned && (!ok || got != want) {
				t.Errorf("TriggerTemplate %s: param %s default %q (declared: %v), want %q", tt.Name, n, got, ok, want)
			}
		}
		for _, pr := range triggerTemplatePipelineRuns(t, tt) {
			for _, prm := range pr.Spec.Params {
				if prm.Name == "migrations-image" && prm.Value.StringVal != "" {
					t.Errorf("TriggerTemplate %s: migrations-image %q by default, with git-url bound (refused together)", tt.Name, prm.Value.StringVal)
				}
			}
		}
	}
}

func pipelineParam(pt pipelinev1.PipelineTask, name string) string {
	for _, p := range pt.Params {
		if p.Name == name {
			return p.Value.StringVal
		}
	}
	return ""
}

// A database on the workloads' holder list is secret/key, on both engines: the
// tenants of one Secret (a key each) are different databases, and a run that
// migrated one of them must not lift the keep-down another's failed run left.
// The Secret alone was passed, and a successful run for tenant-c restored the
// application over tenant-a's failed migration.
func TestHolderDatabaseIsSecretAndKey(t *testing.T) {
	const argoDB = "{{workflow.parameters.database-secret}}/{{workflow.parameters.database-secret-key}}"
	wft := argoTemplate(t)
	// scale-down-pod's default serves the main DAG's scale-down, which passes none
	found := false
	for _, p := range templateByName(t, wft, "scale-down-pod").Inputs.Parameters {
		if p.Name == "database-secret" {
			found = true
			if p.Value == nil || p.Value.String() != argoDB {
				t.Errorf("Argo scale-down-pod: database-secret defaults to %v, want %s", p.Value, argoDB)
			}
		}
	}
	if !found {
		t.Error("Argo scale-down-pod has no database-secret input")
	}
	// The entrypoint scale-down gets the workflow's own arguments as its
	// arguments (Argo's ProcessArgs), so an input of its named database-secret
	// would take the bare Secret whatever its default: it passes the value
	// itself, the bare Secret: a person's hold, which no run lets go of (a run
	// with nothing pending restarted what a person stopped when it was the pair).
	entry := templateByName(t, wft, "scale-down")
	for _, p := range entry.Inputs.Parameters {
		if p.Name == "database-secret" {
			t.Errorf("the scale-down entrypoint has an input database-secret, which the workflow's argument of that name overrides")
		}
	}
	passed := ""
	for _, task := range entry.DAG.Tasks {
		if task.Template == "scale-down-pod" {
			if p := task.Arguments.GetParameterByName("database-secret"); p != nil && p.Value != nil {
				passed = p.Value.String()
			}
		}
	}
	const personDB = "{{workflow.parameters.database-secret}}"
	if passed != personDB {
		t.Errorf("the scale-down entrypoint passes database-secret %q, want %s (a person's hold)", passed, personDB)
	}
	const tektonDB = "$(params.database-secret)/$(params.database-secret-key)"
	want := map[string]string{"scale-down/database-secret": tektonDB, "scale-restore/supersede-database": tektonDB}
	p := tektonPipeline(t)
	for _, task := range p.Spec.Tasks {
		for _, param := range task.Params {
			k := task.Name + "/" + param.Name
			if w, ok := want[k]; ok {
				if param.Value.StringVal != w {
					t.Errorf("Tekton task %s: %s = %q, want %q", task.Name, param.Name, param.Value.StringVal, w)
				}
				delete(want, k)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("Tekton Pipeline does not pass %v", want)
	}
}
