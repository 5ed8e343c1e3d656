package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Binary is Debian's registry program (package docker-registry).
const Binary = "/usr/bin/docker-registry"

// Option configures Start.
type Option func(*Registry)

// WithHtpasswd makes the registry ask for basic authentication: user with password
// is the only account.
func WithHtpasswd(user, password string) Option {
	return func(r *Registry) { r.user, r.password = user, password }
}

// Fault is how FailNext makes a request fail.
type Fault int

const (
	// Unavailable answers 503 with the registry's error body (code UNAVAILABLE).
	Unavailable Fault = iota + 1
	// TooManyRequests answers 429 (code TOOMANYREQUESTS), as a rate limit does.
	TooManyRequests
	// Drop closes the connection without an answer.
	Drop
	// Truncate sends the real answer's headers and half of its body, then cuts the
	// connection.
	Truncate
	// Reflect answers 403 with a text body that repeats the request's headers,
	// Authorization included, as some proxies do: clients must mask it.
	Reflect
	// Stall never answers and keeps the connection open until the client gives up
	// (or the registry is closed).
	Stall
	// StallMidway sends the real answer's headers and half of its body, then
	// nothing, keeping the connection open until the client gives up.
	StallMidway
)

func (f Fault) String() string {
	switch f {
	case Unavailable:
		return "unavailable"
	case TooManyRequests:
		return "too-many-requests"
	case Drop:
		return "drop"
	case Truncate:
		return "truncate"
	case Reflect:
		return "reflect"
	case Stall:
		return "stall"
	case StallMidway:
		return "stall-midway"
	}
	return "none"
}

// Request is one request that reached the proxy.
type Request struct {
	Method, Path  string
	Status        int   // 0 when the connection was dropped
	Fault         Fault // the fault it met, 0 for none
	Authorization bool  // an Authorization header was sent (never its value)
}

// Registry is a running registry and its proxy.
type Registry struct {
	dir, storage   string
	user, password string
	backend        string // host:port of the registry process, loopback
	cmd            *exec.Cmd
	exited         chan struct{}
	ln             net.Listener
	srv            *http.Server
	proxy          *httputil.ReverseProxy

	mu        sync.Mutex
	log       bytes.Buffer
	faults    []pending
	requests  []Request
	stalling  int
	closeOnce sync.Once
}

type pending struct {
	f        Fault
	blobOnly bool
}

// Start runs a registry reached on addr ("127.0.0.1:0", or the cluster bridge's IP
// and port 0 so that pods reach it). It is stopped when the test ends.
func Start(t testing.TB, addr string, opts ...Option) *Registry {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("registry: %s is missing (Debian package docker-registry; run test/install-deps.sh): %v", Binary, err)
	}
	r := &Registry{dir: t.TempDir()}
	r.storage = filepath.Join(r.dir, "storage")
	for _, o := range opts {
		o(r)
	}
	var err error
	if r.ln, err = net.Listen("tcp", addr); err != nil {
		t.Fatalf("registry: listen on %s: %v", addr, err)
	}
	t.Cleanup(r.Close)
	if err := r.startProcess(); err != nil {
		t.Fatalf("registry: %v\n%s", err, r.Log())
	}
	target := &url.URL{Scheme: "http", Host: r.backend}
	r.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// The registry builds upload URLs from Host: clients keep talking
			// to the proxy.
			pr.Out.Host = pr.In.Host
		},
	}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: time.Minute}
	go func() { _ = r.srv.Serve(r.ln) }()
	return r
}

// startProcess writes the configuration and runs the registry on a free loopback
// port, until it answers /v2/. A port taken between the pick and the start is
// tried again with another.
func (r *Registry) startProcess() error {
	var last error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return err
		}
		r.backend = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := r.writeConfig(); err != nil {
			return err
		}
		cmd := exec.Command(Binary, "serve", filepath.Join(r.dir, "config.yml"))
		cmd.Dir = r.dir
		cmd.Env = []string{"HOME=" + r.dir, "PATH=/usr/bin:/bin"}
		cmd.Stdout = lockedWriter{r}
		cmd.Stderr = lockedWriter{r}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting %s: %w", Binary, err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		r.mu.Lock()
		r.cmd, r.exited = cmd, exited
		r.mu.Unlock()
		if last = r.waitReady(exited); last == nil {
			return nil
		}
		r.stopProcess()
	}
	return last
}

