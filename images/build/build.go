// Package build builds the Chartreuse container image without a Docker engine,
// with github.com/google/go-containerregistry, as a tarball that `docker load`,
// `crane push` and `ctr images import` read.
//
// The image is the one images/Dockerfile describes, file for file and setting for
// setting (a test compares them):
//
//	/usr/local/bin/{check-databases,wait-for-db,wait-patroni,scale-down,migrate,scale-restore,gate,helm-wait}
//	                         static (CGO_ENABLED=0, -trimpath), version-stamped from VERSION
//	/migrations/             empty; images FROM this one COPY their migrations here
//	/etc/passwd, /etc/group  root and nonroot (65532)
//	/etc/ssl/certs/ca-certificates.crt   the build machine's CA bundle (sslmode=verify-full)
//	/tmp                     1777
//	user 65532:65532, working directory /, no entrypoint and no command, no shell,
//	OCI labels (title, description, version, source, ...)
//
// WithMigrations derives an image that adds one layer of SQL files at /migrations,
// the equivalent of `FROM chartreuse` + `COPY migrations/ /migrations/`; tests build
// one per scenario in a fraction of a second.
package build

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Module is the product's module path; VersionVar is the variable -ldflags -X stamps.
const (
	Module     = "github.com/chartreuse-go/chartreuse"
	VersionVar = Module + "/pkg/version.Version"
	// BuildTags leave out urfave/cli's man-page and markdown writers (and the
	// markdown library they start at every launch); the steps never use them.
	BuildTags = "urfave_cli_no_docs"
)

// Steps are the eight step binaries, in pipeline order (check-databases, for a run
// with a databases list, first; gate, Tekton's one run per
// database, then helm-wait, the Helm chart's hook); each is built from ./steps/<name> and installed as
// /usr/local/bin/<name>.
var Steps = []string{"check-databases", "wait-for-db", "wait-patroni", "scale-down", "migrate", "scale-restore", "gate", "helm-wait"}

// Paths and settings of the image (the Dockerfile declares the same).
const (
	BinDir        = "/usr/local/bin"
	MigrationsDir = "/migrations"
	User          = "65532:65532"
	WorkingDir    = "/"
	PathEnv       = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	CABundle      = "/etc/ssl/certs/ca-certificates.crt"
	Source        = "https://github.com/chartreuse-go/chartreuse"
)

// DefaultRef is the reference the manifests use for a version.
func DefaultRef(version string) string { return "ghcr.io/chartreuse-go/chartreuse:" + version }

// Labels are the image's OCI labels for a version.
func Labels(version string) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":         "chartreuse",
		"org.opencontainers.image.description":   "PostgreSQL schema migration steps (check-databases, wait-for-db, wait-patroni, scale-down, migrate, scale-restore, gate, helm-wait) for Argo Workflows, Tekton and Helm",
		"org.opencontainers.image.version":       version,
		"org.opencontainers.image.source":        Source,
		"org.opencontainers.image.documentation": Source + "/tree/main/images",
		"org.opencontainers.image.vendor":        "chartreuse-go",
	}
}

const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n"
	group  = "root:x:0:\nnonroot:x:65532:\n"
)

// caCandidates are where Linux distributions keep the CA bundle (the list Go's
// crypto/x509 reads).
var caCandidates = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// Options tune Image. The zero value builds for linux/GOARCH of this machine.
type Options struct {
	Arch     string // GOARCH of the binaries and the image; default runtime.GOARCH
	Version  string // default: the repository's VERSION file
	CAFile   string // CA bundle to install; default: the first of caCandidates that exists
	BuildDir string // where binaries are built; default: a temporary directory
	Go       string // go command; default $GO, else "go" from PATH
	// Sizes, when not nil, receives the size in bytes of each built binary.
	Sizes map[string]int64
}

// Build builds the image from the repository at repoRoot and writes it to outTarball
// (a `docker save` tarball, tagged ref; an empty ref means DefaultRef(VERSION)).
func Build(ctx context.Context, repoRoot, outTarball, ref string) error {
	return BuildWith(ctx, repoRoot, outTarball, ref, Options{})
}

