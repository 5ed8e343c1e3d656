package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
)

// Many Deployments with pods running on the node, stopped side by side: all are
// recorded and scaled down, and every pod is gone when
// scale-down returns; restore brings back exactly the recorded counts and waits
// until they are ready. 20, not 50 as before: 60 pods started, stopped and
// started again cost the CI node minutes beside e2e, and make bench measures
// 200 (bench/README.md).
func TestClusterManyDeployments(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	want := map[string]int32{}
	total := 0
	const count = 20
	for i := 0; i < count; i++ {
		name := fmt.Sprintf("many-%02d", i)
		n := int32(1)
		if i%5 == 0 {
			n = 2
		}
		want[name] = n
		total += int(n)
		c.deployment(name, n, appOpts{labels: map[string]string{"batch": "many"}})
	}
	start := time.Now()
	c.waitRunning("batch=many", total, 8*time.Minute)
	t.Logf("%d pods of %d Deployments running in %s", total, count, time.Since(start).Round(time.Second))

	down := c.mustRun(0, ScaleDownSpec(), "", "--selector", "batch=many")
	if left := c.livePods("batch=many"); len(left) > 0 {
		t.Fatalf("scale-down returned with %d pods left: %v", len(left), left)
	}
	if down.results[ResultScaled] != strconv.Itoa(count) || len(down.workloads(t)) != count {
		t.Fatalf("results %v", down.results)
	}
	for name, n := range want {
		d := c.getDeployment(name)
		if *d.Spec.Replicas != 0 || d.Annotations[AnnotationReplicas] != strconv.Itoa(int(n)) || d.Annotations[AnnotationBy] != "wf-"+c.ns {
			t.Fatalf("%s: replicas %d annotations %v", name, *d.Spec.Replicas, d.Annotations)
		}
	}
	if ev := c.eventsFor(ReasonScaledDown); len(ev) != count {
		t.Fatalf("scale-down events on %d workloads, want %d", len(ev), count)
	}

	up := c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "batch=many", "--wait-ready")
	if up.results[ResultRestored] != strconv.Itoa(count) {
		t.Fatalf("results %v", up.results)
	}
	for name, n := range want {
		d := c.getDeployment(name)
		if *d.Spec.Replicas != n || d.Status.ReadyReplicas != n {
			t.Fatalf("%s: replicas %d ready %d, want %d", name, *d.Spec.Replicas, d.Status.ReadyReplicas, n)
		}
		for _, a := range recordAnnotations {
			if _, ok := d.Annotations[a]; ok {
				t.Fatalf("%s keeps %s", name, a)
			}
		}
	}
	if ev := c.eventsFor(ReasonRestored); len(ev) != count {
		t.Fatalf("restore events on %d workloads, want %d", len(ev), count)
	}
	t.Logf("TIMING %d Deployments (%d pods): scale-down (pods gone) %s, scale-restore --wait-ready %s",
		count, total, down.took.Round(time.Millisecond), up.took.Round(time.Millisecond))
}

// Pods that take their time to stop (termination grace period, slow shutdown) are
// waited for, with progress lines.
func TestClusterWaitsForGracePeriod(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("slow", 2, appOpts{shutdownDelay: 7 * time.Second, grace: 30})
	c.waitRunning("app=slow", 2, 3*time.Minute)
	r := c.mustRun(0, ScaleDownSpec(), "", "--workload", "deploy/slow")
	if r.took < 6*time.Second {
		t.Fatalf("returned after %s, before the pods' 7s shutdown", r.took)
	}
	if left := c.livePods("app=slow"); len(left) > 0 {
		t.Fatalf("pods left: %v", left)
	}
	if !strings.Contains(r.stderr, "still waiting for the pods") || !strings.Contains(r.stderr, "Terminating") {
		t.Errorf("no progress line naming the terminating pods:\n%s", r.stderr)
	}
}

