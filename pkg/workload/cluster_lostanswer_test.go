package workload

import (
	"strings"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/test/faultproxy"
)

// A change the API server made but whose answer was lost is not a failure:
// the step retries with a fresh read, finds its change made, and reports and
// waits for it like any other. Before, scale-down exited 75 and scale-restore
// left the workload out of its results and its readiness wait.
func TestClusterLostAnswerToAChange(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("lost", 2, appOpts{labels: map[string]string{"lost": "answer"}})
	c.deployment("other", 1, appOpts{labels: map[string]string{"lost": "answer"}})
	c.waitRunning("lost=answer", 3, 3*time.Minute)

	loseOne := func() (*faultproxy.Proxy, string) {
		return c.faultProxy(&faultproxy.Rule{Method: "PATCH", Path: "/deployments/lost", Times: 1, Action: faultproxy.DropAfter})
	}
	p, kc := loseOne()
	r := c.mustRun(0, ScaleDownSpec(), kc, "--selector", "lost=answer", "--timeout", "2m")
	if len(p.Hits()) != 1 {
		t.Fatalf("the proxy lost %d answers, want 1", len(p.Hits()))
	}
	if got := r.results[ResultWorkloads]; got != `["deployment/lost=2","deployment/other=1"]` {
		t.Fatalf("scale-down workloads %s", got)
	}
	if d := c.getDeployment("lost"); *d.Spec.Replicas != 0 || d.Annotations[AnnotationReplicas] != "2" {
		t.Fatalf("lost: replicas %d, record %q", *d.Spec.Replicas, d.Annotations[AnnotationReplicas])
	}
	if left := c.livePods("lost=answer"); len(left) > 0 {
		t.Fatalf("pods left %v", left)
	}
	if !strings.Contains(r.stderr, "retrying with a fresh read") {
		t.Errorf("no retry logged:\n%s", r.stderr)
	}

	p, kc = loseOne()
	r = c.mustRun(0, ScaleRestoreSpec(), kc, "--selector", "lost=answer", "--wait-ready", "--ready-timeout", "2m")
	if len(p.Hits()) != 1 {
		t.Fatalf("the proxy lost %d answers, want 1", len(p.Hits()))
	}
	if got := r.results[ResultWorkloads]; got != `["deployment/lost=2","deployment/other=1"]` {
		t.Fatalf("scale-restore workloads %s", got)
	}
	if d := c.getDeployment("lost"); *d.Spec.Replicas != 2 || d.Status.ReadyReplicas != 2 || d.Annotations[AnnotationReplicas] != "" {
		t.Fatalf("lost after restore: replicas %d, ready %d, record %q", *d.Spec.Replicas, d.Status.ReadyReplicas, d.Annotations[AnnotationReplicas])
	}
}

// A restore whose change is still unanswered when --timeout runs out reads the
// workload once more to tell made from not made. Not made: the step fails
// transient (75) with the record kept, and its retry restores. Made: it is
// reported and waited for. Before, both failed permanent (exit 1, "may have
// been done": a stop CI met it when its API server was slow).
func TestClusterRestoreUnansweredAtTheDeadline(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("slow", 1, appOpts{labels: map[string]string{"slow": "answer"}})
	c.waitRunning("slow=answer", 1, 3*time.Minute)

	for _, tc := range []struct {
		hold  faultproxy.Action
		want  int
		after int32 // replicas after the step
	}{
		{faultproxy.HoldUnsent, 75, 0},
		{faultproxy.HoldAnswered, 0, 1},
	} {
		c.mustRun(0, ScaleDownSpec(), "", "--selector", "slow=answer")
		p, kc := c.faultProxy(&faultproxy.Rule{Method: "PATCH", Path: "/deployments/slow", Times: 1, Action: tc.hold})
		r := c.mustRun(tc.want, ScaleRestoreSpec(), kc, "--selector", "slow=answer", "--timeout", "5s", "--wait-ready", "--ready-timeout", "2m")
		if len(p.Hits()) == 0 {
			t.Fatalf("hold %d: the proxy held no change", tc.hold)
		}
		d := c.getDeployment("slow")
		if *d.Spec.Replicas != tc.after {
			t.Fatalf("hold %d: replicas %d, want %d", tc.hold, *d.Spec.Replicas, tc.after)
		}
		switch tc.want {
		case 75:
			if d.Annotations[AnnotationReplicas] != "1" {
				t.Fatalf("record lost: %v", d.Annotations)
			}
			c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "slow=answer", "--wait-ready", "--ready-timeout", "2m")
		case 0:
			if got := r.results[ResultWorkloads]; got != `["deployment/slow=1"]` || d.Status.ReadyReplicas != 1 {
				t.Fatalf("made: results %s, ready %d", got, d.Status.ReadyReplicas)
			}
		}
		c.waitRunning("slow=answer", 1, 3*time.Minute)
	}
}
