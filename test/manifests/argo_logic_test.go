package manifests

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Knetic/govaluate"
	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/argoproj/argo-workflows/v3/util/template"

	"github.com/chartreuse-go/chartreuse/pkg/workload"
)

// These tests run the WorkflowTemplate's conditions through Argo's own substitution
// and expression code, the way the controller resolves a DAG task's `when`
// (workflow/controller/dag.go: ReplaceStrictAny with strict prefixes tasks and steps,
// then shouldExecute's govaluate). The variables are built as the controller builds
// them (operator.go: workflow.status, workflow.failures quoted with strconv.Quote,
// workflow.outputs.parameters from globalName outputs). It is a model of the
// controller, not the controller: the end-to-end runs on the real engines are the
// final word.

// failedNode is an entry of workflow.failures.
type failedNode struct {
	DisplayName  string `json:"displayName"`
	Message      string `json:"message"`
	TemplateName string `json:"templateName"`
	Phase        string `json:"phase"`
	PodName      string `json:"podName"`
	FinishedAt   string `json:"finishedAt"`
}

// run describes the state of a workflow when its exit handler starts.
type run struct {
	entrypoint string
	status     string            // Succeeded, Failed, Error
	params     map[string]string // overrides of the defaults
	outputs    map[string]string // workflow.outputs.parameters (globalName exports)
	failed     []failedNode
}

func failure(task, template string) failedNode {
	return failedNode{DisplayName: task, TemplateName: template, Phase: "Failed", Message: "Error (exit code 1)",
		PodName: "chartreuse-x-" + template + "-123", FinishedAt: time.Now().UTC().Format(time.RFC3339)}
}

// globals builds the controller's global parameters for the exit handler.
func (r run) globals(t *testing.T, wft *wfv1.WorkflowTemplate) map[string]any {
	t.Helper()
	g := map[string]any{
		"workflow.name":               "chartreuse-abcde",
		"workflow.namespace":          "shop",
		"workflow.uid":                "0000",
		"workflow.creationTimestamp":  "2026-12-07T09:00:00Z",
		"workflow.mainEntrypoint":     r.entrypoint,
		"workflow.status":             r.status,
		"workflow.serviceAccountName": "chartreuse-workflow",
	}
	params := map[string]string{}
	for _, p := range wft.Spec.Arguments.Parameters {
		if p.Value != nil {
			params[p.Name] = p.Value.String()
		}
	}
	params["database-secret"] = "shop-db"
	params["workload-selector"] = "app.kubernetes.io/name=shop"
	for k, v := range r.params {
		params[k] = v
	}
	var plist []wfv1.Parameter
	for k, v := range params {
		g["workflow.parameters."+k] = v
		plist = append(plist, wfv1.Parameter{Name: k, Value: wfv1.AnyStringPtr(v)})
	}
	pj, _ := json.Marshal(plist)
	g["workflow.parameters"] = string(pj)
	g["workflow.parameters.json"] = string(pj)
	for k, v := range r.outputs {
		g["workflow.outputs.parameters."+k] = v
	}
	failures := r.failed
	b, err := json.Marshal(failures)
	if err != nil {
		t.Fatal(err)
	}
	g["workflow.failures"] = strconv.Quote(string(b))
	return g
}

// when resolves and evaluates a `when` as the DAG executor does.
func when(expr string, vars map[string]any) (bool, error) {
	if expr == "" {
		return true, nil
	}
	b, err := json.Marshal(expr)
	if err != nil {
		return false, err
	}
	resolved, err := template.ReplaceStrictAny(string(b), vars, []string{"tasks", "steps"})
	if err != nil {
		return false, err
	}
	var s string
	if err := json.Unmarshal([]byte(resolved), &s); err != nil {
		return false, err
	}
	if strings.Contains(s, "{{") {
		return false, fmt.Errorf("unresolved: %s", s)
	}
	return shouldExecute(s)
}

// shouldExecute is workflow/controller/steps.go's shouldExecute.
func shouldExecute(when string) (bool, error) {
	expression, err := govaluate.NewEvaluableExpression(when)
	if err != nil {
		return false, fmt.Errorf("invalid 'when' expression %q: %w", when, err)
	}
	tokens := expression.Tokens()
	for i, tok := range tokens {
		if tok.Kind == govaluate.VARIABLE {
			tok.Kind = govaluate.STRING
			tokens[i] = tok
		}
	}
	expression, err = govaluate.NewEvaluableExpressionFromTokens(tokens)
	if err != nil {
		return false, err
	}
	res, err := expression.Evaluate(nil)
	if err != nil {
		return false, err
	}
	b, ok := res.(bool)
	if !ok {
		return false, fmt.Errorf("when %q evaluated to %v, not a boolean", when, res)
	}
	return b, nil
}

