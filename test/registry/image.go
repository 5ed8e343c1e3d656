package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Values of a layer's map that make something else than a regular file.
const (
	// Dir makes a directory.
	Dir = "\x00dir"
	// Whiteout hides the path in the layers below (an entry .wh.<name>).
	Whiteout = "\x00whiteout"
	// Opaque hides everything the layers below have in the directory the key
	// names (an entry <dir>/.wh..wh..opq).
	Opaque = "\x00opaque"
	// CharDevice makes a character device (1, 3: /dev/null's numbers).
	CharDevice = "\x00chardev"
	// Fifo makes a named pipe.
	Fifo = "\x00fifo"

	symlinkPrefix  = "\x00symlink:"
	hardlinkPrefix = "\x00hardlink:"
)

// Symlink makes a symbolic link to target.
func Symlink(target string) string { return symlinkPrefix + target }

// Hardlink makes a hard link to target (a path in the image, as tar writes it).
func Hardlink(target string) string { return hardlinkPrefix + target }

// Tar is a tar archive of files, in the order of their paths: a path sorts before
// the paths in it, so a directory or a hard link's target (when it sorts first)
// comes before what needs it. Paths are written as given (a leading "/" or "./",
// a "..", are kept: tests use them to attack).
func Tar(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	for _, p := range slices.Sorted(maps.Keys(files)) {
		v := files[p]
		h := &tar.Header{Name: p, Mode: 0o644, ModTime: mtime, Format: tar.FormatPAX}
		dir, base := path.Split(strings.TrimSuffix(p, "/"))
		switch {
		case v == Dir:
			h.Typeflag, h.Mode, h.Name = tar.TypeDir, 0o755, strings.TrimSuffix(p, "/")+"/"
		case v == Whiteout:
			h.Typeflag, h.Name = tar.TypeReg, dir+".wh."+base
		case v == Opaque:
			h.Typeflag, h.Name = tar.TypeReg, strings.TrimSuffix(p, "/")+"/.wh..wh..opq"
		case v == CharDevice:
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, 1, 3
		case v == Fifo:
			h.Typeflag = tar.TypeFifo
		case strings.HasPrefix(v, symlinkPrefix):
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, strings.TrimPrefix(v, symlinkPrefix), 0o777
		case strings.HasPrefix(v, hardlinkPrefix):
			h.Typeflag, h.Linkname = tar.TypeLink, strings.TrimPrefix(v, hardlinkPrefix)
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(v))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("registry: tar header %q: %v", p, err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			if _, err := io.WriteString(tw, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Layer is a gzip-compressed OCI layer of files (see Tar); opts can change the
// compression (tarball.WithCompression) or media type.
func Layer(t testing.TB, files map[string]string, opts ...tarball.LayerOption) v1.Layer {
	t.Helper()
	b := Tar(t, files)
	opts = append([]tarball.LayerOption{tarball.WithMediaType(types.OCILayer)}, opts...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, opts...)
	if err != nil {
		t.Fatalf("registry: layer: %v", err)
	}
	return l
}

// Image is an OCI image with no base and the given layers, bottom first.
func Image(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatalf("registry: image: %v", err)
	}
	return img
}

// Push pushes an image of one layer per map of files (bottom first, see Tar) as
// repo:tag (only by its digest when tag is "") and returns the manifest's digest.
func (r *Registry) Push(t testing.TB, repo, tag string, layers ...map[string]string) string {
	t.Helper()
	ls := make([]v1.Layer, len(layers))
	for i, files := range layers {
		ls[i] = Layer(t, files)
	}
	return r.PushImage(t, repo, tag, Image(t, ls...))
}

// PushImage pushes img as repo:tag (only by digest when tag is "") and returns its
// digest.
func (r *Registry) PushImage(t testing.TB, repo, tag string, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("registry: digest: %v", err)
	}
	if err := remote.Write(r.direct(t, repo, tag, d), img, r.options()...); err != nil {
		t.Fatalf("registry: push %s:%s: %v", repo, tag, err)
	}
	return d.String()
}

// IndexEntry is one manifest of an index.
type IndexEntry struct {
	Image       v1.Image
	Platform    *v1.Platform // nil: none
	Annotations map[string]string
}

// PushIndex pushes an OCI index of the entries as repo:tag (only by digest when
// tag is "") and returns the index's digest.
func (r *Registry) PushIndex(t testing.TB, repo, tag string, entries ...IndexEntry) string {
	t.Helper()
	adds := make([]mutate.IndexAddendum, len(entries))
	for i, e := range entries {
		adds[i] = mutate.IndexAddendum{Add: e.Image, Descriptor: v1.Descriptor{Platform: e.Platform, Annotations: e.Annotations}}
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	d, err := idx.Digest()
	if err != nil {
		t.Fatalf("registry: index digest: %v", err)
	}
	if err := remote.WriteIndex(r.direct(t, repo, tag, d), idx, r.options()...); err != nil {
		t.Fatalf("registry: push index %s:%s: %v", repo, tag, err)
	}
	return d.String()
}

// Delete removes the manifest repo@digest (its tags go with it).
func (r *Registry) Delete(t testing.TB, repo, digest string) {
	t.Helper()
	ref, err := name.NewDigest(r.backend+"/"+repo+"@"+digest, name.Insecure)
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	if err := remote.Delete(ref, r.options()...); err != nil {
		t.Fatalf("registry: delete %s@%s: %v", repo, digest, err)
	}
}

// CorruptBlob changes one byte in the middle of the stored blob (same size), as a
// disk or a broken proxy might; the registry serves it as it is.
func (r *Registry) CorruptBlob(t testing.TB, digest string) {
	t.Helper()
	hex := strings.TrimPrefix(digest, "sha256:")
	p := filepath.Join(r.storage, "docker/registry/v2/blobs/sha256", hex[:2], hex, "data")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("registry: blob %s: %v", digest, err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// direct is repo:tag (or repo@digest) at the registry process itself, past the
// proxy and its faults.
func (r *Registry) direct(t testing.TB, repo, tag string, d v1.Hash) name.Reference {
	t.Helper()
	s := r.backend + "/" + repo + "@" + d.String()
	if tag != "" {
		s = r.backend + "/" + repo + ":" + tag
	}
	ref, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	return ref
}

func (r *Registry) options() []remote.Option {
	auth := authn.Anonymous
	if r.user != "" {
		auth = &authn.Basic{Username: r.user, Password: r.password}
	}
	return []remote.Option{remote.WithAuth(auth), remote.WithContext(context.Background())}
}
