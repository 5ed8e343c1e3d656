package ocisource_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/ocisource"
)

const token = "idt-Vb9wQ4-3f6a-not-for-print"

func TestLoadAuth(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	good := dockerConfig("registry.example.com:5000", user, password)
	for _, tc := range []struct {
		name      string
		files     map[string]string // nil: no directory
		anonymous bool
		shown     string // what String shows
	}{
		{"no directory", nil, true, "ocisource.Auth{anonymous}"},
		{"empty directory", map[string]string{}, true, "ocisource.Auth{anonymous}"},
		{"empty file", map[string]string{".dockerconfigjson": "\n"}, true, "ocisource.Auth{.dockerconfigjson: []}"},
		{"no entries", map[string]string{".dockerconfigjson": `{"auths":{}}`}, true, "ocisource.Auth{.dockerconfigjson: []}"},
		{"dockerconfigjson", map[string]string{".dockerconfigjson": good}, false, "ocisource.Auth{.dockerconfigjson: [registry.example.com:5000]}"},
		{"dockerconfigjson wins over config.json", map[string]string{".dockerconfigjson": good, "config.json": `{"auths":{"other.example.com":{"auth":"` + b64 + `"}}}`},
			false, "ocisource.Auth{.dockerconfigjson: [registry.example.com:5000]}"},
		{"config.json", map[string]string{"config.json": `{"auths":{"https://index.docker.io/v1/":{"auth":"` + b64 + `"}},"credsStore":"desktop"}`},
			false, "ocisource.Auth{config.json: [index.docker.io/v1]}"},
		{"dockercfg", map[string]string{".dockercfg": `{"quay.io":{"auth":"` + b64 + `","email":"a@b"}}`}, false, "ocisource.Auth{.dockercfg: [quay.io]}"},
		{"identity token", map[string]string{".dockerconfigjson": `{"auths":{"ghcr.io":{"username":"x","identitytoken":"` + token + `"}}}`}, false, "ocisource.Auth{.dockerconfigjson: [ghcr.io]}"},
		{"several, sorted", map[string]string{".dockerconfigjson": `{"auths":{"b.example":{"auth":"` + b64 + `"},"a.example/team":{"password":"` + password + `"}}}`},
			false, "ocisource.Auth{.dockerconfigjson: [a.example/team b.example]}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "absent")
			if tc.files != nil {
				dir = secretDir(t, tc.files)
			}
			a, err := ocisource.LoadAuth(dir)
			if err != nil {
				t.Fatalf("LoadAuth: %v", err)
			}
			if a.Anonymous() != tc.anonymous {
				t.Errorf("Anonymous() = %v, want %v", a.Anonymous(), tc.anonymous)
			}
			if got := a.String(); got != tc.shown {
				t.Errorf("String() = %q, want %q", got, tc.shown)
			}
			notPrinted(t, a)
		})
	}
	t.Run("empty dir argument", func(t *testing.T) {
		if a, err := ocisource.LoadAuth(""); err != nil || !a.Anonymous() {
			t.Fatalf("LoadAuth(\"\") = %v, %v", a, err)
		}
	})
	t.Run("other keys only", func(t *testing.T) {
		// a git Secret given as the registry's (empty volume: the table above)
		_, err := ocisource.LoadAuth(secretDir(t, map[string]string{"username": "deploy", "password": password}))
		expectErr(t, err, failure.CodeUsage, ocisource.ErrInvalidAuth, "the Secret has the keys password, username but none of .dockerconfigjson", "kubectl create secret docker-registry")
		if err != nil && strings.Contains(err.Error(), password) {
			t.Errorf("the password is in the error: %v", err)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, ".dockerconfigjson"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := ocisource.LoadAuth(dir)
		expectErr(t, err, failure.CodePermanent, nil, "reading registry credentials")
	})
}

