package manifests

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline"
	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	triggersv1beta1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	corev1 "k8s.io/api/core/v1"

	"github.com/chartreuse-go/chartreuse/pkg/binaries"
	"github.com/chartreuse-go/chartreuse/pkg/databases"
	"github.com/chartreuse-go/chartreuse/pkg/gate"
	"github.com/chartreuse-go/chartreuse/pkg/patroni"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/pkg/waitdb"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
)

// stepBinaries maps each step binary to its Spec and to the package that implements it.
var stepBinaries = map[string]struct {
	spec func() step.Spec
	pkg  string
}{
	"wait-for-db":  {waitdb.Spec, "pkg/waitdb"},
	"wait-patroni": {patroni.Spec, "pkg/patroni"},
	// as steps/migrate/main.go builds it: the workloads checks first (which
	// write plan's superseded-holds)
	"migrate":       {binaries.Migrate, "pkg/migrate pkg/workload pkg/runwatch"},
	"scale-down":    {workload.ScaleDownSpec, "pkg/workload"},
	"scale-restore": {workload.ScaleRestoreSpec, "pkg/workload"},
	"gate":          {gate.Spec, "pkg/gate"},
	// issue 15, Argo's plan-databases entrypoint for now
	"check-databases": {func() step.Spec { return workload.CheckSelection(databases.Spec()) }, "pkg/databases pkg/workload"},
}

// agreedFlags is the interface agreed between the workflow definitions and the step
// binaries (issue 5). TestFlagsExistInBinaries checks the code against the manifests;
// this list documents what the manifests were written against.
var agreedFlags = func() map[string][]string {
	common := []string{"log-format", "log-level", "results-dir", "manifest-version", "skip-version-check", "retry-transient-for"}
	db := []string{"database-url", "database-url-file", "connect-timeout"}
	sel := []string{"namespace", "kubeconfig", "selector", "workload", "run-id", "timeout"}
	cat := func(l ...[]string) []string {
		var out []string
		for _, x := range l {
			out = append(out, x...)
		}
		return out
	}
	return map[string][]string{
		"wait-for-db":  cat(common, db, []string{"timeout", "run-id"}),
		"wait-patroni": cat(common, db, []string{"timeout", "patroni-url", "owner-role", "writer-role", "reader-role", "run-id"}),
		"migrate": cat(common, db, []string{"dir", "to", "plan", "down-to", "only-this-run", "allow-out-of-order", "lock-wait", "role", "lock-timeout", "statement-timeout", "allow-empty-database", "table",
			"git-url", "git-revision", "git-commit", "git-credentials",
			"migrations-image", "migrations-digest", "registry-credentials", "insecure-registry", "accept-changed", "run-id", "risk-policy", "planned-target", "planned-files-digest", "wait-timeout",
			"stopped-selector", "stopped-workload", "stopped-namespace", "stop-workloads", "needs-downtime", "stopped-check-only", "check-selector", "check-workload", "check-namespace", "report-holds-for", "check-stop-workloads", "run-created",
			"watch-run", "watch-run-uid", "watch-run-namespace", "watch-run-interval"}),
		"scale-down":    cat(common, sel, []string{"run-uid", "database-secret", "git-commit", "run-created"}),
		"scale-restore": cat(common, sel, []string{"only-run-uid", "supersede-database", "supersede-runs", "wait-ready", "ready-timeout", "run-created"}),
		"check-databases": cat(common, []string{"kubeconfig", "context", "namespace", "action", "max-entries", "max-bytes", "max-secrets", "max-names-bytes", "entries", "plans", "outputs", "parallelism", "canary", "policy", "databases", "database-secret", "database-secret-key", "migrations-dir", "git-url", "git-revision", "migrations-image", "migrate-role", "table", "to",
			"check-selector", "check-workload", "check-namespace", "check-stop-workloads", "report-holds-for", "report-holds-for-result",
			"one-entry-per-secret", "secret", "plan-results", "run-created", "turn", "turn-why", "exit-code-file", "migrate-results", "line-step", "policies", "fail-when-failed", "expect-rollbacks"}),
		"gate": cat(common, []string{"kubeconfig", "context", "namespace", "action", "database-secret", "run-name", "run-uid", "pod-selector", "task-run", "timeout", "poll-interval", "progress-interval", "check-duration", "check-positive-duration", "check-wait-duration", "check-timeout-duration", "check-run-id", "database-secrets-file", "workload-namespace",
			"pipeline-task", "parallelism", "canary", "keep-going"}),
	}
}()

