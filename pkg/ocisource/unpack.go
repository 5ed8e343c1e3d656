package ocisource

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// Bounds on what the directory asked for may hold, counted over all layers (a
// file rewritten by a later layer counts twice): migrations are small, and a
// hostile image must not fill the disk or the memory.
var (
	maxEntries       = 100_000
	maxBytes   int64 = 256 << 20
)

const (
	maxLayers    = 1000 // Docker stops at 127
	maxDepth     = 128  // path components below the directory
	maxLinkHops  = 40   // symbolic links followed for one path, as Linux does
	maxTopListed = 1000 // top-level names kept for the "directories at its top" message
	maxTopShown  = 20   // and shown in it
)

// OCI artifact annotations (as oras writes them): a layer with a title is one file
// at that path, unless it is a directory's tar that asks to be unpacked.
const (
	annotationTitle  = "org.opencontainers.image.title"
	annotationUnpack = "io.deis.oras.content.unpack"
)

type kind uint8

const (
	kindDir kind = iota + 1
	kindFile
	kindSymlink
	kindOther // a device or pipe outside the directory: neither a directory nor kept
)

// node is a path of the image's filesystem as the layers so far leave it. Only the
// paths that matter are kept: the directory asked for, what is under it, its
// ancestors, and the top-level names (for messages).
type node struct {
	kind     kind
	blob     string // kindFile under the directory: the file holding its content
	target   string // kindSymlink
	children map[string]*node
}

func newDir() *node { return &node{kind: kindDir, children: map[string]*node{}} }

// unpacker applies layers one after another.
type unpacker struct {
	blobs   string // where file contents are written
	sub     string // the directory, "" for the root
	image   string // repository@digest, for messages
	root    *node
	nblobs  int
	entries int   // under sub, over all layers
	written int64 // bytes under sub, over all layers
}

func newUnpacker(blobs, sub, image string) *unpacker {
	if sub == "." {
		sub = ""
	}
	return &unpacker{blobs: blobs, sub: sub, image: image, root: newDir()}
}

// under: p is inside the directory (not the directory itself).
func (u *unpacker) under(p string) bool {
	if u.sub == "" {
		return p != ""
	}
	return strings.HasPrefix(p, u.sub+"/")
}

// keep: p matters (see node); other top-level names are only listed (topName).
func (u *unpacker) keep(p string) bool {
	return p == u.sub || u.under(p) || strings.HasPrefix(u.sub, p+"/")
}

// topName notes the top-level name of p, a path that is not kept, for messages:
// a directory (p is one, or lies below it) or a file, up to maxTopListed names.
func (u *unpacker) topName(l *layer, p string, h *tar.Header) {
	top, _, deeper := strings.Cut(p, "/")
	n := &node{kind: kindFile}
	if deeper || h.Typeflag == tar.TypeDir {
		n = newDir()
	}
	old := l.up.children[top]
	switch {
	case old == nil && len(l.up.children)+len(u.root.children) >= maxTopListed:
	case old == nil, !deeper, old.kind != kindDir:
		l.up.children[top] = n
	}
}

// layer is one layer being read: its own tree, and the whiteouts that hide paths
// of the layers below it (never of itself).
type layer struct {
	what      string
	up        *node
	whiteouts map[string]bool
	opaque    map[string]bool // directories whose lower contents are hidden
}

func (u *unpacker) newLayer(what string) *layer {
	return &layer{what: what, up: newDir(), whiteouts: map[string]bool{}, opaque: map[string]bool{}}
}

func (u *unpacker) refuse(l *layer, format string, args ...any) error {
	return failure.Permanentf("%s: %w: "+format, append([]any{l.what, ErrRefused}, args...)...)
}

// tarLayer reads one layer's tar archive into the tree.
func (u *unpacker) tarLayer(what string, r io.Reader) error {
	l := u.newLayer(what)
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := u.entry(l, h, tr); err != nil {
			return err
		}
	}
	u.apply(l)
	return nil
}

// fileLayer is an artifact's layer that is one file at title.
func (u *unpacker) fileLayer(what, title string, r io.Reader) error {
	l := u.newLayer(what)
	h := &tar.Header{Name: title, Typeflag: tar.TypeReg, Size: -1}
	if err := u.entry(l, h, r); err != nil {
		return err
	}
	u.apply(l)
	return nil
}

// cleanPath is a path of the image relative to its root ("" for the root); a
// ".." anywhere is refused, since extracting it could write outside the root.
func (u *unpacker) cleanPath(l *layer, raw string) (string, error) {
	if slices.Contains(strings.Split(raw, "/"), "..") {
		return "", u.refuse(l, "the path %q holds \"..\"", raw)
	}
	return path.Clean("/" + raw)[1:], nil
}

