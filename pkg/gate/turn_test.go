package gate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/test/faultproxy"
)

// Each TaskRun comes after the canary and after the one parallelism places
// before it in the order (its lane), so at most parallelism work at once.
func TestTurnAfter(t *testing.T) {
	order := []string{"a", "b", "c", "d", "e"}
	for _, tc := range []struct {
		p      int
		canary bool
		want   map[string]string
	}{
		{1, true, map[string]string{"a": "", "b": "a", "c": "a b", "d": "a c", "e": "a d"}},
		{2, true, map[string]string{"a": "", "b": "a", "c": "a", "d": "a b", "e": "a c"}},
		{2, false, map[string]string{"a": "", "b": "", "c": "a", "d": "b", "e": "c"}},
		{8, false, map[string]string{"a": "", "b": "", "c": "", "d": "", "e": ""}},
		{1, false, map[string]string{"a": "", "b": "a", "c": "b", "d": "c", "e": "d"}},
	} {
		for s, want := range tc.want {
			got, err := Turn{Secret: s, Order: order, Parallelism: tc.p, Canary: tc.canary}.After()
			if err != nil || strings.Join(got, " ") != want {
				t.Errorf("p=%d canary=%v %s: after %q (%v), want %q", tc.p, tc.canary, s, got, err, want)
			}
		}
	}
	if _, err := (Turn{Secret: "z", Order: order, Parallelism: 1}).After(); err == nil {
		t.Errorf("a Secret not in the order: no error")
	}
}

