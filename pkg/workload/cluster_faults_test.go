package workload

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The tests of this file come from an attack through faultProxy (session 28);
// each failed before its fix.

// A gateway in front of the API server (a load balancer, a cluster proxy)
// answers 502/503 when it loses the upstream's answer: the change was made.
// The restore then reports the workload and waits for it, as for a dropped
// connection. Before, it exited 0 at once with empty results ("record already
// removed: nothing to restore") and the pods not ready.
func TestClusterRestoreGatewayErrorAfterChange(t *testing.T) {
	c := newCluster(t)
	c.deployment("gw", 2, appOpts{labels: map[string]string{"fault": "gw"}})
	c.waitRunning("fault=gw", 2, 3*time.Minute)
	for _, code := range []int{502, 503} {
		c.mustRun(0, ScaleDownSpec(), "", "--selector", "fault=gw")
		p := newFaultProxy(c, &faultRule{method: "PATCH", path: "/deployments/gw", times: 1, action: faultStatusAfter, status: code})
		r := c.mustRun(0, ScaleRestoreSpec(), p.kubeconfig(c), "--selector", "fault=gw", "--wait-ready", "--ready-timeout", "2m")
		d := c.getDeployment("gw")
		if r.results[ResultWorkloads] != `["deployment/gw=2"]` || d.Status.ReadyReplicas != 2 {
			t.Fatalf("%d after the change: results %s, %d ready (proxy: %v)", code, r.results[ResultWorkloads], d.Status.ReadyReplicas, p.hits())
		}
		c.waitRunning("fault=gw", 2, 3*time.Minute)
	}
}

