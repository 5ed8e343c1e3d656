package gitsource

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// The file names LoadAuth reads: those of the Secret types kubernetes.io/basic-auth
// (username, password) and kubernetes.io/ssh-auth (ssh-privatekey), plus token,
// ssh-passphrase and known_hosts.
const (
	KeyUsername      = "username"
	KeyToken         = "token"
	KeyPassword      = "password"
	KeySSHPrivateKey = "ssh-privatekey"
	KeySSHPassphrase = "ssh-passphrase"
	KeyKnownHosts    = "known_hosts"
)

// sshTimeout bounds the TCP connection and SSH handshake (go-git dials without the
// context).
const sshTimeout = 30 * time.Second

// Auth are credentials read from a mounted Secret directory. Printing an Auth (any
// verb, JSON) shows only which of them are set.
type Auth struct {
	Username string // HTTPS user; "git" when empty (GitHub and GitLab ignore it for tokens)
	Token    string // HTTPS token or password
	SSHKey   []byte // PEM private key, for ssh:// and user@host:path URLs
	// SSHPassphrase decrypts SSHKey when it is encrypted.
	SSHPassphrase string
	// KnownHosts are the server's host keys (known_hosts format); required with SSHKey.
	KnownHosts []byte

	tokenKey string // the file Token came from: token or password
	// unread are the names of the other files in the Secret's directory, for the
	// message when a server asks for credentials and none of ours was there.
	unread []string
	dir    string
}

// LoadAuth reads the credentials in dir (a mounted Secret): token (or password),
// optional username, ssh-privatekey with optional ssh-passphrase, known_hosts.
// An empty dir argument, a missing directory or one without any of these files
// yields the zero Auth (anonymous access) and no error. Values are trimmed of
// surrounding white space (a Secret made with echo ends in a newline), except the
// key and known_hosts, which are used as they are.
func LoadAuth(dir string) (Auth, error) {
	var a Auth
	if dir == "" {
		return a, nil
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return a, nil
	}
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, failure.Permanentf("reading git credentials: %w", err)
		}
		return b, nil
	}
	var err error
	var b []byte
	for _, f := range []struct {
		key string
		set func([]byte)
	}{
		{KeyToken, func(b []byte) { a.Token, a.tokenKey = strings.TrimSpace(string(b)), KeyToken }},
		{KeyPassword, func(b []byte) {
			if a.Token == "" {
				a.Token, a.tokenKey = strings.TrimSpace(string(b)), KeyPassword
			}
		}},
		{KeyUsername, func(b []byte) { a.Username = strings.TrimSpace(string(b)) }},
		{KeySSHPrivateKey, func(b []byte) { a.SSHKey = b }},
		{KeySSHPassphrase, func(b []byte) { a.SSHPassphrase = strings.TrimRight(string(b), "\r\n") }},
		{KeyKnownHosts, func(b []byte) { a.KnownHosts = b }},
	} {
		if b, err = read(f.key); err != nil {
			return Auth{}, err
		}
		if len(bytes.TrimSpace(b)) > 0 {
			f.set(b)
		}
	}
	if a.Anonymous() {
		a.dir, a.unread = dir, otherKeys(dir)
	}
	return a, a.check()
}

// otherKeys are the names of the files in dir that LoadAuth does not read (a
// Secret mount's own ..data links left out), at most ten.
func otherKeys(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		n := e.Name()
		switch n {
		case KeyUsername, KeyToken, KeyPassword, KeySSHPrivateKey, KeySSHPassphrase, KeyKnownHosts:
			continue
		}
		if !strings.HasPrefix(n, "..") && len(out) < 10 {
			out = append(out, n)
		}
	}
	return out
}

// check refuses credentials that cannot work, before any connection: a key without
// known_hosts (host key checking is never skipped), a key that does not parse,
// malformed known_hosts, a username without a token.
func (a Auth) check() error {
	bad := func(format string, args ...any) error {
		return failure.Usagef("%w: "+format, append([]any{ErrInvalidAuth}, args...)...)
	}
	if a.Username != "" && a.Token == "" {
		return bad("%s is set but neither %s nor %s", KeyUsername, KeyToken, KeyPassword)
	}
	if len(a.SSHKey) == 0 {
		if a.SSHPassphrase != "" {
			return bad("%s is set but %s is not", KeySSHPassphrase, KeySSHPrivateKey)
		}
		return nil
	}
	if len(bytes.TrimSpace(a.KnownHosts)) == 0 {
		return bad("%s is set but %s is not: the server's host key could not be checked; add the server's line(s), e.g. from ssh-keyscan -t ed25519,rsa HOST", KeySSHPrivateKey, KeyKnownHosts)
	}
	if _, err := a.signer(); err != nil {
		return err
	}
	rest := a.KnownHosts
	for len(bytes.TrimSpace(rest)) > 0 {
		var err error
		if _, _, _, _, rest, err = ssh.ParseKnownHosts(rest); err != nil {
			return bad("%s: %v", KeyKnownHosts, err)
		}
	}
	return nil
}

