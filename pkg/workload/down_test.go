package workload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/clock"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

func TestScaleDownRecordsThenStops(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(
			deployment("web", 3, nil),
			statefulSet("cache", 2, nil),
			cronJob("report", false, nil),
			cronJob("cleanup", true, nil),
			deployment("other", 1, nil), // not selected
		)
		d, _ := newDowner(t, cs)
		out, err := d.Run(context.Background(), sel(t, "", "deploy/web", "sts/cache", "cj/report", "cronjob/cleanup"))
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(Strings(out), " ")
		want := "cronjob/cleanup=suspended cronjob/report=active deployment/web=3 statefulset/cache=2"
		if got != want {
			t.Fatalf("outcomes = %s, want %s", got, want)
		}
		web := getDeployment(t, cs, "web")
		if *web.Spec.Replicas != 0 || web.Annotations[AnnotationReplicas] != "3" || web.Annotations[AnnotationBy] != "wf-1" || web.Annotations[AnnotationAt] == "" {
			t.Fatalf("web: replicas %d annotations %v", *web.Spec.Replicas, web.Annotations)
		}
		if _, err := time.Parse(time.RFC3339, web.Annotations[AnnotationAt]); err != nil {
			t.Errorf("scaled-down-at: %v", err)
		}
		cache := getStatefulSet(t, cs, "cache")
		if *cache.Spec.Replicas != 0 || cache.Annotations[AnnotationReplicas] != "2" {
			t.Fatalf("cache: replicas %d annotations %v", *cache.Spec.Replicas, cache.Annotations)
		}
		report := getCronJob(t, cs, "report")
		if !*report.Spec.Suspend || report.Annotations[AnnotationSuspended] != "false" {
			t.Fatalf("report: suspend %v annotations %v", *report.Spec.Suspend, report.Annotations)
		}
		cleanup := getCronJob(t, cs, "cleanup")
		if !*cleanup.Spec.Suspend || cleanup.Annotations[AnnotationSuspended] != "true" {
			t.Fatalf("cleanup: suspend %v annotations %v", *cleanup.Spec.Suspend, cleanup.Annotations)
		}
		if other := getDeployment(t, cs, "other"); *other.Spec.Replicas != 1 || len(other.Annotations) != 0 {
			t.Fatalf("an unselected workload was touched: %+v", other)
		}
		// The record and the replicas change in one patch, valid only for the version read.
		var webPatches []string
		for _, a := range cs.Actions() {
			if pa, ok := a.(k8stesting.PatchAction); ok && pa.GetResource().Resource == "deployments" && pa.GetName() == "web" {
				webPatches = append(webPatches, pa.GetSubresource()+string(pa.GetPatch()))
			}
		}
		if len(webPatches) != 1 {
			t.Fatalf("web patched %d times, want once: %v", len(webPatches), webPatches)
		}
		for _, part := range []string{`"replicas":0`, `"` + AnnotationReplicas + `":"3"`, `"resourceVersion":`} {
			if !strings.Contains(webPatches[0], part) {
				t.Errorf("web's patch %s lacks %s", webPatches[0], part)
			}
		}
		evs := events(t, cs)
		if len(evs) != 4 {
			t.Fatalf("%d events, want one per changed workload (4): %+v", len(evs), evs)
		}
		for _, e := range evs {
			if e.Message != "scaled down for schema migration by wf-1" || e.Reason != ReasonScaledDown || e.InvolvedObject.Name == "" {
				t.Errorf("event %+v", e)
			}
		}
	})
}

func TestScaleDownBySelector(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		other := deployment("elsewhere", 2, nil)
		other.Labels = map[string]string{"part-of": "blog"}
		cs := newFake(deployment("web", 3, nil), cronJob("report", false, nil), other)
		d, _ := newDowner(t, cs)
		out, err := d.Run(context.Background(), sel(t, "part-of=shop"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(Strings(out), " "); got != "cronjob/report=active deployment/web=3" {
			t.Fatalf("outcomes %s", got)
		}
		if *getDeployment(t, cs, "elsewhere").Spec.Replicas != 2 {
			t.Fatal("unselected workload scaled")
		}
	})
}

