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
	for _, tc := range []struct{ databases, want string }{
		{`[{"secret": "orders-db"}, {"secret": "orders-db", "name": "again"}]`, "entry 1 (orders-db/url) and entry 2 (again) are the same database (Secret orders-db, key url)"},
		{`[]`, "the list is empty"},
		{``, "--databases is empty"},
		{`[{"secret": "orders-db", "tabel": "x"}]`, `entry 1: unknown key "tabel"`},
	} {
		dir := t.TempDir()
		var out, errb bytes.Buffer
		code := step.Run(context.Background(), Spec(), []string{"check-databases", "--skip-version-check", "--kubeconfig", kc,
			"--results-dir", dir, "--databases", tc.databases}, &out, &errb)
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
