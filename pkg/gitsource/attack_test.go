package gitsource_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/gitsource"
	"github.com/chartreuse-go/chartreuse/test/gitserver"
)

// Hostile and careless repositories: trees git itself would refuse to make, links,
// submodules, tags of things that are not commits. Nothing may be written outside
// the fetch's directory, and nothing may be dropped silently where a migration could
// hide.

const upSQL = "-- +goose Up\nselect 1;\n"

// entry shorthands for gitserver.TreeEntry.
func file(r *gitserver.Repo, t *testing.T, name, content string) gitserver.TreeEntry {
	return gitserver.TreeEntry{Mode: gitserver.ModeFile, Name: name, Hash: r.WriteBlob(t, content)}
}

func link(r *gitserver.Repo, t *testing.T, name, target string) gitserver.TreeEntry {
	return gitserver.TreeEntry{Mode: gitserver.ModeSymlink, Name: name, Hash: r.WriteBlob(t, target)}
}

func dir(r *gitserver.Repo, t *testing.T, name string, entries ...gitserver.TreeEntry) gitserver.TreeEntry {
	return gitserver.TreeEntry{Mode: gitserver.ModeDir, Name: name, Hash: r.WriteTree(t, entries...)}
}

// listTree is every path under root (dirs with a trailing /, links as name -> target).
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.Type()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out = append(out, rel+" -> "+target)
		case d.IsDir():
			out = append(out, rel+"/")
		default:
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestHostileTrees(t *testing.T) {
	s := start(t)
	repo := s.NewRepo(t, "hostile")
	url := repo.URL()
	ctx := context.Background()
	sub := repo.Commit(t, map[string]string{"x.sql": upSQL}, "a commit another repository's submodule points at")

	for _, tc := range []struct {
		name  string
		root  func() []gitserver.TreeEntry
		dir   string
		files map[string]string // what Fetch returns; nil: an error
		code  int
		parts []string
	}{
		{
			name: "symlink out of the directory",
			root: func() []gitserver.TreeEntry {
				return []gitserver.TreeEntry{dir(repo, t, "db",
					file(repo, t, "001_a.sql", upSQL),
					link(repo, t, "002_passwd.sql", "../../../../etc/passwd"))}
			},
			dir: "db", code: failure.CodePermanent, parts: []string{"db/002_passwd.sql", "symbolic link"},
		},
		{
			name: "sql symlink to another sql",
			root: func() []gitserver.TreeEntry {
				return []gitserver.TreeEntry{dir(repo, t, "db",
					file(repo, t, "001_a.sql", upSQL),
					link(repo, t, "002_b.sql", "001_a.sql"))}
			},
			dir: "db", code: failure.CodePermanent, parts: []string{"002_b.sql", "symbolic link"},
		},
		{
			name: "symlink in a subdirectory goose never reads",
			root: func() []gitserver.TreeEntry {
				return []gitserver.TreeEntry{dir(repo, t, "db",
					file(repo, t, "001_a.sql", upSQL),
					dir(repo, t, "docs", link(repo, t, "README", "../../README")))}
			},
			dir: "db", files: map[string]string{"001_a.sql": upSQL},
		},
		{
			name: "migrations at the root of a repository with links elsewhere",
			root: func() []gitserver.TreeEntry {
				return []gitserver.TreeEntry{
					file(repo, t, "001_a.sql", upSQL),
					dir(repo, t, "node_modules", dir(repo, t, ".bin", link(repo, t, "tool", "../tool/cli.js"))),
				}
			},
			dir: ".", files: map[string]string{"001_a.sql": upSQL},
		},
		{
			name: "submodule inside the directory",
			root: func() []gitserver.TreeEntry {
				return []gitserver.TreeEntry{dir(repo, t, "db",
					file(repo, t, "001_a.sql", upSQL),
					gitserver.TreeEntry{Mode: gitserver.ModeSubmodule, Name: "vendor", Hash: sub})}
			},
			dir: "db", files: map[string]string{"001_a.sql": upSQL},
		},
		{
			name: "the directory is a submodule",
			root: func() []gitserver.TreeEntry {
				return []gitserver.TreeEntry{gitserver.TreeEntry{Mode: gitserver.ModeSubmodule, Name: "db", Hash: sub}}
			},
			dir: "db", code: failure.CodePermanent, parts: []string{`"db"`, "submodule"},
		},
		{
			name: "the directory is a symlink",
			root: func() []gitserver.TreeEntry {
				return []gitserver.TreeEntry{
					dir(repo, t, "real", file(repo, t, "001_a.sql", upSQL)),
					link(repo, t, "db", "real"),
				}
			},
			dir: "db", code: failure.CodePermanent, parts: []string{`"db"`, "symbolic link"},
		},
		{
			name: "a parent of the directory is a symlink",
			root: func() []gitserver.TreeEntry {
				return []gitserver.TreeEntry{
					dir(repo, t, "real", dir(repo, t, "db", file(repo, t, "001_a.sql", upSQL))),
					link(repo, t, "app", "real"),
				}
			},
			dir: "app/db", code: failure.CodePermanent, parts: []string{`"app"`, "symbolic link"},
		},
		{
			name: "entry named ..",
			root: func() []gitserver.TreeEntry {
				return []gitserver.TreeEntry{dir(repo, t, "db", file(repo, t, "..", "escaped"), file(repo, t, "001_a.sql", upSQL))}
			},
			dir: "db", code: failure.CodePermanent, parts: []string{`".."`},
		},
		{
			name: "entry name with a slash",
			root: func() []gitserver.TreeEntry {
				return []gitserver.TreeEntry{dir(repo, t, "db", file(repo, t, "../../escaped.sql", upSQL), file(repo, t, "001_a.sql", upSQL))}
			},
			dir: "db", code: failure.CodePermanent, parts: []string{"../../escaped.sql"},
		},
		{
			name: "directory entry named ..",
			root: func() []gitserver.TreeEntry {
				return []gitserver.TreeEntry{dir(repo, t, "db", file(repo, t, "001_a.sql", upSQL), dir(repo, t, "..", file(repo, t, "escaped.sql", upSQL)))}
			},
			dir: "db", code: failure.CodePermanent, parts: []string{`".."`},
		},
		{
			name: "one name twice",
			root: func() []gitserver.TreeEntry {
				return []gitserver.TreeEntry{dir(repo, t, "db", file(repo, t, "001_a.sql", upSQL), file(repo, t, "001_a.sql", "-- +goose Up\ndrop table users;\n"))}
			},
			dir: "db", code: failure.CodePermanent, parts: []string{"001_a.sql"},
		},
		{
			name: "executable file",
			root: func() []gitserver.TreeEntry {
				return []gitserver.TreeEntry{dir(repo, t, "db", gitserver.TreeEntry{Mode: gitserver.ModeExecutable, Name: "001_a.sql", Hash: repo.WriteBlob(t, upSQL)})}
			},
			dir: "db", files: map[string]string{"001_a.sql": upSQL},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := repo.CommitTree(t, repo.WriteTree(t, tc.root()...), tc.name)
			tmp := t.TempDir()
			fsys, err := gitsource.Remote{URL: url}.Fetch(ctx, c, c, tc.dir, tmp)
			if tc.files == nil {
				expectErr(t, err, tc.code, nil, tc.parts...)
			} else {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if got := read(t, fsys); !maps.Equal(got, tc.files) {
					t.Fatalf("files %v, want %v", got, tc.files)
				}
			}
			for _, p := range listTree(t, tmp) {
				if strings.Contains(p, "->") || strings.Contains(p, "escaped") || strings.Contains(p, "passwd") {
					t.Errorf("written: %s (everything under %s: %v)", p, tmp, listTree(t, tmp))
				}
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(tmp), "escaped.sql")); err == nil {
				t.Errorf("a file was written outside the fetch's directory")
			}
		})
	}
}

