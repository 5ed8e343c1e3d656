package databases

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// A bad list is refused (exit 2) before the step connects to anything: the
// kubeconfig names a closed port, which a request would fail on with exit 75.
func TestStepRefusesBadListBeforeConnecting(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:%d", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: app}}]
current-context: x
`, pgenv.ClosedPort(t))
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		databases, want string
		args            []string
	}{
		{databases: `[{"secret": "a"}, {"secret": "b"}, {"secret": "c"}]`, args: []string{"--max-secrets", "2"},
			want: "databases: 3 distinct Secrets, more than the 2 one run takes"},
		{databases: `[{"secret": "a"}]`, args: []string{"--max-secrets", "-1"}, want: "--max-secrets -1 is negative"},
		{databases: `[{"secret": "t", "key": "a"}, {"secret": "t", "key": "b"}, {"secret": "t", "key": "c"}]`, args: []string{"--max-entries", "2"},
			want: "databases: 3 entries, more than the 2 one run takes"},
		{databases: `[{"secret": "a"}, {"secret": "b", "dir": "/migrations/` + strings.Repeat("./", 40) + `"}]`, args: []string{"--max-bytes", "300"},
			want: "more than the 300 one run takes (its workflow must stay within the engine's size limit); its longest entry is entry 2 (b)"},
		{databases: `[{"secret": "a"}]`, args: []string{"--max-bytes", "-1"}, want: "--max-bytes -1 is negative"},
		// ["a-db/url","b-db/k"] encoded as a result: 27 bytes
		{databases: `[{"secret": "a-db"}, {"secret": "b-db", "key": "k"}]`, args: []string{"--max-names-bytes", "26"},
			want: "the names of the 2 databases (Secret/key) take 27 bytes in a result, more than the 26"},
		{databases: `[{"secret": "a"}]`, args: []string{"--max-names-bytes", "-1"}, want: "--max-names-bytes -1 is negative"},
		{databases: `[{"secret": "a"}]`, args: []string{"--max-entries", "1001"}, want: "--max-entries 1001 is not from 0 to 1000"},
		// the run's other parameters, refused with the list (Tekton: before the gate)
		{databases: `[{"secret": "a"}]`, args: []string{"--parallelism", "0"}, want: `--parallelism "0" is not an integer from 1 to 64`},
		{databases: `[{"secret": "orders-db"}, {"secret": "orders-db", "name": "again"}]`, want: "entry 1 (orders-db/url) and entry 2 (again) are the same database (Secret orders-db, key url)"},
		{databases: `[]`, want: "the list is empty"},
		{databases: ``, want: "--databases is empty"},
		{databases: `[{"secret": "orders-db", "tabel": "x"}]`, want: `entry 1: unknown key "tabel"`},
	} {
		dir := t.TempDir()
		var out, errb bytes.Buffer
		code := step.Run(context.Background(), Spec(), append([]string{"check-databases", "--skip-version-check", "--kubeconfig", kc,
			"--results-dir", dir, "--databases", tc.databases}, tc.args...), &out, &errb)
		var sum results.Summary
		if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
			t.Fatalf("stdout is not the JSON summary: %q", out.String())
		}
		if code != failure.CodeUsage || !strings.Contains(sum.Error, tc.want) {
			t.Errorf("%s: exit %d %q, want 2 with %q", tc.databases, code, sum.Error, tc.want)
		}
		if strings.Contains(errb.String(), "using cluster") {
			t.Errorf("%s: the step connected before refusing the list:\n%s", tc.databases, errb.String())
		}
		if files, _ := os.ReadDir(dir); len(files) > 0 {
			t.Errorf("%s: results written for a refused list", tc.databases)
		}
	}
}

// --max-bytes counts the entries result as the step writes it, defaults
// included: a list at the bound passes, one byte more does not, and a long
// default counts once per entry that takes it.
func TestMaxBytes(t *testing.T) {
	const list = `[{"secret": "a"}, {"secret": "b"}]`
	o := &Options{Action: ActionCheck, Databases: list, Defaults: runDefaults}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	written, err := json.Marshal(o.entries)
	if err != nil {
		t.Fatal(err)
	}
	n := len(written)
	long := runDefaults
	long.GitURL = "https://git.example.com/" + strings.Repeat("x", 100)
	for _, tc := range []struct {
		max int
		d   Defaults
		ok  bool
	}{
		{n, runDefaults, true},
		{n - 1, runDefaults, false},
		{0, runDefaults, true},
		{n + 200, long, false}, // 124 bytes more in each of 2 entries
		{n + 248, long, true},
	} {
		o := &Options{Action: ActionCheck, Databases: list, MaxBytes: tc.max, Defaults: tc.d}
		err := o.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("--max-bytes %d (the list takes %d with the run's defaults, git-url %q): %v, want ok=%v", tc.max, n, tc.d.GitURL, err, tc.ok)
		}
		if err != nil && failure.Code(err) != failure.CodeUsage {
			t.Errorf("--max-bytes %d: exit %d, want %d", tc.max, failure.Code(err), failure.CodeUsage)
		}
	}
}

// --max-secrets counts distinct Secrets, not entries: tenants sharing one
// Secret (a key each) take one lock.
func TestMaxSecrets(t *testing.T) {
	for _, tc := range []struct {
		databases string
		max       int
		ok        bool
	}{
		{`[{"secret": "a"}, {"secret": "b"}]`, 2, true},
		{`[{"secret": "a"}, {"secret": "b"}, {"secret": "c"}]`, 2, false},
		{`[{"secret": "t", "key": "a"}, {"secret": "t", "key": "b"}, {"secret": "t", "key": "c"}]`, 1, true},
		{`[{"secret": "t", "key": "a"}, {"secret": "u", "key": "b"}]`, 1, false},
		{`[{"secret": "a"}, {"secret": "b"}, {"secret": "c"}]`, 0, true},
	} {
		o := &Options{Action: ActionCheck, Databases: tc.databases, MaxSecrets: tc.max, Defaults: runDefaults}
		err := o.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s with --max-secrets %d: %v, want ok=%v", tc.databases, tc.max, err, tc.ok)
		}
		if err != nil && failure.Code(err) != failure.CodeUsage {
			t.Errorf("%s: exit %d, want %d", tc.databases, failure.Code(err), failure.CodeUsage)
		}
	}
}

// pick writes the entry of one Secret, defaults applied, a result per key and
// its index; it reads no Secret (the kubeconfig names a closed port).
func TestPick(t *testing.T) {
	const list = `[{"secret": "orders-db", "to": "4"}, {"secret": "billing-db", "key": "dsn", "dir": "/migrations/billing", "role": "billing_owner"}]`
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := step.Run(context.Background(), Spec(), []string{"check-databases", "--skip-version-check", "--kubeconfig", filepath.Join(dir, "none"),
		"--results-dir", dir, "--action", "pick", "--secret", "billing-db", "--databases", list,
		"--git-url", "https://git.example/app.git", "--git-revision", "v2", "--table", "app.versions"}, &out, &errb)
	if code != failure.CodeOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := map[string]string{"index": "1", "name": "billing-db", "secret": "billing-db", "key": "dsn", "dir": "/migrations/billing",
		"git-url": "https://git.example/app.git", "git-revision": "v2", "migrations-image": "", "role": "billing_owner", "table": "app.versions", "to": ""}
	for _, k := range Keys {
		if _, ok := want[k]; !ok {
			t.Fatalf("key %s of an entry is not in the test's want", k)
		}
	}
	files, _ := os.ReadDir(dir)
	if len(files) != len(want) {
		t.Errorf("%d results written, want %d", len(files), len(want))
	}
	for k, v := range want {
		got, err := os.ReadFile(filepath.Join(dir, k))
		if err != nil || string(got) != v {
			t.Errorf("result %s = %q (%v), want %q", k, got, err, v)
		}
	}
}

// A Tekton run fans out over its Secrets: check with --one-entry-per-secret and
// pick refuse entries that share one (exit 2, nothing written), and pick
// refuses a Secret the list does not name.
func TestOneEntryPerSecret(t *testing.T) {
	const shared = `[{"secret": "t", "key": "a"}, {"secret": "u"}, {"secret": "t", "key": "b"}, {"secret": "t", "key": "c"}]`
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--action", "check", "--one-entry-per-secret", "--databases", shared},
			"databases: entry 1 (t/a) and entry 3 (t/b) share the Secret t; a Tekton run migrates one database per Secret"},
		{[]string{"--action", "pick", "--secret", "u", "--databases", shared}, "entry 1 (t/a) and entry 3 (t/b) share the Secret t"},
		{[]string{"--action", "pick", "--secret", "v", "--databases", `[{"secret": "u"}]`}, `--secret "v" names no entry of the list`},
		{[]string{"--action", "pick", "--databases", `[{"secret": "u"}]`}, `--secret "" names no entry of the list`},
	} {
		dir := t.TempDir()
		var out, errb bytes.Buffer
		code := step.Run(context.Background(), Spec(), append([]string{"check-databases", "--skip-version-check",
			"--kubeconfig", filepath.Join(dir, "none"), "--results-dir", dir}, tc.args...), &out, &errb)
		var sum results.Summary
		_ = json.Unmarshal(out.Bytes(), &sum)
		if code != failure.CodeUsage || !strings.Contains(sum.Error, tc.want) {
			t.Errorf("%v: exit %d %q, want 2 with %q", tc.args, code, sum.Error, tc.want)
		}
		if strings.Count(sum.Error, "share the Secret") > 1 {
			t.Errorf("%v: one Secret named more than once: %q", tc.args, sum.Error)
		}
		if files, _ := os.ReadDir(dir); len(files) > 0 {
			t.Errorf("%v: results written for a refused list", tc.args)
		}
	}
	// without the flag, Argo's check takes the shared Secret
	o := &Options{Action: ActionCheck, Databases: shared, Defaults: runDefaults}
	if err := o.Validate(); err != nil {
		t.Errorf("check without --one-entry-per-secret: %v", err)
	}
}
