package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// guarded is a step that counts its runs, behind RequireStopped: what migrate
// is in its binary.
func guarded(ran *int) step.Spec {
	return RequireStopped(step.Spec{Name: "guarded", Usage: "counts its runs", Run: func(context.Context, *step.Env) error {
		*ran++
		return nil
	}})
}

// needsDir is an option of the guarded step that is never valid here, like
// migrate's migrations directory in a pod that has none.
type needsDir struct{}

func (needsDir) Flags() []cli.Flag { return nil }
func (needsDir) Validate() error {
	return errors.New("migration directory /migrations: no such file or directory")
}

// runGuarded runs the guarded step with kubeconfig (through $KUBECONFIG, as
// migrate has no --kubeconfig flag) and returns its exit code and error line.
func (c *cluster) runGuarded(ran *int, kubeconfig string, args ...string) (int, string) {
	c.t.Helper()
	c.t.Setenv("KUBECONFIG", kubeconfig)
	full := append([]string{"guarded", "--skip-version-check", "--results-dir", c.t.TempDir(), "--stopped-namespace", c.ns}, args...)
	var out, errOut bytes.Buffer
	spec := guarded(ran)
	if slices.Contains(args, "--stopped-check-only") {
		// a check step has none of the step's own inputs: never validated
		spec = RequireStopped(step.Spec{Name: "guarded", Usage: "counts its runs", Options: []step.Options{needsDir{}}, Run: func(context.Context, *step.Env) error {
			*ran++
			return nil
		}})
	}
	code := step.Run(context.Background(), spec, full, &out, &errOut)
	var sum results.Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		c.t.Fatalf("stdout is not the JSON summary: %q (%v)", out.String(), err)
	}
	c.t.Logf("guarded %s: exit %d %s", strings.Join(args, " "), code, sum.Error)
	return code, sum.Error
}