// Tags of things that are not commits, and tags of tags.
func TestTagShapes(t *testing.T) {
	s := start(t)
	h := makeHistory(t, s, "tags")
	r := gitsource.Remote{URL: h.repo.URL()}
	ctx := context.Background()
	tree := h.repo.RevParse(t, h.c1+"^{tree}")
	blob := h.repo.WriteBlob(t, upSQL)

	h.repo.Tag(t, "inner", h.c2)
	h.repo.Tag(t, "outer", h.repo.RevParse(t, "refs/tags/inner^{tag}")) // a tag of a tag
	prev := "outer"
	for i := range 12 { // deeper than anyone tags
		name := "deep" + string(rune('a'+i))
		h.repo.Tag(t, name, h.repo.RevParse(t, "refs/tags/"+prev+"^{tag}"))
		prev = name
	}
	h.repo.Tag(t, "tree-tag", tree)
	h.repo.LightweightTag(t, "blob-tag", blob)
	h.repo.LightweightTag(t, "tree-light", tree)

	for _, rev := range []string{"outer", "refs/tags/outer"} {
		sha, err := r.Resolve(ctx, rev)
		if err != nil || sha != h.c2 {
			t.Fatalf("Resolve(%s) = %s, %v; want %s", rev, sha, err, h.c2)
		}
		got, err := fetch(t, r, sha, rev, "db")
		if err != nil {
			t.Fatalf("Fetch through a tag of a tag: %v", err)
		}
		if want := under(h.files[h.c2], "db"); !maps.Equal(got, want) {
			t.Fatalf("files %v, want %v", got, want)
		}
	}
	// The deep chain peels to c2 on the server and in the fetch.
	if sha, err := r.Resolve(ctx, prev); err != nil || sha != h.c2 {
		t.Fatalf("Resolve(%s) = %s, %v; want %s", prev, sha, err, h.c2)
	}
	if _, err := fetch(t, r, h.c2, prev, "db"); err != nil {
		t.Fatalf("Fetch through a chain of 14 tags: %v", err)
	}
	for _, rev := range []string{"tree-tag", "blob-tag", "tree-light"} {
		t.Run(rev, func(t *testing.T) {
			sha, err := r.Resolve(ctx, rev)
			if err == nil {
				// Resolve cannot see the kind of a lightweight tag's object; the
				// fetch of the same step must refuse it.
				_, err = fetch(t, r, sha, rev, "db")
			}
			expectErr(t, err, failure.CodePermanent, gitsource.ErrRevisionNotFound, rev)
			if !strings.Contains(err.Error(), "not a commit") {
				t.Errorf("error does not say it is not a commit: %v", err)
			}
		})
	}
	// An annotated tag's own SHA (as git show-ref prints it) given as the commit:
	// named, with the commit to give instead, over both protocols.
	tagSHA := h.repo.RevParse(t, "refs/tags/v1^{tag}")
	for _, url := range []string{h.repo.URL(), h.repo.GitURL()} {
		r := gitsource.Remote{URL: url}
		sha, err := r.Resolve(ctx, tagSHA)
		if err == nil {
			_, err = fetch(t, r, sha, tagSHA, "db")
		}
		expectErr(t, err, failure.CodePermanent, gitsource.ErrRevisionNotFound, tagSHA, `annotated tag "v1"`, h.c1)
	}
	// A tree's or blob's SHA given as the commit.
	for _, sha := range []string{tree, blob} {
		_, err := fetch(t, r, sha, sha, "db")
		expectErr(t, err, failure.CodePermanent, gitsource.ErrRevisionNotFound, sha)
	}
}

