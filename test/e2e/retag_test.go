package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chartreuse-go/chartreuse/test/engines"
)

// retagImages builds two step images under one tag, as a release pipeline that
// pushes a tag again would: the first with migrations 1 and 2 at /migrations,
// the second with a third that plan never saw. It loads the first and returns
// a function that loads the second, moving the tag on the node.
func retagImages(t *testing.T, load func(ctx context.Context, tar string) error, ref string) (moveTag func()) {
	t.Helper()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	planned := MigrationSet{}
	for name, body := range shopSet {
		if !strings.HasPrefix(name, "00003") {
			planned[name] = body
		}
	}
	pushedAgain := MigrationSet{"00003_unplanned.sql": LoggedMigration("3", "unplanned")}
	for name, body := range planned {
		pushedAgain[name] = body
	}
	first, err := BuildTestImage(ctx, repo, t.TempDir(), ref, planned, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := BuildTestImage(ctx, repo, t.TempDir(), ref, pushedAgain, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := load(ctx, first); err != nil {
		t.Fatal(err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := load(ctx, second); err != nil {
			t.Error(err)
		}
	}
}

// The step image's tag is pushed again, with a migration more, while
// scale-down waits: migrate's pod (IfNotPresent) starts from the new image,
// and applies only the migrations plan judged. Before migrate was given plan's
// target-version and files-digest it applied the third too, unjudged (with
// stop-workloads=auto, against the running application).
func (s *argoSuite) testImageTagPushedAgain(t *testing.T) {
	const ref = "chartreuse.local/chartreuse-e2e:retag-argo"
	moveTag := retagImages(t, s.env.LoadImage, ref)
	c := s.newCase(t, "retag")
	_, release := holdPod(t, s.kube, c.app)
	wf := c.submit(t, "", map[string]string{"image": ref})
	var once sync.Once
	wf = c.wait(t, wf, func(w *wfv1.Workflow) {
		if n, ok := engines.ArgoNodeByName(w, "scale-down"); ok && n.Phase == wfv1.NodeRunning {
			once.Do(func() {
				moveTag()
				t.Log("the image's tag moved to the one with migration 3 while scale-down waits")
				release()
			})
		}
	})
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantVersions(t, c.versions(t), 1, 2)
	wantGlobalOutput(t, wf, "planned-target", "2")
	c.wantRestored(t)
}

// The same on Tekton: migrate's TaskRun is given plan's target-version and
// files-digest, and applies only migrations 1 and 2 from the image pushed again.
func (s *tektonSuite) testImageTagPushedAgain(t *testing.T) {
	const ref = "chartreuse.local/chartreuse-e2e:retag-tekton"
	moveTag := retagImages(t, s.env.LoadImage, ref)
	c := s.newCase(t, nil)
	_, release := holdPod(t, s.kube, c.app)
	ctx, cancel := context.WithTimeout(t.Context(), runBound)
	defer cancel()
	created, err := s.tk.CreatePipelineRun(ctx, c.ns, c.pipelineRun(t, "", map[string]string{"image": ref, "migrations-dir": "/migrations"}))
	if err != nil {
		t.Fatal(err)
	}
	for {
		pods, err := s.kube.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{
			LabelSelector: "tekton.dev/pipelineRun=" + created.Name + ",tekton.dev/pipelineTask=scale-down"})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("scale-down never started")
		case <-time.After(500 * time.Millisecond):
		}
	}
	moveTag()
	t.Log("the image's tag moved to the one with migration 3 while scale-down waits")
	release()
	pr, trs := c.wait(t, ctx, created.Name)
	wantSucceeded(t, pr, true)
	wantResults(t, trs, "plan", map[string]string{"target-version": "2"})
	wantParam(t, trs, "migrate", "planned-target", "2")
	wantResults(t, trs, "migrate", map[string]string{"applied": "2", "target-version": "2"})
	c.wantVersions(t, 1, 2)
}
