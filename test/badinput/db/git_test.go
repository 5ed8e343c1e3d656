package db

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/chartreuse-go/chartreuse/test/gitserver"
)

// Secrets of the git cases: none may appear in any output.
const (
	gitToken    = "ghp_Kq7Zx2Vb9Nw4Lr8T"
	gitPassword = "Hunter2-git-Pw"
)

// gitSecrets are the secrets of the git cases in every form a server could echo:
// raw, and as the Authorization header carries them (base64 of user:token).
func gitSecrets() []string {
	out := []string{gitPassword}
	for _, tok := range []string{gitToken, gitToken + "x"} {
		out = append(out, tok, base64.StdEncoding.EncodeToString([]byte("deploy:"+tok)))
	}
	return out
}

// gitRepos are the repositories the git cases fetch from, on a real git server.
type gitRepos struct {
	srv             *gitserver.Server
	public, private string // URLs
	sha             string // the commit of tag v1.0.0
}

var repos gitRepos

func startGit(t *testing.T) {
	srv := gitserver.Start(t, "127.0.0.1:0")
	files := map[string]string{"db/migrations/00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")}
	pub := srv.NewRepo(t, "shop.git")
	repos.sha = pub.Commit(t, files, "release 1.0.0")
	pub.Tag(t, "v1.0.0", repos.sha)
	// A directory that holds no migration itself: a placeholder, and migrations
	// one level down, which goose does not read.
	pub.Tag(t, "no-migrations", pub.Commit(t, map[string]string{
		"db/migrations/.gitkeep":            "",
		"db/migrations/README.md":           "migrations go here",
		"db/migrations/archive/00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;"),
	}, "no migrations at the top"))
	priv := srv.NewRepo(t, "private.git", gitserver.WithToken("deploy", gitToken))
	priv.Tag(t, "v1.0.0", priv.Commit(t, files, "release 1.0.0"))
	repos.srv, repos.public, repos.private = srv, pub.URL(), priv.URL()
}

// credentials writes a git credentials directory (a mounted Secret's files).
func (f *fixture) credentials(files map[string]string) string {
	f.t.Helper()
	dir := filepath.Join(f.scratch, "git-credentials")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		f.t.Fatal(err)
	}
	for k, v := range files {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			f.t.Fatal(err)
		}
	}
	return dir
}

