package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/ocisource"
	"github.com/chartreuse-go/chartreuse/pkg/redact"
	"github.com/chartreuse-go/chartreuse/pkg/results"
)

// DefaultRegistryCredentials is where the workflow templates mount the
// kubernetes.io/dockerconfigjson Secret for the migrations image (optional).
const DefaultRegistryCredentials = "/var/run/chartreuse/registry"

// ImageOptions take the migrations from a data-only image (or OCI artifact) of
// their own, so the tools image can be upgraded without rebuilding it. As with
// git, plan resolves the reference to a digest (result migrations-digest) and
// every later step of the run is given that digest.
type ImageOptions struct {
	Ref         string
	Digest      string
	Credentials string
	Insecure    bool
}

func (o *Options) validateImage() error {
	m := &o.Image
	if m.Ref == "" {
		switch {
		case m.Digest != "":
			return errors.New("--migrations-digest is set but --migrations-image is empty: give the image the digest belongs to")
		case m.Insecure:
			return errors.New("--insecure-registry is only meaningful with --migrations-image")
		}
		return nil
	}
	if o.Git.URL != "" {
		return errors.New("--migrations-image and --git-url are both set: take the migrations from one of them")
	}
	if err := (ocisource.Image{Ref: m.Ref, Insecure: m.Insecure}).Validate(); err != nil {
		return fmt.Errorf("--migrations-image: %w", err)
	}
	if m.Digest != "" && !validDigest(m.Digest) {
		return fmt.Errorf("--migrations-digest %q is not a sha256 digest (sha256: and 64 hexadecimal digits): pass plan's migrations-digest result unchanged", m.Digest)
	}
	// A valid reference holds '@' only before its digest.
	if _, pinned, ok := strings.Cut(m.Ref, "@"); ok && m.Digest != "" && pinned != m.Digest {
		return fmt.Errorf("--migrations-image %s pins %s but --migrations-digest is %s: give the digest plan resolved (its migrations-digest result, which is the pinned one) or the reference without a digest", m.Ref, pinned, m.Digest)
	}
	if !fs.ValidPath(strings.TrimPrefix(path.Clean("/"+o.Dir), "/")) || strings.Contains(o.Dir, "..") {
		return fmt.Errorf("--dir %s: give the directory of the migrations inside the image, e.g. /migrations", o.Dir)
	}
	return nil
}

// newTempDir makes a directory in TMPDIR for what is fetched: a missing or
// read-only TMPDIR is permanent (a retry has the same volumes), a full disk
// transient.
func newTempDir(pattern, what string) (string, error) {
	tmp, err := os.MkdirTemp("", pattern)
	if err != nil {
		err = fmt.Errorf("temporary directory for %s (mount a writable volume and point TMPDIR at it): %w", what, err)
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			return "", failure.AsTransient(err)
		}
		return "", failure.AsPermanent(err)
	}
	return tmp, nil
}

func validDigest(s string) bool {
	hex, ok := strings.CutPrefix(s, "sha256:")
	return ok && len(hex) == 64 && strings.Trim(hex, "0123456789abcdef") == ""
}

// openImage fetches --dir of the migrations image at one digest into a temporary
// directory that cleanup removes, recording the digest as migrations-digest.
func (o *Options) openImage(ctx context.Context, log *slog.Logger, res *results.Set, red *redact.Redactor) (fs.FS, func(), error) {
	m := o.Image
	auth, err := ocisource.LoadAuth(m.Credentials)
	if err != nil {
		return nil, nil, fmt.Errorf("registry credentials in %s: %w", m.Credentials, err)
	}
	for _, s := range auth.Secrets() {
		red.Add(s)
	}
	// Before any connection: a TMPDIR that cannot be written fails at once.
	tmp, err := newTempDir("chartreuse-image-", "the migrations image")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { _ = os.RemoveAll(tmp) }
	img := ocisource.Image{Ref: m.Ref, Auth: auth, Insecure: m.Insecure}
	digest := m.Digest
	if digest == "" {
		if digest, err = img.Resolve(ctx); err != nil {
			cleanup()
			return nil, nil, err
		}
		log.Info("resolved the migrations image for this run", "image", m.Ref, "digest", digest)
	}
	fsys, err := img.Fetch(ctx, digest, o.Dir, tmp)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	res.Set("migrations-digest", digest)
	log.Info("migrations from an image", "image", m.Ref, "digest", digest, "dir", o.Dir)
	return fsys, cleanup, nil
}
