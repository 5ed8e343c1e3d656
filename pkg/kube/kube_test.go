package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

func TestClassify(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	refused := &url.Error{Op: "Get", URL: "https://10.0.0.1:6443/apis", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	tests := []struct {
		name     string
		err      error
		want     failure.Kind
		mentions []string
	}{
		{"forbidden", apierrors.NewForbidden(gr, "web", errors.New("no")), failure.Permanent, []string{"permission denied", `"patch"`, "deployments.apps/scale"}},
		{"unauthorized", apierrors.NewUnauthorized("bad token"), failure.Permanent, []string{"credentials"}},
		{"not found", apierrors.NewNotFound(gr, "web"), failure.Permanent, nil},
		{"invalid", apierrors.NewBadRequest("nope"), failure.Permanent, nil},
		{"conflict", apierrors.NewConflict(gr, "web", errors.New("modified")), failure.Transient, []string{"conflict"}},
		{"server timeout", apierrors.NewServerTimeout(gr, "patch", 2), failure.Transient, nil},
		{"timeout", apierrors.NewTimeoutError("slow", 1), failure.Transient, nil},
		{"too many requests", apierrors.NewTooManyRequests("busy", 1), failure.Transient, nil},
		{"unavailable", apierrors.NewServiceUnavailable("down"), failure.Transient, nil},
		{"internal", apierrors.NewInternalError(errors.New("etcd")), failure.Transient, nil},
		{"generic 502", apierrors.NewGenericServerResponse(502, "patch", gr, "web", "bad gateway", 0, false), failure.Transient, nil},
		{"connection refused", refused, failure.Transient, []string{"unreachable"}},
		{"wrapped refused", fmt.Errorf("listing: %w", refused), failure.Transient, nil},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, failure.Transient, nil},
		{"eof", fmt.Errorf("watch: %w", errors.New("x")), failure.Permanent, nil},
		{"deadline", context.DeadlineExceeded, failure.Transient, nil},
		{"already classified", failure.Usagef("bad flag"), failure.Usage, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Classify(tt.err, "patch", "deployments.apps/scale")
			if got := failure.KindOf(err); got != tt.want {
				t.Fatalf("kind %v, want %v (%v)", got, tt.want, err)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("the cause is not wrapped")
			}
			for _, m := range tt.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("%q does not mention %q", err, m)
				}
			}
		})
	}
	if Classify(nil, "get", "pods") != nil {
		t.Error("nil is not nil")
	}
}

// IsUnavailable is true exactly for what the API server may answer later: the
// transient kinds of Classify other than conflicts and context errors.
func TestIsUnavailable(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	tests := []struct {
		err  error
		want bool
	}{
		{apierrors.NewServiceUnavailable("down"), true},
		{apierrors.NewInternalError(errors.New("webhook")), true},
		{apierrors.NewTooManyRequests("busy", 1), true},
		{apierrors.NewGenericServerResponse(502, "patch", gr, "web", "bad gateway", 0, false), true},
		{fmt.Errorf("patch: %w", io.ErrUnexpectedEOF), true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{apierrors.NewConflict(gr, "web", errors.New("modified")), false},
		{apierrors.NewForbidden(gr, "web", errors.New("no")), false},
		{apierrors.NewNotFound(gr, "web"), false},
		{context.Canceled, false},
		{errors.New("something else"), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := IsUnavailable(tt.err); got != tt.want {
			t.Errorf("IsUnavailable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// MayHaveBeenMade: only a lost answer or a 504, never a refused connection or
// an answer that refused the change.
func TestMayHaveBeenMade(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	tests := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("patch: %w", io.ErrUnexpectedEOF), true},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{apierrors.NewTimeoutError("slow", 1), true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false},
		{apierrors.NewServiceUnavailable("down"), false},
		{apierrors.NewInternalError(errors.New("webhook")), false},
		{apierrors.NewConflict(gr, "web", errors.New("modified")), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := MayHaveBeenMade(tt.err); got != tt.want {
			t.Errorf("MayHaveBeenMade(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: abc}
contexts:
- name: one
  context: {cluster: c, user: u, namespace: team-a}
- name: two
  context: {cluster: c, user: u}
current-context: one
`

func TestConnectNamespace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		opts Options
		want string
	}{
		{Options{Kubeconfig: path}, "team-a"},
		{Options{Kubeconfig: path, Namespace: "shop"}, "shop"},
		{Options{Kubeconfig: path, Context: "two"}, "default"},
	}
	for _, tt := range tests {
		c, err := tt.opts.Connect("test")
		if err != nil {
			t.Fatal(err)
		}
		if c.Namespace != tt.want || c.Config.Host != "https://127.0.0.1:6443" || c.Config.QPS != DefaultQPS {
			t.Errorf("%+v: namespace %q host %q qps %v", tt.opts, c.Namespace, c.Config.Host, c.Config.QPS)
		}
	}
	if _, err := (&Options{Kubeconfig: path, Context: "nope"}).Connect("test"); failure.KindOf(err) != failure.Permanent {
		t.Errorf("unknown context: %v", err)
	}
}

func TestNoConfigIsPermanent(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "missing"))
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	_, err := (&Options{}).Connect("test")
	if failure.KindOf(err) != failure.Permanent || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Fatalf("%v", err)
	}
}

func TestValidate(t *testing.T) {
	for ns, ok := range map[string]bool{"": true, "shop": true, "Shop": false, "a_b": false} {
		err := (&Options{Namespace: ns}).Validate()
		if (err == nil) != ok || (err != nil && failure.KindOf(err) != failure.Usage) {
			t.Errorf("%q: %v", ns, err)
		}
	}
}

// TestRateLimiterWaitsOutTheDeadline: a request the rate limiter cannot let through
// before the context's deadline fails with context.DeadlineExceeded at the deadline
// (transient), not with the token bucket's early refusal (an error of no kind).
func TestRateLimiterWaitsOutTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := deadlineLimiter{flowcontrol.NewTokenBucketRateLimiter(1, 1)}
		if err := l.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := l.Wait(ctx) // the next token comes in 1 s
		if !errors.Is(err, context.DeadlineExceeded) || failure.KindOf(err) != failure.Transient {
			t.Errorf("err %v (kind %v), want the context's deadline, transient", err, failure.KindOf(err))
		}
		if waited := time.Since(start); waited != 100*time.Millisecond {
			t.Errorf("returned after %s, want at the deadline (100ms)", waited)
		}
		if err := l.Wait(t.Context()); err != nil { // no deadline: waits for the token
			t.Errorf("without a deadline: %v", err)
		}
	})
}
