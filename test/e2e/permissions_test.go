package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	triggersv1beta1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/rbacrules"
)

// tokenPath is where client-go, and so the step binaries and Argo's executor, read
// the pod's Kubernetes credentials.
const tokenPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// scaleBinaries are the step binaries that use the Kubernetes API for workloads;
// gateBinary, Tekton's one run per database, uses it for its Lease.
var (
	scaleBinaries = []string{"/usr/local/bin/scale-down", "/usr/local/bin/scale-restore"}
	gateBinary    = "/usr/local/bin/gate"
	migrateBinary = "/usr/local/bin/migrate"
	// the identities of migrate (Argo) and the migrate tasks (Tekton): list pods only
	migrateAccounts = []string{"chartreuse-migrate", "chartreuse-pipeline-migrate"}
)

// argoExecutorContainers are the containers Argo adds to every step pod.
var argoExecutorContainers = []string{"init", "wait"}

// holder is who one container of a step acts as towards the API server: the
// ServiceAccount whose token it can read, or "" when it has none.
type holder struct {
	where  string // engine, template or task, container or step
	sa     string
	useAPI bool   // runs a scale binary
	exec   bool   // Argo's executor
	expect string // "none", "scale", "gate", "lookup" (migrate: list pods, read the workloads), "check-databases" (get secrets) or "executor"
}

