package e2e

import (
	"context"
	"net/http"
	"path"
	"strings"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chartreuse-go/chartreuse/test/engines"
	"github.com/chartreuse-go/chartreuse/test/gitserver"
)

// Migrations from git on Tekton: the PipelineRun names a repository on the
// suite's git server (on the cluster bridge) and a revision; plan fetches the
// migrations directory at that revision's commit itself and reports the commit
// (result git-commit), and the later tasks are given it. No workspace, no clone
// Task.

// gitFiles places a migration set under dir, as a commit's files.
func gitFiles(dir string, set MigrationSet) map[string]string {
	files := map[string]string{"README.md": "the application\n"}
	for name, body := range set {
		files[path.Join(dir, name)] = body
	}
	return files
}

// tektonGitParams are the PipelineRun params that take the migrations from url at rev.
func tektonGitParams(url, rev string) map[string]string {
	return map[string]string{"git-url": url, "git-revision": rev, "migrations-dir": "db/migrations"}
}

// wantParam checks a param of a pipeline task's TaskRun, as the controller
// resolved it.
func wantParam(t *testing.T, trs map[string]*pipelinev1.TaskRun, task, name, want string) {
	t.Helper()
	tr := trs[task]
	if tr == nil {
		t.Errorf("no TaskRun for %s", task)
		return
	}
	for _, p := range tr.Spec.Params {
		if p.Name == name {
			if p.Value.StringVal != want {
				t.Errorf("%s param %s = %q, want %q", task, name, p.Value.StringVal, want)
			}
			return
		}
	}
	t.Errorf("%s: no param %s, want %q", task, name, want)
}

// A tag: v1.0.0 holds migrations 1 and 2; main has moved on to a broken 3 since.
// The run applies the tag's two, plan's git-commit is the tag's commit, and
// migrate and scale-down were given that commit (the Event names it).
func (s *tektonSuite) testGitTag(t *testing.T) {
	c := s.newCase(t, nil)
	repo := s.git.NewRepo(t, "tag-"+c.ns)
	release := MigrationSet{"00001_items.sql": tektonShop["00001_items.sql"], "00002_prices.sql": tektonShop["00002_prices.sql"]}
	v1 := repo.Commit(t, gitFiles("db/migrations", release), "release 1.0.0")
	repo.Tag(t, "v1.0.0", v1)
	repo.Commit(t, gitFiles("db/migrations", tektonSets["broken"]), "work in progress")

	pr, trs := c.run(t, c.pipelineRun(t, "", tektonGitParams(repo.URL(), "v1.0.0")))
	wantSucceeded(t, pr, true)
	wantTasks(t, pr, trs, phases, nil, append([]string{"wait-for-db", "wait-patroni"}, allFinally...))
	wantResults(t, trs, "plan", map[string]string{"pending": "true", "current-version": "0", "target-version": "2", "git-commit": v1})
	wantResults(t, trs, "migrate", map[string]string{"applied": "2", "current-version": "2"})
	wantParam(t, trs, "migrate", "git-commit", v1)
	if len(pr.Spec.Workspaces) != 0 {
		t.Errorf("workspaces %+v: the example binds none", pr.Spec.Workspaces)
	}
	c.wantVersions(t, 1, 2)
	c.wantRestored(t)
	// scale-down was given the commit too: its Event names it.
	evs, err := s.kube.CoreV1().Events(c.ns).List(t.Context(), metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + c.app.Name + ",reason=ScaledDownForMigration"})
	if err != nil || len(evs.Items) != 1 || !strings.Contains(evs.Items[0].Message, "git commit "+v1) {
		t.Errorf("ScaledDownForMigration Events of %s: %v %+v, want one naming commit %s", c.app.Name, err, evs, v1)
	}
}

