package workload

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/test/faultproxy"
)

// The tests of this file come from an attack through faultProxy (session 28);
// each failed before its fix.

// A gateway in front of the API server (a load balancer, a cluster proxy)
// answers 502/503 when it loses the upstream's answer: the change was made.
// The restore then reports the workload and waits for it, as for a dropped
// connection. Before, it exited 0 at once with empty results ("record already
// removed: nothing to restore") and the pods not ready.
func TestClusterRestoreGatewayErrorAfterChange(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("gw", 2, appOpts{labels: map[string]string{"fault": "gw"}})
	c.waitRunning("fault=gw", 2, 3*time.Minute)
	for _, code := range []int{502, 503} {
		c.mustRun(0, ScaleDownSpec(), "", "--selector", "fault=gw")
		p, kc := c.faultProxy(&faultproxy.Rule{Method: "PATCH", Path: "/deployments/gw", Times: 1, Action: faultproxy.StatusAfter, Status: code})
		r := c.mustRun(0, ScaleRestoreSpec(), kc, "--selector", "fault=gw", "--wait-ready", "--ready-timeout", "2m")
		d := c.getDeployment("gw")
		if r.results[ResultWorkloads] != `["deployment/gw=2"]` || d.Status.ReadyReplicas != 2 {
			t.Fatalf("%d after the change: results %s, %d ready (proxy: %v)", code, r.results[ResultWorkloads], d.Status.ReadyReplicas, p.Hits())
		}
		c.waitRunning("fault=gw", 2, 3*time.Minute)
	}
}

// A restore that may have been done but cannot be confirmed fails for good
// (exit 1): a retry would find the record gone and succeed without waiting for
// readiness. Another workload's transient failure in the same step made the
// joined error transient (75), and the workflow would retry.
func TestClusterFinalNotLostInJoin(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("a", 1, appOpts{labels: map[string]string{"fault": "join"}})
	c.deployment("b", 1, appOpts{labels: map[string]string{"fault": "join"}})
	c.waitRunning("fault=join", 2, 3*time.Minute)
	c.mustRun(0, ScaleDownSpec(), "", "--selector", "fault=join")

	_, kc := c.faultProxy(
		&faultproxy.Rule{Method: "PATCH", Path: "/deployments/a", Times: 1, Action: faultproxy.HoldAnswered}, // made, never answered
		&faultproxy.Rule{Method: "GET", Path: "/deployments/a", Action: faultproxy.HoldUnsent},               // and not readable again
		&faultproxy.Rule{Method: "PATCH", Path: "/deployments/b", Action: faultproxy.Status, Status: 503},    // not made, transient
	)
	r := c.mustRun(1, ScaleRestoreSpec(), kc, "--selector", "fault=join", "--timeout", "5s", "--wait-ready", "--ready-timeout", "1m")
	if !strings.Contains(r.summary.Error, "restoring it may have been done") {
		t.Errorf("the error does not say the restore may have been done: %s", r.summary.Error)
	}
	c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "fault=join", "--wait-ready", "--ready-timeout", "1m")
}

// A restore whose --timeout is used up by an earlier priority group leaves the
// later group at 0 with its record, for a rerun: exit 75. It was 1 ("not
// started"), which tells the workflow not to retry; an Event write the API
// server never answered did the same, spending the allowance on information
// for people.
func TestClusterLaterGroupOutOfTimeIsTransient(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("first", 1, appOpts{labels: map[string]string{"fault": "grp"}})
	c.deployment("second", 1, appOpts{labels: map[string]string{"fault": "grp"}, annotations: map[string]string{AnnotationPriority: "10"}})
	c.waitRunning("fault=grp", 2, 3*time.Minute)
	for _, tc := range []struct {
		name string
		rule faultproxy.Rule
		want []int
	}{
		{"first group answered after the deadline", faultproxy.Rule{Method: "PATCH", Path: "/deployments/first", Times: 1, Action: faultproxy.HoldAnswered}, []int{75}},
		{"an Event never answered", faultproxy.Rule{Method: "POST", Path: "/events", Times: 1, Action: faultproxy.HoldUnsent}, []int{0, 75}},
	} {
		c.mustRun(0, ScaleDownSpec(), "", "--selector", "fault=grp")
		rule := tc.rule
		_, kc := c.faultProxy(&rule)
		r := c.run(ScaleRestoreSpec(), kc, "--selector", "fault=grp", "--timeout", "5s")
		ok := false
		for _, w := range tc.want {
			ok = ok || r.code == w
		}
		if !ok {
			t.Errorf("%s: exit %d, want one of %v: %s", tc.name, r.code, tc.want, r.summary.Error)
		}
		c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "fault=grp")
		c.waitRunning("fault=grp", 2, 3*time.Minute)
	}
}

