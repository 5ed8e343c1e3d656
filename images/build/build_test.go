package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

type file struct {
	hdr  *tar.Header
	data []byte
}

// flatten reads the image's merged filesystem.
func flatten(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	fs := map[string]file{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		fs["/"+strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")] = file{h, b}
	}
	return fs
}

// dockerfileStage is what the Dockerfile's final stage declares.
type dockerfileStage struct {
	From       string
	User       string
	WorkingDir string
	Env        []string
	Labels     map[string]string
	Entrypoint []string
	Cmd        []string
	Copies     []string
}

// parseFinalStage reads images/Dockerfile's last stage (continuation lines joined,
// ARG values substituted from args) — only the instructions this Dockerfile uses.
func parseFinalStage(t *testing.T, path string, args map[string]string) dockerfileStage {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (l == "" || strings.HasPrefix(l, "#")) {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\") + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	start := -1
	for i, l := range lines {
		if strings.HasPrefix(strings.ToUpper(l), "FROM ") {
			start = i
		}
	}
	if start < 0 {
		t.Fatal("Dockerfile has no FROM")
	}
	subst := func(s string) string {
		for k, v := range args {
			s = strings.ReplaceAll(s, "${"+k+"}", v)
			s = strings.ReplaceAll(s, "$"+k, v)
		}
		return s
	}
	var st dockerfileStage
	st.Labels = map[string]string{}
	for _, l := range lines[start:] {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			st.From = rest
		case "ARG":
			if _, ok := args[rest]; !ok {
				t.Fatalf("Dockerfile final stage: ARG %s has no value in the test", rest)
			}
		case "USER":
			st.User = subst(rest)
		case "WORKDIR":
			st.WorkingDir = subst(rest)
		case "ENV":
			st.Env = append(st.Env, subst(rest))
		case "COPY":
			st.Copies = append(st.Copies, rest)
		case "LABEL":
			for _, kv := range splitLabels(t, rest) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Fatalf("LABEL %q", kv)
				}
				st.Labels[k] = subst(strings.Trim(v, `"`))
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &st.Entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT must be exec form: %v", err)
			}
		case "CMD":
			if err := json.Unmarshal([]byte(rest), &st.Cmd); err != nil {
				t.Fatalf("CMD must be exec form: %v", err)
			}
		default:
			t.Fatalf("Dockerfile final stage: instruction %s not understood by this test", instr)
		}
	}
	return st
}