func (a Auth) signer() (ssh.Signer, error) {
	var s ssh.Signer
	var err error
	if a.SSHPassphrase != "" {
		s, err = ssh.ParsePrivateKeyWithPassphrase(a.SSHKey, []byte(a.SSHPassphrase))
	} else {
		s, err = ssh.ParsePrivateKey(a.SSHKey)
	}
	if err != nil {
		// The parser's messages name the problem (format, missing or wrong
		// passphrase), never the key's bytes.
		return nil, failure.Usagef("%w: %s: %v", ErrInvalidAuth, KeySSHPrivateKey, err)
	}
	return s, nil
}

// Secrets are every form of the credentials that could reach a message, for a
// redactor: the token, the passphrase, the key, and the token as the HTTP
// Authorization header carries it (base64 of user:token), which a server or proxy
// can echo in an error page.
func (a Auth) Secrets() []string {
	var out []string
	if a.Token != "" {
		basic := cmpOr(a.Username, "git") + ":" + a.Token
		out = append(out, a.Token, base64.StdEncoding.EncodeToString([]byte(basic)), base64.RawStdEncoding.EncodeToString([]byte(basic)))
	}
	if a.SSHPassphrase != "" {
		out = append(out, a.SSHPassphrase)
	}
	if len(a.SSHKey) > 0 {
		out = append(out, string(a.SSHKey))
	}
	return out
}

// Anonymous reports whether no credentials are set.
func (a Auth) Anonymous() bool {
	return a.Token == "" && a.Username == "" && len(a.SSHKey) == 0 && len(a.KnownHosts) == 0
}

