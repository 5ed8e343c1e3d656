// Package kubeobj builds what tests put in a cluster: a Deployment of the test
// app image, a ServiceAccount with a Role and its token, a kubeconfig with other
// credentials, and the scale steps' rules. It is a leaf (no package of this
// module), so that any test, pkg/workload's own included, can import it.
package kubeobj

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// App describes a Deployment of the test app image (test/images/app).
type App struct {
	Name          string
	Image         string
	Replicas      int32
	Labels        map[string]string // on the Deployment and its pods, besides app=<name>
	Annotations   map[string]string // on the Deployment
	ShutdownDelay time.Duration     // APP_SHUTDOWN_DELAY: how long a pod stays Terminating
	Grace         int64             // terminationGracePeriodSeconds (default 30)
}

// Deployment is the object for a.
func (a App) Deployment() *appsv1.Deployment {
	t := a.PodTemplate()
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: a.Name, Labels: t.Labels, Annotations: a.Annotations},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(a.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": a.Name}},
			Template: t,
		},
	}
}

// PodTemplate is the pod template of a's Deployment (a StatefulSet of the test
// app takes it too): labels app=<name> and a.Labels, one container of a.Image.
func (a App) PodTemplate() corev1.PodTemplateSpec {
	labels := map[string]string{"app": a.Name}
	for k, v := range a.Labels {
		labels[k] = v
	}
	grace := a.Grace
	if grace == 0 {
		grace = 30
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To(grace),
			EnableServiceLinks:            ptr.To(false),
			AutomountServiceAccountToken:  ptr.To(false),
			Containers: []corev1.Container{{
				Name: "app", Image: a.Image, ImagePullPolicy: corev1.PullNever,
				Env: []corev1.EnvVar{
					{Name: "APP_SHUTDOWN_DELAY", Value: a.ShutdownDelay.String()},
					{Name: "APP_LISTEN", Value: "off"},
				},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("1m"), corev1.ResourceMemory: resource.MustParse("8Mi"),
				}},
			}},
		},
	}
}

// LivePods counts the pods of ns matching selector that are not Succeeded or
// Failed (Terminating ones count).
func LivePods(ctx context.Context, cs kubernetes.Interface, ns, selector string) (int, error) {
	l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range l.Items {
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			n++
		}
	}
	return n, nil
}

// ScaleRules are the permissions the scale steps document (pkg/workload/rbac/role.yaml).
func ScaleRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets"}, Verbs: []string{"get", "list", "watch", "patch"}},
		{APIGroups: []string{"batch"}, Resources: []string{"cronjobs"}, Verbs: []string{"get", "list", "patch"}},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}},
	}
}

// WithoutVerb removes one verb on one resource from rules.
func WithoutVerb(rules []rbacv1.PolicyRule, resource, verb string) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range rules {
		has := false
		for _, res := range r.Resources {
			if res == resource {
				has = true
			}
		}
		if !has {
			out = append(out, r)
			continue
		}
		var others []string
		for _, res := range r.Resources {
			if res != resource {
				others = append(others, res)
			}
		}
		if len(others) > 0 {
			out = append(out, rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: others, Verbs: r.Verbs})
		}
		var verbs []string
		for _, v := range r.Verbs {
			if v != verb {
				verbs = append(verbs, v)
			}
		}
		if len(verbs) > 0 {
			out = append(out, rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: []string{resource}, Verbs: verbs})
		}
	}
	return out
}

// ServiceAccount creates a ServiceAccount bound to a Role with rules in ns and
// returns a bearer token for it (one hour).
func ServiceAccount(ctx context.Context, cs kubernetes.Interface, ns, name string, rules []rbacv1.PolicyRule) (string, error) {
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	tok, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return tok.Status.Token, nil
}

// Kubeconfig writes a copy of the kubeconfig at from into dir, changed: server
// (when not empty) replaces every cluster's address, token (when not empty)
// replaces the credentials.
func Kubeconfig(from, dir, server, token string) (string, error) {
	cfg, err := clientcmd.LoadFromFile(from)
	if err != nil {
		return "", err
	}
	if server != "" {
		for _, c := range cfg.Clusters {
			c.Server = server
		}
	}
	if token != "" {
		cfg.AuthInfos = map[string]*clientcmdapi.AuthInfo{"token": {Token: token}}
		for _, c := range cfg.Contexts {
			c.AuthInfo = "token"
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}