// agreedResults are the results each binary writes (per mode for migrate), as agreed;
// TestResultsAreWritten cross-checks them with the code.
var agreedResults = map[string][]string{
	"check-databases": {"entries", "secrets", "count", "plans", "rounds", "pending", "needs-downtime", "holder", "migrate-failed", "restore", "rollback", "restore-after-rollback", "databases", "superseded-holds",
		// Tekton's list: pick, plan-line, rounds given the plan lines
		"index", "name", "secret", "key", "dir", "git-url", "git-revision", "migrations-image", "role", "table", "to",
		"planned-version", "planned-target", "planned-files-digest", "git-commit", "migrations-digest", "plan-line", "order",
		// migrate-line, summary given the lines
		"migrate-line", "failed", "summary", "why", "rollback-order", "rollback-any", "rollback-failed", "rollback-secrets"},
	"wait-for-db":    {"attempts", "waited"},
	"wait-patroni":   {},
	"migrate --plan": {"pending", "current-version", "target-version", "pending-versions", "git-commit", "migrations-digest", "risks", "needs-downtime", "files-digest", "superseded-holds"},
	"migrate":        {"applied", "applied-versions", "current-version", "target-version", "git-commit", "migrations-digest", "lock-wait-seconds", "table-lock-wait-seconds", "sql-seconds"},
	"scale-down":     {"scaled", "workloads"},
	"scale-restore":  {"restored", "workloads", "downtime-seconds", "workloads-stopped"},
	"gate":           {"go", "why", "run-created"},
}

// container is one container of a manifest that runs a step binary.
type container struct {
	Where      string
	Engine     string // argo or tekton
	Binary     string
	Args       []string
	Env        []corev1.EnvVar
	Image      string
	Security   *corev1.SecurityContext
	Resources  corev1.ResourceRequirements
	WorkingDir string
	Mounts     []corev1.VolumeMount
	// Reads are the results the manifest reads from this container's results dir.
	Reads []string
}

// mode is the binary plus "--plan" for migrate's plan mode (its results differ).
// checkOnlyMode is Tekton's rollback's first step: the check that the workloads
// are still stopped, in a step of its own.
const checkOnlyMode = "migrate --stopped-check-only"

func (c container) mode() string {
	if c.Binary == "migrate" && c.hasArg("--plan") {
		return "migrate --plan"
	}
	if c.Binary == "migrate" && c.hasArg("--stopped-check-only") {
		return checkOnlyMode // reads the workloads only: no database, no migrations
	}
	return c.Binary
}

func (c container) hasArg(a string) bool {
	for _, x := range c.Args {
		if x == a {
			return true
		}
	}
	return false
}

// flag returns the value of --name=value and whether it is there.
func (c container) flag(name string) (string, bool) {
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name {
			return "", true
		}
	}
	return "", false
}

// tektonDatabaseMount is where a Task of Tekton's list mounts its TaskRun's Secret.
const tektonDatabaseMount = "/var/run/chartreuse/database"

// tektonPerDatabase reports a container of a Task of Tekton's list fanned out over
// its Secrets (chartreuse-databases-plan, -migrate, -rollback).
func tektonPerDatabase(c container) bool {
	return c.Engine == "tekton" && (strings.Contains(c.Where, "chartreuse-databases-plan") || strings.Contains(c.Where, "chartreuse-databases-migrate") || strings.Contains(c.Where, "chartreuse-databases-rollback"))
}

func isDatabaseStep(c container) bool {
	return c.Binary == "wait-for-db" || c.Binary == "wait-patroni" || c.Binary == "migrate" && c.mode() != checkOnlyMode
}

// perDatabase reports a container of the Argo templates that work on one entry of a
// databases list (issue 15): they read the entry's values from their inputs.
func perDatabase(c container) bool {
	if c.Engine != "argo" {
		return false
	}
	for _, tmpl := range []string{"plan-db-pod", "migrate-db-pod", "recheck-db-pod", "rollback-db-pod"} {
		if strings.HasSuffix(c.Where, " "+tmpl) {
			return true
		}
	}
	return false
}