// A Secret that cannot be used is a usage error naming the key and the entry,
// never a value.
func TestLoadAuthInvalid(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	for _, tc := range []struct {
		name, key, content string
		parts              []string
	}{
		{"not JSON", ".dockerconfigjson", `{"auths":{"h":{"password":"` + password + `"`, []string{"not a JSON object (at byte"}},
		{"not JSON, the password first", ".dockerconfigjson", password, []string{"not a JSON object"}},
		{"auths not an object", ".dockerconfigjson", `{"auths":["` + password + `"]}`, []string{`"auths" is not a JSON object`}},
		{"entry not an object", ".dockerconfigjson", `{"auths":{"h.example":"` + password + `"}}`, []string{`entry for "h.example" is not an object`}},
		{"password a number", ".dockerconfigjson", `{"auths":{"h.example":{"password":12345}}}`, []string{`entry for "h.example"`}},
		{"auth not base64", ".dockerconfigjson", `{"auths":{"h.example":{"auth":"` + password + `!"}}}`, []string{`"auth" is not base64`}},
		{"auth without a colon", ".dockerconfigjson", `{"auths":{"h.example":{"auth":"` + base64.StdEncoding.EncodeToString([]byte(password)) + `"}}}`, []string{"not base64 of user:password"}},
		{"no credentials", ".dockerconfigjson", `{"auths":{"h.example":{"username":"u"}}}`, []string{`entry for "h.example": it has no "password"`}},
		{"no host", ".dockerconfigjson", `{"auths":{"https://":{"auth":"` + b64 + `"}}}`, []string{"no registry host"}},
		{"credential helpers only", "config.json", `{"credsStore":"desktop","credHelpers":{"gcr.io":"gcloud"}}`, []string{"credential helpers"}},
		{"dockercfg entry not an object", ".dockercfg", `{"h.example":["` + password + `"]}`, []string{"Secret key .dockercfg", `entry for "h.example"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ocisource.LoadAuth(secretDir(t, map[string]string{tc.key: tc.content}))
			expectErr(t, err, failure.CodeUsage, ocisource.ErrInvalidAuth, append([]string{"Secret key " + tc.key}, tc.parts...)...)
		})
	}
}

// notPrinted fails if any way of printing v shows a credential.
func notPrinted(t *testing.T, v any) {
	t.Helper()
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	texts := []string{string(js)}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x", "%T"} {
		texts = append(texts, fmt.Sprintf(verb, v))
	}
	for _, s := range texts {
		for _, secret := range append(secretForms(), token, fmt.Sprintf("%x", password)) {
			if strings.Contains(s, secret) {
				t.Fatalf("a credential shows in %q", s)
			}
		}
	}
}

func TestAuthNeverPrinted(t *testing.T) {
	a, err := ocisource.LoadAuth(secretDir(t, map[string]string{".dockerconfigjson": `{"auths":{"h.example":{"username":"` + user + `","password":"` + password + `","identitytoken":"` + token + `","registrytoken":"` + token + `"}}}`}))
	if err != nil {
		t.Fatal(err)
	}
	img := ocisource.Image{Ref: "h.example/app:v1", Auth: a}
	for _, v := range []any{a, &a, img, &img, []ocisource.Image{img}, map[string]any{"auth": a}} {
		notPrinted(t, v)
	}
}

// Bad references, digests and directories are usage errors (2), found before
// any connection (the hosts here do not exist).
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	digest := "sha256:" + strings.Repeat("0", 64)
	for _, ref := range []string{
		"",
		" registry.invalid/app:v1",
		"registry.invalid/app:v1\n",
		"https://registry.invalid/app:v1",
		"registry.invalid/App:v1",
		"registry.invalid/app:v1:v2",
		"registry.invalid/app:" + strings.Repeat("t", 129),
		"registry.invalid/app@sha256:abc",
		"registry.invalid/app@md5:" + strings.Repeat("0", 32),
		"registry.invalid/app@" + strings.Repeat("0", 64),
		"registry.invalid:port/app:v1",
	} {
		t.Run("ref "+ref, func(t *testing.T) {
			img := ocisource.Image{Ref: ref}
			expectErr(t, img.Validate(), failure.CodeUsage, ocisource.ErrInvalidReference)
			_, err := img.Resolve(ctx)
			expectErr(t, err, failure.CodeUsage, ocisource.ErrInvalidReference)
			_, err = img.Fetch(ctx, digest, "migrations", t.TempDir())
			expectErr(t, err, failure.CodeUsage, ocisource.ErrInvalidReference)
		})
	}
	img := ocisource.Image{Ref: "registry.invalid/app:v1"}
	for _, d := range []string{"", "v1", "sha256:abc", strings.Repeat("0", 64), "sha256:" + strings.Repeat("A", 64), "sha512:" + strings.Repeat("0", 128)} {
		t.Run("digest "+d, func(t *testing.T) {
			_, err := img.Fetch(ctx, d, "migrations", t.TempDir())
			expectErr(t, err, failure.CodeUsage, ocisource.ErrInvalidReference, "Fetch takes the digest Resolve returned")
		})
	}
	for _, dir := range []string{"..", "../migrations", "migrations/..", "/a/../../b"} {
		t.Run("directory "+dir, func(t *testing.T) {
			_, err := img.Fetch(ctx, digest, dir, t.TempDir())
			expectErr(t, err, failure.CodeUsage, ocisource.ErrInvalidReference, "without ..")
		})
	}
	t.Run("valid", func(t *testing.T) {
		for _, ref := range []string{"busybox", "registry.invalid:5000/team/app:v1.2-rc_3", "registry.invalid/app@" + digest, "localhost/app:v1@" + digest} {
			if err := (ocisource.Image{Ref: ref}).Validate(); err != nil {
				t.Errorf("Validate(%q): %v", ref, err)
			}
		}
	})
}

// Credentials typed into the reference as into a URL (user:password@host/...,
// token@host/...) are a usage error that names them and never shows them: the
// reference is printed in messages and logs.
func TestCredentialsInReference(t *testing.T) {
	ctx := context.Background()
	digest := "sha256:" + strings.Repeat("0", 64)
	for _, ref := range []string{
		user + ":" + password + "@registry.invalid/app:v1",
		user + ":" + password + "@registry.invalid:5000/team/app@" + digest,
		password + "@registry.invalid/app",
		user + ":" + password + "@registry.invalid:5000",
		"https://" + user + ":" + password + "@registry.invalid/app:v1",
		"oci://" + password + "@registry.invalid/app:v1",
	} {
		t.Run(strings.ReplaceAll(ref, password, "PASSWORD"), func(t *testing.T) {
			img := ocisource.Image{Ref: ref}
			expectErr(t, img.Validate(), failure.CodeUsage, ocisource.ErrInvalidReference, "credentials", "registry.invalid")
			_, err := img.Resolve(ctx)
			expectErr(t, err, failure.CodeUsage, ocisource.ErrInvalidReference, "credentials")
			_, err = img.Fetch(ctx, digest, "migrations", t.TempDir())
			expectErr(t, err, failure.CodeUsage, ocisource.ErrInvalidReference, "credentials")
		})
	}
	// A digest after a short Docker Hub name is no credential.
	err := ocisource.Image{Ref: "ubuntu@sha256:abc"}.Validate()
	expectErr(t, err, failure.CodeUsage, ocisource.ErrInvalidReference, "ubuntu@sha256:abc")
	if strings.Contains(err.Error(), "credentials") {
		t.Errorf("a short digest is taken for credentials: %v", err)
	}
}

// A cancelled context is transient (the step was interrupted; a rerun can finish).
func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	img := ocisource.Image{Ref: "127.0.0.1:9/app:v1"}
	_, err := img.Resolve(ctx)
	expectErr(t, err, failure.CodeTransient, context.Canceled)
	_, err = img.Fetch(ctx, "sha256:"+strings.Repeat("0", 64), "migrations", t.TempDir())
	expectErr(t, err, failure.CodeTransient, context.Canceled)
}