func templateByName(t *testing.T, wft *wfv1.WorkflowTemplate, name string) *wfv1.Template {
	t.Helper()
	for i := range wft.Spec.Templates {
		if wft.Spec.Templates[i].Name == name {
			return &wft.Spec.Templates[i]
		}
	}
	t.Fatalf("no template %s", name)
	return nil
}

// simulateExitHandler returns the exit-handler tasks that run, in DAG order, given the
// run's state and what recheck reports. Dependencies: a task whose depends is
// "<task>.Succeeded" runs only if that task ran (and is assumed to succeed).
// dependsOnAnyEnd reads a depends of the form "t.Succeeded || t.Failed ||
// t.Errored || t.Skipped" (the task runs after t whatever became of it) and
// returns t.
func dependsOnAnyEnd(depends string) (string, bool) {
	var task string
	seen := map[string]bool{}
	for _, term := range strings.Split(depends, "||") {
		name, status, ok := strings.Cut(strings.TrimSpace(term), ".")
		if !ok || (task != "" && name != task) {
			return "", false
		}
		task = name
		seen[status] = true
	}
	return task, seen["Succeeded"] && seen["Failed"] && seen["Errored"] && seen["Skipped"]
}

func simulateExitHandler(t *testing.T, wft *wfv1.WorkflowTemplate, r run, recheckVersion string) (ran []string, args map[string]string) {
	t.Helper()
	g := r.globals(t, wft)
	args = map[string]string{}
	did := map[string]bool{}
	for _, task := range templateByName(t, wft, "exit-handler").DAG.Tasks {
		if _, ok := dependsOnAnyEnd(task.Depends); ok {
			// runs once that task ended, whatever became of it (skipped included):
			// the model takes the tasks in order, so it has ended by now
		} else if task.Depends != "" {
			dep, ok := strings.CutSuffix(task.Depends, ".Succeeded")
			if !ok {
				t.Fatalf("exit-handler task %s: depends %q is not <task>.Succeeded", task.Name, task.Depends)
			}
			if !did[dep] {
				continue
			}
		}
		vars := map[string]any{}
		for k, v := range g {
			vars[k] = v
		}
		if did["recheck"] {
			vars["tasks.recheck.outputs.parameters.current-version"] = recheckVersion
			vars["tasks.recheck.outputs.parameters.pending"] = "true"
			vars["tasks.recheck.status"] = "Succeeded"
		}
		ok, err := when(task.When, vars)
		if err != nil {
			t.Fatalf("exit-handler task %s: when %q: %v", task.Name, task.When, err)
		}
		if !ok {
			continue
		}
		did[task.Name] = true
		ran = append(ran, task.Name)
		for _, p := range task.Arguments.Parameters {
			b, _ := json.Marshal(p.Value.String())
			s, err := template.ReplaceStrictAny(string(b), vars, []string{"tasks", "steps"})
			if err != nil {
				t.Fatalf("exit-handler task %s: argument %s: %v", task.Name, p.Name, err)
			}
			var v string
			_ = json.Unmarshal([]byte(s), &v)
			args[task.Name+"."+p.Name] = v
		}
	}
	return ran, args
}

