package db

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
	"github.com/chartreuse-go/chartreuse/test/stepbin"
)

// TestCertificateProblemsFailAtOnce runs wait-for-db with sslmode=verify-full
// (and verify-ca) against a real PostgreSQL 15 serving a certificate made here:
// an unknown authority, a host name the certificate does not name and an
// expired CA are configuration errors that no wait fixes, so the step exits 1
// after its first attempt (not 75 after --timeout) and says which problem it is.
func TestCertificateProblemsFailAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a real PostgreSQL with TLS (skipped with -short)")
	}
	certs := newCertificates(t)
	srv := startTLSServer(t, certs)
	bins := stepbin.Binaries(t, "wait-for-db")

	tests := []struct {
		name, host, mode, rootCert string
		code                       int
		want                       []string
	}{
		{"trusted", "127.0.0.1", "verify-full", certs.ca, 0, nil},
		{"unknown authority", "127.0.0.1", "verify-full", certs.otherCA, 1, []string{"unknown authority", "sslrootcert"}},
		{"unknown authority, verify-ca", "127.0.0.1", "verify-ca", certs.otherCA, 1, []string{"unknown authority", "sslrootcert"}},
		{"host name mismatch", "localhost", "verify-full", certs.ca, 1, []string{"not valid for", "localhost"}},
		{"expired CA", "127.0.0.1", "verify-full", certs.expiredCA, 1, []string{"expired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", srv.Password),
				Host: net.JoinHostPort(tt.host, strconv.Itoa(srv.Port)), Path: "/postgres",
				RawQuery: "sslmode=" + tt.mode + "&sslrootcert=" + url.QueryEscape(tt.rootCert)}
			results := t.TempDir()
			cmd := exec.Command(bins["wait-for-db"], "--timeout", "20s", "--results-dir", results)
			cmd.Env = append(cleanEnv(), "CHARTREUSE_SKIP_VERSION_CHECK=true", "CHARTREUSE_DATABASE_URL="+u.String())
			p, err := stepbin.StartCommand(cmd)
			if err != nil {
				t.Fatal(err)
			}
			code, timedOut := p.Wait(t.Context(), time.Minute)
			r := p.Result(code)
			if timedOut || r.Code != tt.code {
				t.Fatalf("exit %d (killed: %v), want %d:\n%s", r.Code, timedOut, tt.code, r.Stderr)
			}
			// One attempt: the failure was not retried until --timeout.
			if b, err := os.ReadFile(filepath.Join(results, "attempts")); err != nil || string(b) != "1" {
				t.Errorf("attempts = %q (%v), want 1:\n%s", b, err, r.Stderr)
			}
			if tt.code == 0 {
				return
			}
			line, err := stepbin.ErrorLine(r.Stderr)
			if err != nil {
				t.Fatalf("error is not one line: %v", err)
			}
			for _, w := range append([]string{"certificate", "not retried"}, tt.want...) {
				if !strings.Contains(strings.ToLower(line), strings.ToLower(w)) {
					t.Errorf("the error does not name %q: %s", w, line)
				}
			}
			if strings.Contains(r.Stdout+r.Stderr, srv.Password) {
				t.Errorf("the output holds the password")
			}
			t.Logf("exit %d: %s", r.Code, trimLog(line))
		})
	}
}

// certificates are PEM file paths: the server's key and certificate (for
// 127.0.0.1 only, signed by ca), ca, the same CA (same key and name) already
// expired, and an unrelated CA.
type certificates struct {
	serverCert, serverKey  string
	ca, expiredCA, otherCA string
}

func newCertificates(t *testing.T) certificates {
	t.Helper()
	// The server runs as postgres: the directory must be reachable and the key
	// its own with mode 0600, as PostgreSQL requires.
	dir, err := os.MkdirTemp("", "chartreuse-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)

	now := time.Now()
	caKey := newKey(t)
	caName := pkix.Name{CommonName: "chartreuse test CA"}
	ca := selfSigned(t, caKey, caName, now.Add(-time.Hour), now.Add(24*time.Hour))
	expired := selfSigned(t, caKey, caName, now.Add(-72*time.Hour), now.Add(-24*time.Hour))
	other := selfSigned(t, newKey(t), pkix.Name{CommonName: "another CA"}, now.Add(-time.Hour), now.Add(24*time.Hour))

	serverKey := newKey(t)
	caCert, err := x509.ParseCertificate(ca)
	if err != nil {
		t.Fatal(err)
	}
	server, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, caCert, &serverKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(serverKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, kind string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return certificates{
		serverCert: write("server.crt", "CERTIFICATE", server),
		serverKey:  write("server.key", "EC PRIVATE KEY", keyDER),
		ca:         write("ca.crt", "CERTIFICATE", ca),
		expiredCA:  write("expired-ca.crt", "CERTIFICATE", expired),
		otherCA:    write("other-ca.crt", "CERTIFICATE", other),
	}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// selfSigned makes a CA certificate; the same key and name give certificates
// that chain the same server certificate.
func selfSigned(t *testing.T, key *ecdsa.PrivateKey, name pkix.Name, from, until time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(from.UnixNano()),
		Subject:               name,
		NotBefore:             from,
		NotAfter:              until,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:          []byte(name.CommonName),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// startTLSServer starts a PostgreSQL of its own with ssl=on.
func startTLSServer(t *testing.T, c certificates) *pgenv.Server {
	t.Helper()
	srv, err := pgenv.Start(pgenv.Options{Settings: map[string]string{
		"ssl": "on", "ssl_cert_file": c.serverCert, "ssl_key_file": c.serverKey,
	}})
	if err != nil {
		t.Fatal(fmt.Errorf("starting PostgreSQL with TLS: %w", err))
	}
	t.Cleanup(srv.Stop)
	return srv
}
