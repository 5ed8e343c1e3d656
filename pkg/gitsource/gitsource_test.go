package gitsource_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/gitsource"
	"github.com/chartreuse-go/chartreuse/test/errcheck"
	"github.com/chartreuse-go/chartreuse/test/gitserver"
)

// token is distinctive so that any echo of it in a message is found.
const token = "tok-Zq8vN3xW-7d1f-not-for-print"

func start(t *testing.T) *gitserver.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a git server (not with -short)")
	}
	return gitserver.Start(t, "127.0.0.1:0")
}

// noSecret fails the test if the token shows in err, however it is printed.
func noSecret(t *testing.T, err error) {
	t.Helper()
	errcheck.NoSecret(t, err, token)
}

// expectErr checks err's exit code, sentinel and message parts.
func expectErr(t *testing.T, err error, code int, target error, parts ...string) {
	t.Helper()
	errcheck.Expect(t, err, errcheck.Want{Code: code, Is: target, Parts: parts, Secrets: []string{token}})
}

// read returns every file of fsys (path → content).
func read(t *testing.T, fsys fs.FS) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		out[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// under is the files of files directly in dir ("." the root), with dir taken off
// their paths: what Fetch returns.
func under(files map[string]string, dir string) map[string]string {
	out := map[string]string{}
	for p, c := range files {
		rest, ok := strings.CutPrefix(p, dir+"/")
		if dir == "." {
			rest, ok = p, true
		}
		if ok && !strings.Contains(rest, "/") {
			out[rest] = c
		}
	}
	return out
}

func fetch(t *testing.T, r gitsource.Remote, commit, revision, subdir string) (map[string]string, error) {
	t.Helper()
	fsys, err := r.Fetch(context.Background(), commit, revision, subdir, t.TempDir())
	noSecret(t, err)
	if err != nil {
		return nil, err
	}
	return read(t, fsys), nil
}

// history is four commits on main, a branch, and tags of both kinds; c0 is no
// ref's tip.
type history struct {
	repo           *gitserver.Repo
	c0, c1, c2, c3 string
	files          map[string]map[string]string // commit → its files
}

func makeHistory(t *testing.T, s *gitserver.Server, name string, opts ...gitserver.RepoOption) history {
	t.Helper()
	h := history{repo: s.NewRepo(t, name, opts...), files: map[string]map[string]string{}}
	f1 := map[string]string{"README.md": "app", "db/001_init.sql": "-- +goose Up\ncreate table a (id int);\n"}
	f2 := maps.Clone(f1)
	f2["db/002_b.sql"] = "-- +goose Up\ncreate table b (id int);\n"
	f3 := maps.Clone(f2)
	f3["db/sub/003_c.sql"] = "-- +goose Up\ncreate table c (id int);\n"
	f3["src/main.go"] = "package main\n"
	f0 := map[string]string{"db/001_init.sql": "-- +goose Up\nselect 0;\n"}
	h.c0 = h.repo.Commit(t, f0, "zero")
	h.c1 = h.repo.Commit(t, f1, "one")
	h.c2 = h.repo.Commit(t, f2, "two")
	h.c3 = h.repo.Commit(t, f3, "three")
	h.files[h.c0], h.files[h.c1], h.files[h.c2], h.files[h.c3] = f0, f1, f2, f3
	h.repo.Tag(t, "v1", h.c1)
	h.repo.LightweightTag(t, "light", h.c2)
	h.repo.Branch(t, "release", h.c2)
	return h
}

func TestResolveAndFetch(t *testing.T) {
	s := start(t)
	h := makeHistory(t, s, "app")
	for _, tc := range []struct {
		name, revision, want string
	}{
		{"annotated tag", "v1", h.c1},
		{"lightweight tag", "light", h.c2},
		{"branch", "release", h.c2},
		{"full ref of a tag", "refs/tags/v1", h.c1},
		{"full ref of a branch", "refs/heads/main", h.c3},
		{"remote HEAD", "", h.c3},
		{"SHA of a tip", h.c3, h.c3},
		{"SHA of no tip, upper-case", strings.ToUpper(h.c0), h.c0},
		{"SHA of an annotated tag's commit", h.c1, h.c1},
		{"SHA of a tagged commit", h.c2, h.c2},
	} {
		for _, url := range []string{h.repo.URL(), h.repo.GitURL()} {
			t.Run(tc.name+"/"+url[:strings.Index(url, ":")], func(t *testing.T) {
				r := gitsource.Remote{URL: url}
				sha, err := r.Resolve(context.Background(), tc.revision)
				if err != nil {
					t.Fatalf("Resolve(%q): %v", tc.revision, err)
				}
				if sha != tc.want {
					t.Fatalf("Resolve(%q) = %s, want %s", tc.revision, sha, tc.want)
				}
				for _, dir := range []string{"db", "/db/", "."} {
					got, err := fetch(t, r, sha, tc.revision, dir)
					if err != nil {
						t.Fatalf("Fetch(%s, %q): %v\nserver log:\n%s", sha, dir, err, s.Log())
					}
					want := under(h.files[tc.want], strings.Trim(dir, "/"))
					if !maps.Equal(got, want) {
						t.Fatalf("Fetch(%s, %q) files:\n%v\nwant:\n%v", sha, dir, got, want)
					}
				}
			})
		}
	}
}

// A server that refuses commits by SHA (git daemon with
// uploadpack.allowReachableSHA1InWant=false) still serves branch and tag tips; a
// commit no ref points at is refused with a message saying what to give instead.
func TestSHANotServed(t *testing.T) {
	s := start(t)
	h := makeHistory(t, s, "tips-only", gitserver.AllowReachableSHA1InWant(false))
	git := gitsource.Remote{URL: h.repo.GitURL()}

	_, err := fetch(t, git, h.c0, h.c0, "db")
	expectErr(t, err, failure.CodePermanent, gitsource.ErrRevisionNotFound,
		"does not serve commits by SHA", "give a tag or branch", h.c0)

	for _, c := range []string{h.c1, h.c2, h.c3} { // under v1, release and light, main
		if _, err := fetch(t, git, c, c, "db"); err != nil {
			t.Errorf("Fetch of tip %s: %v", c, err)
		}
	}
	// Over smart HTTP upload-pack is stateless and serves any reachable commit,
	// whatever the setting says: the same SHA is fetched.
	got, err := fetch(t, gitsource.Remote{URL: h.repo.URL()}, h.c0, h.c0, "db")
	if err != nil {
		t.Fatalf("Fetch over HTTP of a reachable commit: %v", err)
	}
	if want := under(h.files[h.c0], "db"); !maps.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
}

// A tag moved between Resolve and Fetch: the run keeps the commit it resolved when
// the server still serves it, and fails with *MovedError when it does not.
func TestTagMoved(t *testing.T) {
	s := start(t)
	ctx := context.Background()

	t.Run("server serves tips only", func(t *testing.T) {
		h := makeHistory(t, s, "moved-tips", gitserver.AllowReachableSHA1InWant(false))
		r := gitsource.Remote{URL: h.repo.GitURL()}
		sha, err := r.Resolve(ctx, "v1")
		if err != nil || sha != h.c1 {
			t.Fatalf("Resolve = %s, %v; want %s", sha, err, h.c1)
		}
		h.repo.MoveTag(t, "v1", h.c2)
		_, err = fetch(t, r, sha, "v1", "db")
		expectErr(t, err, failure.CodePermanent, nil, "v1", h.c1, h.c2, "start a new run")
		var moved *gitsource.MovedError
		if !errors.As(err, &moved) || *moved != (gitsource.MovedError{Revision: "v1", Want: h.c1, Got: h.c2}) {
			t.Fatalf("error %v: want *MovedError{v1, %s, %s}", err, h.c1, h.c2)
		}
	})

	t.Run("old commit unreachable", func(t *testing.T) {
		h := makeHistory(t, s, "moved-unreachable")
		h.repo.Branch(t, "main", h.c2)
		h.repo.DeleteRef(t, "refs/heads/release")
		h.repo.Tag(t, "v3", h.c3) // only v3 holds c3
		r := gitsource.Remote{URL: h.repo.URL()}
		sha, err := r.Resolve(ctx, "v3")
		if err != nil || sha != h.c3 {
			t.Fatalf("Resolve = %s, %v; want %s", sha, err, h.c3)
		}
		h.repo.MoveTag(t, "v3", h.c1) // c3 is now unreachable
		_, err = fetch(t, r, sha, "v3", "db")
		var moved *gitsource.MovedError
		if !errors.As(err, &moved) || *moved != (gitsource.MovedError{Revision: "v3", Want: h.c3, Got: h.c1}) {
			t.Fatalf("error %v: want *MovedError{v3, %s, %s}", err, h.c3, h.c1)
		}
		expectErr(t, err, failure.CodePermanent, nil)
	})

	t.Run("tag deleted", func(t *testing.T) {
		h := makeHistory(t, s, "moved-deleted", gitserver.AllowReachableSHA1InWant(false))
		r := gitsource.Remote{URL: h.repo.GitURL()}
		h.repo.DeleteRef(t, "refs/tags/v1")
		_, err := fetch(t, r, h.c1, "v1", "db")
		var moved *gitsource.MovedError
		if !errors.As(err, &moved) || moved.Got != "" {
			t.Fatalf("error %v: want *MovedError without Got", err)
		}
		expectErr(t, err, failure.CodePermanent, nil, "no longer exists")
	})

	t.Run("old commit still served", func(t *testing.T) {
		h := makeHistory(t, s, "moved-served")
		r := gitsource.Remote{URL: h.repo.URL()}
		sha, err := r.Resolve(ctx, "v1")
		if err != nil {
			t.Fatal(err)
		}
		h.repo.MoveTag(t, "v1", h.c3)
		got, err := fetch(t, r, sha, "v1", "db")
		if err != nil {
			t.Fatal(err)
		}
		if want := under(h.files[h.c1], "db"); !maps.Equal(got, want) {
			t.Fatalf("files %v, want those of the commit resolved first %v", got, want)
		}
	})
}

func TestWrongRevision(t *testing.T) {
	s := start(t)
	h := makeHistory(t, s, "app")
	r := gitsource.Remote{URL: h.repo.URL()}
	ctx := context.Background()
	for _, rev := range []string{"v9", "refs/tags/v9", "refs/heads/nope", "feature/x"} {
		_, err := r.Resolve(ctx, rev)
		expectErr(t, err, failure.CodePermanent, gitsource.ErrRevisionNotFound, rev, h.repo.URL())
	}
	// A full SHA is not checked by Resolve; Fetch finds it missing.
	missing := strings.Repeat("ab", 20)
	sha, err := r.Resolve(ctx, missing)
	if err != nil || sha != missing {
		t.Fatalf("Resolve(full SHA) = %s, %v", sha, err)
	}
	_, err = fetch(t, r, missing, missing, "db")
	expectErr(t, err, failure.CodePermanent, gitsource.ErrRevisionNotFound, missing)

	for _, abbrev := range []string{h.c1[:7], h.c1[:12], strings.ToUpper(h.c1[:39])} {
		_, err := r.Resolve(ctx, abbrev)
		expectErr(t, err, failure.CodeUsage, gitsource.ErrAbbreviatedSHA, "full 40-character SHA")
		_, err = fetch(t, r, abbrev, abbrev, "db")
		expectErr(t, err, failure.CodeUsage, gitsource.ErrAbbreviatedSHA)
	}
	// A tag whose name looks like hex is a tag.
	h.repo.LightweightTag(t, "2024", h.c2)
	if sha, err := r.Resolve(ctx, "2024"); err != nil || sha != h.c2 {
		t.Fatalf("Resolve(2024) = %s, %v; want %s", sha, err, h.c2)
	}
	// A tag and a branch of one name on different commits.
	h.repo.Branch(t, "v1", h.c3)
	_, err = r.Resolve(ctx, "v1")
	expectErr(t, err, failure.CodeUsage, gitsource.ErrAmbiguousRevision, "refs/tags/v1")
}

func TestSubdir(t *testing.T) {
	s := start(t)
	h := makeHistory(t, s, "app")
	r := gitsource.Remote{URL: h.repo.URL()}
	for _, dir := range []string{"migrations", "db/nope", "README.md"} {
		_, err := fetch(t, r, h.c3, "", dir)
		expectErr(t, err, failure.CodePermanent, gitsource.ErrSubdirNotFound, dir, h.c3)
	}
	got, err := fetch(t, r, h.c3, "", "db/sub")
	if err != nil {
		t.Fatal(err)
	}
	if want := under(h.files[h.c3], "db/sub"); !maps.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	for _, dir := range []string{"../db", "db/../../x", "db/.."} {
		_, err := fetch(t, r, h.c3, "", dir)
		expectErr(t, err, failure.CodeUsage, nil, dir)
	}
}

// Only the directory asked for is fetched: with filtering (as on GitHub and GitLab)
// the other directories' files are not even transferred; without it they are, but
// the FS still shows the directory only.
func TestOnlySubdir(t *testing.T) {
	s := start(t)
	big := make([]byte, 2<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"db/001.sql":     "-- +goose Up\nselect 1;\n",
		"db/002.sql":     "-- +goose Up\nselect 2;\n",
		"assets/big.bin": string(big),
		"top.txt":        "top",
	}
	for _, tc := range []struct {
		name     string
		filter   bool
		maxBytes int64 // sent by the server for the fetch
		minBytes int64
	}{
		{"filtering server", true, 256 << 10, 0},
		{"server without filtering", false, 1 << 40, 2 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := s.NewRepo(t, strings.ReplaceAll(tc.name, " ", "-"), gitserver.AllowFilter(tc.filter))
			c := repo.Commit(t, files, "big")
			before := len(s.Requests())
			got, err := fetch(t, gitsource.Remote{URL: repo.URL()}, c, "", "db")
			if err != nil {
				t.Fatal(err)
			}
			if want := under(files, "db"); !maps.Equal(got, want) {
				t.Fatalf("files %v, want %v", slices.Collect(maps.Keys(got)), slices.Collect(maps.Keys(want)))
			}
			var sent int64
			for _, q := range s.Requests()[before:] {
				sent += q.Bytes
			}
			if sent > tc.maxBytes || sent < tc.minBytes {
				t.Fatalf("the server sent %d bytes, want between %d and %d", sent, tc.minBytes, tc.maxBytes)
			}
			t.Logf("%s: %d bytes sent for a commit holding a 2 MiB file outside db/", tc.name, sent)
		})
	}
}