func TestArgoExitHandlerPolicies(t *testing.T) {
	wft := argoTemplate(t)
	planned := map[string]string{"pending": "true", "planned-version": "41"}
	nothingPending := map[string]string{"pending": "false", "planned-version": "42"}
	migrateFailed := []failedNode{failure("migrate(0)", "migrate-pod"), failure("migrate", "migrate-pod")}
	// migratedTo is plan's outputs plus what migrate's last attempt reported.
	migratedTo := func(current, target string) map[string]string {
		return map[string]string{"pending": "true", "planned-version": "41", "migrate-current-version": current, "migrate-target-version": target}
	}
	stoppedAttempt := failedNode{DisplayName: "migrate(0)", TemplateName: "migrate-pod", Phase: "Failed", Message: "workflow shutdown with strategy:  Stop"}
	tests := []struct {
		name    string
		run     run
		recheck string
		want    []string
		args    map[string]string
	}{
		{name: "success", run: run{entrypoint: "main", status: "Succeeded", outputs: planned}},
		{name: "nothing pending", run: run{entrypoint: "main", status: "Succeeded", outputs: nothingPending}},
		{name: "database never came up",
			run: run{entrypoint: "main", status: "Failed", failed: []failedNode{failure("wait-for-db", "wait-for-db-pod")}}},
		{name: "plan failed",
			run: run{entrypoint: "main", status: "Failed", failed: []failedNode{failure("plan", "plan-pod")}}},
		{name: "scale-down failed: put back what it stopped",
			run:  run{entrypoint: "main", status: "Failed", outputs: planned, failed: []failedNode{failure("scale-down", "scale-down-pod")}},
			want: []string{"restore"}, args: map[string]string{"restore.only-run-uid": "0000", "restore.wait-ready": "false"}},
		{name: "stopped during scale-down",
			run:  run{entrypoint: "main", status: "Failed", outputs: planned, failed: []failedNode{{DisplayName: "scale-down", TemplateName: "scale-down-pod", Phase: "Failed", Message: "Stopped with strategy 'Stop'"}}},
			want: []string{"restore"}},
		{name: "scale-restore failed after a good migrate: try again",
			run:  run{entrypoint: "main", status: "Failed", outputs: planned, failed: []failedNode{failure("scale-restore", "scale-restore-pod")}},
			want: []string{"restore"}},
		{name: "migrate succeeded on its second attempt, then scale-restore failed",
			run:  run{entrypoint: "main", status: "Failed", outputs: migratedTo("43", "43"), failed: []failedNode{failure("migrate(0)", "migrate-pod"), failure("scale-restore", "scale-restore-pod")}},
			want: []string{"restore"}},
		// argo stop while migrate runs: the attempt fails, but Argo (v3.7) may leave the
		// retry node Running, so only the attempt is in workflow.failures.
		{name: "stopped during migrate, retry node left Running: keep down",
			run: run{entrypoint: "main", status: "Failed", outputs: migratedTo("42", "43"), failed: []failedNode{stoppedAttempt}}},
		{name: "stopped during migrate, retry node left Running: rollback",
			run:  run{entrypoint: "main", status: "Failed", outputs: migratedTo("42", "43"), params: map[string]string{"on-migrate-failure": "rollback"}, failed: []failedNode{stoppedAttempt}},
			want: []string{"rollback", "restore-after-rollback"}, args: map[string]string{"rollback.down-to": "41"}},
		{name: "stopped during migrate, retry node left Running: restore policy rechecks",
			run:     run{entrypoint: "main", status: "Failed", outputs: migratedTo("42", "43"), params: map[string]string{"on-migrate-failure": "restore"}, failed: []failedNode{stoppedAttempt}},
			recheck: "42", want: []string{"recheck"}},
		{name: "stopped after a transient migrate attempt, before the next: keep down",
			run: run{entrypoint: "main", status: "Failed", outputs: migratedTo("41", "43"), failed: []failedNode{failure("migrate(0)", "migrate-pod")}}},
		{name: "migrate attempt killed without results: keep down",
			run: run{entrypoint: "main", status: "Failed", outputs: migratedTo("", ""), failed: []failedNode{failure("migrate(0)", "migrate-pod")}}},
		{name: "nothing pending but the run failed later: nothing was stopped",
			run: run{entrypoint: "main", status: "Failed", outputs: nothingPending, failed: []failedNode{failure("main", "main-pod")}}},
		{name: "stop-workloads=false",
			run: run{entrypoint: "main", status: "Failed", outputs: planned, params: map[string]string{"stop-workloads": "false"}, failed: []failedNode{failure("scale-down", "scale-down-pod")}}},
		{name: "keep-down: migrate failed",
			run: run{entrypoint: "main", status: "Failed", outputs: planned, failed: migrateFailed}},
		{name: "keep-down: stopped during migrate",
			run: run{entrypoint: "main", status: "Failed", outputs: planned, failed: []failedNode{{DisplayName: "migrate", TemplateName: "migrate-pod", Phase: "Failed", Message: "Stopped with strategy 'Stop'"}}}},
		{name: "restore: nothing was applied",
			run:     run{entrypoint: "main", status: "Failed", outputs: planned, params: map[string]string{"on-migrate-failure": "restore"}, failed: migrateFailed},
			recheck: "41", want: []string{"recheck", "restore-if-unchanged"}, args: map[string]string{"restore-if-unchanged.only-run-uid": "0000"}},
		{name: "restore: something was applied, keep down",
			run:     run{entrypoint: "main", status: "Failed", outputs: planned, params: map[string]string{"on-migrate-failure": "restore"}, failed: migrateFailed},
			recheck: "43", want: []string{"recheck"}},
		{name: "rollback",
			run:  run{entrypoint: "main", status: "Failed", outputs: planned, params: map[string]string{"on-migrate-failure": "rollback"}, failed: migrateFailed},
			want: []string{"rollback", "restore-after-rollback"}, args: map[string]string{"rollback.down-to": "41", "restore-after-rollback.only-run-uid": "0000"}},
		{name: "rollback policy, plan's version unknown: no rollback to nowhere",
			run: run{entrypoint: "main", status: "Failed", outputs: map[string]string{"pending": "true"}, params: map[string]string{"on-migrate-failure": "rollback"}, failed: migrateFailed}},
		{name: "rollback policy, plan's version empty",
			run: run{entrypoint: "main", status: "Failed", outputs: map[string]string{"pending": "true", "planned-version": ""}, params: map[string]string{"on-migrate-failure": "rollback"}, failed: migrateFailed}},
		{name: "rollback policy, but migrate did not fail",
			run:  run{entrypoint: "main", status: "Failed", outputs: planned, params: map[string]string{"on-migrate-failure": "rollback"}, failed: []failedNode{failure("scale-down", "scale-down-pod")}},
			want: []string{"restore"}},
		{name: "migrate errored (pod deleted)",
			run:  run{entrypoint: "main", status: "Error", outputs: planned, params: map[string]string{"on-migrate-failure": "rollback"}, failed: []failedNode{{DisplayName: "migrate", TemplateName: "migrate-pod", Phase: "Error", Message: "pod deleted"}}},
			want: []string{"rollback", "restore-after-rollback"}, args: map[string]string{"rollback.down-to": "41"}},
		{name: "no selector: scale-down stopped nothing",
			run: run{entrypoint: "main", status: "Failed", outputs: planned, params: map[string]string{"workload-selector": ""}, failed: []failedNode{failure("scale-down", "scale-down-pod")}}},
		{name: "a workload list and no selector: put back what it stopped",
			run:  run{entrypoint: "main", status: "Failed", outputs: planned, params: map[string]string{"workload-selector": "", "workload": "deployment/web"}, failed: []failedNode{failure("scale-down", "scale-down-pod")}},
			want: []string{"restore"}},
		// stop-workloads=auto: the failure paths restore this run's records as with true
		// (none when plan found every statement additive and nothing was stopped)
		{name: "auto: scale-down failed: put back what it stopped",
			run:  run{entrypoint: "main", status: "Failed", outputs: planned, params: map[string]string{"stop-workloads": "auto"}, failed: []failedNode{failure("scale-down", "scale-down-pod")}},
			want: []string{"restore"}, args: map[string]string{"restore.only-run-uid": "0000"}},
		{name: "auto: scale-restore failed after a good migrate: try again",
			run:  run{entrypoint: "main", status: "Failed", outputs: planned, params: map[string]string{"stop-workloads": "auto"}, failed: []failedNode{failure("scale-restore", "scale-restore-pod")}},
			want: []string{"restore"}},
		{name: "auto, keep-down: migrate failed",
			run: run{entrypoint: "main", status: "Failed", outputs: planned, params: map[string]string{"stop-workloads": "auto"}, failed: migrateFailed}},
		{name: "auto, restore: nothing was applied",
			run:     run{entrypoint: "main", status: "Failed", outputs: planned, params: map[string]string{"stop-workloads": "auto", "on-migrate-failure": "restore"}, failed: migrateFailed},
			recheck: "41", want: []string{"recheck", "restore-if-unchanged"}, args: map[string]string{"restore-if-unchanged.only-run-uid": "0000"}},
		{name: "auto, rollback",
			run:  run{entrypoint: "main", status: "Failed", outputs: planned, params: map[string]string{"stop-workloads": "auto", "on-migrate-failure": "rollback"}, failed: migrateFailed},
			want: []string{"rollback", "restore-after-rollback"}, args: map[string]string{"restore-after-rollback.only-run-uid": "0000"}},
		{name: "restore policy, stop-workloads=false: nothing to restore",
			run: run{entrypoint: "main", status: "Failed", outputs: planned, params: map[string]string{"on-migrate-failure": "restore", "stop-workloads": "false"}, failed: migrateFailed}},
		{name: "rollback policy, stop-workloads=false: roll back only",
			run:  run{entrypoint: "main", status: "Failed", outputs: planned, params: map[string]string{"on-migrate-failure": "rollback", "stop-workloads": "false"}, failed: migrateFailed},
			want: []string{"rollback"}, args: map[string]string{"rollback.down-to": "41"}},
		// argo retry of a rollback run whose exit handler already rolled back and put
		// the application back (workloads-stopped false): the retried migrate is
		// refused, and no second rollback runs under the application, undoing what
		// later runs applied.
		{name: "retry after the application was put back: no rollback",
			run: run{entrypoint: "main", status: "Failed", outputs: map[string]string{"pending": "true", "planned-version": "41", "workloads-stopped": "false"},
				params: map[string]string{"on-migrate-failure": "rollback"}, failed: migrateFailed}},
		{name: "rollback while the application is stopped",
			run: run{entrypoint: "main", status: "Failed", outputs: map[string]string{"pending": "true", "planned-version": "41", "workloads-stopped": "true"},
				params: map[string]string{"on-migrate-failure": "rollback"}, failed: migrateFailed},
			want: []string{"rollback", "restore-after-rollback"}, args: map[string]string{"rollback.down-to": "41"}},
		// The same for a databases list: its failure path (recheck, the policy over
		// N, rollbacks) does not run once this run has put the application back.
		{name: "databases: failure path while the application is stopped",
			run: run{entrypoint: "main", status: "Failed", outputs: map[string]string{"databases-plans": "[{}]", "databases-pending": "true", "workloads-stopped": "true"},
				params: map[string]string{"databases": `[{"secret":"a"}]`, "on-migrate-failure": "rollback"}},
			want: []string{"databases", "summary"}},
		{name: "databases: retry after the application was put back: summary only",
			run: run{entrypoint: "main", status: "Failed", outputs: map[string]string{"databases-plans": "[{}]", "databases-pending": "true", "workloads-stopped": "false"},
				params: map[string]string{"databases": `[{"secret":"a"}]`, "on-migrate-failure": "rollback"}},
			want: []string{"summary"}},
		{name: "single-phase rerun of migrate: exit handler does nothing",
			run: run{entrypoint: "migrate", status: "Failed", params: map[string]string{"on-migrate-failure": "rollback"}, failed: []failedNode{failure("migrate", "migrate-pod"), failure("chartreuse-abcde", "migrate")}}},
		{name: "single-phase rerun of scale-down: exit handler does not undo it",
			run: run{entrypoint: "scale-down", status: "Succeeded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ran, args := simulateExitHandler(t, wft, tt.run, tt.recheck)
			want := tt.want
			// settle first after every full run that did not succeed: the policy acts
			// only once the run's stopped steps have ended
			if tt.run.entrypoint == "main" && tt.run.status != "Succeeded" {
				want = append([]string{"settle"}, want...)
			}
			if strings.Join(ran, ",") != strings.Join(want, ",") {
				t.Errorf("exit handler ran %v, want %v", ran, want)
			}
			for k, want := range tt.args {
				if args[k] != want {
					t.Errorf("argument %s = %q, want %q", k, args[k], want)
				}
			}
		})
	}
}

