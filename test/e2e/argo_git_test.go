package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chartreuse-go/chartreuse/test/engines"
	"github.com/chartreuse-go/chartreuse/test/gitserver"
	"github.com/chartreuse-go/chartreuse/test/registry"
)

// The git path on Argo: migrations fetched by the steps themselves from a real
// git server (git http-backend) on the cluster bridge, which the pods reach.

// gitShop is the shop's repository: db/migrations holds 1–2 at the first commit
// (tag v1.0.0), 1–3 at the second (main's tip), next to files the run must not
// need.
type gitShop struct {
	repo           *gitserver.Repo
	first, second  string // commit SHAs
	migrationsPath string
}

func shopCommits(t *testing.T, repo *gitserver.Repo) gitShop {
	t.Helper()
	two := map[string]string{
		"README.md":                           "the shop\n",
		"web/index.html":                      "<p>shop</p>\n",
		"db/migrations/00001_customers.sql":   LoggedMigration("1", "customers"),
		"db/migrations/00002_orders.sql":      LoggedMigration("2", "orders"),
		"db/migrations/README.md":             "goose migrations\n",
		"db/other/00009_not_these.sql":        "-- +goose Up\nSELECT broken;\n",
		"deploy/chart/templates/shop.yaml":    "kind: Deployment\n",
		"deploy/chart/templates/service.yaml": "kind: Service\n",
	}
	first := repo.Commit(t, two, "release 1.0.0")
	repo.Tag(t, "v1.0.0", first)
	three := map[string]string{"db/migrations/00003_invoices.sql": LoggedMigration("3", "invoices")}
	for k, v := range two {
		three[k] = v
	}
	second := repo.Commit(t, three, "release 1.1.0")
	return gitShop{repo: repo, first: first, second: second, migrationsPath: "db/migrations"}
}

func (c *argoCase) gitParams(url, revision string, extra map[string]string) map[string]string {
	p := map[string]string{"git-url": url, "git-revision": revision, "migrations-dir": "db/migrations"}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

func wantGlobalOutput(t *testing.T, wf *wfv1.Workflow, name, want string) {
	t.Helper()
	if got := engines.ArgoOutputs(wf)[name]; got != want {
		t.Errorf("workflow output %s = %q, want %q", name, got, want)
	}
}

// A tag, a bare commit SHA that is no branch's tip, and a tag moved while the
// run is between plan and migrate: every step reads the commit plan resolved.
func (s *argoSuite) testGitRevisions(t *testing.T) {
	srv := s.git
	shop := shopCommits(t, srv.NewRepo(t, "shop-revisions.git"))

	t.Run("tag", func(t *testing.T) {
		c := s.newCase(t, "git-tag")
		wf := c.run(t, "", c.gitParams(shop.repo.URL(), "v1.0.0", nil))
		wantPhase(t, wf, wfv1.WorkflowSucceeded)
		wantOutputs(t, wf, "plan", map[string]string{"pending": "true", "git-commit": shop.first})
		wantGlobalOutput(t, wf, "git-commit", shop.first)
		wantVersions(t, c.versions(t), 1, 2)
		evs, err := s.kube.CoreV1().Events(s.argo.Namespace).List(t.Context(), metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + c.app.Name + ",reason=ScaledDownForMigration"})
		if err != nil || len(evs.Items) != 1 || !strings.Contains(evs.Items[0].Message, "git commit "+shop.first) {
			t.Errorf("ScaledDownForMigration Events of %s: %v %+v, want one naming commit %s", c.app.Name, err, evs, shop.first)
		}
	})
	t.Run("bare-sha", func(t *testing.T) {
		c := s.newCase(t, "git-sha")
		wf := c.run(t, "", c.gitParams(shop.repo.URL(), shop.first, nil))
		wantPhase(t, wf, wfv1.WorkflowSucceeded)
		wantGlobalOutput(t, wf, "git-commit", shop.first)
		wantVersions(t, c.versions(t), 1, 2)
	})
	t.Run("branch", func(t *testing.T) {
		c := s.newCase(t, "git-branch")
		wf := c.run(t, "", c.gitParams(shop.repo.URL(), "main", nil))
		wantPhase(t, wf, wfv1.WorkflowSucceeded)
		wantGlobalOutput(t, wf, "git-commit", shop.second)
		wantVersions(t, c.versions(t), 1, 2, 3)
	})
	t.Run("tag-moved-during-the-run", func(t *testing.T) {
		moving := shopCommits(t, srv.NewRepo(t, "shop-moving.git"))
		moving.repo.Tag(t, "release", moving.first)
		c := s.newCase(t, "git-moved")
		// One of the application's pods stays terminating until released, so
		// scale-down waits: the tag moves while the run is between plan and
		// migrate, whatever the timing of the pods.
		_, release := holdPod(t, s.kube, c.app)
		wf := c.submit(t, "", c.gitParams(moving.repo.URL(), "release", nil))
		var once sync.Once
		wf = c.wait(t, wf, func(w *wfv1.Workflow) {
			if n, ok := engines.ArgoNodeByName(w, "scale-down"); ok && n.Phase == wfv1.NodeRunning {
				once.Do(func() {
					moving.repo.MoveTag(t, "release", moving.second)
					t.Logf("moved tag release to %s while scale-down waits", moving.second)
					release()
				})
			}
		})
		wantPhase(t, wf, wfv1.WorkflowSucceeded)
		wantGlobalOutput(t, wf, "git-commit", moving.first)
		// plan saw 1–2; the tag now has 3 as well, but the run applies what it planned
		wantVersions(t, c.versions(t), 1, 2)
		wantOutputs(t, wf, "migrate", map[string]string{"applied": "2"})
	})
}

