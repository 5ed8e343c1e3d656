package rbacrules

import (
	"fmt"
	"slices"
	"sort"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/pkg/databases"
	"github.com/chartreuse-go/chartreuse/pkg/gate"
	"github.com/chartreuse-go/chartreuse/pkg/podaddr"
	"github.com/chartreuse-go/chartreuse/pkg/runwatch"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
)

// Scale returns the rules of pkg/workload/rbac/role.yaml: what scale-down and
// scale-restore use.
func Scale() ([]rbacv1.PolicyRule, error) {
	return roleRules(workload.RoleYAML, "pkg/workload/rbac/role.yaml")
}

// Gate returns the rules of pkg/gate/rbac/role.yaml: what the Tekton gate step uses.
func Gate() ([]rbacv1.PolicyRule, error) {
	return roleRules(gate.RoleYAML, "pkg/gate/rbac/role.yaml")
}

// CheckDatabases returns the rules of pkg/databases/rbac/role.yaml: what the
// check-databases step uses.
func CheckDatabases() ([]rbacv1.PolicyRule, error) {
	return roleRules(databases.RoleYAML, "pkg/databases/rbac/role.yaml")
}

// PodLookup returns the rules of pkg/podaddr/rbac/role.yaml: what migrate uses to
// name the pod of a session holding a lock it waits for.
func PodLookup() ([]rbacv1.PolicyRule, error) {
	return roleRules(podaddr.RoleYAML, "pkg/podaddr/rbac/role.yaml")
}

// Migrate returns what migrate's ServiceAccount needs: the pod lookup's rules,
// those of pkg/workload/rbac/stopped.yaml (its check of the stopped workloads)
// and pkg/runwatch/rbac/role.yaml (its watch of the run).
func Migrate() ([]rbacv1.PolicyRule, error) {
	lookup, err := PodLookup()
	if err != nil {
		return nil, err
	}
	stopped, err := roleRules(workload.StoppedRoleYAML, "pkg/workload/rbac/stopped.yaml")
	if err != nil {
		return nil, err
	}
	watch, err := roleRules(runwatch.RoleYAML, "pkg/runwatch/rbac/role.yaml")
	if err != nil {
		return nil, err
	}
	return slices.Concat(lookup, stopped, watch), nil
}

// Documented are the rules of the Roles the step packages document.
type Documented struct {
	Scale, Gate, Migrate, CheckDatabases []rbacv1.PolicyRule
}

// LoadDocumented reads the documented Roles.
func LoadDocumented() (Documented, error) {
	var d Documented
	var err error
	if d.Scale, err = Scale(); err != nil {
		return Documented{}, err
	}
	if d.Gate, err = Gate(); err != nil {
		return Documented{}, err
	}
	if d.Migrate, err = Migrate(); err != nil {
		return Documented{}, err
	}
	if d.CheckDatabases, err = CheckDatabases(); err != nil {
		return Documented{}, err
	}
	return d, nil
}

// roleRules parses a Role's YAML, named by path in errors.
func roleRules(roleYAML []byte, path string) ([]rbacv1.PolicyRule, error) {
	var role rbacv1.Role
	if err := yaml.UnmarshalStrict(roleYAML, &role); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return role.Rules, nil
}

// Executor is what Argo's executor writes since Argo 3.4: its step's outputs.
var Executor = []rbacv1.PolicyRule{{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflowtaskresults"}, Verbs: []string{"create", "patch"}}}

// Turn is what a migrate TaskRun of Tekton's list reads for its turn (gate
// --action=turn): the run's TaskRuns, and whether the run was stopped. The
// manifests bind it to chartreuse-pipeline-migrate (Role chartreuse-pipeline-turn).
var Turn = []rbacv1.PolicyRule{
	{APIGroups: []string{"tekton.dev"}, Resources: []string{"taskruns"}, Verbs: []string{"list"}},
	{APIGroups: []string{"tekton.dev"}, Resources: []string{"pipelineruns"}, Verbs: []string{"get"}},
}

// Expand lists every verb on every group/resource of rules as "verb group/resource",
// sorted, once each.
func Expand(rules []rbacv1.PolicyRule) []string {
	set := map[string]bool{}
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					set[v+" "+g+"/"+res] = true
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// The CI submitter's Roles (workflowtemplates/examples/submitter-rbac.yaml,
// tekton/examples/submitter-rbac.yaml): start runs and follow them, read the step
// pods and their logs; no write on pods, nothing on Secrets.
var (
	ArgoSubmitter = []rbacv1.PolicyRule{
		{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflowtemplates"}, Verbs: []string{"get"}},
		{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflows"}, Verbs: []string{"create", "get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
	}
	TektonSubmitter = []rbacv1.PolicyRule{
		{APIGroups: []string{"tekton.dev"}, Resources: []string{"pipelines", "tasks"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"tekton.dev"}, Resources: []string{"pipelineruns", "taskruns"}, Verbs: []string{"create", "get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
	}
)