// TestStepPermissions derives, from the manifests and the engines' rules, which
// ServiceAccount token every step container of both engines holds, applies the
// manifests' RBAC to a fresh namespace, and asks the API server what each of those
// identities may do there (SelfSubjectRulesReview, impersonating it). A step that only
// talks to the database must hold no token (its requests would be anonymous: the
// review as system:anonymous must show no resource permission at all); the scale
// steps exactly the rules of pkg/workload/rbac/role.yaml; Argo's executor exactly
// WorkflowTaskResults create/patch. No identity may write pods.
func TestStepPermissions(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the real cluster (not run with -short)")
	}
	env := kubeenv.Shared(t)
	ns := env.NewNamespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	rbacFiles := []string{"workflowtemplates/rbac.yaml", "tekton/rbac.yaml"}
	args := []string{"--kubeconfig", env.Kubeconfig, "apply", "--server-side", "-n", ns}
	for _, f := range rbacFiles {
		args = append(args, "-f", filepath.Join(repo, f))
	}
	if out, err := exec.CommandContext(ctx, filepath.Join(env.State().KubeBinDir, "kubectl"), args...).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}

	sas := map[string]*corev1.ServiceAccount{}
	for _, f := range rbacFiles {
		for _, d := range readDocs(t, filepath.Join(repo, f)) {
			var sa corev1.ServiceAccount
			if yaml.Unmarshal(d, &sa) == nil && sa.Kind == "ServiceAccount" {
				sas[sa.Name] = &sa
			}
		}
	}
	holders := append(argoHolders(t, repo, sas), tektonHolders(t, repo, sas)...)

	cfg, err := env.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	scale, err := rbacrules.Scale()
	if err != nil {
		t.Fatal(err)
	}
	gateRules, err := rbacrules.Gate()
	if err != nil {
		t.Fatal(err)
	}
	lookup, err := rbacrules.Migrate()
	if err != nil {
		t.Fatal(err)
	}
	checkDatabases, err := rbacrules.CheckDatabases()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"check-databases": rbacrules.Expand(checkDatabases),
		"none":            nil,
		"lookup":          rbacrules.Expand(lookup),
		"scale":           rbacrules.Expand(scale),
		"gate":            rbacrules.Expand(gateRules),
		"executor":        rbacrules.Expand(rbacrules.Executor),
		// Tekton's chartreuse-pipeline-migrate: migrate's rules and a list's turn
		// (the single-database Pipeline's plan and migrate hold the turn's reads too)
		"migrate-turn": rbacrules.Expand(append(slices.Clone(lookup), rbacrules.Turn...)),
	}
	// What the anonymous user is asked about: everything any step may do, and
	// what would matter most in a stolen credential.
	probes := rbacrules.Expand([]rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "pods/exec", "pods/ephemeralcontainers", "secrets", "configmaps", "serviceaccounts/token", "events"}, Verbs: allVerbs},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets", "replicasets"}, Verbs: allVerbs},
		{APIGroups: []string{"batch"}, Resources: []string{"cronjobs", "jobs"}, Verbs: allVerbs},
		{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflows", "workflowtaskresults"}, Verbs: allVerbs},
		{APIGroups: []string{"tekton.dev"}, Resources: []string{"pipelineruns", "taskruns"}, Verbs: allVerbs},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: allVerbs},
	})
	// What every ServiceAccount may do without any binding (system:basic-user and the
	// like); subtracted, so that what is left is what the manifests grant.
	baseline := reviewAs(t, ctx, cfg, ns, serviceAccountUser(ns, "chartreuse-test-unbound"), nil)
	reviews := map[string][]string{}
	granted := func(sa string, want []string) []string {
		if g, ok := reviews[sa]; ok {
			return g
		}
		var g []string
		if sa == "" {
			// No token: a request from the container is anonymous. The anonymous
			// user may not even review its own rules, so ask about it.
			g = anonymousMay(t, ctx, cfg, ns, probes)
		} else {
			g = settledReview(t, ctx, cfg, ns, sa, baseline, want)
		}
		reviews[sa] = g
		return g
	}

	for _, h := range holders {
		got := granted(h.sa, want[h.expect])
		t.Logf("%-70s token: %-20s may: %v", h.where, or(h.sa, "none"), or(strings.Join(got, ", "), "nothing"))
		if !slices.Equal(got, want[h.expect]) {
			t.Errorf("%s (token of %q): may\n  %v\nwant exactly (%s)\n  %v", h.where, h.sa, got, h.expect, want[h.expect])
		}
		if h.expect == "none" && h.sa != "" {
			t.Errorf("%s: talks only to the database but holds the token of %s", h.where, h.sa)
		}
		for _, g := range got {
			verb, res, _ := strings.Cut(g, " ")
			if (res == "/pods" || strings.HasPrefix(res, "/pods/") || res == "/*" || res == "*/*") && verb != "get" && verb != "list" && verb != "watch" {
				t.Errorf("%s: may %s", h.where, g)
			}
		}
	}

	// Argo mounts the executor's token from this Secret, which Kubernetes fills in.
	kube, err := env.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	err = Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		s, err := kube.CoreV1().Secrets(ns).Get(ctx, "chartreuse-executor.service-account-token", metav1.GetOptions{})
		return err == nil && len(s.Data[corev1.ServiceAccountTokenKey]) > 0, err
	})
	if err != nil {
		t.Errorf("the executor's token Secret was not filled in: %v", err)
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func serviceAccountUser(ns, name string) string {
	return "system:serviceaccount:" + ns + ":" + name
}

// reviewAs returns what user may do in ns, as sorted "verb group/resource" strings,
// from a SelfSubjectRulesReview made as that user (impersonation; a ServiceAccount
// gets its groups as the API server would give them).
func reviewAs(t *testing.T, ctx context.Context, admin *rest.Config, ns, user string, groups []string) []string {
	t.Helper()
	cfg := rest.CopyConfig(admin)
	if sa, ok := strings.CutPrefix(user, "system:serviceaccount:"); ok {
		saNS, _, _ := strings.Cut(sa, ":")
		groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + saNS, "system:authenticated"}
	}
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cs.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx,
		&authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("rules review as %s: %v", user, err)
	}
	if res.Status.Incomplete {
		t.Fatalf("rules review as %s is incomplete: %s", user, res.Status.EvaluationError)
	}
	var rules []rbacv1.PolicyRule
	for _, r := range res.Status.ResourceRules {
		if len(r.ResourceNames) > 0 {
			// e.g. a named object; nothing the manifests grant
			rules = append(rules, rbacv1.PolicyRule{Verbs: r.Verbs, APIGroups: r.APIGroups, Resources: prefixAll(r.Resources, "named:")})
			continue
		}
		rules = append(rules, rbacv1.PolicyRule{Verbs: r.Verbs, APIGroups: r.APIGroups, Resources: r.Resources})
	}
	return rbacrules.Expand(rules)
}

var allVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

// anonymousMay returns which of probes ("verb group/resource") the anonymous user may
// do in ns, asked with one SubjectAccessReview each.
func anonymousMay(t *testing.T, ctx context.Context, admin *rest.Config, ns string, probes []string) []string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	var may []string
	for _, p := range probes {
		verb, gr, _ := strings.Cut(p, " ")
		group, res, _ := strings.Cut(gr, "/")
		res, sub, _ := strings.Cut(res, "/")
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: "system:anonymous", Groups: []string{"system:unauthenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: group, Resource: res, Subresource: sub},
		}}
		r, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("access review for system:anonymous: %v", err)
		}
		if r.Status.Allowed {
			may = append(may, p)
		}
	}
	return may
}

func prefixAll(l []string, p string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = p + s
	}
	return out
}

// readDocs returns the YAML documents of a file.
func readDocs(t *testing.T, file string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		d, err := r.Read()
		if err != nil {
			break
		}
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

// decodeOne decodes a file of one YAML document.
func decodeOne(t *testing.T, file string, into any) {
	t.Helper()
	docs := readDocs(t, file)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", file, len(docs))
	}
	if err := yaml.Unmarshal(docs[0], into); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// runsScaleBinary reports whether a container runs one of the scale binaries,
// directly or through an engine's wrapper (Argo's emissary, Tekton's entrypoint).
func runsScaleBinary(command, args []string) bool {
	for _, w := range append(slices.Clone(command), args...) {
		if slices.Contains(scaleBinaries, w) {
			return true
		}
	}
	return false
}

// runsLocking reports whether a container runs migrate in a mode that takes the
// migration lock (not --plan): its messages name the pod of a lock's holder.
// readsHolds reports whether a plan step reads the workloads' records
// (--report-holds-for with a value), as chartreuse-migrate.
func readsHolds(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool {
		v, ok := strings.CutPrefix(a, "--report-holds-for=")
		if !ok {
			v, ok = strings.CutPrefix(a, "--report-holds-for-result=")
		}
		return ok && v != ""
	})
}

func runsLocking(command, args []string) bool {
	all := append(slices.Clone(command), args...)
	return slices.Contains(all, migrateBinary) && !slices.Contains(all, "--plan")
}

// runsGate reports whether a container runs the gate binary.
func runsGate(command, args []string) bool {
	return slices.Contains(append(slices.Clone(command), args...), gateBinary)
}

func expectation(useAPI, executor bool) string {
	switch {
	case executor:
		return "executor"
	case useAPI:
		return "scale"
	}
	return "none"
}