// The record kubectl rollout undo took off a Deployment at 0 is taken back
// from its ReplicaSet, and the Deployment restored, even when the answer to
// that write is lost (a dropped connection, a gateway's 502). The attack met
// it with the record removed by hand: the step went on with the copy read
// before and exited 0, "nothing to restore", the Deployment at 0 and recorded
// (recover.go takes a fresh read that shows the record written as written).
// That case is no longer taken back at all (the next test); with the real
// kubectl here the retry's fresh read led to a second write in every run, so
// this test passes without that branch too: it guards the outcome.
func TestClusterRecoveredRecordAnswerLost(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	kubectl := filepath.Join(c.env.State().KubeBinDir, "kubectl")
	for i, rule := range []faultproxy.Rule{
		{Method: "PATCH", Path: "/deployments/", Times: 1, Action: faultproxy.DropAfter},
		{Method: "PATCH", Path: "/deployments/", Times: 1, Action: faultproxy.StatusAfter, Status: 502},
	} {
		name := fmt.Sprintf("undo%d", i)
		sel := "fault=" + name
		c.deployment(name, 2, appOpts{labels: map[string]string{"fault": name}})
		// a second revision, to go back from
		if _, err := c.cs.AppsV1().Deployments(c.ns).Patch(context.Background(), name, types.MergePatchType, []byte(`{"spec":{"template":{"metadata":{"annotations":{"release":"2"}}}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		c.waitFor("the second revision rolled out", 3*time.Minute, func() (bool, string) {
			d := c.getDeployment(name)
			s := d.Status
			return d.Annotations[revisionAnnotation] == "2" && s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == 2 && s.Replicas == 2 && s.AvailableReplicas == 2, fmt.Sprintf("%+v", s)
		})
		c.mustRun(0, ScaleDownSpec(), "", "--selector", sel)
		if out, err := exec.Command(kubectl, "--kubeconfig", c.kubeconfig, "-n", c.ns, "rollout", "undo", "deployment/"+name).CombinedOutput(); err != nil {
			t.Fatalf("kubectl rollout undo: %v\n%s", err, out)
		}
		if d := c.getDeployment(name); d.Annotations[AnnotationReplicas] != "" {
			t.Fatalf("the undo left the record on the Deployment: %v", d.Annotations)
		}
		rule := rule
		rule.Path += name
		p, kc := c.faultProxy(&rule)
		r := c.run(ScaleRestoreSpec(), kc, "--selector", sel, "--wait-ready", "--ready-timeout", "2m")
		d := c.getDeployment(name)
		if r.code != 0 || *d.Spec.Replicas != 2 || r.results[ResultWorkloads] != fmt.Sprintf(`["deployment/%s=2"]`, name) {
			t.Errorf("action %d: exit %d, results %s, replicas %d, record %q (proxy %v): %s\n%s", rule.Action, r.code, r.results[ResultWorkloads], *d.Spec.Replicas, d.Annotations[AnnotationReplicas], p.Hits(), r.summary.Error, r.stderr)
			c.mustRun(0, ScaleRestoreSpec(), "", "--selector", sel)
		}
		c.waitRunning(sel, 2, 3*time.Minute)
	}
}

// Each step is bounded: a request the API server (or a proxy before it) never
// answers must not hold a step forever. Before, scale-down and scale-restore
// waited on such a request with no limit.
func TestClusterUnansweredRequestsEnd(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("h", 1, appOpts{labels: map[string]string{"fault": "hang"}})
	c.waitRunning("fault=hang", 1, 3*time.Minute)
	stop := func() { c.mustRun(0, ScaleDownSpec(), "", "--selector", "fault=hang") }
	for _, tc := range []struct {
		name   string
		spec   func() step.Spec
		rule   faultproxy.Rule
		before func()
	}{
		{"scale-down, its PATCH", ScaleDownSpec, faultproxy.Rule{Method: "PATCH", Path: "/deployments/h", Times: 1, Action: faultproxy.HoldUnsent}, nil},
		{"scale-down, an Event", ScaleDownSpec, faultproxy.Rule{Method: "POST", Path: "/events", Action: faultproxy.HoldUnsent}, nil},
		{"scale-down, its LIST", ScaleDownSpec, faultproxy.Rule{Method: "GET", Path: "/deployments", Query: "labelSelector", Times: 1, Action: faultproxy.HoldUnsent}, nil},
		{"scale-restore, the ReplicaSets' LIST", ScaleRestoreSpec, faultproxy.Rule{Method: "GET", Path: "/replicasets", Action: faultproxy.HoldUnsent}, stop},
		{"scale-restore, a ReplicaSet's PATCH", ScaleRestoreSpec, faultproxy.Rule{Method: "PATCH", Path: "/replicasets/", Action: faultproxy.HoldUnsent}, stop},
	} {
		if tc.before != nil {
			tc.before()
		}
		rule := tc.rule
		p, kc := c.faultProxy(&rule)
		// Forever is what failed; the bound is far above the per-request limit.
		r, ok := c.runBounded(3*time.Minute, tc.spec, kc, "--selector", "fault=hang", "--timeout", "5s")
		if !ok {
			p.CloseClientConnections()
			t.Fatalf("%s: still running after 3 minutes with --timeout 5s (proxy: %v)", tc.name, p.Hits())
		}
		t.Logf("%s: exit %d in %s: %s", tc.name, r.code, r.took.Round(time.Millisecond), r.summary.Error)
		c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "fault=hang")
	}
}

// A restore that could not take the record off the ReplicaSets (a 503 on that
// best-effort patch) exits 0; a person later scales the Deployment to 0 on
// purpose. The next scale-restore took the leftover record for one kubectl
// rollout undo had taken off, and brought the Deployment back: a person's
// decision undone. The record on the Deployment's current ReplicaSet is no
// longer taken back: an undo changes the template.
func TestClusterLeftoverReplicaSetRecordNotRevived(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("rv", 2, appOpts{labels: map[string]string{"fault": "rv"}})
	c.waitRunning("fault=rv", 2, 3*time.Minute)
	c.mustRun(0, ScaleDownSpec(), "", "--selector", "fault=rv")
	_, kc := c.faultProxy(&faultproxy.Rule{Method: "PATCH", Path: "/replicasets/", Action: faultproxy.Status, Status: 503})
	c.mustRun(0, ScaleRestoreSpec(), kc, "--selector", "fault=rv", "--wait-ready", "--ready-timeout", "2m")
	c.waitRunning("fault=rv", 2, 3*time.Minute)
	if _, err := c.cs.AppsV1().Deployments(c.ns).Patch(context.Background(), "rv", types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitFor("rv at 0", time.Minute, func() (bool, string) {
		return len(c.livePods("fault=rv")) == 0, strings.Join(c.livePods("fault=rv"), ",")
	})
	r := c.mustRun(0, ScaleRestoreSpec(), "")
	if d := c.getDeployment("rv"); *d.Spec.Replicas != 0 {
		t.Fatalf("a Deployment a person scaled to 0 was brought back to %d (results %s):\n%s", *d.Spec.Replicas, r.results[ResultWorkloads], r.stderr)
	}
	if !strings.Contains(r.stderr, "still the Deployment's current ReplicaSet") {
		t.Errorf("not said why the record is not taken back:\n%s", r.stderr)
	}
}

// A selected workload deleted while it is being scaled down, before its patch
// arrives or before the fresh read after a conflict: a rerun selects again and
// finishes, so the step fails transient, not permanent (it exited 1).
func TestClusterWorkloadDeletedWhileScaledDownIsTransient(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("stays", 1, appOpts{labels: map[string]string{"fault": "gone"}})
	for _, tc := range []struct {
		name  string
		rules []*faultproxy.Rule
	}{
		{"before its patch", []*faultproxy.Rule{
			{Method: "PATCH", Path: "/deployments/gone", Times: 1, Action: faultproxy.Delay, Delay: 3 * time.Second},
		}},
		{"before the fresh read after a conflict", []*faultproxy.Rule{
			{Method: "PATCH", Path: "/deployments/gone", Times: 1, Action: faultproxy.Status, Status: http.StatusConflict},
			{Method: "GET", Path: "/deployments/gone", Times: 1, Action: faultproxy.Delay, Delay: 3 * time.Second},
		}},
	} {
		c.deployment("gone", 1, appOpts{labels: map[string]string{"fault": "gone"}})
		c.waitRunning("fault=gone", 2, 3*time.Minute)
		p, kc := c.faultProxy(tc.rules...)
		done := make(chan stepRun, 1)
		go func() { done <- c.run(ScaleDownSpec(), kc, "--selector", "fault=gone", "--timeout", "1m") }()
		// Deleted while the last rule holds its request.
		c.waitFor("the held request for deployment/gone", time.Minute, func() (bool, string) {
			h := p.Hits()
			return len(h) == len(tc.rules), strings.Join(h, "; ")
		})
		if err := c.cs.AppsV1().Deployments(c.ns).Delete(context.Background(), "gone", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.code != failure.CodeTransient || !strings.Contains(r.summary.Error, "deployment/gone was deleted while it was being scaled down") {
			t.Fatalf("%s: exit %d (%s), want %d naming deployment/gone\n%s", tc.name, r.code, r.summary.Error, failure.CodeTransient, r.stderr)
		}
		again := c.mustRun(0, ScaleDownSpec(), "", "--selector", "fault=gone")
		if w := again.workloads(t); len(w) != 1 || w[0] != "deployment/stays=1" {
			t.Errorf("%s: the rerun stopped %v, want [deployment/stays=1]", tc.name, w)
		}
		c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "fault=gone")
		c.waitFor("deployment/gone gone", time.Minute, func() (bool, string) {
			_, err := c.cs.AppsV1().Deployments(c.ns).Get(context.Background(), "gone", metav1.GetOptions{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	}
}