func TestPrivateRepo(t *testing.T) {
	s := start(t)
	h := makeHistory(t, s, "private", gitserver.WithToken("ci", token))
	ctx := context.Background()

	dir := t.TempDir()
	for k, v := range map[string]string{"username": "ci\n", "token": token + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	auth, err := gitsource.LoadAuth(dir)
	if err != nil {
		t.Fatal(err)
	}
	ok := gitsource.Remote{URL: h.repo.URL(), Auth: auth}
	sha, err := ok.Resolve(ctx, "v1")
	if err != nil || sha != h.c1 {
		t.Fatalf("Resolve with the token = %s, %v", sha, err)
	}
	got, err := fetch(t, ok, sha, "v1", "db")
	if err != nil {
		t.Fatal(err)
	}
	if want := under(h.files[h.c1], "db"); !maps.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}

	for _, tc := range []struct {
		name  string
		auth  gitsource.Auth
		parts []string
	}{
		{"no credentials", gitsource.Auth{}, []string{"none were given", "token"}},
		{"wrong token", gitsource.Auth{Username: "ci", Token: token + "-wrong"}, []string{"Secret keys used: username, token", "expired"}},
		{"wrong user", gitsource.Auth{Username: "someone", Token: token}, []string{"Secret keys used: username, token"}},
		{"token only", gitsource.Auth{Token: token}, []string{"Secret keys used: token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := gitsource.Remote{URL: h.repo.URL(), Auth: tc.auth}
			_, err := r.Resolve(ctx, "v1")
			expectErr(t, err, failure.CodePermanent, gitsource.ErrAuth, tc.parts...)
			_, err = fetch(t, r, h.c1, "v1", "db")
			expectErr(t, err, failure.CodePermanent, gitsource.ErrAuth, tc.parts...)
		})
	}
}

