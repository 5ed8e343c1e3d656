package db

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
	"github.com/chartreuse-go/chartreuse/test/registry"
	"github.com/chartreuse-go/chartreuse/test/stepbin"
)

// Secrets of the image cases: none may appear in any output.
const (
	registryUser     = "puller"
	registryPassword = "Reg-Pw-7hQx2-never-shown"
)

// registrySecrets are the registry password in the forms a registry or proxy could
// echo it: raw, and as the basic Authorization header carries it.
func registrySecrets() []string {
	var out []string
	for _, pw := range []string{registryPassword, registryPassword + "x"} {
		out = append(out, pw, base64.StdEncoding.EncodeToString([]byte(registryUser+":"+pw)))
	}
	return out
}

// images are the registries and images the image cases pull, on real registries.
type images struct {
	public, private *registry.Registry
	digest          string // public shop/migrations:v1, a valid image
	other           string // a digest of another manifest in shop/migrations
}

var imgs images

func startRegistries(t *testing.T) {
	pub := registry.Start(t, "127.0.0.1:0")
	priv := registry.Start(t, "127.0.0.1:0", registry.WithHtpasswd(registryUser, registryPassword))
	valid := map[string]string{"migrations/": registry.Dir, "migrations/00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")}
	imgs.digest = pub.Push(t, "shop/migrations", "v1", valid)
	imgs.other = pub.Push(t, "shop/migrations", "v2", valid, map[string]string{"migrations/00002_b.sql": mig("CREATE TABLE b (id int);", "DROP TABLE b;")})
	priv.Push(t, "shop/migrations", "v1", valid)
	for repo, layers := range map[string][]map[string]string{
		"shop/dotdot":        {valid, {"migrations/../../etc/00002_x.sql": mig("CREATE TABLE x (id int);", "")}},
		"shop/symlink-out":   {valid, {"migrations/00002_x.sql": registry.Symlink("/etc/passwd")}},
		"shop/symlink-up":    {valid, {"migrations/00002_x.sql": registry.Symlink("../../../../etc/passwd")}},
		"shop/hardlink-out":  {{"etc/passwd": "root:x:0:0", "migrations/00001_a.sql": valid["migrations/00001_a.sql"], "migrations/00002_x.sql": registry.Hardlink("etc/passwd")}},
		"shop/through-link":  {{"migrations/00001_a.sql": valid["migrations/00001_a.sql"], "migrations/d": registry.Symlink("/tmp")}, {"migrations/d/00002_x.sql": "x"}},
		"shop/device":        {valid, {"migrations/00002_x.sql": registry.CharDevice}},
		"shop/fifo":          {valid, {"migrations/00002_x.sql": registry.Fifo}},
		"shop/no-sql":        {{"migrations/README.md": "here soon", "migrations/archive/00001_a.sql": valid["migrations/00001_a.sql"]}},
		"shop/no-dir":        {{"db/00001_a.sql": valid["migrations/00001_a.sql"]}},
		"shop/file-not-dir":  {{"migrations": "a file"}},
		"shop/whited-out":    {valid, {"migrations": registry.Whiteout}},
		"shop/go-migration":  {valid, {"migrations/00002_b.go": "package migrations"}},
		"shop/bad-name":      {valid, {"migrations/add_b.sql": mig("CREATE TABLE b (id int);", "")}},
		"shop/corrupt":       {valid, {"migrations/00002_b.sql": strings.Repeat("-- padding\n", 100) + mig("CREATE TABLE b (id int);", "")}},
		"shop/zero-layers":   {},
		"shop/empty-layer":   {{}},
		"shop/dir-symlinked": {{"app/migrations/00001_a.sql": valid["migrations/00001_a.sql"], "migrations": registry.Symlink("app/migrations")}},
	} {
		if repo != "shop/corrupt" {
			pub.Push(t, repo, "v1", layers...)
			continue
		}
		top := registry.Layer(t, layers[1])
		pub.PushImage(t, repo, "v1", registry.Image(t, registry.Layer(t, layers[0]), top))
		ld, err := top.Digest()
		if err != nil {
			t.Fatal(err)
		}
		pub.CorruptBlob(t, ld.String())
	}
	image := func(f string) v1.Image {
		return registry.Image(t, registry.Layer(t, map[string]string{"migrations/" + f: mig("CREATE TABLE i (id int);", "")}))
	}
	pub.PushIndex(t, "shop/multiarch", "v1",
		registry.IndexEntry{Image: image("00001_s390x.sql"), Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}},
		registry.IndexEntry{Image: image("00001_win.sql"), Platform: &v1.Platform{OS: "windows", Architecture: "amd64"}})
	imgs.public, imgs.private = pub, priv
}