// TestArgoMainDAGConditions checks the main DAG's `when`s for the parameter and plan
// combinations.
func TestArgoMainDAGConditions(t *testing.T) {
	wft := argoTemplate(t)
	main := templateByName(t, wft, "main")
	// holds: plan's superseded-holds, the earlier runs for the database holding the
	// workloads (a keep-down)
	type combo struct{ patroni, stop, pending, accept, downtime, holds string }
	for _, c := range []combo{
		{"false", "true", "true", "", "true", ""}, {"true", "true", "true", "", "true", ""}, {"false", "false", "true", "", "true", ""},
		{"false", "true", "false", "", "false", ""}, {"true", "false", "false", "", "false", ""},
		{"false", "true", "false", "2", "false", ""}, {"false", "true", "true", "2,3", "true", ""},
		// auto stops only when plan's needs-downtime is not false; true stops regardless
		{"false", "auto", "true", "", "true", ""}, {"false", "auto", "true", "", "false", ""}, {"false", "auto", "false", "", "false", ""},
		{"false", "true", "true", "", "false", ""}, {"false", "false", "true", "", "false", ""},
		// nothing pending but an earlier keep-down holds the workloads: scale-restore lets
		// go of it, unless this run never touches the workloads (false)
		{"false", "true", "false", "", "false", "u1"}, {"false", "auto", "false", "", "false", "u1,u2"}, {"false", "false", "false", "", "false", "u1"},
		{"false", "true", "false", "2", "false", "u1"}, {"false", "auto", "true", "", "false", "u1"},
	} {
		t.Run(fmt.Sprintf("patroni=%s,stop=%s,pending=%s,accept-changed=%s,needs-downtime=%s,holds=%s", c.patroni, c.stop, c.pending, c.accept, c.downtime, c.holds), func(t *testing.T) {
			r := run{entrypoint: "main", status: "Running", params: map[string]string{"patroni": c.patroni, "stop-workloads": c.stop, "accept-changed": c.accept}}
			vars := r.globals(t, wft)
			vars["tasks.plan.outputs.parameters.pending"] = c.pending
			vars["tasks.plan.outputs.parameters.current-version"] = "41"
			vars["tasks.plan.outputs.parameters.needs-downtime"] = c.downtime
			vars["tasks.plan.outputs.parameters.superseded-holds"] = c.holds
			var ran []string
			for _, task := range main.DAG.Tasks {
				ok, err := when(task.When, vars)
				if err != nil {
					t.Fatalf("task %s: %v", task.Name, err)
				}
				if ok {
					ran = append(ran, task.Name)
				}
				if task.Name == "migrate" { // the tasks after it read its status
					vars["tasks.migrate.status"] = map[bool]string{true: "Succeeded", false: "Skipped"}[ok]
				}
			}
			// plan waits for the database itself; wait-for-db only comes before wait-patroni
			want := []string{"pull-image"}
			if c.patroni == "true" {
				want = append(want, "wait-for-db", "wait-patroni")
			}
			want = append(want, "plan")
			if c.pending == "true" && (c.stop == "true" || c.stop == "auto" && c.downtime != "false") {
				want = append(want, "scale-down")
			}
			if c.pending == "true" || c.accept != "" { // with nothing pending, only to record the accepted edits
				want = append(want, "migrate")
			}
			// after migrate, with auto whether or not scale-down ran; with nothing pending,
			// to let go of the earlier runs' holds plan found
			if c.stop != "false" && (c.pending == "true" || c.accept != "" || c.holds != "") {
				want = append(want, "scale-restore")
			}
			sort.Strings(ran)
			sort.Strings(want)
			if strings.Join(ran, ",") != strings.Join(want, ",") {
				t.Errorf("when-true tasks %v, want %v", ran, want)
			}
		})
	}
}