func TestScaleDownTwiceKeepsTheRecord(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("web", 3, nil), cronJob("report", false, nil))
		d, _ := newDowner(t, cs)
		s := sel(t, "part-of=shop")
		if _, err := d.Run(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		cs.ClearActions()
		d.RunID = "wf-2"
		out, err := d.Run(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(Strings(out), " "); got != "cronjob/report=active deployment/web=3" {
			t.Fatalf("second run outcomes %s", got)
		}
		web := getDeployment(t, cs, "web")
		if web.Annotations[AnnotationReplicas] != "3" || web.Annotations[AnnotationBy] != "wf-1" {
			t.Fatalf("record overwritten: %v", web.Annotations)
		}
		if getCronJob(t, cs, "report").Annotations[AnnotationSuspended] != "false" {
			t.Fatal("cronjob record overwritten")
		}
		if p := patches(cs); len(p) != 0 {
			t.Fatalf("second run patched %v", p)
		}
	})
}

func TestScaleDownAfterPartialRunScalesWithTheExistingRecord(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		// A crash between writing the record and scaling leaves the record and the replicas.
		cs := newFake(deployment("web", 3, map[string]string{AnnotationReplicas: "3", AnnotationBy: "wf-0"}))
		d, _ := newDowner(t, cs)
		out, err := d.Run(context.Background(), sel(t, "", "deployment/web"))
		if err != nil {
			t.Fatal(err)
		}
		if web := getDeployment(t, cs, "web"); *web.Spec.Replicas != 0 || web.Annotations[AnnotationReplicas] != "3" || out[0].Value != "3" {
			t.Fatalf("web %d %v %v", *web.Spec.Replicas, web.Annotations, out)
		}
	})
}

func TestScaleDownWorkloadAlreadyAtZero(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		settled := deployment("idle", 0, nil)
		unseen := deployment("fresh", 0, nil) // its controller has not seen replicas 0 yet
		unseen.Generation, unseen.Status.ObservedGeneration, unseen.Status.Replicas = 2, 1, 1
		cs := newFake(settled, unseen)
		d, _ := newDowner(t, cs)
		d.Timeout = 300 * time.Millisecond
		out, err := d.Run(context.Background(), sel(t, "", "deployment/idle", "deployment/fresh"))
		// fresh: recorded, then waited for (the fake controller never catches up).
		if failure.Code(err) != 75 || !strings.Contains(err.Error(), "deployment/fresh (its controller") {
			t.Fatalf("err %v", err)
		}
		if got := strings.Join(Strings(out), " "); got != "deployment/fresh=0 deployment/idle=0" {
			t.Fatalf("outcomes %s", got)
		}
		if a := getDeployment(t, cs, "idle").Annotations; len(a) != 0 {
			t.Errorf("idle got annotations %v; a workload at 0 whose controller saw it is left as it is", a)
		}
		if getDeployment(t, cs, "fresh").Annotations[AnnotationReplicas] != "0" {
			t.Error("fresh not recorded")
		}
		if p := patches(cs); len(p) != 1 || p[0] != "deployments fresh" {
			t.Fatalf("patches %v, want only fresh's record", p)
		}
		if evs := events(t, cs); len(evs) != 1 {
			t.Errorf("%d events, want 1 (fresh)", len(evs))
		}
	})
}

func TestScaleDownNothingMatched(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("web", 3, nil))
		d, logs := newDowner(t, cs)
		out, err := d.Run(context.Background(), sel(t, "part-of=nothing"))
		if err != nil || len(out) != 0 {
			t.Fatalf("out %v err %v", out, err)
		}
		if !strings.Contains(logs.String(), "no workload matched") {
			t.Fatalf("does not say so: %s", logs)
		}
	})
}

func TestScaleDownMissingNamedWorkloadIsPermanent(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("web", 3, nil))
		d, _ := newDowner(t, cs)
		_, err := d.Run(context.Background(), sel(t, "", "deployment/web", "sts/gone"))
		if failure.Code(err) != 1 || !strings.Contains(err.Error(), "statefulset/gone not found") {
			t.Fatalf("err %v (code %d)", err, failure.Code(err))
		}
		if *getDeployment(t, cs, "web").Spec.Replicas != 3 {
			t.Fatal("changed a workload before failing")
		}
	})
}

