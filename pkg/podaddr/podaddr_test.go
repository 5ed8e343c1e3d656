package podaddr

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Sessions whose address names no pod are said to be so without asking anyone.
func TestDescribeWithoutLookup(t *testing.T) {
	f := &Finder{Unavailable: "not running in a Kubernetes pod (no KUBERNETES_SERVICE_HOST)"}
	ctx := context.Background()
	for addr, want := range map[string]string{
		"":          "connected over a Unix socket, on the database server's own host: no pod",
		"127.0.0.1": "connected from 127.0.0.1, on the database server's own host: no pod",
		"::1":       "connected from ::1, on the database server's own host: no pod",
		"10.1.2.3":  "connected from 10.1.2.3; its pod was not looked up: not running in a Kubernetes pod (no KUBERNETES_SERVICE_HOST)",
	} {
		if got := f.Describe(ctx, addr, time.Time{}); got != want {
			t.Errorf("Describe(%q) = %q, want %q", addr, got, want)
		}
	}
	var none *Finder
	if got := none.Describe(ctx, "10.1.2.3", time.Time{}); !strings.Contains(got, "not looked up: no Kubernetes access") {
		t.Errorf("nil Finder: %q", got)
	}
}

// InCluster says what is missing instead of failing.
func TestInClusterUnavailable(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if f := InCluster(t.TempDir()); !strings.Contains(f.Unavailable, "not running in a Kubernetes pod") {
		t.Errorf("outside a pod: %q", f.Unavailable)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	dir := t.TempDir()
	if f := InCluster(dir); !strings.Contains(f.Unavailable, "no ServiceAccount token") {
		t.Errorf("no token: %q", f.Unavailable)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("t"), 0o600); err != nil {
		t.Fatal(err)
	}
	if f := InCluster(dir); !strings.Contains(f.Unavailable, "namespace is unknown") {
		t.Errorf("no namespace: %q", f.Unavailable)
	}
	if err := os.WriteFile(filepath.Join(dir, "namespace"), []byte("shop\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if f := InCluster(dir); !strings.Contains(f.Unavailable, "CA certificate is missing") {
		t.Errorf("no CA: %q", f.Unavailable)
	}
}

// An API server that accepts the connection and never answers costs the timeout,
// not more, and the message says so; one that refuses the connection is told at once.
func TestLookupNeverBlocksLong(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	f := &Finder{BaseURL: "http://" + l.Addr().String(), HTTP: &httpClientNoProxy, Namespace: "shop", Timeout: 300 * time.Millisecond}
	start := time.Now()
	got := f.Describe(context.Background(), "10.1.2.3", time.Time{})
	t.Logf("silent API server: %s after %s", got, time.Since(start).Round(time.Millisecond))
	if !strings.Contains(got, "its pod could not be looked up: the Kubernetes API did not answer within 300ms") {
		t.Errorf("silent API server: %q", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := f.Describe(ctx, "10.1.2.3", time.Time{}); !strings.Contains(got, "the lookup was stopped before the Kubernetes API answered") {
		t.Errorf("cancelled: %q", got)
	}

	addr := l.Addr().String()
	l.Close()
	f.BaseURL = "http://" + addr
	if got := f.Describe(context.Background(), "10.1.2.3", time.Time{}); !strings.Contains(got, "the Kubernetes API cannot be reached") {
		t.Errorf("closed port: %q", got)
	}
}

func TestDescribeNamesThePod(t *testing.T) {
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	before, after := started.Add(-time.Hour), started.Add(time.Hour)
	for _, tt := range []struct {
		name string
		pods []Pod
		want string
	}{
		{"running", []Pod{{Name: "wf-migrate-1", Created: before, Phase: "Running"}}, "connected from 10.0.0.7, pod wf-migrate-1 (namespace shop)"},
		{"ended", []Pod{{Name: "wf-migrate-1", Created: before, Phase: "Failed"}}, "pod wf-migrate-1 (Failed: its containers have stopped, so the session is left over)"},
		{"deleting", []Pod{{Name: "wf-migrate-1", Created: before, Phase: "Running", Deleting: true}}, "pod wf-migrate-1 (being deleted)"},
		{"none", nil, "no pod in namespace shop has that address: the pod that opened the session no longer exists"},
		{"address given again", []Pod{{Name: "newer", Created: after, Phase: "Running"}}, "which now belongs to pod newer (namespace shop), created after that session began: the pod that opened the session no longer exists"},
		{"node address", []Pod{{Name: "kube-proxy-x", HostNetwork: true, Phase: "Running"}}, "a node's address"},
	} {
		if got := describe("10.0.0.7", "shop", tt.pods, started); !strings.Contains(got, tt.want) {
			t.Errorf("%s: %q, want it to contain %q", tt.name, got, tt.want)
		}
	}
}

var httpClientNoProxy = http.Client{Transport: &http.Transport{Proxy: nil}}