// A private repository: without credentials plan fails (exit 1, not retried)
// before anything is stopped; with the Secret the run succeeds; a revision the
// server does not have fails plan the same way, naming it.
func (s *argoSuite) testGitPrivate(t *testing.T) {
	srv := s.git
	const token = "glpat-Zq8xv1Tk3mW9"
	shop := shopCommits(t, srv.NewRepo(t, "shop-private.git", gitserver.WithToken("deploy", token)))
	c := s.newCase(t, "git-private")
	const secret = "git-private-credentials"
	params := c.gitParams(shop.repo.URL(), "v1.0.0", map[string]string{"git-credentials-secret": secret})

	refused := func(t *testing.T, wf *wfv1.Workflow, words ...string) {
		t.Helper()
		wantPhase(t, wf, wfv1.WorkflowFailed)
		if a := engines.ArgoAttempts(wf, "plan"); len(a) != 1 || a[0].ExitCode != "1" {
			t.Errorf("plan attempts %+v, want one with exit code 1 (retrying cannot help)", a)
		}
		notRun(t, wf, "scale-down", "migrate")
		c.wantRestored(t) // never stopped: running, no record
		logs := s.argo.StepLogs(context.Background(), wf, 50)
		for _, w := range words {
			if !strings.Contains(strings.ToLower(logs), strings.ToLower(w)) {
				t.Errorf("plan's log does not say %q:\n%s", w, logs)
			}
		}
		if strings.Contains(logs, token) {
			t.Errorf("the token is in the step logs")
		}
	}
	t.Run("no-credentials", func(t *testing.T) {
		wf := c.run(t, "", params)
		refused(t, wf, "authentication")
		wantVersions(t, c.versions(t))
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := s.kube.CoreV1().Secrets(s.argo.Namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secret},
		StringData: map[string]string{"username": "deploy", "token": token},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("wrong-revision", func(t *testing.T) {
		wf := c.run(t, "", c.gitParams(shop.repo.URL(), "v9.9.9", map[string]string{"git-credentials-secret": secret}))
		refused(t, wf, "v9.9.9")
		wantVersions(t, c.versions(t))
	})
	t.Run("with-the-secret", func(t *testing.T) {
		wf := c.run(t, "", params)
		wantPhase(t, wf, wfv1.WorkflowSucceeded)
		wantGlobalOutput(t, wf, "git-commit", shop.first)
		wantVersions(t, c.versions(t), 1, 2)
		if b, err := json.Marshal(wf); err == nil && strings.Contains(string(b), token) {
			t.Errorf("the token is in the Workflow object")
		}
	})
}

// A wrong image fails the run at pull-image within image-pull-timeout (a
// single-phase rerun too), before anything is stopped, and frees the database's
// mutex: the next run starts.
func (s *argoSuite) testWrongImage(t *testing.T) {
	c := s.newCase(t, "wrong-image")
	const image = "chartreuse.local/no-such-image:0.0.0"
	start := time.Now()
	// 60s: on a node loaded by the other tests, the kubelet may not have tried the
	// pull (the Warning naming the image) within 30s of admitting the pod.
	wf := c.run(t, "", map[string]string{"image": image, "image-pull-timeout": "60s"})
	took := time.Since(start)
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantNodes(t, wf, map[string]wfv1.NodePhase{"pull-image": wfv1.NodeFailed})
	notRun(t, wf, "wait-for-db", "plan", "scale-down", "migrate")
	c.wantRestored(t)
	t.Logf("the run with image %s failed after %s", image, took.Round(time.Second))
	pods, err := s.argo.NodePods(t.Context(), wf.Name, "pull-image")
	if err != nil || len(pods) != 1 {
		t.Fatalf("pull-image pods: %v (%d)", err, len(pods))
	}
	evs, err := s.kube.CoreV1().Events(s.argo.Namespace).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pods[0].Name})
	if err != nil {
		t.Fatal(err)
	}
	named, pulled := false, false
	for _, e := range evs.Items {
		named = named || (e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, image))
		pulled = pulled || e.Reason == "Pulling"
	}
	switch {
	case named:
	case pulled:
		t.Errorf("no Warning Event of pod %s names the image %s: %+v", pods[0].Name, image, evs.Items)
	default:
		// A node loaded by the other test packages may not have started the
		// pod's sandbox before its deadline: no pull was tried, nothing to name.
		t.Logf("pod %s: its deadline came before the kubelet tried the pull (no Pulling Event)", pods[0].Name)
	}
	// A single-phase rerun pulls first too: migrate and rollback have no pod
	// deadline, and used to wait in ImagePullBackOff holding the mutex until argo stop.
	for entry, params := range map[string]map[string]string{
		"migrate":  {"image": image, "image-pull-timeout": "30s"},
		"rollback": {"image": image, "image-pull-timeout": "30s", "down-to": "0"},
	} {
		start := time.Now()
		wf := c.run(t, entry, params)
		wantPhase(t, wf, wfv1.WorkflowFailed)
		wantNodes(t, wf, map[string]wfv1.NodePhase{"pull-image": wfv1.NodeFailed})
		notRun(t, wf, entry)
		t.Logf("--entrypoint %s with image %s failed after %s", entry, image, time.Since(start).Round(time.Second))
	}
	// The mutex is free: a run with the right image goes through.
	wf = c.run(t, "", nil)
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
}

