package registry_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

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