// Scale-down twice keeps the first record; restore gives the original counts, and
// a second restore has nothing to do.
func TestClusterScaleDownTwiceThenRestore(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("a", 3, appOpts{labels: map[string]string{"tier": "x"}})
	c.deployment("b", 2, appOpts{labels: map[string]string{"tier": "x"}})
	c.waitRunning("tier=x", 5, 3*time.Minute)
	first := c.mustRun(0, ScaleDownSpec(), "", "--selector", "tier=x")
	second := c.mustRun(0, ScaleDownSpec(), "", "--selector", "tier=x", "--run-id", "again")
	if a, b := first.results[ResultWorkloads], second.results[ResultWorkloads]; a != `["deployment/a=3","deployment/b=2"]` || a != b {
		t.Fatalf("workloads: first %s second %s", a, b)
	}
	if by := c.getDeployment("a").Annotations[AnnotationBy]; by != "wf-"+c.ns {
		t.Fatalf("second run overwrote the record's author: %s", by)
	}
	// The downtime counts from the first workload stopped: a's and b's records
	// may differ by a patch's round trip (0.3 s once on the loaded CI node).
	var stopped time.Time
	for _, name := range []string{"a", "b"} {
		at, err := time.Parse(time.RFC3339, c.getDeployment(name).Annotations[AnnotationAt])
		if err != nil {
			t.Fatal(err)
		}
		if stopped.IsZero() || at.Before(stopped) {
			stopped = at
		}
	}
	before := time.Now()
	r := c.mustRun(0, ScaleRestoreSpec(), "", "--wait-ready")
	after := time.Now()
	if r.results[ResultWorkloads] != `["deployment/a=3","deployment/b=2"]` || r.results[ResultWorkloadsStopped] != "false" {
		t.Fatalf("restore results %v", r.results)
	}
	// The downtime runs from the recorded stop to the restore's end, which came
	// after before and before after (the result is rounded to a tenth).
	down, err := strconv.ParseFloat(r.results[ResultDowntime], 64)
	if err != nil || down < before.Sub(stopped).Seconds()-0.05 || down > after.Sub(stopped).Seconds()+0.05 {
		t.Fatalf("downtime-seconds %q (%v), want between %.1f and %.1f", r.results[ResultDowntime], err, before.Sub(stopped).Seconds(), after.Sub(stopped).Seconds())
	}
	if a, b := *c.getDeployment("a").Spec.Replicas, *c.getDeployment("b").Spec.Replicas; a != 3 || b != 2 {
		t.Fatalf("restored a=%d b=%d", a, b)
	}
	again := c.mustRun(0, ScaleRestoreSpec(), "")
	if again.results[ResultRestored] != "0" || again.results[ResultDowntime] != "" || !strings.Contains(again.stderr, "nothing to restore") {
		t.Fatalf("second restore: %v\n%s", again.results, again.stderr)
	}
}

// A deploy that changes replicas while the workload is down wins over the record.
func TestClusterRestoreKeepsANewDeploy(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("web", 3, appOpts{})
	c.waitRunning("app=web", 3, 3*time.Minute)
	c.mustRun(0, ScaleDownSpec(), "", "--workload", "deployment/web")
	// The new version is deployed with 4 replicas while the migration runs.
	d := c.getDeployment("web")
	d.Spec.Replicas = ptr.To(int32(4))
	d.Spec.Template.Spec.Containers[0].Env = append(d.Spec.Template.Spec.Containers[0].Env, corev1.EnvVar{Name: "VERSION", Value: "2"})
	if _, err := c.cs.AppsV1().Deployments(c.ns).Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := c.mustRun(0, ScaleRestoreSpec(), "", "--workload", "deployment/web", "--wait-ready")
	// The deploy brought it back, not the restore: no downtime of its own to tell.
	if r.results[ResultWorkloads] != `["deployment/web=4"]` || r.results[ResultDowntime] != "" || !strings.Contains(r.stderr, "replicas changed since scale-down") {
		t.Fatalf("results %v\n%s", r.results, r.stderr)
	}
	d = c.getDeployment("web")
	if *d.Spec.Replicas != 4 || d.Status.ReadyReplicas != 4 {
		t.Fatalf("replicas %d ready %d", *d.Spec.Replicas, d.Status.ReadyReplicas)
	}
	if _, ok := d.Annotations[AnnotationReplicas]; ok {
		t.Fatal("record not removed")
	}
}