func TestScaleDownBadPriorityIsPermanentAndChangesNothing(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("web", 3, map[string]string{AnnotationPriority: "high"}))
		d, _ := newDowner(t, cs)
		_, err := d.Run(context.Background(), sel(t, "", "deployment/web"))
		if failure.Code(err) != 1 || !strings.Contains(err.Error(), AnnotationPriority) {
			t.Fatalf("err %v", err)
		}
		if len(patches(cs)) != 0 {
			t.Fatal("patched")
		}
	})
}

func conflict(resource string) error {
	return apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: resource}, "web", errors.New("the object has been modified"))
}

func TestScaleDownRetriesConflicts(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("web", 3, nil))
		n := 0
		cs.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
			n++
			if n <= 2 { // the record patch and then the scale patch lose a race once each
				return true, nil, conflict("deployments")
			}
			return false, nil, nil
		})
		d, _ := newDowner(t, cs)
		if _, err := d.Run(context.Background(), sel(t, "", "deployment/web")); err != nil {
			t.Fatal(err)
		}
		if web := getDeployment(t, cs, "web"); *web.Spec.Replicas != 0 || web.Annotations[AnnotationReplicas] != "3" {
			t.Fatalf("%d %v", *web.Spec.Replicas, web.Annotations)
		}
	})
}

func TestScaleDownEndlessConflictsAreTransient(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("web", 3, nil))
		cs.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, conflict("deployments")
		})
		d, _ := newDowner(t, cs)
		_, err := d.Run(context.Background(), sel(t, "", "deployment/web"))
		if failure.Code(err) != 75 {
			t.Fatalf("err %v code %d", err, failure.Code(err))
		}
	})
}

func TestScaleDownAPIErrors(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "web",
		errors.New(`User "system:serviceaccount:shop:migrator" cannot patch resource "deployments" in API group "apps"`))
	tests := []struct {
		name      string
		verb, res string
		err       error
		code      int
		mentions  []string
	}{
		{"forbidden patch", "patch", "deployments", forbidden, 1, []string{"permission denied", `"patch"`, "deployments.apps"}},
		{"forbidden list", "list", "deployments", apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "", errors.New("no")), 1, []string{"list", "deployments.apps"}},
		{"unreachable", "patch", "deployments", refused, 75, []string{"unreachable"}},
		{"server timeout", "patch", "deployments", apierrors.NewServerTimeout(schema.GroupResource{Resource: "deployments"}, "patch", 1), 75, nil},
		{"service unavailable", "list", "deployments", apierrors.NewServiceUnavailable("restarting"), 75, nil},
		{"too many requests", "patch", "deployments", apierrors.NewTooManyRequests("slow down", 1), 75, nil},
		{"invalid", "patch", "deployments", apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "Deployment"}, "web", nil), 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				cs := newFake(deployment("web", 3, nil))
				cs.PrependReactor(tt.verb, tt.res, func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tt.err })
				d, _ := newDowner(t, cs)
				_, err := d.Run(context.Background(), sel(t, "part-of=shop"))
				if failure.Code(err) != tt.code {
					t.Fatalf("code %d, want %d: %v", failure.Code(err), tt.code, err)
				}
				for _, m := range tt.mentions {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("%q does not mention %q", err, m)
					}
				}
				if web := getDeployment(t, cs, "web"); *web.Spec.Replicas != 3 {
					t.Errorf("replicas changed to %d", *web.Spec.Replicas)
				}
			})
		})
	}
}

func TestScaleDownCheckAccessFirst(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("web", 3, nil))
		cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
			r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
			ra := r.Spec.ResourceAttributes
			r.Status.Allowed = !(ra.Verb == "patch" && ra.Resource == "deployments")
			return true, r, nil
		})
		d, _ := newDowner(t, cs)
		d.CheckAccess = true
		_, err := d.Run(context.Background(), sel(t, "", "deployment/web"))
		if failure.Code(err) != 1 || !strings.Contains(err.Error(), "missing patch deployments.apps") {
			t.Fatalf("err %v", err)
		}
		if p := patches(cs); len(p) != 0 {
			t.Fatalf("changed something before failing: %v", p)
		}
	})
}