// A private repository: without the credentials Secret the fetch is refused and
// plan fails (exit 1 in each attempt) before anything is stopped; with the
// Secret chartreuse-git-credentials (token and username, the param's default
// name) the next run fetches the tag and migrates. The token shows in no step's
// log.
func (s *tektonSuite) testGitPrivate(t *testing.T) {
	c := s.newCase(t, nil)
	const user, token = "deploy", "e2e-git-token-7f3a9c1d"
	name := "private-" + c.ns + ".git"
	repo := s.git.NewRepo(t, name, gitserver.WithToken(user, token))
	// answered counts the server's answers to this repository's requests, by status.
	answered := func() map[int]int {
		out := map[int]int{}
		for _, r := range s.git.Requests() {
			if r.Repo == name {
				out[r.Status]++
			}
		}
		return out
	}
	commit := repo.Commit(t, gitFiles("db/migrations", tektonShop), "release 1.4.0")
	repo.Tag(t, "v1.4.0", commit)
	params := tektonGitParams(repo.URL(), "v1.4.0")

	pr, trs := c.run(t, c.pipelineRun(t, "", params))
	wantSucceeded(t, pr, false)
	wantTasks(t, pr, trs, nil, []string{"plan"}, nil)
	if codes := engines.StepExitCodes(trs["plan"]); strings.Join(codes, " ") != "plan=1 plan=1 plan=1" {
		t.Errorf("plan exit codes %v, want three attempts with 1 (refused: permanent)", codes)
	}
	if a := answered(); a[http.StatusUnauthorized] == 0 || a[http.StatusOK] != 0 {
		t.Errorf("the server answered %v without the Secret, want only 401s", a)
	}
	c.wantVersions(t)
	c.wantUntouched(t)

	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "chartreuse-git-credentials"},
		StringData: map[string]string{"username": user, "token": token},
	}
	if _, err := s.kube.CoreV1().Secrets(c.ns).Create(t.Context(), sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pr, trs = c.run(t, c.pipelineRun(t, "", params))
	wantSucceeded(t, pr, true)
	wantTasks(t, pr, trs, phases, nil, append([]string{"wait-for-db", "wait-patroni"}, allFinally...))
	wantResults(t, trs, "plan", map[string]string{"pending": "true", "current-version": "0", "target-version": "3", "git-commit": commit})
	wantResults(t, trs, "migrate", map[string]string{"applied": "3", "current-version": "3"})
	wantParam(t, trs, "migrate", "git-commit", commit)
	if a := answered(); a[http.StatusOK] == 0 {
		t.Errorf("the server answered %v with the Secret, want 200s", a)
	}
	c.wantVersions(t, 1, 2, 3)
	c.wantRestored(t)
	for task, tr := range trs {
		if logs := s.tk.TaskRunLogs(context.Background(), tr); strings.Contains(logs, token) {
			t.Errorf("the token is in the log of %s", task)
		}
	}
}

// A revision the repository does not have: plan fails with exit 1 in every
// attempt, nothing is stopped or migrated.
func (s *tektonSuite) testGitWrongRevision(t *testing.T) {
	c := s.newCase(t, nil)
	repo := s.git.NewRepo(t, "wrong-"+c.ns)
	repo.Tag(t, "v1.0.0", repo.Commit(t, gitFiles("db/migrations", tektonShop), "release 1.0.0"))

	pr, trs := c.run(t, c.pipelineRun(t, "", tektonGitParams(repo.URL(), "v9.9.9")))
	wantSucceeded(t, pr, false)
	wantTasks(t, pr, trs, nil, []string{"plan"}, nil)
	if codes := engines.StepExitCodes(trs["plan"]); strings.Join(codes, " ") != "plan=1 plan=1 plan=1" {
		t.Errorf("plan exit codes %v, want three attempts with 1 (a wrong revision is permanent)", codes)
	}
	c.wantVersions(t)
	c.wantUntouched(t)
	c.wantRestored(t)
}

// A bare commit SHA that is no branch's tip, and a tag moved while the run
// waits in scale-down: the run reads the commit plan resolved, nothing else.
func (s *tektonSuite) testGitRevisions(t *testing.T) {
	two := MigrationSet{"00001_items.sql": tektonShop["00001_items.sql"], "00002_prices.sql": tektonShop["00002_prices.sql"]}
	t.Run("bare-sha", func(t *testing.T) {
		c := s.newCase(t, nil)
		repo := s.git.NewRepo(t, "sha-"+c.ns)
		first := repo.Commit(t, gitFiles("db/migrations", two), "release 1.0.0")
		repo.Commit(t, gitFiles("db/migrations", tektonShop), "release 1.1.0")
		pr, trs := c.run(t, c.pipelineRun(t, "", tektonGitParams(repo.URL(), first)))
		wantSucceeded(t, pr, true)
		wantResults(t, trs, "plan", map[string]string{"git-commit": first, "target-version": "2"})
		c.wantVersions(t, 1, 2)
	})
	t.Run("tag-moved-during-the-run", func(t *testing.T) {
		c := s.newCase(t, nil)
		repo := s.git.NewRepo(t, "moved-"+c.ns)
		first := repo.Commit(t, gitFiles("db/migrations", two), "release 1.0.0")
		second := repo.Commit(t, gitFiles("db/migrations", tektonShop), "release 1.1.0")
		repo.Tag(t, "release", first)
		// An application pod stays terminating until released, so scale-down waits
		// while the tag moves, whatever the timing of the pods.
		_, release := holdPod(t, s.kube, c.app)
		ctx, cancel := context.WithTimeout(t.Context(), runBound)
		defer cancel()
		created, err := s.tk.CreatePipelineRun(ctx, c.ns, c.pipelineRun(t, "", tektonGitParams(repo.URL(), "release")))
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
		repo.MoveTag(t, "release", second)
		t.Logf("moved tag release to %s while scale-down waits", second)
		release()
		pr, trs := c.wait(t, ctx, created.Name)
		wantSucceeded(t, pr, true)
		wantResults(t, trs, "plan", map[string]string{"git-commit": first})
		wantParam(t, trs, "migrate", "git-commit", first)
		wantResults(t, trs, "migrate", map[string]string{"applied": "2"})
		c.wantVersions(t, 1, 2)
	})
}
