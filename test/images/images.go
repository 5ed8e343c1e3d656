// Package images builds container images without Docker: static Go
// programs (or any files) packed as one layer on an empty base with
// github.com/google/go-containerregistry, written as a `docker save` style
// tarball and imported into containerd with `ctr images import`.
//
// It is used for the local test cluster's pause and test-app images and is
// general enough for the product image (several binaries, non-root user,
// labels):
//
//	err := images.GoBuild(ctx, images.GoBuildOptions{ModuleDir: repo, Package: "./steps/migrate", Output: bin})
//	err = images.WriteTarball(images.Spec{
//		Ref:    "chartreuse.local/chartreuse:dev",
//		Files:  []images.File{{Path: "/usr/local/bin/migrate", Source: bin}},
//		Config: images.Config{Entrypoint: []string{"/usr/local/bin/migrate"}, User: "65532:65532"},
//	}, "/tmp/chartreuse.tar")
//	err = images.Import(ctx, containerdSocket, "/tmp/chartreuse.tar")
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/chartreuse-go/chartreuse/images/build"
)

// DefaultPath is the PATH put in an image's environment when Config.Env sets none.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ContainerdNamespace is the containerd namespace the kubelet's CRI uses.
const ContainerdNamespace = "k8s.io"

// File is one regular file of the image.
type File struct {
	Path     string      // absolute path inside the image, e.g. /usr/local/bin/migrate
	Source   string      // file on this machine whose content is copied
	Mode     fs.FileMode // permission bits; 0 means the source file's
	UID, GID int         // owner inside the image (default root)
}

// Dir is a directory of the image. Parent directories of files are added
// automatically (0755, root); list a Dir to choose its mode or owner.
type Dir struct {
	Path     string
	Mode     fs.FileMode // permission bits (and fs.ModeSticky); 0 means 0755
	UID, GID int
}

// Config is the runtime part of the image configuration.
type Config struct {
	Entrypoint []string
	Cmd        []string
	User       string            // e.g. "65532:65532"; empty means root
	Env        []string          // KEY=value; DefaultPath is added when no PATH is set
	Labels     map[string]string // OCI labels
	WorkingDir string
}

// Spec describes an image: empty base + one layer holding Dirs and Files.
type Spec struct {
	Ref    string // image reference with a tag, e.g. chartreuse.local/test-app:v1
	Files  []File
	Dirs   []Dir // /tmp (1777) is added unless listed
	Config Config
	OS     string // default linux
	Arch   string // default runtime.GOARCH
}

// epoch is the modification time of every entry, so identical inputs give an
// identical image.
var epoch = time.Unix(0, 0).UTC()

// Image assembles the image described by spec.
func Image(spec Spec) (v1.Image, error) {
	if _, err := name.NewTag(spec.Ref); err != nil {
		return nil, fmt.Errorf("image ref %q: %w", spec.Ref, err)
	}
	layerTar, err := layerTarball(spec)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", spec.Ref, err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = or(spec.OS, "linux")
	cf.Architecture = or(spec.Arch, runtime.GOARCH)
	cf.Created = v1.Time{Time: epoch}
	env := append([]string(nil), spec.Config.Env...)
	hasPath := false
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			hasPath = true
		}
	}
	if !hasPath {
		env = append([]string{DefaultPath}, env...)
	}
	cf.Config = v1.Config{
		Entrypoint: spec.Config.Entrypoint,
		Cmd:        spec.Config.Cmd,
		User:       spec.Config.User,
		Env:        env,
		Labels:     spec.Config.Labels,
		WorkingDir: spec.Config.WorkingDir,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", spec.Ref, err)
	}
	return img, nil
}

// WriteTarball builds the image and writes it to file as a `docker save`
// tarball (what `ctr images import` reads), tagged spec.Ref.
func WriteTarball(spec Spec, file string) error {
	img, err := Image(spec)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(spec.Ref)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return fmt.Errorf("write image %s to %s: %w", spec.Ref, file, err)
	}
	return nil
}