func TestScaleDownWaitsForPods(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		terminating := pod("web-2", "web")
		terminating.DeletionTimestamp = &metav1.Time{Time: time.Now()}
		done := pod("web-old", "web")
		done.Status.Phase = corev1.PodSucceeded
		failed := pod("web-crashed", "web")
		failed.Status.Phase = corev1.PodFailed
		cs := newFake(deployment("web", 3, nil), pod("web-1", "web"), terminating, done, failed, pod("unrelated", "blog"))
		// Play the controllers: delete the pods of web a little after it is scaled to 0.
		deleted := make(chan time.Time, 1)
		cs.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if strings.Contains(string(a.(k8stesting.PatchAction).GetPatch()), `"replicas":0`) {
				go func() {
					time.Sleep(300 * time.Millisecond)
					_ = cs.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), testNS, "web-1")
					time.Sleep(100 * time.Millisecond)
					deleted <- time.Now()
					_ = cs.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), testNS, "web-2")
				}()
			}
			return false, nil, nil
		})
		d, logs := newDowner(t, cs)
		if _, err := d.Run(context.Background(), sel(t, "", "deployment/web")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-deleted:
		default:
			t.Fatalf("returned before the pods were gone:\n%s", logs)
		}
		if l, _ := cs.CoreV1().Pods(testNS).List(context.Background(), metav1.ListOptions{}); len(l.Items) != 3 {
			t.Fatalf("%d pods left, want the 3 that do not count", len(l.Items))
		}
		if !strings.Contains(logs.String(), "waiting for the pods of 1 workloads to stop") {
			t.Errorf("no waiting line:\n%s", logs)
		}
	})
}

func TestScaleDownWaitsForCronJobPods(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cj := cronJob("report", false, nil)
		cj.Status.Active = []corev1.ObjectReference{{Kind: "Job", Name: "report-1", UID: "job-uid"}}
		jobPod := pod("report-1-abc", "report")
		jobPod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "report-1", UID: "job-uid", Controller: ptrTrue()}}
		cs := newFake(cj, jobPod)
		d, _ := newDowner(t, cs)
		d.Timeout = 300 * time.Millisecond
		_, err := d.Run(context.Background(), sel(t, "", "cronjob/report"))
		if failure.Code(err) != 75 || !strings.Contains(err.Error(), "pod/report-1-abc (cronjob/report, Running)") {
			t.Fatalf("err %v", err)
		}
		_ = cs.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), testNS, "report-1-abc")
		if _, err := d.Run(context.Background(), sel(t, "", "cronjob/report")); err != nil {
			t.Fatal(err)
		}
	})
}

// A Job the CronJob started just before it was suspended, with no pod yet and not
// yet in the CronJob's status.active, is waited for until it finishes.
func TestScaleDownWaitsForCronJobJobsWithoutPods(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cj := cronJob("report", false, nil)
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "report-2", Namespace: testNS, UID: "job-2",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: "report", UID: cj.UID, Controller: ptrTrue()}}}}
		other := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: testNS, UID: "job-3"}}
		cs := newFake(cj, job, other)
		d, _ := newDowner(t, cs)
		d.Timeout = 300 * time.Millisecond
		_, err := d.Run(context.Background(), sel(t, "", "cronjob/report"))
		if failure.Code(err) != 75 || !strings.Contains(err.Error(), "job/report-2 (cronjob/report, running)") || strings.Contains(err.Error(), "unrelated") {
			t.Fatalf("err %v", err)
		}
		job.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
		if err := cs.Tracker().Update(batchv1.SchemeGroupVersion.WithResource("jobs"), job, testNS); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Run(context.Background(), sel(t, "", "cronjob/report")); err != nil {
			t.Fatal(err)
		}
	})
}

func ptrTrue() *bool { b := true; return &b }

func TestScaleDownTimeoutListsThePods(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("web", 3, nil), pod("web-1", "web"), pod("web-2", "web"))
		d, _ := newDowner(t, cs)
		d.Timeout = 300 * time.Millisecond
		_, err := d.Run(context.Background(), sel(t, "", "deployment/web"))
		if failure.Code(err) != 75 {
			t.Fatalf("code %d: %v", failure.Code(err), err)
		}
		for _, p := range []string{"pod/web-1", "pod/web-2", "timed out after 300ms"} {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("%q does not mention %s", err, p)
			}
		}
		// The workload is recorded and scaled even though the wait failed: a rerun waits again.
		if web := getDeployment(t, cs, "web"); *web.Spec.Replicas != 0 || web.Annotations[AnnotationReplicas] != "3" {
			t.Fatal("not scaled")
		}
	})
}