func (r *Registry) writeConfig() error {
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: %s
`, r.storage, r.backend, hex.EncodeToString(secret))
	if r.user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(r.password), bcrypt.MinCost)
		if err != nil {
			return err
		}
		htpasswd := filepath.Join(r.dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(r.user+":"+string(hash)+"\n"), 0o600); err != nil {
			return err
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: chartreuse-test\n    path: %s\n", htpasswd)
	}
	return os.WriteFile(filepath.Join(r.dir, "config.yml"), []byte(cfg), 0o600)
}

// waitReady polls /v2/ (200, or 401 with authentication) until the process
// answers, exits, or 30 s pass.
func (r *Registry) waitReady(exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.backend+"/v2/", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
			err = fmt.Errorf("GET /v2/ answered %d", resp.StatusCode)
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited during start-up", Binary)
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer within 30s: %v", Binary, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stopProcess ends the registry by its PID: SIGTERM, SIGKILL after 10 s.
func (r *Registry) stopProcess() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Close stops the proxy and the registry. Safe to call twice.
func (r *Registry) Close() {
	r.closeOnce.Do(func() {
		if r.srv != nil {
			_ = r.srv.Close()
		} else if r.ln != nil {
			_ = r.ln.Close()
		}
		r.stopProcess()
	})
}

// PID of the registry process, 0 when stopped.
func (r *Registry) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Host is the proxy's host:port, what clients use in references.
func (r *Registry) Host() string { return r.ln.Addr().String() }

// Ref is Host()/repo plus the tag or digest ("v1", "sha256:..."), or none.
func (r *Registry) Ref(repo, tagOrDigest string) string {
	switch {
	case tagOrDigest == "":
		return r.Host() + "/" + repo
	case strings.Contains(tagOrDigest, ":"):
		return r.Host() + "/" + repo + "@" + tagOrDigest
	}
	return r.Host() + "/" + repo + ":" + tagOrDigest
}

// Log is what the registry process wrote so far.
func (r *Registry) Log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

type lockedWriter struct{ r *Registry }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.log.Write(p)
}

// FailNext makes the next n requests through the proxy fail with f.
func (r *Registry) FailNext(n int, f Fault) { r.queue(n, pending{f: f}) }

// FailNextBlob makes the next n blob downloads (GET .../blobs/...) fail with f;
// the requests before them are served.
func (r *Registry) FailNextBlob(n int, f Fault) { r.queue(n, pending{f: f, blobOnly: true}) }

func (r *Registry) queue(n int, p pending) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for range n {
		r.faults = append(r.faults, p)
	}
}

// Requests are the requests that reached the proxy so far, oldest first.
func (r *Registry) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}

func (r *Registry) next(blob bool) Fault {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, p := range r.faults {
		if !p.blobOnly || blob {
			r.faults = slices.Delete(r.faults, i, i+1)
			return p.f
		}
	}
	return 0
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	rec := Request{Method: req.Method, Path: req.URL.Path, Authorization: req.Header.Get("Authorization") != ""}
	sw := &statusWriter{ResponseWriter: w}
	recorded := false
	record := func() {
		if recorded {
			return
		}
		recorded = true
		rec.Status = sw.status
		r.mu.Lock()
		r.requests = append(r.requests, rec)
		r.mu.Unlock()
	}
	defer record()
	blob := req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:")
	rec.Fault = r.next(blob)
	switch rec.Fault {
	case Unavailable:
		registryError(sw, http.StatusServiceUnavailable, "UNAVAILABLE", "injected fault: unavailable")
	case TooManyRequests:
		registryError(sw, http.StatusTooManyRequests, "TOOMANYREQUESTS", "injected fault: too many requests")
	case Drop:
		// Recorded before the connection closes: the client's next request
		// could otherwise be recorded first.
		record()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
	case Truncate:
		r.proxy.ServeHTTP(&truncatingWriter{statusWriter: sw}, req)
	case Stall:
		r.hold(req.Context().Done())
	case StallMidway:
		r.proxy.ServeHTTP(&truncatingWriter{statusWriter: sw, stall: func() { r.hold(req.Context().Done()) }}, req)
	case Reflect:
		var b strings.Builder
		fmt.Fprintf(&b, "Forbidden by policy.\nRequest: %s %s\n", req.Method, req.URL)
		for _, k := range slices.Sorted(maps.Keys(req.Header)) {
			for _, v := range req.Header[k] {
				fmt.Fprintf(&b, "%s: %s\n", k, v)
			}
		}
		http.Error(sw, b.String(), http.StatusForbidden)
	default:
		r.proxy.ServeHTTP(sw, req)
	}
}

// hold waits for done (the client went away, or Close), counted in Stalling.
func (r *Registry) hold(done <-chan struct{}) {
	r.mu.Lock()
	r.stalling++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.stalling--
		r.mu.Unlock()
	}()
	<-done
}

// Stalling is how many requests a stall fault (Stall, StallMidway) holds right
// now: a test waits for it before acting on the stalled client.
func (r *Registry) Stalling() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stalling
}

// registryError answers as the distribution registry does.
func registryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`+"\n", code, msg)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// truncatingWriter passes the headers and the first half of the body (by
// Content-Length), then (after stall, when set) aborts the handler, which cuts
// the connection.
type truncatingWriter struct {
	*statusWriter
	n     int64
	stall func()
}

func (t *truncatingWriter) Write(b []byte) (int, error) {
	size, err := strconv.ParseInt(t.Header().Get("Content-Length"), 10, 64)
	if err != nil || size < 2 {
		size = 2
	}
	half := size / 2
	if t.n+int64(len(b)) >= half {
		_, _ = t.statusWriter.Write(b[:half-t.n])
		_ = http.NewResponseController(t.statusWriter.ResponseWriter).Flush()
		if t.stall != nil {
			t.stall()
		}
		panic(http.ErrAbortHandler)
	}
	t.n += int64(len(b))
	return t.statusWriter.Write(b)
}
