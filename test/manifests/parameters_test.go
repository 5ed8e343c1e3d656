package manifests

import (
	"slices"
	"strings"
	"testing"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	triggersv1beta1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	"sigs.k8s.io/yaml"
)

// stepParameters: which workflow parameter feeds which flag of which steps. The
// modes are container.mode() plus "migrate --down-to" for the rollbacks and
// "migrate --recheck" for the exit handler's second plan (--risk-policy=off). Every
// step of a listed mode must pass the flag from the parameter, on both engines,
// so that plan, migrate, recheck and rollback agree (a plan with another --table
// or --to than migrate's would report the wrong thing), and no other mode may
// pass it.
var stepParameters = []struct {
	param, flag string
	modes       []string
}{
	{"to", "to", []string{"migrate --plan", "migrate --recheck", "migrate"}},
	{"allow-out-of-order", "allow-out-of-order", []string{"migrate --plan", "migrate --recheck", "migrate"}},
	{"allow-empty-database", "allow-empty-database", []string{"migrate --plan", "migrate --recheck", "migrate"}},
	{"table", "table", []string{"migrate --plan", "migrate --recheck", "migrate", "migrate --down-to"}},
	// plan's needs-downtime depends on it (an unbounded lock wait is never additive).
	{"lock-timeout", "lock-timeout", []string{"migrate --plan", "migrate --recheck", "migrate", "migrate --down-to"}},
	// plan checks the role before anything is stopped (a wrong one once failed
	// only in migrate, with the application already down).
	{"migrate-role", "role", []string{"migrate --plan", "migrate --recheck", "migrate", "migrate --down-to"}},
	// migrate's own durations: plan checks them (syntax and range) before
	// anything is stopped, where migrate would refuse them only after.
	{"lock-wait", "lock-wait", []string{"migrate --plan", "migrate --recheck", "migrate", "migrate --down-to"}},
	{"statement-timeout", "statement-timeout", []string{"migrate --plan", "migrate --recheck", "migrate", "migrate --down-to"}},
	{"workload", "workload", []string{"scale-down", "scale-restore"}},
	{"workload-selector", "selector", []string{"scale-down", "scale-restore"}},
	// plan checks the selection (syntax only) before anything changes: with
	// stop-workloads=auto and nothing that needs downtime, scale-down does not
	// run, and scale-restore once read a typo in it only after migrate.
	// They also say which workloads' holds plan (the rounds of a databases list)
	// reads (superseded-holds).
	{"workload", "check-workload", []string{"migrate --plan", roundsMode, tektonCheckMode}},
	{"workload-selector", "check-selector", []string{"migrate --plan", roundsMode, tektonCheckMode}},
	{"namespace", "check-namespace", []string{"migrate --plan", roundsMode, tektonCheckMode}},
	{"log-format", "log-format", []string{"wait-for-db", "wait-patroni", "migrate --plan", "migrate --recheck", "migrate", "migrate --down-to", "scale-down", "scale-restore", "gate", "check-databases", roundsMode, tektonCheckMode, checkOnlyMode}},
}

// entryParameters are the parameters a databases list's entry overrides (issue 15):
// check-databases takes them as the entries' defaults, and a per-database template
// passes the entry's value, its input named after the entry's key.
var entryParameters = map[string]string{"to": "to", "table": "table", "migrate-role": "role"}

// roundsMode is check-databases --action=rounds, which reads the workloads' holds.
const roundsMode = "check-databases --action=rounds"

// tektonCheckMode is the first step of Tekton's list, which checks the run's
// other parameters before its gate too.
const tektonCheckMode = "check-databases --one-entry-per-secret"

func stepMode(c container) string {
	if c.Binary == "check-databases" && c.hasArg("--action=rounds") {
		return roundsMode
	}
	if c.Binary == "check-databases" && c.hasArg("--one-entry-per-secret") {
		return tektonCheckMode
	}
	if _, ok := c.flag("down-to"); ok && c.Binary == "migrate" {
		return "migrate --down-to"
	}
	if v, _ := c.flag("risk-policy"); v == "off" && c.mode() == "migrate --plan" {
		return "migrate --recheck"
	}
	return c.mode()
}

// TestParametersReachTheirSteps: each parameter above reaches every step that
// needs it, as --flag=<parameter> (Argo: the workflow parameter; Tekton: the
// Task's param of the same name, which the Pipeline wires from its own).
func TestParametersReachTheirSteps(t *testing.T) {
	seen := map[string]int{}
	for _, c := range containers(t) {
		mode := stepMode(c)
		for _, sp := range stepParameters {
			got, ok := c.flag(sp.flag)
			if key, entry := entryParameters[sp.param]; entry && (c.Binary == "check-databases" || perDatabase(c) || tektonPerDatabase(c)) {
				if c.Binary == "check-databases" {
					continue // the entries' defaults: checked by their flag names in TestFlagsAgreed
				}
				if !slices.Contains(sp.modes, mode) {
					if ok {
						t.Errorf("%s (%s): passes --%s=%s, which only %v take", c.Where, mode, sp.flag, got, sp.modes)
					}
					continue
				}
				want := "{{inputs.parameters." + key + "}}"
				if tektonPerDatabase(c) {
					want = "$(steps.pick.results." + key + ")" // the TaskRun's entry, picked
				}
				if got != want {
					t.Errorf("%s (%s): --%s=%q, want the entry's %q", c.Where, mode, sp.flag, got, want)
				}
				continue
			}
			if !slices.Contains(sp.modes, mode) {
				if ok {
					t.Errorf("%s (%s): passes --%s=%s, which only %v take", c.Where, mode, sp.flag, got, sp.modes)
				}
				continue
			}
			want := map[string]string{"argo": "{{workflow.parameters." + sp.param + "}}", "tekton": "$(params." + sp.param + ")"}[c.Engine]
			if !ok || got != want {
				t.Errorf("%s (%s): --%s=%q, want %q", c.Where, mode, sp.flag, got, want)
			}
			seen[sp.param+" "+c.Engine]++
		}
	}
	for _, sp := range stepParameters {
		for _, e := range []string{"argo", "tekton"} {
			if seen[sp.param+" "+e] == 0 {
				t.Errorf("%s: no %s step takes it", sp.param, e)
			}
		}
	}
}

