package podaddr

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
)

type clusterFixture struct {
	t   *testing.T
	env *kubeenv.Env
	cs  kubernetes.Interface
	ns  string
}

func newCluster(t *testing.T) *clusterFixture {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the real cluster (not run with -short)")
	}
	env := kubeenv.Shared(t)
	cs, err := env.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	return &clusterFixture{t: t, env: env, cs: cs, ns: env.NewNamespace(t)}
}

// serviceAccount creates a ServiceAccount, bound to rbac/role.yaml when bound.
func (c *clusterFixture) serviceAccount(name string, bound bool) {
	c.t.Helper()
	ctx := c.t.Context()
	if _, err := c.cs.CoreV1().ServiceAccounts(c.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	if !bound {
		return
	}
	var role rbacv1.Role
	if err := yaml.UnmarshalStrict(RoleYAML, &role); err != nil {
		c.t.Fatal(err)
	}
	role.Name = name
	if _, err := c.cs.RbacV1().Roles(c.ns).Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: c.ns}},
	}
	if _, err := c.cs.RbacV1().RoleBindings(c.ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// finder is the Finder a step running as ServiceAccount sa would build: the same
// files the kubelet mounts (token, ca.crt, namespace) and the same variables.
func (c *clusterFixture) finder(sa string) *Finder {
	c.t.Helper()
	tr, err := c.cs.CoreV1().ServiceAccounts(c.ns).CreateToken(c.t.Context(), sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(600))}}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	cfg, err := c.env.RESTConfig()
	if err != nil {
		c.t.Fatal(err)
	}
	ca := cfg.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(cfg.CAFile); err != nil {
			c.t.Fatal(err)
		}
	}
	dir := c.t.TempDir()
	for name, b := range map[string][]byte{"token": []byte(tr.Status.Token), "ca.crt": ca, "namespace": []byte(c.ns)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			c.t.Fatal(err)
		}
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		c.t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Setenv("KUBERNETES_SERVICE_HOST", host)
	c.t.Setenv("KUBERNETES_SERVICE_PORT", port)
	f := InCluster(dir)
	if f.Unavailable != "" {
		c.t.Fatalf("InCluster: %s", f.Unavailable)
	}
	return f
}

// runningPod starts a pod (the node's pause image) and returns it once it has an IP.
func (c *clusterFixture) runningPod(name string) *corev1.Pod {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 2*time.Minute)
	defer cancel()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{{Name: "holder", Image: c.env.PauseImage, ImagePullPolicy: corev1.PullNever}},
			TerminationGracePeriodSeconds: new(int64),
			AutomountServiceAccountToken:  new(false),
		},
	}
	if _, err := c.cs.CoreV1().Pods(c.ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	for {
		got, err := c.cs.CoreV1().Pods(c.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		if got.Status.Phase == corev1.PodRunning && got.Status.PodIP != "" {
			return got
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("pod %s did not get to Running with an IP: %s", name, got.Status.Phase)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *clusterFixture) deletePod(name string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 2*time.Minute)
	defer cancel()
	if err := c.cs.CoreV1().Pods(c.ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		c.t.Fatal(err)
	}
	for {
		_, err := c.cs.CoreV1().Pods(c.ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("pod %s is still there", name)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// describeOnce waits until the Role binding is in force (the API server's RBAC
// cache follows the objects), then returns what Describe says and how long it took.
func describeOnce(t *testing.T, f *Finder, addr string, started time.Time) (string, time.Duration) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		begin := time.Now()
		got := f.Describe(t.Context(), addr, started)
		took := time.Since(begin)
		if !strings.Contains(got, "(403)") || time.Now().After(deadline) {
			return got, took
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterNamesTheHoldersPod: with the Role of rbac/role.yaml, a session's
// address is told as its pod; a pod created after the session began is not taken
// for it; once the pod is gone, the message says that no pod has the address.
func TestClusterNamesTheHoldersPod(t *testing.T) {
	c := newCluster(t)
	c.serviceAccount("chartreuse-migrate", true)
	f := c.finder("chartreuse-migrate")
	pod := c.runningPod("wf-abc-migrate-1234")
	ip := pod.Status.PodIP
	sessionStart := pod.CreationTimestamp.Add(5 * time.Second)

	got, took := describeOnce(t, f, ip, sessionStart)
	t.Logf("lookup took %s: %s", took, got)
	if want := "connected from " + ip + ", pod wf-abc-migrate-1234 (namespace " + c.ns + ")"; got != want {
		t.Errorf("live holder: %q\nwant %q", got, want)
	}

	// A session older than the pod: the pod that opened it was another, now gone.
	got, _ = describeOnce(t, f, ip, pod.CreationTimestamp.Add(-10*time.Minute))
	if want := "which now belongs to pod wf-abc-migrate-1234 (namespace " + c.ns + "), created after that session began: the pod that opened the session no longer exists"; !strings.Contains(got, want) {
		t.Errorf("address given again: %q\nwant it to contain %q", got, want)
	}

	c.deletePod(pod.Name)
	got, took = describeOnce(t, f, ip, sessionStart)
	t.Logf("after the pod was deleted, lookup took %s: %s", took, got)
	if want := "connected from " + ip + ", and no pod in namespace " + c.ns + " has that address: the pod that opened the session no longer exists"; !strings.Contains(got, want) {
		t.Errorf("holder's pod gone: %q\nwant it to contain %q", got, want)
	}
}

// TestClusterWithoutPermission: a ServiceAccount without the Role gets a message
// that says so and what to bind, not an error; the API server saw a read only.
func TestClusterWithoutPermission(t *testing.T) {
	c := newCluster(t)
	c.serviceAccount("unbound", false)
	f := c.finder("unbound")
	pod := c.runningPod("holder")
	got := f.Describe(t.Context(), pod.Status.PodIP, time.Time{})
	t.Log(got)
	if want := "its pod could not be looked up: this step's ServiceAccount may not list pods in namespace " + c.ns + " (403): bind it the Role chartreuse-migrate (rbac.yaml) to see the pod"; !strings.Contains(got, want) {
		t.Errorf("without the Role: %q\nwant it to contain %q", got, want)
	}
	// A token the API server does not accept.
	if err := os.WriteFile(f.TokenFile, []byte("not-a-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := f.Describe(t.Context(), pod.Status.PodIP, time.Time{}); !strings.Contains(got, "refused this pod's ServiceAccount token (401)") || strings.Contains(got, "not-a-token") {
		t.Errorf("bad token: %q", got)
	}
}