// registryCredentials writes a mounted dockerconfigjson Secret.
func (f *fixture) registryCredentials(files map[string]string) string {
	f.t.Helper()
	dir := filepath.Join(f.scratch, "registry-credentials")
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

func dockerConfigJSON(entries map[string][2]string) string {
	var parts []string
	for host, up := range entries {
		parts = append(parts, fmt.Sprintf(`%q:{"username":%q,"password":%q,"auth":%q}`,
			host, up[0], up[1], base64.StdEncoding.EncodeToString([]byte(up[0]+":"+up[1]))))
	}
	return `{"auths":{` + strings.Join(parts, ",") + `}}`
}

// imageCases: the migrations-image flags, and images that are bad or cannot be
// pulled now; every one fails before the database is touched.
func imageCases() []badCase {
	// fromImage pulls repo:v1 of the public registry (another reference with ref).
	fromImage := func(repo string, extra ...string) func(*fixture) []string {
		return func(f *fixture) []string {
			return append([]string{"--migrations-image", imgs.public.Ref(repo, "v1"), "--dir", "/migrations",
				"--registry-credentials", filepath.Join(f.scratch, "no-credentials")}, extra...)
		}
	}
	private := func(secret func(f *fixture) map[string]string) func(*fixture) []string {
		return func(f *fixture) []string {
			creds := filepath.Join(f.scratch, "no-credentials")
			if secret != nil {
				creds = f.registryCredentials(secret(f))
			}
			return []string{"--migrations-image", imgs.private.Ref("shop/migrations", "v1"), "--dir", "/migrations", "--registry-credentials", creds}
		}
	}
	fault := func(n int, fl registry.Fault) func(*fixture) { return func(*fixture) { imgs.public.FailNext(n, fl) } }
	blobFault := func(n int, fl registry.Fault) func(*fixture) {
		return func(*fixture) { imgs.public.FailNextBlob(n, fl) }
	}
	return []badCase{
		{name: "migrations image and git url", step: "migrate", args: flags("--migrations-image", "registry.example.com/shop-migrations:1.4.0", "--git-url", "https://git.example.com/shop.git", "--git-revision", "v1"), code: 2, want: []string{"--migrations-image", "--git-url"}},
		{name: "migrations digest without image", step: "migrate", args: flags("--migrations-digest", "sha256:"+strings.Repeat("a", 64)), code: 2, want: []string{"--migrations-digest"}},
		{name: "migrations image with a scheme", step: "migrate", args: flags("--migrations-image", "https://registry.example.com/shop:1"), code: 2, want: []string{"--migrations-image"}},
		{name: "migrations digest malformed", step: "migrate", args: flags("--migrations-image", "registry.example.com/shop:1", "--migrations-digest", "sha256:abc"), code: 2, want: []string{"--migrations-digest"}},
		{name: "migrations digest upper case", step: "migrate", args: flags("--migrations-image", "registry.example.com/shop:1", "--migrations-digest", "sha256:"+strings.Repeat("A", 64)), code: 2, want: []string{"--migrations-digest"}},
		{name: "migrations image unreachable", step: "migrate", args: flags("--migrations-image", "127.0.0.1:1/shop-migrations:1.4.0", "--dir", "/migrations"), code: 75, want: []string{"127.0.0.1:1"}},
		{name: "migrations image with credentials in it", step: "migrate", args: func(f *fixture) []string {
			return []string{"--migrations-image", registryUser + ":" + registryPassword + "@" + imgs.private.Ref("shop/migrations", "v1"), "--dir", "/migrations"}
		}, code: 2, want: []string{"--migrations-image", "credentials", "xxxxx@" + imgs.private.Host()}},
		{name: "migrations image with a token in it", step: "migrate", args: func(f *fixture) []string {
			return []string{"--migrations-image", registryPassword + "@" + imgs.private.Host(), "--dir", "/migrations"}
		}, code: 2, want: []string{"--migrations-image", "credentials"}},
		{name: "migrations image pinned to another digest", step: "migrate", args: func(f *fixture) []string {
			return []string{"--migrations-image", imgs.public.Ref("shop/migrations", "v1") + "@" + imgs.digest, "--migrations-digest", imgs.other, "--dir", "/migrations"}
		}, code: 2, want: []string{"--migrations-image", "--migrations-digest", imgs.digest, imgs.other}},
		{name: "migrations image dir leaving the image", step: "migrate", args: fromImage("shop/migrations", "--dir", "/../etc"), code: 2, want: []string{"--dir"}},

		{name: "image tag unknown", step: "migrate", args: func(f *fixture) []string {
			return []string{"--migrations-image", imgs.public.Ref("shop/migrations", "v9"), "--dir", "/migrations"}
		}, code: 1, want: []string{"image not found", "shop/migrations:v9"}},
		{name: "image repository unknown", step: "migrate", args: fromImage("shop/nothing"), code: 1, want: []string{"image not found"}},
		{name: "image digest unknown", step: "migrate", args: fromImage("shop/migrations", "--migrations-digest", "sha256:"+strings.Repeat("ab", 32)), code: 1, want: []string{"image not found", strings.Repeat("ab", 32)}},
		{name: "image path with dot-dot", step: "migrate", args: fromImage("shop/dotdot"), code: 1, want: []string{"refused", "holds", "migrations/../../etc"}},
		{name: "image symlink out of the directory", step: "migrate", args: fromImage("shop/symlink-out"), code: 1, want: []string{"refused", "/etc/passwd"}},
		{name: "image relative symlink out of the directory", step: "migrate", args: fromImage("shop/symlink-up"), code: 1, want: []string{"refused", "leads out of /migrations"}},
		{name: "image hard link out of the directory", step: "migrate", args: fromImage("shop/hardlink-out"), code: 1, want: []string{"refused", "hard link", "etc/passwd"}},
		{name: "image file written through a symlink", step: "migrate", args: fromImage("shop/through-link"), code: 1, want: []string{"refused", "symbolic link"}},
		{name: "image device", step: "migrate", args: fromImage("shop/device"), code: 1, want: []string{"refused", "device"}},
		{name: "image named pipe", step: "migrate", args: fromImage("shop/fifo"), code: 1, want: []string{"refused", "named pipe"}},
		{name: "image directory without migrations", step: "migrate", args: fromImage("shop/no-sql"), code: 1, want: []string{"no migrations", "/migrations"}},
		{name: "image without the directory", step: "migrate", args: fromImage("shop/no-dir"), code: 1, want: []string{"no directory /migrations", "/db"}},
		{name: "image directory is a file", step: "migrate", args: fromImage("shop/file-not-dir"), code: 1, want: []string{"/migrations is a file"}},
		{name: "image directory whited out", step: "migrate", args: fromImage("shop/whited-out"), code: 1, want: []string{"no directory /migrations"}},
		{name: "image directory is a symlink", step: "migrate", args: fromImage("shop/dir-symlinked"), code: 1, want: []string{"symbolic link", "app/migrations"}},
		{name: "image Go migration", step: "migrate", args: fromImage("shop/go-migration"), code: 1, want: []string{"00002_b.go", "Go migration"}},
		{name: "image migration without a version", step: "migrate", args: fromImage("shop/bad-name"), code: 1, want: []string{"add_b.sql"}},
		{name: "image with no layers", step: "migrate", args: fromImage("shop/zero-layers"), code: 1, want: []string{"no directory /migrations", "none"}},
		{name: "image with an empty layer", step: "migrate", args: fromImage("shop/empty-layer"), code: 1, want: []string{"no directory /migrations"}},
		{name: "image blob corrupt", step: "migrate", args: fromImage("shop/corrupt"), code: 1, want: []string{"does not match its digest", "layer 2 of 2"}},
		{name: "image index without this platform", step: "migrate", args: fromImage("shop/multiarch"), code: 1, want: []string{"no manifest for", "linux/s390x", "windows/amd64"}},

		{name: "image registry 503", step: "migrate", setup: fault(1, registry.Unavailable), args: fromImage("shop/migrations"), code: 75, want: []string{"answered 503"}},
		{name: "image registry 429", step: "migrate", setup: fault(1, registry.TooManyRequests), args: fromImage("shop/migrations"), code: 75, want: []string{"answered 429"}},
		{name: "image registry drops the connection", step: "migrate", setup: fault(1, registry.Drop), args: fromImage("shop/migrations"), code: 75, want: []string{"dropped the connection"}},
		{name: "image blob 503", step: "migrate", setup: blobFault(1, registry.Unavailable), args: fromImage("shop/migrations"), code: 75, want: []string{"layer 1 of 1", "answered 503"}},
		{name: "image blob cut halfway", step: "migrate", setup: blobFault(1, registry.Truncate), args: fromImage("shop/migrations"), code: 75, want: []string{"layer 1 of 1"}},

		{name: "image TMPDIR missing", step: "migrate", args: fromImage("shop/migrations"), env: func(f *fixture) []string {
			return []string{"CHARTREUSE_DATABASE_URL=" + f.url, "TMPDIR=" + filepath.Join(f.scratch, "no-such-dir")}
		}, code: 1, want: []string{"TMPDIR", "no-such-dir"}},
		{name: "image TMPDIR read-only", step: "migrate", nobody: true, args: fromImage("shop/migrations"), env: func(f *fixture) []string {
			return []string{"CHARTREUSE_DATABASE_URL=" + f.url, "TMPDIR=/"}
		}, code: 1, want: []string{"TMPDIR", "permission denied"}},

		{name: "private image without credentials", step: "migrate", args: private(nil), code: 1, want: []string{"authentication failed", "no registry credentials"}},
		{name: "private image with a wrong password", step: "migrate", args: private(func(*fixture) map[string]string {
			return map[string]string{".dockerconfigjson": dockerConfigJSON(map[string][2]string{imgs.private.Host(): {registryUser, registryPassword + "x"}})}
		}), code: 1, want: []string{"authentication failed", "refused the credentials"}},
		{name: "private image with credentials for other registries only", step: "migrate", args: private(func(*fixture) map[string]string {
			return map[string]string{".dockerconfigjson": dockerConfigJSON(map[string][2]string{
				"registry.example.com": {registryUser, registryPassword}, imgs.public.Host(): {registryUser, registryPassword}})}
		}), code: 1, want: []string{"has no entry for " + imgs.private.Host()}},
		{name: "private image with a Secret that is no JSON", step: "migrate", args: private(func(*fixture) map[string]string {
			return map[string]string{".dockerconfigjson": `{"auths": {"` + imgs.private.Host() + `": {"password": "` + registryPassword}
		}), code: 2, want: []string{".dockerconfigjson", "not a JSON object"}},
		{name: "private image behind a proxy echoing the request", step: "migrate", setup: func(*fixture) { imgs.private.FailNext(1, 0); imgs.private.FailNext(1, registry.Reflect) },
			args: private(func(*fixture) map[string]string {
				return map[string]string{".dockerconfigjson": dockerConfigJSON(map[string][2]string{imgs.private.Host(): {registryUser, registryPassword}})}
			}), code: 1, want: []string{"authentication failed"}},
	}
}

// A migrate step stopped (SIGTERM, as the kubelet does) while its registry has gone
// silent, before an answer or in the middle of a blob, ends at once with exit 75
// and leaves nothing in TMPDIR; so does one that finishes.
func TestImageInterruptedLeavesNoTemp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs migrate against a real PostgreSQL and registry (not with -short)")
	}
	srv := pgenv.Shared(t)
	bins := stepbin.Binaries(t, "migrate")
	reg := registry.Start(t, "127.0.0.1:0")
	reg.Push(t, "shop/migrations", "v1", map[string]string{"migrations/00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")},
		map[string]string{"migrations/00002_b.sql": mig("CREATE TABLE b (id int);", "DROP TABLE b;")})
	for i, tc := range []struct {
		name  string
		fault func()
		code  int
	}{
		{"finishes", nil, 0},
		{"no answer", func() { reg.FailNext(1, registry.Stall) }, failure.CodeTransient},
		{"first blob stops halfway", func() { reg.FailNextBlob(1, registry.StallMidway) }, failure.CodeTransient},
		{"second blob stops halfway", func() { reg.FailNextBlob(1, 0); reg.FailNextBlob(1, registry.StallMidway) }, failure.CodeTransient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, srv, 2000+i)
			var stalling func() int
			if tc.fault != nil {
				tc.fault()
				stalling = reg.Stalling
			}
			f.planInterrupted(t, bins["migrate"], []string{"--migrations-image", reg.Ref("shop/migrations", "v1"), "--dir", "/migrations",
				"--registry-credentials", filepath.Join(f.scratch, "no-credentials")}, stalling, tc.code)
		})
	}
}
