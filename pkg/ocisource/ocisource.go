package ocisource

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// responseHeaderTimeout bounds the wait for a registry's answer (one that accepts
// the connection and never answers); a timeout is transient.
const responseHeaderTimeout = 2 * time.Minute

// maxIndexDepth bounds indexes of indexes.
const maxIndexDepth = 4

// Image is an image (or OCI artifact) in a registry and the credentials to pull it.
type Image struct {
	// Ref is a reference as Docker takes it: [host[:port]/]repository[:tag] or
	// ...@sha256:<hex>. Without a host it is Docker Hub's, without a tag or
	// digest it is :latest.
	Ref  string
	Auth Auth
	// Insecure allows plain http to the registry (a registry without TLS, in a
	// test or in the cluster). It does not turn off certificate checks over
	// https. Registries on the loopback interface (localhost, 127.0.0.0/8, ::1)
	// are allowed plain http without it; every other host, private addresses
	// included, needs it.
	Insecure bool
}

// Validate parses Ref: a bad reference is a usage error.
func (i Image) Validate() error {
	_, err := i.reference()
	return err
}

func (i Image) reference() (name.Reference, error) {
	if i.Ref == "" {
		return nil, failure.Usagef("%w: empty", ErrInvalidReference)
	}
	if info := userinfo(i.Ref); info != "" {
		// Checked first: every other message quotes the reference.
		return nil, failure.Usagef("%w %q: it holds credentials before the host (user:password@ or token@, as in a URL): give host/repository:tag and put the credentials in the registry credentials Secret (kubernetes.io/dockerconfigjson)",
			ErrInvalidReference, strings.Replace(i.Ref, info+"@", "xxxxx@", 1))
	}
	if strings.TrimSpace(i.Ref) != i.Ref || strings.ContainsAny(i.Ref, " \t\r\n\x00") {
		return nil, failure.Usagef("%w %q: it holds white space or control characters", ErrInvalidReference, i.Ref)
	}
	if strings.Contains(i.Ref, "://") {
		return nil, failure.Usagef("%w %q: give host/repository:tag or host/repository@sha256:..., without a scheme", ErrInvalidReference, i.Ref)
	}
	var opts []name.Option
	if i.Insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(i.Ref, opts...)
	if err != nil {
		// ParseReference says only that it failed; the parser of the form
		// meant names the part that is wrong.
		if strings.Contains(i.Ref, "@") {
			_, err = name.NewDigest(i.Ref, opts...)
		} else {
			_, err = name.NewTag(i.Ref, opts...)
		}
		return nil, failure.Usagef("%w %q: %v", ErrInvalidReference, i.Ref, err)
	}
	return ref, nil
}

// userinfo is what ref holds before an '@' that starts no digest but a host, as
// credentials are written in a URL (user:password@host/..., token@host/...), or ""
// when there is none. The '@' of a digest follows the repository, so a '/' comes
// before it, except in a short Docker Hub name (ubuntu@sha256:...).
func userinfo(ref string) string {
	if _, rest, ok := strings.Cut(ref, "://"); ok {
		ref = rest
	}
	before, after, ok := strings.Cut(ref, "@")
	if !ok || strings.Contains(before, "/") {
		return ""
	}
	for _, algorithm := range []string{"sha256:", "sha384:", "sha512:", "blake3:"} {
		if strings.HasPrefix(after, algorithm) {
			return ""
		}
	}
	return before
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Resolve returns the digest ("sha256:...") of the manifest Ref names now: one
// HEAD of the manifest (a GET where the registry's HEAD answer lacks the digest).
// An index resolves to its own digest; Fetch picks the platform. A digest reference
// is returned as it is, without contacting the registry (Fetch checks it exists).
func (i Image) Resolve(ctx context.Context) (string, error) {
	w := watch(ctx)
	defer w.stop()
	d, err := i.resolve(w)
	return d, i.Auth.mask(err)
}

func (i Image) resolve(w *watchdog) (string, error) {
	ctx := w.ctx
	ref, err := i.reference()
	if err != nil {
		return "", err
	}
	if d, ok := ref.(name.Digest); ok {
		return d.DigestStr(), nil
	}
	c := i.client(w, ref.Context())
	what := "resolving " + ref.Name()
	desc, err := remote.Head(ref, c.options...)
	if err != nil && headFallback(ctx, err) {
		// Not an answer the registry gives to a GET too (a HEAD answer
		// without the digest header, or a registry that does not take HEAD):
		// GET has the whole manifest.
		var full *remote.Descriptor
		if full, err = remote.Get(ref, c.options...); err == nil {
			desc = &full.Descriptor
		}
	}
	if err != nil {
		return "", i.classify(ctx, what, c.host, c.repo, err)
	}
	return desc.Digest.String(), nil
}

// headFallback: a HEAD failed in a way a GET may not.
func headFallback(ctx context.Context, err error) bool {
	if ctx.Err() != nil || networkError(err) || certError(err) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode == http.StatusMethodNotAllowed || te.StatusCode == http.StatusBadRequest
	}
	var pe *plainHTTPError
	return !errors.As(err, &pe)
}