// BuildWith is Build with options.
func BuildWith(ctx context.Context, repoRoot, outTarball, ref string, o Options) error {
	img, version, err := Image(ctx, repoRoot, o)
	if err != nil {
		return err
	}
	if ref == "" {
		ref = DefaultRef(version)
	}
	return WriteTarball(img, ref, outTarball)
}

// Version reads the repository's VERSION file.
func Version(repoRoot string) (string, error) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "VERSION"))
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(b))
	if v == "" || strings.ContainsAny(v, " \t\n'\"") {
		return "", fmt.Errorf("VERSION: %q is not a version", v)
	}
	return v, nil
}

// Image builds the five binaries and assembles the image. It returns the version
// the binaries were stamped with.
func Image(ctx context.Context, repoRoot string, o Options) (v1.Image, string, error) {
	version := o.Version
	if version == "" {
		var err error
		if version, err = Version(repoRoot); err != nil {
			return nil, "", err
		}
	}
	arch := o.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	ca := o.CAFile
	if ca == "" {
		for _, c := range caCandidates {
			if _, err := os.Stat(c); err == nil {
				ca = c
				break
			}
		}
		if ca == "" {
			return nil, "", fmt.Errorf("no CA bundle found (looked at %s); install ca-certificates or set Options.CAFile", strings.Join(caCandidates, ", "))
		}
	}
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		return nil, "", fmt.Errorf("CA bundle: %w", err)
	}

	binDir := o.BuildDir
	if binDir == "" {
		tmp, err := os.MkdirTemp("", "chartreuse-image-build-")
		if err != nil {
			return nil, "", err
		}
		defer os.RemoveAll(tmp)
		binDir = tmp
	}
	if err := GoBuild(ctx, repoRoot, binDir, version, arch, o.Go); err != nil {
		return nil, "", err
	}

	var entries []Entry
	entries = append(entries,
		Entry{Path: "/etc/passwd", Data: []byte(passwd), Mode: 0o644},
		Entry{Path: "/etc/group", Data: []byte(group), Mode: 0o644},
		Entry{Path: CABundle, Data: caPEM, Mode: 0o644},
		Entry{Path: MigrationsDir, Dir: true, Mode: 0o755},
		Entry{Path: "/tmp", Dir: true, Mode: 0o777 | fs.ModeSticky},
	)
	for _, s := range Steps {
		p := filepath.Join(binDir, s)
		st, err := os.Stat(p)
		if err != nil {
			return nil, "", fmt.Errorf("built binary: %w", err)
		}
		if o.Sizes != nil {
			o.Sizes[s] = st.Size()
		}
		entries = append(entries, Entry{Path: path.Join(BinDir, s), Source: p, Mode: 0o755})
	}
	layer, err := Layer(entries)
	if err != nil {
		return nil, "", err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, "", err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = arch
	cf.Created = v1.Time{Time: epoch}
	cf.Author = "chartreuse-go"
	cf.Config = v1.Config{
		User:       User,
		WorkingDir: WorkingDir,
		Env:        []string{PathEnv},
		Labels:     Labels(version),
	}
	cf.History = []v1.History{{
		Created:   v1.Time{Time: epoch},
		CreatedBy: "chartreuse images/build: " + strings.Join(Steps, " ") + ", /migrations, /etc/passwd, CA bundle",
	}}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, "", err
	}
	return img, version, nil
}