// argoHolders applies Argo 3.7's rules (workflow/controller/workflowpod.go,
// setupServiceAccount and newExecContainer) to the WorkflowTemplate: the pod runs as
// the template's serviceAccountName, else the workflow's; automountServiceAccountToken
// false (template's, else the workflow's) is written to the pod, true or unset leaves
// it to the ServiceAccount; with executor.serviceAccountName the executor's
// containers mount that ServiceAccount's token Secret, else the pod's token.
func argoHolders(t *testing.T, repo string, sas map[string]*corev1.ServiceAccount) []holder {
	t.Helper()
	var wft wfv1.WorkflowTemplate
	decodeOne(t, filepath.Join(repo, "workflowtemplates/workflowtemplate.yaml"), &wft)
	spec := wft.Spec
	var out []holder
	for _, tmpl := range spec.Templates {
		if tmpl.Container == nil && tmpl.Script == nil && tmpl.ContainerSet == nil {
			continue
		}
		if tmpl.Container == nil {
			t.Errorf("argo template %s: only container templates are handled here", tmpl.Name)
			continue
		}
		podSA := or(tmpl.ServiceAccountName, or(spec.ServiceAccountName, "default"))
		mounted := automountOf(sas, podSA)
		auto := tmpl.AutomountServiceAccountToken
		if auto == nil {
			auto = spec.AutomountServiceAccountToken
		}
		// The pod's own setting wins over its ServiceAccount's, both ways: with
		// both files applied, tekton/rbac.yaml's chartreuse-check-databases (no
		// automount) is the one in the namespace, and Argo's template mounts it.
		if auto != nil {
			mounted = *auto
		}
		execSA := ""
		if tmpl.Executor != nil && tmpl.Executor.ServiceAccountName != "" {
			execSA = tmpl.Executor.ServiceAccountName
		} else if spec.Executor != nil {
			execSA = spec.Executor.ServiceAccountName
		}
		if execSA == "" && mounted {
			execSA = podSA
		} else if execSA == "" {
			t.Errorf("argo template %s: no token for the executor (Argo refuses: executor.serviceAccountName must be set with automountServiceAccountToken false)", tmpl.Name)
		}
		main := holder{where: "argo " + tmpl.Name + ": main", useAPI: runsScaleBinary(tmpl.Container.Command, tmpl.Container.Args)}
		if mounted {
			main.sa = podSA
		}
		main.expect = expectation(main.useAPI, false)
		// settle (gate --action settle) lists the run's pods, as chartreuse-migrate
		if runsLocking(tmpl.Container.Command, tmpl.Container.Args) || runsGate(tmpl.Container.Command, tmpl.Container.Args) || readsHolds(tmpl.Container.Args) {
			main.expect = "lookup"
		}
		// issue 15: whether each Secret of a databases list holds its key
		// (its later actions, --action=rounds|decide|summary, read only their arguments: no token)
		if len(tmpl.Container.Command) == 1 && tmpl.Container.Command[0] == "/usr/local/bin/check-databases" && !slices.ContainsFunc(tmpl.Container.Args, func(a string) bool { return strings.HasPrefix(a, "--action=") }) {
			main.expect = "check-databases"
		}
		out = append(out, main, holder{where: "argo " + tmpl.Name + ": executor (init, wait)", sa: execSA, exec: true, expect: "executor"})
	}
	if len(out) < 14 {
		t.Fatalf("argo: only %d step containers found", len(out))
	}
	return out
}

// automountOf is the ServiceAccount's automountServiceAccountToken (default true).
func automountOf(sas map[string]*corev1.ServiceAccount, name string) bool {
	sa := sas[name]
	return sa == nil || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken
}