// Migrations from an image of their own: a data-only image in a private,
// plain-http registry on the bridge. plan resolves the tag to a digest; the tag
// moved while scale-down waits changes nothing; the password shows nowhere.
func (s *argoSuite) testMigrationsImage(t *testing.T) {
	const user, password = "deploy", "Reg1stry-Pw-7fQ2"
	reg := registry.Start(t, net.JoinHostPort(s.env.BridgeIP, "0"), registry.WithHtpasswd(user, password))
	layer := func(set MigrationSet) map[string]string {
		files := map[string]string{}
		for name, body := range set {
			files["migrations/"+name] = body
		}
		return files
	}
	two := MigrationSet{}
	for name, body := range shopSet {
		if !strings.HasPrefix(name, "00003") {
			two[name] = body
		}
	}
	first := reg.Push(t, "shop-migrations", "1.0.0", layer(two))

	c := s.newCase(t, "migrations-image")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	config := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Host(), auth)
	if _, err := s.kube.CoreV1().Secrets(s.argo.Namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "migrations-image-registry"},
		Type:       corev1.SecretTypeDockerConfigJson,
		StringData: map[string]string{corev1.DockerConfigJsonKey: config},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, release := holdPod(t, s.kube, c.app)
	wf := c.submit(t, "", map[string]string{
		"migrations-image": reg.Ref("shop-migrations", "1.0.0"), "migrations-dir": "/migrations",
		"registry-credentials-secret": "migrations-image-registry", "insecure-registry": "true",
	})
	var once sync.Once
	wf = c.wait(t, wf, func(w *wfv1.Workflow) {
		if n, ok := engines.ArgoNodeByName(w, "scale-down"); ok && n.Phase == wfv1.NodeRunning {
			once.Do(func() {
				moved := reg.Push(t, "shop-migrations", "1.0.0", layer(shopSet))
				t.Logf("tag 1.0.0 moved to %s while scale-down waits", moved)
				release()
			})
		}
	})
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantGlobalOutput(t, wf, "migrations-digest", first)
	wantVersions(t, c.versions(t), 1, 2)
	if logs := s.argo.StepLogs(context.Background(), wf, 200); strings.Contains(logs, password) || strings.Contains(logs, auth) {
		t.Errorf("the registry password is in the step logs")
	}
	if b, err := json.Marshal(wf); err == nil && (strings.Contains(string(b), password) || strings.Contains(string(b), auth)) {
		t.Errorf("the registry password is in the Workflow object")
	}
}