func (u *unpacker) entry(l *layer, h *tar.Header, r io.Reader) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	p, err := u.cleanPath(l, h.Name)
	if err != nil || p == "" {
		return err
	}
	inside := u.under(p)
	if inside {
		// Whiteouts count too: each is kept until the layer's end.
		u.entries++
		if u.entries > maxEntries {
			return u.refuse(l, "%s has more than %d entries (counted over all layers)", u.shown(), maxEntries)
		}
		if strings.Count(strings.TrimPrefix(p, u.sub), "/") > maxDepth {
			return u.refuse(l, "%q is more than %d directories deep in %s", p, maxDepth, u.shown())
		}
	}
	dir, base := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	switch {
	case base == ".wh..wh..opq":
		if dir == "" || u.hideable(dir) {
			l.opaque[dir] = true
		}
		return nil
	case strings.HasPrefix(base, ".wh..wh."): // aufs's own files
		return nil
	case strings.HasPrefix(base, ".wh."):
		if hidden := path.Join(dir, base[len(".wh."):]); u.hideable(hidden) {
			l.whiteouts[hidden] = true
		}
		return nil
	}
	if !u.keep(p) {
		u.topName(l, p, h)
		return nil
	}
	if link := u.linkAbove(l, p); link != "" {
		return u.refuse(l, "%q would be written through the symbolic link %q", p, link)
	}
	n, err := u.node(l, p, inside, h, r)
	if err != nil || n == nil {
		return err
	}
	set(l.up, p, n)
	return nil
}

// hideable: a whiteout of p can change what is kept. A top-level name counts
// only when the layers below have it, so that whiteouts of other names cost
// nothing.
func (u *unpacker) hideable(p string) bool {
	if !strings.Contains(p, "/") && p != u.sub && !strings.HasPrefix(u.sub, p+"/") {
		return u.root.children[p] != nil
	}
	return p == u.sub || u.under(p) || strings.HasPrefix(u.sub, p+"/")
}

// node makes the node of an entry at p.
func (u *unpacker) node(l *layer, p string, inside bool, h *tar.Header, r io.Reader) (*node, error) {
	switch h.Typeflag {
	case tar.TypeDir:
		return newDir(), nil
	case tar.TypeReg, '\x00', tar.TypeGNUSparse:
		if !inside {
			return &node{kind: kindFile}, nil
		}
		return u.writeBlob(l, p, h.Size, r)
	case tar.TypeSymlink:
		return &node{kind: kindSymlink, target: h.Linkname}, nil
	case tar.TypeLink:
		if !inside {
			return &node{kind: kindFile}, nil
		}
		target, err := u.cleanPath(l, h.Linkname)
		if err != nil {
			return nil, err
		}
		if !u.under(target) {
			return nil, u.refuse(l, "%q is a hard link to %q, outside %s", p, h.Linkname, u.shown())
		}
		t := lookup(l.up, target)
		if t == nil && !l.hides(target) {
			t = lookup(u.root, target)
		}
		if t == nil || t.kind != kindFile {
			return nil, u.refuse(l, "%q is a hard link to %q, which is no regular file of the image", p, h.Linkname)
		}
		return &node{kind: kindFile, blob: t.blob}, nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if inside {
			return nil, u.refuse(l, "%q is a device or a named pipe", p)
		}
		return &node{kind: kindOther}, nil
	}
	if inside {
		return nil, u.refuse(l, "%q has the tar type %q, which is not a file, directory or link", p, string(h.Typeflag))
	}
	return nil, nil
}

// writeBlob stores a file's content; size -1 is unknown (an artifact's file).
func (u *unpacker) writeBlob(l *layer, p string, size int64, r io.Reader) (*node, error) {
	tooLarge := func() error {
		return u.refuse(l, "%s holds more than %d MiB (counted over all layers, up to %q)", u.shown(), maxBytes>>20, p)
	}
	if size > maxBytes-u.written {
		return nil, tooLarge()
	}
	u.nblobs++
	if u.nblobs == 1 {
		if err := os.MkdirAll(u.blobs, 0o755); err != nil {
			return nil, diskError("writing the image's files", err)
		}
	}
	name := filepath.Join(u.blobs, strconv.Itoa(u.nblobs))
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, diskError("writing the image's files", err)
	}
	n, err := io.Copy(f, io.LimitReader(r, maxBytes-u.written+1))
	if cerr := f.Close(); err == nil && cerr != nil {
		return nil, diskError("writing "+p+" of the image", cerr)
	}
	u.written += n
	if diskFull(err) {
		return nil, diskError("writing "+p+" of the image", err)
	}
	if err != nil {
		return nil, err // the layer's stream: classified by the caller
	}
	if u.written > maxBytes {
		return nil, tooLarge()
	}
	return &node{kind: kindFile, blob: name}, nil
}

