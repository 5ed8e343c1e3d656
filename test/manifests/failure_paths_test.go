package manifests

import (
	"bytes"
	"context"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/argoproj/argo-workflows/v3/util/expr/argoexpr"
	"github.com/argoproj/argo-workflows/v3/util/expr/env"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"

	exitcode "github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/poll"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/pkg/waitdb"
)

// The failure paths of issue 12 as far as they can be checked without an engine:
// deadlines derived from the timeout parameters, the retry expressions, and the
// guards that fail a run with an invalid parameter. The end-to-end scenarios on the
// real controllers (test/e2e/*_failure_test.go) are the final word.

// TestArgoDeadlinesFromParameters resolves each template's activeDeadlineSeconds
// with Argo's template code: the step's own timeout parameters plus 5 minutes for the
// pod to start; none for migrate and rollback.
func TestArgoDeadlinesFromParameters(t *testing.T) {
	wft := argoTemplate(t)
	params := map[string]string{
		"wait-timeout": "7m", "patroni-timeout": "90s", "scale-timeout": "3m",
		"ready-timeout": "4m", "retry-transient-for": "2m",
	}
	vars := run{entrypoint: "main", status: "Running", params: params}.globals(t, wft)
	const start = 300
	tests := []struct {
		template string
		inputs   map[string]string
		want     string // "" for none
	}{
		{"wait-for-db", nil, strconv.Itoa(7*60 + start)},
		{"wait-patroni", nil, strconv.Itoa(90 + start)},
		{"plan", nil, strconv.Itoa(7*60 + start)},
		{"recheck", nil, strconv.Itoa(7*60 + 2*60 + start)},
		{"scale-down", nil, strconv.Itoa(3*60 + start)},
		// the DAG's: waits for readiness, no retry inside the step
		{"scale-restore", map[string]string{"wait-ready": "true", "retry-transient-for": "0s"}, strconv.Itoa(3*60 + 4*60 + start)},
		// the exit handler's
		{"scale-restore", map[string]string{"wait-ready": "false", "retry-transient-for": "2m"}, strconv.Itoa(3*60 + 2*60 + start)},
		{"migrate", nil, ""},
		{"rollback", nil, ""},
	}
	for _, tt := range tests {
		tmpl := templateByName(t, wft, tt.template+"-pod")
		if tmpl.ActiveDeadlineSeconds == nil {
			if tt.want != "" {
				t.Errorf("%s: no activeDeadlineSeconds, want %s", tt.template, tt.want)
			}
			continue
		}
		v := map[string]any{}
		for k, x := range vars {
			v[k] = x
		}
		for k, x := range tt.inputs {
			v["inputs.parameters."+k] = x
		}
		got := resolve(t, tmpl.ActiveDeadlineSeconds.String(), v)
		if got != tt.want {
			t.Errorf("%s with inputs %v: activeDeadlineSeconds %q, want %q", tt.template, tt.inputs, got, tt.want)
		}
	}
	// What the exit handler and the DAG pass to scale-restore.
	for dag, want := range map[string]map[string]string{
		"main":         {"wait-ready": "{{workflow.parameters.wait-ready}}", "only-run-uid": "{{workflow.uid}}", "supersede-database": "{{workflow.parameters.database-secret}}/{{workflow.parameters.database-secret-key}}", "retry-transient-for": "0s"},
		"exit-handler": {"wait-ready": "false", "only-run-uid": "{{workflow.uid}}", "supersede-database": "", "retry-transient-for": "{{workflow.parameters.retry-transient-for}}"},
	} {
		n := 0
		for _, task := range templateByName(t, wft, dag).DAG.Tasks {
			if task.Template != "scale-restore-pod" {
				continue
			}
			n++
			got := map[string]string{}
			for _, p := range task.Arguments.Parameters {
				got[p.Name] = p.Value.String()
			}
			for k, w := range want {
				if got[k] != w {
					t.Errorf("%s task %s: argument %s = %q, want %q", dag, task.Name, k, got[k], w)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s: no scale-restore task", dag)
		}
	}
}

// TestArgoEntrypointsPullFirst checks that every single-phase entrypoint runs
// pull-image before its phase's pod, passing its inputs through unchanged: migrate
// and rollback have no pod deadline, so without the probe a wrong image would wait
// in ImagePullBackOff holding the database's mutex.
func TestArgoEntrypointsPullFirst(t *testing.T) {
	wft := argoTemplate(t)
	var phases []string
	for _, tmpl := range wft.Spec.Templates {
		if name, ok := strings.CutSuffix(tmpl.Name, "-pod"); ok && tmpl.Container != nil {
			// the pods of a databases list (issue 15) have no single-phase entrypoint
			// settle runs in the exit handler only: it waits for the run's own pods
			if slices.Contains([]string{"settle", "check-databases", "plan-db", "databases-rounds", "databases-decide", "databases-summary", "migrate-db", "recheck-db", "rollback-db"}, name) {
				continue
			}
			phases = append(phases, name)
		}
	}
	if len(phases) != 8 {
		t.Errorf("phase pods %v, want the 8 phases", phases)
	}
	for _, phase := range phases {
		entry := templateByName(t, wft, phase)
		pod := templateByName(t, wft, phase+"-pod")
		if entry.DAG == nil || len(entry.DAG.Tasks) != 2 {
			t.Errorf("entrypoint %s: want a DAG of pull-image and %s-pod", phase, phase)
			continue
		}
		pull, run := entry.DAG.Tasks[0], entry.DAG.Tasks[1]
		if pull.Template != argoPullProbe || run.Template != phase+"-pod" || run.Depends != pull.Name || run.Name != phase {
			t.Errorf("entrypoint %s: tasks %s(%s) and %s(%s, depends %q), want pull-image, then %s-pod depending on it",
				phase, pull.Name, pull.Template, run.Name, run.Template, run.Depends, phase)
		}
		// The entrypoint gets the workflow's own arguments as its arguments (Argo's
		// ProcessArgs), so an input named like a workflow parameter takes that
		// parameter's value whatever its default (wait-ready: -p wait-ready=true
		// reaches the pod, as meant). A pod input whose default is derived from
		// the parameters (scale-down's database-secret, secret/key) is therefore
		// not an input of the entrypoint: it passes the pod's default itself.
		var inputs []wfv1.Parameter
		shadowed := map[string]bool{}
		for _, in := range pod.Inputs.Parameters {
			v := anyString(in.Value)
			if wft.Spec.Arguments.GetParameterByName(in.Name) != nil && strings.Contains(v, "{{") && v != "{{workflow.parameters."+in.Name+"}}" {
				shadowed[in.Name] = true
				continue
			}
			inputs = append(inputs, in)
		}
		if len(entry.Inputs.Parameters) != len(inputs) {
			t.Errorf("entrypoint %s: inputs %v, want those of %s-pod but %v", phase, entry.Inputs.Parameters, phase, shadowed)
			continue
		}
		for _, in := range pod.Inputs.Parameters {
			want := "{{inputs.parameters." + in.Name + "}}"
			if shadowed[in.Name] {
				want = anyString(in.Value)
				if phase == "scale-down" && in.Name == "database-secret" {
					// a person's hold: the bare Secret (TestHolderDatabaseIsSecretAndKey)
					want = "{{workflow.parameters.database-secret}}"
				}
			} else {
				got := entry.Inputs.Parameters[slices.IndexFunc(inputs, func(p wfv1.Parameter) bool { return p.Name == in.Name })]
				if got.Name != in.Name || anyString(got.Value) != anyString(in.Value) || anyString(got.Description) != anyString(in.Description) {
					t.Errorf("entrypoint %s: input %s = %q, want %s-pod's %s = %q", phase, got.Name, anyString(got.Value), phase, in.Name, anyString(in.Value))
				}
			}
			var passed string
			for _, a := range run.Arguments.Parameters {
				if a.Name == in.Name {
					passed = anyString(a.Value)
				}
			}
			if passed != want {
				t.Errorf("entrypoint %s: passes %s = %q to its pod, want %q", phase, in.Name, passed, want)
			}
		}
	}
}

// anyString is s, or <none> when a parameter has no value at all (a required input).
func anyString(s *wfv1.AnyString) string {
	if s == nil {
		return "<none>"
	}
	return s.String()
}

// TestArgoRetryExpressions evaluates the retry expressions the way the controller
// does (operator.go: buildRetryStrategyLocalScope, then argoexpr.EvalBool).
func TestArgoRetryExpressions(t *testing.T) {
	tests := []struct {
		exitCode, status    string
		podLevel, transient bool
	}{
		{"75", "Failed", true, true},
		{"0", "Succeeded", false, false},
		{"1", "Failed", false, false},
		{"2", "Failed", false, false},
		{"137", "Failed", true, false}, // OOM kill
		{"143", "Failed", true, false}, // SIGTERM not handled
		{"-1", "Error", true, false},   // pod deleted or evicted before it reported
		{"75", "Error", true, true},
		{"1", "Error", true, false}, // e.g. "pod deleted" after the container ended
	}
	for _, tt := range tests {
		scope := map[string]any{
			"retries": "0", "lastRetry.exitCode": tt.exitCode, "lastRetry.status": tt.status,
			"lastRetry.duration": "3", "lastRetry.message": "",
		}
		for expr, want := range map[string]bool{argoRetryPodLevel: tt.podLevel, argoRetryTransient: tt.transient} {
			got, err := argoexpr.EvalBool(expr, env.GetFuncMap(scope))
			if err != nil {
				t.Fatalf("%s: %v", expr, err)
			}
			if got != want {
				t.Errorf("exit %s, %s: %q = %v, want %v", tt.exitCode, tt.status, expr, got, want)
			}
		}
	}
}

// enumParams are the WorkflowTemplate's parameters with an enum: the enum-like
// parameters that must fail closed on both engines.
func enumParams(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, p := range argoTemplate(t).Spec.Arguments.Parameters {
		if len(p.Enum) > 0 && !slices.Contains(argoOnlyParams, p.Name) {
			for _, v := range p.Enum {
				out[p.Name] = append(out[p.Name], v.String())
			}
		}
	}
	for _, n := range []string{"stop-workloads", "patroni", "wait-ready", "on-migrate-failure"} {
		if out[n] == nil {
			t.Errorf("parameter %s has no enum", n)
		}
	}
	return out
}

// badValues are typos tried on every enum-like parameter.
var badValues = []string{"True", "yes", "1", "", " true", "Rollback", "keep_down", "Auto", "auto "}

// runGuard runs the guard's command line as its pod would, with the step binary's
// own code, and returns the exit code and stderr.
func runGuard(t *testing.T, binary string, args []string) (int, string) {
	t.Helper()
	if binary != "wait-for-db" {
		t.Fatalf("guard runs %s; this test knows wait-for-db", binary)
	}
	var stdout, stderr bytes.Buffer
	code := step.Run(context.Background(), waitdb.Spec(), append([]string{binary}, args...), &stdout, &stderr)
	return code, stderr.String()
}

// TestArgoParameterGuard: the main DAG's first task, invalid-parameters, runs
// exactly when an enum-like parameter is outside its enum, and everything else
// depends on it; its container exits 2 naming the parameter.
func TestArgoParameterGuard(t *testing.T) {
	wft := argoTemplate(t)
	var guard *wfv1.DAGTask
	for i, task := range templateByName(t, wft, "main").DAG.Tasks {
		switch {
		case task.Template == argoGuard:
			guard = &templateByName(t, wft, "main").DAG.Tasks[i]
		case task.Depends == "" && len(task.Dependencies) == 0:
			t.Errorf("main task %s does not wait for %s", task.Name, argoGuard)
		case task.Name == argoPullProbe && task.Depends != argoGuard:
			t.Errorf("%s depends %q, want %q (Succeeded or Skipped)", argoPullProbe, task.Depends, argoGuard)
		case task.Name == "wait-for-db" && task.Depends != argoPullProbe:
			t.Errorf("wait-for-db depends %q, want %q: the image is known to start first", task.Depends, argoPullProbe)
		}
	}
	if guard == nil {
		t.Fatalf("main DAG has no %s task", argoGuard)
	}
	c := templateByName(t, wft, argoGuard).Container
	for name, enum := range enumParams(t) {
		for _, v := range append(slices.Clone(enum), badValues...) {
			vars := run{entrypoint: "main", status: "Running", params: map[string]string{name: v}}.globals(t, wft)
			runs, err := when(guard.When, vars)
			if err != nil {
				t.Fatalf("%s=%q: %v", name, v, err)
			}
			invalid := !slices.Contains(enum, v)
			if runs != invalid {
				t.Errorf("%s=%q: guard runs %v, want %v", name, v, runs, invalid)
			}
			if !invalid {
				continue
			}
			wantGuardRefuses(t, c, vars, name, v)
		}
	}
}

// argoGuardTask is the main DAG's guard task and its container.
func argoGuardTask(t *testing.T, wft *wfv1.WorkflowTemplate) (*wfv1.DAGTask, *corev1.Container) {
	t.Helper()
	for _, task := range templateByName(t, wft, "main").DAG.Tasks {
		if task.Template == argoGuard {
			return &task, templateByName(t, wft, argoGuard).Container
		}
	}
	t.Fatalf("main DAG has no %s task", argoGuard)
	return nil, nil
}

// TestArgoUnknownParameterGuard: a parameter name the WorkflowTemplate does not
// declare (Argo passes any name on) runs the guard, which exits 2 naming it and
// never its value; the guard's list of names is exactly the declared ones.
func TestArgoUnknownParameterGuard(t *testing.T) {
	wft := argoTemplate(t)
	guard, c := argoGuardTask(t, wft)
	declared := []string{"json"} // Argo's own workflow.parameters.json
	for _, p := range wft.Spec.Arguments.Parameters {
		declared = append(declared, p.Name)
	}
	slices.Sort(declared)
	lists := regexp.MustCompile(`!\(# in \[([^\]]*)\]\)`)
	// the guard task's when and message, and pull-image's arguments
	texts := append(append([]string{guard.When}, c.Args...), templateByName(t, wft, argoPullProbe).Container.Args...)
	found := 0
	for _, text := range texts {
		for _, m := range lists.FindAllStringSubmatch(text, -1) {
			found++
			var names []string
			for n := range strings.SplitSeq(m[1], ",") {
				names = append(names, strings.Trim(strings.TrimSpace(n), "'"))
			}
			slices.Sort(names)
			if !slices.Equal(names, declared) {
				t.Errorf("a guard's list of known names differs from the declared parameters:\n got %v\nwant %v", names, declared)
			}
		}
	}
	if found != 5 { // the when, the message's test and list, pull-image's test and list
		t.Errorf("found %d lists of known names in the guards, want 5", found)
	}
	const secret = "postgres://u:hunter2@db/app"
	for _, params := range []map[string]string{
		{"databse-secret": secret},
		{"Databases": secret},
		{"gate-timeout": "5m"}, // Tekton's only
		{"on-migrate-falure": "rollback", "stop-workload": "false"},
	} {
		vars := run{entrypoint: "main", status: "Running", params: params}.globals(t, wft)
		runs, err := when(guard.When, vars)
		if err != nil {
			t.Fatalf("%v: %v", params, err)
		}
		if !runs {
			t.Errorf("%v: the guard does not run", params)
			continue
		}
		args := resolveArgs(t, c.Args, vars)
		code, stderr := runGuard(t, strings.TrimPrefix(c.Command[0], "/usr/local/bin/"), args)
		names := slices.Sorted(maps.Keys(params))
		if code != exitcode.CodeUsage || !strings.Contains(stderr, "unknown parameters "+strings.Join(names, ", ")+" (") {
			t.Errorf("%v: guard exits %d, stderr %q; want %d naming %s", params, code, stderr, exitcode.CodeUsage, strings.Join(names, ", "))
		}
		if strings.Contains(stderr, "hunter2") || strings.Contains(strings.Join(args, " "), "hunter2") {
			t.Errorf("%v: the guard shows a value: %q", params, stderr)
		}
	}
}

// TestArgoUnknownParameterPullImage: the single-phase entrypoints have no guard
// task; their first pod, pull-image, refuses a parameter name neither the
// template nor the entrypoint declares (exit 2, naming it, never its value), and
// otherwise only prints the version.
func TestArgoUnknownParameterPullImage(t *testing.T) {
	wft := argoTemplate(t)
	c := templateByName(t, wft, argoPullProbe).Container
	const secret = "postgres://u:hunter2@db/app"
	for _, tc := range []struct {
		entrypoint string
		params     map[string]string
		unknown    string // "" when accepted
	}{
		{"main", nil, ""},
		{"migrate", nil, ""},
		{"rollback", map[string]string{"down-to": "20240101120000"}, ""},
		{"scale-restore", map[string]string{"only-run-uid": "0000", "supersede-database": "shop-db", "wait-ready": "true"}, ""},
		{"scale-restore", map[string]string{"only-runuid": secret}, "only-runuid"},
		{"migrate", map[string]string{"too": "5"}, "too"},
		{"migrate", map[string]string{"down-to": "1"}, "down-to"},
		{"scale-down", map[string]string{"only-run-uid": "0000", "Image": "x"}, "Image, only-run-uid"},
	} {
		vars := run{entrypoint: tc.entrypoint, status: "Running", params: tc.params}.globals(t, wft)
		args := resolveArgs(t, c.Args, vars)
		if tc.unknown == "" {
			if !slices.Contains(args, "--version") {
				t.Errorf("%s %v: pull-image args %q, want --version", tc.entrypoint, tc.params, args)
			}
			continue
		}
		code, stderr := runGuard(t, strings.TrimPrefix(c.Command[0], "/usr/local/bin/"), args)
		if code != exitcode.CodeUsage || !strings.Contains(stderr, "unknown parameters "+tc.unknown+" (") || !strings.Contains(stderr, "entrypoint "+tc.entrypoint+":") {
			t.Errorf("%s %v: pull-image exits %d, stderr %q; want %d naming %s", tc.entrypoint, tc.params, code, stderr, exitcode.CodeUsage, tc.unknown)
		}
		if strings.Contains(stderr+strings.Join(args, " "), "hunter2") {
			t.Errorf("%s %v: a value is shown: %q", tc.entrypoint, tc.params, stderr)
		}
	}
}

// TestArgoSinglePhaseOneDatabase: a single phase run by hand with a databases
// list (copied from a multi-database run's arguments) is refused by pull-image,
// and its mutex is still the one of database-secret: with the list, the
// workflow's mutex was the namespace's, so the hand run was not serialised with
// a run for that database, and the phase ran for database-secret alone anyway
// (attack session 26 YAML finding 1).
func TestArgoSinglePhaseOneDatabase(t *testing.T) {
	wft := argoTemplate(t)
	c := templateByName(t, wft, argoPullProbe).Container
	list := `[{"secret":"shop-db"},{"secret":"orders-db"}]`
	for _, tc := range []struct {
		entrypoint string
		params     map[string]string
	}{
		{"scale-restore", map[string]string{"databases": list, "only-run-uid": "0000"}},
		{"migrate", map[string]string{"databases": list}},
		{"rollback", map[string]string{"databases": list, "down-to": "1"}},
		{"scale-down", map[string]string{"databases": list}},
	} {
		vars := run{entrypoint: tc.entrypoint, status: "Running", params: tc.params}.globals(t, wft)
		if got := resolve(t, wft.Spec.Synchronization.Mutexes[0].Name, vars); got != "chartreuse-shop-db" {
			t.Errorf("%s with databases: mutex %q, want chartreuse-shop-db", tc.entrypoint, got)
		}
		args := resolveArgs(t, c.Args, vars)
		code, stderr := runGuard(t, strings.TrimPrefix(c.Command[0], "/usr/local/bin/"), args)
		if code != exitcode.CodeUsage || !strings.Contains(stderr, "databases with --entrypoint "+tc.entrypoint+" (") {
			t.Errorf("%s with databases: pull-image exits %d, stderr %q; want %d refusing databases", tc.entrypoint, code, stderr, exitcode.CodeUsage)
		}
	}
	// the entrypoints that take the list keep the namespace's mutex and pull-image passes
	for _, entrypoint := range []string{"main", "plan-databases"} {
		vars := run{entrypoint: entrypoint, status: "Running", params: map[string]string{"databases": list, "database-secret": ""}}.globals(t, wft)
		if got := resolve(t, wft.Spec.Synchronization.Mutexes[0].Name, vars); got != "chartreuse.workloads.shop" {
			t.Errorf("%s with databases: mutex %q, want chartreuse.workloads.shop", entrypoint, got)
		}
		args := resolveArgs(t, c.Args, vars)
		if !slices.Contains(args, "--version") {
			t.Errorf("%s with databases: pull-image args %q, want --version", entrypoint, args)
		}
	}
}

// TestTektonParameterGuards: an invalid-<param> task for every enum-like parameter,
// run exactly when its value is outside the enum; the gate (the only other root) runs
// after all of them, and wait-for-db after the gate: a typo fails at
// once, not after waiting for another run; the guard Task exits 2 naming the parameter.
func TestTektonParameterGuards(t *testing.T) {
	p := tektonPipeline(t)
	tasks := map[string]pipelinev1.PipelineTask{}
	for _, pt := range p.Spec.Tasks {
		tasks[pt.Name] = pt
	}
	enums := enumParams(t)
	guards := []string{tektonOutOfOrderGuard, tektonRunIDGuard} // TestOutOfOrderPolicyRefused, TestBlankRunIDRefused
	for name := range enums {
		guards = append(guards, "invalid-"+name)
	}
	slices.Sort(guards)
	for _, pt := range p.Spec.Tasks {
		if strings.HasPrefix(pt.Name, "invalid-") {
			continue
		}
		if len(pt.RunAfter) == 0 {
			t.Errorf("task %s runs without waiting for the guards", pt.Name)
		}
		want := guards
		switch pt.Name {
		case "wait-for-db":
			want = []string{"gate"}
		case "gate":
		default:
			continue
		}
		ra := slices.Clone(pt.RunAfter)
		slices.Sort(ra)
		if !slices.Equal(ra, want) {
			t.Errorf("%s: runAfter %v, want %v", pt.Name, ra, want)
		}
	}
	guardTask := tektonTasks(t)[tektonGuard]
	if guardTask == nil || len(guardTask.Spec.Steps) != 1 {
		t.Fatalf("no Task %s with one step", tektonGuard)
	}
	st := guardTask.Spec.Steps[0]
	for name, enum := range enums {
		g, ok := tasks["invalid-"+name]
		if !ok {
			t.Errorf("no task invalid-%s", name)
			continue
		}
		if g.TaskRef == nil || g.TaskRef.Name != tektonGuard {
			t.Errorf("invalid-%s: taskRef %v, want %s", name, g.TaskRef, tektonGuard)
		}
		gp := map[string]string{}
		for _, prm := range g.Params {
			gp[prm.Name] = prm.Value.StringVal
		}
		for _, v := range append(slices.Clone(enum), badValues...) {
			runs := append(pipelinev1.WhenExpressions{}, g.When...).ReplaceVariables(map[string]string{"params." + name: v}, nil).AllowsExecution(nil)
			invalid := !slices.Contains(enum, v)
			if runs != invalid {
				t.Errorf("%s=%q: invalid-%s runs %v, want %v", name, v, name, runs, invalid)
			}
			if !invalid {
				continue
			}
			repl := map[string]string{"params.name": gp["name"], "params.value": v, "params.allowed": gp["allowed"]}
			if gp["value"] != "$(params."+name+")" {
				t.Errorf("invalid-%s passes value %q", name, gp["value"])
			}
			var args []string
			for _, a := range st.Args {
				for k, x := range repl {
					a = strings.ReplaceAll(a, "$("+k+")", x)
				}
				args = append(args, a)
			}
			code, stderr := runGuard(t, strings.TrimPrefix(st.Command[0], "/usr/local/bin/"), args)
			if code != exitcode.CodeUsage || !strings.HasPrefix(stderr, "wait-for-db: invalid parameter ") || !strings.Contains(stderr, name+"=") {
				t.Errorf("%s=%q: guard exits %d, stderr %q; want %d naming %s", name, v, code, stderr, exitcode.CodeUsage, name)
			}
		}
	}
}

// TestArgoParameterGuardDurations: the guard refuses a duration parameter that
// its steps or pod deadlines would refuse, before anything runs: what
// time.ParseDuration refuses, a negative one, one below a second where a step
// needs some time (a pod deadline of 0 seconds is invalid, a ready-timeout of
// 0.1ns is 0), and one above the step's own limit or a year (a pod deadline
// above 2^31 s is invalid). The steps that take ready-timeout and
// retry-transient-for run only after migrate: a bad value found there once
// left the application stopped.
func TestArgoParameterGuardDurations(t *testing.T) {
	wft := argoTemplate(t)
	guard, c := argoGuardTask(t, wft)
	year := 8760 * time.Hour
	// zero: 0 is valid below lo (statement-timeout: none, or at least 1s, which
	// migrate's own queries need)
	bounds := map[string]struct {
		lo, hi time.Duration
		zero   bool
	}{
		// the steps' own waits (poll.ValidateTimeout)
		"wait-timeout": {poll.MinTimeout, poll.MaxTimeout, false}, "image-pull-timeout": {time.Second, year, false}, "patroni-timeout": {poll.MinTimeout, poll.MaxTimeout, false},
		"scale-timeout": {time.Second, year, false}, "ready-timeout": {time.Second, year, false},
		"lock-wait": {0, 24 * time.Hour, false}, "lock-timeout": {0, 596 * time.Hour, false}, "statement-timeout": {time.Second, 596 * time.Hour, true},
		"retry-transient-for": {0, year, false},
	}
	values := []string{"5m", "10s", "1h30m", "1.5s", ".5s", "1.s", "250ms", "3us", "3µs", "3μs", "1h1h", "0", "0s", "00m",
		"0.1ns", "0.0000000001s", "999ms", "1s", "24h", "24h0m1s", "596h", "597h", "8760h", "8761h", "99999h", "100000h",
		"2562048h", "9223372037s", "1h1h1h1h1h",
		"", "5", "5 m", "5min", "1d", "-1s", "+1s", "5m ", " 5m", "s", ".s", "1e3s", "5M", "ten"}
	sixDigits, component := regexp.MustCompile(`[0-9]{6}`), regexp.MustCompile(`[0-9.]+(ns|us|µs|μs|ms|s|m|h)`)
	for name, b := range bounds {
		for _, v := range values {
			d, err := time.ParseDuration(v)
			// The guard's own syntax is stricter than Go's in two ways, both
			// refusing: no sign, and at most 5 digits a number and 4 numbers.
			strict := !strings.HasPrefix(v, "+") && !sixDigits.MatchString(v) && len(component.FindAllString(v, -1)) <= 4
			valid := err == nil && strict && (d >= b.lo && d <= b.hi || b.zero && d == 0)
			vars := run{entrypoint: "main", status: "Running", params: map[string]string{name: v}}.globals(t, wft)
			runs, err := when(guard.When, vars)
			if err != nil {
				t.Fatalf("%s=%q: the guard's expression fails: %v", name, v, err)
			}
			if runs == valid {
				t.Errorf("%s=%q: guard runs %v, want %v (time.ParseDuration: %v)", name, v, runs, !valid, d)
			}
			if valid {
				continue
			}
			wantGuardRefuses(t, c, vars, name, v)
		}
	}
}

// TestTektonDurationsChecked: every Pipeline parameter that holds a duration
// (its default parses as one) is checked by the gate task, before anything
// changes, as a positive duration where the steps need one; gate-timeout is the
// gate's own --timeout. The gate binary's tests cover what a check refuses.
func TestTektonDurationsChecked(t *testing.T) {
	p := tektonPipeline(t)
	waits := []string{"wait-timeout", "patroni-timeout"}
	checked := map[string]bool{}
	// The run id too: the when expressions refuse only "", and a blank one left
	// the failure path's rollback refusing after migrate failed.
	runID := false
	defer func() {
		if !runID {
			t.Error("the gate task does not check the run id (--check-run-id=$(params.run-id))")
		}
	}()
	for _, pt := range p.Spec.Tasks {
		if pt.Name != "gate" {
			continue
		}
		for _, param := range pt.Params {
			if param.Name != "check-durations" {
				continue
			}
			for _, f := range param.Value.ArrayVal {
				if f == "--check-run-id=$(params.run-id)" {
					runID = true // not a duration
					continue
				}
				flag, rest, _ := strings.Cut(f, "=")
				name, value, _ := strings.Cut(rest, "=")
				if value != "$(params."+name+")" {
					t.Errorf("gate checks %s=%s, want the parameter $(params.%s)", name, value, name)
				}
				checked[name] = flag == "--check-positive-duration" || flag == "--check-wait-duration"
				if wait := flag == "--check-wait-duration"; wait != slices.Contains(waits, name) {
					t.Errorf("gate checks %s with %s, want --check-wait-duration %v (the steps' own waits take at most 24h)", name, flag, !wait)
				}
			}
		}
	}
	positive := []string{"wait-timeout", "patroni-timeout", "scale-timeout", "ready-timeout"}
	for _, ps := range p.Spec.Params {
		if ps.Default == nil || ps.Name == "gate-timeout" {
			continue
		}
		if _, err := time.ParseDuration(ps.Default.StringVal); err != nil {
			continue
		}
		pos, ok := checked[ps.Name]
		switch {
		case !ok:
			t.Errorf("duration parameter %s is not checked by the gate task (check-durations)", ps.Name)
		case pos != slices.Contains(positive, ps.Name):
			t.Errorf("duration parameter %s: checked as positive %v, want %v", ps.Name, pos, slices.Contains(positive, ps.Name))
		}
		delete(checked, ps.Name)
	}
	for name := range checked {
		t.Errorf("gate checks %s, which is no duration parameter of the Pipeline", name)
	}
}

// wantGuardRefuses runs the guard container c as Argo would with vars and
// wants it to exit 2 naming the parameter name (whose value is v).
func wantGuardRefuses(t *testing.T, c *corev1.Container, vars map[string]any, name, v string) {
	t.Helper()
	args := resolveArgs(t, c.Args, vars)
	code, stderr := runGuard(t, strings.TrimPrefix(c.Command[0], "/usr/local/bin/"), args)
	if code != exitcode.CodeUsage || !strings.HasPrefix(stderr, "wait-for-db: invalid parameters: ") || !strings.Contains(stderr, name+"=") {
		t.Errorf("%s=%q: guard exits %d, stderr %q; want %d naming %s", name, v, code, stderr, exitcode.CodeUsage, name)
	}
}

// TestRollbackOnlyThisRun: the failure paths' rollbacks undo only what their own
// run applied (migrate --only-this-run), never what another migrator applied
// meanwhile; the rollback a person starts (Argo's rollback entrypoint, the Task
// run by hand) rolls back whatever is above down-to.
func TestRollbackOnlyThisRun(t *testing.T) {
	wft := argoTemplate(t)
	onlyThisRun := func(args []string) []string {
		var out []string
		for _, a := range args {
			if strings.HasPrefix(a, "--only-this-run") {
				out = append(out, a)
			}
		}
		return out
	}
	for entrypoint, want := range map[string]string{"main": "--only-this-run=true", "rollback": "--only-this-run=false"} {
		vars := run{entrypoint: entrypoint, status: "Failed"}.globals(t, wft)
		got := onlyThisRun(templateByName(t, wft, "rollback-pod").Container.Args)
		if len(got) != 1 || resolve(t, got[0], vars) != want {
			t.Errorf("rollback-pod under entrypoint %s: %v, want %s", entrypoint, got, want)
		}
	}
	if got := onlyThisRun(templateByName(t, wft, "rollback-db-pod").Container.Args); !slices.Equal(got, []string{"--only-this-run=true"}) {
		t.Errorf("rollback-db-pod: %v, want --only-this-run=true", got)
	}

	task := tektonTasks(t)["chartreuse-rollback"]
	var rollback []string
	for _, s := range task.Spec.Steps {
		if s.Name == "rollback" {
			rollback = onlyThisRun(s.Args)
		}
	}
	def := ""
	for _, p := range task.Spec.Params {
		if p.Name == "only-this-run" && p.Default != nil {
			def = p.Default.StringVal
		}
	}
	if !slices.Equal(rollback, []string{"--only-this-run=$(params.only-this-run)"}) || def != "false" {
		t.Errorf("chartreuse-rollback: step args %v, param default %q; want the param, false by default (a rollback by hand)", rollback, def)
	}
	for _, pt := range tektonPipeline(t).Spec.Finally {
		if pt.TaskRef == nil || pt.TaskRef.Name != "chartreuse-rollback" {
			continue
		}
		if v := pipelineParam(pt, "only-this-run"); v != "true" {
			t.Errorf("Pipeline finally %s: only-this-run %q, want true", pt.Name, v)
		}
	}
}

// tektonOutOfOrderGuard refuses allow-out-of-order=true with on-migrate-failure
// restore or rollback.
const tektonOutOfOrderGuard = "invalid-out-of-order-policy"

// TestOutOfOrderPolicyRefused: allow-out-of-order=true with on-migrate-failure
// restore or rollback is refused before anything runs, on both engines. After a
// failed migrate both judge by the current version (recheck's, or rollback's
// --down-to), and a migration applied below it leaves that version as it was:
// restore would bring the application back over it, and rollback would not undo it.
func TestOutOfOrderPolicyRefused(t *testing.T) {
	wft := argoTemplate(t)
	guard, c := argoGuardTask(t, wft)
	tg := tektonGuardTask(t, tektonOutOfOrderGuard)
	for _, ooo := range []string{"true", "false"} {
		for _, policy := range []string{"keep-down", "restore", "rollback"} {
			want := ooo == "true" && policy != "keep-down"
			params := map[string]string{"allow-out-of-order": ooo, "on-migrate-failure": policy}
			wantArgoGuard(t, wft, guard, c, params, want, "on-migrate-failure")
			tr := append(pipelinev1.WhenExpressions{}, tg.When...).ReplaceVariables(map[string]string{"params.allow-out-of-order": ooo, "params.on-migrate-failure": policy}, nil).AllowsExecution(nil)
			if tr != want {
				t.Errorf("Tekton %v: %s runs %v, want %v", params, tektonOutOfOrderGuard, tr, want)
			}
		}
	}
}

// tektonRunIDGuard refuses a run-id given empty.
const tektonRunIDGuard = "invalid-run-id"

// TestBlankRunIDRefused: a run-id given blank is refused before anything runs.
// Each step would record its own pod's name, and the failure path's rollback,
// which undoes only what this run id applied (--only-this-run), could undo
// nothing. Argo takes an empty one for the workflow's name (a blank one reached
// the steps); Tekton's default is the PipelineRun's name, but one given empty
// reached them.
func TestBlankRunIDRefused(t *testing.T) {
	wft := argoTemplate(t)
	guard, c := argoGuardTask(t, wft)
	for v, want := range map[string]bool{"": false, " ": true, "\t ": true, "release-1.4": false, " release ": false} {
		wantArgoGuard(t, wft, guard, c, map[string]string{"run-id": v}, want, "run-id")
	}
	tg := tektonGuardTask(t, tektonRunIDGuard)
	for v, want := range map[string]bool{"": true, "chartreuse-abcde": false} {
		if runs := append(pipelinev1.WhenExpressions{}, tg.When...).ReplaceVariables(map[string]string{"params.run-id": v}, nil).AllowsExecution(nil); runs != want {
			t.Errorf("Tekton run-id=%q: %s runs %v, want %v", v, tektonRunIDGuard, runs, want)
		}
	}
}

// wantArgoGuard: with params, the main DAG's guard task runs exactly when want,
// and then refuses naming the parameter name.
func wantArgoGuard(t *testing.T, wft *wfv1.WorkflowTemplate, guard *wfv1.DAGTask, c *corev1.Container, params map[string]string, want bool, name string) {
	t.Helper()
	vars := run{entrypoint: "main", status: "Running", params: params}.globals(t, wft)
	runs, err := when(guard.When, vars)
	if err != nil {
		t.Fatal(err)
	}
	if runs != want {
		t.Errorf("Argo %q: guard runs %v, want %v", params, runs, want)
	}
	if want {
		wantGuardRefuses(t, c, vars, name, params[name])
	}
}

// tektonGuardTask is the Pipeline's guard task name, a task of the guard Task.
func tektonGuardTask(t *testing.T, name string) *pipelinev1.PipelineTask {
	t.Helper()
	for _, pt := range tektonPipeline(t).Spec.Tasks {
		if pt.Name == name {
			if pt.TaskRef == nil || pt.TaskRef.Name != tektonGuard {
				t.Fatalf("Pipeline task %s: taskRef %v, want %s", name, pt.TaskRef, tektonGuard)
			}
			return &pt
		}
	}
	t.Fatalf("Pipeline: no task %s", name)
	return nil
}

// TestDatabaseSecretNameOnly: a database URL given as database-secret (a
// careless user) never reaches what the controller logs or exports before the
// guard refuses it: the workflow's mutex name (the controller logs each lock
// name) and the metrics' database label (on its Prometheus endpoint). The guard
// refuses it without echoing the value.
func TestDatabaseSecretNameOnly(t *testing.T) {
	const password = "S3cr3t"
	wft := argoTemplate(t)
	guard, c := argoGuardTask(t, wft)
	for v, want := range map[string]bool{
		"shop-db": false, "shop.db-2": false,
		"postgres://shop:" + password + "@db:5432/shop": true, "Shop_DB": true, "-shop": true, "": true,
	} {
		wantArgoGuard(t, wft, guard, c, map[string]string{"database-secret": v}, want, "database-secret")
	}
	wantArgoGuard(t, wft, guard, c, map[string]string{"database-secret": "", "databases": `[{"secret":"a"}]`}, false, "")

	url := "postgres://shop:" + password + "@db:5432/shop"
	// the single-phase entrypoints have no guard task: pull-image refuses it
	pull := templateByName(t, wft, argoPullProbe).Container
	for _, entrypoint := range []string{"migrate", "scale-restore", "rollback", "plan"} {
		vars := run{entrypoint: entrypoint, status: "Running", params: map[string]string{"database-secret": url}}.globals(t, wft)
		args := resolveArgs(t, pull.Args, vars)
		code, stderr := runGuard(t, strings.TrimPrefix(pull.Command[0], "/usr/local/bin/"), args)
		if code != exitcode.CodeUsage || !strings.Contains(stderr, "database-secret=(not shown") || strings.Contains(stderr+strings.Join(args, " "), password) {
			t.Errorf("--entrypoint %s with a URL as database-secret: pull-image exits %d, stderr %q; want %d refusing it unshown", entrypoint, code, stderr, exitcode.CodeUsage)
		}
	}
	for _, entrypoint := range []string{"main", "migrate"} {
		vars := run{entrypoint: entrypoint, status: "Failed", params: map[string]string{"database-secret": url}}.globals(t, wft)
		if got := resolve(t, wft.Spec.Synchronization.Mutexes[0].Name, vars); got != "chartreuse-invalid-name" {
			t.Errorf("%s: mutex %q, want chartreuse-invalid-name", entrypoint, got)
		}
		n := 0
		labels := func(ms *wfv1.Metrics) {
			if ms == nil {
				return
			}
			for _, m := range ms.Prometheus {
				for _, l := range m.Labels {
					if l.Key != "database" {
						continue
					}
					n++
					if got := resolve(t, l.Value, vars); got != "invalid-name" {
						t.Errorf("%s: metric %s label database = %q, want invalid-name", entrypoint, m.Name, got)
					}
				}
			}
		}
		labels(wft.Spec.Metrics)
		for i := range wft.Spec.Templates {
			labels(wft.Spec.Templates[i].Metrics)
		}
		if n < 9 {
			t.Errorf("%s: %d database labels, want every metric's", entrypoint, n)
		}
	}
	if got := resolve(t, wft.Spec.Synchronization.Mutexes[0].Name, run{entrypoint: "main", status: "Running"}.globals(t, wft)); got != "chartreuse-shop-db" {
		t.Errorf("mutex %q for database-secret shop-db, want chartreuse-shop-db", got)
	}
}
