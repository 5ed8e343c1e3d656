package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The view of a real `go test -json` run of a small module: the package lines,
// the failing tests' output (a failing subtest's under its parent), nothing of
// the passing ones, and the slowest list.
func TestViewOfARealRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go test on a module of its own (not with -short)")
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/m\n\ngo 1.24\n",
		"a/a_test.go": `package a

import ("testing"; "time")

func TestPasses(t *testing.T) { t.Log("quiet when it passes"); time.Sleep(300 * time.Millisecond) }

func TestFails(t *testing.T) { t.Log("said before failing"); t.Error("the reason it fails") }

func TestParent(t *testing.T) {
	t.Run("ok", func(t *testing.T) { t.Log("a passing subtest's line") })
	t.Run("bad", func(t *testing.T) { t.Error("a subtest's failure") })
}

func TestSkipped(t *testing.T) { t.Skip("not here") }
`,
		"b/b_test.go": "package b\n\nimport \"testing\"\n\nfunc TestFine(t *testing.T) { t.Log(\"fine\") }\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "test", "-json", "-count=1", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	raw, _ := cmd.Output() // exit 1: a test fails, as wanted
	if !bytes.Contains(raw, []byte(`"Action":"fail"`)) {
		t.Fatalf("go test -json printed no failure: %s", raw)
	}
	var out bytes.Buffer
	if err := view(bytes.NewReader(raw), &out, 3); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	t.Logf("view:\n%s", got)
	for _, want := range []string{
		"--- FAIL: TestFails", "said before failing", "the reason it fails",
		"--- FAIL: TestParent", "--- FAIL: TestParent/bad", "a subtest's failure",
		"FAIL\texample.com/m/a", "ok  \texample.com/m/b",
		"the 3 slowest tests",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the view lacks %q", want)
		}
	}
	for _, unwanted := range []string{"quiet when it passes", "a passing subtest's line", "=== RUN", "--- PASS", "not here", "\tfine"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("the view has %q, which plain go test prints only with -v", unwanted)
		}
	}
	if !regexp.MustCompile(`(?m)^ +0\.[3-9]s  a TestPasses$`).MatchString(strings.ReplaceAll(got, "example.com/m/", "")) {
		t.Errorf("TestPasses (300 ms) is not first in the slowest list")
	}
	if !strings.Contains(got, "a TestFails  FAIL") && !strings.Contains(got, "a TestParent  FAIL") {
		t.Errorf("no failed test marked in the slowest list")
	}
}

// Lines that are not JSON (go test's complaints before a package runs) pass
// through.
func TestViewKeepsOtherLines(t *testing.T) {
	var out bytes.Buffer
	in := "no Go files in /x\n" + `{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}` + "\n"
	if err := view(strings.NewReader(in), &out, 5); err != nil {
		t.Fatal(err)
	}
	if out.String() != "no Go files in /x\nok  \tp\t0.1s\n" {
		t.Errorf("view = %q", out.String())
	}
}

// A test that never reports its end (its binary timed out) still has its
// lines printed, once the package fails.
func TestViewOfATimedOutTest(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"run","Package":"p","Test":"TestHangs"}`,
		`{"Action":"output","Package":"p","Test":"TestHangs","Output":"    x_test.go:3: waiting for the pod\n"}`,
		`{"Action":"output","Package":"p","Output":"panic: test timed out after 1s\n"}`,
		`{"Action":"output","Package":"p","Output":"FAIL\tp\t1.0s\n"}`,
		`{"Action":"fail","Package":"p","Elapsed":1}`,
	}, "\n") + "\n"
	var out bytes.Buffer
	if err := view(strings.NewReader(in), &out, 0); err != nil {
		t.Fatal(err)
	}
	want := "panic: test timed out after 1s\nFAIL\tp\t1.0s\n--- UNFINISHED: TestHangs (it never reported an end)\n    x_test.go:3: waiting for the pod\n"
	if out.String() != want {
		t.Errorf("view = %q\nwant %q", out.String(), want)
	}
}
