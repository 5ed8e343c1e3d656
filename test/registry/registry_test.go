package registry_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/chartreuse-go/chartreuse/test/registry"
)

func start(t *testing.T, opts ...registry.Option) *registry.Registry {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a registry (not with -short)")
	}
	return registry.Start(t, "127.0.0.1:0", opts...)
}

func get(t *testing.T, ref string, auth authn.Authenticator) error {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithAuth(auth), remote.WithContext(context.Background()),
		remote.WithRetryPredicate(func(error) bool { return false }), remote.WithRetryStatusCodes())
	if err != nil {
		return err
	}
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			return err
		}
		rc.Close()
	}
	return nil
}

func status(err error) int {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode
	}
	return 0
}

// The registry serves what Push wrote, through the proxy, and asks for the
// htpasswd account when it has one.
func TestPushPullAuth(t *testing.T) {
	r := start(t, registry.WithHtpasswd("puller", "pw-Kq3-secret"))
	d := r.Push(t, "app/migrations", "v1", map[string]string{"migrations/001.sql": "select 1;"})
	for _, ref := range []string{r.Ref("app/migrations", "v1"), r.Ref("app/migrations", d)} {
		if err := get(t, ref, &authn.Basic{Username: "puller", Password: "pw-Kq3-secret"}); err != nil {
			t.Fatalf("pull %s: %v\n%s", ref, err, r.Log())
		}
		if err := get(t, ref, authn.Anonymous); status(err) != http.StatusUnauthorized {
			t.Fatalf("anonymous pull %s: %v, want 401", ref, err)
		}
		if err := get(t, ref, &authn.Basic{Username: "puller", Password: "wrong"}); status(err) != http.StatusUnauthorized {
			t.Fatalf("wrong password pull %s: %v, want 401", ref, err)
		}
	}
	for _, req := range r.Requests() {
		t.Logf("%s %s %d auth=%v", req.Method, req.Path, req.Status, req.Authorization)
	}
}

// Each fault is what a client meets, once, and is recorded.
func TestFaults(t *testing.T) {
	r := start(t)
	r.Push(t, "app", "v1", map[string]string{"a": "b"})
	client := &http.Client{}
	for _, tc := range []struct {
		fault  registry.Fault
		status int // 0: no answer
	}{
		{registry.Unavailable, http.StatusServiceUnavailable},
		{registry.TooManyRequests, http.StatusTooManyRequests},
		{registry.Reflect, http.StatusForbidden},
		{registry.Drop, 0},
	} {
		t.Run(tc.fault.String(), func(t *testing.T) {
			r.FailNext(1, tc.fault)
			for n, want := range []int{tc.status, http.StatusOK} {
				req, _ := http.NewRequest(http.MethodGet, "http://"+r.Host()+"/v2/app/manifests/v1", nil)
				req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
				resp, err := client.Do(req)
				got := 0
				if err == nil {
					got = resp.StatusCode
					resp.Body.Close()
				}
				if got != want {
					t.Fatalf("request %d: status %d (%v), want %d", n+1, got, err, want)
				}
			}
			// Found by its fault, not its place: the second request's record
			// may land a moment after its answer did.
			i := slices.IndexFunc(r.Requests(), func(q registry.Request) bool { return q.Fault == tc.fault })
			if i < 0 || r.Requests()[i].Status != tc.status {
				t.Fatalf("no record of the %s fault with status %d: %+v", tc.fault, tc.status, r.Requests())
			}
		})
	}
	t.Run("blob only, cut halfway", func(t *testing.T) {
		layer := registry.Layer(t, map[string]string{"big": strings.Repeat("x", 1<<20)}, tarball.WithCompressionLevel(0))
		r.PushImage(t, "app", "big", registry.Image(t, layer))
		d, _ := layer.Digest()
		r.FailNextBlob(1, registry.Truncate)
		resp, err := client.Get("http://" + r.Host() + "/v2/app/manifests/big") // not a blob: served
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for n, cut := range []bool{true, false} {
			resp, err := client.Get("http://" + r.Host() + "/v2/app/blobs/" + d.String())
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			size, _ := layer.Size()
			if got := errors.Is(err, io.ErrUnexpectedEOF); got != cut || (!cut && int64(len(b)) != size) {
				t.Fatalf("blob request %d: %d of %d bytes, %v; want cut: %v", n+1, len(b), size, err, cut)
			}
		}
	})
}
