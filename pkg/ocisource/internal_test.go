package ocisource

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// Plain http goes out only with Insecure or to a loopback host; the refusal comes
// before any connection.
func TestSchemeGuard(t *testing.T) {
	for _, tc := range []struct {
		url      string
		insecure bool
		sent     bool
	}{
		{"https://10.1.2.3/v2/", false, true},
		{"http://10.1.2.3/v2/", false, false},
		{"http://registry.example.com:5000/v2/", false, false},
		{"http://registry.local/v2/", false, false},
		{"http://10.1.2.3/v2/", true, true},
		{"http://127.0.0.1:5000/v2/", false, true},
		{"http://127.8.9.10:5000/v2/", false, true},
		{"http://localhost:5000/v2/", false, true},
		{"http://[::1]:5000/v2/", false, true},
	} {
		t.Run(fmt.Sprintf("%s insecure=%v", tc.url, tc.insecure), func(t *testing.T) {
			sent := false
			g := &schemeGuard{insecure: tc.insecure, inner: roundTripper(func(*http.Request) (*http.Response, error) {
				sent = true
				return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
			})}
			req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
			_, err := g.RoundTrip(req)
			if sent != tc.sent {
				t.Fatalf("sent = %v, want %v (err %v)", sent, tc.sent, err)
			}
			var pe *plainHTTPError
			if !tc.sent && !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *plainHTTPError", err)
			}
		})
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// multi is what go-containerregistry's ping returns when https and then http
// both failed.
type multi []error

func (m multi) Error() string { return fmt.Sprint([]error(m)) }
func (m multi) As(target any) bool {
	for _, e := range m {
		if errors.As(e, target) {
			return true
		}
	}
	return false
}
func (m multi) Is(target error) bool {
	for _, e := range m {
		if errors.Is(e, target) {
			return true
		}
	}
	return false
}

func TestClassifyPlainHTTP(t *testing.T) {
	refused := &plainHTTPError{host: "10.1.2.3:5000"}
	i := Image{Ref: "10.1.2.3:5000/app:v1"}
	err := i.classify(context.Background(), "resolving", "10.1.2.3:5000", "app",
		multi{errors.New("http: server gave HTTP response to HTTPS client"), refused})
	if !errors.Is(err, ErrPlainHTTP) || failure.Code(err) != failure.CodePermanent {
		t.Fatalf("https answered in plain text, http refused: %v (exit %d), want ErrPlainHTTP, exit 1", err, failure.Code(err))
	}
	err = i.classify(context.Background(), "resolving", "10.1.2.3:5000", "app", multi{syscall.ECONNREFUSED, refused})
	if errors.Is(err, ErrPlainHTTP) || failure.Code(err) != failure.CodeTransient {
		t.Fatalf("nothing listening, http refused: %v (exit %d), want transient", err, failure.Code(err))
	}
}

// The entry for a repository: its registry's, the longest repository prefix
// first; Docker Hub under any of its names.
func TestMatch(t *testing.T) {
	a, err := parseAuth(KeyDockerConfigJSON, []byte(`{"auths":{
		"https://index.docker.io/v1/": {"username": "hub", "password": "p"},
		"registry.example.com": {"username": "all", "password": "p"},
		"registry.example.com/team": {"username": "team", "password": "p"},
		"registry.example.com/team/app": {"username": "app", "password": "p"},
		"http://Registry.Example.com:5000/": {"username": "port", "password": "p"}
	}}`))
	if err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]string{
		"busybox":                            "hub",
		"docker.io/library/busybox":          "hub",
		"registry-1.docker.io/team/x":        "hub",
		"registry.example.com/other/x":       "all",
		"registry.example.com/team":          "team",
		"registry.example.com/team/x":        "team",
		"registry.example.com/teamx":         "all",
		"registry.example.com/team/app":      "app",
		"registry.example.com/team/app/sub":  "app",
		"registry.example.com:5000/team/app": "port",
		"registry.example.com:5001/team/app": "",
		"other.example.com/team/app":         "",
		"sub.registry.example.com/team/app":  "",
	} {
		repo, err := name.NewRepository(ref)
		if err != nil {
			t.Fatal(err)
		}
		e, ok := a.match(repo)
		if got := e.cfg.Username; got != want || ok != (want != "") {
			t.Errorf("match(%s) = %q, %v; want %q", ref, got, ok, want)
		}
	}
}
