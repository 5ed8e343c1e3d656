package db

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/test/gitserver"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
	"github.com/chartreuse-go/chartreuse/test/stepbin"
)

// A migrate step stopped (SIGTERM, as the kubelet does) while its git server has
// gone silent ends at once with exit 75, and leaves nothing in TMPDIR; so does one
// that finishes.
func TestGitInterruptedLeavesNoTemp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs migrate against a real PostgreSQL and git server (not with -short)")
	}
	srv := pgenv.Shared(t)
	bins := stepbin.Binaries(t, "migrate")
	gs := gitserver.Start(t, "127.0.0.1:0")
	repo := gs.NewRepo(t, "shop.git")
	repo.Tag(t, "v1.0.0", repo.Commit(t, map[string]string{"db/migrations/00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")}, "one"))
	key, pub := gitserver.NewClientKey(t)
	x := gs.StartSSH(t, pub)

	for i, tc := range []struct {
		name  string
		url   string
		fault func()
		creds map[string]string
		code  int
	}{
		{"finishes", repo.URL(), nil, nil, 0},
		{"http pack stalls", repo.URL(), func() { gs.FailNextPack(1, gitserver.StallMidway) }, nil, failure.CodeTransient},
		{"http refs stall", repo.URL(), func() { gs.FailNext(1, gitserver.Stall) }, nil, failure.CodeTransient},
		{"git stalls", repo.GitURL(), func() { gs.FailNext(1, gitserver.Stall) }, nil, failure.CodeTransient},
		{"ssh stalls", x.URL(repo), func() { gs.FailNext(1, gitserver.Stall) },
			map[string]string{"ssh-privatekey": string(key), "known_hosts": x.KnownHosts()}, failure.CodeTransient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, srv, 1000+i)
			var stalling func() int
			if tc.fault != nil {
				tc.fault()
				stalling = gs.Stalling
			}
			f.planInterrupted(t, bins["migrate"], []string{"--git-url", tc.url, "--git-revision", "v1.0.0", "--dir", "db/migrations",
				"--git-credentials", f.credentials(tc.creds)}, stalling, tc.code)
		})
	}
}

// --git-commit wins: every step given plan's commit reads that commit's files,
// whatever --git-revision points at now, and a rerun reads the same files. A commit
// that is not on the revision's history is accepted too (a tag moved during the run
// is exactly that); the revision only helps to reach the commit on servers that
// refuse commits by SHA.
func TestGitCommitWins(t *testing.T) {
	if testing.Short() {
		t.Skip("runs migrate against a real PostgreSQL and git server (not with -short)")
	}
	srv := pgenv.Shared(t)
	bins := stepbin.Binaries(t, "migrate")
	gs := gitserver.Start(t, "127.0.0.1:0")
	repo := gs.NewRepo(t, "app.git")
	one := map[string]string{"db/migrations/00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")}
	c1 := repo.Commit(t, one, "one")
	repo.Tag(t, "v1", c1)
	two := map[string]string{"db/migrations/00002_b.sql": mig("CREATE TABLE b (id int);", "DROP TABLE b;")}
	two["db/migrations/00001_a.sql"] = one["db/migrations/00001_a.sql"]
	c2 := repo.Commit(t, two, "two")
	repo.Tag(t, "v2", c2)
	f := newFixture(t, srv, 2000)

	run := func(t *testing.T, args ...string) map[string]string {
		t.Helper()
		cmd := exec.Command(bins["migrate"], append([]string{"--git-url", repo.URL(), "--dir", "db/migrations",
			"--git-credentials", filepath.Join(f.scratch, "none")}, args...)...)
		cmd.Env = append(cleanEnv(), "CHARTREUSE_SKIP_VERSION_CHECK=true", "CHARTREUSE_DATABASE_URL="+f.url, "TMPDIR="+f.scratch)
		p, err := stepbin.StartCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		code, timedOut := p.Wait(context.Background(), time.Minute)
		sum, ok := p.Summary()
		if timedOut || code != 0 || !ok {
			t.Fatalf("migrate %s: exit %d (timed out %v):\n%s", strings.Join(args, " "), code, timedOut, p.Stderr.String())
		}
		return sum.Results
	}
	expect := func(t *testing.T, res map[string]string, want map[string]string) {
		t.Helper()
		for k, v := range want {
			if res[k] != v {
				t.Errorf("result %s = %q, want %q (all: %v)", k, res[k], v, res)
			}
		}
	}

	t.Run("plan with an upper-case commit and a revision elsewhere", func(t *testing.T) {
		res := run(t, "--plan", "--git-revision", "v2", "--git-commit", strings.ToUpper(c1))
		expect(t, res, map[string]string{"git-commit": c1, "pending-versions": "[1]"})
	})
	t.Run("migrate reads the commit, not the revision", func(t *testing.T) {
		res := run(t, "--git-revision", "v2", "--git-commit", c1)
		expect(t, res, map[string]string{"git-commit": c1, "applied-versions": "[1]"})
	})
	t.Run("a rerun reads the same files", func(t *testing.T) {
		res := run(t, "--git-revision", "v2", "--git-commit", c1)
		expect(t, res, map[string]string{"git-commit": c1, "applied-versions": "[]", "pending-versions": "[]"})
	})
	t.Run("a commit not on the revision's history", func(t *testing.T) {
		res := run(t, "--plan", "--git-revision", "v1", "--git-commit", c2)
		expect(t, res, map[string]string{"git-commit": c2, "pending-versions": "[2]"})
	})
	t.Run("rollback reads the commit", func(t *testing.T) {
		res := run(t, "--down-to", "0", "--git-revision", "v2", "--git-commit", c1)
		expect(t, res, map[string]string{"git-commit": c1, "rolled-back-versions": "[1]"})
	})
}
