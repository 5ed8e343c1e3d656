package workload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/kube"
)

// permission is one verb on one resource in the step's namespace.
type permission struct {
	verb, group, resource, subresource string
}

func (p permission) String() string {
	return p.verb + " " + kube.Describe(p.resource, p.group, p.subresource)
}

// workloadPermissions are what changing the given workloads takes.
func workloadPermissions(ws []*Workload) []permission {
	var perms []permission
	seen := map[Kind]bool{}
	for _, w := range ws {
		if seen[w.Kind] {
			continue
		}
		seen[w.Kind] = true
		// One patch of the object itself changes the record and the replicas
		// together: the scale subresource is not used.
		perms = append(perms, permission{"patch", w.Kind.Group(), w.Kind.Resource(), ""})
	}
	return perms
}

// watchPermissions are what the watcher takes.
func watchPermissions(withPods, withJobs bool) []permission {
	perms := []permission{
		{"list", "apps", "deployments", ""}, {"watch", "apps", "deployments", ""},
		{"list", "apps", "statefulsets", ""}, {"watch", "apps", "statefulsets", ""},
	}
	if withPods {
		perms = append(perms, permission{"list", "", "pods", ""}, permission{"watch", "", "pods", ""})
	}
	if withJobs {
		perms = append(perms, permission{"list", "batch", "jobs", ""}, permission{"watch", "batch", "jobs", ""})
	}
	return perms
}

// hasCronJobs reports whether any of ws is a CronJob: only then does scale-down
// watch Jobs (and need the permission to).
func hasCronJobs(ws []*Workload) bool {
	return slices.ContainsFunc(ws, func(w *Workload) bool { return w.Kind == CronJob })
}

// checkAccess asks the API server (SelfSubjectAccessReview, which every
// authenticated user may create) whether the step may do everything it is about to
// do, so that a missing permission stops it before it changes anything, with one
// message naming every missing verb. If the review itself is not possible, the step
// goes on and the API calls report any refusal.
func checkAccess(ctx context.Context, cs kubernetes.Interface, ns string, perms []permission, log *slog.Logger) error {
	allowed := make([]bool, len(perms))
	errs := forEach(ctx, len(perms), len(perms), false, func(i int) error {
		p := perms[i]
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: p.verb, Group: p.group, Resource: p.resource, Subresource: p.subresource,
			},
		}}
		res, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err == nil {
			allowed[i] = res.Status.Allowed
		}
		return err
	})
	var missing []string
	for i, err := range errs {
		if errors.Is(err, errNotStarted) {
			err = ctx.Err()
		}
		if err != nil {
			if kube.IsUnreachable(err) || ctx.Err() != nil {
				return kube.Classify(fmt.Errorf("checking permissions: %w", err), "create", "selfsubjectaccessreviews.authorization.k8s.io")
			}
			log.Debug("cannot check permissions in advance; relying on the API calls", "error", err)
			return nil
		}
		if !allowed[i] {
			missing = append(missing, perms[i].String())
		}
	}
	if len(missing) > 0 {
		return failure.Permanentf("permission denied in namespace %s: missing %s; grant these verbs in the step's Role (see pkg/workload/rbac/role.yaml)", ns, strings.Join(missing, ", "))
	}
	return nil
}