// TestArgoExpressions resolves the expression tags of the phase templates (the
// commit plan resolved, run id) with Argo's template code.
func TestArgoExpressions(t *testing.T) {
	wft := argoTemplate(t)
	const sha = "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		params    map[string]string
		outputs   map[string]string
		commitArg string // of the steps after plan
		runIDArg  string
	}{
		{nil, nil, "--git-commit=", "--run-id=chartreuse-abcde"},
		{map[string]string{"git-url": "https://example.com/a.git", "run-id": "release-1.4"}, map[string]string{"git-commit": sha},
			"--git-commit=" + sha, "--run-id=release-1.4"},
		// a single-phase entrypoint runs no plan: the step resolves the revision itself
		{map[string]string{"git-url": "https://example.com/a.git"}, nil, "--git-commit=", "--run-id=chartreuse-abcde"},
	} {
		vars := run{entrypoint: "main", status: "Running", params: tc.params, outputs: tc.outputs}.globals(t, wft)
		for _, name := range []string{"plan", "migrate", "rollback", "recheck"} {
			c := templateByName(t, wft, name+"-pod").Container
			if c.WorkingDir != "" {
				t.Errorf("%s: workingDir %q: a git checkout no longer needs one", name, c.WorkingDir)
			}
			var commit []string
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--git-commit=") {
					commit = append(commit, resolve(t, a, vars))
				}
			}
			switch {
			case name == "plan" && len(commit) > 0:
				t.Errorf("plan: %v: plan resolves the revision; it must not be given a commit", commit)
			case name != "plan" && (len(commit) != 1 || commit[0] != tc.commitArg):
				t.Errorf("%s: --git-commit with %v and outputs %v = %v, want [%s]", name, tc.params, tc.outputs, commit, tc.commitArg)
			}
		}
		for _, name := range []string{"scale-down", "scale-restore"} {
			c := templateByName(t, wft, name+"-pod").Container
			found := false
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--run-id=") {
					found = true
					if got := resolve(t, a, vars); got != tc.runIDArg {
						t.Errorf("%s: %q with %v = %q, want %q", name, a, tc.params, got, tc.runIDArg)
					}
				}
			}
			if !found {
				t.Errorf("%s: no --run-id", name)
			}
		}
	}
}