func binaryOf(t testing.TB, where string, command []string) string {
	t.Helper()
	if len(command) != 1 || !strings.HasPrefix(command[0], "/usr/local/bin/") {
		t.Fatalf("%s: command %v: want [/usr/local/bin/<step>]", where, command)
	}
	b := path.Base(command[0])
	if _, ok := stepBinaries[b]; !ok {
		t.Fatalf("%s: unknown step binary %s", where, b)
	}
	return b
}

// The guards that fail a run with an invalid parameter (guards_test.go checks them):
// they run a step binary only to make it refuse (--refuse=<message>), so they are
// not step containers.
const (
	argoGuard   = "invalid-parameters"
	tektonGuard = "chartreuse-invalid-parameter"
)

// argoPullProbe starts the step image with --version only, to fail a wrong image
// within image-pull-timeout (TestArgoPullImage checks it): not a step container.
const argoPullProbe = "pull-image"

// argoOnlyParams exist only in the WorkflowTemplate: Tekton fails a TaskRun whose
// image cannot be pulled at once, and its pull secrets come from the PipelineRun's
// podTemplate or the ServiceAccount.
var argoOnlyParams = []string{"image-pull-timeout", "image-pull-secret", "databases", "parallelism", "canary"}

// containers returns every step container of both engines.
func containers(t testing.TB) []container {
	t.Helper()
	var out []container
	wft := argoTemplate(t)
	for _, tmpl := range wft.Spec.Templates {
		if tmpl.Container == nil || tmpl.Name == argoGuard || tmpl.Name == argoPullProbe {
			continue
		}
		c := tmpl.Container
		where := "WorkflowTemplate template " + tmpl.Name
		ct := container{Where: where, Engine: "argo", Binary: binaryOf(t, where, c.Command), Args: c.Args, Env: c.Env,
			Image: c.Image, Security: c.SecurityContext, Resources: c.Resources, WorkingDir: c.WorkingDir, Mounts: c.VolumeMounts}
		if tmpl.Outputs.Parameters != nil {
			for _, p := range tmpl.Outputs.Parameters {
				if p.ValueFrom == nil && p.Value != nil && p.GlobalName != "" {
					continue // a constant the run exports (workloads-stopped), not a result
				}
				if p.ValueFrom == nil || !strings.HasPrefix(p.ValueFrom.Path, "/tmp/results/") {
					t.Errorf("%s: output %s is not read from /tmp/results/", where, p.Name)
					continue
				}
				if got := strings.TrimPrefix(p.ValueFrom.Path, "/tmp/results/"); got != p.Name {
					t.Errorf("%s: output %s reads result %s: names must match", where, p.Name, got)
				}
				ct.Reads = append(ct.Reads, p.Name)
			}
		}
		out = append(out, ct)
	}
	for name, task := range tektonTasks(t) {
		if name == tektonGuard {
			continue
		}
		steps, err := tektonv1.MergeStepsWithStepTemplate(task.Spec.StepTemplate, task.Spec.Steps)
		if err != nil {
			t.Fatal(err)
		}
		taskResults := map[string]bool{}
		for _, r := range task.Spec.Results {
			taskResults[r.Name] = true
		}
		written := map[string]bool{}
		for _, s := range steps {
			where := "Task " + name + " step " + s.Name
			ct := container{Where: where, Engine: "tekton", Binary: binaryOf(t, where, s.Command), Args: expandArrays(t, name, s.Args), Env: s.Env,
				Image: s.Image, Security: s.SecurityContext, Resources: s.ComputeResources, WorkingDir: s.WorkingDir}
			dir, _ := ct.flag("results-dir")
			switch dir {
			case pipelinev1.DefaultResultPath:
				// This step's results are the Task's: those it declares and this binary writes.
				for r := range taskResults {
					if slices.Contains(agreedResults[ct.mode()], r) {
						ct.Reads = append(ct.Reads, r)
						written[r] = true
					}
				}
			case filepath.Join(pipelinev1.StepsDir, "step-"+s.Name, "results"):
				// The directory of $(step.results.<name>.path) (pod.StepName: "step-" + name).
				for _, r := range s.Results {
					ct.Reads = append(ct.Reads, r.Name)
				}
				if len(s.Results) == 0 {
					t.Errorf("%s: writes step results but declares none", where)
				}
			default:
				t.Errorf("%s: --results-dir=%q is neither %s (the directory of $(results.<name>.path)) nor this step's $(step.results.<name>.path) directory",
					where, dir, pipelinev1.DefaultResultPath)
			}
			if len(s.Results) > 0 && dir == pipelinev1.DefaultResultPath {
				t.Errorf("%s: declares step results but writes task results", where)
			}
			sort.Strings(ct.Reads)
			out = append(out, ct)
		}
		for r := range taskResults {
			if !written[r] {
				t.Errorf("Task %s: result %s is written by none of its steps", name, r)
			}
		}
	}
	if len(out) < 16 {
		t.Fatalf("found only %d step containers", len(out))
	}
	return out
}