// RequireStopped lets the step run only while every workload scale-down
// stopped is still stopped; once something put the application back (a
// person's scale-restore here), it refuses with exit 2 naming each running
// workload, before the step's own code runs. This is what keeps `argo retry`
// of a run whose application was put back from migrating under it.
func TestClusterRequireStopped(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	c.deployment("web", 2, appOpts{labels: map[string]string{"part-of": "shop"}})
	jobPod := c.podTemplate("report", appOpts{})
	jobPod.Spec.RestartPolicy = corev1.RestartPolicyNever
	if _, err := c.cs.BatchV1().CronJobs(c.ns).Create(ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "report", Labels: map[string]string{"part-of": "shop"}},
		Spec:       batchv1.CronJobSpec{Schedule: "0 0 1 1 *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: jobPod}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitRunning("app=web", 2, 3*time.Minute)
	var ran int

	// running: refused, naming both, and the step's code never ran
	code, msg := c.runGuarded(&ran, c.kubeconfig, "--stopped-selector", "part-of=shop")
	if code != 2 || ran != 0 {
		t.Fatalf("with the application running: exit %d, ran %d times; want exit 2 and no run", code, ran)
	}
	for _, want := range []string{"deployment/web (2 replicas)", "cronjob/report (not suspended)", "argo resubmit"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal does not say %q: %s", want, msg)
		}
	}

	// stopped by scale-down: runs
	c.mustRun(0, ScaleDownSpec(), "", "--selector", "part-of=shop", "--run-uid", "run-a")
	if code, _ := c.runGuarded(&ran, c.kubeconfig, "--stopped-selector", "part-of=shop"); code != 0 || ran != 1 {
		t.Fatalf("with the application stopped: exit %d, ran %d times; want 0 and one run", code, ran)
	}
	// no selection: no check at all
	if code, _ := c.runGuarded(&ran, c.kubeconfig); code != 0 || ran != 2 {
		t.Fatalf("without --stopped-*: exit %d, ran %d times", code, ran)
	}
	// a named workload that is gone counts as stopped
	if code, _ := c.runGuarded(&ran, c.kubeconfig, "--stopped-workload", "deployment/web,deployment/gone"); code != 0 || ran != 3 {
		t.Fatalf("with a named workload gone: exit %d, ran %d times", code, ran)
	}

	// a pod of the stopped Deployment left (started by hand): refused
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-by-hand", Labels: map[string]string{"app": "web"}}, Spec: c.podTemplate("web", appOpts{}).Spec}
	if _, err := c.cs.CoreV1().Pods(c.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	code, msg = c.runGuarded(&ran, c.kubeconfig, "--stopped-workload", "deploy/web")
	if code != 2 || ran != 3 || !strings.Contains(msg, "deployment/web (0 replicas, 1 pods left)") {
		t.Fatalf("with a pod of web left: exit %d, ran %d times: %s", code, ran, msg)
	}
	if err := c.cs.CoreV1().Pods(c.ns).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the pod started by hand to go", time.Minute, func() (bool, string) {
		left := c.livePods("app=web")
		return len(left) == 0, strings.Join(left, ", ")
	})

	// with exactly migrate's Role (rbac/stopped.yaml and the pod lookup's list pods)
	var role rbacv1.Role
	if err := yaml.UnmarshalStrict(StoppedRoleYAML, &role); err != nil {
		t.Fatal(err)
	}
	asMigrate := c.serviceAccountKubeconfig("chartreuse-migrate", &role)
	if code, _ := c.runGuarded(&ran, asMigrate, "--stopped-selector", "part-of=shop"); code != 0 || ran != 4 {
		t.Fatalf("as chartreuse-migrate, stopped: exit %d, ran %d times", code, ran)
	}

	// a person puts the application back: refused again
	c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "part-of=shop")
	code, msg = c.runGuarded(&ran, asMigrate, "--stopped-selector", "part-of=shop")
	if code != 2 || ran != 4 || !strings.Contains(msg, "deployment/web (2 replicas)") || !strings.Contains(msg, "cronjob/report (not suspended)") {
		t.Fatalf("after a scale-restore: exit %d, ran %d times: %s", code, ran, msg)
	}

	// without the Role: exit 1 naming the permission, the step not run
	none := c.serviceAccountKubeconfig("no-rights", &rbacv1.Role{})
	code, msg = c.runGuarded(&ran, none, "--stopped-selector", "part-of=shop")
	if code != 1 || ran != 4 || !strings.Contains(msg, "permission denied") {
		t.Fatalf("without permissions: exit %d, ran %d times: %s", code, ran, msg)
	}
	// a bad selector is a usage error before anything is read
	if code, msg := c.runGuarded(&ran, c.kubeconfig, "--stopped-selector", "part-of in (shop"); code != 2 || ran != 4 || !strings.Contains(msg, "--stopped-selector") {
		t.Fatalf("bad selector: exit %d, ran %d times: %s", code, ran, msg)
	}

	// Tekton passes the selection always, with the values its scale-down's when
	// reads: the application runs (restored above), so the check refuses
	// exactly when the run stopped it.
	for _, tc := range []struct {
		stop, needs string
		code        int
	}{
		{"true", "false", 2}, {"true", "", 2}, {"auto", "true", 2}, {"auto", "", 2},
		{"auto", "false", 0}, {"false", "true", 0}, {"false", "", 0},
	} {
		before := ran
		code, msg := c.runGuarded(&ran, asMigrate, "--stopped-selector", "part-of=shop", "--stop-workloads", tc.stop, "--needs-downtime", tc.needs)
		if code != tc.code || (code == 0) != (ran == before+1) {
			t.Fatalf("--stop-workloads %q --needs-downtime %q with the application running: exit %d, ran %d times before, %d after: %s; want exit %d", tc.stop, tc.needs, code, before, ran, msg, tc.code)
		}
	}
	// A check step of its own (Tekton's rollback): it refuses as the step would,
	// and otherwise ends without running the step or validating its options.
	for _, tc := range []struct {
		stop string
		code int
	}{{"true", 2}, {"false", 0}} {
		before := ran
		code, msg := c.runGuarded(&ran, asMigrate, "--stopped-check-only", "--stopped-selector", "part-of=shop", "--stop-workloads", tc.stop)
		if code != tc.code || ran != before {
			t.Fatalf("--stopped-check-only --stop-workloads %s with the application running: exit %d, ran %d times before, %d after: %s; want exit %d and no run", tc.stop, code, before, ran, msg, tc.code)
		}
	}
	// a value outside the lists: a usage error before anything is read
	for _, args := range [][]string{{"--stop-workloads", "True"}, {"--stop-workloads", "auto", "--needs-downtime", "yes"}} {
		before := ran
		code, msg := c.runGuarded(&ran, none, append([]string{"--stopped-selector", "part-of=shop"}, args...)...)
		if code != 2 || ran != before || !strings.Contains(msg, args[len(args)-2]) {
			t.Fatalf("%v: exit %d, ran %d times before, %d after: %s; want exit 2 naming the flag", args, code, before, ran, msg)
		}
	}
}