// Fetch pulls the image digest (a manifest or an index in Ref's repository; for an
// index, its linux/GOARCH manifest, or its only one), applies its layers in order
// (OCI whiteouts included), and returns the regular files under subdir
// ("migrations", "/migrations"; "" or "/" the whole filesystem) as an fs.FS of
// files written under a new directory in tmpDir, which the caller removes. Every
// blob is checked against its digest. A link in subdir that leads out of it, a
// path with "..", a device, more than 256 MiB or 100,000 entries in subdir are
// refused (permanent); a link to a file in subdir becomes a copy of it.
func (i Image) Fetch(ctx context.Context, digest, subdir, tmpDir string) (fs.FS, error) {
	w := watch(ctx)
	defer w.stop()
	fsys, err := i.fetch(w, digest, subdir, tmpDir)
	return fsys, i.Auth.mask(err)
}

func (i Image) fetch(w *watchdog, digest, subdir, tmpDir string) (fs.FS, error) {
	ctx := w.ctx
	ref, err := i.reference()
	if err != nil {
		return nil, err
	}
	if !digestRE.MatchString(digest) {
		return nil, failure.Usagef("%w: Fetch takes the digest Resolve returned (sha256: and 64 lower-case hex), not %q", ErrInvalidReference, digest)
	}
	if pinned, ok := ref.(name.Digest); ok && pinned.DigestStr() != digest {
		return nil, failure.Usagef("%w: %s pins %s, not the digest %s asked for: give the reference without a digest, or fetch the digest it pins",
			ErrInvalidReference, i.Ref, pinned.DigestStr(), digest)
	}
	sub, err := cleanSubdir(subdir)
	if err != nil {
		return nil, err
	}
	c := i.client(w, ref.Context())
	d := ref.Context().Digest(digest)
	img, err := i.image(ctx, c, d)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(tmpDir, "ocisource-")
	if err != nil {
		return nil, diskError("making a directory for the image's files", err)
	}
	u := newUnpacker(filepath.Join(work, "blobs"), sub, d.String())
	if err := i.unpack(ctx, c, img, u); err != nil {
		return nil, err
	}
	out := filepath.Join(work, "files")
	if err := u.write(out); err != nil {
		return nil, err
	}
	_ = os.RemoveAll(u.blobs)
	return os.DirFS(out), nil
}

// cleanSubdir is subdir relative to the image's root, "." for the root.
func cleanSubdir(subdir string) (string, error) {
	if slices.Contains(strings.Split(subdir, "/"), "..") || strings.ContainsRune(subdir, 0) {
		return "", failure.Usagef("%w: directory %q: give a path inside the image, without ..", ErrInvalidReference, subdir)
	}
	c := path.Clean("/" + subdir)
	if c == "/" {
		return ".", nil
	}
	return c[1:], nil
}

// client is the options for one Resolve or Fetch against repo.
type client struct {
	host, repo string // for messages
	options    []remote.Option
}