// binaryFlags derives a binary's flags (all names) from its Spec: the common flags plus
// each Options bundle's.
func binaryFlags(binary string) (map[string]bool, bool) {
	spec := stepBinaries[binary].spec()
	flags := map[string]bool{}
	all := (&step.CommonOptions{}).Flags()
	for _, o := range spec.Options {
		all = append(all, o.Flags()...)
	}
	for _, f := range all {
		for _, n := range f.Names() {
			flags[n] = true
		}
	}
	return flags, len(spec.Options) > 0
}

func argFlags(t testing.TB, c container) []string {
	var names []string
	for _, a := range c.Args {
		if !strings.HasPrefix(a, "--") {
			t.Errorf("%s: argument %q is not a --flag", c.Where, a)
			continue
		}
		n, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		names = append(names, n)
	}
	return names
}

// TestFlagsAgreed: every --flag a manifest passes is in the agreed interface.
func TestFlagsAgreed(t *testing.T) {
	for _, c := range containers(t) {
		for _, n := range argFlags(t, c) {
			if !slices.Contains(agreedFlags[c.Binary], n) {
				t.Errorf("%s: --%s is not an agreed flag of %s", c.Where, n, c.Binary)
			}
		}
	}
}

// TestFlagsExistInBinaries: every --flag a manifest passes, and every CHARTREUSE_*
// variable it sets, exists in that binary, derived from the step's Spec.
func TestFlagsExistInBinaries(t *testing.T) {
	for _, c := range containers(t) {
		flags, real := binaryFlags(c.Binary)
		if !real {
			t.Errorf("%s: %s's Spec (%s) has no options yet (placeholder): cannot check its flags", c.Where, c.Binary, stepBinaries[c.Binary].pkg)
			continue
		}
		for _, n := range argFlags(t, c) {
			if !flags[n] {
				t.Errorf("%s: %s has no flag --%s", c.Where, c.Binary, n)
			}
		}
		for _, e := range c.Env {
			if !strings.HasPrefix(e.Name, "CHARTREUSE_") {
				continue
			}
			found := false
			for f := range flags {
				if step.EnvVar(f) == e.Name {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: %s sets %s, which is no flag's variable", c.Where, c.Binary, e.Name)
			}
		}
	}
}

// TestManifestVersion: every step gets --manifest-version equal to VERSION, and the
// objects carry it as app.kubernetes.io/version.
func TestManifestVersion(t *testing.T) {
	v := repoVersion(t)
	for _, c := range containers(t) {
		got, ok := c.flag("manifest-version")
		if !ok || got != v {
			t.Errorf("%s: --manifest-version=%q, want %q (the VERSION file)", c.Where, got, v)
		}
		if c.hasArg("--skip-version-check") {
			t.Errorf("%s: --skip-version-check in a manifest", c.Where)
		}
	}
	for _, d := range loadDocs(t) {
		switch d.Obj.GetKind() {
		case "WorkflowTemplate", "Task", "Pipeline":
			if got := d.Obj.GetLabels()["app.kubernetes.io/version"]; got != v {
				t.Errorf("%s: label app.kubernetes.io/version=%q, want %q", d, got, v)
			}
		}
	}
}

// TestImages: every step runs the project's image parameter, whose default is the
// project image at VERSION in both engines.
func TestImages(t *testing.T) {
	want := "ghcr.io/chartreuse-go/chartreuse:" + repoVersion(t)
	for _, c := range containers(t) {
		param := map[string]string{"argo": "{{workflow.parameters.image}}", "tekton": "$(params.image)"}[c.Engine]
		if c.Image != param {
			t.Errorf("%s: image %q, want %q", c.Where, c.Image, param)
		}
	}
	wft := argoTemplate(t)
	defaults := map[string]string{}
	for _, p := range wft.Spec.Arguments.Parameters {
		if p.Name == "image" {
			defaults["WorkflowTemplate"] = p.Value.String()
		}
	}
	for name, task := range tektonTasks(t) {
		for _, p := range task.Spec.Params {
			if p.Name == "image" {
				defaults["Task "+name] = p.Default.StringVal
			}
		}
	}
	for _, p := range tektonPipeline(t).Spec.Params {
		if p.Name == "image" {
			defaults["Pipeline"] = p.Default.StringVal
		}
	}
	for _, d := range docsOfKind(loadDocs(t), "triggers.tekton.dev/v1beta1", "TriggerTemplate") {
		tt := &triggersv1beta1.TriggerTemplate{}
		decodeStrict(t, d, tt)
		for _, p := range tt.Spec.Params {
			if p.Name == "image" && p.Default != nil {
				defaults["TriggerTemplate "+tt.Name] = *p.Default
			}
		}
	}
	if len(defaults) < 10 {
		t.Errorf("image parameter found in only %v", defaults)
	}
	for where, got := range defaults {
		if got != want {
			t.Errorf("%s: image default %q, want %q", where, got, want)
		}
	}
}

// tektonOnly are the Pipeline's parameters that Argo has no use for: the gate's
// timeout (Argo's mutex waits without one).
var tektonOnly = []string{"gate-timeout"}

// TestParameterSets: the WorkflowTemplate and the Pipeline take the same parameters with
// the same defaults, except run-id whose default each engine spells its own way, and
// tektonOnly.
func TestParameterSets(t *testing.T) {
	argo := map[string]string{}
	for _, p := range argoTemplate(t).Spec.Arguments.Parameters {
		if p.Value == nil {
			argo[p.Name] = "<required>"
		} else {
			argo[p.Name] = p.Value.String()
		}
	}
	tekton := map[string]string{}
	for _, p := range tektonPipeline(t).Spec.Params {
		if p.Default == nil {
			tekton[p.Name] = "<required>"
		} else {
			tekton[p.Name] = p.Default.StringVal
		}
	}
	for _, n := range sortedKeys(argo) {
		tv, ok := tekton[n]
		switch {
		case !ok && slices.Contains(argoOnlyParams, n):
		case !ok:
			t.Errorf("parameter %s: in the WorkflowTemplate, not in the Pipeline", n)
		case n == "run-id":
			if argo[n] != "" || tv != "$(context.pipelineRun.name)" {
				t.Errorf("run-id defaults: argo %q (empty: the workflow name), tekton %q", argo[n], tv)
			}
		case tv != argo[n]:
			t.Errorf("parameter %s: default %q in the WorkflowTemplate, %q in the Pipeline", n, argo[n], tv)
		}
	}
	for _, n := range sortedKeys(tekton) {
		if _, ok := argo[n]; !ok && !slices.Contains(tektonOnly, n) {
			t.Errorf("parameter %s: in the Pipeline, not in the WorkflowTemplate", n)
		}
	}
	for _, n := range []string{"image", "database-secret", "database-secret-key", "migrations-dir", "git-url", "git-revision",
		"namespace", "workload-selector", "stop-workloads", "patroni", "patroni-url", "owner-role", "writer-role",
		"reader-role", "migrate-role", "on-migrate-failure", "run-id"} {
		if _, ok := argo[n]; !ok {
			t.Errorf("parameter %s is missing", n)
		}
	}
	for n := range argo {
		if strings.Contains(n, "url") && n != "git-url" && n != "patroni-url" || strings.Contains(n, "password") {
			t.Errorf("parameter %s: credentials never travel as parameters", n)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestDatabaseURLFromSecret: the database steps get the URL only from the Secret named by
// the parameters, through CHARTREUSE_DATABASE_URL; never as a flag.
func TestDatabaseURLFromSecret(t *testing.T) {
	secret := map[string][2]string{
		"argo":   {"{{workflow.parameters.database-secret}}", "{{workflow.parameters.database-secret-key}}"},
		"tekton": {"$(params.database-secret)", "$(params.database-secret-key)"},
	}
	for _, c := range containers(t) {
		if _, ok := c.flag("database-url"); ok {
			t.Errorf("%s: --database-url in a manifest", c.Where)
		}
		if v, ok := c.flag("database-url-file"); ok && !tektonPerDatabase(c) {
			t.Errorf("%s: --database-url-file in a manifest", c.Where)
		} else if tektonPerDatabase(c) && isDatabaseStep(c) {
			// Tekton's list: the TaskRun's Secret (its matrix value) mounted, the key
			// its entry names (a matrix cannot hand a Secret and a key together)
			if want := tektonDatabaseMount + "/$(steps.pick.results.key)"; v != want {
				t.Errorf("%s: --database-url-file=%q, want %s", c.Where, v, want)
			}
			continue
		}
		isDB := c.Binary == "wait-for-db" || c.Binary == "wait-patroni" || c.Binary == "migrate" && c.mode() != checkOnlyMode
		var found *corev1.EnvVar
		for i, e := range c.Env {
			if e.Name == "CHARTREUSE_DATABASE_URL" {
				found = &c.Env[i]
			}
			if e.Value != "" && strings.Contains(strings.ToLower(e.Value), "postgres") {
				t.Errorf("%s: env %s has a literal value that looks like a URL", c.Where, e.Name)
			}
		}
		if !isDB {
			if found != nil {
				t.Errorf("%s: %s gets the database URL it does not need", c.Where, c.Binary)
			}
			continue
		}
		if found == nil || found.ValueFrom == nil || found.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s: CHARTREUSE_DATABASE_URL must come from a secretKeyRef", c.Where)
			continue
		}
		ref := found.ValueFrom.SecretKeyRef
		want := secret[c.Engine]
		if perDatabase(c) {
			// one entry of a databases list: its own Secret and key
			want = [2]string{"{{inputs.parameters.secret}}", "{{inputs.parameters.key}}"}
		}
		if ref.Name != want[0] || ref.Key != want[1] {
			t.Errorf("%s: secretKeyRef %s/%s, want %s/%s", c.Where, ref.Name, ref.Key, want[0], want[1])
		}
	}
}

// TestResultsAreWritten: every result a manifest reads is one the step writes: in the
// agreed list for the binary and mode, and set by the binary's package.
func TestResultsAreWritten(t *testing.T) {
	inCode := map[string]map[string]bool{}
	for _, c := range containers(t) {
		for _, r := range c.Reads {
			if r == step.ResultError {
				continue // every failed step writes it (pkg/step)
			}
			if !slices.Contains(agreedResults[c.mode()], r) {
				t.Errorf("%s: reads result %s, which %s does not write (agreed: %v)", c.Where, r, c.mode(), agreedResults[c.mode()])
			}
			pkg := stepBinaries[c.Binary].pkg
			if inCode[pkg] == nil {
				inCode[pkg] = resultNamesInCode(t, pkg)
			}
			if !inCode[pkg][r] {
				t.Errorf("%s: reads result %s, but %s never sets it (sets %v)", c.Where, r, pkg, sortedKeys(inCode[pkg]))
			}
		}
	}
	// Argo's results directory is an emptyDir mounted where --results-dir points.
	wft := argoTemplate(t)
	emptyDirs := map[string]bool{}
	for _, v := range wft.Spec.Volumes {
		if v.EmptyDir != nil {
			emptyDirs[v.Name] = true
		}
	}
	for _, c := range containers(t) {
		if c.Engine != "argo" {
			continue
		}
		dir, _ := c.flag("results-dir")
		ok := false
		for _, m := range c.Mounts {
			if m.MountPath == dir && emptyDirs[m.Name] {
				ok = true
			}
		}
		if dir != "/tmp/results" || !ok {
			t.Errorf("%s: --results-dir=%q must be /tmp/results, an emptyDir mount", c.Where, dir)
		}
	}
}

// resultNamesInCode collects the result names a package sets: string literals passed
// to a .Set/.SetJSON call on something named Results or res, and the values of string
// constants named Result*.
func resultNamesInCode(t testing.TB, pkgs string) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	for _, pkg := range strings.Fields(pkgs) {
		dir := filepath.Join(repoRoot, pkg)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
	}
	names := map[string]bool{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Set" && sel.Sel.Name != "SetJSON") || len(n.Args) != 2 {
					return true
				}
				if lit, ok := n.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil {
						names[s] = true
					}
				}
			case *ast.ValueSpec:
				for i, id := range n.Names {
					if strings.HasPrefix(id.Name, "Result") && i < len(n.Values) {
						if lit, ok := n.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							if s, err := strconv.Unquote(lit.Value); err == nil {
								names[s] = true
							}
						}
					}
				}
			}
			return true
		})
	}
	return names
}