// tektonHolders applies Tekton 1.15's rules (pkg/pod: the pod's serviceAccountName and
// automountServiceAccountToken come from the TaskRun's, i.e. the PipelineRun's
// taskRunSpecs for its pipeline task, else its taskRunTemplate) to every PipelineRun of
// the manifests and every task of the Pipeline it runs (the generated Pipelines embed
// their Tasks): a step holds the token the pod automounts, unless it mounts a volume at
// the token path itself, which must be a projected token of the pod's ServiceAccount.
func tektonHolders(t *testing.T, repo string, sas map[string]*corev1.ServiceAccount) []holder {
	t.Helper()
	var tt triggersv1beta1.TriggerTemplate
	decodeOne(t, filepath.Join(repo, "tekton/triggers/triggertemplate.yaml"), &tt)
	if len(tt.Spec.ResourceTemplates) != 1 {
		t.Fatalf("TriggerTemplate: %d resource templates, want the PipelineRun", len(tt.Spec.ResourceTemplates))
	}
	runs := map[string][]byte{
		"triggertemplate":                tt.Spec.ResourceTemplates[0].Raw,
		"examples/pipelinerun":           readDocs(t, filepath.Join(repo, "tekton/examples/pipelinerun.yaml"))[0],
		"examples/databases-pipelinerun": readDocs(t, filepath.Join(repo, "tekton/examples/databases-pipelinerun.yaml"))[0],
	}
	pipelines := map[string]*pipelinev1.Pipeline{}
	for _, f := range []string{"tekton/pipeline.yaml", "tekton/databases.yaml"} {
		var p pipelinev1.Pipeline
		decodeOne(t, filepath.Join(repo, f), &p)
		pipelines[p.Name] = &p
	}
	var out []holder
	for _, name := range slices.Sorted(maps.Keys(runs)) {
		var pr pipelinev1.PipelineRun
		if err := yaml.Unmarshal(runs[name], &pr); err != nil {
			t.Fatal(err)
		}
		if pr.Spec.PipelineRef == nil || pipelines[pr.Spec.PipelineRef.Name] == nil {
			t.Errorf("%s: runs no Pipeline of the manifests", name)
			continue
		}
		p := pipelines[pr.Spec.PipelineRef.Name]
		taskSA := map[string]string{}
		for _, trs := range pr.Spec.TaskRunSpecs {
			if trs.PodTemplate != nil && trs.PodTemplate.AutomountServiceAccountToken != nil {
				t.Errorf("%s: taskRunSpecs give task %s a token setting of its own, not checked here", name, trs.PipelineTaskName)
			}
			taskSA[trs.PipelineTaskName] = trs.ServiceAccountName
		}
		automount := func(sa string) bool {
			if pt := pr.Spec.TaskRunTemplate.PodTemplate; pt != nil && pt.AutomountServiceAccountToken != nil {
				return *pt.AutomountServiceAccountToken
			}
			return automountOf(sas, sa)
		}
		run := "tekton (" + name + ") "
		seen := map[string]bool{}
		tasks := append(slices.Clone(p.Spec.Tasks), p.Spec.Finally...)
		for _, pt := range tasks {
			if pt.TaskSpec == nil {
				t.Errorf("%s: task %s embeds no taskSpec (the generated Pipelines do)", name, pt.Name)
				continue
			}
			seen[pt.Name] = true
			sa := or(taskSA[pt.Name], or(pr.Spec.TaskRunTemplate.ServiceAccountName, "default"))
			podHolder := ""
			if automount(sa) {
				podHolder = sa
			}
			// Tekton's init containers
			out = append(out, holder{where: run + pt.Name + ": init containers", sa: podHolder, expect: "none"})
			task := pipelinev1.Task{Spec: pt.TaskSpec.TaskSpec}
			task.Name = pt.Name
			for _, step := range pt.TaskSpec.Steps {
				h := holder{where: run + pt.Name + ": " + step.Name, sa: podHolder, useAPI: runsScaleBinary(step.Command, step.Args)}
				for _, m := range step.VolumeMounts {
					if m.MountPath != tokenPath && !strings.HasPrefix(tokenPath, strings.TrimSuffix(m.MountPath, "/")+"/") {
						continue
					}
					h.sa = projectedTokenOf(t, task, m.Name, sa)
				}
				h.expect = tektonExpectation(step.Command, step.Args)
				if h.expect == "migrate-turn" && h.sa == "" && runsLocking(step.Command, step.Args) {
					// migrate names a lock holder's pod only when it may list
					// pods: the single-database rollback does without
					h.expect = "none"
				}
				out = append(out, h)
			}
		}
		for n := range taskSA {
			if seen[n] {
				continue
			}
			t.Errorf("%s: taskRunSpecs name task %s, which its Pipeline %s does not have", name, n, p.Name)
		}
	}
	return out
}

// tektonExpectation is what a Tekton step needs of the API server, from what it runs.
// migrate (locking), plan reading the workloads' holds and a list's turn share one
// identity (chartreuse-pipeline-migrate): "migrate-turn".
func tektonExpectation(command, args []string) string {
	action := ""
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--action="); ok {
			action = v
		}
	}
	all := append(slices.Clone(command), args...)
	switch {
	case runsScaleBinary(command, args) || slices.Contains(args, "--stopped-check-only"):
		// --stopped-check-only reads the workloads with the token its Task's
		// scale-restore step needs too
		return "scale"
	case runsGate(command, args) && action == "turn":
		return "migrate-turn"
	case runsGate(command, args):
		return "gate"
	case runsLocking(command, args) || readsHolds(args):
		return "migrate-turn"
	case slices.Contains(all, "/usr/local/bin/check-databases") && (action == "" || action == "check"):
		return "check-databases"
	}
	return "none"
}