// StatefulSets are scaled like Deployments; CronJobs are suspended (their
// running Job's pod is waited for), remembering whether they were suspended.
func TestClusterStatefulSetAndCronJob(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	ctx := context.Background()
	labels := map[string]string{"part-of": "jobs"}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(int32(2)), ServiceName: "db", PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: c.podTemplate("db", appOpts{shutdownDelay: 2 * time.Second}),
		},
	}
	if _, err := c.cs.AppsV1().StatefulSets(c.ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	jobPod := c.podTemplate("report", appOpts{})
	jobPod.Spec.RestartPolicy = corev1.RestartPolicyNever
	cronjob := func(name, schedule string, suspend bool) *batchv1.CronJob {
		return &batchv1.CronJob{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: batchv1.CronJobSpec{
				Schedule: schedule, Suspend: ptr.To(suspend), ConcurrencyPolicy: batchv1.ForbidConcurrent,
				JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
					// The job's pod would run until SIGTERM; the deadline ends it.
					// 25 s was too short on a loaded CI node: the deadline
					// ended the Jobs before their pods ran (ci33b).
					ActiveDeadlineSeconds: ptr.To(int64(60)), BackoffLimit: ptr.To(int32(0)), Template: jobPod,
				}},
			},
		}
	}
	for _, cj := range []*batchv1.CronJob{cronjob("report", "* * * * *", false), cronjob("paused", "0 0 1 1 *", true)} {
		if _, err := c.cs.BatchV1().CronJobs(c.ns).Create(ctx, cj, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c.waitRunning("app=db", 2, 3*time.Minute)
	// Wait for the every-minute schedule to start a Job whose pod runs.
	c.waitFor("a running job of cronjob/report", 4*time.Minute, func() (bool, string) {
		cj, err := c.cs.BatchV1().CronJobs(c.ns).Get(ctx, "report", metav1.GetOptions{})
		if err != nil || len(cj.Status.Active) == 0 {
			return false, "no active job"
		}
		return len(c.livePods("app=report")) > 0 && c.runningPods("app=report") > 0, "job pod not running"
	})

	r := c.mustRun(0, ScaleDownSpec(), "", "--selector", "part-of=jobs")
	if got := r.results[ResultWorkloads]; got != `["cronjob/paused=suspended","cronjob/report=active","statefulset/db=2"]` {
		t.Fatalf("workloads %s", got)
	}
	if left := c.livePods("app=report"); len(left) > 0 {
		t.Fatalf("returned with the job's pod still there: %v", left)
	}
	if left := c.livePods("app=db"); len(left) > 0 {
		t.Fatalf("returned with statefulset pods: %v", left)
	}
	got, _ := c.cs.AppsV1().StatefulSets(c.ns).Get(ctx, "db", metav1.GetOptions{})
	if *got.Spec.Replicas != 0 || got.Annotations[AnnotationReplicas] != "2" {
		t.Fatalf("statefulset %d %v", *got.Spec.Replicas, got.Annotations)
	}
	for name, before := range map[string]string{"report": "false", "paused": "true"} {
		cj, _ := c.cs.BatchV1().CronJobs(c.ns).Get(ctx, name, metav1.GetOptions{})
		if !*cj.Spec.Suspend || cj.Annotations[AnnotationSuspended] != before {
			t.Fatalf("cronjob %s: suspend %v annotations %v", name, *cj.Spec.Suspend, cj.Annotations)
		}
	}

	r = c.mustRun(0, ScaleRestoreSpec(), "", "--wait-ready")
	if got := r.results[ResultWorkloads]; got != `["cronjob/paused=suspended","cronjob/report=active","statefulset/db=2"]` {
		t.Fatalf("restore workloads %s", got)
	}
	got, _ = c.cs.AppsV1().StatefulSets(c.ns).Get(ctx, "db", metav1.GetOptions{})
	if *got.Spec.Replicas != 2 || got.Status.ReadyReplicas != 2 || got.Annotations[AnnotationReplicas] != "" {
		t.Fatalf("statefulset after restore: %d ready %d %v", *got.Spec.Replicas, got.Status.ReadyReplicas, got.Annotations)
	}
	for name, suspended := range map[string]bool{"report": false, "paused": true} {
		cj, _ := c.cs.BatchV1().CronJobs(c.ns).Get(ctx, name, metav1.GetOptions{})
		if *cj.Spec.Suspend != suspended || cj.Annotations[AnnotationSuspended] != "" {
			t.Fatalf("cronjob %s after restore: suspend %v annotations %v", name, *cj.Spec.Suspend, cj.Annotations)
		}
	}
}

// A Job of a CronJob that has no pod (here: a suspended Job, as a queueing
// system would create it) is still waited for: nothing stops it from starting one.
func TestClusterCronJobJobWithoutPod(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	ctx := context.Background()
	job := c.heldCronJob("nightly", map[string]string{"part-of": "nightly"}, nil)
	r := c.mustRun(75, ScaleDownSpec(), "", "--selector", "part-of=nightly", "--timeout", "5s")
	if !strings.Contains(r.summary.Error, "job/nightly-manual (cronjob/nightly, suspended)") {
		t.Fatalf("error does not name the Job: %s", r.summary.Error)
	}
	if err := c.cs.BatchV1().Jobs(c.ns).Delete(ctx, job.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
		t.Fatal(err)
	}
	c.mustRun(0, ScaleDownSpec(), "", "--selector", "part-of=nightly", "--timeout", "1m")
}

func (c *cluster) runningPods(selector string) int {
	l, err := c.cs.CoreV1().Pods(c.ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return 0
	}
	n := 0
	for _, p := range l.Items {
		if p.Status.Phase == corev1.PodRunning {
			n++
		}
	}
	return n
}

// Higher stop-priority stops first and its pods are gone before the next group is
// touched; restore goes the other way and, with --wait-ready, waits for each group.
// The order is read from etcd revisions (resourceVersions) of one watch stream.
func TestClusterPriorityOrder(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	prio := map[string]string{"high": "10", "mid": "5", "low": ""}
	for name, p := range prio {
		ann := map[string]string{}
		if p != "" {
			ann[AnnotationPriority] = p
		}
		c.deployment(name, 1, appOpts{labels: map[string]string{"group": "prio"}, annotations: ann, shutdownDelay: 3 * time.Second})
	}
	c.waitRunning("group=prio", 3, 3*time.Minute)

	rec := c.recordRevisions()
	c.mustRun(0, ScaleDownSpec(), "", "--selector", "group=prio")
	c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "group=prio", "--wait-ready")
	ev := rec.stop()

	// scale-down: scaled(high) < gone(high) < scaled(mid) < gone(mid) < scaled(low)
	order := []string{"scaled high", "gone high", "scaled mid", "gone mid", "scaled low"}
	for i := 1; i < len(order); i++ {
		if ev[order[i-1]] == 0 || ev[order[i]] == 0 || ev[order[i-1]] >= ev[order[i]] {
			t.Fatalf("scale-down order broken at %q < %q: %v", order[i-1], order[i], ev)
		}
	}
	// restore: restored(low) < ready(low) < restored(mid) < ready(mid) < restored(high)
	order = []string{"restored low", "ready low", "restored mid", "ready mid", "restored high"}
	for i := 1; i < len(order); i++ {
		if ev[order[i-1]] == 0 || ev[order[i]] == 0 || ev[order[i-1]] >= ev[order[i]] {
			t.Fatalf("restore order broken at %q < %q: %v", order[i-1], order[i], ev)
		}
	}
}

