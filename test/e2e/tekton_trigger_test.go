package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chartreuse-go/chartreuse/images/build"
	"github.com/chartreuse-go/chartreuse/test/engines"
)

// 7. Tag pushes through the project's Triggers on the real Tekton Triggers
// controller: the EventListener chartreuse (tekton/triggers/) runs as the
// controller makes it (a Deployment and the Service el-chartreuse), calls the
// core interceptors (github, gitlab, cel) over TLS and creates the
// PipelineRuns itself. Webhooks are sent over HTTP from this process to the
// endpoint of el-chartreuse, signed as GitHub signs them (X-Hub-Signature-256
// with the listener's secret) or with GitLab's token.
//
// The listener answers every webhook with 202 before its triggers run, and
// reports a refusal only in its log: the scenarios wait for that line
// (Triggers.Refusal) before concluding that a push started nothing.
//
// The pushes name a repository on the suite's git server as their clone URL,
// with the pushed tags on a commit holding db/migrations (the template's
// relative migrations-dir): the runs fetch the tag's commit themselves. The runs
// use the product image under the template's default reference (built from this
// tree and loaded into the node), as a cluster pulling the release would.
func (s *tektonSuite) testTagTrigger(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*runBound)
	defer cancel()
	var tr *engines.Triggers
	var trErr, imageErr error
	var wg sync.WaitGroup
	wg.Go(func() { tr, trErr = engines.InstallTriggers(ctx, s.tk, engines.TriggersOptions{}) })
	wg.Go(func() { imageErr = loadProductImage(ctx, t, s) })
	wg.Wait()
	if trErr != nil {
		t.Fatal(trErr)
	}
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- Triggers controller log:\n%s", tr.ControllerLog(context.Background(), 60))
			t.Logf("--- core interceptors log:\n%s", tr.InterceptorsLog(context.Background(), 60))
		}
	})
	// The application's repository, read by the runs of both scenarios below:
	// the tags they push all name one commit.
	repo := s.git.NewRepo(t, "example/shop")
	commit := repo.Commit(t, gitFiles("db/migrations", tektonSets["slow"]), "release")
	for _, tag := range []string{"v1.2.0", "v1.3.0", "v1.4.0"} {
		repo.Tag(t, tag, commit)
	}
	t.Run("refused-pushes-then-a-tag-runs", func(t *testing.T) {
		s.testTagPushes(t, tr, repo.URL(), commit)
	})
	t.Run("two-tags-at-once-run-one-after-the-other", func(t *testing.T) {
		s.testTwoTags(t, tr, repo.URL(), commit)
	})
}

const (
	webhookSecret = "s3cret-for-tests"
	gitlabToken   = "gitlab-token-for-tests"
	// emptyCommit is what GitLab sends as "after" for a deleted tag.
	emptyCommit = "0000000000000000000000000000000000000000"
	someCommit  = "0123456789abcdef0123456789abcdef01234567"
)

// loadProductImage builds the product image from this tree and loads it under
// the reference the TriggerTemplate defaults to.
func loadProductImage(ctx context.Context, t *testing.T, s *tektonSuite) error {
	t0 := time.Now()
	img, version, err := build.Image(ctx, s.tk.RepoDir, build.Options{})
	if err != nil {
		return err
	}
	ref := build.DefaultRef(version)
	tar := filepath.Join(t.TempDir(), "product.tar")
	if err := build.WriteTarball(img, ref, tar); err != nil {
		return err
	}
	if err := s.env.LoadImage(ctx, tar); err != nil {
		return err
	}
	t.Logf("tekton: image %s built and loaded in %s", ref, time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// triggerCase is a tektonCase with the listener's webhook Secret and its
// endpoint.
type triggerCase struct {
	*tektonCase
	tr    *engines.Triggers
	url   string // the listener's endpoint
	clone string // the clone URL the pushes carry
}

// newTriggerCase makes the case, checks the trigger objects as the Triggers
// webhook would, and waits for the listener.
func (s *tektonSuite) newTriggerCase(t *testing.T, tr *engines.Triggers, clone string) *triggerCase {
	t.Helper()
	c := &triggerCase{tektonCase: s.newCase(t, nil), tr: tr, clone: clone}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "chartreuse-webhook"}, StringData: map[string]string{"github": webhookSecret, "gitlab": gitlabToken}}
	if _, err := s.kube.CoreV1().Secrets(c.ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.validateTriggerObjects(t, ctx)
	// tekton/triggers/rbac.yaml's ClusterRoleBinding chartreuse-triggers has one
	// name on the whole cluster: every `kubectl apply -k tekton/` into another
	// namespace (the other scenarios here; a second application on a real
	// cluster) moves its subject there, and this namespace's listener loses the
	// cluster-wide reads it needs (ClusterInterceptors, ClusterTriggerBindings).
	// Until the manifests name it per namespace, the case binds its own.
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "chartreuse-triggers-" + c.ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "tekton-triggers-eventlistener-clusterroles"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "chartreuse-triggers", Namespace: c.ns}},
	}
	if _, err := s.kube.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.kube.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
	})
	var err error
	if c.url, err = tr.ListenerURL(ctx, c.ns, "chartreuse"); err != nil {
		t.Fatal(err)
	}
	return c
}

