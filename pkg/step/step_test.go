package step

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/version"
)

type testOptions struct {
	Name  string
	Count int
}

func (o *testOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "target-name", Destination: &o.Name},
		&cli.IntFlag{Name: "count", Value: 1, Destination: &o.Count},
	}
}

func (o *testOptions) Validate() error {
	if o.Count < 0 {
		return errors.New("--count must not be negative")
	}
	return nil
}

func testSpec(opts *testOptions, run func(context.Context, *Env) error) Spec {
	return Spec{Name: "demo", Usage: "test step", Options: []Options{opts}, Run: run}
}

func runStep(t *testing.T, spec Spec, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), spec, append([]string{"demo"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestExitCodes(t *testing.T) {
	version.Version = "0.1.0"
	tests := []struct {
		name string
		args []string
		run  error
		env  map[string]string
		want int
	}{
		{"ok", []string{"--manifest-version", "0.1.0"}, nil, nil, 0},
		{"transient", []string{"--manifest-version", "0.1.0"}, failure.Transientf("lock busy"), nil, 75},
		{"permanent", []string{"--manifest-version", "0.1.0"}, errors.New("syntax error"), nil, 1},
		{"unknown flag", []string{"--nope"}, nil, nil, 2},
		{"bad flag value", []string{"--count", "x", "--manifest-version", "0.1.0"}, nil, nil, 2},
		{"invalid option", []string{"--count", "-1", "--manifest-version", "0.1.0"}, nil, nil, 2},
		{"bad log format", []string{"--log-format", "xml", "--manifest-version", "0.1.0"}, nil, nil, 2},
		{"positional argument", []string{"--manifest-version", "0.1.0", "extra"}, nil, nil, 2},
		{"missing manifest version", nil, nil, nil, 2},
		{"manifest version mismatch", []string{"--manifest-version", "0.2.0"}, nil, nil, 1},
		{"skip version check", []string{"--skip-version-check"}, nil, nil, 0},
		{"results dir is a file", []string{"--skip-version-check", "--results-dir", "/dev/null"}, nil, nil, 2},
		{"results dir cannot be created", []string{"--skip-version-check", "--results-dir", "/proc/chartreuse-results"}, nil, nil, 2},
		{"manifest version from env", nil, nil, map[string]string{"CHARTREUSE_MANIFEST_VERSION": "0.1.3"}, 0},
		{"help", []string{"--help"}, nil, nil, 0},
		{"version", []string{"--version"}, nil, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			ran := false
			spec := testSpec(&testOptions{}, func(context.Context, *Env) error { ran = true; return tt.run })
			code, stdout, stderr := runStep(t, spec, tt.args...)
			if code != tt.want {
				t.Fatalf("exit code = %d, want %d; stderr: %s", code, tt.want, stderr)
			}
			if tt.want == 2 && ran {
				t.Fatal("a usage error must stop before the step runs")
			}
			if tt.want == 2 && stdout != "" && !json.Valid([]byte(stdout)) {
				t.Errorf("a usage error printed more than the summary on stdout: %q", stdout)
			}
			if code != 0 && strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("error output is not one line: %q", stderr)
			}
		})
	}
}

// TestRefuse: a workflow definition's guard runs a step with --refuse=<message>
// (the parameters it found outside their lists); the step prints
// "<binary>: <message>" and exits 2 before anything else: its work does not
// run, no results or summary are written, whatever other flags say.
func TestRefuse(t *testing.T) {
	version.Version = "0.1.0"
	const msg = `invalid parameters: patroni="ture" (true or false)`
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"flag", []string{"--manifest-version=0.1.0", "--refuse=" + msg}, nil, "demo: " + msg + "\n"},
		{"flag first, separate value", []string{"--refuse", msg, "--manifest-version", "0.1.0"}, nil, "demo: " + msg + "\n"},
		{"no version check needed", []string{"--refuse=" + msg}, nil, "demo: " + msg + "\n"},
		{"environment", []string{"--manifest-version=0.1.0"}, map[string]string{"CHARTREUSE_REFUSE": msg}, "demo: " + msg + "\n"},
		{"empty message still refuses", []string{"--manifest-version=0.1.0", "--refuse="}, nil, "demo: refused by the workflow definition (--refuse gave no reason)\n"},
		{"with a positional argument", []string{"--manifest-version=0.1.0", "--refuse=" + msg, "extra"}, nil, "demo: " + msg + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			dir := filepath.Join(t.TempDir(), "res")
			ran := false
			spec := testSpec(&testOptions{}, func(context.Context, *Env) error { ran = true; return nil })
			code, stdout, stderr := runStep(t, spec, append(tt.args, "--results-dir", dir)...)
			if code != 2 || stderr != tt.want || stdout != "" {
				t.Fatalf("code %d, stdout %q, stderr %q; want 2, nothing, %q", code, stdout, stderr, tt.want)
			}
			if ran {
				t.Fatal("the step ran")
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("the results directory was touched: %v", err)
			}
		})
	}
}

