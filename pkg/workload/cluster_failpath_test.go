package workload

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// What the workflows' failure paths rely on: restoring only what this run
// stopped, riding out an API-server outage inside the step, and failing when
// the restored application does not come back.

// Run A failed and kept its workloads down; run B, a resubmit, stopped its own
// and failed too. B's failure path restores only B's records: A's keep-down and
// a record from before run uids stay (B lets go of them), each said so in one line. The success
// path (no --only-run-uid) then restores everything.
func TestClusterRestoreOnlyThisRun(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	shop := map[string]string{"part-of": "shop"}
	c.deployment("a-app", 1, appOpts{labels: shop})
	c.waitRunning("app=a-app", 1, 3*time.Minute)
	c.mustRun(0, ScaleDownSpec(), "", "--workload", "deploy/a-app", "--run-id", "wf-a", "--run-uid", "uid-a")
	// A record written before run uids existed.
	c.deployment("old-app", 0, appOpts{labels: shop, annotations: map[string]string{
		AnnotationReplicas: "1", AnnotationBy: "wf-old", AnnotationAt: "2026-01-01T00:00:00Z"}})
	c.deployment("b-app", 2, appOpts{labels: shop})
	c.waitRunning("app=b-app", 2, 3*time.Minute)

	down := c.mustRun(0, ScaleDownSpec(), "", "--selector", "part-of=shop", "--run-id", "wf-b", "--run-uid", "uid-b")
	if got := down.results[ResultWorkloads]; got != `["deployment/a-app=1","deployment/b-app=2","deployment/old-app=1"]` {
		t.Fatalf("scale-down workloads %s", got)
	}
	for name, uid := range map[string]string{"a-app": "uid-a", "b-app": "uid-b", "old-app": ""} {
		if got := c.getDeployment(name).Annotations[AnnotationByRunUID]; got != uid {
			t.Fatalf("%s: run uid %q, want %q", name, got, uid)
		}
	}

	r := c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "part-of=shop", "--only-run-uid", "uid-b", "--wait-ready")
	if r.results[ResultWorkloads] != `["deployment/b-app=2"]` {
		t.Fatalf("failure-path restore: %v\n%s", r.results, r.stderr)
	}
	if d := c.getDeployment("b-app"); *d.Spec.Replicas != 2 || d.Status.ReadyReplicas != 2 || d.Annotations[AnnotationReplicas] != "" {
		t.Fatalf("b-app: %d ready %d %v", *d.Spec.Replicas, d.Status.ReadyReplicas, d.Annotations)
	}
	// B's scale-down joined the holders of A's and the old record; B's restore
	// only takes B off them.
	for name, want := range map[string]struct{ line, heldBy string }{
		"a-app":   {`msg="left stopped: another run still holds it" step=scale-restore workload=deployment/a-app held-by=uid-a`, "uid-a"},
		"old-app": {`msg="left stopped: another run still holds it" step=scale-restore workload=deployment/old-app held-by=none`, "none"},
	} {
		line := want.line
		if d := c.getDeployment(name); *d.Spec.Replicas != 0 || d.Annotations[AnnotationReplicas] != "1" || d.Annotations[AnnotationHeldBy] != want.heldBy {
			t.Errorf("%s was restored by another run's failure path: %d %v", name, *d.Spec.Replicas, d.Annotations)
		}
		if n := strings.Count(r.stderr, line); n != 1 {
			t.Errorf("%d lines %q, want 1:\n%s", n, line, r.stderr)
		}
	}

	r = c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "part-of=shop", "--wait-ready")
	if r.results[ResultWorkloads] != `["deployment/a-app=1","deployment/old-app=1"]` {
		t.Fatalf("success-path restore: %v\n%s", r.results, r.stderr)
	}
}

