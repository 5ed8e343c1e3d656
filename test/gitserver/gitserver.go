package gitserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Backend is Debian's smart HTTP server program.
const Backend = "/usr/lib/git-core/git-http-backend"

// Fault is how FailNext makes a request fail.
type Fault int

const (
	// Unavailable answers 503 over HTTP; over the git protocol it closes the
	// connection unanswered (the protocol has no status codes).
	Unavailable Fault = iota + 1
	// Drop closes the connection without an answer.
	Drop
	// Garbage answers 200 with an HTML page (a captive portal, a misrouted proxy);
	// over git and SSH it writes text that is no pkt-line, then closes.
	Garbage
	// Truncate sends the first half of the real answer, then closes the connection
	// (HTTP only; elsewhere it is Drop).
	Truncate
	// Stall never answers and keeps the connection open until the client gives up
	// or the server closes.
	Stall
	// StallMidway sends the first half of the real answer, then nothing, keeping the
	// connection open (HTTP only; elsewhere it is Stall).
	StallMidway
	// EndlessError answers 404 with a body that does not end (HTTP only; elsewhere
	// it is Stall). It stops after 64 MiB so that a client reading it all returns.
	EndlessError
	// EndlessProgress starts the real answer of a pack request, then sends a
	// progress message every 100 ms and never the pack, as a server stuck counting
	// objects does (HTTP pack transfers only; elsewhere it is Stall).
	EndlessProgress
	// Reflect answers 403 with the request's URL and headers in its body, as a
	// proxy's debug page does (HTTP only; elsewhere it is Drop).
	Reflect
	// Redirect answers 307 to another base URL (see RedirectNext; HTTP only).
	Redirect
	// Substitute serves another commit than the one asked for (see
	// SubstituteNextPack; HTTP pack transfers only).
	Substitute
	// RateLimited answers 403 with Retry-After, as GitHub's secondary rate limit
	// does (HTTP only; elsewhere it is Drop).
	RateLimited
)

func (f Fault) String() string {
	switch f {
	case Unavailable:
		return "unavailable"
	case Drop:
		return "drop"
	case Garbage:
		return "garbage"
	case Truncate:
		return "truncate"
	case Stall:
		return "stall"
	case StallMidway:
		return "stall-midway"
	case EndlessError:
		return "endless-error"
	case EndlessProgress:
		return "endless-progress"
	case Reflect:
		return "reflect"
	case Redirect:
		return "redirect"
	case Substitute:
		return "substitute"
	case RateLimited:
		return "rate-limited"
	}
	return "none"
}

// Request is one request the server saw.
type Request struct {
	Proto  string // "http", "git" or "ssh"
	Method string // HTTP method; "" for git
	Path   string // URL path and query (HTTP); the repository's name (git)
	Repo   string // repository name; "" when the path names none
	Status int    // HTTP status sent; 0 for git and dropped connections
	Fault  Fault  // the fault injected, if any
	Bytes  int64  // response body bytes sent (HTTP)
	// Authorization: the request carried an Authorization header (HTTP).
	Authorization bool
}