// keys are the Secret keys in use, names only.
func (a Auth) keys() []string {
	var k []string
	if a.Username != "" {
		k = append(k, KeyUsername)
	}
	if a.Token != "" {
		k = append(k, cmpOr(a.tokenKey, KeyToken))
	}
	if len(a.SSHKey) > 0 {
		k = append(k, KeySSHPrivateKey)
	}
	if a.SSHPassphrase != "" {
		k = append(k, KeySSHPassphrase)
	}
	if len(a.KnownHosts) > 0 {
		k = append(k, KeyKnownHosts)
	}
	return k
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// fitting is what of a is sent over protocol, for messages: a Secret for both
// kinds of URL sends one kind.
func (a Auth) fitting(protocol string) Auth {
	switch {
	case protocol == "ssh" && len(a.SSHKey) > 0:
		a.Username, a.Token, a.tokenKey = "", "", ""
	case (protocol == "http" || protocol == "https") && a.Token != "":
		a.SSHKey, a.SSHPassphrase, a.KnownHosts = nil, "", nil
	}
	return a
}

// used says which Secret keys were sent, for error messages.
func (a Auth) used() string {
	if k := a.keys(); len(k) > 0 {
		return "Secret keys used: " + strings.Join(k, ", ")
	}
	return "no credentials were given"
}

// hint says what to check when the server refused access over protocol.
func (a Auth) hint(protocol string) string {
	if a.Anonymous() && len(a.unread) > 0 {
		return "the server asks for credentials, and the Secret at " + a.dir + " has none of the keys read (" +
			strings.Join([]string{KeyToken, KeyPassword, KeyUsername, KeySSHPrivateKey, KeySSHPassphrase, KeyKnownHosts}, ", ") +
			"), only " + strings.Join(a.unread, ", ") + ": rename its keys, e.g. " + KeyToken + " (and " + KeyUsername + ") for an https URL"
	}
	if a.Anonymous() {
		return "the server asks for credentials and none were given: mount a Secret with " +
			KeyToken + " (and " + KeyUsername + ") for an https URL, or " + KeySSHPrivateKey + " and " + KeyKnownHosts + " for an ssh URL"
	}
	if protocol == "ssh" {
		return "the server refused the key (" + a.used() + "): check that the key's public half is a deploy key or user key with read access to this repository"
	}
	return "the server refused the credentials (" + a.used() + "): check that the token is valid, not expired or revoked, and can read this repository"
}

// method builds go-git's credentials for the endpoint. A Secret with credentials
// for the other kind of URL only is a usage error rather than silently unused; one
// with both kinds (shared by https and ssh repositories) gives what fits.
func (a Auth) method(ep *transport.Endpoint) (transport.AuthMethod, error) {
	bad := func(format string, args ...any) error {
		return failure.Usagef("%w: "+format, append([]any{ErrInvalidAuth}, args...)...)
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	switch ep.Protocol {
	// A Secret may hold credentials for both kinds of URL; only one that holds
	// none for this URL but some for the other is a mistake worth stopping for.
	case "http", "https":
		if a.Token == "" && len(a.SSHKey) > 0 {
			return nil, bad("the Secret holds %s, which an %s URL cannot use: give an ssh URL, or %s instead", KeySSHPrivateKey, ep.Protocol, KeyToken)
		}
		if a.Token == "" {
			return nil, nil
		}
		return &githttp.BasicAuth{Username: cmpOr(a.Username, "git"), Password: a.Token}, nil
	case "ssh":
		if a.Token != "" && len(a.SSHKey) == 0 {
			return nil, bad("the Secret holds %s, which an ssh URL cannot use: give an https URL, or %s and %s instead", cmpOr(a.tokenKey, KeyToken), KeySSHPrivateKey, KeyKnownHosts)
		}
		if len(a.SSHKey) == 0 {
			return nil, bad("an ssh URL needs %s and %s in the Secret", KeySSHPrivateKey, KeyKnownHosts)
		}
		signer, err := a.signer()
		if err != nil {
			return nil, err
		}
		port := ep.Port
		if port == 0 {
			port = 22
		}
		hostport := net.JoinHostPort(strings.Trim(ep.Host, "[]"), strconv.Itoa(port))
		cb, algos, err := hostKeyCallback(a.KnownHosts, hostport)
		if err != nil {
			return nil, err
		}
		user := cmpOr(ep.User, cmpOr(a.Username, "git"))
		keys := &gitssh.PublicKeys{User: user, Signer: signer}
		keys.HostKeyCallback, keys.HostKeyAlgorithms = cb, algos
		return sshAuth{keys}, nil
	default: // git://
		if !a.Anonymous() {
			return nil, bad("the git:// protocol has no authentication: give an https or ssh URL for a private repository")
		}
		return nil, nil
	}
}

// hostKeyCallback checks host keys against knownHosts, and offers the server only
// the key types known_hosts has for hostport, so that a server with several host
// keys shows one that can be checked.
func hostKeyCallback(knownHosts []byte, hostport string) (ssh.HostKeyCallback, []string, error) {
	// go-git's (and x/crypto's) known_hosts reader takes files only.
	f, err := os.CreateTemp("", "gitsource-known_hosts-")
	if err != nil {
		return nil, nil, failure.Permanentf("writing known_hosts: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(knownHosts)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, failure.Permanentf("writing known_hosts: %w", err)
	}
	db, err := gitssh.NewKnownHostsDb(f.Name())
	if err != nil {
		return nil, nil, failure.Usagef("%w: %s: %v", ErrInvalidAuth, KeyKnownHosts, err)
	}
	algos := db.HostKeyAlgorithms(hostport)
	if len(algos) == 0 {
		return nil, nil, failure.Usagef("%w: %s has no line for %s: add the server's host key (e.g. ssh-keyscan -p PORT HOST)", ErrInvalidAuth, KeyKnownHosts, hostport)
	}
	return db.HostKeyCallback(), algos, nil
}

// sshAuth bounds the dial and handshake, which go-git does without the context.
type sshAuth struct{ *gitssh.PublicKeys }

func (a sshAuth) ClientConfig() (*ssh.ClientConfig, error) {
	cfg, err := a.PublicKeys.ClientConfig()
	if err != nil {
		return nil, err
	}
	cfg.Timeout = sshTimeout
	return cfg, nil
}

// String shows which credentials are set, never their values.
func (a Auth) String() string {
	set := func(ok bool) string {
		if ok {
			return "set"
		}
		return "unset"
	}
	return fmt.Sprintf("gitsource.Auth{username: %s, token: %s, ssh-privatekey: %s, ssh-passphrase: %s, known_hosts: %s}",
		set(a.Username != ""), set(a.Token != ""), set(len(a.SSHKey) > 0), set(a.SSHPassphrase != ""), set(len(a.KnownHosts) > 0))
}

// GoString is String, for %#v.
func (a Auth) GoString() string { return a.String() }

// Format prints String for every verb: %d or %x of the struct would print fields.
func (a Auth) Format(f fmt.State, _ rune) { _, _ = fmt.Fprint(f, a.String()) }

// MarshalJSON is String as a JSON string.
func (a Auth) MarshalJSON() ([]byte, error) { return json.Marshal(a.String()) }
