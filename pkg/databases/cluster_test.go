package databases

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// The Cluster tests run the check-databases step in process against the real API
// server of test/kubeenv, each in a namespace of its own, authenticated as a
// ServiceAccount bound to exactly rbac/role.yaml.

// The values of the test Secrets: no output of the step may contain them.
const (
	ordersURL = "postgres://orders:0rders-pa55@db.example:5432/orders"
	tenantA   = "postgres://tenant_a:tenant-a-pa55@db.example:5432/tenant_a"
	tenantB   = "postgres://tenant_b:tenant-b-pa55@db.example:5432/tenant_b"
)

var secretValues = []string{ordersURL, tenantA, tenantB, "0rders-pa55", "tenant-a-pa55", "tenant-b-pa55"}

type cluster struct {
	t          *testing.T
	env        *kubeenv.Env
	cs         kubernetes.Interface
	ns         string
	kubeconfig string // the admin's
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	env := kubeenv.Shared(t)
	cs, err := env.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, env: env, cs: cs, ns: env.NewNamespace(t), kubeconfig: env.Kubeconfig}
	c.secret("orders-db", map[string]string{"url": ordersURL})
	c.secret("tenants", map[string]string{"tenant-a": tenantA, "tenant-b": tenantB, "tenant-c": ""})
	return c
}

func (c *cluster) secret(name string, data map[string]string) {
	c.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: data}
	if _, err := c.cs.CoreV1().Secrets(c.ns).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// serviceAccountKubeconfig: a kubeconfig of the ServiceAccount name, bound to
// role (nil: to nothing).
func (c *cluster) serviceAccountKubeconfig(name string, role *rbacv1.Role) string {
	c.t.Helper()
	return c.env.ServiceAccountKubeconfig(c.t, c.ns, name, role)
}

// writeKubeconfig writes a changed copy of the admin kubeconfig.
func (c *cluster) writeKubeconfig(change func(*clientcmdapi.Config)) string {
	c.t.Helper()
	return c.env.WriteKubeconfig(c.t, change)
}

func stepRole(t *testing.T) *rbacv1.Role {
	t.Helper()
	var role rbacv1.Role
	if err := yaml.UnmarshalStrict(RoleYAML, &role); err != nil {
		t.Fatalf("rbac/role.yaml: %v", err)
	}
	return &role
}

type stepRun struct {
	code    int
	summary results.Summary
	stderr  string
	results map[string]string // the files of --results-dir
}

// run runs the step as the kubeconfig's user and checks that nothing it printed or
// wrote holds a Secret's value.
func (c *cluster) run(kubeconfig, databases string, args ...string) stepRun {
	c.t.Helper()
	dir := c.t.TempDir()
	full := append([]string{"check-databases", "--skip-version-check", "--kubeconfig", kubeconfig, "--namespace", c.ns,
		"--results-dir", dir, "--database-secret", "orders-db", "--databases", databases}, args...)
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := step.Run(ctx, Spec(), full, &out, &errb)
	r := stepRun{code: code, stderr: errb.String(), results: map[string]string{}}
	if err := json.Unmarshal(out.Bytes(), &r.summary); err != nil {
		c.t.Fatalf("stdout is not the JSON summary: %q (%v)", out.String(), err)
	}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			c.t.Fatal(err)
		}
		r.results[f.Name()] = string(b)
	}
	everything := out.String() + errb.String() + fmt.Sprint(r.results)
	for _, v := range secretValues {
		if strings.Contains(everything, v) {
			c.t.Errorf("the step's output holds a Secret's value %q:\n%s", v, everything)
		}
	}
	c.t.Logf("check-databases: exit %d %s", code, r.summary.Error)
	return r
}