// Server serves the bare repositories under one temporary directory.
type Server struct {
	root, home string
	env        []string
	httpLn     net.Listener
	gitLn      net.Listener
	srv        *http.Server
	backend    *cgi.Handler

	mu        sync.Mutex
	repos     map[string]*Repo
	faults    []pending
	requests  []Request
	stalling  int
	log       bytes.Buffer
	daemons   map[*exec.Cmd]struct{}
	conns     map[net.Conn]struct{} // SSH connections open
	extra     []net.Listener        // SSH's
	closed    bool
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Start serves on addr ("127.0.0.1:0" in tests; the cluster bridge's IP and port 0 for
// end-to-end tests, so pods reach it) over HTTP, and over the git protocol on
// another port of the same host. It is closed when the test ends.
func Start(t testing.TB, addr string) *Server {
	t.Helper()
	if _, err := os.Stat(Backend); err != nil {
		t.Fatalf("gitserver: %s is missing (Debian package git): %v", Backend, err)
	}
	dir := t.TempDir()
	s := &Server{
		root:    filepath.Join(dir, "repos"),
		home:    filepath.Join(dir, "home"),
		repos:   map[string]*Repo{},
		daemons: map[*exec.Cmd]struct{}{},
		conns:   map[net.Conn]struct{}{},
	}
	for _, d := range []string{s.root, s.home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.env = cleanEnv(s.home)
	s.backend = &cgi.Handler{
		Path:   Backend,
		Env:    append(slices.Clone(s.env), "GIT_PROJECT_ROOT="+s.root, "GIT_HTTP_EXPORT_ALL=1"),
		Stderr: lockedWriter{&s.mu, &s.log},
	}
	var err error
	if s.httpLn, err = net.Listen("tcp", addr); err != nil {
		t.Fatalf("gitserver: listen on %s: %v", addr, err)
	}
	host, _, _ := net.SplitHostPort(s.httpLn.Addr().String())
	if s.gitLn, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
		_ = s.httpLn.Close()
		t.Fatalf("gitserver: listen on %s: %v", host, err)
	}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serveHTTP)}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); _ = s.srv.Serve(s.httpLn) }()
	go func() { defer s.wg.Done(); s.serveGit() }()
	t.Cleanup(s.Close)
	return s
}

// cleanEnv is the environment of every git process: no user or system
// configuration, a fixed identity, and PATH.
func cleanEnv(home string) []string {
	return []string{
		"HOME=" + home,
		"PATH=" + os.Getenv("PATH"),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + filepath.Join(home, ".gitconfig"),
		"GIT_AUTHOR_NAME=gitserver", "GIT_AUTHOR_EMAIL=gitserver@example.invalid",
		"GIT_COMMITTER_NAME=gitserver", "GIT_COMMITTER_EMAIL=gitserver@example.invalid",
		"GIT_TERMINAL_PROMPT=0",
		"LANG=C", "LC_ALL=C",
	}
}

// URL is the base of the HTTP URLs, http://host:port.
func (s *Server) URL() string { return "http://" + s.httpLn.Addr().String() }

// GitAddr is the git protocol's host:port.
func (s *Server) GitAddr() string { return s.gitLn.Addr().String() }

// pending is a fault waiting for its request.
type pending struct {
	f        Fault
	packOnly bool   // only an HTTP POST .../git-upload-pack (the pack's transfer)
	to       string // Redirect's base URL, Substitute's object
}

// FailNext makes the next n requests (HTTP or git, whichever comes) fail with f.
func (s *Server) FailNext(n int, f Fault) { s.queue(n, pending{f: f}) }

// FailNextPack makes the next n HTTP pack transfers (POST .../git-upload-pack) fail
// with f; the ref listings before them are served.
func (s *Server) FailNextPack(n int, f Fault) { s.queue(n, pending{f: f, packOnly: true}) }

// RedirectNext answers the next n HTTP requests with a 307 to the same path and
// query under base (e.g. another Server's URL()).
func (s *Server) RedirectNext(n int, base string) {
	s.queue(n, pending{f: Redirect, to: strings.TrimSuffix(base, "/")})
}

// RedirectNextPack redirects the next n HTTP pack transfers (POST
// .../git-upload-pack) to base.
func (s *Server) RedirectNextPack(n int, base string) {
	s.queue(n, pending{f: Redirect, to: strings.TrimSuffix(base, "/"), packOnly: true})
}

// SubstituteNextPack makes the next n HTTP pack transfers serve sha (a commit of
// the same repository) instead of what the client asked for first, as a hostile or
// broken server would.
func (s *Server) SubstituteNextPack(n int, sha string) {
	s.queue(n, pending{f: Substitute, to: sha, packOnly: true})
}

func (s *Server) queue(n int, p pending) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, p)
	}
}