func TestTransient(t *testing.T) {
	s := start(t)
	h := makeHistory(t, s, "app")
	r := gitsource.Remote{URL: h.repo.URL(), Auth: gitsource.Auth{Token: token}}
	ctx := context.Background()
	for _, f := range []gitserver.Fault{gitserver.Unavailable, gitserver.Drop} {
		t.Run(f.String(), func(t *testing.T) {
			s.FailNext(1, f)
			_, err := r.Resolve(ctx, "v1")
			expectErr(t, err, failure.CodeTransient, nil, h.repo.URL())

			s.FailNext(1, f)
			_, err = fetch(t, r, h.c1, "v1", "db")
			expectErr(t, err, failure.CodeTransient, nil)

			s.FailNextPack(1, f)
			_, err = fetch(t, r, h.c1, "v1", "db")
			expectErr(t, err, failure.CodeTransient, nil)

			// The fault was used up: the same calls work now.
			if _, err := fetch(t, r, h.c1, "v1", "db"); err != nil {
				t.Fatalf("after the fault: %v", err)
			}
		})
	}
	t.Run("git protocol dropped", func(t *testing.T) {
		s.FailNext(1, gitserver.Drop)
		_, err := gitsource.Remote{URL: h.repo.GitURL()}.Resolve(ctx, "v1")
		expectErr(t, err, failure.CodeTransient, nil)
	})

	t.Run("unreachable port", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		for _, url := range []string{"http://" + addr + "/app.git", "git://" + addr + "/app.git"} {
			r := gitsource.Remote{URL: url}
			_, err := r.Resolve(ctx, "v1")
			expectErr(t, err, failure.CodeTransient, nil, addr)
			_, err = fetch(t, r, h.c1, "v1", "db")
			expectErr(t, err, failure.CodeTransient, nil, addr)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := r.Resolve(cctx, "v1")
		expectErr(t, err, failure.CodeTransient, context.Canceled)
	})
}