func resolve(t *testing.T, s string, vars map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(s)
	out, err := template.Replace(string(b), vars, false)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	var v string
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// resolveArgs resolves each of args as the controller does (resolve).
func resolveArgs(t *testing.T, args []string, vars map[string]any) []string {
	t.Helper()
	out := make([]string, 0, len(args))
	for _, a := range args {
		out = append(out, resolve(t, a, vars))
	}
	return out
}

// TestArgoPullImage: the first pod of a run only starts the step image, bounded by
// image-pull-timeout and not retried, so a wrong image fails the run in that time
// instead of holding the database's mutex in ImagePullBackOff.
func TestArgoPullImage(t *testing.T) {
	wft := argoTemplate(t)
	tmpl := templateByName(t, wft, argoPullProbe)
	c := tmpl.Container
	if c == nil || c.Image != "{{workflow.parameters.image}}" {
		t.Fatalf("%s: container %+v: want the step image", argoPullProbe, c)
	}
	// With declared parameters only it prints the version (an unknown name:
	// TestArgoUnknownParameterPullImage).
	declared := run{entrypoint: "main", status: "Running"}.globals(t, wft)
	args := resolveArgs(t, c.Args, declared)
	if !slices.Equal(args, []string{"--manifest-version=0.1.0", "--version"}) {
		t.Fatalf("%s: args %q, want --manifest-version=0.1.0 --version", argoPullProbe, args)
	}
	if tmpl.RetryStrategy != nil {
		t.Errorf("%s retries: the kubelet already retries a pull within the deadline", argoPullProbe)
	}
	if tmpl.ActiveDeadlineSeconds == nil {
		t.Fatalf("%s: no activeDeadlineSeconds", argoPullProbe)
	}
	vars := run{entrypoint: "main", status: "Running", params: map[string]string{"image-pull-timeout": "90s"}}.globals(t, wft)
	if got := resolve(t, tmpl.ActiveDeadlineSeconds.String(), vars); got != "90" {
		t.Errorf("%s: activeDeadlineSeconds %q with image-pull-timeout=90s, want 90", argoPullProbe, got)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: securityContext %+v: want the steps' restrictions", argoPullProbe, sc)
	}
	found := false
	for _, s := range wft.Spec.ImagePullSecrets {
		found = found || s.Name == "{{workflow.parameters.image-pull-secret}}"
	}
	if !found {
		t.Errorf("imagePullSecrets %v: want the image-pull-secret parameter", wft.Spec.ImagePullSecrets)
	}
}

// TestArgoMigrateRefusedAfterRestore: migrate's --planned-target carries plan's
// target-version until this run has put the application back (workloads-stopped
// false, a scale-restore-pod's export); then a value migrate refuses (exit 2),
// saying why: after `argo retry`, which keeps the succeeded scale-down, migrate
// would otherwise run with the application running.
func TestArgoMigrateRefusedAfterRestore(t *testing.T) {
	wft := argoTemplate(t)
	c := templateByName(t, wft, "migrate-pod").Container
	var arg string
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--planned-target=") {
			arg = a
		}
	}
	for _, tc := range []struct {
		stopped, want string
	}{
		{"", "--planned-target=43"},
		{"true", "--planned-target=43"},
		{"false", "--planned-target=refused: this run already put the application back, so argo retry would migrate with it running; submit a new run (argo resubmit), which stops it first"},
	} {
		outputs := map[string]string{"planned-target": "43"}
		if tc.stopped != "" {
			outputs["workloads-stopped"] = tc.stopped
		}
		vars := run{entrypoint: "main", status: "Running", outputs: outputs}.globals(t, wft)
		if got := resolve(t, arg, vars); got != tc.want {
			t.Errorf("workloads-stopped=%q: %q, want %q", tc.stopped, got, tc.want)
		}
	}
	// A databases list's migrate-db-pod: the same, with its own plan's target.
	for _, a := range templateByName(t, wft, "migrate-db-pod").Container.Args {
		if !strings.HasPrefix(a, "--planned-target=") {
			continue
		}
		for stopped, want := range map[string]string{"true": "--planned-target=7", "false": "--planned-target=refused: this run already put the application back, so argo retry would migrate with it running; submit a new run (argo resubmit), which stops it first"} {
			vars := run{entrypoint: "main", status: "Running", outputs: map[string]string{"workloads-stopped": stopped}}.globals(t, wft)
			vars["inputs.parameters.planned-target"] = "7"
			if got := resolve(t, a, vars); got != want {
				t.Errorf("migrate-db-pod, workloads-stopped=%q: %q, want %q", stopped, got, want)
			}
		}
		// after the exit handler rolled a database back (argo retry of the run
		// reruns only the failed rounds): refused, whatever the workloads
		for _, stopped := range []string{"", "true"} {
			outputs := map[string]string{"databases-rolled-back": "true"}
			if stopped != "" {
				outputs["workloads-stopped"] = stopped
			}
			vars := run{entrypoint: "main", status: "Running", outputs: outputs}.globals(t, wft)
			vars["inputs.parameters.planned-target"] = "7"
			want := "--planned-target=refused: this run already rolled databases back after its failure, and argo retry reruns only the failed rounds, leaving those at their old versions; submit a new run (argo resubmit)"
			if got := resolve(t, a, vars); got != want {
				t.Errorf("migrate-db-pod after a rollback, workloads-stopped=%q: %q, want %q", stopped, got, want)
			}
		}
	}
	// Every rollback of a database sets the rollback mark. scale-down sets the
	// workloads mark; scale-restore clears it when it succeeds
	// (TestArgoWorkloadsStoppedOnlyAfterARestore).
	for _, m := range []struct{ tmpl, global string }{{"rollback-db-pod", "databases-rolled-back"}, {"scale-down-pod", "workloads-stopped"}} {
		if !slices.ContainsFunc(templateByName(t, wft, m.tmpl).Outputs.Parameters, func(p wfv1.Parameter) bool {
			return p.GlobalName == m.global && p.Value != nil && p.Value.String() == "true"
		}) {
			t.Errorf("%s does not export %s=true", m.tmpl, m.global)
		}
	}
}

