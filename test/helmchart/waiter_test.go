package helmchart

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/helmwait"
	"github.com/chartreuse-go/chartreuse/test/syncbuf"
)

// TestWaiterOnCluster runs pkg/helmwait against the real kube-apiserver with the runs
// the chart renders. No engine controller acts in the namespace: the test writes the
// runs' status as the controller would (Argo's phase; Tekton's Succeeded condition, on
// the status subresource), so each outcome is exercised exactly.
func TestWaiterOnCluster(t *testing.T) {
	env, _, dyn := withCRDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	type outcome struct {
		res helmwait.Result
		err error
	}
	for _, tc := range []struct {
		engine   string
		gvr      schema.GroupVersionResource
		sub      []string // the status subresource, if the CRD has one
		running  string   // status patches
		success  string
		failed   string
		failText string
		details  string
	}{
		{
			engine: "argo", gvr: schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"},
			// Waiting at the database's mutex held by another run, then plan running.
			running: `{"status":{"phase":"Running","message":"Waiting for ns/Mutex/chartreuse-shop-db lock","synchronization":{"mutex":{"waiting":[{"mutex":"ns/Mutex/chartreuse-shop-db","holder":"shop-chartreuse-2/shop-chartreuse-2-123"}]}},` +
				`"nodes":{"n1":{"id":"n1","name":"shop-chartreuse-3.plan","displayName":"plan","type":"Pod","phase":"Running","startedAt":"2026-01-01T00:00:01Z"},"n2":{"id":"n2","name":"shop-chartreuse-3.scale-down","displayName":"scale-down","type":"Skipped","phase":"Skipped","message":"when 'false' evaluated false","startedAt":"2026-01-01T00:00:02Z"}}}}`,
			success:  `{"status":{"phase":"Succeeded","nodes":{"n1":{"id":"n1","name":"shop-chartreuse-3.plan","displayName":"plan","type":"Pod","phase":"Succeeded","startedAt":"2026-01-01T00:00:01Z"}}}}`,
			failed:   `{"status":{"phase":"Failed","message":"child 'migrate' failed"}}`,
			failText: "ended Failed: child 'migrate' failed", details: "argo get -n ",
		},
		{
			engine: "tekton", gvr: schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelineruns"}, sub: []string{"status"},
			running:  `{"status":{"conditions":[{"type":"Succeeded","status":"Unknown","reason":"Running","message":"Tasks Completed: 2 (Failed: 0, Cancelled 0), Skipped: 0"}]}}`,
			success:  `{"status":{"conditions":[{"type":"Succeeded","status":"True","reason":"Succeeded","message":"Tasks Completed: 9 (Failed: 0, Cancelled 0), Skipped: 3"}]}}`,
			failed:   `{"status":{"conditions":[{"type":"Succeeded","status":"False","reason":"Failed","message":"Tasks Completed: 6 (Failed: 1, Cancelled 0), Skipped: 4"}]}}`,
			failText: "ended Failed: Tasks Completed: 6 (Failed: 1", details: "tkn pipelinerun describe -n ",
		},
	} {
		t.Run(tc.engine, func(t *testing.T) {
			ns := env.NewNamespace(t)
			_, runYAML := runOf(t, mustRender(t, ciValues(t, tc.engine)))
			if tc.engine == "tekton" {
				runYAML = pendingPipelineRun(t, runYAML)
			}
			run, err := helmwait.Parse(runYAML)
			if err != nil {
				t.Fatal(err)
			}
			var logBuf syncbuf.Buffer
			w := &helmwait.Waiter{Client: dyn, Namespace: ns, Log: slog.New(slog.NewTextHandler(&logBuf, nil)), HookUID: "job-uid-1"}
			ri := dyn.Resource(tc.gvr).Namespace(ns)
			patch := func(name, body string) {
				t.Helper()
				if _, err := ri.Patch(ctx, name, types.MergePatchType, []byte(body), metav1.PatchOptions{}, tc.sub...); err != nil {
					t.Fatalf("patch %s: %v", name, err)
				}
			}
			// patchEnd writes a run's final status. Another package's tests may run
			// Tekton's controller in the shared cluster, and it reconciles these
			// pending runs too: a reconcile that read the run before the patch writes
			// its own status (PipelineRunPending) over it afterwards. It leaves a
			// finished run alone, so patch again until the end reads back three
			// times in a row.
			patchEnd := func(name, body string) {
				t.Helper()
				var want map[string]map[string]any
				if err := yaml.Unmarshal([]byte(body), &want); err != nil {
					t.Fatal(err)
				}
				for kept := 0; kept < 3; {
					if kept == 0 {
						patch(name, body)
					}
					time.Sleep(300 * time.Millisecond)
					got, err := ri.Get(ctx, name, metav1.GetOptions{})
					if err != nil {
						t.Fatalf("reading %s back: %v", name, err)
					}
					status, _, _ := unstructured.NestedMap(got.Object, "status")
					same := true
					for _, k := range []string{"phase", "conditions"} {
						if w, ok := want["status"][k]; ok && !reflect.DeepEqual(normalise(t, w), normalise(t, status[k])) {
							same = false
						}
					}
					if same {
						kept++
					} else {
						t.Logf("%s: status overwritten (%v), patching again", name, status)
						kept = 0
					}
				}
			}
			// waitCreated waits (a watch would do no better here) until the waiter
			// has created the run.
			waitCreated := func(name string) {
				t.Helper()
				for {
					_, err := ri.Get(ctx, name, metav1.GetOptions{})
					if err == nil {
						return
					}
					if !apierrors.IsNotFound(err) || ctx.Err() != nil {
						t.Fatalf("%s not created: %v", name, err)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			start := func(revision int) chan outcome {
				done := make(chan outcome, 1)
				go func() {
					res, err := w.CreateAndWait(ctx, run, revision)
					done <- outcome{res, err}
				}()
				return done
			}

			// Revision 3 succeeds.
			name := run.Name(3)
			if name != "shop-chartreuse-3" {
				t.Errorf("run name %q, want shop-chartreuse-3", name)
			}
			done := start(3)
			waitCreated(name)
			patch(name, tc.running)
			patchEnd(name, tc.success)
			o := <-done
			if o.err != nil || !o.res.Succeeded || !o.res.Created {
				t.Fatalf("revision 3: %+v, %v; want succeeded, created", o.res, o.err)
			}

			// Argo: the log names the mutex's holder and each step as it starts, ends or
			// is skipped.
			if tc.engine == "argo" {
				for _, want := range []string{
					`msg="waiting for the database's mutex" mutex=ns/Mutex/chartreuse-shop-db holder=shop-chartreuse-2`,
					`msg="step started" step=plan`, `msg="step skipped" step=scale-down`, `msg="step ended" step=plan phase=Succeeded`,
				} {
					if !strings.Contains(logBuf.String(), want) {
						t.Errorf("the waiter's log does not say %s:\n%s", want, logBuf.String())
					}
				}
			}

			// Rerun of revision 3 (the hook's pod retried): nothing created, same result.
			o = <-start(3)
			if o.err != nil || !o.res.Succeeded || o.res.Created {
				t.Errorf("rerun of revision 3: %+v, %v; want succeeded, not created", o.res, o.err)
			}
			list, err := ri.List(ctx, metav1.ListOptions{LabelSelector: helmwait.RevisionLabel + "=3"})
			if err != nil {
				t.Fatalf("listing the runs of revision 3: %v", err)
			}
			if len(list.Items) != 1 {
				t.Errorf("runs of revision 3: %d, want 1", len(list.Items))
			}
			if got := list.Items[0].GetAnnotations()[helmwait.HookAnnotation]; got != "job-uid-1" {
				t.Errorf("run of revision 3: %s %q, want the hook Job's uid", helmwait.HookAnnotation, got)
			}

			// The hook of a later install of a release of the same name (Helm counts
			// revisions from 1 again after an uninstall; the runs stay): another
			// Job, the same name and revision. Following the old run would report
			// this install's migrations done without running them.
			reinstall := *w
			reinstall.HookUID = "job-uid-2"
			again, err := reinstall.CreateAndWait(ctx, run, 3)
			if err == nil || again.Succeeded || again.Created || failure.KindOf(err) != failure.Permanent ||
				!strings.Contains(err.Error(), "another hook Job created it") || !strings.Contains(err.Error(), "kubectl delete "+tc.gvr.Resource+" -n "+ns+" "+name) {
				t.Errorf("a reinstall's hook on revision 3: %+v, %v; want a permanent refusal naming the run and how to delete it", again, err)
			}

			// Revision 4 fails: a permanent error naming the run, its message and
			// where to look.
			done = start(4)
			waitCreated(run.Name(4))
			patch(run.Name(4), tc.running)
			patchEnd(run.Name(4), tc.failed)
			o = <-done
			if o.err == nil || o.res.Succeeded {
				t.Fatalf("revision 4: %+v, %v; want a failure", o.res, o.err)
			}
			for _, want := range []string{"shop-chartreuse-4", tc.failText, tc.details + ns} {
				if !strings.Contains(o.err.Error(), want) {
					t.Errorf("revision 4's error does not say %q: %v", want, o.err)
				}
			}
			if failure.KindOf(o.err) != failure.Permanent {
				t.Errorf("revision 4's error is %v, want permanent", failure.KindOf(o.err))
			}

			// A run of that name that another revision made is not followed.
			if _, err := ri.Patch(ctx, run.Name(4), types.MergePatchType, []byte(`{"metadata":{"labels":{"`+helmwait.RevisionLabel+`":"9"}}}`), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
			o = <-start(4)
			if o.err == nil || !strings.Contains(o.err.Error(), "not created for revision 4") || failure.KindOf(o.err) != failure.Permanent {
				t.Errorf("run shop-chartreuse-4 labelled for revision 9: %v, want a permanent refusal", o.err)
			}

			// A run deleted while followed is a permanent error.
			done = start(5)
			waitCreated(run.Name(5))
			if err := ri.Delete(ctx, run.Name(5), metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			o = <-done
			if o.err == nil || !strings.Contains(o.err.Error(), "deleted before it ended") || failure.KindOf(o.err) != failure.Permanent {
				t.Errorf("deleted run: %v, want a permanent error saying so", o.err)
			}
		})
	}
}

// TestCheckDeclaredOnCluster: the pre-upgrade check of pkg/helmwait against the
// WorkflowTemplate / Pipeline of workflowtemplates/ and tekton/ created on the real
// API server: none installed, the current one, and an earlier one without a parameter
// the chart sets.
func TestCheckDeclaredOnCluster(t *testing.T) {
	env, _, dyn := withCRDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, tc := range []struct {
		engine, key string
		gvr         schema.GroupVersionResource
		params      []string // path of the declared parameters
	}{
		{"argo", "WorkflowTemplate/chartreuse", schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflowtemplates"}, []string{"spec", "arguments", "parameters"}},
		{"tekton", "Pipeline/chartreuse", schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelines"}, []string{"spec", "params"}},
	} {
		t.Run(tc.engine, func(t *testing.T) {
			ns := env.NewNamespace(t)
			_, runYAML := runOf(t, mustRender(t, ciValues(t, tc.engine)))
			run, err := helmwait.Parse(runYAML)
			if err != nil {
				t.Fatal(err)
			}
			w := &helmwait.Waiter{Client: dyn, Namespace: ns, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}

			err = w.CheckDeclared(ctx, run)
			if err == nil || !strings.Contains(err.Error(), "is not installed in namespace "+ns) || failure.KindOf(err) != failure.Permanent {
				t.Errorf("nothing installed: %v, want a permanent error saying so", err)
			}

			def := sourceObjects(t, tc.engine)[tc.key].obj.DeepCopy()
			def.SetNamespace(ns)
			ri := dyn.Resource(tc.gvr).Namespace(ns)
			created, err := ri.Create(ctx, def, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.CheckDeclared(ctx, run); err != nil {
				t.Errorf("the current %s installed: %v", tc.key, err)
			}

			// An earlier release's definition, without risk-policy.
			params, _, _ := unstructured.NestedSlice(created.Object, tc.params...)
			var kept []any
			for _, p := range params {
				if p.(map[string]any)["name"] != "risk-policy" {
					kept = append(kept, p)
				}
			}
			if len(kept) != len(params)-1 {
				t.Fatalf("%s declares no risk-policy", tc.key)
			}
			if err := unstructured.SetNestedSlice(created.Object, kept, tc.params...); err != nil {
				t.Fatal(err)
			}
			if _, err := ri.Update(ctx, created, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			err = w.CheckDeclared(ctx, run)
			if err == nil || !strings.Contains(err.Error(), "does not declare the parameter(s) risk-policy that this chart version sets") || failure.KindOf(err) != failure.Permanent {
				t.Errorf("an earlier %s without risk-policy: %v, want a permanent refusal naming risk-policy", tc.key, err)
			}
		})
	}
}

// pendingPipelineRun marks the run PipelineRunPending. The test plays the
// controller by patching the run's status, and the Tekton controller, which
// watches every namespace (test/e2e installs it in the same cluster), would
// otherwise fail the run at once for its missing Pipeline. A pending run it
// only marks running until the test's patch ends it, and an ended run it
// leaves alone. (Argo's controller here watches its own namespace only.)
// normalise gives a JSON value one Go form (what unstructured holds), so that
// a patch's value and the one read back compare equal.
func normalise(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func pendingPipelineRun(t *testing.T, runYAML []byte) []byte {
	t.Helper()
	m := map[string]any{}
	if err := yaml.Unmarshal(runYAML, &m); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(m, "PipelineRunPending", "spec", "status"); err != nil {
		t.Fatal(err)
	}
	b, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