func TestScaleDownWaitsForTheControllerToCatchUp(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		dep := deployment("web", 3, nil)
		dep.Generation = 2
		dep.Status.ObservedGeneration = 1
		dep.Status.Replicas = 3
		cs := newFake(dep)
		d, _ := newDowner(t, cs)
		d.Timeout = 300 * time.Millisecond
		_, err := d.Run(context.Background(), sel(t, "", "deployment/web"))
		if failure.Code(err) != 75 || !strings.Contains(err.Error(), "deployment/web (its controller has not seen the change yet; it reports 3 replicas)") {
			t.Fatalf("err %v", err)
		}
	})
}

// What the wait needs of the controller: to have seen the change to 0, not to
// report 0 replicas (its pods tell that), and nothing at all of a workload that
// was already at 0 and seen so (recording it bumps its generation).
func TestScaleDownControllerConditions(t *testing.T) {
	tests := []struct {
		name            string
		replicas        int32
		gen, observed   int64
		statusReplicas  int32
		observeAfter    bool // the controller reports the generation of the patch
		wantControllerW bool
	}{
		{"scaled, controller caught up, still counting", 3, 1, 1, 3, true, false},
		{"scaled, controller behind", 3, 1, 1, 3, false, true},
		{"already at 0 and seen so", 0, 4, 4, 0, false, false},
		{"at 0 but not yet seen so", 0, 4, 3, 0, false, true},
		{"at 0 but pods still counted", 0, 4, 4, 1, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				dep := deployment("web", tt.replicas, nil)
				dep.Generation, dep.Status.ObservedGeneration, dep.Status.Replicas = tt.gen, tt.observed, tt.statusReplicas
				cs := newFake(dep)
				// The fake does not bump generations: play the API server, and
				// the controller when it is to catch up.
				cs.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
					pa := a.(k8stesting.PatchAction)
					cur, err := cs.Tracker().Get(appsv1.SchemeGroupVersion.WithResource("deployments"), testNS, pa.GetName())
					if err != nil {
						return true, nil, err
					}
					d := cur.(*appsv1.Deployment).DeepCopy()
					d.Generation++
					if tt.observeAfter {
						d.Status.ObservedGeneration = d.Generation
					}
					if err := cs.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("deployments"), d, testNS); err != nil {
						return true, nil, err
					}
					return false, nil, nil
				})
				d, _ := newDowner(t, cs)
				d.Timeout = 300 * time.Millisecond
				_, err := d.Run(context.Background(), sel(t, "", "deployment/web"))
				waited := err != nil && strings.Contains(err.Error(), "its controller has not seen the change yet")
				if waited != tt.wantControllerW || (err != nil && !waited) {
					t.Fatalf("waited for the controller: %v, want %v (err %v)", waited, tt.wantControllerW, err)
				}
			})
		})
	}
}

func TestPriorityOrder(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(
			deployment("frontend", 2, map[string]string{AnnotationPriority: "10"}),
			deployment("worker", 2, map[string]string{AnnotationPriority: "5"}),
			deployment("api", 2, nil),
			pod("frontend-1", "frontend"),
		)
		var (
			mu    sync.Mutex
			order []string
		)
		cs.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if strings.Contains(string(a.(k8stesting.PatchAction).GetPatch()), `"replicas":`) {
				name := a.(k8stesting.PatchAction).GetName()
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				if name == "frontend" && strings.Contains(string(a.(k8stesting.PatchAction).GetPatch()), `"replicas":0`) {
					go func() {
						time.Sleep(200 * time.Millisecond)
						mu.Lock()
						order = append(order, "frontend pods gone")
						mu.Unlock()
						_ = cs.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), testNS, "frontend-1")
					}()
				}
			}
			return false, nil, nil
		})
		d, _ := newDowner(t, cs)
		out, err := d.Run(context.Background(), sel(t, "part-of=shop"))
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got := strings.Join(order, ", ")
		mu.Unlock()
		if got != "frontend, frontend pods gone, worker, api" {
			t.Fatalf("order: %s", got)
		}
		if got := strings.Join(Strings(out), " "); got != "deployment/frontend=2 deployment/worker=2 deployment/api=2" {
			t.Fatalf("outcomes %s", got)
		}

		// Restore goes the other way round.
		mu.Lock()
		order = nil
		mu.Unlock()
		r, _ := newRestorer(t, cs)
		out, err = r.Run(context.Background(), Selection{})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got = strings.Join(order, ", ")
		mu.Unlock()
		if got != "api, worker, frontend" {
			t.Fatalf("restore order: %s", got)
		}
		if got := strings.Join(Strings(out), " "); got != "deployment/api=2 deployment/worker=2 deployment/frontend=2" {
			t.Fatalf("restore outcomes %s", got)
		}
	})
}