func TestClusterCheckDatabases(t *testing.T) {
	c := newCluster(t)
	kc := c.serviceAccountKubeconfig("check-databases", stepRole(t))

	t.Run("good list", func(t *testing.T) {
		r := c.run(kc, `[{}, {"secret": "tenants", "key": "tenant-a"}, {"secret": "tenants", "key": "tenant-b", "table": "b.goose_db_version"}]`)
		if r.code != 0 {
			t.Fatalf("exit %d: %s\n%s", r.code, r.summary.Error, r.stderr)
		}
		var entries []Entry
		if err := json.Unmarshal([]byte(r.results["entries"]), &entries); err != nil {
			t.Fatalf("entries: %v", err)
		}
		names := []string{}
		for _, e := range entries {
			names = append(names, e.Name)
		}
		if !reflect.DeepEqual(names, []string{"orders-db", "tenants/tenant-a", "tenants/tenant-b"}) || entries[2].Table != "b.goose_db_version" || entries[0].Table != "goose_db_version" {
			t.Errorf("entries = %s", r.results["entries"])
		}
		if r.results["secrets"] != `["orders-db","tenants"]` || r.results["count"] != "3" {
			t.Errorf("secrets = %s, count = %s", r.results["secrets"], r.results["count"])
		}
		if r.summary.Results["entries"] != r.results["entries"] {
			t.Errorf("the summary's entries differ from the result file")
		}
	})

	t.Run("missing Secret, key and value", func(t *testing.T) {
		r := c.run(kc, `[{}, {"secret": "billing-db"}, {"secret": "tenants", "key": "tenant-d"}, {"secret": "tenants", "key": "tenant-c"}, {"secret": "tenants", "key": "tenant-a"}]`)
		if r.code != failure.CodePermanent {
			t.Fatalf("exit %d, want 1: %s", r.code, r.summary.Error)
		}
		for _, want := range []string{
			"entry 2 (billing-db): Secret billing-db does not exist in namespace " + c.ns,
			`entry 3 (tenants/tenant-d): Secret tenants has no key "tenant-d" (its keys: tenant-a, tenant-b, tenant-c); correct "key"`,
			`entry 4 (tenants/tenant-c): key "tenant-c" of Secret tenants is empty`,
		} {
			if !strings.Contains(r.summary.Error, want) {
				t.Errorf("the error does not say %q:\n%s", want, r.summary.Error)
			}
		}
		if strings.Contains(r.summary.Error, "entry 1") || strings.Contains(r.summary.Error, "entry 5") {
			t.Errorf("the error names a good entry: %s", r.summary.Error)
		}
		// every failed step writes its one-line error as result error (the run
		// summary reads it), and nothing else
		if r.results[step.ResultError] == "" {
			t.Errorf("a refused list wrote no error result: %v", r.results)
		}
		delete(r.results, step.ResultError)
		if len(r.results) != 0 {
			t.Errorf("a refused list wrote results: %v", r.results)
		}
	})

	// A token in an entry's git-url was accepted and published in the entries
	// result (an Argo global output) and the summary line (found by an attack).
	t.Run("token in git-url", func(t *testing.T) {
		const token = "GhpTokenSecret123"
		r := c.run(kc, `[{}, {"secret": "tenants", "key": "tenant-a", "git-url": "https://user:`+token+`@git.example/x/y.git", "git-revision": "v1"}]`)
		if r.code != failure.CodeUsage || !strings.Contains(r.summary.Error, "entry 2 (tenants): git-url: ") {
			t.Fatalf("exit %d, want 2 naming entry 2: %s", r.code, r.summary.Error)
		}
		if printed := fmt.Sprint(r.summary) + r.stderr; strings.Contains(printed, token) || len(r.results) != 0 {
			t.Errorf("the token is printed or results written: %v\n%s", r.results, printed)
		}
	})

	t.Run("no permission", func(t *testing.T) {
		r := c.run(c.serviceAccountKubeconfig("no-role", nil), `[{}]`)
		if r.code != failure.CodePermanent || !strings.Contains(r.summary.Error, `permission denied: cannot get secrets; grant verb "get" on "secrets"`) {
			t.Errorf("exit %d: %s", r.code, r.summary.Error)
		}
	})

	t.Run("API server unreachable", func(t *testing.T) {
		closed := c.writeKubeconfig(func(cfg *clientcmdapi.Config) {
			for _, cl := range cfg.Clusters {
				cl.Server = fmt.Sprintf("https://127.0.0.1:%d", pgenv.ClosedPort(t))
			}
		})
		r := c.run(closed, `[{}]`)
		if r.code != failure.CodeTransient || !strings.Contains(r.summary.Error, "API server unreachable") {
			t.Errorf("exit %d: %s", r.code, r.summary.Error)
		}
	})
}