type revisionRecorder struct {
	mu     sync.Mutex
	events map[string]int64
	cancel context.CancelFunc
	done   chan struct{}
}

// recordRevisions watches the namespace's Deployments (spec.replicas and ready
// replicas) and pods, noting the first etcd revision of each step of interest.
func (c *cluster) recordRevisions() *revisionRecorder {
	ctx, cancel := context.WithCancel(context.Background())
	r := &revisionRecorder{events: map[string]int64{}, cancel: cancel, done: make(chan struct{})}
	note := func(key string, rv string) {
		n, _ := strconv.ParseInt(rv, 10, 64)
		r.mu.Lock()
		if _, ok := r.events[key]; !ok {
			r.events[key] = n
		}
		r.mu.Unlock()
	}
	dw, err := c.cs.AppsV1().Deployments(c.ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	pw, err := c.cs.CoreV1().Pods(c.ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		down := map[string]bool{}
		for e := range dw.ResultChan() {
			d, ok := e.Object.(*appsv1.Deployment)
			if !ok {
				continue
			}
			if *d.Spec.Replicas == 0 {
				down[d.Name] = true
				note("scaled "+d.Name, d.ResourceVersion)
			} else if down[d.Name] {
				note("restored "+d.Name, d.ResourceVersion)
				if d.Status.ReadyReplicas == *d.Spec.Replicas && d.Status.ObservedGeneration >= d.Generation {
					note("ready "+d.Name, d.ResourceVersion)
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		live := map[string]map[string]bool{}
		for e := range pw.ResultChan() {
			p, ok := e.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			app := p.Labels["app"]
			if live[app] == nil {
				live[app] = map[string]bool{}
			}
			if e.Type == watch.Deleted || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				delete(live[app], p.Name)
				if len(live[app]) == 0 {
					note("gone "+app, p.ResourceVersion)
				}
			} else {
				live[app][p.Name] = true
			}
		}
	}()
	go func() { wg.Wait(); close(r.done) }()
	// Seed the live pods (the watch without resourceVersion starts with ADDED events).
	return r
}

func (r *revisionRecorder) stop() map[string]int64 {
	time.Sleep(time.Second) // let the last events arrive
	r.cancel()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.events
}

// The real kube-controller-manager leaves a Deployment at 0 replicas alone (HPA
// "ScalingDisabled"); restore brings back the count the HPA had chosen, the HPA is
// neither renamed nor edited, and it works on the Deployment again afterwards.
func TestClusterHPA(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	ctx := context.Background()
	c.deployment("web", 1, appOpts{})
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    ptr.To(int32(2)), MaxReplicas: 4,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To(int32(80))},
			}}},
		},
	}
	hpa, err := c.cs.AutoscalingV2().HorizontalPodAutoscalers(c.ns).Create(ctx, hpa, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The HPA controller raises the Deployment to its minimum: the count to keep
	// is the HPA's choice, not the 1 the Deployment declares.
	c.waitFor("the HPA to scale web to 2", 90*time.Second, func() (bool, string) {
		r := *c.getDeployment("web").Spec.Replicas
		return r == 2, fmt.Sprintf("replicas %d", r)
	})
	c.waitRunning("app=web", 2, 2*time.Minute)

	r := c.mustRun(0, ScaleDownSpec(), "", "--workload", "deployment/web")
	if r.results[ResultWorkloads] != `["deployment/web=2"]` {
		t.Fatalf("workloads %s", r.results[ResultWorkloads])
	}
	hpaCondition := func() (string, string) {
		h, err := c.cs.AutoscalingV2().HorizontalPodAutoscalers(c.ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cond := range h.Status.Conditions {
			if cond.Type == autoscalingv2.ScalingActive {
				return string(cond.Status), cond.Reason
			}
		}
		return "", ""
	}
	c.waitFor("the HPA to see the target at 0", 90*time.Second, func() (bool, string) {
		s, reason := hpaCondition()
		return s == "False" && reason == "ScalingDisabled", s + " " + reason
	})
	// It leaves the Deployment at 0 through more of its syncs (every 15 s).
	time.Sleep(20 * time.Second)
	if n := *c.getDeployment("web").Spec.Replicas; n != 0 {
		t.Fatalf("the HPA scaled the stopped Deployment to %d", n)
	}

	c.mustRun(0, ScaleRestoreSpec(), "", "--wait-ready")
	if n := *c.getDeployment("web").Spec.Replicas; n != 2 {
		t.Fatalf("restored to %d, want the HPA's 2", n)
	}
	c.waitFor("the HPA to work on web again", 90*time.Second, func() (bool, string) {
		s, reason := hpaCondition()
		return reason != "" && reason != "ScalingDisabled", s + " " + reason
	})
	after, err := c.cs.AutoscalingV2().HorizontalPodAutoscalers(c.ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("HPA gone or renamed: %v", err)
	}
	b1, _ := json.Marshal(hpa.Spec)
	b2, _ := json.Marshal(after.Spec)
	if string(b1) != string(b2) || after.Generation != hpa.Generation {
		t.Fatalf("HPA spec changed:\n%s\n%s", b1, b2)
	}
	for _, mf := range after.ManagedFields {
		if mf.Manager == fieldManager {
			t.Fatalf("chartreuse wrote to the HPA: %+v", mf)
		}
	}
}

// A ServiceAccount bound to exactly rbac/role.yaml can do everything; without
// "patch" the steps exit 1 naming the missing permission, and change nothing.
func TestClusterRBAC(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	ctx := context.Background()
	labels := map[string]string{"part-of": "rbac"}
	c.deployment("web", 2, appOpts{labels: labels})
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(int32(1)), ServiceName: "db",
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: c.podTemplate("db", appOpts{}),
		},
	}
	if _, err := c.cs.AppsV1().StatefulSets(c.ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "report", Labels: labels},
		Spec: batchv1.CronJobSpec{Schedule: "0 0 1 1 *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Template: func() corev1.PodTemplateSpec {
				p := c.podTemplate("report", appOpts{})
				p.Spec.RestartPolicy = corev1.RestartPolicyNever
				return p
			}(),
		}}},
	}
	if _, err := c.cs.BatchV1().CronJobs(c.ns).Create(ctx, cj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitRunning("app in (web,db)", 3, 3*time.Minute)

	full := c.serviceAccountKubeconfig("migrator", scaleRole(t))
	noPatch := c.serviceAccountKubeconfig("readonly", scaleRole(t, "patch"))
	ours := func(ann map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range ann {
			if strings.HasPrefix(k, "chartreuse.io/") {
				out[k] = v
			}
		}
		return out
	}
	snapshot := func() string {
		d := c.getDeployment("web")
		s, _ := c.cs.AppsV1().StatefulSets(c.ns).Get(ctx, "db", metav1.GetOptions{})
		j, _ := c.cs.BatchV1().CronJobs(c.ns).Get(ctx, "report", metav1.GetOptions{})
		return fmt.Sprintf("web=%d %v db=%d %v report=%v %v", *d.Spec.Replicas, ours(d.Annotations), *s.Spec.Replicas, ours(s.Annotations), *j.Spec.Suspend, ours(j.Annotations))
	}

	t.Run("without patch scale-down changes nothing", func(t *testing.T) {
		before := snapshot()
		r := c.mustRun(1, ScaleDownSpec(), noPatch, "--selector", "part-of=rbac")
		for _, m := range []string{"permission denied", "patch deployments.apps", "patch statefulsets.apps", "patch cronjobs.batch"} {
			if !strings.Contains(r.summary.Error, m) {
				t.Errorf("error does not name %q: %s", m, r.summary.Error)
			}
		}
		if after := snapshot(); after != before {
			t.Fatalf("changed:\n%s\n%s", before, after)
		}
	})
	t.Run("exactly the Role does everything", func(t *testing.T) {
		r := c.mustRun(0, ScaleDownSpec(), full, "--selector", "part-of=rbac")
		if r.results[ResultWorkloads] != `["cronjob/report=active","deployment/web=2","statefulset/db=1"]` {
			t.Fatalf("workloads %s", r.results[ResultWorkloads])
		}
		if left := c.livePods("app in (web,db)"); len(left) > 0 {
			t.Fatalf("pods left %v", left)
		}
		if strings.Contains(r.stderr, "could not record an Event") {
			t.Errorf("events not allowed:\n%s", r.stderr)
		}
	})
	t.Run("without patch scale-restore changes nothing", func(t *testing.T) {
		before := snapshot()
		r := c.mustRun(1, ScaleRestoreSpec(), noPatch)
		if !strings.Contains(r.summary.Error, "patch deployments.apps") {
			t.Errorf("error does not name the permission: %s", r.summary.Error)
		}
		// the workflows' mark that the run put its workloads back: not after a failure
		if v, ok := r.results[ResultWorkloadsStopped]; ok {
			t.Errorf("a failed restore wrote %s=%q", ResultWorkloadsStopped, v)
		}
		if after := snapshot(); after != before {
			t.Fatalf("changed:\n%s\n%s", before, after)
		}
	})
	t.Run("exactly the Role restores", func(t *testing.T) {
		c.mustRun(0, ScaleRestoreSpec(), full, "--wait-ready")
		if s := snapshot(); s != "web=2 map[] db=1 map[] report=false map[]" {
			t.Fatalf("after restore: %s", s)
		}
	})
	t.Run("a forbidden API call is exit 1 naming verb and resource", func(t *testing.T) {
		// Without the advance check, the API's own 403 is classified.
		r := c.run(ScaleDownSpec(), noPatch, "--workload", "deploy/web") // advance check: exit 1
		if r.code != 1 {
			t.Fatalf("exit %d", r.code)
		}
		d := &Downer{Client: kubeClient(t, noPatch), Namespace: c.ns, RunID: "x", Timeout: time.Minute, ProgressEvery: time.Second,
			Clock: realClock(), Log: discardLogger()}
		_, err := d.Run(ctx, Selection{Refs: []Ref{{Deployment, "web"}}})
		if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `grant verb "patch" on "deployments.apps"`) {
			t.Fatalf("err %v", err)
		}
		if s := snapshot(); s != "web=2 map[] db=1 map[] report=false map[]" {
			t.Fatalf("changed: %s", s)
		}
	})
}

