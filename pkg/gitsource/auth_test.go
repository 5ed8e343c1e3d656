package gitsource

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

const secret = "tok-Zq8vN3xW-7d1f-not-for-print"

// newKey returns an ed25519 key as PEM (encrypted with passphrase when set) and
// its signer.
func newKey(t *testing.T, passphrase string) ([]byte, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase != "" {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	} else {
		block, err = ssh.MarshalPrivateKey(priv, "")
	}
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), signer
}

func knownHostsLine(hostport string, key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(hostport)}, key) + "\n"
}

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range files {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadAuth(t *testing.T) {
	key, host := newKey(t, "")
	encrypted, _ := newKey(t, "pass phrase")
	kh := knownHostsLine("git.example.com:22", host.PublicKey())
	for _, tc := range []struct {
		name  string
		dir   func(t *testing.T) string
		want  Auth
		code  int // 0: no error
		parts []string
	}{
		{name: "no directory given", dir: func(*testing.T) string { return "" }},
		{name: "missing directory", dir: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }},
		{name: "empty directory", dir: func(t *testing.T) string { return t.TempDir() }},
		{name: "kubernetes projection files only", dir: func(t *testing.T) string {
			return writeDir(t, map[string]string{"..data": "", "unrelated": "x"})
		}},
		{name: "token with newline", dir: func(t *testing.T) string {
			return writeDir(t, map[string]string{"token": secret + "\n"})
		}, want: Auth{Token: secret, tokenKey: KeyToken}},
		{name: "basic-auth Secret", dir: func(t *testing.T) string {
			return writeDir(t, map[string]string{"username": " ci\n", "password": secret})
		}, want: Auth{Username: "ci", Token: secret, tokenKey: KeyPassword}},
		{name: "token wins over password", dir: func(t *testing.T) string {
			return writeDir(t, map[string]string{"token": secret, "password": "other"})
		}, want: Auth{Token: secret, tokenKey: KeyToken}},
		{name: "ssh key and known_hosts", dir: func(t *testing.T) string {
			return writeDir(t, map[string]string{"ssh-privatekey": string(key), "known_hosts": kh})
		}, want: Auth{SSHKey: key, KnownHosts: []byte(kh)}},
		{name: "encrypted key and passphrase", dir: func(t *testing.T) string {
			return writeDir(t, map[string]string{"ssh-privatekey": string(encrypted), "ssh-passphrase": "pass phrase\n", "known_hosts": kh})
		}, want: Auth{SSHKey: encrypted, SSHPassphrase: "pass phrase", KnownHosts: []byte(kh)}},
		{name: "key without known_hosts", dir: func(t *testing.T) string {
			return writeDir(t, map[string]string{"ssh-privatekey": string(key)})
		}, code: failure.CodeUsage, parts: []string{"known_hosts", "ssh-keyscan"}},
		{name: "key with empty known_hosts", dir: func(t *testing.T) string {
			return writeDir(t, map[string]string{"ssh-privatekey": string(key), "known_hosts": "\n"})
		}, code: failure.CodeUsage, parts: []string{"known_hosts"}},
		{name: "encrypted key without passphrase", dir: func(t *testing.T) string {
			return writeDir(t, map[string]string{"ssh-privatekey": string(encrypted), "known_hosts": kh})
		}, code: failure.CodeUsage, parts: []string{"ssh-privatekey", "passphrase"}},
		{name: "wrong passphrase", dir: func(t *testing.T) string {
			return writeDir(t, map[string]string{"ssh-privatekey": string(encrypted), "ssh-passphrase": secret, "known_hosts": kh})
		}, code: failure.CodeUsage, parts: []string{"ssh-privatekey"}},
		{name: "not a key", dir: func(t *testing.T) string {
			return writeDir(t, map[string]string{"ssh-privatekey": secret, "known_hosts": kh})
		}, code: failure.CodeUsage, parts: []string{"ssh-privatekey"}},
		{name: "malformed known_hosts", dir: func(t *testing.T) string {
			return writeDir(t, map[string]string{"ssh-privatekey": string(key), "known_hosts": "git.example.com ssh-ed25519 !!!\n"})
		}, code: failure.CodeUsage, parts: []string{"known_hosts"}},
		{name: "username without token", dir: func(t *testing.T) string {
			return writeDir(t, map[string]string{"username": "ci"})
		}, code: failure.CodeUsage, parts: []string{"username", "token"}},
		{name: "passphrase without key", dir: func(t *testing.T) string {
			return writeDir(t, map[string]string{"ssh-passphrase": secret})
		}, code: failure.CodeUsage, parts: []string{"ssh-passphrase"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadAuth(tc.dir(t))
			if tc.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) || got.Username != tc.want.Username || got.Token != tc.want.Token ||
					got.tokenKey != tc.want.tokenKey || string(got.SSHKey) != string(tc.want.SSHKey) ||
					got.SSHPassphrase != tc.want.SSHPassphrase || string(got.KnownHosts) != string(tc.want.KnownHosts) {
					t.Fatalf("LoadAuth = %+v (token %q from %q), want %+v", got, got.Token, got.tokenKey, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want exit %d", tc.code)
			}
			if failure.Code(err) != tc.code || !errors.Is(err, ErrInvalidAuth) {
				t.Errorf("exit %d (want %d), ErrInvalidAuth %v: %v", failure.Code(err), tc.code, errors.Is(err, ErrInvalidAuth), err)
			}
			for _, p := range tc.parts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error lacks %q: %v", p, err)
				}
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "pass phrase") {
				t.Fatalf("a secret shows in the error: %v", err)
			}
		})
	}
}

