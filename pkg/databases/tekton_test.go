package databases

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// runAction runs check-databases with args and returns its exit code, its
// results and its summary's error. It reads no Secret: the kubeconfig is absent.
func runStepArgs(t *testing.T, args ...string) (int, map[string]string, string) {
	t.Helper()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := step.Run(context.Background(), Spec(), append([]string{"check-databases", "--skip-version-check",
		"--kubeconfig", filepath.Join(dir, "none"), "--results-dir", dir}, args...), &out, &errb)
	var sum results.Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		t.Fatalf("%v: stdout is not the JSON summary: %q (%s)", args, out.String(), errb.String())
	}
	res := map[string]string{}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(dir, f.Name()))
		res[f.Name()] = string(b)
	}
	return code, res, sum.Error
}

// planDir writes the results migrate --plan writes, as a plan step would.
func planDir(t *testing.T, res map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range res {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The Tekton chain over a list: each plan TaskRun's plan-line, then rounds and
// pick given the lines in another order than the list's (Tekton sorts them by
// TaskRun name), paired by Secret.
func TestPlanLinesRoundsAndPick(t *testing.T) {
	const list = `[{"secret": "orders-db"}, {"secret": "billing-db", "key": "dsn"}, {"secret": "users-db"}]`
	plans := map[string]map[string]string{
		"orders-db":  {"pending": "false", "current-version": "3", "target-version": "3", "files-digest": "d0", "needs-downtime": "true"},
		"billing-db": {"pending": "true", "current-version": "1", "target-version": "4", "files-digest": "d1", "needs-downtime": "false", "git-commit": ""},
		"users-db":   {"pending": "true", "current-version": "0", "target-version": "2", "files-digest": "d2"},
	}
	lines := map[string]string{}
	for secret, res := range plans {
		code, out, msg := runStepArgs(t, "--action", "plan-line", "--secret", secret, "--plan-results", planDir(t, res))
		if code != failure.CodeOK {
			t.Fatalf("plan-line %s: exit %d %s", secret, code, msg)
		}
		lines[secret] = out[ResultPlanLine]
	}
	var line map[string]string
	if err := json.Unmarshal([]byte(lines["billing-db"]), &line); err != nil || line["secret"] != "billing-db" || line["target-version"] != "4" || line["migrations-digest"] != "" {
		t.Errorf("billing-db's line %q (%v)", lines["billing-db"], err)
	}
	given := []string{lines["users-db"], lines["billing-db"], lines["orders-db"]}
	code, out, msg := runStepArgs(t, append([]string{"--action", "rounds", "--databases", list, "--parallelism", "2"}, given...)...)
	if code != failure.CodeOK {
		t.Fatalf("rounds: exit %d %s", code, msg)
	}
	want := map[string]string{"order": `["billing-db","users-db"]`, "pending": "true", "needs-downtime": "true", "holder": "billing-db/dsn+orders-db/url+users-db/url"}
	for k, v := range want {
		if out[k] != v {
			t.Errorf("rounds result %s = %q, want %q", k, out[k], v)
		}
	}
	if _, ok := out["plans"]; ok {
		t.Errorf("rounds with plan lines wrote plans (it may outgrow a TaskRun's results)")
	}
	code, out, msg = runStepArgs(t, append([]string{"--action", "pick", "--secret", "billing-db", "--databases", list}, given...)...)
	if code != failure.CodeOK {
		t.Fatalf("pick: exit %d %s", code, msg)
	}
	for k, v := range map[string]string{"key": "dsn", "index": "1", "pending": "true", "planned-version": "1", "planned-target": "4", "planned-files-digest": "d1", "git-commit": ""} {
		if got, ok := out[k]; !ok || got != v {
			t.Errorf("pick result %s = %q (written %v), want %q", k, got, ok, v)
		}
	}
}

// What the Pipeline could wire wrong is refused (exit 2) before any result.
func TestPlanLinesRefused(t *testing.T) {
	const list = `[{"secret": "a"}, {"secret": "b"}]`
	la := `{"secret":"a","pending":"false","current-version":"1"}`
	lb := `{"secret":"b","pending":"true","current-version":"0"}`
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--action", "rounds", "--databases", list, la}, "no plan line for entry 2 (b)"},
		{[]string{"--action", "rounds", "--databases", list, la, la, lb}, `plan line 2 names the Secret "a" again`},
		{[]string{"--action", "rounds", "--databases", list, la, `{"secret":"c","pending":"true","current-version":"0"}`}, `plan line 2 names the Secret "c", which no entry of the list has`},
		{[]string{"--action", "rounds", "--databases", list, la, "[1]"}, "plan line 2 is not a JSON object of strings"},
		{[]string{"--action", "rounds", "--databases", list, la, `{"secret":"b","pending":"maybe","current-version":"0"}`}, `has pending="maybe"`},
		{[]string{"--action", "rounds", "--databases", `[{"secret": "t", "key": "a"}, {"secret": "t", "key": "b"}]`, la}, "share the Secret t"},
		{[]string{"--action", "pick", "--secret", "a", "--databases", list, la}, "no plan line for entry 2 (b)"},
		{[]string{"--action", "check", "--databases", list, la}, "--action=check takes no arguments after the flags"},
		{[]string{"--action", "decide", "--plans", "[]", la}, "--action=decide takes no arguments after the flags"},
		{[]string{"--action", "plan-line", "--secret", "a"}, "--action=plan-line needs --secret"},
	} {
		code, out, msg := runStepArgs(t, tc.args...)
		if code != failure.CodeUsage || !strings.Contains(msg, tc.want) {
			t.Errorf("%v: exit %d %q, want 2 with %q", tc.args, code, msg, tc.want)
		}
		if len(out) > 0 {
			t.Errorf("%v: results written: %v", tc.args, out)
		}
	}
	// a plan that did not finish wrote no pending: plan-line fails (exit 1)
	code, _, msg := runStepArgs(t, "--action", "plan-line", "--secret", "a", "--plan-results", planDir(t, map[string]string{"current-version": "1"}))
	if code != failure.CodePermanent || !strings.Contains(msg, "reading plan's result pending") {
		t.Errorf("plan-line without pending: exit %d %q, want 1", code, msg)
	}
}
