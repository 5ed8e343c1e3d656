package manifests

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	exitcode "github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// selectionCases are values of the workload parameters that scale-down and
// scale-restore refuse. With stop-workloads=auto and nothing that needs
// downtime, scale-down does not run and scale-restore reads them only after
// migrate: plan must refuse them, before anything is stopped or applied.
var selectionCases = []struct {
	params map[string]string
	want   string // in the one-line error
}{
	{map[string]string{"workload-selector": "app in (web"}, "app in (web"},
	{map[string]string{"workload-selector": "app=web,=api"}, "app=web,=api"},
	{map[string]string{"workload": "deployment/Web_1"}, "deployment/Web_1"},
	{map[string]string{"workload": "deployment/web,pod/api"}, "pod/api"},
	{map[string]string{"workload": "web"}, "is not kind/name"},
	{map[string]string{"namespace": "Shop"}, "Shop"},
}

// goodSelection is a selection that scale-down and scale-restore take.
var goodSelection = map[string]string{"workload-selector": "app in (web,api)", "workload": "deployment/web,cronjob/report", "namespace": "shop"}

// runPlan runs the migrate binary's code (as steps/migrate builds it) with the
// args of a manifest's plan step. The database URL points at a port nothing
// listens on: a refusal names its value and exits 2; a good selection goes on
// to connect and fails as transient (exit 75).
func runPlan(t *testing.T, args []string) (int, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("CHARTREUSE_DATABASE_URL", "postgres://app:pw@"+addr+"/app?connect_timeout=1")
	results, dir := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "00001_a.sql"), []byte("-- +goose Up\nSELECT 1;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "--results-dir="):
			a = "--results-dir=" + results
		case strings.HasPrefix(a, "--dir="):
			a = "--dir=" + dir
		case strings.HasPrefix(a, "--wait-timeout="):
			// the closed port never answers: wait one second, not wait-timeout's 5m
			a = "--wait-timeout=1s"
		}
		out = append(out, a)
	}
	var stdout, stderr bytes.Buffer
	// the binary here is a development build, not the manifests' version
	out = append(out, "--skip-version-check")
	code := step.Run(context.Background(), stepBinaries["migrate"].spec(), append([]string{"migrate"}, out...), &stdout, &stderr)
	return code, strings.TrimSpace(stderr.String())
}

func wantSelectionRefused(t *testing.T, code int, stderr, want string) {
	t.Helper()
	if code != exitcode.CodeUsage || !strings.Contains(stderr, want) || strings.Count(stderr, "\n") > 0 {
		t.Errorf("plan exits %d, stderr %q; want %d, one line naming %q", code, stderr, exitcode.CodeUsage, want)
	}
}

func wantConnected(t *testing.T, code int, stderr string) {
	t.Helper()
	if code != exitcode.CodeTransient || !strings.Contains(stderr, "connect") {
		t.Errorf("a good selection: plan exits %d, stderr %q; want %d, the database unreachable", code, stderr, exitcode.CodeTransient)
	}
}

// TestArgoPlanChecksTheSelection: the plan templates (single database and per
// database) refuse a bad selection before connecting, and let a good one through.
func TestArgoPlanChecksTheSelection(t *testing.T) {
	wft := argoTemplate(t)
	for _, tmpl := range []string{"plan-pod", "plan-db-pod"} {
		c := templateByName(t, wft, tmpl).Container
		render := func(params map[string]string) []string {
			vars := run{entrypoint: "main", status: "Running", params: params}.globals(t, wft)
			// the per-database template's own inputs: an entry with the defaults
			for _, in := range templateByName(t, wft, tmpl).Inputs.Parameters {
				vars["inputs.parameters."+in.Name] = map[string]string{"table": "goose_db_version", "secret": "shop-db", "key": "url"}[in.Name]
			}
			return resolveArgs(t, c.Args, vars)
		}
		for _, tc := range selectionCases {
			t.Run(fmt.Sprintf("%s/%v", tmpl, tc.params), func(t *testing.T) {
				code, stderr := runPlan(t, render(tc.params))
				wantSelectionRefused(t, code, stderr, tc.want)
			})
		}
		t.Run(tmpl+"/good", func(t *testing.T) {
			code, stderr := runPlan(t, render(goodSelection))
			wantConnected(t, code, stderr)
		})
	}
}

// TestTektonPlanChecksTheSelection: the Pipeline passes the selection to its plan
// task, whose step refuses a bad one before connecting.
func TestTektonPlanChecksTheSelection(t *testing.T) {
	p := tektonPipeline(t)
	passed := map[string]string{}
	for _, pt := range p.Spec.Tasks {
		if pt.Name == "plan" {
			for _, prm := range pt.Params {
				passed[prm.Name] = prm.Value.StringVal
			}
		}
	}
	for _, name := range []string{"workload-selector", "workload", "namespace"} {
		if passed[name] != "$(params."+name+")" {
			t.Errorf("pipeline task plan: param %s = %q, want $(params.%s)", name, passed[name], name)
		}
	}
	task := tektonTasks(t)["chartreuse-plan"]
	if task == nil || len(task.Spec.Steps) == 0 {
		t.Fatal("no Task chartreuse-plan")
	}
	defaults := map[string]string{}
	for _, ps := range task.Spec.Params {
		if ps.Default != nil {
			defaults[ps.Name] = ps.Default.StringVal
		}
	}
	render := func(params map[string]string) []string {
		var args []string
		for _, a := range task.Spec.Steps[0].Args {
			for name, v := range defaults {
				if pv, ok := params[name]; ok {
					v = pv
				}
				a = strings.ReplaceAll(a, "$(params."+name+")", v)
			}
			args = append(args, a)
		}
		return args
	}
	for _, tc := range selectionCases {
		t.Run(fmt.Sprintf("%v", tc.params), func(t *testing.T) {
			code, stderr := runPlan(t, render(tc.params))
			wantSelectionRefused(t, code, stderr, tc.want)
		})
	}
	t.Run("good", func(t *testing.T) {
		code, stderr := runPlan(t, render(goodSelection))
		wantConnected(t, code, stderr)
	})
}