// TestContainerSecurity: non-root 65532, read-only root filesystem, no privilege
// escalation, no capabilities, RuntimeDefault seccomp, requests and limits.
func TestContainerSecurity(t *testing.T) {
	for _, c := range containers(t) {
		s := c.Security
		if s == nil {
			t.Errorf("%s: no securityContext", c.Where)
			continue
		}
		if s.RunAsNonRoot == nil || !*s.RunAsNonRoot || s.RunAsUser == nil || *s.RunAsUser != 65532 {
			t.Errorf("%s: must run as non-root user 65532", c.Where)
		}
		if s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem {
			t.Errorf("%s: root filesystem must be read-only", c.Where)
		}
		if s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation must be false", c.Where)
		}
		if s.Privileged != nil && *s.Privileged {
			t.Errorf("%s: privileged", c.Where)
		}
		if s.Capabilities == nil || len(s.Capabilities.Drop) != 1 || s.Capabilities.Drop[0] != "ALL" || len(s.Capabilities.Add) != 0 {
			t.Errorf("%s: capabilities must drop ALL and add none", c.Where)
		}
		if s.SeccompProfile == nil || s.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: seccomp profile must be RuntimeDefault", c.Where)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[r]; !ok {
				t.Errorf("%s: no %s request", c.Where, r)
			}
			if _, ok := c.Resources.Limits[r]; !ok {
				t.Errorf("%s: no %s limit", c.Where, r)
			}
		}
	}
	wft := argoTemplate(t)
	if ps := wft.Spec.SecurityContext; ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser != 65532 ||
		ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("WorkflowTemplate: pod securityContext must be non-root 65532 with RuntimeDefault seccomp")
	}
	// Tekton sets the pod securityContext from the PipelineRun.
	var prs []*tektonv1.PipelineRun
	for _, d := range docsOfKind(loadDocs(t), "tekton.dev/v1", "PipelineRun") {
		pr := &tektonv1.PipelineRun{}
		decodeStrict(t, d, pr)
		prs = append(prs, pr)
	}
	for _, d := range docsOfKind(loadDocs(t), "triggers.tekton.dev/v1beta1", "TriggerTemplate") {
		tt := &triggersv1beta1.TriggerTemplate{}
		decodeStrict(t, d, tt)
		prs = append(prs, triggerTemplatePipelineRuns(t, tt)...)
	}
	if len(prs) < 2 {
		t.Fatalf("found %d PipelineRuns", len(prs))
	}
	for _, pr := range prs {
		where := "PipelineRun " + pr.GenerateName
		pt := pr.Spec.TaskRunTemplate.PodTemplate
		if pt == nil || pt.SecurityContext == nil || pt.SecurityContext.RunAsNonRoot == nil || !*pt.SecurityContext.RunAsNonRoot ||
			pt.SecurityContext.SeccompProfile == nil || pt.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: taskRunTemplate.podTemplate.securityContext must be non-root with RuntimeDefault seccomp", where)
		}
		if pr.Spec.TaskRunTemplate.ServiceAccountName != "chartreuse-pipeline" {
			t.Errorf("%s: serviceAccountName %q", where, pr.Spec.TaskRunTemplate.ServiceAccountName)
		}
		// No run-level timeout: it would cut whatever runs when it expires, a retried
		// migration included (Tekton's default is 1 h); the steps bound themselves.
		to := pr.Spec.Timeouts
		if to == nil || to.Pipeline == nil || to.Pipeline.Duration != 0 {
			t.Errorf("%s: timeouts.pipeline must be \"0\" (none), got %+v", where, to)
		} else if to.Tasks != nil && to.Tasks.Duration != 0 || to.Finally != nil && to.Finally.Duration != 0 {
			t.Errorf("%s: timeouts.tasks and finally must be unset or \"0\", got %+v", where, to)
		}
	}
}

