package gate

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

func TestLeaseName(t *testing.T) {
	long := strings.Repeat("a", 250)
	for _, tt := range []struct {
		secret, want string
	}{
		{"app-database", "chartreuse-app-database"},
		{strings.Repeat("s", 242), "chartreuse-" + strings.Repeat("s", 242)}, // 253: fits
	} {
		if got := LeaseName(tt.secret); got != tt.want {
			t.Errorf("LeaseName(%q) = %q, want %q", tt.secret, got, tt.want)
		}
	}
	a, b := LeaseName(long+"x"), LeaseName(long+"y")
	if a == b {
		t.Errorf("two long names share the gate %q", a)
	}
	for _, n := range []string{a, b, LeaseName(strings.Repeat("a.", 126) + "b")} {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			t.Errorf("%q is not a valid name: %v", n, errs)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	two, empty, bad, notJSON := file("two", `["b-db","a-db"]`), file("empty", `[]`), file("bad", `["a-db","App_DB"]`), file("text", "a-db\n")
	many := func(path string) func(*Options) {
		return func(o *Options) { o.DatabaseSecret, o.SecretsFile = "", path }
	}
	ok := func() Options {
		return Options{Action: ActionAcquire, DatabaseSecret: "db", RunName: "r", RunUID: "u", Timeout: 1, PollInterval: 1}
	}
	for _, tt := range []struct {
		name string
		edit func(*Options)
		want string // "" = valid
	}{
		{"valid", func(*Options) {}, ""},
		{"release", func(o *Options) { o.Action = ActionRelease }, ""},
		{"typo in action", func(o *Options) { o.Action = "Acquire" }, `--action "Acquire"`},
		{"no secret", func(o *Options) { o.DatabaseSecret = "" }, "--database-secret is required"},
		{"bad secret", func(o *Options) { o.DatabaseSecret = "App_DB" }, "not a valid Secret name"},
		{"no run uid", func(o *Options) { o.RunUID = "" }, "--run-uid"},
		{"zero timeout", func(o *Options) { o.Timeout = 0 }, "must be positive"},
		{"settle needs no secret", func(o *Options) { o.Action, o.DatabaseSecret = ActionSettle, "" }, ""},
		{"settle without the workflow", func(o *Options) { o.Action, o.RunUID = ActionSettle, "" }, "required with --action settle"},
		{"settle with zero timeout", func(o *Options) { o.Action, o.Timeout = ActionSettle, 0 }, "must be positive"},
		{"several databases", many(two), ""},
		{"several databases and a workload namespace", func(o *Options) { many(two)(o); o.WorkloadNamespace = "shop" }, ""},
		{"several databases, released", func(o *Options) { many(two)(o); o.Action = ActionRelease }, ""},
		{"both a secret and a file", func(o *Options) { o.SecretsFile = two }, "both given"},
		{"no file", many(filepath.Join(dir, "missing")), "--database-secrets-file: open"},
		{"an empty list", many(empty), "lists no Secret"},
		{"not a list", many(notJSON), "not a JSON list of Secret names"},
		{"a bad name in the list", many(bad), `--database-secrets-file "App_DB" is not a valid Secret name`},
		{"a bad workload namespace", func(o *Options) { many(two)(o); o.WorkloadNamespace = "Shop" }, `--workload-namespace "Shop"`},
		{"a workload namespace alone", func(o *Options) { o.WorkloadNamespace = "shop" }, "only for a run over several databases"},
		{"settle with a bad selector", func(o *Options) { o.Action, o.PodSelector = ActionSettle, "a in (b" }, "--pod-selector"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := ok()
			tt.edit(&o)
			err := o.Validate()
			if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestCheckDurations: the gate binary refuses a malformed duration parameter
// with exit 2 and one line naming each, before it connects to anything (no
// cluster here: the kubeconfig points nowhere).
func TestCheckDurations(t *testing.T) {
	base := []string{"gate", "--skip-version-check", "--kubeconfig", "/nonexistent", "--database-secret", "db", "--run-name", "r", "--run-uid", "u"}
	tests := []struct {
		name string
		args []string
		want []string // in the error line; none: valid (the step then fails connecting, not with 2)
	}{
		{"valid", []string{"--check-duration", "lock-wait=0", "--check-positive-duration", "ready-timeout=5m", "--check-duration", "retry-transient-for=10m"}, nil},
		{"words", []string{"--check-positive-duration", "ready-timeout=5 minutes"}, []string{`ready-timeout='5 minutes' (a positive duration`}},
		{"zero where positive", []string{"--check-positive-duration", "scale-timeout=0s"}, []string{`scale-timeout='0s' (a positive duration`}},
		{"negative", []string{"--check-duration", "retry-transient-for=-1s"}, []string{`retry-transient-for='-1s' (a duration`}},
		{"each named", []string{"--check-duration", "lock-wait=1d", "--check-positive-duration", "ready-timeout=", "--check-duration", "statement-timeout=5,0s"},
			[]string{`lock-wait='1d'`, `ready-timeout=''`, `statement-timeout='5,0s'`, "nothing was changed"}},
		{"not NAME=VALUE", []string{"--check-duration", "5m"}, []string{`'5m' is not NAME=VALUE`}},
		{"wait within the steps' limit", []string{"--check-wait-duration", "wait-timeout=24h", "--check-wait-duration", "patroni-timeout=1s"}, nil},
		{"wait over a day", []string{"--check-wait-duration", "wait-timeout=24h0m1s"}, []string{`wait-timeout='24h0m1s' (a duration from 1s to 24h`}},
		{"wait under a second", []string{"--check-wait-duration", "patroni-timeout=999ms"}, []string{`patroni-timeout='999ms' (a duration from 1s to 24h`}},
		{"statement timeout of 0 or a second", []string{"--check-timeout-duration", "statement-timeout=0", "--check-timeout-duration", "statement-timeout=1s"}, nil},
		{"statement timeout under a second", []string{"--check-timeout-duration", "statement-timeout=999ms"}, []string{`statement-timeout='999ms' (0, or a duration of at least 1s`}},
		{"negative statement timeout", []string{"--check-timeout-duration", "statement-timeout=-1s"}, []string{`statement-timeout='-1s' (0, or a duration of at least 1s`}},
		{"a run id", []string{"--check-run-id", "chartreuse-x7k2p"}, nil},
		{"a blank run id", []string{"--check-run-id", "  "}, []string{`run-id=' ' (one line of at most 253 characters, not blank`}},
		{"an empty run id", []string{"--check-run-id="}, []string{`run-id='' (one line`}},
		{"a run id of two lines", []string{"--check-run-id", "a\nb"}, []string{`run-id='a b' (one line`}},
		{"wait of 0", []string{"--check-wait-duration", "wait-timeout=0"}, []string{`wait-timeout='0' (a duration from 1s to 24h`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := step.Run(t.Context(), Spec(), append(slices.Clone(base), tt.args...), &out, &errOut)
			if tt.want == nil {
				if code == failure.CodeUsage {
					t.Fatalf("valid durations refused: %s", errOut.String())
				}
				return
			}
			if code != failure.CodeUsage {
				t.Fatalf("exit %d, want %d\n%s", code, failure.CodeUsage, errOut.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut.String())
				}
			}
		})
	}
}

func TestUnknownParameters(t *testing.T) {
	for _, tc := range []struct {
		given, declared, want []string
	}{
		{nil, []string{"a"}, nil},
		{[]string{"a", "b"}, []string{"a", "b", "c"}, nil},
		{[]string{"z", "a", "y", "z"}, []string{"a"}, []string{"y", "z"}},
		{[]string{"A"}, []string{"a"}, []string{"A"}},
	} {
		if got := unknownParameters(tc.given, tc.declared); !slices.Equal(got, tc.want) {
			t.Errorf("unknownParameters(%v, %v) = %v, want %v", tc.given, tc.declared, got, tc.want)
		}
	}
	if UnknownParameters(nil) != nil {
		t.Error("UnknownParameters(nil) is an error")
	}
	err := UnknownParameters([]string{"databases"})
	if !errors.Is(err, ErrUnknownParameters) || failure.Code(err) != failure.CodeUsage || !strings.Contains(err.Error(), "one PipelineRun per database") {
		t.Errorf("UnknownParameters(databases) = %v (exit %d)", err, failure.Code(err))
	}
}

func TestRunTimeouts(t *testing.T) {
	for _, tc := range []struct {
		timeouts     map[string]any
		taskRunSpecs []any
		want         string // "" when allowed
	}{
		{nil, nil, "(timeouts.pipeline unset, Tekton's default)"},
		{map[string]any{"pipeline": "1h0m0s"}, nil, "(timeouts.pipeline 1h0m0s)"},
		{map[string]any{"pipeline": "0"}, nil, ""},
		{map[string]any{"pipeline": "0s", "tasks": "30m"}, nil, ""},
		{map[string]any{"pipeline": "0", "finally": "0"}, nil, ""},
		{map[string]any{"pipeline": "0", "finally": "10m"}, nil, "(timeouts.finally 10m)"},
		{map[string]any{"pipeline": "soon"}, nil, "(timeouts.pipeline soon)"},
		{map[string]any{"pipeline": 5}, nil, "(spec.timeouts.pipeline: "},
		{map[string]any{"pipeline": "0"}, []any{map[string]any{"pipelineTaskName": "migrate", "timeout": "0s"}}, ""},
		{map[string]any{"pipeline": "0"}, []any{map[string]any{"pipelineTaskName": "gate"}, map[string]any{"pipelineTaskName": "restore", "timeout": "5m0s"}}, "(taskRunSpecs timeout 5m0s for task restore)"},
	} {
		pr := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "r"}, "spec": map[string]any{}}}
		if tc.timeouts != nil {
			pr.Object["spec"] = map[string]any{"timeouts": tc.timeouts, "taskRunSpecs": tc.taskRunSpecs}
		}
		err := RunTimeouts(pr)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v, want none", tc.timeouts, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrRunTimeout) || failure.Code(err) != failure.CodeUsage):
			t.Errorf("%v: %v (exit %d), want exit 2 saying %q", tc.timeouts, err, failure.Code(err), tc.want)
		}
	}
}