// validateTriggerObjects runs the validation the Triggers webhook (not
// installed) runs when the objects are applied.
func (c *triggerCase) validateTriggerObjects(t *testing.T, ctx context.Context) {
	t.Helper()
	api := c.s.tk.Triggers.TriggersV1beta1()
	el, err := api.EventListeners(c.ns).Get(ctx, "chartreuse", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := el.Validate(ctx); err != nil {
		t.Errorf("EventListener chartreuse is invalid: %v", err)
	}
	tt, err := api.TriggerTemplates(c.ns).Get(ctx, "chartreuse", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tt.Validate(ctx); err != nil {
		t.Errorf("TriggerTemplate chartreuse is invalid: %v", err)
	}
	for _, n := range []string{"chartreuse-github-tag", "chartreuse-gitlab-tag"} {
		tb, err := api.TriggerBindings(c.ns).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := tb.Validate(ctx); err != nil {
			t.Errorf("TriggerBinding %s is invalid: %v", n, err)
		}
	}
}

// webhook is a request a forge sends.
type webhook struct {
	body   []byte
	header http.Header
}

// githubPush is a GitHub push webhook of ref in repo (cloned from clone),
// signed with secret.
func githubPush(repo, clone, ref string, deleted bool, secret string) webhook {
	body, _ := json.Marshal(map[string]any{
		"ref": ref, "deleted": deleted, "created": !deleted, "after": someCommit,
		"repository": map[string]any{"full_name": repo, "clone_url": clone},
	})
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-GitHub-Event", "push")
	h.Set("X-GitHub-Delivery", "e2e")
	h.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	return webhook{body, h}
}

// gitlabPush is a GitLab tag push webhook of tag in project (cloned from
// clone), with token.
func gitlabPush(project, clone, tag, after, token string) webhook {
	body, _ := json.Marshal(map[string]any{
		"object_kind": "tag_push", "ref": "refs/tags/" + tag, "after": after,
		"project": map[string]any{"path_with_namespace": project, "git_http_url": clone},
	})
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-Gitlab-Event", "Tag Push Hook")
	h.Set("X-Gitlab-Token", token)
	return webhook{body, h}
}

// send posts w to the listener and returns its event ID.
func (c *triggerCase) send(t *testing.T, ctx context.Context, w webhook) string {
	t.Helper()
	id, err := engines.Send(ctx, c.url, w.body, w.header)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// refused waits for the listener to refuse trigger for event id and returns
// why.
func (c *triggerCase) refused(t *testing.T, ctx context.Context, id, trigger string) string {
	t.Helper()
	msg, err := c.tr.Refusal(ctx, c.ns, "chartreuse", id, trigger)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// pin pins the listener to example/shop and waits until the listener uses the
// pinned filter: it sends a validly signed push from another repository of the
// organisation until the refusal names the pinned repository (until then, the
// listener's informer may still hold the placeholder). That push is refused
// either way.
func (c *triggerCase) pin(t *testing.T, ctx context.Context) {
	t.Helper()
	pinTriggerRepository(t, c.s.tk, c.ns, "example/shop")
	for {
		id := c.send(t, ctx, githubPush("example/other", c.clone, "refs/tags/v1.2.0", false, webhookSecret))
		msg := c.refused(t, ctx, id, "github-tag")
		if strings.Contains(msg, "'example/shop'") {
			t.Logf("another repository: refused: %s", msg)
			return
		}
		if !strings.Contains(msg, unpinnedRepository) {
			t.Fatalf("another repository: refused for another reason: %s", msg)
		}
		select {
		case <-ctx.Done():
			t.Fatal("the listener never used the pinned filter")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// runOf waits for the PipelineRun the listener created for event id.
func (c *triggerCase) runOf(t *testing.T, ctx context.Context, id string) *pipelinev1.PipelineRun {
	t.Helper()
	var pr *pipelinev1.PipelineRun
	err := Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		l, err := c.s.tk.Pipeline.TektonV1().PipelineRuns(c.ns).List(ctx, metav1.ListOptions{LabelSelector: "triggers.tekton.dev/triggers-eventid=" + id})
		if err != nil || len(l.Items) == 0 {
			return false, err
		}
		if len(l.Items) > 1 {
			return false, fmt.Errorf("event %s created %d PipelineRuns", id, len(l.Items))
		}
		pr = &l.Items[0]
		return true, nil
	})
	if err != nil {
		t.Fatalf("no PipelineRun for event %s: %v", id, err)
	}
	return pr
}

func runParams(pr *pipelinev1.PipelineRun) map[string]string {
	params := map[string]string{}
	for _, p := range pr.Spec.Params {
		params[p.Name] = p.Value.StringVal
	}
	return params
}

// The listener as shipped refuses every push; pinned to example/shop it
// refuses a validly signed push from another repository (GitHub) or project
// (GitLab), tags outside the pattern v*, branch pushes, tag deletions and bad
// signatures or tokens; v1.2.0 (GitHub) then runs and migrates, and v1.3.0
// (GitLab), once it is done, runs and finds nothing pending.
func (s *tektonSuite) testTagPushes(t *testing.T, tr *engines.Triggers, clone, commit string) {
	c := s.newTriggerCase(t, tr, clone)
	ctx, cancel := context.WithTimeout(t.Context(), 2*runBound)
	defer cancel()

	id := c.send(t, ctx, githubPush("example/shop", c.clone, "refs/tags/v1.2.0", false, webhookSecret))
	if msg := c.refused(t, ctx, id, "github-tag"); !strings.Contains(msg, unpinnedRepository) {
		t.Errorf("unpinned listener: refused with %q, want its only-this-repository filter", msg)
	}
	c.pin(t, ctx)

	// Each is refused by the interceptor that should refuse it: want is a part
	// of its refusal (the CEL filters' own text for theirs).
	type push struct {
		what, trigger, want string
		w                   webhook
	}
	const (
		byTagCreation = "body.ref.startsWith('refs/tags/')"
		byPattern     = "extensions.tag.matches('^v.*$')"
	)
	gh := func(what, want, repo, ref string, deleted bool, secret string) push {
		return push{what, "github-tag", want, githubPush(repo, c.clone, ref, deleted, secret)}
	}
	gl := func(what, want, project, tag, after, token string) push {
		return push{"gitlab " + what, "gitlab-tag", want, gitlabPush(project, c.clone, tag, after, token)}
	}
	refused := []push{
		gh("branch push", byTagCreation, "example/shop", "refs/heads/main", false, webhookSecret),
		gh("bad signature", "signature", "example/shop", "refs/tags/v1.2.0", false, "wrong"),
		gh("tag release-v1.2.0", byPattern, "example/shop", "refs/tags/release-v1.2.0", false, webhookSecret),
		gh("tag 1.2.0", byPattern, "example/shop", "refs/tags/1.2.0", false, webhookSecret),
		gh("tag deletion", byTagCreation, "example/shop", "refs/tags/v1.2.0", true, webhookSecret),
		gl("another project", "body.project.path_with_namespace == 'example/shop'", "example/other", "v1.3.0", someCommit, gitlabToken),
		gl("wrong token", "Token", "example/shop", "v1.3.0", someCommit, "wrong"),
		gl("tag release-v1.3.0", byPattern, "example/shop", "release-v1.3.0", someCommit, gitlabToken),
		gl("tag deletion", byTagCreation, "example/shop", "v1.3.0", emptyCommit, gitlabToken),
	}
	ids := make([]string, len(refused))
	for i, p := range refused {
		ids[i] = c.send(t, ctx, p.w)
	}
	for i, p := range refused {
		msg := c.refused(t, ctx, ids[i], p.trigger)
		if !strings.Contains(msg, p.want) {
			t.Errorf("%s: refused with %q, want a refusal naming %q", p.what, msg, p.want)
		} else {
			t.Logf("%s: refused: %s", p.what, msg)
		}
	}

	// v1.2.0 from GitHub runs: plan fetches the tag's commit.
	pr := c.runOf(t, ctx, c.send(t, ctx, githubPush("example/shop", c.clone, "refs/tags/v1.2.0", false, webhookSecret)))
	params := runParams(pr)
	if params["git-revision"] != "v1.2.0" || params["git-url"] != c.clone || pr.Annotations["chartreuse.dev/git-revision"] != "v1.2.0" ||
		params["migrations-dir"] != "db/migrations" || params["database-secret"] != tektonSecret || params["workload-selector"] != c.app.Selector {
		t.Fatalf("PipelineRun %s: params %v annotations %v", pr.Name, params, pr.Annotations)
	}
	done, trs := c.wait(t, ctx, pr.Name)
	wantSucceeded(t, done, true)
	wantResults(t, trs, "plan", map[string]string{"pending": "true", "current-version": "0", "target-version": "3", "git-commit": commit})
	wantResults(t, trs, "migrate", map[string]string{"applied": "3", "current-version": "3"})
	wantParam(t, trs, "migrate", "git-commit", commit)
	if ws := done.Spec.Workspaces; len(ws) != 0 {
		t.Errorf("workspaces %+v, want none (plan fetches the tag itself)", ws)
	}
	c.wantVersions(t, 1, 2, 3)
	c.wantRestored(t)

	// v1.3.0 from GitLab, afterwards: nothing left to do.
	pr = c.runOf(t, ctx, c.send(t, ctx, gitlabPush("example/shop", c.clone, "v1.3.0", someCommit, gitlabToken)))
	if params := runParams(pr); params["git-revision"] != "v1.3.0" || params["git-url"] != c.clone {
		t.Errorf("gitlab: PipelineRun %s params %v", pr.Name, params)
	}
	done, trs = c.wait(t, ctx, pr.Name)
	wantSucceeded(t, done, true)
	wantResults(t, trs, "plan", map[string]string{"pending": "false", "current-version": "3", "git-commit": commit})
	if trs["migrate"] != nil {
		t.Errorf("gitlab run: migrate ran with nothing pending")
	}

	// Nothing else was started.
	l, err := s.tk.Pipeline.TektonV1().PipelineRuns(c.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 2 {
		var names []string
		for _, p := range l.Items {
			names = append(names, p.Name+" (event "+p.Labels["triggers.tekton.dev/triggers-eventid"]+")")
		}
		t.Errorf("PipelineRuns %v, want the two of the tags that run", names)
	}
}

// Two tags pushed at once (`git push --tags`): the listener starts two
// PipelineRuns for the same database at the same time, and they run one after
// the other: the second run's phases start after the first run's are over, so
// it plans against the migrated database and has nothing to do. Every
// migration (2 takes 8 s) is applied once.
func (s *tektonSuite) testTwoTags(t *testing.T, tr *engines.Triggers, clone, commit string) {
	c := s.newTriggerCase(t, tr, clone)
	ctx, cancel := context.WithTimeout(t.Context(), 2*runBound)
	defer cancel()
	c.pin(t, ctx)

	tags := []string{"v1.3.0", "v1.4.0"}
	ids := make([]string, len(tags))
	var wg sync.WaitGroup
	for i, tag := range tags {
		wg.Go(func() {
			w := githubPush("example/shop", c.clone, "refs/tags/"+tag, false, webhookSecret)
			id, err := engines.Send(ctx, c.url, w.body, w.header)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	type run struct {
		pr  *pipelinev1.PipelineRun
		trs map[string]*pipelinev1.TaskRun
	}
	runs := make([]run, len(ids))
	for i, id := range ids {
		pr := c.runOf(t, ctx, id)
		if got := runParams(pr)["git-revision"]; got != tags[i] {
			t.Errorf("event %s: PipelineRun %s for %s, want %s", id, pr.Name, got, tags[i])
		}
		runs[i].pr = pr
	}
	for i := range runs {
		runs[i].pr, runs[i].trs = c.wait(t, ctx, runs[i].pr.Name)
		wantSucceeded(t, runs[i].pr, true)
	}

	// The phases of each run, from the start of its first to the end of its
	// last: the two spans must not meet.
	span := func(r run) (start, end time.Time) {
		for _, n := range []string{"wait-for-db", "plan", "scale-down", "migrate", "scale-restore"} {
			tr := r.trs[n]
			if tr == nil || tr.Status.StartTime == nil || tr.Status.CompletionTime == nil {
				continue
			}
			if start.IsZero() || tr.Status.StartTime.Before(&metav1.Time{Time: start}) {
				start = tr.Status.StartTime.Time
			}
			if tr.Status.CompletionTime.After(end) {
				end = tr.Status.CompletionTime.Time
			}
		}
		return start, end
	}
	a0, a1 := span(runs[0])
	b0, b1 := span(runs[1])
	if a0.After(b0) {
		a0, a1, b0, b1 = b0, b1, a0, a1
		runs[0], runs[1] = runs[1], runs[0]
	}
	t.Logf("first run %s: %s to %s; second %s: %s to %s", runs[0].pr.Name, a0.Format(time.TimeOnly), a1.Format(time.TimeOnly),
		runs[1].pr.Name, b0.Format(time.TimeOnly), b1.Format(time.TimeOnly))
	if a0.IsZero() || b0.IsZero() || !b0.After(a1) {
		t.Errorf("the runs' phases overlap: the second began before the first was done")
	}
	wantResults(t, runs[0].trs, "migrate", map[string]string{"applied": "3", "current-version": "3"})
	wantResults(t, runs[1].trs, "plan", map[string]string{"pending": "false", "current-version": "3", "git-commit": commit})
	if runs[1].trs["scale-down"] != nil || runs[1].trs["migrate"] != nil {
		t.Errorf("the second run stopped the application or migrated with nothing pending")
	}
	c.wantVersions(t, 1, 2, 3)
	c.wantRestored(t)
	t.Logf("events %s", strconv.Quote(strings.Join(ids, " ")))
}

// unpinnedRepository is what tekton/triggers/eventlistener.yaml ships in its
// only-this-repository filters: no repository has that name.
const unpinnedRepository = "<owner>/<repository>"

// pinTriggerRepository does what a user does to the EventListener chartreuse in ns
// before exposing it: replace the placeholder repository in the only-this-repository
// filter of every trigger (GitHub and GitLab) with the repository's full name.
func pinTriggerRepository(t *testing.T, tk *engines.Tekton, ns, repo string) {
	t.Helper()
	els := tk.Triggers.TriggersV1beta1().EventListeners(ns)
	el, err := els.Get(t.Context(), "chartreuse", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pinned := 0
	for i := range el.Spec.Triggers {
		for _, ic := range el.Spec.Triggers[i].Interceptors {
			if ic.Name == nil || *ic.Name != "only-this-repository" {
				continue
			}
			for j := range ic.Params {
				var filter string
				if ic.Params[j].Name != "filter" || json.Unmarshal(ic.Params[j].Value.Raw, &filter) != nil || !strings.Contains(filter, unpinnedRepository) {
					continue
				}
				if ic.Params[j].Value.Raw, err = json.Marshal(strings.ReplaceAll(filter, unpinnedRepository, repo)); err != nil {
					t.Fatal(err)
				}
				pinned++
			}
		}
	}
	if pinned != 2 {
		t.Fatalf("EventListener chartreuse: pinned %d filters, want the GitHub and the GitLab one", pinned)
	}
	if _, err := els.Update(t.Context(), el, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("EventListener chartreuse pinned to %s", strconv.Quote(repo))
}