// TestArgoRetriesAndDeadlines (issue 12, bugs 1 and 5): the run has no deadline;
// every step template retries exit code 75 with backoff and no backoff.maxDuration,
// those whose rerun is safe also the pod-level errors; the deadlines are derived from
// the timeout parameters (argo_deadlines_test.go evaluates them); the DAGs retry
// nothing (a retried DAG would rerun everything).
func TestArgoRetriesAndDeadlines(t *testing.T) {
	wft := argoTemplate(t)
	if wft.Spec.ActiveDeadlineSeconds != nil {
		t.Errorf("WorkflowTemplate: activeDeadlineSeconds %d: Argo gives every pod the rest of it, cutting a migration short", *wft.Spec.ActiveDeadlineSeconds)
	}
	for _, tmpl := range wft.Spec.Templates {
		if tmpl.DAG != nil || tmpl.Steps != nil {
			if tmpl.RetryStrategy != nil {
				t.Errorf("template %s: a DAG or steps must not retry", tmpl.Name)
			}
			continue
		}
		if tmpl.Name == argoGuard || tmpl.Name == argoPullProbe {
			if tmpl.RetryStrategy != nil {
				t.Errorf("template %s: must not retry (it only fails, or the kubelet already retries the pull)", tmpl.Name)
			}
			continue
		}
		rs := tmpl.RetryStrategy
		if rs == nil || rs.Limit == nil || rs.Backoff == nil {
			t.Errorf("template %s: want retryStrategy {limit, backoff, expression}", tmpl.Name)
			continue
		}
		if rs.Backoff.MaxDuration != "" {
			t.Errorf("template %s: backoff.maxDuration %s: Argo gives each retry attempt the deadline first attempt's start + maxDuration", tmpl.Name, rs.Backoff.MaxDuration)
		}
		want := argoRetryPodLevel
		if tmpl.Name == "scale-restore-pod" {
			want = argoRetryTransient
		}
		if rs.Expression != want {
			t.Errorf("template %s: retry expression %q, want %q", tmpl.Name, rs.Expression, want)
		}
		if rs.RetryPolicyActual() != wfv1.RetryPolicyAlways {
			t.Errorf("template %s: retryPolicy %s: the expression decides, for Failed and Error nodes alike", tmpl.Name, rs.RetryPolicyActual())
		}
	}
}

