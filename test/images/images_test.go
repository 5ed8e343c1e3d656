package images

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestWriteTarball(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tool")
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image.tar")
	spec := Spec{
		Ref: "chartreuse.local/test:v1",
		Files: []File{
			{Path: "/usr/local/bin/tool", Source: bin},
			{Path: "/etc/tool/config", Source: bin, Mode: 0o640, UID: 65532, GID: 65532},
		},
		Dirs: []Dir{{Path: "/data", Mode: 0o700, UID: 65532, GID: 65532}},
		Config: Config{
			Entrypoint: []string{"/usr/local/bin/tool"},
			Cmd:        []string{"--help"},
			User:       "65532:65532",
			Env:        []string{"A=b"},
			Labels:     map[string]string{"org.opencontainers.image.title": "test"},
			WorkingDir: "/data",
		},
	}
	if err := WriteTarball(spec, out); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(spec.Ref)
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH || c.User != "65532:65532" || c.WorkingDir != "/data" ||
		len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/usr/local/bin/tool" || len(c.Cmd) != 1 ||
		c.Labels["org.opencontainers.image.title"] != "test" || len(c.Env) != 2 || c.Env[0] != DefaultPath || c.Env[1] != "A=b" {
		t.Errorf("unexpected config: %+v / %+v", cf, c)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]*tar.Header{}
	var order []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
		order = append(order, h.Name)
	}
	want := map[string]struct {
		mode     int64
		uid      int
		typeflag byte
	}{
		"data/":              {0o700, 65532, tar.TypeDir},
		"etc/":               {0o755, 0, tar.TypeDir},
		"etc/tool/":          {0o755, 0, tar.TypeDir},
		"etc/tool/config":    {0o640, 65532, tar.TypeReg},
		"tmp/":               {0o1777, 0, tar.TypeDir},
		"usr/":               {0o755, 0, tar.TypeDir},
		"usr/local/":         {0o755, 0, tar.TypeDir},
		"usr/local/bin/":     {0o755, 0, tar.TypeDir},
		"usr/local/bin/tool": {0o755, 0, tar.TypeReg},
	}
	if len(got) != len(want) {
		t.Errorf("layer holds %v, want %d entries", order, len(want))
	}
	for n, w := range want {
		h := got[n]
		if h == nil {
			t.Errorf("missing %s", n)
			continue
		}
		if h.Mode != w.mode || h.Uid != w.uid || h.Typeflag != w.typeflag {
			t.Errorf("%s: mode %o uid %d type %c, want %o %d %c", n, h.Mode, h.Uid, h.Typeflag, w.mode, w.uid, w.typeflag)
		}
	}

	// Same input, same image.
	out2 := filepath.Join(dir, "image2.tar")
	if err := WriteTarball(spec, out2); err != nil {
		t.Fatal(err)
	}
	img2, _ := tarball.ImageFromPath(out2, &tag)
	d1, _ := img.Digest()
	d2, _ := img2.Digest()
	if d1 != d2 {
		t.Errorf("not reproducible: %s vs %s", d1, d2)
	}
}

func TestSpecErrors(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "f")
	_ = os.WriteFile(bin, nil, 0o644)
	for name, spec := range map[string]Spec{
		"bad ref":       {Ref: "Not A Ref"},
		"relative path": {Ref: "x.local/a:b", Files: []File{{Path: "bin/x", Source: bin}}},
		"duplicate":     {Ref: "x.local/a:b", Files: []File{{Path: "/x", Source: bin}, {Path: "/x", Source: bin}}},
		"file and dir":  {Ref: "x.local/a:b", Files: []File{{Path: "/x", Source: bin}, {Path: "/x/y", Source: bin}}},
		"missing file":  {Ref: "x.local/a:b", Files: []File{{Path: "/x", Source: bin + ".missing"}}},
	} {
		if _, err := Image(spec); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestBuildGoImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go program")
	}
	repo, _ := filepath.Abs("../..")
	out := filepath.Join(t.TempDir(), "pause.tar")
	if err := BuildGoImage(context.Background(), repo, "./test/images/pause", "chartreuse.local/pause:test", out, Config{}); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("chartreuse.local/pause:test")
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/usr/local/bin/pause" {
		t.Errorf("entrypoint %v", cf.Config.Entrypoint)
	}
}