// Nothing matched is exit 0 and says so; a named workload that does not exist is exit 1.
func TestClusterNothingMatched(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	r := c.mustRun(0, ScaleDownSpec(), "", "--selector", "app=none")
	if r.results[ResultScaled] != "0" || r.results[ResultWorkloads] != "[]" || !strings.Contains(r.stderr, "no workload matched") {
		t.Fatalf("%v\n%s", r.results, r.stderr)
	}
	r = c.mustRun(1, ScaleDownSpec(), "", "--workload", "deploy/none")
	if !strings.Contains(r.summary.Error, "deployment/none not found") {
		t.Fatalf("%s", r.summary.Error)
	}
	c.mustRun(0, ScaleRestoreSpec(), "")
}

// resourceVersion preconditions on the workload patches really are enforced by the
// API server (409), which is what makes "the record holds the replicas the workload
// had" and "keep a newer value" safe against concurrent writers.
func TestClusterPreconditions(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	ctx := context.Background()
	d := c.deployment("idle", 0, appOpts{})
	stale := d.ResourceVersion
	// A patch without a resourceVersion: an Update here raced the deployment
	// controller's first status write (409) on a loaded machine.
	if _, err := c.cs.AppsV1().Deployments(c.ns).Patch(ctx, "idle", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"touched":"yes"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	p := patcher{cs: c.cs, ns: c.ns}
	scale := func(n int32, rv string) error {
		_, err := p.object(ctx, Ref{Deployment, "idle"}, map[string]any{"metadata": map[string]any{"resourceVersion": rv}, "spec": map[string]any{"replicas": n}})
		return err
	}
	err := scale(1, stale)
	if !apierrors.IsConflict(err) {
		t.Fatalf("scale with a stale resourceVersion: %v", err)
	}
	_, err = p.object(ctx, Ref{Deployment, "idle"}, map[string]any{"metadata": map[string]any{"resourceVersion": stale, "annotations": map[string]any{AnnotationReplicas: "0"}}})
	if !apierrors.IsConflict(err) {
		t.Fatalf("record with a stale resourceVersion: %v", err)
	}
	if d := c.getDeployment("idle"); *d.Spec.Replicas != 0 || d.Annotations[AnnotationReplicas] != "" {
		t.Fatalf("changed: %d %v", *d.Spec.Replicas, d.Annotations)
	}
	// The deployment controller may write the status between the read and the
	// patch (a new resourceVersion): a fresh read must then succeed.
	for attempt := 1; ; attempt++ {
		err := scale(0, c.getDeployment("idle").ResourceVersion)
		if err == nil {
			break
		}
		if !apierrors.IsConflict(err) || attempt == 5 {
			t.Fatalf("scale with the current resourceVersion (attempt %d): %v", attempt, err)
		}
	}
}

// The API server going away in the middle of scale-down: with the connection cut
// during the wait the step rides it out; cut for longer than --timeout it exits 75,
// and a rerun converges, keeping the first run's record. An unreachable server from
// the start is exit 75 too.
func TestClusterAPIServerOutage(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	target := strings.TrimPrefix(c.env.APIServerURL, "https://")

	t.Run("unreachable", func(t *testing.T) {
		p := newFlakyProxy(t, target)
		kc := p.kubeconfig(c)
		p.down()
		r := c.mustRun(75, ScaleDownSpec(), kc, "--selector", "x=y")
		if !strings.Contains(r.summary.Error, "unreachable") {
			t.Errorf("error: %s", r.summary.Error)
		}
	})

	setup := func(prefix string) {
		c.deployment(prefix+"-first", 2, appOpts{labels: map[string]string{"outage": prefix},
			annotations: map[string]string{AnnotationPriority: "10"}, shutdownDelay: 8 * time.Second})
		c.deployment(prefix+"-second", 2, appOpts{labels: map[string]string{"outage": prefix}})
		c.waitRunning("outage="+prefix, 4, 3*time.Minute)
	}
	// cut starts the outage once the first group is scaled to 0.
	cut := func(p *flakyProxy, name string, length time.Duration) chan struct{} {
		back := make(chan struct{})
		go func() {
			defer close(back)
			for i := 0; i < 600; i++ {
				d, err := c.cs.AppsV1().Deployments(c.ns).Get(context.Background(), name, metav1.GetOptions{})
				if err == nil && *d.Spec.Replicas == 0 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			p.down()
			t.Logf("API server cut off for %s", length)
			time.Sleep(length)
			p.up()
			t.Logf("API server reachable again")
		}()
		return back
	}

	t.Run("short outage during the wait", func(t *testing.T) {
		setup("short")
		p := newFlakyProxy(t, target)
		back := cut(p, "short-first", 5*time.Second)
		r := c.mustRun(0, ScaleDownSpec(), p.kubeconfig(c), "--selector", "outage=short", "--timeout", "2m")
		<-back
		if r.results[ResultWorkloads] != `["deployment/short-first=2","deployment/short-second=2"]` {
			t.Fatalf("workloads %s", r.results[ResultWorkloads])
		}
		if left := c.livePods("outage=short"); len(left) > 0 {
			t.Fatalf("pods left %v", left)
		}
	})

	t.Run("long outage then rerun", func(t *testing.T) {
		setup("long")
		p := newFlakyProxy(t, target)
		back := cut(p, "long-first", 25*time.Second)
		r := c.mustRun(75, ScaleDownSpec(), p.kubeconfig(c), "--selector", "outage=long", "--timeout", "15s")
		t.Logf("first run: %s", r.summary.Error)
		if r.took > 20*time.Second {
			t.Errorf("exit 75 came %s after the start, --timeout was 15s", r.took)
		}
		<-back
		if d := c.getDeployment("long-second"); *d.Spec.Replicas != 2 {
			t.Fatalf("second group touched before the first was stopped: %d", *d.Spec.Replicas)
		}
		r = c.mustRun(0, ScaleDownSpec(), p.kubeconfig(c), "--selector", "outage=long")
		if r.results[ResultWorkloads] != `["deployment/long-first=2","deployment/long-second=2"]` {
			t.Fatalf("rerun workloads %s", r.results[ResultWorkloads])
		}
		if left := c.livePods("outage=long"); len(left) > 0 {
			t.Fatalf("pods left %v", left)
		}
		c.mustRun(0, ScaleRestoreSpec(), p.kubeconfig(c), "--selector", "outage=long", "--wait-ready")
		for _, n := range []string{"long-first", "long-second"} {
			if d := c.getDeployment(n); *d.Spec.Replicas != 2 || d.Status.ReadyReplicas != 2 {
				t.Fatalf("%s: %d ready %d", n, *d.Spec.Replicas, d.Status.ReadyReplicas)
			}
		}
	})
}

// A StatefulSet whose controller deletes its pods' volumes when it scales down
// (persistentVolumeClaimRetentionPolicy.whenScaled: Delete) is refused before
// anything in the selection changes: scaled to 0, its PersistentVolumeClaims
// would be deleted, and the restore would bring its pods back on empty volumes.
func TestClusterStatefulSetDeletingVolumesRefused(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	ctx := context.Background()
	labels := map[string]string{"part-of": "vol"}
	c.deployment("web", 1, appOpts{labels: labels})
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(int32(1)), ServiceName: "data", PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "data"}},
			Template: c.podTemplate("data", appOpts{}),
			// No provisioner here: the claim stays Pending, which changes nothing
			// about whom the controller makes its owner on a scale-down.
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "store"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}},
				},
			}},
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
				WhenScaled: appsv1.DeletePersistentVolumeClaimRetentionPolicyType, WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
			},
		},
	}
	if _, err := c.cs.AppsV1().StatefulSets(c.ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the StatefulSet's claim", time.Minute, func() (bool, string) {
		_, err := c.cs.CoreV1().PersistentVolumeClaims(c.ns).Get(ctx, "store-data-0", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})

	r := c.mustRun(1, ScaleDownSpec(), "", "--selector", "part-of=vol")
	if !strings.Contains(r.summary.Error, "statefulset/data: persistentVolumeClaimRetentionPolicy.whenScaled is Delete") {
		t.Fatalf("error %q does not name the StatefulSet and its policy", r.summary.Error)
	}
	recorded := func(annotations map[string]string) bool {
		for k := range annotations {
			if strings.Contains(k, "chartreuse.io/") {
				return true
			}
		}
		return false
	}
	if d := c.getDeployment("web"); *d.Spec.Replicas != 1 || recorded(d.Annotations) {
		t.Errorf("deployment web changed: %d replicas, annotations %v", *d.Spec.Replicas, d.Annotations)
	}
	got, err := c.cs.AppsV1().StatefulSets(c.ns).Get(ctx, "data", metav1.GetOptions{})
	if err != nil || *got.Spec.Replicas != 1 || recorded(got.Annotations) {
		t.Errorf("statefulset data changed: %v %v", got.Spec.Replicas, got.Annotations)
	}
	pvc, err := c.cs.CoreV1().PersistentVolumeClaims(c.ns).Get(ctx, "store-data-0", metav1.GetOptions{})
	if err != nil || pvc.DeletionTimestamp != nil || len(pvc.OwnerReferences) != 0 {
		t.Errorf("the claim: %v, owners %v", err, pvc.OwnerReferences)
	}
}