// The retry expressions: exit code 75, and for the steps whose rerun is safe the
// pod-level errors (evicted or deleted pod: Error; OOM kill 137; SIGTERM 143; no
// exit code at all, -1, e.g. node lost).
const (
	argoRetryTransient = "lastRetry.exitCode == '75'"
	argoRetryPodLevel  = "lastRetry.exitCode in ['75', '137', '143', '-1'] || lastRetry.status == 'Error'"
)

// expandArrays replaces an argument $(params.NAME[*]) of Task task with the
// elements the Pipeline passes to it (every pipeline task of that Task, finally
// included), so that the flags inside are checked like the others.
func expandArrays(t testing.TB, task string, args []string) []string {
	var out []string
	for _, a := range args {
		name, isParam := strings.CutPrefix(a, "$(params.")
		name, isArray := strings.CutSuffix(name, "[*])")
		if !isParam || !isArray {
			out = append(out, a)
			continue
		}
		p := tektonPipeline(t)
		for _, pt := range append(slices.Clone(p.Spec.Tasks), p.Spec.Finally...) {
			if pt.TaskRef == nil || pt.TaskRef.Name != task {
				continue
			}
			for _, param := range pt.Params {
				if param.Name == name {
					out = append(out, param.Value.ArrayVal...)
				}
			}
		}
	}
	return out
}