// TestTektonTasksGetTheParameters: every pipeline task (finally included) whose
// Task declares one of the parameters above gets the Pipeline's, and the Task's
// default is the Pipeline's (a Task started alone behaves as in the Pipeline).
func TestTektonTasksGetTheParameters(t *testing.T) {
	p := tektonPipeline(t)
	defaults := map[string]string{}
	for _, ps := range p.Spec.Params {
		if ps.Default != nil {
			defaults[ps.Name] = ps.Default.StringVal
		}
	}
	tasks := tektonTasks(t)
	for _, pt := range append(slices.Clone(p.Spec.Tasks), p.Spec.Finally...) {
		if pt.TaskRef == nil || pt.TaskRef.Resolver != "" || pt.TaskRef.Name == tektonGuard {
			continue
		}
		task := tasks[pt.TaskRef.Name]
		if task == nil {
			t.Fatalf("pipeline task %s: no Task %s", pt.Name, pt.TaskRef.Name)
		}
		passed := map[string]string{}
		for _, prm := range pt.Params {
			passed[prm.Name] = prm.Value.StringVal
		}
		for _, sp := range stepParameters {
			if sp.param == "workload-selector" {
				continue
			}
			for _, ps := range task.Spec.Params {
				if ps.Name != sp.param {
					continue
				}
				if got := passed[sp.param]; got != "$(params."+sp.param+")" {
					t.Errorf("pipeline task %s: param %s = %q, want $(params.%s)", pt.Name, sp.param, got, sp.param)
				}
				if ps.Default == nil || ps.Default.StringVal != defaults[sp.param] {
					t.Errorf("Task %s: param %s default %v, want the Pipeline's %q", task.Name, sp.param, ps.Default, defaults[sp.param])
				}
			}
		}
	}
}

// TestTriggerTemplatePassesParameters: the TriggerTemplate's params (migrate-role,
// table, workload among them) each reach the PipelineRun under the same name, and
// their defaults are the Pipeline's except for the application's own settings.
func TestTriggerTemplatePassesParameters(t *testing.T) {
	docs := docsOfKind(loadDocs(t), "triggers.tekton.dev/v1beta1", "TriggerTemplate")
	if len(docs) != 1 {
		t.Fatalf("%d TriggerTemplates, want 1", len(docs))
	}
	tt := &triggersv1beta1.TriggerTemplate{}
	decodeStrict(t, docs[0], tt)
	pipelineDefaults := map[string]string{}
	for _, ps := range tektonPipeline(t).Spec.Params {
		if ps.Default != nil {
			pipelineDefaults[ps.Name] = ps.Default.StringVal
		}
	}
	if len(tt.Spec.ResourceTemplates) != 1 {
		t.Fatalf("%d resource templates in the TriggerTemplate, want 1", len(tt.Spec.ResourceTemplates))
	}
	pr := &pipelinev1.PipelineRun{} // as written, $(tt.params.x) unreplaced
	if err := yaml.UnmarshalStrict(tt.Spec.ResourceTemplates[0].Raw, pr); err != nil {
		t.Fatal(err)
	}
	passed := map[string]string{}
	for _, prm := range pr.Spec.Params {
		passed[prm.Name] = prm.Value.StringVal
	}
	// The application's own settings: the template's defaults are examples.
	appSpecific := map[string]bool{"database-secret": true, "migrations-dir": true, "workload-selector": true}
	var names []string
	for _, ps := range tt.Spec.Params {
		names = append(names, ps.Name)
		if got := passed[ps.Name]; got != "$(tt.params."+ps.Name+")" {
			t.Errorf("TriggerTemplate param %s: the PipelineRun gets %q, want $(tt.params.%s)", ps.Name, got, ps.Name)
		}
		pd, inPipeline := pipelineDefaults[ps.Name]
		if ps.Default != nil && inPipeline && !appSpecific[ps.Name] && *ps.Default != pd {
			t.Errorf("TriggerTemplate param %s: default %q, the Pipeline's is %q", ps.Name, *ps.Default, pd)
		}
	}
	for _, n := range []string{"migrate-role", "table", "workload", "patroni", "on-migrate-failure"} {
		if !slices.Contains(names, n) {
			t.Errorf("TriggerTemplate has no param %s (params: %s)", n, strings.Join(names, ", "))
		}
	}
}