// projectedTokenOf checks that the Task's volume name is a projected token of the
// pod's ServiceAccount (with the cluster's CA, as client-go needs) and returns it.
func projectedTokenOf(t *testing.T, task pipelinev1.Task, name, podSA string) string {
	t.Helper()
	for _, v := range task.Spec.Volumes {
		if v.Name != name {
			continue
		}
		if v.Projected == nil {
			t.Errorf("Task %s: volume %s at %s is not a projected token", task.Name, name, tokenPath)
			return "?"
		}
		var token, ca bool
		for _, s := range v.Projected.Sources {
			token = token || s.ServiceAccountToken != nil && s.ServiceAccountToken.Path == "token" && s.ServiceAccountToken.Audience == ""
			ca = ca || s.ConfigMap != nil && s.ConfigMap.Name == "kube-root-ca.crt"
		}
		if !token || !ca {
			t.Errorf("Task %s: volume %s lacks the API server's token or CA", task.Name, name)
		}
		return podSA
	}
	t.Errorf("Task %s: no volume %s", task.Name, name)
	return "?"
}

// wantLeastPrivilegePods checks the pods the engine really made for a run: a
// container that runs a scale binary reads the pod ServiceAccount's token, Argo's
// executor containers read chartreuse-executor's, migrate and plan read
// chartreuse-migrate's (Tekton: chartreuse-pipeline-migrate's), and every other
// container (the steps that talk only to the database, the engines' own init
// containers) has no token.
func wantLeastPrivilegePods(t *testing.T, kube kubernetes.Interface, pods []corev1.Pod, argo bool) {
	t.Helper()
	if len(pods) == 0 {
		t.Fatal("no pods to check")
	}
	for _, p := range pods {
		var seen []string
		for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
			got, err := tokenHolder(t.Context(), kube, &p, c)
			if err != nil {
				t.Errorf("pod %s container %s: %v", p.Name, c.Name, err)
				continue
			}
			want := ""
			switch {
			case argo && slices.Contains(argoExecutorContainers, c.Name):
				want = "chartreuse-executor"
			case runsScaleBinary(c.Command, c.Args), runsGate(c.Command, c.Args):
				want = p.Spec.ServiceAccountName
			case (runsLocking(c.Command, c.Args) || readsHolds(c.Args)) && slices.Contains(migrateAccounts, p.Spec.ServiceAccountName):
				// migrate and rollback (Argo), the migrate tasks (Tekton): list pods only;
				// plan and a databases list's rounds: read the workloads' holds
				want = p.Spec.ServiceAccountName
			}
			if got != want {
				t.Errorf("pod %s container %s holds the token of %q, want %q", p.Name, c.Name, got, want)
			}
			if runsGate(c.Command, c.Args) && p.Spec.ServiceAccountName != "chartreuse-gate" {
				t.Errorf("pod %s runs the gate as %s, want chartreuse-gate", p.Name, p.Spec.ServiceAccountName)
			}
			seen = append(seen, c.Name+"="+or(got, "no token"))
		}
		t.Logf("pod %s (ServiceAccount %s): %s", p.Name, p.Spec.ServiceAccountName, strings.Join(seen, ", "))
	}
}

// tokenHolder returns the ServiceAccount whose token container c of pod p reads at
// the in-cluster path, or "" when nothing is mounted there.
func tokenHolder(ctx context.Context, kube kubernetes.Interface, p *corev1.Pod, c corev1.Container) (string, error) {
	for _, m := range c.VolumeMounts {
		if m.MountPath != tokenPath {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			switch {
			case v.Projected != nil:
				for _, s := range v.Projected.Sources {
					if s.ServiceAccountToken != nil {
						return p.Spec.ServiceAccountName, nil
					}
				}
			case v.Secret != nil:
				s, err := kube.CoreV1().Secrets(p.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
				if err != nil {
					return "", err
				}
				if s.Type == corev1.SecretTypeServiceAccountToken {
					return s.Annotations[corev1.ServiceAccountNameKey], nil
				}
			}
			return "", fmt.Errorf("volume %s at %s holds no ServiceAccount token", v.Name, tokenPath)
		}
		return "", fmt.Errorf("no volume %s", m.Name)
	}
	return "", nil
}

// runPods lists the pods of one run (label selector).
func runPods(t *testing.T, kube kubernetes.Interface, ns, selector string) []corev1.Pod {
	t.Helper()
	l, err := kube.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}