// Requests returns the requests served so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Log is what the git processes wrote to stderr so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// Close stops serving, ends the git daemons still running (by their process) and
// waits for them. Safe to call twice.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		_ = s.srv.Close() // also closes httpLn; CGI children end with their request
		_ = s.gitLn.Close()
		s.mu.Lock()
		for _, ln := range s.extra {
			_ = ln.Close()
		}
		for c := range s.conns {
			_ = c.Close()
		}
		for cmd := range s.daemons {
			_ = cmd.Process.Kill()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

// next takes the first queued fault that applies: redirects only when http.
func (s *Server) next(pack, http bool) pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.faults {
		if (!p.packOnly || pack) && (p.f != Redirect || http) {
			s.faults = slices.Delete(s.faults, i, i+1)
			return p
		}
	}
	return pending{}
}

// track registers an open connection for Close; false once closed.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
}

func (s *Server) repo(name string) *Repo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.repos[name]
}

// repoOf is the repository a request path names: the part up to ".git".
func repoOf(path string) string {
	p := strings.TrimPrefix(path, "/")
	if i := strings.Index(p, ".git"); i >= 0 && (len(p) == i+4 || p[i+4] == '/') {
		return p[:i+4]
	}
	return ""
}

func (s *Server) serveHTTP(w http.ResponseWriter, req *http.Request) {
	rec := Request{Proto: "http", Method: req.Method, Path: req.URL.RequestURI(), Repo: repoOf(req.URL.Path),
		Authorization: req.Header.Get("Authorization") != ""}
	cw := &countingWriter{ResponseWriter: w}
	defer func() {
		rec.Status, rec.Bytes = cw.status, cw.n
		s.record(rec)
	}()
	pack := req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/git-upload-pack")
	p := s.next(pack, true)
	rec.Fault = p.f
	if s.answerFault(cw, req, p) {
		return
	}
	r := s.repo(rec.Repo)
	if r == nil {
		http.NotFound(cw, req)
		return
	}
	if p.f != 0 { // the real answer, spoiled
		s.spoil(cw, req, r, p)
		return
	}
	s.serveRepo(cw, req, r)
}