// Its requests run under w's context and keep w alive.
func (i Image) client(w *watchdog, repo name.Repository) client {
	ht := http.DefaultTransport.(*http.Transport).Clone()
	ht.ResponseHeaderTimeout = responseHeaderTimeout
	return client{
		host: repo.RegistryStr(),
		repo: repo.RepositoryStr(),
		options: []remote.Option{
			remote.WithContext(w.ctx),
			remote.WithAuth(i.Auth.authenticator(repo)),
			remote.WithTransport(kickTransport{inner: &schemeGuard{inner: ht, insecure: i.Insecure}, w: w}),
			// One attempt: the workflow retries the step on exit 75.
			remote.WithRetryPredicate(func(error) bool { return false }),
			remote.WithRetryStatusCodes(),
			remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		},
	}
}

// schemeGuard refuses plain http unless Insecure is set or the host is a loopback
// address: go-containerregistry falls back to http for private addresses too,
// which would send credentials in the clear to whoever answers there.
type schemeGuard struct {
	inner    http.RoundTripper
	insecure bool
}

func (g *schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.insecure && !loopback(req.URL.Hostname()) {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, &plainHTTPError{host: req.URL.Host}
	}
	return g.inner.RoundTrip(req)
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// image fetches the manifest d and, for an index, the manifest of this platform.
func (i Image) image(ctx context.Context, c client, d name.Digest) (v1.Image, error) {
	what := "reading the manifest " + d.String()
	desc, err := remote.Get(d, c.options...)
	if err != nil {
		return nil, i.classify(ctx, what, c.host, c.repo, err)
	}
	if !desc.MediaType.IsIndex() {
		img, err := desc.Image()
		return img, i.classify(ctx, what, c.host, c.repo, err)
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, i.classify(ctx, what, c.host, c.repo, err)
	}
	for range maxIndexDepth {
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, i.classify(ctx, what, c.host, c.repo, err)
		}
		pick, err := pickManifest(im, d.String())
		if err != nil {
			return nil, err
		}
		what = fmt.Sprintf("reading the manifest %s (for %s in %s)", pick.Digest, platformOf(pick), d)
		if !pick.MediaType.IsIndex() {
			img, err := idx.Image(pick.Digest)
			return img, i.classify(ctx, what, c.host, c.repo, err)
		}
		if idx, err = idx.ImageIndex(pick.Digest); err != nil {
			return nil, i.classify(ctx, what, c.host, c.repo, err)
		}
	}
	return nil, failure.Permanentf("%s: indexes nested more than %d deep", d, maxIndexDepth)
}

// pickManifest is the index's manifest for linux/GOARCH, or its only manifest
// whatever its platform (a data-only image built on another machine). Attestation
// manifests (buildx's platform unknown/unknown) do not count.
func pickManifest(im *v1.IndexManifest, where string) (v1.Descriptor, error) {
	var candidates []v1.Descriptor
	for _, m := range im.Manifests {
		if m.Annotations["vnd.docker.reference.type"] == "attestation-manifest" ||
			(m.Platform != nil && m.Platform.OS == "unknown") {
			continue
		}
		candidates = append(candidates, m)
	}
	for _, m := range candidates {
		if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH {
			return m, nil
		}
	}
	if len(candidates) == 1 {
		return candidates[0], nil
	}
	platforms := make([]string, len(candidates))
	for n, m := range candidates {
		platforms[n] = platformOf(m)
	}
	return v1.Descriptor{}, failure.Permanentf("%w: the index %s has no manifest for linux/%s and %d others (%s); build the migrations image for linux/%s, or for one platform only",
		ErrNoPlatform, where, runtime.GOARCH, len(candidates), strings.Join(platforms, ", "), runtime.GOARCH)
}

func platformOf(m v1.Descriptor) string {
	if m.Platform == nil {
		return "no platform"
	}
	return m.Platform.String()
}

