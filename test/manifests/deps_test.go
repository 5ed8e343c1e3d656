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
