package manifests

import (
	"slices"
	"strconv"
	"strings"
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
			"workflow.mainEntrypoint":             "main",
		}
		if got := resolve(t, sy.Mutexes[0].Name, vars); got != tc.want {
			t.Errorf("databases %q, namespace %q: mutex %q, want %q", tc.databases, tc.namespace, got, tc.want)
		}
	}
}

// TestArgoHoldDatabasesNesting follows hold-databases down a sorted list of three
// Secrets: each level takes the first one's mutex and hands the rest down; the last
// level, and only it, plans every entry. No level carries the entries or fans out
// over them: Argo expands a skipped withParam task into a node per item, and a
// copy of the list per level grew the workflow as N squared (95 Secrets: 9025
// skipped nodes, a workflow of 4.9 MB compressed that Argo could not save).
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
	if next.Template != "hold-databases" || plan.Template != "plan-databases-each" {
		t.Fatalf("hold-databases: tasks %+v, %+v", next, plan)
	}
	for _, tk := range hold.DAG.Tasks {
		if tk.WithParam != "" || tk.WithItems != nil || tk.WithSequence != nil {
			t.Errorf("hold-databases: task %s fans out; at every level it is skipped, Argo keeps a node per item", tk.Name)
		}
	}
	for _, p := range hold.Inputs.Parameters {
		if p.Name == "entries" {
			t.Errorf("hold-databases takes the entries: every level keeps a copy in its node")
		}
	}
	each := templateByName(t, wft, "plan-databases-each")
	if each.DAG == nil || len(each.DAG.Tasks) != 1 || each.DAG.Tasks[0].Template != "plan-db-pod" ||
		each.DAG.Tasks[0].WithParam != "{{workflow.outputs.parameters.databases-entries}}" {
		t.Errorf("plan-databases-each: want one task planning each of the global databases-entries")
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
	// then: plan (the plan-databases entrypoint) plans at the last level; run (the
	// main DAG) runs databases-pipeline there instead
	for _, then := range []string{"plan", "run"} {
		secrets := `["a","b","c"]`
		var taken []string
		for level := 0; ; level++ {
			vars := map[string]any{"inputs.parameters.secrets": secrets, "inputs.parameters.then": then}
			taken = append(taken, resolve(t, hold.Synchronization.Mutexes[0].Name, vars))
			deeper := resolve(t, next.When, vars) == "true"
			plans := resolve(t, plan.When, vars) == "true"
			runs := resolve(t, run.When, vars) == "true"
			last := plans || runs
			if deeper == last || plans && runs || (plans && then != "plan") || (runs && then != "run") {
				t.Fatalf("then=%s level %d (secrets %s): hold %v, plan %v, run %v: want exactly one, the one then names", then, level, secrets, deeper, plans, runs)
			}
			if got := resolve(t, arg(next, "then"), vars); got != then {
				t.Errorf("level %d: then handed down %q", level, got)
			}
			if last {
				if got := arg(run, "entries"); got != "{{workflow.outputs.parameters.databases-entries}}" {
					t.Errorf("run's entries %q, want the global databases-entries", got)
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

// argoMaxStackDepth is where Argo v3.7.18 stops nesting templates
// (workflow/controller/controller.go maxAllowedStackDepth): a template whose
// depth, the entrypoint being 1, reaches it fails with "Maximum recursion depth
// exceeded" when the controller gets to it.
const argoMaxStackDepth = 100

// TestArgoDatabasesDepth: check-databases' --max-secrets is the most Secrets
// for which every template of every entrypoint stays under Argo's depth limit,
// hold-databases nesting once per Secret. Past it, a run stopped the workloads
// (scale-down, 3 below the last hold-databases) and then could not start
// migrate-db-pod (5 below): e2e databases-nesting-limit.
func TestArgoDatabasesDepth(t *testing.T) {
	wft := argoTemplate(t)
	const hold = "hold-databases"
	limit := -1
	for _, a := range templateByName(t, wft, "check-databases-pod").Container.Args {
		if v, ok := strings.CutPrefix(a, "--max-secrets="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("--max-secrets=%s", v)
			}
			limit = n
		}
	}
	if limit <= 0 {
		t.Fatal("check-databases-pod does not pass --max-secrets")
	}
	// depth is the deepest nesting below name (name itself is 1), with
	// hold-databases standing for secrets levels of itself.
	var depth func(name string, secrets int, path []string) int
	depth = func(name string, secrets int, path []string) int {
		if slices.Contains(path, name) {
			t.Fatalf("templates call themselves other than hold-databases: %v", append(path, name))
		}
		tmpl := templateByName(t, wft, name)
		var children []string
		if tmpl.DAG != nil {
			for _, tk := range tmpl.DAG.Tasks {
				children = append(children, tk.Template)
			}
		}
		for _, group := range tmpl.Steps {
			for _, st := range group.Steps {
				children = append(children, st.Template)
			}
		}
		levels, below := 1, 0
		for _, c := range children {
			if c == "" {
				t.Fatalf("%s calls a template by reference: this test cannot follow it", name)
			}
			if c == hold && name == hold {
				levels = secrets
				continue
			}
			below = max(below, depth(c, secrets, append(path, name)))
		}
		return levels + below
	}
	deepest := func(secrets int) (int, string) {
		d, root := 0, ""
		for _, tmpl := range wft.Spec.Templates {
			if n := depth(tmpl.Name, secrets, nil); n > d {
				d, root = n, tmpl.Name
			}
		}
		return d, root
	}
	if d, root := deepest(limit); d >= argoMaxStackDepth {
		t.Errorf("with %d Secrets (--max-secrets) the entrypoint %s nests %d deep: Argo stops at %d", limit, root, d, argoMaxStackDepth)
	}
	if d, _ := deepest(limit + 1); d < argoMaxStackDepth {
		t.Errorf("with %d Secrets every template is at most %d deep: --max-secrets=%d refuses lists Argo could run", limit+1, d, limit)
	}
	if d, _ := deepest(1); d < 3 {
		t.Errorf("one Secret: %d deep; the walk found no nesting", d)
	}
}

// TestArgoDatabasesFanOutBounded: a DAG that fans a pod template out over the
// databases (withParam) bounds how many of its pods run at once. Unbounded, a
// list of 90 started 90 plan pods together, which on a 2-core node ran past
// their deadline.
func TestArgoDatabasesFanOutBounded(t *testing.T) {
	wft := argoTemplate(t)
	found := 0
	for _, tmpl := range wft.Spec.Templates {
		if tmpl.DAG == nil {
			continue
		}
		for _, task := range tmpl.DAG.Tasks {
			if task.WithParam == "" || templateByName(t, wft, task.Template).Container == nil {
				continue
			}
			found++
			if tmpl.Parallelism == nil || *tmpl.Parallelism < 1 || *tmpl.Parallelism > 10 {
				t.Errorf("template %s fans %s out over %s without a parallelism from 1 to 10 (%v)", tmpl.Name, task.Template, task.WithParam, tmpl.Parallelism)
			}
		}
	}
	if found < 3 { // plan (twice) and recheck
		t.Errorf("found %d pod fan-outs, want at least 3", found)
	}
}

// plan-db-pod exports only what rounds reads (databases.JoinPlans): every one
// of its outputs reaches the rounds pod, once per database, inside Argo's
// 128 KiB template. risks (up to 3000 bytes a database) and pending-versions
// went there too, and a list of some 20 risky databases passed the limit.
func TestArgoPlanDBOutputsOnlyWhatRoundsReads(t *testing.T) {
	want := []string{"current-version", "files-digest", "git-commit", "migrations-digest", "needs-downtime", "pending", "target-version"}
	var got []string
	for _, p := range templateByName(t, argoTemplate(t), "plan-db-pod").Outputs.Parameters {
		got = append(got, p.Name)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("plan-db-pod outputs %v, want %v", got, want)
	}
}
