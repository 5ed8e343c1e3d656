package ocisource_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/ocisource"
	"github.com/chartreuse-go/chartreuse/test/errcheck"
	"github.com/chartreuse-go/chartreuse/test/registry"
	"github.com/chartreuse-go/chartreuse/test/waitfor"
)

// password is distinctive so that any echo of it in a message is found.
const (
	user     = "puller"
	password = "pw-Hx7qL2-5e0c-not-for-print"
)

func start(t *testing.T, opts ...registry.Option) *registry.Registry {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a registry (not with -short)")
	}
	return registry.Start(t, "127.0.0.1:0", opts...)
}

// secretForms are the spellings a leak of the password could take.
func secretForms() []string {
	return []string{password, base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}
}

// noSecret fails the test if the password shows in err, however it is printed.
func noSecret(t *testing.T, err error) {
	t.Helper()
	errcheck.NoSecret(t, err, secretForms()...)
}

// expectErr checks err's exit code, sentinel and message parts.
func expectErr(t *testing.T, err error, code int, target error, parts ...string) {
	t.Helper()
	errcheck.Expect(t, err, errcheck.Want{Code: code, Is: target, Parts: parts, Secrets: secretForms()})
}

// read returns every file of fsys (path → content).
func read(t *testing.T, fsys fs.FS) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !d.Type().IsRegular() {
			t.Errorf("%s is no regular file: %v", p, d.Type())
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

func fetch(t *testing.T, img ocisource.Image, digest, subdir string) (map[string]string, error) {
	t.Helper()
	fsys, err := img.Fetch(context.Background(), digest, subdir, t.TempDir())
	noSecret(t, err)
	if err != nil {
		return nil, err
	}
	return read(t, fsys), nil
}

func resolve(t *testing.T, img ocisource.Image) (string, error) {
	t.Helper()
	d, err := img.Resolve(context.Background())
	noSecret(t, err)
	return d, err
}

func wantFiles(t *testing.T, got, want map[string]string) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Fatalf("files:\n%q\nwant:\n%q", got, want)
	}
}

const (
	sql1 = "-- +goose Up\ncreate table a (id int);\n"
	sql2 = "-- +goose Up\ncreate table b (id int);\n"
	sql3 = "-- +goose Up\ncreate table c (id int);\n"
)

// app is a data-only image: migrations in two layers, other files around them.
func app() []map[string]string {
	return []map[string]string{
		{"migrations/": registry.Dir, "migrations/001_a.sql": sql1, "README.md": "app", "etc/": registry.Dir, "etc/app.conf": "x"},
		{"migrations/002_b.sql": sql2, "migrations/seed/data.csv": "1,2\n", "docs/notes.md": "n"},
	}
}

var appMigrations = map[string]string{"001_a.sql": sql1, "002_b.sql": sql2, "seed/data.csv": "1,2\n"}

func TestResolveAndFetch(t *testing.T) {
	r := start(t)
	digest := r.Push(t, "app/migrations", "v1", app()...)
	for _, tc := range []struct {
		name, ref string
		requests  bool // Resolve asks the registry
	}{
		{"tag", r.Ref("app/migrations", "v1"), true},
		{"digest", r.Ref("app/migrations", digest), false},
		{"tag and digest", r.Ref("app/migrations", "v1") + "@" + digest, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := ocisource.Image{Ref: tc.ref}
			if err := img.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			before := len(r.Requests())
			got, err := resolve(t, img)
			if err != nil {
				t.Fatalf("Resolve: %v\n%s", err, r.Log())
			}
			if got != digest {
				t.Fatalf("Resolve = %s, want %s", got, digest)
			}
			if asked := len(r.Requests()) > before; asked != tc.requests {
				t.Fatalf("Resolve asked the registry: %v, want %v (%v)", asked, tc.requests, r.Requests()[before:])
			}
			for _, dir := range []string{"migrations", "/migrations", "migrations/", "./migrations"} {
				files, err := fetch(t, img, got, dir)
				if err != nil {
					t.Fatalf("Fetch(%q): %v\n%s", dir, err, r.Log())
				}
				wantFiles(t, files, appMigrations)
			}
		})
	}
	t.Run("root", func(t *testing.T) {
		img := ocisource.Image{Ref: r.Ref("app/migrations", "v1")}
		for _, dir := range []string{"", "/", "."} {
			files, err := fetch(t, img, digest, dir)
			if err != nil {
				t.Fatalf("Fetch(%q): %v", dir, err)
			}
			wantFiles(t, files, map[string]string{"README.md": "app", "etc/app.conf": "x", "docs/notes.md": "n",
				"migrations/001_a.sql": sql1, "migrations/002_b.sql": sql2, "migrations/seed/data.csv": "1,2\n"})
		}
	})
	t.Run("deeper directory", func(t *testing.T) {
		d := r.Push(t, "app/deep", "v1", map[string]string{"srv/app/db/migrations/001_a.sql": sql1, "srv/app/main": "bin"})
		files, err := fetch(t, ocisource.Image{Ref: r.Ref("app/deep", "v1")}, d, "srv/app/db/migrations")
		if err != nil {
			t.Fatal(err)
		}
		wantFiles(t, files, map[string]string{"001_a.sql": sql1})
	})
}