// linkAbove is the first directory above p that is a symbolic link, in this layer
// or, unless this layer hides it, below; "" when there is none.
func (u *unpacker) linkAbove(l *layer, p string) string {
	parts := strings.Split(p, "/")
	for n := 1; n < len(parts); n++ {
		a := strings.Join(parts[:n], "/")
		if x := lookup(l.up, a); x != nil {
			if x.kind == kindSymlink {
				return a
			}
			continue
		}
		if !l.hides(a) {
			if x := lookup(u.root, a); x != nil && x.kind == kindSymlink {
				return a
			}
		}
	}
	return ""
}

// hides: this layer's whiteouts hide p of the layers below.
func (l *layer) hides(p string) bool {
	if l.opaque[""] {
		return true
	}
	parts := strings.Split(p, "/")
	for n := 1; n <= len(parts); n++ {
		a := strings.Join(parts[:n], "/")
		if l.whiteouts[a] || (n < len(parts) && l.opaque[a]) {
			return true
		}
	}
	return false
}

// apply puts a layer read to its end over the tree: its whiteouts first (they hide
// what is below), then its own entries.
func (u *unpacker) apply(l *layer) {
	for p := range l.whiteouts {
		dir, base := path.Split(p)
		if d := lookup(u.root, strings.TrimSuffix(dir, "/")); d != nil && d.kind == kindDir {
			delete(d.children, base)
		}
	}
	for p := range l.opaque {
		if d := lookup(u.root, p); d != nil && d.kind == kindDir {
			d.children = map[string]*node{}
		}
	}
	merge(u.root, l.up)
}

// merge lays src's children over dst's: a directory over a directory merges, any
// other pair is replaced.
func merge(dst, src *node) {
	for name, s := range src.children {
		if d := dst.children[name]; d != nil && d.kind == kindDir && s.kind == kindDir {
			merge(d, s)
			continue
		}
		dst.children[name] = s
	}
}

// set puts n at p, making the directories above it (replacing what is no
// directory, as a later entry of a tar archive does); a directory over a directory
// keeps its children.
func set(root *node, p string, n *node) {
	parts := strings.Split(p, "/")
	cur := root
	for _, part := range parts[:len(parts)-1] {
		c := cur.children[part]
		if c == nil || c.kind != kindDir {
			c = newDir()
			cur.children[part] = c
		}
		cur = c
	}
	last := parts[len(parts)-1]
	if old := cur.children[last]; n.kind == kindDir && old != nil && old.kind == kindDir {
		return
	}
	cur.children[last] = n
}

// lookup is the node at p ("" the root), through directories only.
func lookup(root *node, p string) *node {
	if p == "" {
		return root
	}
	cur := root
	for part := range strings.SplitSeq(p, "/") {
		if cur.kind != kindDir {
			return nil
		}
		if cur = cur.children[part]; cur == nil {
			return nil
		}
	}
	return cur
}

func (u *unpacker) shown() string {
	if u.sub == "" {
		return "the image's root"
	}
	return "/" + u.sub
}

// write puts the regular files under the directory into out, a symbolic link to a
// file under it as a copy of that file.
func (u *unpacker) write(out string) error {
	d, err := u.subdir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return diskError("writing the image's files", err)
	}
	return u.writeDir(d, u.sub, out)
}

func (u *unpacker) writeDir(d *node, at, out string) error {
	for _, name := range slices.Sorted(maps.Keys(d.children)) {
		n, p := d.children[name], path.Join(at, name)
		dst := filepath.Join(out, name)
		switch n.kind {
		case kindDir:
			if err := os.Mkdir(dst, 0o755); err != nil {
				return diskError("writing the image's files", err)
			}
			if err := u.writeDir(n, p, dst); err != nil {
				return err
			}
			continue
		case kindSymlink:
			f, err := u.follow(p, n.target)
			if err != nil {
				return err
			}
			n = f
		case kindOther:
			return failure.Permanentf("%s: %w: %q is a device or a named pipe", u.image, ErrRefused, p)
		}
		if err := os.Link(n.blob, dst); err != nil {
			return diskError("writing the image's files", err)
		}
	}
	return nil
}