// TestFlagErrorsQuoteOnlyFlagNames: an argument the flag parser refuses is
// named when it is shaped like a flag's name (a typo) and otherwise not shown
// (the rest of a password split at a blank); flag values, even ones starting
// with '-', are not taken for flags.
func TestFlagErrorsQuoteOnlyFlagNames(t *testing.T) {
	version.Version = "0.1.0"
	for _, tt := range []struct {
		args  []string
		code  int
		shown string // "" : nothing of the argument is printed
	}{
		{[]string{"--nope"}, 2, "nope"},
		{[]string{"--skip-version-check", "--targt-name=x"}, 2, "targt-name"},
		{[]string{"--skip-version-check", "-QZ@db/app"}, 2, ""},
		{[]string{"--skip-version-check", "--target-name", "a", "--Qz:x"}, 2, ""},
		{[]string{"--skip-version-check", "---qz"}, 2, ""},
		{[]string{"--skip-version-check", "-=qz"}, 2, ""},
		{[]string{"--skip-version-check", "--target-name", "-qz@x", "--count=2"}, 0, ""},
		{[]string{"--skip-version-check", "--count", "-1"}, 2, ""}, // refused by Validate
		{[]string{"-h"}, 0, ""},
		{[]string{"--skip-version-check", "pos", "-QZ@x"}, 2, ""}, // positional: the flags ended
	} {
		spec := testSpec(&testOptions{}, func(context.Context, *Env) error { return nil })
		code, _, stderr := runStep(t, spec, tt.args...)
		if code != tt.code {
			t.Errorf("%q: code %d, want %d: %s", tt.args, code, tt.code, stderr)
		}
		if tt.shown != "" && !strings.Contains(stderr, tt.shown) {
			t.Errorf("%q: %q not named: %s", tt.args, tt.shown, stderr)
		}
		if tt.shown == "" && (strings.Contains(stderr, "QZ") || strings.Contains(stderr, "qz") || strings.Contains(stderr, "Qz")) {
			t.Errorf("%q: the argument is printed: %s", tt.args, stderr)
		}
	}
}

func TestEveryFlagReadsItsEnvironmentVariable(t *testing.T) {
	version.Version = "0.1.0"
	opts := &testOptions{}
	t.Setenv("CHARTREUSE_TARGET_NAME", "from-env")
	t.Setenv("CHARTREUSE_COUNT", "7")
	t.Setenv("CHARTREUSE_SKIP_VERSION_CHECK", "true")
	code, _, stderr := runStep(t, testSpec(opts, func(context.Context, *Env) error { return nil }))
	if code != 0 || opts.Name != "from-env" || opts.Count != 7 {
		t.Fatalf("code %d, opts %+v, stderr %s", code, opts, stderr)
	}
}