// GoBuild builds the five step binaries into dir, static and version-stamped, with
// the same flags as the Makefile's build target and the Dockerfile.
func GoBuild(ctx context.Context, repoRoot, dir, version, arch, goCmd string) error {
	if goCmd == "" {
		goCmd = goBinary()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	args := []string{"build", "-trimpath", "-tags", BuildTags, "-ldflags", "-s -w -X " + VersionVar + "=" + version, "-o", abs + "/"}
	for _, s := range Steps {
		args = append(args, "./steps/"+s)
	}
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// goBinary is $GO, else the go command on PATH.
func goBinary() string {
	if p := os.Getenv("GO"); p != "" {
		return p
	}
	return "go"
}

// WithMigrations returns base plus one layer holding the *.sql files of dir at
// /migrations (mode 0644, root-owned, readable by 65532) — what
//
//	FROM ghcr.io/chartreuse-go/chartreuse:<version>
//	COPY migrations/ /migrations/
//
// produces.
func WithMigrations(base v1.Image, dir string) (v1.Image, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.sql"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.sql files in %s", dir)
	}
	entries := []Entry{{Path: MigrationsDir, Dir: true, Mode: 0o755}}
	for _, f := range files {
		entries = append(entries, Entry{Path: path.Join(MigrationsDir, filepath.Base(f)), Source: f, Mode: 0o644})
	}
	return AppendEntries(base, "COPY migrations/ /migrations/", entries)
}

// AppendEntries adds one layer with entries to base (with a history entry createdBy).
func AppendEntries(base v1.Image, createdBy string, entries []Entry) (v1.Image, error) {
	layer, err := Layer(entries)
	if err != nil {
		return nil, err
	}
	return mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: createdBy},
	})
}

// WriteTarball writes img tagged ref to file as a `docker save` tarball, creating
// the file's directory; the file appears complete or not at all.
func WriteTarball(img v1.Image, ref, file string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write image %s to %s: %w", ref, file, err)
	}
	return os.Rename(tmp, file)
}

// epoch is every timestamp in the image, so the same inputs give the same digest.
var epoch = time.Unix(0, 0).UTC()

// Entry is one file or directory of a layer.
type Entry struct {
	Path     string      // absolute path in the image
	Dir      bool        // a directory
	Data     []byte      // file content, or
	Source   string      // a file on this machine to copy
	Mode     fs.FileMode // permission bits (and fs.ModeSticky)
	UID, GID int
}

// Layer packs entries (parents created 0755 root) into an uncompressed tar layer.
func Layer(entries []Entry) (v1.Layer, error) {
	hdrs := map[string]*tar.Header{}
	srcs := map[string]Entry{}
	addDir := func(p string, mode fs.FileMode, uid, gid int) {
		if mode == 0 {
			mode = 0o755
		}
		hdrs[p] = &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: TarMode(mode), Uid: uid, Gid: gid, ModTime: epoch}
	}
	for _, e := range entries {
		p := path.Clean(e.Path)
		if !path.IsAbs(p) || p == "/" {
			return nil, fmt.Errorf("layer path %q must be absolute and not /", e.Path)
		}
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := hdrs[d]; !ok {
				addDir(d, 0, 0, 0)
			}
		}
		if e.Dir {
			addDir(p, e.Mode, e.UID, e.GID)
			continue
		}
		if _, dup := hdrs[p]; dup {
			return nil, fmt.Errorf("layer: %s listed twice", p)
		}
		size := int64(len(e.Data))
		if e.Source != "" {
			st, err := os.Stat(e.Source)
			if err != nil {
				return nil, err
			}
			if !st.Mode().IsRegular() {
				return nil, fmt.Errorf("%s is not a regular file", e.Source)
			}
			size = st.Size()
		}
		mode := e.Mode
		if mode == 0 {
			mode = 0o644
		}
		hdrs[p] = &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Size: size, Mode: TarMode(mode), Uid: e.UID, Gid: e.GID, ModTime: epoch}
		srcs[p] = e
	}
	names := make([]string, 0, len(hdrs))
	for p := range hdrs {
		names = append(names, p)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range names {
		h := hdrs[p]
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		e, ok := srcs[p]
		if !ok {
			continue
		}
		if e.Source == "" {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, err
			}
			continue
		}
		if err := CopyFile(tw, e.Source, h.Size); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// CopyFile copies the size bytes of the file src to w (a tar entry whose
// header says size); it fails, naming src, if the file no longer has that size.
func CopyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	if n != size {
		return errors.New(src + ": file changed while being packed")
	}
	return nil
}

// TarMode is the tar header mode of m: its permission bits and the sticky bit.
func TarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}