// changeRetry retries conflicts a bounded number of times and an API server that
// did not answer until its time is up; anything else, and a context error, ends it
// at once. (client-go's retry.OnError turns a context error into success when
// nothing retriable was seen before it.)
func TestChangeRetry(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	unreachable := fmt.Errorf("patch: %w", io.ErrUnexpectedEOF)
	forbidden := fmt.Errorf("reading: %w", apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "web", errors.New("no RBAC rule")))
	cases := []struct {
		name      string
		ctx       context.Context
		until     time.Duration // from now; 0: none
		fail      func(call int) error
		wantCalls int // 0: at least 2
		want      func(error) bool
	}{
		{"context error kept", cancelled, 0, func(int) error { return fmt.Errorf("patch: %w", context.Canceled) }, 1,
			func(err error) bool { return errors.Is(err, context.Canceled) }},
		{"conflicts bounded", context.Background(), 0, func(int) error { return conflict("deployments") }, 4, apierrors.IsConflict},
		{"cancelled while backing off", cancelled, 0, func(int) error { return conflict("deployments") }, 1,
			func(err error) bool { return errors.Is(err, context.Canceled) }},
		{"permanent not retried", context.Background(), 0, func(int) error {
			return apierrors.NewForbidden(schema.GroupResource{Resource: "deployments"}, "web", errors.New("no"))
		}, 1, apierrors.IsForbidden},
		{"outage until the time is up", context.Background(), 300 * time.Millisecond, func(int) error { return unreachable }, 0,
			func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"outage then answer", context.Background(), time.Minute, func(call int) error {
			if call < 3 {
				return apierrors.NewServiceUnavailable("restarting")
			}
			return nil
		}, 3, func(err error) bool { return err == nil }},
		// A restarted API server denies until its authorization caches are loaded
		// (seen in test/faults/kube TestAPIServerRestart: 403 on a fresh read).
		{"forbidden just after an outage", context.Background(), time.Minute, func(call int) error {
			switch {
			case call < 3:
				return unreachable
			case call < 5:
				return forbidden
			}
			return nil
		}, 5, func(err error) bool { return err == nil }},
		{"forbidden after an outage, for longer than a restart", context.Background(), 10 * time.Minute, func(call int) error {
			if call < 2 {
				return unreachable
			}
			return forbidden
		}, 0, apierrors.IsForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				log, _ := testLogger(t)
				r := changeRetry{backoffs: testBackoffs, clock: clock.RealClock{}, log: log}
				if tc.until > 0 {
					r.until = time.Now().Add(tc.until)
				}
				calls, freshReads := 0, 0
				err := r.run(tc.ctx, "deployment/web", func(fresh bool) error {
					calls++
					if fresh {
						freshReads++
					}
					return tc.fail(calls)
				})
				if !tc.want(err) {
					t.Fatalf("err %v", err)
				}
				if tc.wantCalls > 0 && calls != tc.wantCalls || tc.wantCalls == 0 && calls < 2 {
					t.Fatalf("%d calls, want %d", calls, tc.wantCalls)
				}
				if freshReads != calls-1 {
					t.Fatalf("%d fresh reads in %d calls: every retry reads afresh", freshReads, calls)
				}
				if tc.until > 0 && err != nil && !apierrors.IsForbidden(err) && time.Until(r.until) > testBackoffs.Outage.Duration+50*time.Millisecond {
					t.Fatalf("gave up %s before its time was up", time.Until(r.until))
				}
			})
		})
	}
}