func TestResultsAndSummary(t *testing.T) {
	version.Version = "0.1.0"
	dir := filepath.Join(t.TempDir(), "res")
	spec := testSpec(&testOptions{}, func(_ context.Context, env *Env) error {
		env.Results.Set("pending", "true")
		return failure.Transientf("gave up after 1s")
	})
	code, stdout, _ := runStep(t, spec, "--skip-version-check", "--results-dir", dir)
	if code != 75 {
		t.Fatalf("code = %d", code)
	}
	b, err := os.ReadFile(filepath.Join(dir, "pending"))
	if err != nil || string(b) != "true" {
		t.Fatalf("result file: %q %v", b, err)
	}
	var sum results.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("stdout is not one JSON line: %q", stdout)
	}
	if sum.Status != "failed" || sum.ExitCode != 75 || sum.Results["pending"] != "true" || sum.Error == "" {
		t.Fatalf("summary = %+v", sum)
	}
	// the step's one-line error is a result too (a run over several databases
	// reports it per database)
	if b, err := os.ReadFile(filepath.Join(dir, ResultError)); err != nil || string(b) != sum.Error || !strings.Contains(sum.Error, "gave up after 1s") {
		t.Fatalf("error result: %q %v, summary error %q", b, err, sum.Error)
	}
}

// TestResultsWriteFailureKeepsTheOutcome: once the work is done (migrations
// committed), a results directory that stops being writable must not turn the
// run into a failure, which a workflow would answer with a rollback.
func TestResultsWriteFailureKeepsTheOutcome(t *testing.T) {
	version.Version = "0.1.0"
	dir := filepath.Join(t.TempDir(), "res")
	spec := testSpec(&testOptions{}, func(_ context.Context, env *Env) error {
		env.Results.Set("applied", "3")
		// The directory vanishes and a file takes its place mid-run.
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		return os.WriteFile(dir, nil, 0o644)
	})
	code, stdout, stderr := runStep(t, spec, "--skip-version-check", "--results-dir", dir)
	var sum results.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("stdout is not one JSON line: %q", stdout)
	}
	if code != 0 || sum.Status != "ok" || sum.Results["applied"] != "3" || !strings.Contains(stderr, "writing the results failed") {
		t.Fatalf("code %d, summary %+v, stderr %s", code, sum, stderr)
	}
}

func TestSecretsAreMaskedInErrorsLogsAndSummary(t *testing.T) {
	version.Version = "0.1.0"
	const pw = "p@ss:w/rd%41?x"
	spec := testSpec(&testOptions{}, func(_ context.Context, env *Env) error {
		env.Redactor.Add(pw)
		env.Log.Info("connecting", "password", pw)
		return errors.New("auth failed for postgres://app:" + pw + "@db/app")
	})
	for _, format := range []string{"text", "json"} {
		code, stdout, stderr := runStep(t, spec, "--skip-version-check", "--log-format", format)
		if code != 1 {
			t.Fatalf("code = %d", code)
		}
		if strings.Contains(stdout+stderr, pw) {
			t.Fatalf("%s output leaks the password:\n%s\n%s", format, stdout, stderr)
		}
	}
}

func TestCancelledContextIsTransient(t *testing.T) {
	version.Version = "0.1.0"
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	spec := testSpec(&testOptions{}, func(ctx context.Context, _ *Env) error {
		<-ctx.Done()
		return ctx.Err()
	})
	var out, errOut bytes.Buffer
	if code := Run(ctx, spec, []string{"demo", "--skip-version-check"}, &out, &errOut); code != 75 {
		t.Fatalf("code = %d, stderr %s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "interrupted") {
		t.Errorf("stderr does not say the step was interrupted: %s", errOut.String())
	}
}

func TestAnyFailureAfterCancellationIsTransient(t *testing.T) {
	version.Version = "0.1.0"
	ctx, cancel := context.WithCancel(context.Background())
	spec := testSpec(&testOptions{}, func(context.Context, *Env) error {
		cancel()
		return errors.New("rate: Wait(n=1) would exceed context deadline")
	})
	var out, errOut bytes.Buffer
	if code := Run(ctx, spec, []string{"demo", "--skip-version-check"}, &out, &errOut); code != 75 {
		t.Fatalf("code = %d, want 75; stderr %s", code, errOut.String())
	}
}

// Env.Interrupt stops the step as SIGTERM does, naming why: transient unless
// final, no further attempt even with --retry-transient-for.
func TestInterruptStopsTheStep(t *testing.T) {
	version.Version = "0.1.0"
	for _, c := range []struct {
		name string
		err  func(error) error
		code int
	}{
		{"transient", func(err error) error { return err }, 75},
		{"final", func(err error) error { return failure.Final(fmt.Errorf("stopped partway: %w", err)) }, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			attempts := 0
			spec := testSpec(&testOptions{}, func(ctx context.Context, env *Env) error {
				attempts++
				env.Interrupt("the run was cancelled")
				<-ctx.Done()
				return c.err(ctx.Err())
			})
			code, _, stderr := runStep(t, spec, "--skip-version-check", "--retry-transient-for", "1m")
			if code != c.code || attempts != 1 {
				t.Errorf("exit %d after %d attempts, want %d after 1; stderr %s", code, attempts, c.code, stderr)
			}
			if !strings.Contains(stderr, "interrupted (the run was cancelled): ") {
				t.Errorf("stderr does not say why the step was interrupted: %s", stderr)
			}
		})
	}
}