// A reference pinned by digest is fetched at that digest only: another digest
// given to Fetch is a usage error, not a silent choice of one of them.
func TestPinnedReferenceOtherDigest(t *testing.T) {
	r := start(t)
	v1 := r.Push(t, "app/migrations", "v1", map[string]string{"migrations/001_a.sql": sql1})
	v2 := r.Push(t, "app/migrations", "v2", map[string]string{"migrations/001_a.sql": sql1, "migrations/002_b.sql": sql2})
	for _, ref := range []string{r.Ref("app/migrations", v1), r.Ref("app/migrations", "v1") + "@" + v1, r.Ref("app/migrations", "v2") + "@" + v1} {
		img := ocisource.Image{Ref: ref}
		before := len(r.Requests())
		_, err := fetch(t, img, v2, "migrations")
		expectErr(t, err, failure.CodeUsage, ocisource.ErrInvalidReference, v1, v2)
		if n := len(r.Requests()) - before; n > 0 {
			t.Errorf("%d requests before the refusal", n)
		}
		got, err := fetch(t, img, v1, "migrations")
		if err != nil {
			t.Fatal(err)
		}
		wantFiles(t, got, map[string]string{"001_a.sql": sql1})
	}
}

// A tag moved between Resolve and Fetch: the run keeps the digest it resolved
// while the registry has it, and fails with ErrImageNotFound once it is deleted.
func TestTagMoved(t *testing.T) {
	r := start(t)
	img := ocisource.Image{Ref: r.Ref("app/migrations", "stable")}
	old := r.Push(t, "app/migrations", "stable", map[string]string{"migrations/001_a.sql": sql1})
	resolved, err := resolve(t, img)
	if err != nil || resolved != old {
		t.Fatalf("Resolve = %s, %v; want %s", resolved, err, old)
	}
	moved := r.Push(t, "app/migrations", "stable", map[string]string{"migrations/001_a.sql": sql1, "migrations/002_b.sql": sql2})
	files, err := fetch(t, img, resolved, "migrations")
	if err != nil {
		t.Fatalf("Fetch of the old digest: %v", err)
	}
	wantFiles(t, files, map[string]string{"001_a.sql": sql1})
	if now, err := resolve(t, img); err != nil || now != moved {
		t.Fatalf("Resolve after the move = %s, %v; want %s", now, err, moved)
	}

	r.Delete(t, "app/migrations", old)
	_, err = fetch(t, img, resolved, "migrations")
	expectErr(t, err, failure.CodePermanent, ocisource.ErrImageNotFound, old, r.Host()+"/app/migrations")
}

func TestNotFound(t *testing.T) {
	r := start(t)
	digest := r.Push(t, "app/migrations", "v1", app()...)
	missing := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, ref, digest string
	}{
		{"unknown tag", r.Ref("app/migrations", "v9"), ""},
		{"unknown repository", r.Ref("app/nothing", "v1"), ""},
		{"unknown digest", r.Ref("app/migrations", "v1"), missing},
		{"unknown repository by digest", r.Ref("app/nothing", "v1"), digest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := ocisource.Image{Ref: tc.ref}
			if tc.digest == "" {
				_, err := resolve(t, img)
				expectErr(t, err, failure.CodePermanent, ocisource.ErrImageNotFound, tc.ref)
				return
			}
			_, err := fetch(t, img, tc.digest, "migrations")
			expectErr(t, err, failure.CodePermanent, ocisource.ErrImageNotFound, tc.digest)
		})
	}
}