// A server that misbehaves: every answer is classified (exit 1 or 75, never a
// hang), its message stays short, and no credential shows in it.
func TestServerMisbehaves(t *testing.T) {
	s := start(t)
	h := makeHistory(t, s, "app", gitserver.WithToken("ci", token))
	r := gitsource.Remote{URL: h.repo.URL(), Auth: gitsource.Auth{Username: "ci", Token: token}}
	ctx := context.Background()
	for _, tc := range []struct {
		fault gitserver.Fault
		pack  bool // on the pack's transfer, not the ref listing
		code  int
		parts []string
	}{
		{gitserver.Garbage, false, failure.CodePermanent, []string{h.repo.URL()}},
		{gitserver.Garbage, true, failure.CodePermanent, []string{h.repo.URL()}},
		{gitserver.Truncate, false, failure.CodeTransient, []string{h.repo.URL()}},
		{gitserver.Truncate, true, failure.CodeTransient, []string{h.repo.URL()}},
		{gitserver.EndlessError, false, failure.CodePermanent, []string{h.repo.URL()}},
		{gitserver.EndlessError, true, failure.CodePermanent, []string{h.repo.URL()}},
		{gitserver.RateLimited, false, failure.CodeTransient, []string{h.repo.URL(), "403", "Retry-After"}},
		{gitserver.RateLimited, true, failure.CodeTransient, []string{h.repo.URL(), "403", "Retry-After"}},
		{gitserver.Reflect, false, failure.CodePermanent, []string{h.repo.URL(), "refused"}},
		{gitserver.Reflect, true, failure.CodePermanent, []string{h.repo.URL(), "refused"}},
	} {
		name := tc.fault.String()
		if tc.pack {
			name += "/pack"
		}
		t.Run(name, func(t *testing.T) {
			var err error
			if tc.pack {
				s.FailNextPack(1, tc.fault)
				_, err = fetch(t, r, h.c1, "v1", "db")
			} else {
				s.FailNext(1, tc.fault)
				_, err = r.Resolve(ctx, "v1")
			}
			expectErr(t, err, tc.code, nil, tc.parts...)
			if n := len(err.Error()); n > 2000 {
				t.Errorf("the message is %d bytes long: %.300s...", n, err)
			}
			auth := base64.StdEncoding.EncodeToString([]byte("ci:" + token))
			if strings.Contains(err.Error(), auth) {
				t.Errorf("the message holds the Authorization header: %s", err)
			}
			if _, err := fetch(t, r, h.c1, "v1", "db"); err != nil {
				t.Fatalf("after the fault: %v", err)
			}
		})
	}
}

