package manifests

import (
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/test/rbacrules"
)

// podWriteVerbs are the verbs that change a pod or one of its subresources (exec,
// attach, ephemeralcontainers, eviction, binding, ...). Patch can change a running
// pod's image, i.e. run any code as the pod's ServiceAccount.
var podWriteVerbs = []string{"create", "update", "patch", "delete", "deletecollection", "*"}

// skippedDirs are not part of the product: build caches and the VCS.
var skippedDirs = map[string]bool{".git": true, ".cache": true, "bin": true, "dist": true, "node_modules": true}

// yamlFenceRE finds the YAML blocks of a Markdown file.
var yamlFenceRE = regexp.MustCompile("(?ms)^\\s*```ya?ml\\s*\n(.*?)^\\s*```")

// rolesInRepository returns every Role and ClusterRole written anywhere in the
// repository: YAML files, and YAML blocks of the Markdown documentation.
func rolesInRepository(t *testing.T) map[string][]rbacv1.PolicyRule {
	t.Helper()
	roles := map[string][]rbacv1.PolicyRule{}
	err := filepath.WalkDir(repoRoot, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if skippedDirs[e.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		var streams []string
		switch filepath.Ext(path) {
		case ".yaml", ".yml":
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			streams = []string{string(b)}
		case ".md":
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range yamlFenceRE.FindAllStringSubmatch(string(b), -1) {
				streams = append(streams, m[1])
			}
		default:
			return nil
		}
		rel, _ := filepath.Rel(repoRoot, path)
		for si, s := range streams {
			docs, err := splitYAML([]byte(s))
			if err != nil {
				// not Kubernetes YAML (a CI file's anchors, a shell snippet): no Role there
				continue
			}
			for _, d := range docs {
				var o struct {
					Kind     string
					Metadata struct{ Name string }
					Rules    []rbacv1.PolicyRule
				}
				if yaml.Unmarshal(d, &o) != nil || o.Kind != "Role" && o.Kind != "ClusterRole" {
					continue
				}
				where := filepath.ToSlash(rel) + "#" + o.Kind + "/" + o.Metadata.Name
				if len(streams) > 1 {
					where += " (YAML block " + strconv.Itoa(si+1) + ")"
				}
				roles[where] = o.Rules
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return roles
}

// TestNoRoleWritesPods: no Role in the repository may create, change or delete pods or
// any pod subresource. The steps only read pods (scale-down waits for them to go), and
// Argo's executor needs no pods access since 3.4.
func TestNoRoleWritesPods(t *testing.T) {
	roles := rolesInRepository(t)
	// at least the scale steps' Role and one per engine
	if len(roles) < 3 {
		t.Fatalf("found only %d Roles: %v", len(roles), slices.Sorted(maps.Keys(roles)))
	}
	for where, rules := range roles {
		for _, r := range rules {
			if !slices.Contains(r.APIGroups, "") && !slices.Contains(r.APIGroups, "*") {
				continue
			}
			for _, res := range r.Resources {
				if res != "pods" && !strings.HasPrefix(res, "pods/") && res != "*" {
					continue
				}
				for _, v := range r.Verbs {
					if slices.Contains(podWriteVerbs, v) {
						t.Errorf("%s: grants %s on %s", where, v, res)
					}
				}
			}
		}
	}
}

// TestRolesGrantWhatTheStepsUse: the engines' Roles for the scale steps are exactly
// pkg/workload/rbac/role.yaml (written from what the code does, and what the workload
// package's cluster tests run with), Tekton's gate Role exactly pkg/gate/rbac/role.yaml,
// Argo's executor Role exactly WorkflowTaskResults create/patch, migrate's Role
// (both engines) exactly pkg/podaddr/rbac/role.yaml with pkg/workload/rbac/stopped.yaml,
// and every RoleBinding
// refers to a Role of the manifests.
func TestRolesGrantWhatTheStepsUse(t *testing.T) {
	documented, err := rbacrules.LoadDocumented()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"chartreuse-gate": rbacrules.Expand(documented.Gate),
		// both engines: migrate names the pod of a session holding a lock it waits for,
		// and checks that the workloads its run stopped are still stopped
		"chartreuse-migrate":  rbacrules.Expand(documented.Migrate),
		"chartreuse-workflow": rbacrules.Expand(documented.Scale),
		"chartreuse-pipeline": rbacrules.Expand(documented.Scale),
		"chartreuse-executor": rbacrules.Expand(rbacrules.Executor),
		// both engines: whether each Secret of a databases list holds its key
		"chartreuse-check-databases": rbacrules.Expand(documented.CheckDatabases),
		// Tekton's list: each migrate TaskRun reads the run's TaskRuns for its turn
		// (gate --action=turn, TestClusterTurn)
		"chartreuse-pipeline-turn": rbacrules.Expand(rbacrules.Turn),
	}
	roles := map[string]*rbacv1.Role{}
	for _, d := range docsOfKind(loadDocs(t), "rbac.authorization.k8s.io/v1", "Role") {
		r := &rbacv1.Role{}
		decodeStrict(t, d, r)
		// chartreuse-migrate is in both engines' rbac.yaml: each copy is checked
		if prev := roles[r.Name]; prev != nil && r.Name == "chartreuse-migrate" && !slices.Equal(rbacrules.Expand(prev.Rules), rbacrules.Expand(r.Rules)) {
			t.Errorf("Role %s is written twice with different rules:\n  %v\n  %v", r.Name, rbacrules.Expand(prev.Rules), rbacrules.Expand(r.Rules))
		}
		roles[r.Name] = r
		for _, rule := range r.Rules {
			if len(rule.ResourceNames) > 0 || len(rule.NonResourceURLs) > 0 {
				t.Errorf("Role %s: rule %+v: resourceNames and nonResourceURLs are not expected", r.Name, rule)
			}
		}
	}
	for name, w := range want {
		r := roles[name]
		if r == nil {
			t.Errorf("no Role %s", name)
			continue
		}
		if got := rbacrules.Expand(r.Rules); !slices.Equal(got, w) {
			t.Errorf("Role %s grants\n  %v\nwant exactly\n  %v", name, got, w)
		}
	}
	for name := range roles {
		if want[name] == nil && name != submitterRole {
			t.Errorf("Role %s: not expected (add what it is for to this test)", name)
		}
	}
	for _, d := range docsOfKind(loadDocs(t), "rbac.authorization.k8s.io/v1", "RoleBinding") {
		rb := &rbacv1.RoleBinding{}
		decodeStrict(t, d, rb)
		if rb.RoleRef.Kind == "Role" && roles[rb.RoleRef.Name] == nil {
			t.Errorf("RoleBinding %s: no Role %s", rb.Name, rb.RoleRef.Name)
		}
	}
}
