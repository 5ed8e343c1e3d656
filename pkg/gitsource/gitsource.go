package gitsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/transport"
	gitproto "github.com/go-git/go-git/v5/plumbing/transport/git"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// responseHeaderTimeout bounds the wait for an HTTP server's answer (a server that
// accepts the connection and never answers); a timeout is transient.
const responseHeaderTimeout = 2 * time.Minute

// Remote is a repository and the credentials to read it. Printing a Remote shows its
// URL without userinfo and which credentials are set.
type Remote struct {
	URL  string
	Auth Auth
}

// String is the URL without userinfo and the Auth summary.
func (r Remote) String() string {
	return fmt.Sprintf("gitsource.Remote{URL: %s, Auth: %s}", displayURL(r.URL), r.Auth)
}

// GoString is String, for %#v.
func (r Remote) GoString() string { return r.String() }

// Format prints String for every verb.
func (r Remote) Format(f fmt.State, _ rune) { _, _ = fmt.Fprint(f, r.String()) }

// MarshalJSON shows the URL without userinfo.
func (r Remote) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		URL  string
		Auth Auth
	}{displayURL(r.URL), r.Auth})
}

var (
	schemeRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)$`)
	// scpRE is git's [user@]host:path form (host without '/', path not starting
	// with "//", which would make it scheme://).
	scpRE = regexp.MustCompile(`^(?:([^@/]+)@)?([^:/\s]+):(.+)$`)
)

// displayURL is raw fit for a message: scheme URLs lose their userinfo (an https
// user name is often a token) except an ssh user without a password; an scp-like
// user with a ':' is masked.
func displayURL(raw string) string {
	if m := schemeRE.FindStringSubmatch(raw); m != nil {
		host := m[2]
		user := ""
		if at := strings.LastIndex(host, "@"); at >= 0 {
			user, host = host[:at], host[at+1:]
			if !strings.EqualFold(m[1], "ssh") || strings.Contains(user, ":") {
				user = ""
			}
		}
		// What follows a ':' that is no port may be a password that lost its '@'.
		if i := strings.LastIndex(host, ":"); i >= 0 && !strings.HasSuffix(host, "]") && !isDigits(host[i+1:]) {
			host = host[:i] + ":***"
		}
		if user != "" {
			host = user + "@" + host
		}
		rest := m[3]
		if i := strings.IndexAny(rest, "?#"); i >= 0 {
			rest = rest[:i] + rest[i:i+1] + "***" // a query or fragment may hold a token
		}
		return m[1] + "://" + host + rest
	}
	if m := scpRE.FindStringSubmatch(raw); m != nil && strings.Contains(m[1], ":") {
		return "***@" + m[2] + ":" + m[3]
	}
	return raw
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Validate checks the URL: https://, http://, ssh://, git:// or scp-like
// [user@]host:path. Anything else (file://, a local path, no host, credentials in
// the URL) is a usage error; the message never shows userinfo.
func (r Remote) Validate() error {
	_, err := r.endpoint()
	return err
}

func (r Remote) endpoint() (*transport.Endpoint, error) {
	shown := displayURL(r.URL)
	bad := func(why string) error {
		return failure.Usagef("%w %q: %s", ErrInvalidURL, shown, why)
	}
	raw := r.URL
	switch {
	case raw == "":
		return nil, bad("empty")
	case strings.TrimSpace(raw) != raw || strings.ContainsAny(raw, "\x00\r\n\t "):
		return nil, bad("it holds white space or control characters")
	}
	if m := schemeRE.FindStringSubmatch(raw); m != nil {
		scheme, authority := strings.ToLower(m[1]), m[2]
		switch scheme {
		case "https", "http", "ssh", "git":
		case "file":
			return nil, bad("local repositories (file://) are not supported; give the server's https or ssh URL")
		default:
			return nil, bad("unsupported scheme " + scheme + "://; use https://, http://, ssh://, git:// or user@host:path")
		}
		if at := strings.LastIndex(authority, "@"); at >= 0 {
			user := authority[:at]
			switch {
			case scheme != "ssh":
				return nil, bad("credentials in the URL are not allowed: put the user name and token in the Secret (keys " + KeyUsername + ", " + KeyToken + ")")
			case strings.Contains(user, ":"):
				return nil, bad("a password in the URL is not allowed: put the key in the Secret (keys " + KeySSHPrivateKey + ", " + KeyKnownHosts + ")")
			}
			authority = authority[at+1:]
		}
		if authority == "" || strings.HasPrefix(authority, ":") {
			return nil, bad("no host")
		}
		if strings.ContainsAny(m[3], "?#") {
			return nil, bad("a git URL has no query or fragment (a token there would be sent and logged as part of the URL): put the token in the Secret (key " + KeyToken + ")")
		}
	} else if m := scpRE.FindStringSubmatch(raw); m != nil {
		if strings.Contains(m[1], ":") {
			return nil, bad("a password in the URL is not allowed: put the key in the Secret (keys " + KeySSHPrivateKey + ", " + KeyKnownHosts + ")")
		}
	} else {
		return nil, bad("not a URL: give https://host/path, ssh://host/path, git://host/path or user@host:path (local paths are not supported)")
	}
	ep, err := transport.NewEndpoint(raw)
	if err != nil {
		// The parser's message would repeat the raw URL.
		return nil, bad("it does not parse as a URL")
	}
	switch {
	case ep.Protocol != "https" && ep.Protocol != "http" && ep.Protocol != "ssh" && ep.Protocol != "git":
		return nil, bad("unsupported scheme")
	case ep.Host == "":
		return nil, bad("no host")
	case ep.Password != "":
		return nil, bad("a password in the URL is not allowed")
	case strings.Trim(ep.Path, "/") == "":
		return nil, bad("no repository path")
	}
	return ep, nil
}

// conn is one Resolve or Fetch: the endpoint, its transport and credentials.
type conn struct {
	auth  Auth
	ep    *transport.Endpoint
	where string // the URL for messages
	tr    transport.Transport
	guard *guard // HTTP only
	am    transport.AuthMethod
	done  func()
}

func (r Remote) open() (*conn, error) {
	ep, err := r.endpoint()
	if err != nil {
		return nil, err
	}
	am, err := r.Auth.method(ep)
	if err != nil {
		return nil, err
	}
	c := &conn{auth: r.Auth.fitting(ep.Protocol), ep: ep, where: displayURL(r.URL), am: am, done: func() {}}
	switch ep.Protocol {
	case "http", "https":
		// A client of its own: no shared state, idle connections closed after.
		ht := http.DefaultTransport.(*http.Transport).Clone()
		ht.ResponseHeaderTimeout = responseHeaderTimeout
		c.guard = &guard{next: ht}
		c.tr = githttp.NewClient(&http.Client{Transport: c.guard})
		c.done = ht.CloseIdleConnections
	case "ssh":
		c.tr = gitssh.DefaultClient
	default:
		c.tr = gitproto.DefaultClient
	}
	return c, nil
}

// session is one upload-pack conversation: its advertisement, then at most one
// request (ssh and git:// allow no more).
type session struct {
	c  *conn
	s  transport.UploadPackSession
	ar *packp.AdvRefs
}

// advertise opens a session and reads the refs (one ls-remote).
func (c *conn) advertise(ctx context.Context) (*session, error) {
	w := watch(ctx, false)
	defer w.stop()
	ctx = w.ctx
	s, err := c.dial(ctx)
	if err != nil {
		err = c.classify(ctx, "connecting to", err)
		var refused *refusedError
		if c.ep.Protocol == "ssh" && errors.As(err, &refused) {
			// go-git connects over ssh here: what is neither a network failure nor
			// a host key problem is the handshake, which x/crypto/ssh reports as
			// text only ("unable to authenticate"): the key, or no common algorithm.
			return nil, failure.Permanentf("%w: %s: %w", ErrAuth, c.auth.hint("ssh"), refused)
		}
		return nil, err
	}
	ar, err := s.AdvertisedReferencesContext(ctx)
	if err != nil {
		_ = s.Close()
		return nil, c.classify(ctx, "listing the refs of", err)
	}
	return &session{c: c, s: s, ar: ar}, nil
}

func (s *session) close() { _ = s.s.Close() }

// dial opens the session, or gives up when ctx ends: go-git dials git:// without a
// timeout and does the ssh handshake without one, neither with the context.
func (c *conn) dial(ctx context.Context) (transport.UploadPackSession, error) {
	type result struct {
		s   transport.UploadPackSession
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := c.tr.NewUploadPackSession(c.ep, c.am)
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		return r.s, r.err
	case <-ctx.Done():
		go func() { // the session that comes late is closed unused
			if r := <-done; r.err == nil {
				_ = r.s.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// fetch asks for wants (depth 0: whole history, never used here with commits;
// filter "": every object) and stores the pack in st.
func (s *session) fetch(ctx context.Context, st *filesystem.Storage, wants []plumbing.Hash, depth int, filter packp.Filter) error {
	caps := s.ar.Capabilities
	req := packp.NewUploadPackRequestFromCapabilities(caps)
	req.Wants = wants
	set := func(c capability.Capability) {
		// Set fails only for unknown capabilities or missing arguments: not these.
		_ = req.Capabilities.Set(c)
	}
	if depth > 0 {
		req.Depth = packp.DepthCommits(depth)
		set(capability.Shallow)
	}
	if filter != "" {
		req.Filter = filter
		set(capability.Filter)
	}
	if caps.Supports(capability.NoProgress) {
		set(capability.NoProgress)
	}
	w := watch(ctx, true)
	defer w.stop()
	ctx = w.ctx
	resp, err := s.s.UploadPack(ctx, req)
	if err != nil {
		return s.c.classify(ctx, "fetching from", err)
	}
	defer resp.Close()
	// Any byte shows the server alive; only pack data, read after the side-band
	// demuxer (which drops progress messages and keep-alives), shows progress.
	var raw io.Reader = kicker{resp, w.alive}
	r := raw
	switch {
	case req.Capabilities.Supports(capability.Sideband64k):
		r = sideband.NewDemuxer(sideband.Sideband64k, raw)
	case req.Capabilities.Supports(capability.Sideband):
		r = sideband.NewDemuxer(sideband.Sideband, raw)
	}
	if err := packfile.UpdateObjectStorage(st, kicker{r, w.progress}); err != nil {
		return s.c.classify(ctx, "fetching from", err)
	}
	return nil
}

var hexRE = regexp.MustCompile(`^[0-9a-fA-F]+$`)

func isFullSHA(s string) bool { return len(s) == 40 && hexRE.MatchString(s) }

// Resolve turns revision into a commit SHA (40 lower-case hex) with one ls-remote:
// a tag (annotated tags peeled to their commit), a branch, a full ref name
// (refs/...), or "" for the remote HEAD. A full 40-hex SHA is returned lower-cased
// without contacting the server (Fetch checks it exists). A name that is no tag or
// branch but looks like an abbreviated SHA is a usage error; a name that is both a
// tag and a branch on different commits too.
func (r Remote) Resolve(ctx context.Context, revision string) (string, error) {
	if err := r.Validate(); err != nil {
		return "", err
	}
	if isFullSHA(revision) {
		return strings.ToLower(revision), nil
	}
	if err := ValidateRevision(revision); err != nil {
		return "", err
	}
	c, err := r.open()
	if err != nil {
		return "", err
	}
	defer c.done()
	s, err := c.advertise(ctx)
	if err != nil {
		return "", r.Auth.mask(err)
	}
	defer s.close()
	ref, err := c.lookup(s.ar, revision)
	if err != nil {
		return "", r.Auth.mask(err)
	}
	return ref.commit.String(), nil
}

// advertised is a ref as the server advertised it.
type advertised struct {
	name   string
	hash   plumbing.Hash // what the ref holds: a commit, or a tag object
	commit plumbing.Hash // hash peeled to its commit
}

func refAt(ar *packp.AdvRefs, name string) (advertised, bool) {
	h, ok := ar.References[name]
	if !ok {
		return advertised{}, false
	}
	a := advertised{name: name, hash: h, commit: h}
	if p, ok := ar.Peeled[name]; ok {
		a.commit = p
	}
	return a, true
}

// lookup finds revision among the advertised refs the way git does for a fetch: a
// full ref name as it is, else a tag, else a branch.
func (c *conn) lookup(ar *packp.AdvRefs, revision string) (advertised, error) {
	if revision == "" || revision == "HEAD" {
		if ar.Head == nil {
			return advertised{}, failure.Permanentf("%w: %s advertises no HEAD (default branch); give a branch or tag", ErrRevisionNotFound, c.where)
		}
		return advertised{name: "HEAD", hash: *ar.Head, commit: *ar.Head}, nil
	}
	if strings.HasPrefix(revision, "refs/") {
		if a, ok := refAt(ar, revision); ok {
			return a, nil
		}
		return advertised{}, failure.Permanentf("%w: %s has no ref %q", ErrRevisionNotFound, c.where, revision)
	}
	tag, isTag := refAt(ar, "refs/tags/"+revision)
	branch, isBranch := refAt(ar, "refs/heads/"+revision)
	switch {
	case isTag && isBranch && tag.commit != branch.commit:
		return advertised{}, failure.Usagef("%w: %s has a tag and a branch named %q on different commits; give refs/tags/%s or refs/heads/%s",
			ErrAmbiguousRevision, c.where, revision, revision, revision)
	case isTag:
		return tag, nil
	case isBranch:
		return branch, nil
	}
	if len(revision) >= 4 && len(revision) < 40 && hexRE.MatchString(revision) {
		return advertised{}, failure.Usagef("%w: %q is no tag or branch of %s and looks like a shortened commit SHA; give the full 40-character SHA, or better a tag",
			ErrAbbreviatedSHA, revision, c.where)
	}
	return advertised{}, failure.Permanentf("%w: %q is no tag or branch of %s", ErrRevisionNotFound, revision, c.where)
}

// findCommit is an advertised ref that holds commit, directly or through an
// annotated tag: wanting it needs no permission to fetch by SHA. A ref that holds
// the commit itself comes first (nothing to peel), then the tags in name order, so
// the same advertisement always gives the same want.
func findCommit(ar *packp.AdvRefs, commit plumbing.Hash) (advertised, bool) {
	if ar.Head != nil && *ar.Head == commit {
		return advertised{name: "HEAD", hash: commit, commit: commit}, true
	}
	var tag *advertised
	for _, name := range slices.Sorted(maps.Keys(ar.References)) {
		a, ok := refAt(ar, name)
		switch {
		case !ok || a.commit != commit:
		case a.hash == commit:
			return a, true
		case tag == nil:
			tag = &a
		}
	}
	if tag != nil {
		return *tag, true
	}
	return advertised{}, false
}

// Fetch gets the files directly in subdir ("" or "." is the root) of commit (40
// hex) and returns them as an fs.FS rooted at subdir: not its subdirectories (goose
// reads none, and a link or a large file in one must not cost or break the run), not
// its submodules; a symbolic link among the files is an error. It is shallow (depth
// 1) and takes no tags. revision is what the user
// asked for (tag, branch, "" or the SHA itself); it is used only when the server
// refuses commit by SHA: then its ref is fetched instead, if it still points at
// commit, else Fetch returns *MovedError. Everything is kept under a new directory
// in tmpDir (which the caller creates and removes); the FS reads files there.
func (r Remote) Fetch(ctx context.Context, commit, revision, subdir, tmpDir string) (fs.FS, error) {
	fsys, err := r.fetch(ctx, commit, revision, subdir, tmpDir)
	return fsys, r.Auth.mask(err)
}

func (r Remote) fetch(ctx context.Context, commit, revision, subdir, tmpDir string) (fs.FS, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if !isFullSHA(commit) {
		return nil, failure.Usagef("%w: Fetch takes the full 40-character commit SHA that Resolve returned, not %q", ErrAbbreviatedSHA, commit)
	}
	want := plumbing.NewHash(strings.ToLower(commit))
	sub := path.Clean("/" + strings.Trim(subdir, "/"))[1:]
	if sub == "" {
		sub = "."
	}
	if !fs.ValidPath(sub) || slices.Contains(strings.Split(subdir, "/"), "..") {
		return nil, failure.Usagef("directory %q: give a relative path inside the repository", subdir)
	}
	c, err := r.open()
	if err != nil {
		return nil, err
	}
	defer c.done()
	work, err := os.MkdirTemp(tmpDir, "gitsource-")
	if err != nil {
		return nil, failure.Permanentf("making a directory for the fetch: %w", err)
	}
	objects := filepath.Join(work, "objects")
	// A small object cache: blobs are streamed to files, read once each.
	st := filesystem.NewStorageWithOptions(osfs.New(objects), cache.NewObjectLRU(8*cache.MiByte),
		filesystem.Options{LargeObjectThreshold: largeObject})
	f := &fetcher{c: c, st: st, want: want, revision: revision}
	defer f.st.Close()
	tree, err := f.subtree(ctx, sub)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(work, "files")
	if err := f.write(ctx, tree, out, sub); err != nil {
		return nil, err
	}
	// The files are out; the object store is no longer needed.
	_ = f.st.Close()
	_ = os.RemoveAll(objects)
	return os.DirFS(out), nil
}

// largeObject: a file larger than this is streamed from the pack to its file;
// go-git reads smaller ones into memory whole (and without the threshold, every
// one: a 100 MB migration took 290 MiB of heap).
const largeObject = 1 << 20

// fetcher is one Fetch.
type fetcher struct {
	c        *conn
	st       *filesystem.Storage
	want     plumbing.Hash // the commit
	revision string
	got      plumbing.Hash // what was asked for: want, or a tag object that peels to it
	filtered bool          // blobs were left out of the first fetch
}

// subtree fetches the commit and returns the tree of dir in it.
func (f *fetcher) subtree(ctx context.Context, dir string) (*object.Tree, error) {
	if err := f.fetchCommit(ctx); err != nil {
		return nil, err
	}
	cm, err := f.peel()
	if err != nil {
		return nil, err
	}
	t, err := cm.Tree()
	if err != nil {
		return nil, failure.Permanentf("reading the tree of commit %s from %s: %w", f.want, f.c.where, err)
	}
	if dir == "." {
		return t, nil
	}
	// Walked one name at a time, so that what stands in the way is named: a
	// link or a submodule where a directory is wanted is neither followed nor
	// taken for a missing directory.
	root := t
	parts := strings.Split(dir, "/")
	for i, name := range parts {
		at := strings.Join(parts[:i+1], "/")
		var found []object.TreeEntry
		for _, e := range t.Entries {
			if e.Name == name {
				found = append(found, e)
			}
		}
		switch {
		case len(found) == 0:
			var top []string
			for _, e := range root.Entries {
				if e.Mode == filemode.Dir {
					top = append(top, e.Name+"/")
				}
			}
			return nil, failure.Permanentf("%w: no directory %q in commit %s of %s (directories at its top: %s)",
				ErrSubdirNotFound, at, f.want, f.c.where, strings.Join(top, " "))
		case len(found) > 1:
			return nil, failure.Permanentf("%w: commit %s of %s has %d entries named %q, which git itself refuses (git fsck: duplicateEntries)",
				ErrSubdirNotFound, f.want, f.c.where, len(found), at)
		}
		e := found[0]
		switch e.Mode {
		case filemode.Dir:
		case filemode.Symlink:
			return nil, failure.Permanentf("%w: %q is a symbolic link in commit %s of %s, which is not followed: give the directory it points to",
				ErrSubdirNotFound, at, f.want, f.c.where)
		case filemode.Submodule:
			return nil, failure.Permanentf("%w: %q is a submodule in commit %s of %s, and submodules are not fetched: give the submodule's own repository as the git URL",
				ErrSubdirNotFound, at, f.want, f.c.where)
		default:
			return nil, failure.Permanentf("%w: %q is a file, not a directory, in commit %s of %s", ErrSubdirNotFound, at, f.want, f.c.where)
		}
		if t, err = object.GetTree(f.st, e.Hash); err != nil {
			return nil, failure.Permanentf("reading %s in commit %s from %s: %w", at, f.want, f.c.where, err)
		}
	}
	return t, nil
}

// fetchCommit gets the commit at depth 1, without blobs when the server can filter.
func (f *fetcher) fetchCommit(ctx context.Context) error {
	s, err := f.c.advertise(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	f.got = f.want
	// A ref that holds the commit (or a tag that peels to it) can be wanted from
	// any server; a bare SHA needs the server to serve commits by SHA.
	a, tip := findCommit(s.ar, f.want)
	if tip {
		f.got = a.hash
	}
	f.filtered = s.ar.Capabilities.Supports(capability.Filter)
	err = s.fetch(ctx, f.st, []plumbing.Hash{f.got}, 1, f.filter())
	var refused *refusedError
	if errors.As(err, &refused) && !tip {
		return f.fallback(ctx, err)
	}
	return err
}

func (f *fetcher) filter() packp.Filter {
	if f.filtered {
		return packp.FilterBlobNone()
	}
	return ""
}

// fallback runs when the server refused the commit by SHA: fetch the revision's ref
// instead, if it still points at the commit.
func (f *fetcher) fallback(ctx context.Context, cause error) error {
	s, err := f.c.advertise(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	if isFullSHA(f.revision) {
		if s.ar.Capabilities.Supports(capability.AllowReachableSHA1InWant) {
			return failure.Permanentf("%w: commit %s is not on %s, or no branch or tag leads to it any more: %w", ErrRevisionNotFound, f.want, f.c.where, cause)
		}
		return failure.Permanentf("%w: %s does not serve commits by SHA unless a branch or tag points at them, and none points at %s; give a tag or branch instead (the server said: %w)",
			ErrRevisionNotFound, f.c.where, f.want, cause)
	}
	a, err := f.c.lookup(s.ar, f.revision)
	if errors.Is(err, ErrRevisionNotFound) {
		return f.moved("")
	}
	if err != nil {
		return err
	}
	if a.commit != f.want {
		return f.moved(a.commit.String())
	}
	// Same commit, now advertised (the ref came back): the peel below checks the
	// ref still holds it when the pack arrives.
	f.got = a.hash
	f.filtered = s.ar.Capabilities.Supports(capability.Filter)
	return s.fetch(ctx, f.st, []plumbing.Hash{f.got}, 1, f.filter())
}

func (f *fetcher) moved(got string) error {
	return failure.Permanentf("%s: %w", f.c.where, &MovedError{Revision: f.revision, Want: f.want.String(), Got: got})
}

// asked names what the user asked for in messages.
func (f *fetcher) asked() string {
	if isFullSHA(f.revision) && strings.EqualFold(f.revision, f.want.String()) {
		return f.want.String()
	}
	return fmt.Sprintf("%s (resolved to %s)", revisionName(f.revision), f.want)
}

// maxTagDepth bounds a chain of tags of tags (git's own limit is none: object
// hashes make a cycle impossible, the bound only stops a hostile pack early).
const maxTagDepth = 64

// peel follows f.got through annotated tags to its commit, which must be f.want.
func (f *fetcher) peel() (*object.Commit, error) {
	h := f.got
	tagName := "" // set when the SHA given is an annotated tag's own
	for range maxTagDepth {
		o, err := f.st.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return nil, failure.Permanentf("%w: %s did not send %s (asked for commit %s): %w", ErrRevisionNotFound, f.c.where, h, f.want, err)
		}
		switch o.Type() {
		case plumbing.TagObject:
			t, err := object.DecodeTag(f.st, o)
			if err != nil {
				return nil, failure.Permanentf("reading tag %s from %s: %w", h, f.c.where, err)
			}
			if h == f.want {
				tagName = t.Name
			}
			h = t.Target
			continue
		case plumbing.CommitObject:
			if tagName != "" {
				// The SHA of the tag object, as git show-ref or an API gives it:
				// the run must record a commit, so say which one.
				return nil, failure.Permanentf("%w: %s of %s is annotated tag %s, not a commit: give the tag's name, or the commit it points at, %s",
					ErrRevisionNotFound, f.want, f.c.where, shortQuote(tagName), h)
			}
			if h != f.want {
				return nil, f.moved(h.String())
			}
			cm, err := object.DecodeCommit(f.st, o)
			if err != nil {
				return nil, failure.Permanentf("reading commit %s from %s: %w", h, f.c.where, err)
			}
			return cm, nil
		default:
			if h == f.want {
				return nil, failure.Permanentf("%w: %s of %s is a %s, not a commit", ErrRevisionNotFound, f.asked(), f.c.where, o.Type())
			}
			return nil, failure.Permanentf("%w: %s of %s leads to %s, which is a %s, not a commit", ErrRevisionNotFound, f.asked(), f.c.where, h, o.Type())
		}
	}
	return nil, failure.Permanentf("%w: %s of %s is a chain of more than %d tags of tags", ErrRevisionNotFound, f.asked(), f.c.where, maxTagDepth)
}

// missing are the files of t that the store lacks.
func (f *fetcher) missing(t *object.Tree) []plumbing.Hash {
	var out []plumbing.Hash
	seen := map[plumbing.Hash]bool{}
	for _, e := range t.Entries {
		if e.Mode.IsFile() && !seen[e.Hash] {
			seen[e.Hash] = true
			if f.st.HasEncodedObject(e.Hash) != nil {
				out = append(out, e.Hash)
			}
		}
	}
	return out
}

// fillBlobs gets the files of t that a filtered fetch left out: by their SHAs, or,
// from a server that refuses that, with a second fetch of the commit unfiltered.
func (f *fetcher) fillBlobs(ctx context.Context, t *object.Tree) error {
	if !f.filtered {
		return nil
	}
	need := f.missing(t)
	if len(need) == 0 {
		return nil
	}
	s, err := f.c.advertise(ctx)
	if err != nil {
		return err
	}
	err = s.fetch(ctx, f.st, need, 0, "")
	s.close()
	var refused *refusedError
	if !errors.As(err, &refused) {
		return err
	}
	if s, err = f.c.advertise(ctx); err != nil {
		return err
	}
	defer s.close()
	f.filtered = false
	return s.fetch(ctx, f.st, []plumbing.Hash{f.got}, 1, "")
}

// write puts the files directly in t into dir: regular and executable files only.
// Subdirectories and submodules are left out (goose reads no deeper, and what is not
// read cannot break the run); a symbolic link is an error (it could point outside the
// directory, and leaving it out could drop a migration silently).
func (f *fetcher) write(ctx context.Context, t *object.Tree, dir, sub string) error {
	if err := f.fillBlobs(ctx, t); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return failure.Permanentf("writing the files of commit %s: %w", f.want, err)
	}
	for _, e := range t.Entries {
		// Even names that are not written: a tree holding one is corrupt or
		// made to attack (git fsck refuses it).
		if e.Name == "" || e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, "/\x00") {
			return failure.Permanentf("commit %s of %s has an entry named %q in %s, which git itself refuses", f.want, f.c.where, e.Name, sub)
		}
		if e.Mode == filemode.Dir || e.Mode == filemode.Submodule {
			continue
		}
		name := path.Join(strings.TrimPrefix(sub, "."), e.Name)
		switch {
		case e.Mode == filemode.Symlink:
			return failure.Permanentf("%s in commit %s of %s is a symbolic link, which is not supported: commit the file itself", name, f.want, f.c.where)
		case e.Mode.IsFile():
			if err := f.writeBlob(e.Hash, filepath.Join(dir, e.Name)); err != nil {
				return failure.Permanentf("writing %s of commit %s of %s: %w", name, f.want, f.c.where, err)
			}
		}
	}
	return nil
}

func (f *fetcher) writeBlob(h plumbing.Hash, p string) error {
	b, err := object.GetBlob(f.st, h)
	if err != nil {
		return err
	}
	r, err := b.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