// returns runs f and fails the test if it has not returned after a minute: a hang
// guard, not a measurement.
func returns(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatalf("%s has not returned after a minute", what)
		return nil
	}
}

// A server that stops sending, or sends only progress, is given up on after the
// stall timeout (exit 75, a retry may find it well), over every protocol.
func TestServerStalls(t *testing.T) {
	t.Cleanup(gitsource.SetStallTimeouts(2*time.Second, 3*time.Second)) // after the parallel subtests
	const nothing, onlyProgress = "nothing came for 2s", "no pack data came for 3s"
	for _, tc := range []struct {
		name  string
		proto string
		fault gitserver.Fault
		pack  bool
		why   string
	}{
		{"http refs", "http", gitserver.Stall, false, nothing},
		{"http refs midway", "http", gitserver.StallMidway, false, nothing},
		{"http pack", "http", gitserver.Stall, true, nothing},
		{"http pack midway", "http", gitserver.StallMidway, true, nothing},
		{"http pack endless progress", "http", gitserver.EndlessProgress, true, onlyProgress},
		{"git", "git", gitserver.Stall, false, nothing},
		{"ssh", "ssh", gitserver.Stall, false, nothing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each its own server: the faults are the server's
			s := start(t)
			h := makeHistory(t, s, "app")
			r := gitsource.Remote{URL: h.repo.URL()}
			switch tc.proto {
			case "git":
				r.URL = h.repo.GitURL()
			case "ssh":
				key, pub := gitserver.NewClientKey(t)
				x := s.StartSSH(t, pub)
				r = gitsource.Remote{URL: x.URL(h.repo), Auth: gitsource.Auth{SSHKey: key, KnownHosts: []byte(x.KnownHosts())}}
			}
			err := returns(t, "the fetch", func() error {
				if tc.pack {
					s.FailNextPack(1, tc.fault)
				} else {
					s.FailNext(1, tc.fault)
				}
				_, err := fetch(t, r, h.c1, "v1", "db")
				return err
			})
			expectErr(t, err, failure.CodeTransient, gitsource.ErrStalled, tc.why)
		})
	}
}

