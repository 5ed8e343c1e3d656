package manifests

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestStepsDoNotLinkEngines: the step binaries stay small and engine-agnostic; no
// package of Argo Workflows or Tekton may end up in them.
func TestStepsDoNotLinkEngines(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./steps/...")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list -deps ./steps/...: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps ./steps/... listed only %v", deps)
	}
	for _, p := range deps {
		if strings.HasPrefix(p, "github.com/argoproj/") || strings.HasPrefix(p, "github.com/tektoncd/") {
			t.Errorf("a step binary links %s", p)
		}
	}
}

// TestStepPackagesStandAlone checks that no step package imports another: what two
// steps share (the wait loop, the database connection, the workload records) lives in
// a package of its own, so a change to one step cannot change another by accident.
func TestStepPackagesStandAlone(t *testing.T) {
	const pkg = "github.com/chartreuse-go/chartreuse/pkg/"
	stepPkgs := map[string]bool{}
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./steps/...")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./steps/...: %v", err)
	}
	// A step package is one that a step binary's main imports, except the shared
	// constructor (step) and the packages every main may use; binaries, which
	// composes a binary's step from several, stands for what it imports.
	imports := strings.Fields(strings.ReplaceAll(string(out), "\n", " "))
	cmd = exec.Command("go", "list", "-f", "{{join .Imports \" \"}}", "./pkg/binaries")
	cmd.Dir = repoRoot
	composed, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./pkg/binaries: %v", err)
	}
	for _, imp := range append(imports, strings.Fields(string(composed))...) {
		if strings.HasPrefix(imp, pkg) && imp != pkg+"step" && imp != pkg+"binaries" && !strings.HasPrefix(imp, "github.com/chartreuse-go/chartreuse/steps/") {
			stepPkgs[imp] = true
		}
	}
	if len(stepPkgs) < 5 {
		t.Fatalf("step packages %v: want one per binary", stepPkgs)
	}
	for p := range stepPkgs {
		cmd := exec.Command("go", "list", "-f", "{{join .Imports \" \"}}", p)
		cmd.Dir = repoRoot
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list %s: %v", p, err)
		}
		for _, imp := range strings.Fields(string(out)) {
			if imp != p && stepPkgs[imp] {
				t.Errorf("step package %s imports step package %s: move what they share to a package of its own", strings.TrimPrefix(p, pkg), strings.TrimPrefix(imp, pkg))
			}
		}
	}
}