// gitCases: every one is refused before the database is touched.
func gitCases() []badCase {
	fromGit := func(url func() string, rev, dir string, extra ...string) func(*fixture) []string {
		return func(f *fixture) []string {
			return append([]string{"--git-url", url(), "--git-revision", rev, "--dir", dir,
				"--git-credentials", filepath.Join(f.scratch, "no-credentials")}, extra...)
		}
	}
	public := func() string { return repos.public }
	private := func() string { return repos.private }
	fixed := func(s string) func() string { return func() string { return s } }
	return []badCase{
		{name: "git revision without git url", step: "migrate", args: flags("--git-revision", "v1.0.0"), code: 2, want: []string{"--git-revision", "--git-url"}},
		{name: "git commit without git url", step: "migrate", args: flags("--git-commit", "0123456789abcdef0123456789abcdef01234567"), code: 2, want: []string{"--git-commit", "--git-url"}},
		{name: "git url with an absolute dir", step: "migrate", args: func(f *fixture) []string {
			return []string{"--git-url", repos.public, "--git-revision", "v1.0.0", "--dir", f.dir}
		}, code: 2, want: []string{"absolute", "inside the repository"}},
		{name: "git dir leaving the repository", step: "migrate", args: fromGit(public, "v1.0.0", "../etc"), code: 2, want: []string{"../etc"}},
		{name: "git url without revision", step: "migrate", args: fromGit(public, "", "db/migrations"), code: 2, want: []string{"--git-revision"}},
		{name: "git url of a local path", step: "migrate", args: fromGit(fixed("file:///srv/git/shop.git"), "v1.0.0", "db/migrations"), code: 2, want: []string{"file"}},
		{name: "git url with a password", step: "migrate", args: fromGit(fixed("https://deploy:"+gitPassword+"@git.example.com/shop.git"), "v1.0.0", "db/migrations"), code: 2, want: []string{"--git-url", "credentials in the URL"}},
		{name: "git url with a token in the query", step: "migrate", args: fromGit(fixed("https://git.example.com/shop.git?private_token="+gitPassword), "v1.0.0", "db/migrations"), code: 2, want: []string{"--git-url", "query"}},
		{name: "git url with a token in the port", step: "migrate", args: fromGit(fixed("https://oauth2:"+gitPassword+"/git.example.com/shop.git"), "v1.0.0", "db/migrations"), code: 2, want: []string{"--git-url"}},
		{name: "git commit abbreviated", step: "migrate", args: fromGit(public, "v1.0.0", "db/migrations", "--git-commit", "abc1234"), code: 2, want: []string{"--git-commit", "abc1234"}},
		{name: "git revision with white space", step: "migrate", args: fromGit(public, "v1.0.0 ", "db/migrations"), code: 2, want: []string{"--git-revision", "white space"}},
		{name: "git revision relative", step: "migrate", args: fromGit(public, "v1.0.0~1", "db/migrations"), code: 2, want: []string{"--git-revision", "relative"}},
		{name: "git revision unknown", step: "migrate", args: fromGit(public, "v9.9.9", "db/migrations"), code: 1, want: []string{"v9.9.9"}},
		{name: "git commit unknown", step: "migrate", args: fromGit(public, "v1.0.0", "db/migrations", "--git-commit", "fedcba9876543210fedcba9876543210fedcba98"), code: 1, want: []string{"fedcba9876543210fedcba9876543210fedcba98"}},
		{name: "git dir without migrations", step: "migrate", args: fromGit(public, "no-migrations", "db/migrations"), code: 1, want: []string{"no migrations", "db/migrations"}},
		{name: "git dir not in the commit", step: "migrate", args: fromGit(public, "v1.0.0", "db/nowhere"), code: 1, want: []string{"db/nowhere"}},
		{name: "git server unreachable", step: "migrate", args: fromGit(fixed("http://127.0.0.1:1/shop.git"), "v1.0.0", "db/migrations"), code: 75, want: []string{"127.0.0.1:1"}},
		{name: "private repository without credentials", step: "migrate", args: fromGit(private, "v1.0.0", "db/migrations"), code: 1, want: []string{"authentication"}},
		{name: "private repository with a wrong token", step: "migrate", args: func(f *fixture) []string {
			return []string{"--git-url", repos.private, "--git-revision", "v1.0.0", "--dir", "db/migrations",
				"--git-credentials", f.credentials(map[string]string{"username": "deploy", "token": gitToken + "x"})}
		}, code: 1, want: []string{"authentication"}},
		{name: "git TMPDIR missing", step: "migrate", args: fromGit(public, "v1.0.0", "db/migrations"), env: func(f *fixture) []string {
			return []string{"CHARTREUSE_DATABASE_URL=" + f.url, "TMPDIR=" + filepath.Join(f.scratch, "no-such-dir")}
		}, code: 1, want: []string{"TMPDIR", "no-such-dir"}},
		{name: "git TMPDIR read-only", step: "migrate", nobody: true, args: fromGit(public, "v1.0.0", "db/migrations"), env: func(f *fixture) []string {
			return []string{"CHARTREUSE_DATABASE_URL=" + f.url, "TMPDIR=/"}
		}, code: 1, want: []string{"TMPDIR", "permission denied"}},
		{name: "private repository behind a proxy echoing the request", step: "migrate", setup: func(*fixture) { repos.srv.FailNext(1, gitserver.Reflect) },
			args: func(f *fixture) []string {
				return []string{"--git-url", repos.private, "--git-revision", "v1.0.0", "--dir", "db/migrations",
					"--git-credentials", f.credentials(map[string]string{"username": "deploy\n", "token": gitToken + "\n"})}
			}, code: 1, want: []string{"authentication"}},
		{name: "git ssh key without known_hosts", step: "migrate", args: func(f *fixture) []string {
			return []string{"--git-url", "git@git.example.com:acme/shop.git", "--git-revision", "v1.0.0", "--dir", "db/migrations",
				"--git-credentials", f.credentials(map[string]string{"ssh-privatekey": "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n"})}
		}, code: 2, want: []string{"known_hosts"}},
	}
}
