package gitserver

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSH serves the repositories over SSH: golang.org/x/crypto/ssh's server (Debian's
// sshd needs root and a privilege-separation user this machine lacks) running the
// real `git upload-pack` for each exec request, for the keys authorized only.
type SSH struct {
	s          *Server
	ln         net.Listener
	hostKey    ssh.Signer
	authorized []ssh.PublicKey
}

// StartSSH serves over SSH on another port of the server's host, accepting the
// given client keys. It stops with the server.
func (s *Server) StartSSH(t testing.TB, authorized ...ssh.PublicKey) *SSH {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hk, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	host, _, _ := net.SplitHostPort(s.httpLn.Addr().String())
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("gitserver: ssh listen: %v", err)
	}
	x := &SSH{s: s, ln: ln, hostKey: hk, authorized: authorized}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.wg.Add(1)
		s.extra = append(s.extra, ln)
	}
	s.mu.Unlock()
	if closed {
		_ = ln.Close()
		t.Fatal("gitserver: server closed")
	}
	go func() { defer s.wg.Done(); x.serve() }()
	return x
}

// Addr is host:port.
func (x *SSH) Addr() string { return x.ln.Addr().String() }

// HostKey is the server's public host key.
func (x *SSH) HostKey() ssh.PublicKey { return x.hostKey.PublicKey() }

// KnownHosts is a known_hosts line for this server.
func (x *SSH) KnownHosts() string {
	return knownhosts.Line([]string{knownhosts.Normalize(x.Addr())}, x.HostKey()) + "\n"
}

// URL is the repository's ssh:// URL on this server.
func (x *SSH) URL(r *Repo) string { return "ssh://git@" + x.Addr() + "/" + r.name }

func (x *SSH) config() *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			for _, k := range x.authorized {
				if bytes.Equal(k.Marshal(), key.Marshal()) {
					return nil, nil
				}
			}
			return nil, errors.New("key not authorized")
		},
	}
	cfg.AddHostKey(x.hostKey)
	return cfg
}

func (x *SSH) serve() {
	cfg := x.config()
	for {
		conn, err := x.ln.Accept()
		if err != nil {
			return
		}
		rec := Request{Proto: "ssh"}
		if rec.Fault = x.s.next(false, false).f; rec.Fault != 0 {
			x.s.failConn(conn, rec.Fault)
			x.s.record(rec)
			continue
		}
		x.s.record(rec)
		x.s.wg.Add(1)
		go func() {
			defer x.s.wg.Done()
			x.handle(conn, cfg)
		}()
	}
}

// handle serves one connection: exec requests for git-upload-pack only.
func (x *SSH) handle(conn net.Conn, cfg *ssh.ServerConfig) {
	defer conn.Close()
	if !x.s.track(conn) {
		return
	}
	defer x.s.untrack(conn)
	sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		x.session(ch, creqs)
	}
}

func (x *SSH) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			_ = req.Reply(req.Type == "env", nil) // go-git may set GIT_PROTOCOL; ignored
			continue
		}
		var payload struct{ Command string }
		if ssh.Unmarshal(req.Payload, &payload) != nil {
			_ = req.Reply(false, nil)
			return
		}
		dir, ok := x.repoDir(payload.Command)
		if !ok {
			_ = req.Reply(false, nil)
			return
		}
		_ = req.Reply(true, nil)
		status := x.uploadPack(ch, dir)
		_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, uint32(status)))
		return
	}
}

// repoDir reads `git-upload-pack '/name.git'` (or git upload-pack) and returns the
// repository's directory.
func (x *SSH) repoDir(cmd string) (string, bool) {
	rest, ok := strings.CutPrefix(cmd, "git-upload-pack ")
	if !ok {
		if rest, ok = strings.CutPrefix(cmd, "git upload-pack "); !ok {
			return "", false
		}
	}
	name := strings.TrimPrefix(strings.Trim(strings.TrimSpace(rest), "'\""), "/")
	r := x.s.repo(name)
	if r == nil {
		return "", false
	}
	return r.dir, true
}

func (x *SSH) uploadPack(ch ssh.Channel, dir string) int {
	cmd := exec.Command("git", "upload-pack", "--strict", dir)
	cmd.Env = x.s.env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
	x.s.mu.Lock()
	if x.s.closed {
		x.s.mu.Unlock()
		return 1
	}
	err := cmd.Start()
	if err == nil {
		x.s.daemons[cmd] = struct{}{}
	}
	x.s.mu.Unlock()
	if err != nil {
		return 1
	}
	err = cmd.Wait()
	x.s.mu.Lock()
	delete(x.s.daemons, cmd)
	x.s.mu.Unlock()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}

// NewClientKey makes an ed25519 client key: the private key as PEM (the content of
// a Secret's ssh-privatekey) and the public key to pass to StartSSH.
func NewClientKey(t testing.TB) ([]byte, ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), signer.PublicKey()
}
