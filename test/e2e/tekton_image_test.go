package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
)

// The only account of the suite's registry (s.reg).
const tektonRegistryUser, tektonRegistryPassword = "deploy", "e2e-registry-pw-4c8e1b7a"

// A wrong image: Tekton fails the first TaskRun (the gate) as soon as its pod
// reports ImagePullBackOff, naming the image; nothing else starts, and a run
// with the right image goes through next (the gate's Lease was never taken).
func (s *tektonSuite) testWrongImage(t *testing.T) {
	c := s.newCase(t, nil)
	const image = "chartreuse.local/no-such-image:0.0.0"
	start := time.Now()
	pr, trs := c.run(t, c.pipelineRun(t, "", map[string]string{"image": image}))
	took := time.Since(start)
	wantSucceeded(t, pr, false)
	gate := trs["gate"]
	if gate == nil {
		t.Fatalf("no gate TaskRun: %v", keys(trs))
	}
	cond := gate.Status.GetCondition(apis.ConditionSucceeded)
	if cond == nil || cond.Reason != string(pipelinev1.TaskRunReasonImagePullFailed) || !strings.Contains(cond.Message, image) {
		t.Errorf("gate: %+v, want %s naming %s", cond, pipelinev1.TaskRunReasonImagePullFailed, image)
	}
	for _, task := range append([]string{"wait-for-db"}, phases...) {
		if tr := trs[task]; tr != nil {
			t.Errorf("task %s ran after the gate failed to start", task)
		}
	}
	c.wantVersions(t)
	c.wantUntouched(t)
	t.Logf("the run with image %s failed after %s", image, took.Round(time.Second))

	pr, _ = c.run(t, c.pipelineRun(t, "", nil))
	wantSucceeded(t, pr, true)
	c.wantVersions(t, 1, 2, 3)
}

// Migrations from an image of their own: a data-only image holding tektonShop at
// /migrations, in the suite's registry (plain http on the bridge, basic auth), with
// the credentials in a kubernetes.io/dockerconfigjson Secret named by
// registry-credentials-secret. plan resolves the tag to the pushed digest (result
// migrations-digest) and is the only one to ask for the tag; migrate is given that
// digest and pulls by it. The password shows in no TaskRun log, and in no param or
// result of the runs.
func (s *tektonSuite) testMigrationsImage(t *testing.T) {
	c := s.newCase(t, nil)
	const repo, tag, secret = "shop-migrations", "1.0.0", "shop-registry"
	files := map[string]string{"README.md": "the shop's migrations\n"}
	for name, body := range tektonShop {
		files["migrations/"+name] = body
	}
	digest := s.reg.Push(t, repo, tag, files)

	// What `kubectl create secret docker-registry` writes.
	auth := base64.StdEncoding.EncodeToString([]byte(tektonRegistryUser + ":" + tektonRegistryPassword))
	config, err := json.Marshal(map[string]any{"auths": map[string]any{s.reg.Host(): map[string]string{
		"username": tektonRegistryUser, "password": tektonRegistryPassword, "auth": auth}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.kube.CoreV1().Secrets(c.ns).Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secret},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: config},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	ref := s.reg.Ref(repo, tag)
	pr, trs := c.run(t, c.pipelineRun(t, "", map[string]string{
		"migrations-image": ref, "migrations-dir": "/migrations",
		"registry-credentials-secret": secret, "insecure-registry": "true",
	}))
	wantSucceeded(t, pr, true)
	wantTasks(t, pr, trs, phases, nil, append([]string{"wait-for-db", "wait-patroni"}, allFinally...))
	wantResults(t, trs, "plan", map[string]string{"pending": "true", "current-version": "0", "target-version": "3",
		"migrations-digest": digest, "git-commit": ""})
	wantResults(t, trs, "migrate", map[string]string{"applied": "3", "current-version": "3"})
	wantParam(t, trs, "migrate", "migrations-image", ref)
	wantParam(t, trs, "migrate", "migrations-digest", digest)
	c.wantVersions(t, 1, 2, 3)
	c.wantRestored(t)

	// The files came from the registry, with the credentials: only plan asked for
	// the tag, and blobs were served to authenticated requests.
	tagAsked, blobs := 0, 0
	for _, r := range s.reg.Requests() {
		switch {
		case !strings.HasPrefix(r.Path, "/v2/"+repo+"/"):
		case strings.HasSuffix(r.Path, "/manifests/"+tag) && r.Status == http.StatusOK:
			tagAsked++
		case strings.Contains(r.Path, "/blobs/") && r.Status == http.StatusOK && r.Authorization:
			blobs++
		}
	}
	if tagAsked != 1 || blobs == 0 {
		t.Errorf("registry answered the tag %d times and %d authenticated blob requests: want the tag once (plan), blobs", tagAsked, blobs)
	}

	for task, tr := range trs {
		if logs := s.tk.TaskRunLogs(context.Background(), tr); strings.Contains(logs, tektonRegistryPassword) || strings.Contains(logs, auth) {
			t.Errorf("the registry password is in the log of %s", task)
		}
		if b, err := json.Marshal(tr); err != nil || strings.Contains(string(b), tektonRegistryPassword) || strings.Contains(string(b), auth) {
			t.Errorf("TaskRun %s: %v, or the registry password is in it", task, err)
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