// A duration flag's bad value is named with what a duration looks like; the
// flag package alone said "parse error" (9999999h overflows, 5 lacks a unit).
func TestDurationFlagErrorsSayWhy(t *testing.T) {
	version.Version = "0.1.0"
	for _, tt := range []struct {
		args []string
		want string // "": accepted
	}{
		{[]string{"--retry-transient-for", "9999999h"}, `--retry-transient-for "9999999h" is not a duration: write numbers with units`},
		{[]string{"--retry-transient-for=5"}, `--retry-transient-for "5" is not a duration`},
		{[]string{"--retry-transient-for="}, `--retry-transient-for "" is not a duration`},
		{[]string{"--retry-transient-for", "1h30m"}, ""},
		{[]string{"--retry-transient-for"}, "flag needs an argument"},
	} {
		spec := testSpec(&testOptions{}, func(context.Context, *Env) error { return nil })
		code, _, stderr := runStep(t, spec, append([]string{"--skip-version-check"}, tt.args...)...)
		switch {
		case tt.want == "" && code != 0:
			t.Errorf("%q: code %d, want 0: %s", tt.args, code, stderr)
		case tt.want != "" && (code != failure.CodeUsage || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1):
			t.Errorf("%q: code %d, stderr %q; want %d and one line saying %q", tt.args, code, stderr, failure.CodeUsage, tt.want)
		}
	}
}

// argsOptions takes the arguments after the flags (Spec.Args).
type argsOptions struct {
	testOptions
	args []string
}

func (o *argsOptions) TakeArgs(args []string) { o.args = args }

func (o *argsOptions) Validate() error {
	if len(o.args) > 0 && o.args[0] == "bad" {
		return errors.New("the first argument is bad")
	}
	return nil
}

// A step whose Spec says what its arguments are hands them to the option that
// takes them, before it is validated; without Spec.Args they stay refused.
func TestArgsAfterTheFlags(t *testing.T) {
	opts := &argsOptions{}
	var seen []string
	spec := Spec{Name: "demo", Args: "LINE...", Options: []Options{opts}, Run: func(context.Context, *Env) error {
		seen = opts.args
		return nil
	}}
	code, _, errOut := runStep(t, spec, "--skip-version-check", "--results-dir", t.TempDir(), "--count", "2", `{"secret":"a"}`, "x y")
	if code != failure.CodeOK || strings.Join(seen, "|") != `{"secret":"a"}|x y` || opts.Count != 2 {
		t.Errorf("exit %d, args %q, count %d (%s)", code, seen, opts.Count, errOut)
	}
	if code, out, _ := runStep(t, spec, "--skip-version-check", "--results-dir", t.TempDir(), "bad"); code != failure.CodeUsage || !strings.Contains(out, "the first argument is bad") {
		t.Errorf("a bad argument: exit %d %s, want 2 naming it", code, out)
	}
	spec.Args = ""
	if code, _, _ := runStep(t, spec, "--skip-version-check", "--results-dir", t.TempDir(), "x"); code != failure.CodeUsage {
		t.Errorf("without Spec.Args an argument is refused: exit %d, want 2", code)
	}
}
