package manifests

import (
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/chartreuse-go/chartreuse/test/rbacrules"
)

// submitterRole is the CI submitter's Role and ServiceAccount, one per engine, in
// the engine's examples beside the CI examples.
const submitterRole = "chartreuse-submitter"

// TestSubmitterRoles: each engine's submitter example holds a ServiceAccount, a Role
// granting exactly what its CI commands need (rbacrules), and a RoleBinding of the
// one to the other. test/e2e checks the same on the API server and runs the
// commands with the ServiceAccount's token.
func TestSubmitterRoles(t *testing.T) {
	want := map[string][]rbacv1.PolicyRule{
		"workflowtemplates/examples/submitter-rbac.yaml": rbacrules.ArgoSubmitter,
		"tekton/examples/submitter-rbac.yaml":            rbacrules.TektonSubmitter,
	}
	docs := loadDocs(t)
	for file, rules := range want {
		kinds := map[string]bool{}
		for _, d := range docs {
			if d.File != file {
				continue
			}
			kinds[d.Obj.GetKind()] = true
			if d.Obj.GetName() != submitterRole {
				t.Errorf("%s: %s named %s, want %s", file, d.Obj.GetKind(), d.Obj.GetName(), submitterRole)
			}
			switch d.Obj.GetKind() {
			case "Role":
				r := &rbacv1.Role{}
				decodeStrict(t, d, r)
				if got, w := rbacrules.Expand(r.Rules), rbacrules.Expand(rules); !slices.Equal(got, w) {
					t.Errorf("%s: Role grants\n  %v\nwant exactly\n  %v", file, got, w)
				}
			case "RoleBinding":
				rb := &rbacv1.RoleBinding{}
				decodeStrict(t, d, rb)
				if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != submitterRole || len(rb.Subjects) != 1 ||
					rb.Subjects[0].Kind != "ServiceAccount" || rb.Subjects[0].Name != submitterRole {
					t.Errorf("%s: RoleBinding %+v %+v", file, rb.RoleRef, rb.Subjects)
				}
			}
		}
		for _, k := range []string{"ServiceAccount", "Role", "RoleBinding"} {
			if !kinds[k] {
				t.Errorf("%s: no %s", file, k)
			}
		}
	}
}