// The credentials must fit the URL: none is silently left unused.
func TestAuthMethod(t *testing.T) {
	key, host := newKey(t, "")
	sshAuthOK := Auth{SSHKey: key, KnownHosts: []byte(knownHostsLine("git.example.com:22", host.PublicKey()))}
	both := sshAuthOK
	both.Token = secret
	for _, tc := range []struct {
		name, url string
		auth      Auth
		want      string // go-git's method name; "" none
		code      int
	}{
		{"anonymous https", "https://git.example.com/a.git", Auth{}, "", 0},
		{"token https", "https://git.example.com/a.git", Auth{Token: secret}, "http-basic-auth", 0},
		{"key https", "https://git.example.com/a.git", sshAuthOK, "", failure.CodeUsage},
		{"token and key https", "https://git.example.com/a.git", both, "http-basic-auth", 0},
		{"token and key ssh", "git@git.example.com:org/a.git", both, "ssh-public-keys", 0},
		{"key ssh", "git@git.example.com:org/a.git", sshAuthOK, "ssh-public-keys", 0},
		{"key ssh://", "ssh://git.example.com/org/a.git", sshAuthOK, "ssh-public-keys", 0},
		{"key ssh other host", "git@other.example.com:org/a.git", sshAuthOK, "", failure.CodeUsage},
		{"key ssh other port", "ssh://git@git.example.com:2222/org/a.git", sshAuthOK, "", failure.CodeUsage},
		{"token ssh", "git@git.example.com:org/a.git", Auth{Token: secret}, "", failure.CodeUsage},
		{"nothing ssh", "git@git.example.com:org/a.git", Auth{}, "", failure.CodeUsage},
		{"token git://", "git://git.example.com/a.git", Auth{Token: secret}, "", failure.CodeUsage},
		{"anonymous git://", "git://git.example.com/a.git", Auth{}, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep, err := Remote{URL: tc.url}.endpoint()
			if err != nil {
				t.Fatal(err)
			}
			m, err := tc.auth.method(ep)
			if tc.code != 0 {
				if failure.Code(err) != tc.code || !errors.Is(err, ErrInvalidAuth) {
					t.Fatalf("exit %d, want %d with ErrInvalidAuth: %v", failure.Code(err), tc.code, err)
				}
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("the token shows: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			name := ""
			if m != nil {
				name = m.Name()
				if strings.Contains(m.String(), secret) {
					t.Fatalf("the method prints the token: %s", m)
				}
			}
			if name != tc.want {
				t.Fatalf("method %q, want %q", name, tc.want)
			}
			if s, ok := m.(sshAuth); ok {
				cfg, err := s.ClientConfig()
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Timeout != sshTimeout || cfg.User != "git" || cfg.HostKeyCallback == nil || len(cfg.HostKeyAlgorithms) == 0 {
					t.Fatalf("ssh config: timeout %v, user %q, callback set %v, algorithms %v", cfg.Timeout, cfg.User, cfg.HostKeyCallback != nil, cfg.HostKeyAlgorithms)
				}
			}
		})
	}
}

// The callback accepts only the key known_hosts has for that host and port, and
// its algorithms are those of that key.
func TestHostKeyCallback(t *testing.T) {
	_, hostKey := newKey(t, "")
	_, otherKey := newKey(t, "")
	kh := knownHostsLine("git.example.com:22", hostKey.PublicKey()) +
		"# a comment\n" +
		knownHostsLine("[127.0.0.1]:2222", hostKey.PublicKey())
	addr := func(s string) net.Addr {
		a, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, tc := range []struct {
		name, hostport string
		key            ssh.PublicKey
		want           string // "": accepted; "unknown" or "mismatch"
	}{
		{"known host, port 22", "git.example.com:22", hostKey.PublicKey(), ""},
		{"known host and port", "127.0.0.1:2222", hostKey.PublicKey(), ""},
		{"other key", "git.example.com:22", otherKey.PublicKey(), "mismatch"},
		{"other port", "127.0.0.1:22", hostKey.PublicKey(), "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cb, algos, err := hostKeyCallback([]byte(kh), tc.hostport)
			if tc.want == "unknown" {
				// No line for the host: refused before any connection.
				if failure.Code(err) != failure.CodeUsage || !errors.Is(err, ErrInvalidAuth) {
					t.Fatalf("exit %d, want usage: %v", failure.Code(err), err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(algos) == 0 || algos[0] != ssh.KeyAlgoED25519 {
				t.Fatalf("algorithms %v, want ssh-ed25519", algos)
			}
			ip := "203.0.113.7:22"
			if strings.HasPrefix(tc.hostport, "127.") {
				ip = tc.hostport
			}
			err = cb(tc.hostport, addr(ip), tc.key)
			var ke *knownhosts.KeyError
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("the known key was refused: %v", err)
			case tc.want == "mismatch" && (!errors.As(err, &ke) || len(ke.Want) == 0):
				t.Fatalf("another key: %v, want a *knownhosts.KeyError with the known key", err)
			}
		})
	}
	if _, _, err := hostKeyCallback([]byte("not a known_hosts line\n"), "git.example.com:22"); failure.Code(err) != failure.CodeUsage {
		t.Fatalf("malformed known_hosts: exit %d, %v", failure.Code(err), err)
	}
}

// No verb, and no JSON, prints a credential.
func TestAuthNeverPrinted(t *testing.T) {
	key, _ := newKey(t, "")
	a := Auth{Username: "ci-user", Token: secret, SSHKey: key, SSHPassphrase: secret + "-pp", KnownHosts: []byte("kh")}
	r := Remote{URL: "https://" + secret + "@git.example.com/a.git", Auth: a}
	keyBody := strings.Split(string(key), "\n")[1]
	for _, v := range []any{a, &a, r, &r, []Auth{a}, map[string]Remote{"r": r}, struct{ R Remote }{r}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q", "%T %[1]v"} {
			out := fmt.Sprintf(verb, v)
			for _, s := range []string{secret, keyBody, "ci-user"} {
				if strings.Contains(out, s) {
					t.Fatalf("Sprintf(%q, %T) shows a credential: %s", verb, v, out)
				}
			}
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), secret) || strings.Contains(string(b), keyBody) {
			t.Fatalf("JSON of %T shows a credential: %s", v, b)
		}
	}
	if !strings.Contains(a.String(), "token: set") || !strings.Contains(a.String(), "ssh-privatekey: set") {
		t.Fatalf("String should say which credentials are set: %s", a)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		url  string
		ok   bool
		part string // in the message
	}{
		{"https://github.com/org/app.git", true, ""},
		{"http://10.88.0.1:8080/app.git", true, ""},
		{"ssh://git@github.com/org/app.git", true, ""},
		{"ssh://github.com:2222/org/app.git", true, ""},
		{"git@github.com:org/app.git", true, ""},
		{"github.com:org/app.git", true, ""},
		{"git://10.88.0.1/app.git", true, ""},
		{"HTTPS://github.com/org/app.git", true, ""},
		{"", false, "empty"},
		{"file:///srv/app.git", false, "file://"},
		{"/srv/app.git", false, "local paths"},
		{"./app", false, "local paths"},
		{"ftp://host/app.git", false, "scheme"},
		{"https://", false, "no host"},
		{"https:///app.git", false, "no host"},
		{"https://:443/app.git", false, "no host"},
		{"https://github.com", false, "no repository path"},
		{"https://github.com/", false, "no repository path"},
		{"https://ci:" + secret + "@github.com/org/app.git", false, "Secret"},
		{"https://" + secret + "@github.com/org/app.git", false, "Secret"},
		{"ssh://git:" + secret + "@github.com/org/app.git", false, "password"},
		{"git:" + secret + "@github.com:org/app.git", false, "password"},
		{"https://github.com/org/app.git\n", false, "white space"},
		{" https://github.com/org/app.git", false, "white space"},
		{"https://ci:" + secret + "@git hub.com/x", false, "white space"},
		{"https://ci:%zz" + secret + "@github.com/x", false, "Secret"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			err := Remote{URL: tc.url}.Validate()
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if failure.Code(err) != failure.CodeUsage || !errors.Is(err, ErrInvalidURL) {
				t.Fatalf("exit %d, want usage with ErrInvalidURL: %v", failure.Code(err), err)
			}
			if !strings.Contains(err.Error(), tc.part) {
				t.Errorf("error lacks %q: %v", tc.part, err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the token shows: %v", err)
			}
		})
	}
}

// classify reads go-git's errors by type, through the wrappers go-git uses without
// Unwrap.
func TestClassify(t *testing.T) {
	c := &conn{where: "https://git.example.com/a.git", ep: &transport.Endpoint{Protocol: "https"}}
	for _, tc := range []struct {
		name string
		err  error
		code int
	}{
		{"401", fmt.Errorf("%w: nope", transport.ErrAuthenticationRequired), failure.CodePermanent},
		{"403", fmt.Errorf("%w: nope", transport.ErrAuthorizationFailed), failure.CodePermanent},
		{"404", transport.ErrRepositoryNotFound, failure.CodePermanent},
		{"refused dial", wrapUnexpected(&net.OpError{Op: "dial", Err: errors.New("connection refused")}), failure.CodeTransient},
		{"dns not found", &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}, failure.CodePermanent},
		{"dns timeout", &net.DNSError{Err: "timeout", Name: "x", IsTimeout: true}, failure.CodeTransient},
		{"unknown", errors.New("error decoding upload-pack response: ERR upload-pack: not our ref"), failure.CodePermanent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.classify(t.Context(), "listing the refs of", tc.err)
			if failure.Code(err) != tc.code {
				t.Fatalf("exit %d, want %d: %v", failure.Code(err), tc.code, err)
			}
			var refused *refusedError
			if errors.As(err, &refused) != (tc.name == "unknown") {
				t.Fatalf("refused = %v for %v", !(tc.name == "unknown"), err)
			}
		})
	}
}

// wrapUnexpected wraps as go-git's HTTP transport does: UnexpectedError has no
// Unwrap.
func wrapUnexpected(err error) error {
	return fmt.Errorf("outer: %w", plumbing.NewUnexpectedError(err))
}

// A server that echoes a credential (in a 401 body, say) does not get it into the
// message; the chain stays for errors.Is and the exit code.
func TestMask(t *testing.T) {
	a := Auth{Token: secret, SSHPassphrase: "pp-" + secret}
	inner := failure.Permanentf("%w: body: Basic %s, %s", ErrAuth, secret, "pp-"+secret)
	err := a.mask(fmt.Errorf("listing: %w", inner))
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("a credential shows: %v", err)
	}
	if !errors.Is(err, ErrAuth) || failure.Code(err) != failure.CodePermanent {
		t.Fatalf("chain lost: %v (exit %d)", err, failure.Code(err))
	}
	if plain := errors.New("no secret here"); a.mask(plain) != plain {
		t.Fatal("an error without credentials should come back as it is")
	}
}