// TestArgoStoppedCheckArguments: every template that changes the database after
// this run's scale-down (migrate and rollback, one database or a list) names
// scale-down's workloads in --stopped-selector/--stopped-workload once
// scale-down ran (workloads-stopped true), so that migrate refuses while they
// run again (session 12 workflow finding 2: argo retry after a separate
// scale-restore run migrated under the running application); and none before,
// when the run stopped nothing (stop-workloads=false, auto with nothing that
// needs downtime, a single-phase entrypoint).
func TestArgoStoppedCheckArguments(t *testing.T) {
	wft := argoTemplate(t)
	for _, name := range []string{"migrate-pod", "migrate-db-pod", "rollback-pod", "rollback-db-pod"} {
		args := map[string]string{}
		for _, a := range templateByName(t, wft, name).Container.Args {
			if k, _, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "--stopped-") {
				args[k] = a
			}
		}
		for _, tc := range []struct {
			stopped                string
			selector, workload, ns string
		}{
			{"", "", "", "apps"},
			{"false", "", "", "apps"},
			{"true", "app.kubernetes.io/name=shop", "deployment/web,cronjob/report", "apps"},
		} {
			outputs := map[string]string{}
			if tc.stopped != "" {
				outputs["workloads-stopped"] = tc.stopped
			}
			vars := run{entrypoint: "main", status: "Running", outputs: outputs,
				params: map[string]string{"workload": "deployment/web,cronjob/report", "namespace": "apps"}}.globals(t, wft)
			for flag, want := range map[string]string{"--stopped-selector": tc.selector, "--stopped-workload": tc.workload, "--stopped-namespace": tc.ns} {
				a, ok := args[flag]
				if !ok {
					t.Errorf("%s passes no %s", name, flag)
					continue
				}
				if got := resolve(t, a, vars); got != flag+"="+want {
					t.Errorf("%s, workloads-stopped=%q: %q, want %q", name, tc.stopped, got, flag+"="+want)
				}
			}
		}
	}
}