func layerTarball(spec Spec) ([]byte, error) {
	type entry struct {
		hdr *tar.Header
		src string
	}
	entries := map[string]*entry{}
	addDir := func(p string, mode fs.FileMode, uid, gid int, explicit bool) error {
		if e, ok := entries[p]; ok {
			if e.hdr.Typeflag != tar.TypeDir {
				return fmt.Errorf("%s is both a file and a directory", p)
			}
			if !explicit {
				return nil
			}
		}
		if mode == 0 {
			mode = 0o755
		}
		entries[p] = &entry{hdr: &tar.Header{
			Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/",
			Mode: tarMode(mode), Uid: uid, Gid: gid, ModTime: epoch,
		}}
		return nil
	}
	addParents := func(p string) error {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if err := addDir(d, 0, 0, 0, false); err != nil {
				return err
			}
		}
		return nil
	}
	clean := func(p string) (string, error) {
		if !path.IsAbs(p) || path.Clean(p) == "/" {
			return "", fmt.Errorf("path %q in image must be absolute and not /", p)
		}
		return path.Clean(p), nil
	}

	dirs := append([]Dir(nil), spec.Dirs...)
	hasTmp := false
	for _, d := range dirs {
		if path.Clean(d.Path) == "/tmp" {
			hasTmp = true
		}
	}
	if !hasTmp {
		dirs = append(dirs, Dir{Path: "/tmp", Mode: 0o777 | fs.ModeSticky})
	}
	for _, d := range dirs {
		p, err := clean(d.Path)
		if err != nil {
			return nil, err
		}
		if err := addParents(p); err != nil {
			return nil, err
		}
		if err := addDir(p, d.Mode, d.UID, d.GID, true); err != nil {
			return nil, err
		}
	}
	for _, f := range spec.Files {
		p, err := clean(f.Path)
		if err != nil {
			return nil, err
		}
		if _, dup := entries[p]; dup {
			return nil, fmt.Errorf("%s listed twice", p)
		}
		st, err := os.Stat(f.Source)
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s (for %s) is not a regular file", f.Source, p)
		}
		mode := f.Mode
		if mode == 0 {
			mode = st.Mode().Perm()
		}
		if err := addParents(p); err != nil {
			return nil, err
		}
		entries[p] = &entry{src: f.Source, hdr: &tar.Header{
			Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Size: st.Size(),
			Mode: tarMode(mode), Uid: f.UID, Gid: f.GID, ModTime: epoch,
		}}
	}

	names := make([]string, 0, len(entries))
	for p := range entries {
		names = append(names, p)
	}
	sort.Strings(names) // parents sort before their children
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range names {
		e := entries[p]
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(e.hdr); err != nil {
			return nil, err
		}
		if e.src == "" {
			continue
		}
		if err := build.CopyFile(tw, e.src, e.hdr.Size); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tarMode is build.TarMode (permission and sticky bits) with the setuid and
// setgid bits.
func tarMode(m fs.FileMode) int64 {
	mode := build.TarMode(m)
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	return mode
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// GoBuildOptions describe a static cross-build of one Go main package.
type GoBuildOptions struct {
	ModuleDir string   // directory the build runs in (the module holding Package)
	Package   string   // import path or ./relative path of the main package
	Output    string   // binary to write
	GOOS      string   // default linux
	GOARCH    string   // default runtime.GOARCH
	LDFlags   string   // appended to "-s -w"
	Tags      []string // build tags
	Env       []string // extra environment, e.g. GOFLAGS=-mod=mod
}

// GoBuild builds a static binary (CGO_ENABLED=0, -trimpath) for the image
// platform. Go's build cache makes repeated builds fast.
func GoBuild(ctx context.Context, o GoBuildOptions) error {
	args := []string{"build", "-trimpath", "-ldflags", strings.TrimSpace("-s -w " + o.LDFlags), "-o", o.Output}
	if len(o.Tags) > 0 {
		args = append(args, "-tags", strings.Join(o.Tags, ","))
	}
	args = append(args, o.Package)
	cmd := exec.CommandContext(ctx, goBinary(), args...)
	cmd.Dir = o.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+or(o.GOOS, "linux"), "GOARCH="+or(o.GOARCH, runtime.GOARCH))
	cmd.Env = append(cmd.Env, o.Env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), o.ModuleDir, err, out)
	}
	return nil
}

func goBinary() string {
	if p := os.Getenv("GO"); p != "" {
		return p
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	// Tests may run with a PATH that lacks Go; the toolchain's usual home.
	if p := "/usr/local/go/bin/go"; fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Import loads a tarball written by WriteTarball into containerd (namespace
// k8s.io, where the kubelet looks) through the socket, unpacking it for the
// default snapshotter. Pods then use the image with imagePullPolicy: Never.
func Import(ctx context.Context, containerdSocket, file string) error {
	cmd := exec.CommandContext(ctx, "ctr", "--namespace", ContainerdNamespace, "--address", containerdSocket,
		"images", "import", file)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr images import %s: %w\n%s", file, err, out)
	}
	return nil
}

// Present reports whether containerd (namespace k8s.io) holds the image ref.
func Present(ctx context.Context, containerdSocket, ref string) (bool, error) {
	out, err := exec.CommandContext(ctx, "ctr", "--namespace", ContainerdNamespace, "--address", containerdSocket,
		"images", "list", "--quiet").CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("ctr images list: %w\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) == ref {
			return true, nil
		}
	}
	return false, nil
}

// BuildGoImage cross-builds the main package pkg (relative to moduleDir) and
// writes an image holding it as /usr/local/bin/<last element of pkg> to
// tarFile. The binary is the entrypoint unless cfg sets one.
func BuildGoImage(ctx context.Context, moduleDir, pkg, ref, tarFile string, cfg Config) error {
	tmp, err := os.MkdirTemp("", "chartreuse-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := path.Join(tmp, path.Base(pkg))
	if err := GoBuild(ctx, GoBuildOptions{ModuleDir: moduleDir, Package: pkg, Output: bin}); err != nil {
		return err
	}
	inImage := "/usr/local/bin/" + path.Base(pkg)
	if len(cfg.Entrypoint) == 0 {
		cfg.Entrypoint = []string{inImage}
	}
	return WriteTarball(Spec{Ref: ref, Files: []File{{Path: inImage, Source: bin, Mode: 0o755}}, Config: cfg}, tarFile)
}