// turn on the real API server: the first of the order goes at once; a later one
// waits for the TaskRuns before it (not for another task's, nor another run's);
// once a migrate TaskRun of the run has failed it says not to start, at once.
func TestClusterTurn(t *testing.T) {
	c := newCluster(t)
	run, other := c.pipelineRun("run-turn"), c.pipelineRun("run-other")
	turn := func(pr string, uid string, timeout time.Duration, args ...string) (int, map[string]string, string) {
		dir := t.TempDir()
		full := append([]string{"gate", "--skip-version-check", "--kubeconfig", c.kubeconfig, "--namespace", c.ns, "--poll-interval", "100ms",
			"--results-dir", dir, "--action", "turn", "--run-name", pr, "--run-uid", uid}, args...)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var out, errb bytes.Buffer
		code := step.Run(ctx, Spec(), full, &out, &errb)
		var sum results.Summary
		if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
			t.Fatalf("stdout is not the JSON summary: %q", out.String())
		}
		res := map[string]string{}
		files, _ := os.ReadDir(dir)
		for _, f := range files {
			b, _ := os.ReadFile(filepath.Join(dir, f.Name()))
			res[f.Name()] = string(b)
		}
		t.Logf("turn %v: exit %d %v %s", args, code, res, sum.Error)
		return code, res, sum.Error + errb.String()
	}
	uid := string(run.GetUID())
	order := []string{"a-db", "b-db", "c-db"}
	// the canary goes at once
	code, res, _ := turn("run-turn", uid, time.Minute, append([]string{"--database-secret", "a-db", "--parallelism", "1"}, order...)...)
	if code != 0 || res[ResultGo] != "true" {
		t.Errorf("the canary: exit %d %v, want go=true", code, res)
	}
	// A failed TaskRun of another task, and another run's failed migrate,
	// stop nothing: c-db waits for a-db and b-db until stopped (SIGTERM: 75).
	c.finishedTaskRunOf(run, "run-turn-rollback-0", "rollback", "b-db")
	c.finishedTaskRunOf(other, "run-other-migrate-0", "migrate", "b-db")
	start := time.Now()
	code, res, msg := turn("run-turn", uid, 2*time.Second, append([]string{"--database-secret", "c-db"}, order...)...)
	// stopped while it waits (a LIST the loaded API server answers late may be
	// what the stop interrupts): exit 75 and no go result, whatever it was doing
	if code != failure.CodeTransient || res[ResultGo] != "" || time.Since(start) < 2*time.Second {
		t.Errorf("c-db before a-db and b-db ran: exit %d %v %q after %s, want 75 once stopped", code, res, msg, time.Since(start))
	}
	// with parallelism 2, b-db goes once a-db (the canary) has: it still waits
	if code, res, msg := turn("run-turn", uid, time.Second, append([]string{"--database-secret", "b-db", "--parallelism", "2"}, order...)...); code != failure.CodeTransient || res[ResultGo] != "" {
		t.Errorf("b-db before the canary: exit %d %q, want 75", code, msg)
	}
	// once a migrate of the run has failed, no other starts
	c.finishedTaskRunOf(run, "run-turn-migrate-0", "migrate", "a-db")
	code, res, _ = turn("run-turn", uid, time.Minute, append([]string{"--database-secret", "c-db"}, order...)...)
	if code != 0 || res[ResultGo] != "false" || !strings.Contains(res[ResultWhy], "not started: the migrate of a-db failed") {
		t.Errorf("after a failed migrate: exit %d %v, want go=false naming a-db", code, res)
	}
	// A migrate TaskRun of a list that reports its failed migration as a line
	// (check-databases --action=migrate-line) succeeds, with the result failed:
	// no other starts either. One that reports failed=false does not stop it.
	lined := c.pipelineRun("run-lined")
	c.endedTaskRunOf(lined, "run-lined-migrate-0", "migrate", "a-db", true, map[string]string{"failed": "false"})
	code, res, _ = turn("run-lined", string(lined.GetUID()), time.Minute, append([]string{"--database-secret", "b-db"}, order...)...)
	if code != 0 || res[ResultGo] != "true" {
		t.Errorf("after a migrate that reported no failure: exit %d %v, want go=true", code, res)
	}
	c.endedTaskRunOf(lined, "run-lined-migrate-1", "migrate", "b-db", true, map[string]string{"failed": "true"})
	code, res, _ = turn("run-lined", string(lined.GetUID()), time.Minute, append([]string{"--database-secret", "c-db"}, order...)...)
	if code != 0 || res[ResultGo] != "false" || !strings.Contains(res[ResultWhy], "not started: the migrate of b-db failed") {
		t.Errorf("after a migrate that succeeded reporting failed=true: exit %d %v, want go=false naming b-db", code, res)
	}
	// A retry of c-db whose earlier attempt had its turn (and may have committed
	// part of its migrations) resumes it, although b-db failed since; one whose
	// earlier attempt never went does not start.
	c.endedTaskRunOf(lined, "run-lined-migrate-2", "migrate", "c-db", false, nil)
	c.retriedEarlier("run-lined-migrate-2", "true")
	code, res, _ = turn("run-lined", string(lined.GetUID()), time.Minute, append([]string{"--database-secret", "c-db"}, order...)...)
	if code != 0 || res[ResultGo] != "true" {
		t.Errorf("a retry whose earlier attempt went, after b-db failed: exit %d %v, want go=true (it resumes)", code, res)
	}
	c.retriedEarlier("run-lined-migrate-2", "false")
	code, res, _ = turn("run-lined", string(lined.GetUID()), time.Minute, append([]string{"--database-secret", "c-db"}, order...)...)
	if code != 0 || res[ResultGo] != "false" {
		t.Errorf("a retry whose earlier attempt did not go, after b-db failed: exit %d %v, want go=false", code, res)
	}
	// a succeeded TaskRun without its failed result (its termination message
	// cut by the kubelet, so Tekton kept no results) is not known to have
	// migrated: no other starts
	lost := c.pipelineRun("run-lost")
	c.endedTaskRunOf(lost, "run-lost-migrate-0", "migrate", "a-db", true, nil)
	code, res, _ = turn("run-lost", string(lost.GetUID()), time.Minute, append([]string{"--database-secret", "b-db"}, order...)...)
	if code != 0 || res[ResultGo] != "false" {
		t.Errorf("after a succeeded migrate without results: exit %d %v, want go=false", code, res)
	}
	// rollbacks keep going: a failed one (b-db) ends its turn and stops none
	c.endedTaskRunOf(lined, "run-lined-rollback-0", "rollback", "a-db", true, map[string]string{"failed": "false"})
	c.endedTaskRunOf(lined, "run-lined-rollback-1", "rollback", "b-db", true, map[string]string{"failed": "true"})
	code, res, _ = turn("run-lined", string(lined.GetUID()), time.Minute, append([]string{"--database-secret", "c-db", "--pipeline-task", "rollback", "--canary=false", "--keep-going"}, order...)...)
	if code != 0 || res[ResultGo] != "true" {
		t.Errorf("a rollback after a failed one, --keep-going: exit %d %v, want go=true", code, res)
	}
	code, res, _ = turn("run-lined", string(lined.GetUID()), time.Minute, append([]string{"--database-secret", "c-db", "--pipeline-task", "rollback", "--canary=false"}, order...)...)
	if code != 0 || res[ResultGo] != "false" {
		t.Errorf("a rollback after a failed one without --keep-going: exit %d %v, want go=false", code, res)
	}
	// a stopped run (StoppedRunFinally lets running TaskRuns finish, and a
	// waiting one is running) starts no migration: an attack on the real
	// Tekton saw the waiting ones migrate after the stop
	stopped := c.pipelineRun("run-stopped")
	patch := []byte(`{"spec":{"status":"StoppedRunFinally"}}`)
	if _, err := c.dyn.Resource(PipelineRuns).Namespace(c.ns).Patch(t.Context(), "run-stopped", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	code, res, _ = turn("run-stopped", string(stopped.GetUID()), time.Minute, append([]string{"--database-secret", "a-db"}, order...)...)
	if code != 0 || res[ResultGo] != "false" || !strings.Contains(res[ResultWhy], "the run was stopped (StoppedRunFinally)") {
		t.Errorf("a stopped run's canary: exit %d %v, want go=false", code, res)
	}
	// bad input: exit 2, nothing read
	for _, args := range [][]string{
		{"--database-secret", "z-db", "a-db"},
		{"--database-secret", "a-db", "a-db", "a-db"},
		{"--database-secret", "a-db", "--parallelism", "0", "a-db"},
		{"--database-secret", "a-db", "--pipeline-task", "Migrate", "a-db"},
	} {
		if code, _, msg := turn("run-turn", uid, time.Minute, args...); code != failure.CodeUsage {
			t.Errorf("%v: exit %d %q, want 2", args, code, msg)
		}
	}
	if code, _, msg := turn("run-turn", uid, time.Minute, "--database-secret", "a-db"); code != failure.CodeUsage || !strings.Contains(msg, "not in the order") {
		t.Errorf("no order: exit %d %q, want 2", code, msg)
	}
	if r := c.run(run, nil, "--action", "acquire", "a-db"); r.code != failure.CodeUsage || !strings.Contains(r.summary.Error, "were both given") {
		t.Errorf("acquire with --database-secret and a Secret after the flags: exit %d %q, want 2", r.code, r.summary.Error)
	}
}