// The exit handler's restore meets an API server that is unreachable for a few
// seconds (connections refused, as while it restarts): with
// --retry-transient-for it tries again inside the step and succeeds; without,
// the same outage is exit 75.
func TestClusterRestoreRidesOutAnOutage(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("web", 2, appOpts{})
	c.waitRunning("app=web", 2, 3*time.Minute)
	c.mustRun(0, ScaleDownSpec(), "", "--workload", "deploy/web")
	p := newFlakyProxy(t, strings.TrimPrefix(c.env.APIServerURL, "https://"))
	kc := p.kubeconfig(c)
	p.down()

	once := c.mustRun(75, ScaleRestoreSpec(), kc, "--workload", "deploy/web")
	if !strings.Contains(once.summary.Error, "unreachable") {
		t.Fatalf("without retries: %s", once.summary.Error)
	}

	back := make(chan struct{})
	go func() {
		defer close(back)
		time.Sleep(4 * time.Second)
		p.up()
		t.Logf("API server reachable again")
	}()
	r := c.mustRun(0, ScaleRestoreSpec(), kc, "--workload", "deploy/web", "--retry-transient-for", "2m", "--wait-ready")
	<-back
	n := strings.Count(r.stderr, `msg="transient failure: trying again"`)
	if n == 0 || !strings.Contains(r.stderr, "attempt=1 ") {
		t.Errorf("%d retry lines:\n%s", n, r.stderr)
	}
	t.Logf("%d attempts failed while the API server was away", n)
	if d := c.getDeployment("web"); *d.Spec.Replicas != 2 || d.Status.ReadyReplicas != 2 || d.Annotations[AnnotationReplicas] != "" {
		t.Fatalf("web: %d ready %d %v", *d.Spec.Replicas, d.Status.ReadyReplicas, d.Annotations)
	}
}

// --wait-ready: a restored Deployment whose pods never become ready fails the
// step (exit 1) once --ready-timeout has passed, naming it with its counts and
// not the one that is ready; a healthy one succeeds.
func TestClusterRestoreWaitReady(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.neverReady("never", 1)
	c.deployment("fine", 1, appOpts{})
	c.deployment("healthy", 1, appOpts{})
	c.waitRunning("app=fine", 1, 3*time.Minute)
	c.waitRunning("app=healthy", 1, 3*time.Minute)
	c.mustRun(0, ScaleDownSpec(), "", "--workload", "deploy/never,deploy/fine,deploy/healthy")

	r := c.mustRun(1, ScaleRestoreSpec(), "", "--workload", "deploy/never,deploy/fine", "--wait-ready", "--ready-timeout", "20s")
	const want = "restored workloads not ready within --ready-timeout 20s: deployment/never (0/1 ready)"
	if r.summary.Error != want {
		t.Fatalf("error %q, want %q", r.summary.Error, want)
	}
	if strings.Count(strings.TrimSpace(r.stderr), "level=ERROR") != 1 {
		t.Errorf("not one error line:\n%s", r.stderr)
	}

	c.mustRun(0, ScaleRestoreSpec(), "", "--workload", "deploy/healthy", "--wait-ready", "--ready-timeout", "2m")
	if d := c.getDeployment("healthy"); d.Status.ReadyReplicas != 1 {
		t.Fatalf("healthy: ready %d", d.Status.ReadyReplicas)
	}
}