// Redirects: credentials never follow to another origin (another port is another
// origin), and a redirect of the pack's transfer is refused, as git does by default.
func TestRedirects(t *testing.T) {
	s := start(t)
	other := start(t)
	h := makeHistory(t, s, "app", gitserver.WithToken("ci", token))
	makeHistory(t, other, "app", gitserver.WithToken("ci", token))
	pub := makeHistory(t, other, "pub")
	r := gitsource.Remote{URL: h.repo.URL(), Auth: gitsource.Auth{Username: "ci", Token: token}}
	ctx := context.Background()
	noAuthAt := func(t *testing.T, srv *gitserver.Server, from int) {
		t.Helper()
		for _, q := range srv.Requests()[from:] {
			if q.Authorization {
				t.Errorf("the other server got credentials: %+v", q)
			}
		}
	}

	t.Run("refs to another host", func(t *testing.T) {
		from := len(other.Requests())
		s.RedirectNext(1, other.URL())
		_, err := r.Resolve(ctx, "v1")
		expectErr(t, err, failure.CodePermanent, gitsource.ErrAuth, "redirected to "+other.URL(), "never sent to another host")
		noAuthAt(t, other, from)
		if len(other.Requests()) == from {
			t.Fatal("the redirect was not followed at all")
		}
	})
	t.Run("pack to another host", func(t *testing.T) {
		from := len(other.Requests())
		s.RedirectNextPack(1, other.URL())
		_, err := fetch(t, r, h.c1, "v1", "db")
		expectErr(t, err, failure.CodePermanent, nil, "redirect")
		noAuthAt(t, other, from)
	})
	t.Run("token in the redirect's URL", func(t *testing.T) {
		s.RedirectNext(1, other.URL()+"/x/"+token)
		_, err := r.Resolve(ctx, "v1")
		if err == nil {
			t.Fatal("no error")
		}
		noSecret(t, err)
	})
	t.Run("public repository moved to another host", func(t *testing.T) {
		s.RedirectNext(2, other.URL())
		moved := gitsource.Remote{URL: s.URL() + "/pub.git"}
		sha, err := moved.Resolve(ctx, "v1")
		if err != nil || sha != pub.c1 {
			t.Fatalf("Resolve through a redirect = %s, %v; want %s", sha, err, pub.c1)
		}
	})
}