// The exit handler's rollback reads the commit plan resolved too: the tag is
// moved, while scale-down waits, to a commit whose migration 2 cannot be rolled
// back; the rollback still runs the Down of the planned commit and succeeds.
func (s *argoSuite) testGitRollback(t *testing.T) {
	repo := s.git.NewRepo(t, "shop-rollback.git")
	planned := map[string]string{}
	for name, body := range argoSets["fails-second"] {
		planned["db/migrations/"+name] = body
	}
	first := repo.Commit(t, planned, "release 1.2.0")
	moved := map[string]string{}
	for k, v := range planned {
		moved[k] = v
	}
	moved["db/migrations/00002_orders.sql"] = "-- +goose Up\nCREATE TABLE orders (id int);\n-- +goose Down\nSELECT no_such_column_for_a_rollback;\n"
	second := repo.Commit(t, moved, "a Down that fails")
	repo.Tag(t, "release", first)

	c := s.newCase(t, "git-rollback")
	if err := c.db.MigrateTo(t.Context(), argoSets["fails-second"], 1); err != nil {
		t.Fatal(err)
	}
	_, release := holdPod(t, s.kube, c.app)
	wf := c.submit(t, "", c.gitParams(repo.URL(), "release", map[string]string{"on-migrate-failure": "rollback"}))
	var once sync.Once
	wf = c.wait(t, wf, func(w *wfv1.Workflow) {
		if n, ok := engines.ArgoNodeByName(w, "scale-down"); ok && n.Phase == wfv1.NodeRunning {
			once.Do(func() {
				repo.MoveTag(t, "release", second)
				release()
			})
		}
	})
	wantPhase(t, wf, wfv1.WorkflowFailed)
	wantNodes(t, wf, map[string]wfv1.NodePhase{
		"migrate": wfv1.NodeFailed, "rollback": wfv1.NodeSucceeded, "restore-after-rollback": wfv1.NodeSucceeded,
	})
	wantGlobalOutput(t, wf, "git-commit", first)
	wantVersions(t, c.versions(t), 1)
	if ok, _ := c.db.TableExists(t.Context(), "orders"); ok {
		t.Error("table orders (migration 2) survived the rollback")
	}
	c.wantRestored(t)
}