func TestRepositoryNotFound(t *testing.T) {
	s := start(t)
	r := gitsource.Remote{URL: s.URL() + "/nothing-here.git"}
	_, err := r.Resolve(context.Background(), "v1")
	expectErr(t, err, failure.CodePermanent, gitsource.ErrRepositoryNotFound, "nothing-here.git")
}

// SSH end to end: x/crypto/ssh's server in test/gitserver runs the real
// git upload-pack; the client checks the host key against known_hosts.
func TestSSH(t *testing.T) {
	s := start(t)
	h := makeHistory(t, s, "org/app")
	key, pub := gitserver.NewClientKey(t)
	_, otherPub := gitserver.NewClientKey(t)
	x := s.StartSSH(t, pub)
	other := s.StartSSH(t, otherPub) // another host key and another client key
	ctx := context.Background()

	dir := t.TempDir()
	for k, v := range map[string]string{"ssh-privatekey": string(key), "known_hosts": x.KnownHosts()} {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	auth, err := gitsource.LoadAuth(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := gitsource.Remote{URL: x.URL(h.repo), Auth: auth}
	for _, rev := range []string{"v1", "release", h.c0} {
		sha, err := r.Resolve(ctx, rev)
		if err != nil {
			t.Fatalf("Resolve(%s): %v\nserver log:\n%s", rev, err, s.Log())
		}
		got, err := fetch(t, r, sha, rev, "db")
		if err != nil {
			t.Fatalf("Fetch(%s): %v\nserver log:\n%s", sha, err, s.Log())
		}
		if want := under(h.files[sha], "db"); !maps.Equal(got, want) {
			t.Fatalf("files %v, want %v", got, want)
		}
	}

	t.Run("key not authorized", func(t *testing.T) {
		// other accepts only otherPub; its host key is in known_hosts.
		a := auth
		a.KnownHosts = []byte(other.KnownHosts())
		_, err := gitsource.Remote{URL: other.URL(h.repo), Auth: a}.Resolve(ctx, "v1")
		expectErr(t, err, failure.CodePermanent, gitsource.ErrAuth, "ssh-privatekey", "deploy key")
	})
	t.Run("host key differs", func(t *testing.T) {
		a := auth
		a.KnownHosts = []byte(knownhosts.Line([]string{knownhosts.Normalize(x.Addr())}, other.HostKey()))
		_, err := gitsource.Remote{URL: x.URL(h.repo), Auth: a}.Resolve(ctx, "v1")
		expectErr(t, err, failure.CodePermanent, gitsource.ErrAuth, "known_hosts")
	})
	t.Run("dropped", func(t *testing.T) {
		s.FailNext(1, gitserver.Drop)
		_, err := r.Resolve(ctx, "v1")
		expectErr(t, err, failure.CodeTransient, nil)
	})
}