// secretMount writes files as the kubelet mounts a Secret: each key a symbolic
// link to ..data/key, ..data a link to a timestamped directory holding the files.
func secretMount(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	stamp := "..2024_05_01_12_00_00.123456789"
	if err := os.Mkdir(filepath.Join(dir, stamp), 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range files {
		if err := os.WriteFile(filepath.Join(dir, stamp, k), []byte(v), 0o400); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(stamp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Credentials as they really arrive: a Secret mount's links, a newline at the end
// of a token made with --from-file, a passphrase-protected key, known_hosts with
// hashed host names, a Secret whose keys are named otherwise.
func TestCredentialShapes(t *testing.T) {
	s := start(t)
	h := makeHistory(t, s, "private", gitserver.WithToken("ci", token))
	key, pub := gitserver.NewClientKey(t)
	encKey, encPub := newEncryptedKey(t, "correct horse")
	x := s.StartSSH(t, pub, encPub)
	ctx := context.Background()
	hashed := knownhosts.Line([]string{knownhosts.HashHostname(knownhosts.Normalize(x.Addr()))}, x.HostKey()) + "\n"

	for _, tc := range []struct {
		name  string
		url   string
		files map[string]string
		code  int // 0: the fetch works
		parts []string
	}{
		{"token from --from-file", h.repo.URL(), map[string]string{"username": "ci\n", "token": token + "\n"}, 0, nil},
		{"token with CRLF", h.repo.URL(), map[string]string{"username": "ci\r\n", "token": token + "\r\n"}, 0, nil},
		{"basic-auth Secret", h.repo.URL(), map[string]string{"username": "ci", "password": token}, 0, nil},
		{"ssh key", x.URL(h.repo), map[string]string{"ssh-privatekey": string(key), "known_hosts": x.KnownHosts()}, 0, nil},
		{"ssh key with passphrase", x.URL(h.repo), map[string]string{"ssh-privatekey": string(encKey), "ssh-passphrase": "correct horse\n", "known_hosts": x.KnownHosts()}, 0, nil},
		{"hashed known_hosts", x.URL(h.repo), map[string]string{"ssh-privatekey": string(key), "known_hosts": "# comment\n" + hashed}, 0, nil},
		{"one Secret for both kinds of URL, https", h.repo.URL(), map[string]string{"username": "ci", "token": token,
			"ssh-privatekey": string(key), "known_hosts": x.KnownHosts()}, 0, nil},
		{"one Secret for both kinds of URL, ssh", x.URL(h.repo), map[string]string{"username": "ci", "token": token,
			"ssh-privatekey": string(key), "known_hosts": x.KnownHosts()}, 0, nil},
		{"user and token in the username key", h.repo.URL(), map[string]string{"username": "ci:" + token},
			failure.CodeUsage, []string{"username is set but neither"}},
		{"keys named otherwise", h.repo.URL(), map[string]string{"GITHUB_TOKEN": token, "user": "ci"},
			failure.CodePermanent, []string{"GITHUB_TOKEN", "user", "token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			auth, err := gitsource.LoadAuth(secretMount(t, tc.files))
			if err != nil && tc.code == failure.CodeUsage {
				expectErr(t, err, tc.code, gitsource.ErrInvalidAuth, tc.parts...)
				return
			}
			if err != nil {
				t.Fatalf("LoadAuth: %v", err)
			}
			r := gitsource.Remote{URL: tc.url, Auth: auth}
			sha, err := r.Resolve(ctx, "v1")
			if err == nil {
				_, err = fetch(t, r, sha, "v1", "db")
			}
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("with a Secret mount: %v", err)
				}
				return
			}
			expectErr(t, err, tc.code, gitsource.ErrAuth, tc.parts...)
		})
	}
}

// newEncryptedKey is an ed25519 key as PEM encrypted with passphrase, and its
// public key.
func newEncryptedKey(t *testing.T, passphrase string) ([]byte, ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), signer.PublicKey()
}

// Revisions a careless user or a hostile template could give: each is refused with
// a short message naming it, never taken for something else.
func TestOddRevisions(t *testing.T) {
	s := start(t)
	h := makeHistory(t, s, "app")
	r := gitsource.Remote{URL: h.repo.URL()}
	ctx := context.Background()
	for _, rev := range []string{
		"refs/heads/../heads/main", "refs/tags/v1/../v1", "-x", "--upload-pack=touch /tmp/pwned", "HEAD~1", "main^", "v1^{}",
		"v1^{commit}", "refs/tags/v1^{}", " v1", "v1 ", "v1\n", "v1\x00", "v1:db", "@{-1}", "main@{1}", "*",
		"refs/heads/*", strings.Repeat("v", 10<<10), "refs/" + strings.Repeat("x/", 5000), "v1.lock", ".hidden", "v1.", "a//b",
		"@", "\xff\xfe",
	} {
		t.Run(fmt.Sprintf("%.40q", rev), func(t *testing.T) {
			sha, err := r.Resolve(ctx, rev)
			if err == nil {
				t.Fatalf("Resolve(%q) = %s", rev, sha)
			}
			noSecret(t, err)
			// Refused before asking the server: no ref can have such a name.
			expectErr(t, err, failure.CodeUsage, gitsource.ErrInvalidRevision)
			if err := gitsource.ValidateRevision(rev); !errors.Is(err, gitsource.ErrInvalidRevision) {
				t.Errorf("ValidateRevision: %v", err)
			}
			if n := len(err.Error()); n > 1000 {
				t.Errorf("the message is %d bytes long: %.200s", n, err)
			}
			if strings.ContainsAny(err.Error(), "\n\x00") {
				t.Errorf("the message holds a line break or NUL: %q", err)
			}
		})
	}
	// Valid names that are no ref are looked up, and named.
	for _, rev := range []string{"vé", "release/2024-05", "v1.0.0-rc.1+build.5", "refs/tags/v9", "HEAD"} {
		_, err := r.Resolve(ctx, rev)
		if rev == "HEAD" {
			if err != nil {
				t.Errorf("Resolve(HEAD): %v", err)
			}
			continue
		}
		expectErr(t, err, failure.CodePermanent, gitsource.ErrRevisionNotFound, rev)
	}
}

// Secrets typed into the URL: refused, and never shown back.
func TestURLWithSecrets(t *testing.T) {
	for _, tc := range []struct{ url, secret string }{
		{"https://git.example.com/x.git?private_token=glpat-Q7v2", "glpat-Q7v2"},
		{"https://git.example.com/x.git#glpat-Q7v2", "glpat-Q7v2"},
		{"https://oauth2:glpat-Q7v2/git.example.com/x.git", "glpat-Q7v2"}, // the '@' forgotten
		{"https://git.example.com:glpat-Q7v2/x.git", "glpat-Q7v2"},
		{"https://oauth2:glpat-Q7v2@git.example.com/x.git", "glpat-Q7v2"},
		{"ssh://git:glpat-Q7v2@git.example.com/x.git", "glpat-Q7v2"},
		{"git:glpat-Q7v2@git.example.com:x.git", "glpat-Q7v2"},
	} {
		r := gitsource.Remote{URL: tc.url}
		for _, err := range []error{r.Validate(), func() error { _, err := r.Resolve(context.Background(), "v1"); return err }()} {
			expectErr(t, err, failure.CodeUsage, gitsource.ErrInvalidURL)
			if strings.Contains(err.Error(), tc.secret) {
				t.Errorf("%s: the message shows the secret: %v", tc.url, err)
			}
		}
		if s := fmt.Sprint(r); strings.Contains(s, tc.secret) {
			t.Errorf("printing the Remote shows the secret: %s", s)
		}
	}
}

// A server that answers a fetch of one commit with another: objects are stored
// under the hash of their content, so the commit asked for is missing and the fetch
// fails; the other commit's files are never returned.
func TestServerSubstitutes(t *testing.T) {
	s := start(t)
	for _, filter := range []bool{true, false} {
		t.Run(fmt.Sprintf("filter=%v", filter), func(t *testing.T) {
			h := makeHistory(t, s, fmt.Sprintf("subst-%v", filter), gitserver.AllowFilter(filter))
			r := gitsource.Remote{URL: h.repo.URL()}
			s.SubstituteNextPack(1, h.c3)
			got, err := fetch(t, r, h.c0, h.c0, "db")
			if err == nil {
				t.Fatalf("Fetch of %s answered with %s gave files %v", h.c0, h.c3, got)
			}
			expectErr(t, err, failure.CodePermanent, nil, h.c0)
		})
	}
}

// A large migration (seed data) is streamed from the pack to its file: the fetch's
// heap stays near one copy of it (go-git indexes each object in memory once), not
// three (it read every object whole into memory again to write it out).
func TestLargeFile(t *testing.T) {
	s := start(t)
	repo := s.NewRepo(t, "large")
	const size = 24 << 20
	c := func() string {
		b := make([]byte, size/2)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		return repo.Commit(t, map[string]string{"db/00001_seed.sql": hex.EncodeToString(b)}, "seed")
	}()
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	peak := base.HeapAlloc
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
		}
	}()
	fsys, err := gitsource.Remote{URL: repo.URL()}.Fetch(context.Background(), c, c, "db", t.TempDir())
	close(stop)
	<-stopped
	if err != nil {
		t.Fatal(err)
	}
	if st, err := fs.Stat(fsys, "00001_seed.sql"); err != nil || st.Size() != size {
		t.Fatalf("the file: %v, %v; want %d bytes", st, err, size)
	}
	grew := peak - base.HeapAlloc
	t.Logf("a %d MiB file: the heap grew by %d MiB at most", size>>20, grew>>20)
	if grew > size*3/2 {
		t.Errorf("the heap grew by %d MiB for a %d MiB file", grew>>20, size>>20)
	}
}

// Garbage and truncation over git:// and ssh, which have no status codes.
func TestServerMisbehavesWithoutHTTP(t *testing.T) {
	s := start(t)
	h := makeHistory(t, s, "app")
	key, pub := gitserver.NewClientKey(t)
	x := s.StartSSH(t, pub)
	for _, tc := range []struct {
		name  string
		r     gitsource.Remote
		fault gitserver.Fault
		code  int
	}{
		{"git garbage", gitsource.Remote{URL: h.repo.GitURL()}, gitserver.Garbage, failure.CodePermanent},
		{"git dropped", gitsource.Remote{URL: h.repo.GitURL()}, gitserver.Drop, failure.CodeTransient},
		{"ssh garbage", gitsource.Remote{URL: x.URL(h.repo), Auth: gitsource.Auth{SSHKey: key, KnownHosts: []byte(x.KnownHosts())}}, gitserver.Garbage, failure.CodeTransient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.FailNext(1, tc.fault)
			_, err := tc.r.Resolve(context.Background(), "v1")
			expectErr(t, err, tc.code, nil)
			if _, err := fetch(t, tc.r, h.c1, "v1", "db"); err != nil {
				t.Fatalf("after the fault: %v", err)
			}
		})
	}
}
