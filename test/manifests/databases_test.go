package manifests

import (
	"slices"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// Several databases in one run (issue 15): the mutex names and the nesting of
// hold-databases, through Argo's own substitution and expression code (resolve, a
// model of the controller; the e2e scenarios databases-* run the real one).

// TestArgoWorkflowMutex: without databases the run's mutex is today's, named after
// database-secret; with a list it is the workloads' namespace, which no database
// mutex can be named like (chartreuse. against chartreuse-).
func TestArgoWorkflowMutex(t *testing.T) {
	wft := argoTemplate(t)
	sy := wft.Spec.Synchronization
	if sy == nil || len(sy.Mutexes) != 1 {
		t.Fatalf("synchronization %+v: want one mutex", sy)
	}
	for _, tc := range []struct {
		databases, namespace, want string
	}{
		{"", "", "chartreuse-shop-db"},
		{"", "apps", "chartreuse-shop-db"},
		{`[{"secret": "a"}]`, "", "chartreuse.workloads.shop"},
		{`[{"secret": "a"}]`, "apps", "chartreuse.workloads.apps"},
	} {
		vars := map[string]any{
			"workflow.parameters.databases":       tc.databases,
			"workflow.parameters.database-secret": "shop-db",
			"workflow.parameters.namespace":       tc.namespace,
			"workflow.namespace":                  "shop",
		}
		if got := resolve(t, sy.Mutexes[0].Name, vars); got != tc.want {
			t.Errorf("databases %q, namespace %q: mutex %q, want %q", tc.databases, tc.namespace, got, tc.want)
		}
	}
}

// TestArgoHoldDatabasesNesting follows hold-databases down a sorted list of three
// Secrets: each level takes the first one's mutex and hands the rest down; the last
// level, and only it, plans every entry.
func TestArgoHoldDatabasesNesting(t *testing.T) {
	wft := argoTemplate(t)
	hold := templateByName(t, wft, "hold-databases")
	if hold.Synchronization == nil || len(hold.Synchronization.Mutexes) != 1 || hold.DAG == nil {
		t.Fatalf("hold-databases: want a DAG with one mutex")
	}
	task := func(name string) wfv1.DAGTask {
		for _, tk := range hold.DAG.Tasks {
			if tk.Name == name {
				return tk
			}
		}
		t.Fatalf("hold-databases: no task %s", name)
		return wfv1.DAGTask{}
	}
	next, plan := task("hold"), task("plan")
	if next.Template != "hold-databases" || plan.Template != "plan-db-pod" || plan.WithParam != "{{inputs.parameters.entries}}" {
		t.Fatalf("hold-databases: tasks %+v, %+v", next, plan)
	}
	arg := func(tk wfv1.DAGTask, name string) string {
		for _, p := range tk.Arguments.Parameters {
			if p.Name == name && p.Value != nil {
				return p.Value.String()
			}
		}
		t.Fatalf("task %s: no argument %s", tk.Name, name)
		return ""
	}
	run := task("run")
	if run.Template != "databases-pipeline" {
		t.Fatalf("hold-databases: task run %+v", run)
	}
	entries := `[{"name":"a"},{"name":"b"},{"name":"c"}]`
	// then: plan (the plan-databases entrypoint) plans at the last level; run (the
	// main DAG) runs databases-pipeline there instead
	for _, then := range []string{"plan", "run"} {
		secrets := `["a","b","c"]`
		var taken []string
		for level := 0; ; level++ {
			vars := map[string]any{"inputs.parameters.secrets": secrets, "inputs.parameters.entries": entries, "inputs.parameters.then": then}
			taken = append(taken, resolve(t, hold.Synchronization.Mutexes[0].Name, vars))
			deeper := resolve(t, next.When, vars) == "true"
			plans := resolve(t, plan.When, vars) == "true"
			runs := resolve(t, run.When, vars) == "true"
			last := plans || runs
			if deeper == last || plans && runs || (plans && then != "plan") || (runs && then != "run") {
				t.Fatalf("then=%s level %d (secrets %s): hold %v, plan %v, run %v: want exactly one, the one then names", then, level, secrets, deeper, plans, runs)
			}
			if got := resolve(t, arg(next, "entries"), vars); got != entries {
				t.Errorf("level %d: entries handed down %q", level, got)
			}
			if got := resolve(t, arg(next, "then"), vars); got != then {
				t.Errorf("level %d: then handed down %q", level, got)
			}
			if last {
				if got := resolve(t, arg(run, "entries"), vars); runs && got != entries {
					t.Errorf("run's entries %q", got)
				}
				break
			}
			secrets = resolve(t, arg(next, "secrets"), vars)
			if level > 3 {
				t.Fatal("no end to the nesting")
			}
		}
		if want := []string{"chartreuse-a", "chartreuse-b", "chartreuse-c"}; !slices.Equal(taken, want) {
			t.Errorf("then=%s: mutexes taken %v, want %v", then, taken, want)
		}
	}
}