// TestArgoExitHandlerSettlesFirst: every task of the exit handler runs after
// settle (directly or through the task it depends on), so no policy acts while a
// step that argo stop ended in the workflow's status still works in its pod.
func TestArgoExitHandlerSettlesFirst(t *testing.T) {
	wft := argoTemplate(t)
	tasks := templateByName(t, wft, "exit-handler").DAG.Tasks
	deps := map[string]string{}
	for _, task := range tasks {
		dep := ""
		if task.Depends != "" {
			name, _, _ := strings.Cut(strings.TrimSpace(strings.Split(task.Depends, "||")[0]), ".")
			dep = name
		}
		deps[task.Name] = dep
	}
	if deps["settle"] != "" {
		t.Fatalf("settle depends on %q: it must run first", deps["settle"])
	}
	for _, task := range tasks {
		seen := map[string]bool{}
		for n := task.Name; n != "settle"; n = deps[n] {
			if n == "" || seen[n] {
				t.Errorf("exit-handler task %s does not run after settle (chain %v)", task.Name, seen)
				break
			}
			seen[n] = true
		}
	}
}

// The run's mark that it has put its workloads back (workloads-stopped false),
// which turns off its failure path, comes from scale-restore only when it
// succeeded: it writes the file then. A constant "false" was exported by a
// failed final restore too (Argo reports outputs whatever the exit code), and
// a databases run whose every migration succeeded then stayed down.
func TestArgoWorkloadsStoppedOnlyAfterARestore(t *testing.T) {
	wft := argoTemplate(t)
	tmpl := templateByName(t, wft, "scale-restore-pod")
	found := false
	for _, p := range tmpl.Outputs.Parameters {
		if p.Name != "workloads-stopped" {
			continue
		}
		found = true
		if p.GlobalName != "workloads-stopped" || p.Value != nil || p.ValueFrom == nil ||
			p.ValueFrom.Path != "/tmp/results/"+workload.ResultWorkloadsStopped || p.ValueFrom.Default == nil || p.ValueFrom.Default.String() != "true" {
			t.Errorf("scale-restore-pod's workloads-stopped: %+v %+v; want the global read from /tmp/results/%s, default true", p, p.ValueFrom, workload.ResultWorkloadsStopped)
		}
	}
	if !found {
		t.Error("scale-restore-pod exports no workloads-stopped")
	}
}