// --run-uid goes into the same patch as the rest of the record; a record of an
// earlier run keeps its uid.
func TestScaleDownRecordsTheRunUID(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("web", 3, nil), deployment("old", 0, withUID(rec("2"), "uid-a")), cronJob("report", false, nil))
		d, _ := newDowner(t, cs)
		d.RunUID = "uid-b"
		if _, err := d.Run(context.Background(), sel(t, "", "deploy/web", "deploy/old", "cj/report")); err != nil {
			t.Fatal(err)
		}
		var webPatches []string
		for _, a := range cs.Actions() {
			if pa, ok := a.(k8stesting.PatchAction); ok && pa.GetName() == "web" {
				webPatches = append(webPatches, string(pa.GetPatch()))
			}
		}
		if len(webPatches) != 1 || !strings.Contains(webPatches[0], `"`+AnnotationByRunUID+`":"uid-b"`) || !strings.Contains(webPatches[0], `"replicas":0`) {
			t.Fatalf("web's patches %v", webPatches)
		}
		if u := getCronJob(t, cs, "report").Annotations[AnnotationByRunUID]; u != "uid-b" {
			t.Errorf("cronjob run uid %q", u)
		}
		if u := getDeployment(t, cs, "old").Annotations[AnnotationByRunUID]; u != "uid-a" {
			t.Errorf("an earlier run's record got run uid %q", u)
		}
		// Without --run-uid no such annotation is written.
		cs = newFake(deployment("web", 3, nil))
		d, _ = newDowner(t, cs)
		if _, err := d.Run(context.Background(), sel(t, "", "deploy/web")); err != nil {
			t.Fatal(err)
		}
		if _, ok := getDeployment(t, cs, "web").Annotations[AnnotationByRunUID]; ok {
			t.Error("run uid written without --run-uid")
		}
	})
}

// With git, the Event names the commit whose migrations the stop is for.
func TestScaleDownEventNamesTheGitCommit(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("web", 3, nil))
		d, _ := newDowner(t, cs)
		d.GitCommit = "0123456789abcdef0123456789abcdef01234567"
		if _, err := d.Run(t.Context(), sel(t, "", "deploy/web")); err != nil {
			t.Fatal(err)
		}
		evs := events(t, cs)
		if len(evs) != 1 || evs[0].Message != "scaled down for schema migration by wf-1 (migrations at git commit "+d.GitCommit+")" {
			t.Errorf("events %+v", evs)
		}
	})
}

// A StatefulSet loses its claims on a scale-down only when it has claim
// templates and whenScaled: Delete. The policy is checked again on the fresh
// read after a conflict: it may have been switched to Delete (a GitOps sync)
// since the selection was checked.
func TestScaleDownStatefulSetVolumes(t *testing.T) {
	deleting := func(s *appsv1.StatefulSet, templates bool) *appsv1.StatefulSet {
		s.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenScaled: appsv1.DeletePersistentVolumeClaimRetentionPolicyType}
		if templates {
			s.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "store"}}}
		}
		return s
	}
	t.Run("without claim templates", func(t *testing.T) {
		inBubble(t, func(t *testing.T) {
			cs := newFake(deleting(statefulSet("db", 2, nil), false))
			d, _ := newDowner(t, cs)
			if _, err := d.Run(context.Background(), sel(t, "", "statefulset/db")); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("switched to Delete before a conflict's fresh read", func(t *testing.T) {
		inBubble(t, func(t *testing.T) {
			cs := newFake(statefulSet("db", 2, nil))
			first := true
			cs.PrependReactor("patch", "statefulsets", func(k8stesting.Action) (bool, runtime.Object, error) {
				if !first {
					return false, nil, nil
				}
				first = false
				// the tracker directly: the fake holds its lock while reactors run
				gvr := appsv1.SchemeGroupVersion.WithResource("statefulsets")
				o, err := cs.Tracker().Get(gvr, testNS, "db")
				if err != nil {
					return true, nil, err
				}
				if err := cs.Tracker().Update(gvr, deleting(o.(*appsv1.StatefulSet).DeepCopy(), true), testNS); err != nil {
					return true, nil, err
				}
				return true, nil, conflict("statefulsets")
			})
			d, _ := newDowner(t, cs)
			_, err := d.Run(context.Background(), sel(t, "", "statefulset/db"))
			if failure.Code(err) != 1 || !strings.Contains(err.Error(), "statefulset/db: persistentVolumeClaimRetentionPolicy.whenScaled is Delete") {
				t.Fatalf("err %v (code %d), want the refusal", err, failure.Code(err))
			}
			s, _ := cs.AppsV1().StatefulSets(testNS).Get(context.Background(), "db", metav1.GetOptions{})
			if *s.Spec.Replicas != 2 {
				t.Fatalf("scaled to %d", *s.Spec.Replicas)
			}
		})
	})
}