// splitLabels splits `a="x y" b="z"` on spaces outside quotes.
func splitLabels(t *testing.T, s string) []string {
	var out []string
	var cur strings.Builder
	inQ := false
	for _, r := range s {
		switch {
		case r == '"':
			inQ = !inQ
			cur.WriteRune(r)
		case r == ' ' && !inQ:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if inQ {
		t.Fatalf("unbalanced quotes in LABEL %s", s)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the eight binaries")
	}
	repo := repoRoot(t)
	version, err := Version(repo)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "chartreuse.tar")
	ref := DefaultRef(version)
	sizes := map[string]int64{}
	start := time.Now()
	if err := BuildWith(context.Background(), repo, out, ref, Options{Sizes: sizes}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, s := range Steps {
		t.Logf("binary %-14s %5.1f MiB", s, float64(sizes[s])/(1<<20))
		total += sizes[s]
	}
	t.Logf("image tarball %.1f MiB (binaries %.1f MiB), built in %s", float64(st.Size())/(1<<20), float64(total)/(1<<20), took.Round(time.Millisecond))

	tag, _ := name.NewTag(ref)
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	files := flatten(t, img)

	t.Run("binaries", func(t *testing.T) {
		for _, s := range Steps {
			p := BinDir + "/" + s
			f, ok := files[p]
			if !ok {
				t.Errorf("%s missing", p)
				continue
			}
			if f.hdr.Typeflag != tar.TypeReg || f.hdr.Mode&0o111 != 0o111 {
				t.Errorf("%s: type %c mode %o, want an executable regular file", p, f.hdr.Typeflag, f.hdr.Mode)
			}
			e, err := elf.NewFile(bytes.NewReader(f.data))
			if err != nil {
				t.Errorf("%s: not an ELF binary: %v", p, err)
				continue
			}
			for _, prog := range e.Progs {
				if prog.Type == elf.PT_INTERP {
					t.Errorf("%s is dynamically linked", p)
				}
			}
			if !bytes.Contains(f.data, []byte(version)) {
				t.Errorf("%s does not contain its version %s", p, version)
			}
		}
		// Run one of them (same architecture as this machine): it must print its version.
		if runtime.GOOS == "linux" && cf.Architecture == runtime.GOARCH {
			bin := filepath.Join(t.TempDir(), "migrate")
			if err := os.WriteFile(bin, files[BinDir+"/migrate"].data, 0o755); err != nil {
				t.Fatal(err)
			}
			got, err := exec.Command(bin, "--version").CombinedOutput()
			if err != nil || !strings.Contains(string(got), version) {
				t.Errorf("migrate --version: %v %q, want %s", err, got, version)
			}
		}
	})

	t.Run("no shell", func(t *testing.T) {
		for _, p := range []string{"/bin/sh", "/bin/bash", "/bin/busybox", "/usr/bin/sh", "/bin"} {
			if _, ok := files[p]; ok {
				t.Errorf("%s present", p)
			}
		}
		var all []string
		for p := range files {
			all = append(all, p)
		}
		sort.Strings(all)
		t.Logf("image contents: %s", strings.Join(all, " "))
	})

	t.Run("layout", func(t *testing.T) {
		if f, ok := files[MigrationsDir]; !ok || f.hdr.Typeflag != tar.TypeDir || f.hdr.Mode&0o755 != 0o755 {
			t.Errorf("%s must be a directory readable by everyone", MigrationsDir)
		}
		if f, ok := files["/tmp"]; !ok || f.hdr.Typeflag != tar.TypeDir || f.hdr.Mode != 0o1777 {
			t.Errorf("/tmp must be 1777")
		}
		if !strings.Contains(string(files["/etc/passwd"].data), ":65532:65532:") {
			t.Errorf("/etc/passwd lacks user 65532")
		}
		if !bytes.Contains(files[CABundle].data, []byte("BEGIN CERTIFICATE")) {
			t.Errorf("%s holds no certificate", CABundle)
		}
		for p, f := range files {
			if f.hdr.Uid != 0 || f.hdr.Gid != 0 || f.hdr.Mode&0o022 != 0 && p != "/tmp" {
				t.Errorf("%s: owner %d:%d mode %o; want root-owned, not group/world writable", p, f.hdr.Uid, f.hdr.Gid, f.hdr.Mode)
			}
		}
	})

	t.Run("config", func(t *testing.T) {
		c := cf.Config
		if c.User != "65532:65532" {
			t.Errorf("user %q", c.User)
		}
		if len(c.Entrypoint) != 0 || len(c.Cmd) != 0 {
			t.Errorf("entrypoint %q cmd %q, want none (the workflows name the binary)", c.Entrypoint, c.Cmd)
		}
		if c.WorkingDir != "/" {
			t.Errorf("working dir %q", c.WorkingDir)
		}
		if c.Labels["org.opencontainers.image.version"] != version {
			t.Errorf("version label %q, want %s", c.Labels["org.opencontainers.image.version"], version)
		}
		if cf.OS != "linux" {
			t.Errorf("os %q", cf.OS)
		}
	})

	t.Run("same as Dockerfile", func(t *testing.T) {
		df := parseFinalStage(t, filepath.Join(repo, "images", "Dockerfile"), map[string]string{"VERSION": version})
		if df.From != "scratch" {
			t.Errorf("final stage FROM %s, want scratch (no shell)", df.From)
		}
		c := cf.Config
		if df.User != c.User {
			t.Errorf("Dockerfile USER %q, image %q", df.User, c.User)
		}
		if df.WorkingDir != c.WorkingDir {
			t.Errorf("Dockerfile WORKDIR %q, image %q", df.WorkingDir, c.WorkingDir)
		}
		if !reflect.DeepEqual(df.Entrypoint, []string(c.Entrypoint)) && !(len(df.Entrypoint) == 0 && len(c.Entrypoint) == 0) {
			t.Errorf("Dockerfile ENTRYPOINT %q, image %q", df.Entrypoint, c.Entrypoint)
		}
		if !(len(df.Cmd) == 0 && len(c.Cmd) == 0) && !reflect.DeepEqual(df.Cmd, c.Cmd) {
			t.Errorf("Dockerfile CMD %q, image %q", df.Cmd, c.Cmd)
		}
		if !reflect.DeepEqual(df.Labels, c.Labels) {
			t.Errorf("labels differ:\nDockerfile %v\nimage      %v", df.Labels, c.Labels)
		}
		if !reflect.DeepEqual(df.Env, c.Env) {
			t.Errorf("Dockerfile ENV %q, image %q", df.Env, c.Env)
		}
		// The files the Dockerfile's build stage puts in /out come from the same
		// steps list and paths.
		b, _ := os.ReadFile(filepath.Join(repo, "images", "Dockerfile"))
		for _, s := range Steps {
			if !strings.Contains(string(b), "./steps/"+s) {
				t.Errorf("Dockerfile does not build ./steps/%s", s)
			}
		}
		for _, want := range []string{"-trimpath", "-tags " + BuildTags, "CGO_ENABLED=0", VersionVar, "/out/usr/local/bin/", "/out/migrations", passwdLine(), CABundle} {
			if !strings.Contains(string(b), want) {
				t.Errorf("Dockerfile lacks %q", want)
			}
		}
	})

	t.Run("with migrations", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "00001_a.sql"), []byte("-- +goose Up\nSELECT 1;\n"), 0o600)
		os.WriteFile(filepath.Join(dir, "README"), []byte("not a migration"), 0o600)
		derived, err := WithMigrations(img, dir)
		if err != nil {
			t.Fatal(err)
		}
		layers, _ := derived.Layers()
		if len(layers) != 2 {
			t.Fatalf("%d layers, want the product's plus one", len(layers))
		}
		fs := flatten(t, derived)
		f, ok := fs["/migrations/00001_a.sql"]
		if !ok || f.hdr.Mode != 0o644 {
			t.Errorf("migration missing or mode %o", f.hdr.Mode)
		}
		if _, ok := fs["/migrations/README"]; ok {
			t.Error("non-SQL file copied")
		}
		if _, ok := fs[BinDir+"/migrate"]; !ok {
			t.Error("derived image lost the binaries")
		}
		dcf, _ := derived.ConfigFile()
		if dcf.Config.User != User || dcf.Config.Labels["org.opencontainers.image.version"] != version {
			t.Error("derived image lost the config")
		}
	})
}

func passwdLine() string { return "nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin" }