// follow resolves the symbolic link at p to a regular file under the directory.
func (u *unpacker) follow(p, target string) (*node, error) {
	refuse := func(format string, args ...any) error {
		return failure.Permanentf("%s: %w: %q is a symbolic link to %q, "+format,
			append([]any{u.image, ErrRefused, "/" + p, target}, args...)...)
	}
	at, t := p, target
	for range maxLinkHops {
		var q string
		if strings.HasPrefix(t, "/") {
			q = path.Clean(t)[1:]
		} else {
			q = path.Join(path.Dir(at), t)
		}
		if q == ".." || strings.HasPrefix(q, "../") || !u.under(q) {
			return nil, refuse("which leads out of %s", u.shown())
		}
		n := lookup(u.root, q)
		switch {
		case n == nil:
			return nil, refuse("which leads to nothing (/%s)", q)
		case n.kind == kindFile:
			return n, nil
		case n.kind == kindSymlink:
			at, t = q, n.target
		default:
			return nil, refuse("which leads to /%s, a directory or device: only links to files are followed", q)
		}
	}
	return nil, refuse("through more than %d links", maxLinkHops)
}

// subdir is the directory's node; a missing one is reported with the directories
// at the image's top.
func (u *unpacker) subdir() (*node, error) {
	if u.sub == "" {
		return u.root, nil
	}
	cur := u.root
	parts := strings.Split(u.sub, "/")
	for n, part := range parts {
		at := "/" + strings.Join(parts[:n+1], "/")
		next := cur.children[part]
		switch {
		case next == nil:
			var top []string
			for _, name := range slices.Sorted(maps.Keys(u.root.children)) {
				if u.root.children[name].kind == kindDir {
					top = append(top, "/"+name)
				}
			}
			switch {
			case len(top) == 0:
				top = []string{"none"}
			case len(top) > maxTopShown:
				more := fmt.Sprintf("and %d more", len(top)-maxTopShown)
				if len(u.root.children) >= maxTopListed {
					more = "and more"
				}
				top = append(top[:maxTopShown], more)
			}
			return nil, failure.Permanentf("%w: no directory %s in %s (directories at its top: %s)", ErrSubdirNotFound, at, u.image, strings.Join(top, " "))
		case next.kind == kindSymlink:
			return nil, failure.Permanentf("%w: %s is a symbolic link to %q in %s, which is not followed: give the directory it points to", ErrSubdirNotFound, at, next.target, u.image)
		case next.kind != kindDir:
			return nil, failure.Permanentf("%w: %s is a file, not a directory, in %s", ErrSubdirNotFound, at, u.image)
		}
		cur = next
	}
	return cur, nil
}

// verifier hashes a blob as it is read and, at its end, compares it with the
// digest and size of its descriptor. go-containerregistry checks too, but its
// error has no type to tell a bad blob from a broken connection.
type verifier struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	desc v1.Descriptor
	bad  *digestError
	ok   bool // read to its end, and it matches
}

func newVerifier(r io.Reader, desc v1.Descriptor) *verifier {
	return &verifier{r: r, h: sha256.New(), desc: desc}
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	// The end: io.EOF, or the size read and an error (the library's own
	// verdict on the same bytes).
	if err != nil && v.bad == nil && (err == io.EOF || v.n >= v.desc.Size) {
		got := "sha256:" + hex.EncodeToString(v.h.Sum(nil))
		if got != v.desc.Digest.String() || v.n != v.desc.Size {
			v.bad = &digestError{digest: v.desc.Digest.String(), got: got, size: v.n, want: v.desc.Size}
		} else {
			v.ok = err == io.EOF
		}
	}
	if v.bad != nil {
		return n, v.bad
	}
	return n, err
}

// drain reads the blob to its end, so that it is verified even where the layer's
// reader stopped early (a tar archive's end, padding).
func (v *verifier) drain() error {
	_, err := io.Copy(io.Discard, v)
	var de *digestError
	if errors.As(err, &de) {
		return nil // v.bad says it
	}
	return err
}

// describe is a layer for messages.
func describe(n, of int, d v1.Descriptor, image string) string {
	return fmt.Sprintf("layer %d of %d (%s) of %s", n, of, d.Digest, image)
}

// diskError is a failure to write the image's files: transient when the disk is
// full (a retry runs in a new pod, with a new volume), permanent otherwise (a
// directory that cannot be written stays so).
func diskError(what string, err error) error {
	if diskFull(err) {
		return failure.Transientf("%s: the volume of TMPDIR is full: %w", what, err)
	}
	return failure.Permanentf("%s: %w", what, err)
}

func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