// secretDir writes files the way the kubelet mounts a Secret: each key a link
// to ..data/key, ..data a link to a timestamped directory.
func secretDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	ts := filepath.Join(dir, "..2026_01_02_03_04_05.123456789")
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range files {
		if err := os.WriteFile(filepath.Join(ts, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func dockerConfig(host, user, password string) string {
	return fmt.Sprintf(`{"auths":{%q:{"username":%q,"password":%q,"auth":%q}}}`,
		host, user, password, base64.StdEncoding.EncodeToString([]byte(user+":"+password)))
}

func TestPrivateRegistry(t *testing.T) {
	r := start(t, registry.WithHtpasswd(user, password))
	digest := r.Push(t, "team/migrations", "v1", app()...)
	authOnly := fmt.Sprintf(`{"auths":{"http://%s/":{"auth":%q}}}`, r.Host(), base64.StdEncoding.EncodeToString([]byte(user+":"+password)))
	for _, tc := range []struct {
		name   string
		secret map[string]string // nil: no Secret mounted
		code   int
		parts  []string
	}{
		{"dockerconfigjson", map[string]string{".dockerconfigjson": dockerConfig(r.Host(), user, password)}, 0, nil},
		{"auth field only, URL key", map[string]string{".dockerconfigjson": authOnly}, 0, nil},
		{"config.json", map[string]string{"config.json": dockerConfig(r.Host(), user, password)}, 0, nil},
		{"repository prefix", map[string]string{".dockerconfigjson": dockerConfig(r.Host()+"/team", user, password)}, 0, nil},
		{"no Secret", nil, 1, []string{"no registry credentials were given", r.Host()}},
		{"no entry for the host", map[string]string{".dockerconfigjson": dockerConfig("registry.example.com", user, password)}, 1,
			[]string{"has no entry for " + r.Host(), "registry.example.com"}},
		{"wrong password", map[string]string{".dockerconfigjson": dockerConfig(r.Host(), user, password+"-wrong")}, 1,
			[]string{"refused the credentials of Secret key .dockerconfigjson", r.Host()}},
		{"wrong user", map[string]string{".dockerconfigjson": dockerConfig(r.Host(), "someone", password)}, 1,
			[]string{"refused the credentials"}},
		{"other repository prefix", map[string]string{".dockerconfigjson": dockerConfig(r.Host()+"/other", user, password)}, 1,
			[]string{"has no entry for"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "absent")
			if tc.secret != nil {
				dir = secretDir(t, tc.secret)
			}
			auth, err := ocisource.LoadAuth(dir)
			if err != nil {
				t.Fatalf("LoadAuth: %v", err)
			}
			img := ocisource.Image{Ref: r.Ref("team/migrations", "v1"), Auth: auth}
			got, err := resolve(t, img)
			if tc.code != 0 {
				expectErr(t, err, tc.code, ocisource.ErrAuth, tc.parts...)
				_, err = fetch(t, img, digest, "migrations")
				expectErr(t, err, tc.code, ocisource.ErrAuth, tc.parts...)
				return
			}
			if err != nil || got != digest {
				t.Fatalf("Resolve = %s, %v; want %s", got, err, digest)
			}
			files, err := fetch(t, img, got, "migrations")
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			wantFiles(t, files, appMigrations)
		})
	}
}

func TestSubdirNotFound(t *testing.T) {
	r := start(t)
	for _, tc := range []struct {
		name   string
		layers []map[string]string
		dir    string
		parts  []string
	}{
		{"absent", app(), "db/migrations", []string{"no directory /db", "/docs /etc /migrations"}},
		{"absent below", app(), "migrations/up", []string{"no directory /migrations/up"}},
		{"a file", app(), "README.md", []string{"/README.md is a file"}},
		{"a symbolic link", []map[string]string{{"app/migrations/001_a.sql": sql1, "migrations": registry.Symlink("app/migrations")}},
			"migrations", []string{"/migrations is a symbolic link", "app/migrations"}},
		{"removed by a later layer", []map[string]string{{"migrations/001_a.sql": sql1, "bin/": registry.Dir}, {"migrations": registry.Whiteout}},
			"migrations", []string{"no directory /migrations", "/bin"}},
		{"empty image", []map[string]string{{}}, "migrations", []string{"directories at its top: none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := r.Push(t, "app/sub", "", tc.layers...)
			_, err := fetch(t, ocisource.Image{Ref: r.Ref("app/sub", "")}, d, tc.dir)
			expectErr(t, err, failure.CodePermanent, ocisource.ErrSubdirNotFound, tc.parts...)
		})
	}
}

// The names at an image's top are kept only for the message of a missing
// directory, and only so many: every top-level file or directory was a node of
// the tree, so a 3 MB layer of a million empty files took migrate to 307 MiB RSS
// (the pod may use 256 Mi), and an image of 3000 top-level directories without
// the directory made a 21 KB error line.
func TestManyTopLevelNames(t *testing.T) {
	r := start(t)
	files := map[string]string{}
	for n := range 3000 {
		files[fmt.Sprintf("d%04d/", n)] = registry.Dir
		files[fmt.Sprintf("f%04d", n)] = ""
	}
	d := r.Push(t, "app/top", "", files)
	_, err := fetch(t, ocisource.Image{Ref: r.Ref("app/top", "")}, d, "migrations")
	expectErr(t, err, failure.CodePermanent, ocisource.ErrSubdirNotFound, "no directory /migrations", "/d0000 /d0001", "more")
	if len(err.Error()) > 1000 {
		t.Errorf("the error has %d bytes: %.300s...", len(err.Error()), err)
	}
	if strings.Contains(err.Error(), "/f0000") {
		t.Errorf("files are listed as directories: %.300s...", err)
	}

	files["migrations/001_a.sql"] = sql1
	d = r.Push(t, "app/top", "", files)
	got, err := fetch(t, ocisource.Image{Ref: r.Ref("app/top", "")}, d, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	wantFiles(t, got, map[string]string{"001_a.sql": sql1})
}

func TestWhiteouts(t *testing.T) {
	r := start(t)
	base := map[string]string{"migrations/": registry.Dir, "migrations/001_a.sql": sql1, "migrations/002_b.sql": sql2, "migrations/old/x.sql": "x"}
	for _, tc := range []struct {
		name  string
		upper []map[string]string
		want  map[string]string
	}{
		{"a file removed", []map[string]string{{"migrations/002_b.sql": registry.Whiteout}},
			map[string]string{"001_a.sql": sql1, "old/x.sql": "x"}},
		{"a directory removed", []map[string]string{{"migrations/old": registry.Whiteout}},
			map[string]string{"001_a.sql": sql1, "002_b.sql": sql2}},
		{"a file replaced", []map[string]string{{"migrations/001_a.sql": sql3}},
			map[string]string{"001_a.sql": sql3, "002_b.sql": sql2, "old/x.sql": "x"}},
		{"opaque directory", []map[string]string{{"migrations": registry.Opaque, "migrations/003_c.sql": sql3}},
			map[string]string{"003_c.sql": sql3}},
		{"whiteout and file in one layer keep the file", []map[string]string{{"migrations/002_b.sql": registry.Whiteout, "migrations/003_c.sql": sql3, "migrations/004.sql": registry.Whiteout}},
			map[string]string{"001_a.sql": sql1, "003_c.sql": sql3, "old/x.sql": "x"}},
		{"directory removed then made again", []map[string]string{{"migrations": registry.Whiteout}, {"migrations/003_c.sql": sql3}},
			map[string]string{"003_c.sql": sql3}},
		{"directory removed and made in one layer", []map[string]string{{"migrations": registry.Whiteout, "migrations/003_c.sql": sql3}},
			map[string]string{"003_c.sql": sql3}},
		{"opaque root", []map[string]string{{".": registry.Opaque, "migrations/003_c.sql": sql3}},
			map[string]string{"003_c.sql": sql3}},
		{"removed over three layers", []map[string]string{{"migrations/003_c.sql": sql3}, {"migrations/001_a.sql": registry.Whiteout, "migrations/003_c.sql": registry.Whiteout}},
			map[string]string{"002_b.sql": sql2, "old/x.sql": "x"}},
		{"whiteouts elsewhere", []map[string]string{{"etc/passwd": registry.Whiteout, "other": registry.Opaque}},
			map[string]string{"001_a.sql": sql1, "002_b.sql": sql2, "old/x.sql": "x"}},
		{"a file where the directory was", []map[string]string{{"migrations/old": "now a file"}},
			map[string]string{"001_a.sql": sql1, "002_b.sql": sql2, "old": "now a file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := r.Push(t, "app/wh", "", append([]map[string]string{base}, tc.upper...)...)
			files, err := fetch(t, ocisource.Image{Ref: r.Ref("app/wh", "")}, d, "migrations")
			if err != nil {
				t.Fatal(err)
			}
			wantFiles(t, files, tc.want)
		})
	}
}

// What could leave the directory, or is no file, is refused; a link to a file in
// the directory is a copy of it.
func TestContentRefused(t *testing.T) {
	r := start(t)
	for _, tc := range []struct {
		name   string
		layers []map[string]string
		parts  []string
		want   map[string]string // nil: refused
	}{
		{"symlink out, relative", []map[string]string{{"migrations/001_a.sql": registry.Symlink("../etc/passwd"), "etc/passwd": "root"}},
			[]string{"/migrations/001_a.sql", "leads out of /migrations"}, nil},
		{"symlink out, absolute", []map[string]string{{"migrations/001_a.sql": registry.Symlink("/etc/passwd")}},
			[]string{"leads out of /migrations"}, nil},
		{"symlink out of the root", []map[string]string{{"migrations/001_a.sql": registry.Symlink("../../../../host")}},
			[]string{"leads out of"}, nil},
		{"symlink through a link out", []map[string]string{{"migrations/a.sql": registry.Symlink("b.sql"), "migrations/b.sql": registry.Symlink("../x.sql"), "x.sql": sql1}},
			[]string{"leads out of"}, nil},
		{"symlink to a directory", []map[string]string{{"migrations/sub/x.sql": sql1, "migrations/link": registry.Symlink("sub")}},
			[]string{"a directory"}, nil},
		{"dangling symlink", []map[string]string{{"migrations/a.sql": registry.Symlink("gone.sql")}},
			[]string{"leads to nothing"}, nil},
		{"symlink loop", []map[string]string{{"migrations/a.sql": registry.Symlink("b.sql"), "migrations/b.sql": registry.Symlink("a.sql")}},
			[]string{"more than 40 links"}, nil},
		{"hard link out", []map[string]string{{"etc/passwd": "root", "migrations/x.sql": registry.Hardlink("etc/passwd")}},
			[]string{"hard link to \"etc/passwd\", outside /migrations"}, nil},
		{"hard link to nothing", []map[string]string{{"migrations/x.sql": registry.Hardlink("migrations/gone.sql")}},
			[]string{"no regular file"}, nil},
		{"dot-dot path", []map[string]string{{"migrations/../../evil.sql": sql1}},
			[]string{`holds ".."`}, nil},
		{"dot-dot path outside the directory", []map[string]string{{"migrations/001_a.sql": sql1, "usr/../../x": "x"}},
			[]string{`holds ".."`}, nil},
		{"dot-dot hard link", []map[string]string{{"migrations/x.sql": registry.Hardlink("migrations/../../etc/passwd")}},
			[]string{`holds ".."`}, nil},
		{"character device", []map[string]string{{"migrations/null": registry.CharDevice}},
			[]string{"device"}, nil},
		{"named pipe", []map[string]string{{"migrations/pipe": registry.Fifo}},
			[]string{"named pipe"}, nil},
		{"written through a symlink", []map[string]string{{"migrations/d": registry.Symlink("/etc")}, {"migrations/d/passwd": "x"}},
			[]string{"written through the symbolic link \"migrations/d\""}, nil},
		{"written through a symlinked directory in one layer", []map[string]string{{"migrations/d": registry.Symlink("../etc"), "migrations/d/x": "x"}},
			[]string{"written through the symbolic link"}, nil},

		{"symlink to a file inside", []map[string]string{{"migrations/001_a.sql": sql1, "migrations/latest.sql": registry.Symlink("001_a.sql"), "migrations/abs.sql": registry.Symlink("/migrations/001_a.sql")}},
			nil, map[string]string{"001_a.sql": sql1, "latest.sql": sql1, "abs.sql": sql1}},
		{"hard link inside", []map[string]string{{"migrations/001_a.sql": sql1, "migrations/002_b.sql": registry.Hardlink("migrations/001_a.sql")}},
			nil, map[string]string{"001_a.sql": sql1, "002_b.sql": sql1}},
		{"hard link to a lower layer", []map[string]string{{"migrations/001_a.sql": sql1}, {"migrations/002_b.sql": registry.Hardlink("/migrations/001_a.sql")}},
			nil, map[string]string{"001_a.sql": sql1, "002_b.sql": sql1}},
		{"links and devices elsewhere", []map[string]string{{"migrations/001_a.sql": sql1, "dev/null": registry.CharDevice, "bin": registry.Symlink("/usr/bin"), "etc/x": registry.Symlink("/host")}},
			nil, map[string]string{"001_a.sql": sql1}},
		{"a bad link removed by a later layer", []map[string]string{{"migrations/001_a.sql": sql1, "migrations/evil": registry.Symlink("/etc/passwd")}, {"migrations/evil": registry.Whiteout}},
			nil, map[string]string{"001_a.sql": sql1}},
		{"a symlinked directory replaced by a directory", []map[string]string{{"migrations/d": registry.Symlink("/etc")}, {"migrations/d": registry.Whiteout}, {"migrations/d/x.sql": sql1}},
			nil, map[string]string{"d/x.sql": sql1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := r.Push(t, "app/refused", "", tc.layers...)
			files, err := fetch(t, ocisource.Image{Ref: r.Ref("app/refused", "")}, d, "migrations")
			if tc.want != nil {
				if err != nil {
					t.Fatal(err)
				}
				wantFiles(t, files, tc.want)
				return
			}
			expectErr(t, err, failure.CodePermanent, ocisource.ErrRefused, tc.parts...)
		})
	}
}

func TestLimits(t *testing.T) {
	r := start(t)
	ocisource.SetLimits(t.Cleanup, 5, 1000)
	img := ocisource.Image{Ref: r.Ref("app/limits", "")}
	many := map[string]string{}
	for n := range 6 {
		many[fmt.Sprintf("migrations/%03d.sql", n)] = "x"
	}
	big := strings.Repeat("y", 600)
	for _, tc := range []struct {
		name   string
		layers []map[string]string
		parts  []string
	}{
		{"entries", []map[string]string{many}, []string{"more than 5 entries"}},
		{"entries over layers", []map[string]string{{"migrations/a": "1", "migrations/b": "2", "migrations/c": "3"}, {"migrations/a": "4", "migrations/b": "5", "migrations/c": registry.Whiteout, "migrations/d": "6"}},
			[]string{"more than 5 entries"}},
		{"whiteouts", []map[string]string{{"migrations/a": "1"}, {"migrations/w1": registry.Whiteout, "migrations/w2": registry.Whiteout, "migrations/w3": registry.Whiteout, "migrations/w4": registry.Whiteout, "migrations/w5": registry.Whiteout}},
			[]string{"more than 5 entries"}},
		{"bytes", []map[string]string{{"migrations/a.sql": big, "migrations/b.sql": big}}, []string{"more than 0 MiB"}},
		{"bytes over layers", []map[string]string{{"migrations/a.sql": big}, {"migrations/a.sql": big}}, []string{"more than 0 MiB"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := r.Push(t, "app/limits", "", tc.layers...)
			_, err := fetch(t, img, d, "migrations")
			expectErr(t, err, failure.CodePermanent, ocisource.ErrRefused, tc.parts...)
		})
	}
	t.Run("outside the directory, no bound", func(t *testing.T) {
		files := maps.Clone(many)
		for n := range 6 {
			delete(files, fmt.Sprintf("migrations/%03d.sql", n))
			files[fmt.Sprintf("usr/%03d", n)] = "x"
		}
		maps.Copy(files, map[string]string{"usr/a": big, "usr/b": big, "migrations/001.sql": sql1})
		d := r.Push(t, "app/limits", "", files)
		got, err := fetch(t, img, d, "migrations")
		if err != nil {
			t.Fatal(err)
		}
		wantFiles(t, got, map[string]string{"001.sql": sql1})
	})
}

// A registry that cannot be reached, or answers "not now", is transient (75).
func TestTransient(t *testing.T) {
	r := start(t)
	digest := r.Push(t, "app/migrations", "v1", app()...)
	img := ocisource.Image{Ref: r.Ref("app/migrations", "v1")}
	for _, tc := range []struct {
		name  string
		fail  func()
		parts []string
	}{
		{"503", func() { r.FailNext(1, registry.Unavailable) }, []string{"answered 503"}},
		{"429", func() { r.FailNext(1, registry.TooManyRequests) }, []string{"answered 429"}},
		{"dropped connection", func() { r.FailNext(1, registry.Drop) }, []string{"dropped the connection"}},
		{"503 on the manifest", func() { r.FailNext(1, 0); r.FailNext(1, registry.Unavailable) }, []string{"answered 503"}},
		{"503 on a blob", func() { r.FailNextBlob(1, registry.Unavailable) }, []string{"layer 1 of 2", "answered 503"}},
		{"blob cut halfway", func() { r.FailNextBlob(1, registry.Truncate) }, []string{"layer 1 of 2"}},
		// (A dropped connection that was reused is retried by net/http itself.)
		{"second blob cut", func() { r.FailNextBlob(1, 0); r.FailNextBlob(1, registry.Truncate) }, []string{"layer 2 of 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(tc.name, "blob") {
				tc.fail()
				_, err := resolve(t, img)
				expectErr(t, err, failure.CodeTransient, nil, tc.parts...)
			}
			tc.fail()
			_, err := fetch(t, img, digest, "migrations")
			expectErr(t, err, failure.CodeTransient, nil, tc.parts...)
			if _, err := fetch(t, img, digest, "migrations"); err != nil {
				t.Fatalf("Fetch after the fault: %v", err)
			}
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		img := ocisource.Image{Ref: addr + "/app/migrations:v1"}
		_, err = resolve(t, img)
		expectErr(t, err, failure.CodeTransient, nil, "cannot be reached", addr)
		_, err = fetch(t, img, digest, "migrations")
		expectErr(t, err, failure.CodeTransient, nil, "cannot be reached", addr)
	})
}

// A registry that stops sending, before its answer or in the middle of one, is
// given up on after the stall timeout (transient): the transport bounds only the
// wait for headers, and migrate has no deadline, so a blob that stopped halfway
// held the step forever.
func TestStalled(t *testing.T) {
	r := start(t)
	ocisource.SetStallTimeout(t.Cleanup, 2*time.Second)
	digest := r.Push(t, "app/migrations", "v1", app()...)
	img := ocisource.Image{Ref: r.Ref("app/migrations", "v1")}
	for _, tc := range []struct {
		name    string
		fail    func()
		resolve bool
		stalled string // the request that met the fault
		parts   []string
	}{
		{"no answer to the first request of Resolve", func() { r.FailNext(1, registry.Stall) }, true, "GET /v2/", []string{"resolving"}},
		{"no answer to the HEAD", func() { r.FailNext(1, 0); r.FailNext(1, registry.Stall) }, true, "HEAD /v2/app/migrations/manifests/v1", []string{"resolving"}},
		{"no answer to the first request of Fetch", func() { r.FailNext(1, registry.Stall) }, false, "GET /v2/", []string{"reading the manifest"}},
		{"manifest stops halfway", func() { r.FailNext(1, 0); r.FailNext(1, registry.StallMidway) }, false, "GET /v2/app/migrations/manifests/" + digest, []string{"reading the manifest"}},
		{"blob stops halfway", func() { r.FailNextBlob(1, registry.StallMidway) }, false, "GET /v2/app/migrations/blobs/", []string{"layer 1 of 2"}},
		{"second blob stops halfway", func() { r.FailNextBlob(1, 0); r.FailNextBlob(1, registry.StallMidway) }, false, "GET /v2/app/migrations/blobs/", []string{"layer 2 of 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.Requests())
			tc.fail()
			var err error
			if tc.resolve {
				_, err = resolve(t, img)
			} else {
				_, err = fetch(t, img, digest, "migrations")
			}
			expectErr(t, err, failure.CodeTransient, ocisource.ErrStalled, append(tc.parts, "nothing came from the registry for 2s", r.Host())...)
			// The registry lets go, and records the request, once the client has
			// closed the connection.
			var met []string
			_ = waitfor.Until(t.Context(), 10*time.Millisecond, time.Minute, func() bool {
				for _, req := range r.Requests()[before:] {
					if req.Fault != 0 {
						met = append(met, req.Method+" "+req.Path)
					}
				}
				return len(met) > 0
			})
			if len(met) != 1 || !strings.HasPrefix(met[0], tc.stalled) {
				t.Errorf("the stall met %q, want %s", met, tc.stalled)
			}
			if _, err := fetch(t, img, digest, "migrations"); err != nil {
				t.Fatalf("Fetch after the stall: %v", err)
			}
		})
	}
}

// A full disk while the files are written is transient (a retry runs in a new
// pod, with a new volume); it was permanent. A tmpfs of 256 KiB is the disk, so
// the test needs the right to mount (root in the test image).
func TestDiskFull(t *testing.T) {
	r := start(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	d := r.Push(t, "app/big", "", map[string]string{"migrations/001_a.sql": sql1, "migrations/seed.csv": strings.Repeat("1,2,3\n", 100_000)})
	_, err := ocisource.Image{Ref: r.Ref("app/big", "")}.Fetch(context.Background(), d, "migrations", dir)
	expectErr(t, err, failure.CodeTransient, syscall.ENOSPC, "migrations/seed.csv", "volume of TMPDIR is full")
}

// A blob whose stored bytes changed fails the fetch (ErrCorrupt), whichever layer
// it is and however it is compressed.
func TestCorruptBlob(t *testing.T) {
	r := start(t)
	for _, tc := range []struct {
		name string
		opts []tarball.LayerOption
	}{
		{"gzip", nil},
		{"zstd", []tarball.LayerOption{tarball.WithCompression("zstd"), tarball.WithMediaType(types.OCILayerZStd)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bottom := registry.Layer(t, map[string]string{"migrations/001_a.sql": sql1}, tc.opts...)
			top := registry.Layer(t, map[string]string{"migrations/002_b.sql": strings.Repeat(sql2, 100)}, tc.opts...)
			repo := "app/corrupt-" + tc.name
			d := r.PushImage(t, repo, "", registry.Image(t, bottom, top))
			img := ocisource.Image{Ref: r.Ref(repo, "")}
			if _, err := fetch(t, img, d, "migrations"); err != nil {
				t.Fatalf("Fetch before: %v", err)
			}
			ld, _ := top.Digest()
			r.CorruptBlob(t, ld.String())
			_, err := fetch(t, img, d, "migrations")
			expectErr(t, err, failure.CodePermanent, ocisource.ErrCorrupt, "layer 2 of 2", ld.String())
		})
	}
}

// Layers compressed with gzip, zstd or not at all, and an artifact whose layers
// are files named by their title (oras push).
func TestLayerFormats(t *testing.T) {
	r := start(t)
	files := map[string]string{"migrations/001_a.sql": sql1}
	uncompressed := static.NewLayer(registry.Tar(t, files), types.OCIUncompressedLayer)
	artifact, err := mutate.Append(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), "application/vnd.oci.empty.v1+json"),
		mutate.Addendum{Layer: static.NewLayer([]byte(sql1), "application/vnd.oci.image.layer.v1.tar"),
			Annotations: map[string]string{"org.opencontainers.image.title": "migrations/001_a.sql"}},
		mutate.Addendum{Layer: static.NewLayer([]byte(sql2), "application/sql"),
			Annotations: map[string]string{"org.opencontainers.image.title": "migrations/002_b.sql"}},
		mutate.Addendum{Layer: static.NewLayer([]byte("not kept"), "text/plain"),
			Annotations: map[string]string{"org.opencontainers.image.title": "README.md"}},
		mutate.Addendum{Layer: registry.Layer(t, map[string]string{"migrations/003_c.sql": sql3}),
			Annotations: map[string]string{"org.opencontainers.image.title": "migrations", "io.deis.oras.content.unpack": "true"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	for n, tc := range []struct {
		name string
		img  v1.Image
		want map[string]string
	}{
		{"gzip", registry.Image(t, registry.Layer(t, files)), map[string]string{"001_a.sql": sql1}},
		{"zstd", registry.Image(t, registry.Layer(t, files, tarball.WithCompression("zstd"), tarball.WithMediaType(types.OCILayerZStd))), map[string]string{"001_a.sql": sql1}},
		{"uncompressed", registry.Image(t, uncompressed), map[string]string{"001_a.sql": sql1}},
		{"docker media types", mutate.MediaType(registry.Image(t, registry.Layer(t, files, tarball.WithMediaType(types.DockerLayer))), types.DockerManifestSchema2), map[string]string{"001_a.sql": sql1}},
		{"artifact", artifact, map[string]string{"001_a.sql": sql1, "002_b.sql": sql2, "003_c.sql": sql3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tag := fmt.Sprintf("f%d", n)
			d := r.PushImage(t, "app/formats", tag, tc.img)
			img := ocisource.Image{Ref: r.Ref("app/formats", tag)}
			if got, err := resolve(t, img); err != nil || got != d {
				t.Fatalf("Resolve = %s, %v; want %s", got, err, d)
			}
			got, err := fetch(t, img, d, "migrations")
			if err != nil {
				t.Fatal(err)
			}
			wantFiles(t, got, tc.want)
		})
	}
	t.Run("not a tar archive", func(t *testing.T) {
		d := r.PushImage(t, "app/formats", "junk", registry.Image(t, static.NewLayer([]byte("just text, no tar"), types.OCILayer)))
		_, err := fetch(t, ocisource.Image{Ref: r.Ref("app/formats", "junk")}, d, "migrations")
		expectErr(t, err, failure.CodePermanent, nil, "not a tar archive")
	})
}

// zstdLayer is a layer of files compressed with zstd at the given window size.
func zstdLayer(t *testing.T, files map[string]string, window int) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	enc, err := zstd.NewWriter(&b, zstd.WithWindowSize(window))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Write(registry.Tar(t, files)); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return static.NewLayer(b.Bytes(), types.OCILayerZStd)
}

// A zstd frame's window is memory the decoder takes whatever the layer's size:
// a few KiB that ask for 512 MiB took 532 MiB of RSS in a step whose pod may use
// 256 MiB. A window over the bound is refused before it is allocated; the
// windows of zstd's levels up to 19 and of buildkit pass.
func TestZstdWindow(t *testing.T) {
	r := start(t)
	files := map[string]string{"migrations/001_a.sql": sql1, "usr/share/blob": strings.Repeat("0123456789abcdef", 1<<16)} // 1 MiB
	for _, tc := range []struct {
		name   string
		window int
		ok     bool
	}{
		{"8 MiB (zstd -19)", 8 << 20, true},
		{"32 MiB", 32 << 20, true},
		{"64 MiB", 64 << 20, false},
		{"512 MiB", 512 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := r.PushImage(t, "app/zstd", "", registry.Image(t, zstdLayer(t, files, tc.window)))
			got, err := fetch(t, ocisource.Image{Ref: r.Ref("app/zstd", "")}, d, "migrations")
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				wantFiles(t, got, map[string]string{"001_a.sql": sql1})
				return
			}
			expectErr(t, err, failure.CodePermanent, ocisource.ErrRefused, "layer 1 of 1", "zstd window", "32 MiB")
		})
	}
	t.Run("cut halfway", func(t *testing.T) {
		d := r.PushImage(t, "app/zstd", "", registry.Image(t, zstdLayer(t, files, 8<<20)))
		r.FailNextBlob(1, registry.Truncate)
		_, err := fetch(t, ocisource.Image{Ref: r.Ref("app/zstd", "")}, d, "migrations")
		expectErr(t, err, failure.CodeTransient, nil, "layer 1 of 1")
	})
}

func TestIndex(t *testing.T) {
	r := start(t)
	image := func(f string) v1.Image {
		return registry.Image(t, registry.Layer(t, map[string]string{"migrations/" + f: sql1}))
	}
	other := "s390x"
	if runtime.GOARCH == other {
		other = "ppc64le"
	}
	here := &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	there := &v1.Platform{OS: "linux", Architecture: other}
	attestation := registry.IndexEntry{Image: image("attestation.json"), Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"},
		Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"}}
	for _, tc := range []struct {
		name    string
		entries []registry.IndexEntry
		want    string // the file expected, "" for ErrNoPlatform
	}{
		{"this platform among others", []registry.IndexEntry{{Image: image("there.sql"), Platform: there}, {Image: image("here.sql"), Platform: here}}, "here.sql"},
		{"only another platform", []registry.IndexEntry{{Image: image("there.sql"), Platform: there}}, "there.sql"},
		{"only one, and an attestation", []registry.IndexEntry{{Image: image("there.sql"), Platform: there}, attestation}, "there.sql"},
		{"no platform given", []registry.IndexEntry{{Image: image("any.sql")}}, "any.sql"},
		{"two other platforms", []registry.IndexEntry{{Image: image("there.sql"), Platform: there}, {Image: image("win.sql"), Platform: &v1.Platform{OS: "windows", Architecture: "amd64"}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := r.PushIndex(t, "app/index", "v1", tc.entries...)
			img := ocisource.Image{Ref: r.Ref("app/index", "v1")}
			got, err := resolve(t, img)
			if err != nil || got != d {
				t.Fatalf("Resolve = %s, %v; want the index's digest %s", got, err, d)
			}
			files, err := fetch(t, img, got, "migrations")
			if tc.want == "" {
				expectErr(t, err, failure.CodePermanent, ocisource.ErrNoPlatform, "linux/"+runtime.GOARCH, "linux/"+other, "windows/amd64")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantFiles(t, files, map[string]string{tc.want: sql1})
		})
	}
}

// A proxy that repeats the request in its answer, Authorization header included:
// the credentials are masked in the message, the error keeps its kind.
func TestSecretEchoed(t *testing.T) {
	r := start(t, registry.WithHtpasswd(user, password))
	digest := r.Push(t, "team/migrations", "v1", app()...)
	auth, err := ocisource.LoadAuth(secretDir(t, map[string]string{".dockerconfigjson": dockerConfig(r.Host(), user, password)}))
	if err != nil {
		t.Fatal(err)
	}
	img := ocisource.Image{Ref: r.Ref("team/migrations", "v1"), Auth: auth}
	echo := func() { r.FailNext(1, 0); r.FailNext(1, registry.Reflect) }

	echo()
	_, err = resolve(t, img) // a HEAD: the answer has no body
	expectErr(t, err, failure.CodePermanent, ocisource.ErrAuth)
	echo()
	_, err = fetch(t, img, digest, "migrations")
	expectErr(t, err, failure.CodePermanent, ocisource.ErrAuth, "Forbidden by policy", "Authorization: Basic xxxxx")
	if reqs := r.Requests(); !reqs[len(reqs)-1].Authorization {
		t.Fatalf("the echoed request carried no credentials: %+v", reqs[len(reqs)-1])
	}
}

// BenchmarkFetch: 500 migrations in one layer, under a 32 MiB layer of other
// files (a tools image the migrations were baked into).
func BenchmarkFetch(b *testing.B) {
	r := registry.Start(b, "127.0.0.1:0")
	migrations := map[string]string{}
	for n := range 500 {
		migrations[fmt.Sprintf("migrations/%04d_step.sql", n)] = strings.Repeat(fmt.Sprintf("insert into t values (%d);\n", n), 20)
	}
	tools := map[string]string{}
	for n := range 32 {
		tools[fmt.Sprintf("usr/bin/tool%02d", n)] = strings.Repeat(fmt.Sprintf("%08x", n*7919), 1<<17) // 1 MiB each
	}
	d := r.Push(b, "app/bench", "v1", tools, migrations)
	img := ocisource.Image{Ref: r.Ref("app/bench", "v1")}
	b.ResetTimer()
	for b.Loop() {
		dir := b.TempDir()
		fsys, err := img.Fetch(context.Background(), d, "migrations", dir)
		if err != nil {
			b.Fatal(err)
		}
		if entries, _ := fs.ReadDir(fsys, "."); len(entries) != 500 {
			b.Fatalf("%d files", len(entries))
		}
	}
}
