package gitsource

import (
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// maxErrorBody is how much of a failed HTTP answer is read: go-git reads all of
// it into its error message, and a server (or a proxy's error page) can send
// megabytes, or never end.
const maxErrorBody = 512

// guard is the HTTP client's transport: it reads at most maxErrorBody of an
// answer that is not a success, refuses a success that is not smart git's, and
// notes a redirect to another host (go-git sends no credentials there, which the
// messages then say).
type guard struct {
	next http.RoundTripper

	mu        sync.Mutex
	elsewhere string // where a redirect to another host went
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := g.next.RoundTrip(req)
	if err != nil {
		return res, err
	}
	if loc, lerr := res.Location(); lerr == nil && res.StatusCode >= 300 && res.StatusCode <= 399 && !strings.EqualFold(origin(loc), origin(req.URL)) {
		g.mu.Lock()
		g.elsewhere = loc.Scheme + "://" + loc.Host
		g.mu.Unlock()
	}
	if res.StatusCode == http.StatusForbidden && res.Header.Get("Retry-After") != "" {
		// A rate limit (GitHub's secondary one answers so), not a refusal:
		// go-git would make it ErrAuthorizationFailed.
		_ = res.Body.Close()
		return nil, &rateLimitError{retryAfter: res.Header.Get("Retry-After")}
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		res.Body = limitedBody{io.LimitReader(res.Body, maxErrorBody), res.Body}
		res.ContentLength = -1
		return res, nil
	}
	if want := smartType(req); want != "" {
		got, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
		if !strings.EqualFold(got, want) {
			_ = res.Body.Close()
			return nil, &notGitError{got: res.Header.Get("Content-Type")}
		}
	}
	return res, nil
}

// smartType is the Content-Type git's smart HTTP protocol gives the answer to req
// (git's own client checks it too), "" for requests it does not know.
func smartType(req *http.Request) string {
	switch {
	case req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/info/refs"):
		return "application/x-" + req.URL.Query().Get("service") + "-advertisement"
	case req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/git-upload-pack"):
		return "application/x-git-upload-pack-result"
	}
	return ""
}

// origin is u's host and port, the port spelled out.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// redirected says where a redirect to another host went, "" when none did.
func (g *guard) redirected() string {
	if g == nil {
		return ""
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.elsewhere
}

type limitedBody struct {
	io.Reader
	io.Closer
}

// notGitError: the server answered, but not as a smart git server (a web page,
// a captive portal, a dumb HTTP server). Permanent: check the URL.
type notGitError struct{ got string }

func (e *notGitError) Error() string {
	got := e.got
	if got == "" {
		got = "none"
	}
	return fmt.Sprintf("the server's answer is not git's (Content-Type %.80q): check that the URL is the repository's clone URL; servers of git's dumb HTTP protocol are not supported", got)
}

// rateLimitError: 403 with Retry-After, a rate limit. Transient.
type rateLimitError struct{ retryAfter string }

func (e *rateLimitError) Error() string {
	return fmt.Sprintf("the server answered 403 with Retry-After %.40q: rate limited, try again later", e.retryAfter)
}