// serveRepo is the real answer: credentials checked, then git http-backend.
func (s *Server) serveRepo(cw http.ResponseWriter, req *http.Request, r *Repo) {
	if r.user != "" {
		u, p, ok := req.BasicAuth()
		if !ok || u != r.user || p != r.token {
			cw.Header().Set("WWW-Authenticate", `Basic realm="gitserver"`)
			http.Error(cw, "authentication required", http.StatusUnauthorized)
			return
		}
	}
	if req.URL.Query().Get("service") == "git-receive-pack" || strings.HasSuffix(req.URL.Path, "/git-receive-pack") {
		http.Error(cw, "push is not served", http.StatusForbidden)
		return
	}
	s.backend.ServeHTTP(cw, req)
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// serveGit hands each connection to its own `git daemon --inetd`, which reads the
// request (the repository's path) and runs upload-pack; the process ends with the
// connection.
func (s *Server) serveGit() {
	for {
		conn, err := s.gitLn.Accept()
		if err != nil {
			return
		}
		rec := Request{Proto: "git"}
		if rec.Fault = s.next(false, false).f; rec.Fault != 0 {
			if rec.Fault == Garbage || rec.Fault == Drop {
				// A git:// client speaks first: read its request line before the junk
				// answer or the close, so that the client always meets the fault in
				// its read, never (by chance) as a broken pipe on its write.
				readRequestLine(conn)
			}
			s.failConn(conn, rec.Fault)
			s.record(rec)
			continue
		}
		if err := s.startDaemon(conn); err != nil {
			fmt.Fprintf(lockedWriter{&s.mu, &s.log}, "gitserver: git daemon: %v\n", err)
		}
		s.record(rec)
	}
}

func (s *Server) startDaemon(conn net.Conn) error {
	defer conn.Close()
	f, err := conn.(*net.TCPConn).File() // a duplicate: the child's stdin and stdout
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command("git", "daemon", "--inetd", "--informative-errors", "--base-path="+s.root, s.root)
	cmd.Env = s.env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, lockedWriter{&s.mu, &s.log}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("server closed")
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.daemons[cmd] = struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = cmd.Wait()
		s.mu.Lock()
		delete(s.daemons, cmd)
		s.mu.Unlock()
	}()
	return nil
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// RepoOption configures NewRepo.
type RepoOption func(*Repo)

// WithToken makes the repository private over HTTP: requests without basic auth of
// user and token get 401. Private repositories are not exported over the git
// protocol, which has no authentication.
func WithToken(user, token string) RepoOption {
	return func(r *Repo) { r.user, r.token = user, token }
}

// AllowReachableSHA1InWant sets uploadpack.allowReachableSHA1InWant (default true, as
// on GitHub and GitLab). See the package comment for what false does over HTTP.
func AllowReachableSHA1InWant(allow bool) RepoOption {
	return func(r *Repo) { r.reachable = allow }
}

// AllowFilter sets uploadpack.allowFilter (default true, as on GitHub and GitLab):
// whether clients may leave blobs out of a fetch (partial clone).
func AllowFilter(allow bool) RepoOption {
	return func(r *Repo) { r.filter = allow }
}

// Repo is a bare repository on the server.
type Repo struct {
	s           *Server
	name, dir   string
	user, token string
	reachable   bool
	filter      bool

	mu      sync.Mutex
	commits int
}

var repoName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$`)

// NewRepo creates an empty bare repository whose default branch is main. name may
// hold slashes (org/app); ".git" is added when missing.
func (s *Server) NewRepo(t testing.TB, name string, opts ...RepoOption) *Repo {
	t.Helper()
	if !strings.HasSuffix(name, ".git") {
		name += ".git"
	}
	if !repoName.MatchString(name) || strings.Contains(name, "..") {
		t.Fatalf("gitserver: bad repository name %q", name)
	}
	r := &Repo{s: s, name: name, dir: filepath.Join(s.root, filepath.FromSlash(name)), reachable: true, filter: true}
	for _, o := range opts {
		o(r)
	}
	s.mu.Lock()
	_, dup := s.repos[name]
	s.mu.Unlock()
	if dup {
		t.Fatalf("gitserver: repository %q exists", name)
	}
	s.git(t, "", "init", "--quiet", "--bare", "--initial-branch=main", r.dir)
	s.git(t, r.dir, "config", "uploadpack.allowReachableSHA1InWant", strconv.FormatBool(r.reachable))
	s.git(t, r.dir, "config", "uploadpack.allowFilter", strconv.FormatBool(r.filter))
	if r.user == "" {
		if err := os.WriteFile(filepath.Join(r.dir, "git-daemon-export-ok"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	s.repos[name] = r
	s.mu.Unlock()
	return r
}

// URL is the repository's smart HTTP URL.
func (r *Repo) URL() string { return r.s.URL() + "/" + r.name }

// GitURL is the repository's git protocol URL (git://host:port/name.git).
func (r *Repo) GitURL() string { return "git://" + r.s.GitAddr() + "/" + r.name }

// Dir is the bare repository's directory on disk.
func (r *Repo) Dir() string { return r.dir }

// Commit makes a commit on main, child of main's tip, whose tree is exactly files
// (slash-separated path → content), and returns its SHA.
func (r *Repo) Commit(t testing.TB, files map[string]string, msg string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commits++
	work := t.TempDir()
	tree := filepath.Join(work, "tree")
	for name, content := range files {
		p := filepath.Join(tree, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	// A fresh index: the tree holds the files given and nothing else.
	env := []string{"GIT_INDEX_FILE=" + filepath.Join(work, "index"), "GIT_WORK_TREE=" + tree}
	r.s.gitEnv(t, r.dir, env, "-C", tree, "add", "--all", "--force", ".")
	return r.commitTree(t, r.s.gitEnv(t, r.dir, env, "write-tree"), msg)
}

// commitTree commits tree on main, child of main's tip; r.mu is held.
func (r *Repo) commitTree(t testing.TB, tree, msg string) string {
	t.Helper()
	// Fixed dates, one second apart: the same history gives the same SHAs.
	date := fmt.Sprintf("GIT_COMMITTER_DATE=%d +0000", 1_700_000_000+r.commits)
	args := []string{"commit-tree", tree, "-m", msg}
	if parent := r.s.gitOK(r.dir, "rev-parse", "--verify", "--quiet", "refs/heads/main^{commit}"); parent != "" {
		args = append(args, "-p", parent)
	}
	sha := r.s.gitEnv(t, r.dir, []string{date, strings.Replace(date, "COMMITTER", "AUTHOR", 1)}, args...)
	r.s.git(t, r.dir, "update-ref", "refs/heads/main", sha)
	return sha
}

// Tag creates the annotated tag name on sha.
func (r *Repo) Tag(t testing.TB, name, sha string) {
	t.Helper()
	r.s.git(t, r.dir, "tag", "--annotate", "--message="+name, name, sha)
}

// MoveTag points the existing annotated tag name at sha.
func (r *Repo) MoveTag(t testing.TB, name, sha string) {
	t.Helper()
	r.s.git(t, r.dir, "rev-parse", "--verify", "--quiet", "refs/tags/"+name)
	r.s.git(t, r.dir, "tag", "--force", "--annotate", "--message="+name, name, sha)
}

// LightweightTag creates (or moves) the lightweight tag name on sha.
func (r *Repo) LightweightTag(t testing.TB, name, sha string) {
	t.Helper()
	r.s.git(t, r.dir, "update-ref", "refs/tags/"+name, sha)
}

// Branch creates or moves branch name to sha (moving main back makes the commits
// after sha unreachable, unless a tag holds them).
func (r *Repo) Branch(t testing.TB, name, sha string) {
	t.Helper()
	r.s.git(t, r.dir, "update-ref", "refs/heads/"+name, sha)
}

// DeleteRef removes a ref (refs/tags/v1, refs/heads/feature).
func (r *Repo) DeleteRef(t testing.TB, ref string) {
	t.Helper()
	r.s.git(t, r.dir, "update-ref", "-d", ref)
}

// Resolve is what git says rev is in this repository (rev-parse, peeled to a commit).
func (r *Repo) Resolve(t testing.TB, rev string) string {
	t.Helper()
	return r.s.git(t, r.dir, "rev-parse", "--verify", rev+"^{commit}")
}

func (s *Server) git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	return s.gitEnv(t, dir, nil, args...)
}

func (s *Server) gitEnv(t testing.TB, dir string, env []string, args ...string) string {
	t.Helper()
	out, err := s.run(dir, env, args...)
	if err != nil {
		t.Fatalf("gitserver: git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// gitOK is git's output, or "" when it fails.
func (s *Server) gitOK(dir string, args ...string) string {
	out, err := s.run(dir, nil, args...)
	if err != nil {
		return ""
	}
	return out
}

func (s *Server) run(dir string, env []string, args ...string) (string, error) {
	return s.runInput(dir, env, nil, args...)
}

func (s *Server) runInput(dir string, env []string, stdin []byte, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Env = append(slices.Clone(s.env), env...)
	if dir != "" {
		cmd.Env = append(cmd.Env, "GIT_DIR="+dir)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// readRequestLine reads the git:// client's first pkt-line (its
// "git-upload-pack /repo" request), waiting at most 10 s.
func readRequestLine(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return
	}
	n, err := strconv.ParseUint(string(size[:]), 16, 16)
	if err != nil || n < 4 {
		return
	}
	_, _ = io.CopyN(io.Discard, conn, int64(n)-4)
}