// A turn's wait can last as long as the migrations before it: an API server
// that answers 503 for a while is waited out (it only reads) up to
// --outage-tolerance, then the step fails 75; a refusal (403) fails it at once.
// Before, the first 503 failed the step, and with it the run's waiting TaskRun.
func TestClusterTurnWaitsOutAnOutage(t *testing.T) {
	c := newCluster(t)
	c.noSecret = true
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		rule      faultproxy.Rule
		tolerance string
		want      int
		wantErr   string
	}{
		// three reads of the run answered 503, then the API server is back
		{faultproxy.Rule{Method: "GET", Path: "/pipelineruns/", Times: 3, Action: faultproxy.Status, Status: 503}, "10m", 0, ""},
		// every read of the TaskRuns answered 502: past the tolerance, 75
		{faultproxy.Rule{Method: "GET", Path: "/taskruns", Action: faultproxy.Status, Status: 502}, "2s", failure.CodeTransient, "has not answered for"},
		// a refusal is no outage
		{faultproxy.Rule{Method: "GET", Path: "/pipelineruns/", Times: 1, Action: faultproxy.Status, Status: 403}, "10m", failure.CodePermanent, "permission denied"},
	} {
		pr := c.pipelineRun(fmt.Sprintf("run-outage-%d", i))
		rule := tc.rule
		p := faultproxy.New(t, cfg, &rule)
		c.identity = c.env.WriteKubeconfig(t, p.Point)
		dir := t.TempDir()
		r := c.run(pr, nil, "--action", "turn", "--database-secret", "a-db", "--outage-tolerance", tc.tolerance, "--results-dir", dir, "a-db", "b-db")
		c.identity = ""
		goResult, _ := os.ReadFile(filepath.Join(dir, ResultGo))
		t.Logf("case %d %+v: exit %d go=%q: %s (hits %v)", i, tc.rule, r.code, goResult, r.summary.Error, p.Hits())
		if r.code != tc.want || !strings.Contains(r.summary.Error, tc.wantErr) {
			t.Errorf("case %d: exit %d %q, want %d with %q", i, r.code, r.summary.Error, tc.want, tc.wantErr)
		}
		if tc.want == 0 && string(goResult) != "true" {
			t.Errorf("case %d: go=%q after the outage, want true (the canary goes)", i, goResult)
		}
		if len(p.Hits()) == 0 {
			t.Errorf("case %d: the fault was never met", i)
		}
	}
}