// A restore that may have been done but cannot be confirmed fails for good
// (exit 1): a retry would find the record gone and succeed without waiting for
// readiness. Another workload's transient failure in the same step made the
// joined error transient (75), and the workflow would retry.
func TestClusterFinalNotLostInJoin(t *testing.T) {
	c := newCluster(t)
	c.deployment("a", 1, appOpts{labels: map[string]string{"fault": "join"}})
	c.deployment("b", 1, appOpts{labels: map[string]string{"fault": "join"}})
	c.waitRunning("fault=join", 2, 3*time.Minute)
	c.mustRun(0, ScaleDownSpec(), "", "--selector", "fault=join")

	p := newFaultProxy(c,
		&faultRule{method: "PATCH", path: "/deployments/a", times: 1, action: faultHoldAnswered}, // made, never answered
		&faultRule{method: "GET", path: "/deployments/a", action: faultHoldUnsent},               // and not readable again
		&faultRule{method: "PATCH", path: "/deployments/b", action: faultStatus, status: 503},    // not made, transient
	)
	r := c.mustRun(1, ScaleRestoreSpec(), p.kubeconfig(c), "--selector", "fault=join", "--timeout", "5s", "--wait-ready", "--ready-timeout", "1m")
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
	c := newCluster(t)
	c.deployment("first", 1, appOpts{labels: map[string]string{"fault": "grp"}})
	c.deployment("second", 1, appOpts{labels: map[string]string{"fault": "grp"}, annotations: map[string]string{AnnotationPriority: "10"}})
	c.waitRunning("fault=grp", 2, 3*time.Minute)
	for _, tc := range []struct {
		name string
		rule faultRule
		want []int
	}{
		{"first group answered after the deadline", faultRule{method: "PATCH", path: "/deployments/first", times: 1, action: faultHoldAnswered}, []int{75}},
		{"an Event never answered", faultRule{method: "POST", path: "/events", times: 1, action: faultHoldUnsent}, []int{0, 75}},
	} {
		c.mustRun(0, ScaleDownSpec(), "", "--selector", "fault=grp")
		rule := tc.rule
		p := newFaultProxy(c, &rule)
		r := c.run(ScaleRestoreSpec(), p.kubeconfig(c), "--selector", "fault=grp", "--timeout", "5s")
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
// from its ReplicaSet. When the answer to that write was lost (a dropped
// connection, a gateway's 502), scale-restore went on with the copy read
// before and exited 0, "nothing to restore", the Deployment still at 0 and
// recorded.
func TestClusterRecoveredRecordAnswerLost(t *testing.T) {
	c := newCluster(t)
	c.deployment("undo", 2, appOpts{labels: map[string]string{"fault": "undo"}})
	c.waitRunning("fault=undo", 2, 3*time.Minute)
	rm := `{"metadata":{"annotations":{"` + AnnotationReplicas + `":null,"` + AnnotationBy + `":null,"` + AnnotationAt + `":null}}}`
	for _, rule := range []faultRule{
		{method: "PATCH", path: "/deployments/undo", times: 1, action: faultDropAfter},
		{method: "PATCH", path: "/deployments/undo", times: 1, action: faultStatusAfter, status: 502},
	} {
		c.mustRun(0, ScaleDownSpec(), "", "--selector", "fault=undo")
		// what kubectl rollout undo does to the record (the ReplicaSet keeps its copy)
		if _, err := c.cs.AppsV1().Deployments(c.ns).Patch(context.Background(), "undo", types.MergePatchType, []byte(rm), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		rule := rule
		p := newFaultProxy(c, &rule)
		r := c.run(ScaleRestoreSpec(), p.kubeconfig(c), "--selector", "fault=undo", "--wait-ready", "--ready-timeout", "2m")
		d := c.getDeployment("undo")
		if r.code != 0 || *d.Spec.Replicas != 2 || r.results[ResultWorkloads] != `["deployment/undo=2"]` {
			t.Errorf("action %d: exit %d, results %s, replicas %d, record %q: %s", rule.action, r.code, r.results[ResultWorkloads], *d.Spec.Replicas, d.Annotations[AnnotationReplicas], r.summary.Error)
			c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "fault=undo")
		}
		c.waitRunning("fault=undo", 2, 3*time.Minute)
	}
}

// Each step is bounded: a request the API server (or a proxy before it) never
// answers must not hold a step forever. Before, scale-down and scale-restore
// waited on such a request with no limit.
func TestClusterUnansweredRequestsEnd(t *testing.T) {
	c := newCluster(t)
	c.deployment("h", 1, appOpts{labels: map[string]string{"fault": "hang"}})
	c.waitRunning("fault=hang", 1, 3*time.Minute)
	stop := func() { c.mustRun(0, ScaleDownSpec(), "", "--selector", "fault=hang") }
	for _, tc := range []struct {
		name   string
		spec   stepSpecFn
		rule   faultRule
		before func()
	}{
		{"scale-down, its PATCH", ScaleDownSpec, faultRule{method: "PATCH", path: "/deployments/h", times: 1, action: faultHoldUnsent}, nil},
		{"scale-down, an Event", ScaleDownSpec, faultRule{method: "POST", path: "/events", action: faultHoldUnsent}, nil},
		{"scale-down, its LIST", ScaleDownSpec, faultRule{method: "GET", path: "/deployments", query: "labelSelector", times: 1, action: faultHoldUnsent}, nil},
		{"scale-restore, the ReplicaSets' LIST", ScaleRestoreSpec, faultRule{method: "GET", path: "/replicasets", action: faultHoldUnsent}, stop},
		{"scale-restore, a ReplicaSet's PATCH", ScaleRestoreSpec, faultRule{method: "PATCH", path: "/replicasets/", action: faultHoldUnsent}, stop},
	} {
		if tc.before != nil {
			tc.before()
		}
		rule := tc.rule
		p := newFaultProxy(c, &rule)
		// Forever is what failed; the bound is far above the per-request limit.
		r, ok := c.runBounded(3*time.Minute, tc.spec, p.kubeconfig(c), "--selector", "fault=hang", "--timeout", "5s")
		if !ok {
			p.srv.CloseClientConnections()
			t.Fatalf("%s: still running after 3 minutes with --timeout 5s (proxy: %v)", tc.name, p.hits())
		}
		t.Logf("%s: exit %d in %s: %s", tc.name, r.code, r.took.Round(time.Millisecond), r.summary.Error)
		c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "fault=hang")
	}
}