// unpack applies img's layers, bottom first.
func (i Image) unpack(ctx context.Context, c client, img v1.Image, u *unpacker) error {
	m, err := img.Manifest()
	if err != nil {
		return i.classify(ctx, "reading the manifest of "+u.image, c.host, c.repo, err)
	}
	if len(m.Layers) > maxLayers {
		return failure.Permanentf("%s: %w: %d layers, more than %d", u.image, ErrRefused, len(m.Layers), maxLayers)
	}
	for n, d := range m.Layers {
		what := describe(n+1, len(m.Layers), d, u.image)
		if len(d.URLs) > 0 {
			return failure.Permanentf("%s: %w: it names URLs outside the registry to fetch it from, which are not used", what, ErrRefused)
		}
		if err := i.layer(ctx, c, img, d, what, u); err != nil {
			return err
		}
	}
	return nil
}

// layer applies one layer: a tar archive (gzip, zstd or none), or an artifact's
// file. The blob is read to its end and checked against its digest whatever the
// archive held, unless the layer was refused.
func (i Image) layer(ctx context.Context, c client, img v1.Image, d v1.Descriptor, what string, u *unpacker) error {
	l, err := img.LayerByDigest(d.Digest)
	if err != nil {
		return i.classify(ctx, what, c.host, c.repo, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return i.classify(ctx, what, c.host, c.repo, err)
	}
	defer rc.Close()
	v := newVerifier(rc, d)
	if title := d.Annotations[annotationTitle]; title != "" && d.Annotations[annotationUnpack] != "true" {
		err = u.fileLayer(what, title, v)
	} else {
		err = untar(what, v, d, u)
	}
	var classified *failure.Error
	if err == nil || !errors.As(err, &classified) {
		if derr := v.drain(); err == nil {
			err = derr
		}
	}
	switch {
	case v.bad != nil:
		return failure.Permanentf("%s: %w: %w", what, ErrCorrupt, v.bad)
	case err == nil, classified != nil:
		return err
	case v.ok:
		// The blob arrived whole and matches: what it holds is the problem.
		return failure.Permanentf("%s: not a tar archive that can be read (media type %s): %w", what, d.MediaType, err)
	}
	return i.classify(ctx, what, c.host, c.repo, err)
}

// maxZstdWindow bounds the window a zstd layer may ask for: the decoder allocates
// it whatever the layer's size, and go-containerregistry allows 512 MiB, twice
// the memory of a step's pod. zstd's levels up to 20 (-19 is 8 MiB) and buildkit
// stay within it; --long and --ultra -21, -22 ask for more.
const maxZstdWindow = 32 << 20

var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// untar decompresses the blob as go-containerregistry does (by its first bytes;
// zstd with a bounded window) and reads the archive.
func untar(what string, v *verifier, d v1.Descriptor, u *unpacker) error {
	br := bufio.NewReader(v)
	if magic, _ := br.Peek(len(zstdMagic)); bytes.Equal(magic, zstdMagic) {
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return err
		}
		defer zr.Close()
		err = u.tarLayer(what, zr)
		if errors.Is(err, zstd.ErrWindowSizeExceeded) {
			// Also what a corrupt frame can give: the blob's digest tells.
			_ = v.drain()
			if v.bad == nil {
				return failure.Permanentf("%s: %w: it is compressed with a zstd window larger than %d MiB, more memory than this step may take: compress it with zstd -19 or a lower level, without --long",
					what, ErrRefused, maxZstdWindow>>20)
			}
		}
		return err
	}
	l, err := partial.CompressedToLayer(blob{r: br, d: d})
	if err != nil {
		return err
	}
	r, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer r.Close()
	return u.tarLayer(what, r)
}

// blob is a layer whose compressed bytes are the verifier's.
type blob struct {
	r io.Reader
	d v1.Descriptor
}

func (b blob) Digest() (v1.Hash, error)            { return b.d.Digest, nil }
func (b blob) Compressed() (io.ReadCloser, error)  { return io.NopCloser(b.r), nil }
func (b blob) Size() (int64, error)                { return b.d.Size, nil }
func (b blob) MediaType() (types.MediaType, error) { return b.d.MediaType, nil }
