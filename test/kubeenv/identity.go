package kubeenv

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// ServiceAccountKubeconfig creates the ServiceAccount name in namespace ns,
// bound to a copy of role named name (nil: bound to nothing), and returns a
// kubeconfig that authenticates as it with a token: a step run with it has
// exactly the rights its Role grants.
func (e *Env) ServiceAccountKubeconfig(t testing.TB, ns, name string, role *rbacv1.Role) string {
	t.Helper()
	cs, err := e.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if role != nil {
		role = role.DeepCopy()
		role.Name, role.Namespace = name, ""
		if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
		}
		if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		awaitGranted(ctx, t, cs, ns, name, role)
	}
	tok, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return e.WriteKubeconfig(t, func(cfg *clientcmdapi.Config) {
		cfg.AuthInfos = map[string]*clientcmdapi.AuthInfo{name: {Token: tok.Status.Token}}
		for _, c := range cfg.Contexts {
			c.AuthInfo = name
		}
	})
}

// WriteKubeconfig writes a copy of the admin kubeconfig, changed by change, to
// a file of the test's own and returns its path.
func (e *Env) WriteKubeconfig(t testing.TB, change func(*clientcmdapi.Config)) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(e.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	change(cfg)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// awaitGranted waits until the API server's authorizer grants the
// ServiceAccount name the first rule of role: it reads Roles and RoleBindings
// from a cache, so a step started at once was refused, on a loaded node, a
// right its Role grants ("forbidden" 22 ms after the binding was created).
func awaitGranted(ctx context.Context, t testing.TB, cs kubernetes.Interface, ns, name string, role *rbacv1.Role) {
	t.Helper()
	i := slices.IndexFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
		return len(r.Verbs) > 0 && len(r.APIGroups) > 0 && len(r.Resources) > 0
	})
	if i < 0 {
		return
	}
	r := role.Rules[i]
	attrs := &authorizationv1.ResourceAttributes{Namespace: ns, Verb: r.Verbs[0], Group: r.APIGroups[0], Resource: r.Resources[0]}
	if len(r.ResourceNames) > 0 {
		attrs.Name = r.ResourceNames[0]
	}
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               "system:serviceaccount:" + ns + ":" + name,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
		ResourceAttributes: attrs,
	}}
	for {
		got, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err == nil && got.Status.Allowed {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ServiceAccount %s/%s: its Role's %s on %s not granted in time (%v)", ns, name, r.Verbs[0], r.Resources[0], err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
