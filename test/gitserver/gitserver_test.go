package gitserver_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chartreuse-go/chartreuse/test/gitserver"
)

// gitClone clones url with the real git client and returns the output and error.
func gitClone(t *testing.T, url string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command("git", append(append([]string{"clone", "--quiet"}, args...), url, filepath.Join(t.TempDir(), "c"))...)
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestCloneOverHTTPAndGit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs git (not with -short)")
	}
	s := gitserver.Start(t, "127.0.0.1:0")
	r := s.NewRepo(t, "org/app")
	c1 := r.Commit(t, map[string]string{"db/001.sql": "select 1;"}, "one")
	c2 := r.Commit(t, map[string]string{"db/001.sql": "select 1;", "db/002.sql": "select 2;"}, "two")
	r.Tag(t, "v1", c1)
	if got := r.Resolve(t, "v1"); got != c1 {
		t.Fatalf("v1 = %s, want %s", got, c1)
	}
	if got := r.Resolve(t, "main"); got != c2 {
		t.Fatalf("main = %s, want %s", got, c2)
	}
	for _, url := range []string{r.URL(), r.GitURL()} {
		if out, err := gitClone(t, url, "--depth=1", "--branch=v1"); err != nil {
			t.Fatalf("clone %s: %v\n%s\nserver log:\n%s", url, err, out, s.Log())
		}
	}
	got := s.Requests()
	var http, git int
	for _, q := range got {
		switch q.Proto {
		case "http":
			http++
			if q.Repo != "org/app.git" || q.Status != 200 {
				t.Errorf("request %+v: want repo org/app.git, status 200", q)
			}
		case "git":
			git++
		}
	}
	if http < 2 || git != 1 {
		t.Errorf("requests %+v: want at least 2 over HTTP, 1 over git", got)
	}
}

func TestPrivateRepoAndFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs git (not with -short)")
	}
	s := gitserver.Start(t, "127.0.0.1:0")
	r := s.NewRepo(t, "private", gitserver.WithToken("ci", "tok-3141"))
	r.Commit(t, map[string]string{"a": "a"}, "one")

	res, err := http.Get(r.URL() + "/info/refs?service=git-upload-pack")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no credentials: status %d, want 401", res.StatusCode)
	}
	authed := strings.Replace(r.URL(), "http://", "http://ci:tok-3141@", 1)
	if out, err := gitClone(t, authed); err != nil {
		t.Fatalf("clone with token: %v\n%s", err, out)
	}
	if out, err := gitClone(t, r.GitURL()); err == nil {
		t.Fatalf("a private repository was served over git://\n%s", out)
	}

	s.FailNext(1, gitserver.Unavailable)
	s.FailNext(1, gitserver.Drop)
	// A new connection per request: Go's client would retry a dropped reused one.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for _, want := range []int{http.StatusServiceUnavailable, 0} {
		res, err := fresh.Get(authed + "/info/refs?service=git-upload-pack")
		switch {
		case want == 0 && err == nil:
			res.Body.Close()
			t.Fatalf("dropped connection answered %d", res.StatusCode)
		case want != 0 && err != nil:
			t.Fatal(err)
		case want != 0:
			res.Body.Close()
			if res.StatusCode != want {
				t.Fatalf("status %d, want %d", res.StatusCode, want)
			}
		}
	}
	if out, err := gitClone(t, authed); err != nil {
		t.Fatalf("clone after the faults: %v\n%s", err, out)
	}
	reqs := s.Requests()
	var faults []gitserver.Fault
	for _, q := range reqs {
		if q.Fault != 0 {
			faults = append(faults, q.Fault)
		}
	}
	if len(faults) != 2 || faults[0] != gitserver.Unavailable || faults[1] != gitserver.Drop {
		t.Fatalf("faults recorded %v, want [unavailable drop]", faults)
	}
}

// OpenSSH's client clones from the SSH server, checking its host key.
func TestCloneOverSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("runs git (not with -short)")
	}
	s := gitserver.Start(t, "127.0.0.1:0")
	r := s.NewRepo(t, "app")
	r.Commit(t, map[string]string{"a": "a"}, "one")
	key, pub := gitserver.NewClientKey(t)
	x := s.StartSSH(t, pub)
	dir := t.TempDir()
	keyFile, kh := filepath.Join(dir, "key"), filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kh, []byte(x.KnownHosts()), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("git", "clone", "--quiet", x.URL(r), filepath.Join(dir, "c"))
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1",
		"GIT_SSH_COMMAND=ssh -F /dev/null -i " + keyFile + " -o IdentitiesOnly=yes -o UserKnownHostsFile=" + kh + " -o StrictHostKeyChecking=yes -o BatchMode=yes"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("clone over ssh: %v\n%s\nserver log:\n%s", err, out, s.Log())
	}
	if b, err := os.ReadFile(filepath.Join(dir, "c", "a")); err != nil || string(b) != "a" {
		t.Fatalf("cloned file: %q, %v", b, err)
	}
}