// neverReady creates a Deployment whose pods run but never pass their
// readiness probe (nothing listens on the probed port).
func (c *cluster) neverReady(name string, replicas int32) *appsv1.Deployment {
	c.t.Helper()
	tpl := c.podTemplate(name, appOpts{})
	tpl.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 1, FailureThreshold: 1,
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: tpl,
		},
	}
	d, err := c.cs.AppsV1().Deployments(c.ns).Create(context.Background(), d, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

// A restore attempt that brings one workload back but cannot patch another (a
// transient API error) still waits for the one it brought back: the records
// are gone once the replicas are back, so the retry would never look at it
// again, and a run whose retry restores the other would succeed with the
// first never ready.
func TestClusterRestorePartlyFailedStillWaitsForWhatCameBack(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.neverReady("never", 1)
	c.deployment("blocked", 1, appOpts{labels: map[string]string{"refuse-updates": "yes"}})
	c.waitRunning("app=blocked", 1, 3*time.Minute)
	c.mustRun(0, ScaleDownSpec(), "", "--workload", "deploy/never,deploy/blocked")

	removeHook := c.refuseUpdates("blocked")

	r := c.mustRun(1, ScaleRestoreSpec(), "", "--workload", "deploy/never,deploy/blocked", "--wait-ready", "--ready-timeout", "15s", "--timeout", "10s")
	for _, want := range []string{"deployment/never (0/1 ready)", "1 other workload could not be restored"} {
		if !strings.Contains(r.summary.Error, want) {
			t.Errorf("error %q does not say %q", r.summary.Error, want)
		}
	}

	// Once the API server accepts the update again, a retry restores the other
	// and waits for both: the one the first attempt brought back is part of
	// the application it reports ready (a retried exit 1 or 75 used to exit 0
	// with it never ready).
	removeHook()
	r = c.mustRun(1, ScaleRestoreSpec(), "", "--workload", "deploy/never,deploy/blocked", "--wait-ready", "--ready-timeout", "10s")
	if !strings.Contains(r.summary.Error, "deployment/never (0/1 ready)") {
		t.Errorf("the retry's error %q does not name deployment/never", r.summary.Error)
	}
	if d := c.getDeployment("blocked"); *d.Spec.Replicas != 1 || d.Annotations[AnnotationReplicas] != "" {
		t.Fatalf("blocked: %d %v", *d.Spec.Replicas, d.Annotations)
	}
}

// refuseUpdates sends updates of the Deployment name through a webhook nobody
// serves: the API server answers 500 (failed calling webhook), a transient
// error the steps retry until their --timeout, until the returned func removes the webhook (also done at cleanup).
// The Deployment must carry the label refuse-updates=yes.
func (c *cluster) refuseUpdates(name string) (remove func()) {
	t := c.t
	t.Helper()
	ctx := context.Background()
	hook := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: c.ns + "-refuse"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "refuse.chartreuse.test",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:1/refuse")},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update}, Rule: admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": c.ns}},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"refuse-updates": "yes"}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](2),
		}},
	}
	hooks := c.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := hooks.Create(ctx, hook, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	removeHook := func() {
		if err := hooks.Delete(ctx, hook.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
	}
	t.Cleanup(removeHook)
	// The webhook is in force once a dry-run update is refused.
	c.waitFor("the webhook to refuse updates", time.Minute, func() (bool, string) {
		_, err := c.cs.AppsV1().Deployments(c.ns).Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"probe":"1"}}}`), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil, fmt.Sprint(err)
	})
	return removeHook
}

// Priority groups are restored in order, each after the one before is back: a
// workload of an earlier group that cannot be restored (a transient error)
// leaves the later groups at 0, recorded, for the retry.
func TestClusterRestoreStopsAtAGroupThatFailed(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("blocked", 1, appOpts{labels: map[string]string{"refuse-updates": "yes"}})
	c.deployment("after", 1, appOpts{annotations: map[string]string{AnnotationPriority: "10"}})
	c.waitRunning("app=blocked", 1, 3*time.Minute)
	c.waitRunning("app=after", 1, 3*time.Minute)
	c.mustRun(0, ScaleDownSpec(), "", "--workload", "deploy/blocked,deploy/after")
	removeHook := c.refuseUpdates("blocked")

	c.mustRun(75, ScaleRestoreSpec(), "", "--workload", "deploy/blocked,deploy/after", "--wait-ready", "--ready-timeout", "1m", "--timeout", "10s")
	if d := c.getDeployment("after"); *d.Spec.Replicas != 0 || d.Annotations[AnnotationReplicas] != "1" {
		t.Fatalf("after: restored before the group before it: replicas %d, %v", *d.Spec.Replicas, d.Annotations)
	}

	removeHook()
	c.mustRun(0, ScaleRestoreSpec(), "", "--workload", "deploy/blocked,deploy/after", "--wait-ready", "--ready-timeout", "2m")
	for _, name := range []string{"blocked", "after"} {
		if d := c.getDeployment(name); *d.Spec.Replicas != 1 || d.Status.ReadyReplicas != 1 {
			t.Fatalf("%s: replicas %d, ready %d", name, *d.Spec.Replicas, d.Status.ReadyReplicas)
		}
	}
}

// After argo stop, Argo marks the running scale-down failed and runs the exit
// handler at once, but signals the step's pod only by an exec that may never
// arrive (in a local CI run on db14c88 a stopped scale-down ran on for its
// whole 10-minute timeout). The exit handler's restore then puts back what this
// run stopped while scale-down still waits. Here the first priority group is a
// CronJob whose Job keeps scale-down waiting; this run's restore comes in that
// wait, then the Job ends. Before, scale-down went on and stopped the
// Deployment of the next group, recorded for a run that had ended: nothing
// would ever restore it. Now it stops nothing more and fails (exit 1), naming
// the workload it no longer holds.
func TestClusterRestoreDuringScaleDownStopsNoMore(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	ctx := context.Background()
	part := map[string]string{"part-of": "zombie"}
	job := c.heldCronJob("batch", part, map[string]string{AnnotationPriority: "10"})
	c.deployment("web", 1, appOpts{labels: part})

	done := make(chan stepRun, 1)
	go func() {
		done <- c.run(ScaleDownSpec(), "", "--selector", "part-of=zombie", "--run-uid", "run-a", "--database-secret", "app-db", "--timeout", "3m")
	}()
	c.waitFor("the CronJob suspended by run-a", time.Minute, func() (bool, string) {
		cur, err := c.cs.BatchV1().CronJobs(c.ns).Get(ctx, "batch", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return cur.Spec.Suspend != nil && *cur.Spec.Suspend && cur.Annotations[AnnotationByRunUID] == "run-a", fmt.Sprintf("suspend %v, annotations %v", cur.Spec.Suspend, cur.Annotations)
	})
	// The exit handler's restore, as the workflows run it.
	c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "part-of=zombie", "--only-run-uid", "run-a")
	if err := c.cs.BatchV1().Jobs(c.ns).Delete(ctx, job.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
		t.Fatal(err)
	}
	var r stepRun
	select {
	case r = <-done:
	case <-time.After(4 * time.Minute):
		t.Fatal("scale-down did not end within 4 minutes")
	}
	web := c.getDeployment("web")
	if *web.Spec.Replicas != 1 || web.Annotations[AnnotationReplicas] != "" {
		t.Errorf("web after the restore: replicas %d, annotations %v; want 1 and no record (scale-down went on after its run's restore)", *web.Spec.Replicas, web.Annotations)
	}
	if r.code != failure.CodePermanent || !strings.Contains(r.summary.Error, "cronjob/batch no longer held by this run") {
		t.Errorf("scale-down exited %d: %q; want %d naming cronjob/batch", r.code, r.summary.Error, failure.CodePermanent)
	}
}

// An attempt of scale-restore that restored the workloads and was lost while it
// waited for them to be ready (its pod deleted or its node gone: Tekton runs the
// step again in a new pod even without retries; Argo retries a 75): the rerun
// found no record and exited 0 at once, so the run Succeeded with the application
// not ready. With --wait-ready it now waits for the selection to be ready.
func TestClusterRestoreRerunStillWaitsForReadiness(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("lost", 1, appOpts{labels: map[string]string{"fault": "lost-pod"}})
	c.waitRunning("fault=lost-pod", 1, 3*time.Minute)
	c.mustRun(0, ScaleDownSpec(), "", "--selector", "fault=lost-pod", "--run-id", "wf-l", "--run-uid", "uid-l")
	probe := func(on bool) { c.neverReadyProbe("lost", on) }
	probe(true)
	// The lost attempt: it restored, and its wait never ended.
	first := c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "fault=lost-pod", "--only-run-uid", "uid-l")
	if w := first.workloads(t); len(w) != 1 {
		t.Fatalf("the first attempt restored %v", w)
	}
	again := c.run(ScaleRestoreSpec(), "", "--selector", "fault=lost-pod", "--only-run-uid", "uid-l", "--wait-ready", "--ready-timeout", "5s")
	if again.code != failure.CodePermanent || !strings.Contains(again.summary.Error, "not ready within --ready-timeout 5s: deployment/lost") {
		t.Fatalf("the rerun exited %d (%s), want %d: deployment/lost not ready\n%s", again.code, again.summary.Error, failure.CodePermanent, again.stderr)
	}
	probe(false)
	ok := c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "fault=lost-pod", "--only-run-uid", "uid-l", "--wait-ready", "--ready-timeout", "2m")
	if !strings.Contains(ok.stderr, "waiting for the selected workloads to be ready") {
		t.Errorf("the rerun did not say it waits for the selection:\n%s", ok.stderr)
	}
	if d := c.getDeployment("lost"); d.Status.ReadyReplicas != 1 {
		t.Errorf("exit 0 with %d ready", d.Status.ReadyReplicas)
	}
}

// A selector whose value was typed in another case matched nothing: scale-down
// exited 0, migrate ran under the running application, and the run Succeeded
// (an attack found it on the real Argo). It is refused now, naming the workload
// it was meant for, with nothing changed; a selector that matches nothing at all
// still passes (the first install creates the workloads after the run).
func TestClusterSelectorMatchingOnlyInAnotherCaseIsRefused(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("cased", 1, appOpts{labels: map[string]string{"app.kubernetes.io/name": "shop"}})
	c.waitRunning("app.kubernetes.io/name=shop", 1, 3*time.Minute)
	for _, sel := range []string{"app.kubernetes.io/name=SHOP", "app.kubernetes.io/Name in (Shop,other)"} {
		r := c.run(ScaleDownSpec(), "", "--selector", sel)
		if r.code != failure.CodeUsage || !strings.Contains(r.summary.Error, "deployment/cased would match it but for the case of its labels") {
			t.Errorf("%s: exit %d (%s), want %d naming deployment/cased", sel, r.code, r.summary.Error, failure.CodeUsage)
		}
	}
	d := c.getDeployment("cased")
	if *d.Spec.Replicas != 1 {
		t.Fatalf("scaled to %d", *d.Spec.Replicas)
	}
	for _, a := range recordAnnotations {
		if _, ok := d.Annotations[a]; ok {
			t.Fatalf("recorded: %v", d.Annotations)
		}
	}
	r := c.mustRun(0, ScaleDownSpec(), "", "--selector", "app.kubernetes.io/name=nothere")
	if !strings.Contains(r.stderr, "no workload matched") {
		t.Errorf("a selector matching nothing at all:\n%s", r.stderr)
	}
}

// A rerun after an attempt that restored a group and then failed in its
// readiness wait (exit 1, a retried task; or its pod deleted: 75) found only the
// later group's records, restored them at once and exited 0 with the first
// group not ready (an attack on the real Tekton and Argo found it). The rerun
// now first waits for the selected workloads the lost attempt restored.
func TestClusterRestoreRerunWaitsBeforeLaterGroups(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("first", 1, appOpts{labels: map[string]string{"fault": "groups"}})
	c.deployment("later", 1, appOpts{labels: map[string]string{"fault": "groups"}, annotations: map[string]string{"chartreuse.io/stop-priority": "10"}})
	c.waitRunning("fault=groups", 2, 3*time.Minute)
	c.mustRun(0, ScaleDownSpec(), "", "--selector", "fault=groups", "--run-id", "wf-g", "--run-uid", "uid-g")
	probe := func(on bool) { c.neverReadyProbe("first", on) }
	probe(true)
	restore := func(timeout string) stepRun {
		return c.run(ScaleRestoreSpec(), "", "--selector", "fault=groups", "--only-run-uid", "uid-g", "--wait-ready", "--ready-timeout", timeout)
	}
	first := restore("3s")
	if first.code != failure.CodePermanent || c.getDeployment("later").Spec.Replicas == nil || *c.getDeployment("later").Spec.Replicas != 0 {
		t.Fatalf("the first attempt exited %d (%s), want 1 with deployment/later left at 0", first.code, first.summary.Error)
	}
	again := restore("3s")
	if again.code != failure.CodePermanent || !strings.Contains(again.summary.Error, "deployment/first") {
		t.Errorf("the rerun exited %d (%s), want 1 naming deployment/first\n%s", again.code, again.summary.Error, again.stderr)
	}
	if r := *c.getDeployment("later").Spec.Replicas; r != 0 {
		t.Errorf("the rerun restored deployment/later (replicas %d) before deployment/first was ready", r)
	}
	probe(false)
	ok := restore("2m")
	if ok.code != 0 {
		t.Fatalf("once ready: exit %d (%s)", ok.code, ok.summary.Error)
	}
	if d := c.getDeployment("first"); d.Status.ReadyReplicas != 1 {
		t.Errorf("exit 0 with deployment/first %d ready", d.Status.ReadyReplicas)
	}
	if r := *c.getDeployment("later").Spec.Replicas; r != 1 {
		t.Errorf("deployment/later not restored: replicas %d", r)
	}
}

// neverReadyProbe gives the Deployment name a readiness probe on a port nothing
// listens on (on), or takes it off.
func (c *cluster) neverReadyProbe(name string, on bool) {
	c.t.Helper()
	p := `{"spec":{"template":{"spec":{"containers":[{"name":"app","readinessProbe":{"httpGet":{"path":"/readyz","port":8081},"periodSeconds":1}}]}}}}`
	if !on {
		p = `{"spec":{"template":{"spec":{"containers":[{"name":"app","readinessProbe":null}]}}}}`
	}
	if _, err := c.cs.AppsV1().Deployments(c.ns).Patch(context.Background(), name, types.StrategicMergePatchType, []byte(p), metav1.PatchOptions{}); err != nil {
		c.t.Fatal(err)
	}
}
