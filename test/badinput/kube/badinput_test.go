// Package kube runs the bad-input corpus of scale-down and scale-restore against
// the real single-node Kubernetes of test/kubeenv, each case in its own namespace:
// a one-line error that names the problem, the documented exit code, and no change
// to the namespace (resourceVersions of its workloads and the steps' Events
// compared before and after). The steps run in process (step.Run), exactly as
// their binaries do. Every output is scanned for the ServiceAccount tokens in use.
// -short skips it.
package kube

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
	"github.com/chartreuse-go/chartreuse/test/faults/kit"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/kubeobj"
	"github.com/chartreuse-go/chartreuse/test/stepbin"
)

func TestMain(m *testing.M) { kubeenv.Main(m) }

// fixture is one case's namespace with three Deployments labelled app.kubernetes.io/part-of=shop:
// web (2 replicas), api (1) and worker (0); their pods are never scheduled (a
// node selector that matches no node), so nothing runs.
type fixture struct {
	t          *testing.T
	env        *kubeenv.Env
	cs         kubernetes.Interface
	ns         string
	kubeconfig string // admin
	scratch    string
	secrets    *kit.Secrets
}

func (f *fixture) deployment(name string, replicas int32, annotations map[string]string) {
	f.t.Helper()
	d := kubeobj.App{Name: name, Image: f.env.AppImage, Replicas: replicas, Labels: map[string]string{"app.kubernetes.io/part-of": "shop"}, Annotations: annotations}.Deployment()
	d.Spec.Template.Spec.NodeSelector = map[string]string{"chartreuse.io/test": "nowhere"}
	if _, err := f.cs.AppsV1().Deployments(f.ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// tokenKubeconfig is a kubeconfig of a ServiceAccount bound to a Role with the
// steps' documented rules minus one verb on one resource (resource "" keeps all;
// verb "*" drops every rule).
func (f *fixture) tokenKubeconfig(resource, verb string) string {
	f.t.Helper()
	rules := kubeobj.ScaleRules()
	switch {
	case verb == "*":
		rules = nil
	case resource != "":
		rules = kubeobj.WithoutVerb(rules, resource, verb)
	}
	tok, err := kubeobj.ServiceAccount(context.Background(), f.cs, f.ns, "limited", rules)
	if err != nil {
		f.t.Fatal(err)
	}
	f.secrets.Add(tok)
	path, err := kubeobj.Kubeconfig(f.kubeconfig, f.scratch, "", tok)
	if err != nil {
		f.t.Fatal(err)
	}
	return path
}

func (f *fixture) file(name, content string) string {
	f.t.Helper()
	p := filepath.Join(f.scratch, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

type badCase struct {
	name  string
	spec  func() step.Spec
	setup func(f *fixture)
	// args are the step's flags; kubeconfig, when it returns a path, replaces the
	// admin kubeconfig; namespace false leaves --namespace out.
	args       func(f *fixture) []string
	kubeconfig func(f *fixture) string
	noNS       bool
	code       int
	want       []string
}

func flags(a ...string) func(*fixture) []string { return func(*fixture) []string { return a } }

var (
	down    = workload.ScaleDownSpec
	restore = workload.ScaleRestoreSpec
	shop    = flags("--selector", "app.kubernetes.io/part-of=shop")
)

func recorded(f *fixture) {
	f.deployment("stopped", 0, map[string]string{workload.AnnotationReplicas: "3", workload.AnnotationBy: "wf-1"})
}

func cases() []badCase {
	return []badCase{
		{name: "unbalanced selector", spec: down, args: flags("--selector", "app in ("), code: 2, want: []string{"--selector", "not a valid label selector"}},
		{name: "selector with a blank", spec: down, args: flags("--selector", "app web"), code: 2, want: []string{"--selector"}},
		{name: "selector without key", spec: down, args: flags("--selector", "=web"), code: 2, want: []string{"--selector"}},
		{name: "unknown kind", spec: down, args: flags("--workload", "pod/web"), code: 2, want: []string{"unknown kind", "pod"}},
		{name: "invalid object name", spec: down, args: flags("--workload", "deployment/Web_1"), code: 2, want: []string{"Web_1", "not a valid object name"}},
		{name: "workload without name", spec: down, args: flags("--workload", "deployment"), code: 2, want: []string{"kind/name"}},
		{name: "nothing selected", spec: down, args: flags(), code: 2, want: []string{"no workloads chosen"}},
		{name: "invalid namespace", spec: down, args: flags("--selector", "a=b", "--namespace", "Shop_Prod"), noNS: true, code: 2, want: []string{"--namespace", "Shop_Prod"}},
		{name: "missing kubeconfig", spec: down, args: shop, kubeconfig: func(*fixture) string { return "/etc/chartreuse/no-kubeconfig" }, code: 1, want: []string{"/etc/chartreuse/no-kubeconfig"}},
		{name: "kubeconfig is not YAML", spec: down, args: shop, kubeconfig: func(f *fixture) string { return f.file("garbage", "{{{ not: [yaml") }, code: 1, want: []string{"kubernetes configuration"}},
		{name: "unknown context", spec: down, args: flags("--selector", "a=b", "--context", "prod-eu"), code: 1, want: []string{"prod-eu"}},
		{name: "kubeconfig with a foreign CA", spec: down, args: shop, kubeconfig: func(f *fixture) string {
			cfg, err := clientcmd.LoadFromFile(f.kubeconfig)
			if err != nil {
				f.t.Fatal(err)
			}
			for _, c := range cfg.Clusters {
				c.CertificateAuthority = ""
				c.CertificateAuthorityData = foreignCA
			}
			p := filepath.Join(f.scratch, "foreign-ca")
			if err := clientcmd.WriteToFile(*cfg, p); err != nil {
				f.t.Fatal(err)
			}
			return p
		}, code: 1, want: []string{"certificate"}},
		{name: "zero timeout", spec: down, args: flags("--selector", "a=b", "--timeout", "0s"), code: 2, want: []string{"--timeout"}},
		{name: "negative timeout", spec: down, args: flags("--selector", "a=b", "--timeout", "-1m"), code: 2, want: []string{"--timeout"}},
		{name: "zero progress interval", spec: down, args: flags("--selector", "a=b", "--progress-interval", "0s"), code: 2, want: []string{"--progress-interval"}},
		{name: "multi-line run id", spec: down, args: flags("--selector", "a=b", "--run-id", "wf\nrm -rf"), code: 2, want: []string{"--run-id"}},
		{name: "unknown flag of the other step", spec: down, args: flags("--selector", "a=b", "--wait-ready"), code: 2, want: []string{"wait-ready"}},
		{name: "manifest version mismatch", spec: down, args: flags("--selector", "a=b", "--manifest-version", "3.1.0"), code: 1, want: []string{"version mismatch", "3.1.0"}},
		{name: "named workload missing", spec: down, args: flags("--selector", "app.kubernetes.io/part-of=shop", "--workload", "deployment/checkout"), code: 1, want: []string{"deployment/checkout", "not found"}},
		{name: "stop priority not a number", spec: down, setup: func(f *fixture) {
			f.deployment("cache", 1, map[string]string{workload.AnnotationPriority: "high"})
		}, args: shop, code: 1, want: []string{workload.AnnotationPriority, "high"}},
		{name: "record not a number", spec: down, setup: func(f *fixture) {
			f.deployment("legacy", 0, map[string]string{workload.AnnotationReplicas: "three"})
		}, args: flags("--workload", "deployment/legacy"), code: 1, want: []string{workload.AnnotationReplicas, "three"}},
		{name: "no patch on deployments", spec: down, args: shop, kubeconfig: func(f *fixture) string { return f.tokenKubeconfig("deployments", "patch") }, code: 1, want: []string{"permission denied", "patch deployments.apps"}},
		{name: "no watch on pods", spec: down, args: shop, kubeconfig: func(f *fixture) string { return f.tokenKubeconfig("pods", "watch") }, code: 1, want: []string{"permission denied", "watch pods"}},
		{name: "no list on deployments", spec: down, args: shop, kubeconfig: func(f *fixture) string { return f.tokenKubeconfig("deployments", "list") }, code: 1, want: []string{"list", "deployments"}},
		{name: "no rights at all", spec: down, args: flags("--workload", "deployment/web"), kubeconfig: func(f *fixture) string { return f.tokenKubeconfig("", "*") }, code: 1, want: []string{"deployments"}},
		{name: "restore: unbalanced selector", spec: restore, args: flags("--selector", "tier notin (a"), code: 2, want: []string{"--selector"}},
		{name: "restore: zero timeout with wait-ready", spec: restore, args: flags("--wait-ready", "--timeout", "0s"), code: 2, want: []string{"--timeout"}},
		{name: "restore: record not a number", spec: restore, setup: func(f *fixture) {
			f.deployment("legacy", 0, map[string]string{workload.AnnotationReplicas: "-2"})
		}, args: flags("--workload", "deployment/legacy"), code: 1, want: []string{workload.AnnotationReplicas, "-2"}},
		{name: "restore: no patch on deployments", spec: restore, setup: recorded, args: flags(), kubeconfig: func(f *fixture) string { return f.tokenKubeconfig("deployments", "patch") }, code: 1, want: []string{"permission denied", "patch deployments.apps"}},
		{name: "restore: missing kubeconfig", spec: restore, kubeconfig: func(*fixture) string { return "/etc/chartreuse/no-kubeconfig" }, args: flags(), code: 1, want: []string{"/etc/chartreuse/no-kubeconfig"}},
	}
}

func TestBadInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("bad-input corpus against a real cluster (skipped with -short)")
	}
	env := kubeenv.Shared(t)
	cs, err := env.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	secrets := kit.NewSecrets(t)
	for _, c := range cases() {
		t.Run(c.spec().Name+"/"+c.name, func(t *testing.T) {
			f := &fixture{t: t, env: env, cs: cs, ns: env.NewNamespace(t), kubeconfig: env.Kubeconfig, scratch: t.TempDir(), secrets: secrets}
			f.deployment("web", 2, nil)
			f.deployment("api", 1, nil)
			f.deployment("worker", 0, nil)
			if c.setup != nil {
				c.setup(f)
			}
			kubeconfig := f.kubeconfig
			if c.kubeconfig != nil {
				kubeconfig = c.kubeconfig(f)
			}
			spec := c.spec()
			args := []string{spec.Name, "--skip-version-check", "--kubeconfig", kubeconfig, "--run-id", "badinput"}
			if !c.noNS {
				args = append(args, "--namespace", f.ns)
			}
			args = append(args, c.args(f)...)
			if hasFlag(args, "--manifest-version") {
				args = removeFlag(args, "--skip-version-check")
			}
			ctx := context.Background()
			// Compare resourceVersions once the controllers are done with the
			// new Deployments.
			before, err := kit.Quiet(ctx, cs, f.ns, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			code := runStep(t, ctx, spec, args, &out, &errOut)
			secrets.Record(t.Name(), out.String()+errOut.String())
			if code != c.code {
				t.Errorf("exit %d, want %d:\n%s", code, c.code, errOut.String())
			}
			line, err := stepbin.ErrorLine(errOut.String())
			if err != nil {
				t.Errorf("error is not one line: %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(strings.ToLower(line), strings.ToLower(w)) {
					t.Errorf("the error does not name %q: %s", w, line)
				}
			}
			if sum, ok := stepbin.ParseSummary(out.String()); ok && sum.ExitCode != code {
				t.Errorf("summary says exit %d, step returned %d", sum.ExitCode, code)
			}
			after, err := kit.SnapshotNamespace(ctx, cs, f.ns)
			if err != nil {
				t.Fatal(err)
			}
			if d := kit.Diff(before, after); d != "" {
				t.Errorf("the namespace changed:\n%s", d)
			}
			if i := strings.Index(line, "msg="); i >= 0 {
				line = line[i:]
			}
			t.Logf("exit %d: %s", code, line)
		})
	}
	if n := len(cases()); n < 25 {
		t.Errorf("only %d cases", n)
	}
}

// runStep runs the step; a panic fails the test instead of ending the test binary.
func runStep(t *testing.T, ctx context.Context, spec step.Spec, args []string, out, errOut *bytes.Buffer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v", spec.Name, r)
			code = -2
		}
	}()
	return step.Run(ctx, spec, args, out, errOut)
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

func removeFlag(args []string, flag string) []string {
	var out []string
	for _, a := range args {
		if a != flag {
			out = append(out, a)
		}
	}
	return out
}
