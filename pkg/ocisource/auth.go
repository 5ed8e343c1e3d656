package ocisource

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// The Secret keys LoadAuth reads, the first one present wins: a
// kubernetes.io/dockerconfigjson Secret's key, a Docker config.json, and the older
// kubernetes.io/dockercfg Secret's key (its entries without "auths" around them).
const (
	KeyDockerConfigJSON = ".dockerconfigjson"
	KeyConfigJSON       = "config.json"
	KeyDockerCfg        = ".dockercfg"
)

// Auth are registry credentials read from a mounted Secret. Printing an Auth (any
// verb, JSON) shows only the Secret key and the registries it has entries for.
type Auth struct {
	key     string // the Secret key the entries came from
	entries []entry
}

// entry is one registry's credentials.
type entry struct {
	pattern string // the entry's name as written, without scheme
	host    string // host[:port], lower case; Docker Hub is index.docker.io
	path    string // repository prefix, or "" for the whole registry
	cfg     authn.AuthConfig
	auth    string // the "auth" field as written (base64 of user:password)
}

func (e entry) secrets() []string {
	var s []string
	for _, v := range []string{e.cfg.Password, e.auth, e.cfg.IdentityToken, e.cfg.RegistryToken} {
		if v != "" {
			s = append(s, v)
		}
	}
	if e.cfg.Password != "" {
		// What a basic Authorization header carries.
		s = append(s, base64.StdEncoding.EncodeToString([]byte(e.cfg.Username+":"+e.cfg.Password)))
	}
	return s
}

// Secrets are the values that must never be printed (passwords, tokens and the
// forms they travel in), for a caller's redactor.
func (a Auth) Secrets() []string {
	var out []string
	for _, e := range a.entries {
		out = append(out, e.secrets()...)
	}
	return out
}

// dockerEntry is one entry of a Docker config file.
type dockerEntry struct {
	Username      string `json:"username"`
	Password      string `json:"password"`
	Auth          string `json:"auth"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// LoadAuth reads the registry credentials in dir (a mounted Secret): its
// .dockerconfigjson, else config.json ({"auths": {"host": {...}}}), else .dockercfg
// ({"host": {...}}). An entry has username and password, or auth (base64 of
// user:password), or identitytoken or registrytoken. An empty dir argument, a
// missing or empty directory yields the zero Auth (anonymous pulls) and no
// error; a directory with other keys only is a usage error naming them. Files are read through the links of a Secret
// volume (key -> ..data/key).
func LoadAuth(dir string) (Auth, error) {
	if dir == "" {
		return Auth{}, nil
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return Auth{}, nil
	}
	for _, key := range []string{KeyDockerConfigJSON, KeyConfigJSON, KeyDockerCfg} {
		b, err := os.ReadFile(filepath.Join(dir, key))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Auth{}, failure.Permanentf("reading registry credentials: %w", err)
		}
		return parseAuth(key, b)
	}
	// An empty volume is no Secret (the workflows mount an optional one). A
	// Secret with other keys only (username and password, as for git) is a
	// mistake that would otherwise pull anonymously and blame the registry.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Auth{}, failure.Permanentf("reading registry credentials: %w", err)
	}
	var keys []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "..") { // a Secret volume's ..data and its timestamped directory
			keys = append(keys, e.Name())
		}
	}
	if len(keys) > 0 {
		return Auth{}, failure.Usagef("%w: the Secret has the keys %s but none of %s, %s or %s: make it with "+
			"\"kubectl create secret docker-registry\" (type kubernetes.io/dockerconfigjson)",
			ErrInvalidAuth, strings.Join(keys, ", "), KeyDockerConfigJSON, KeyConfigJSON, KeyDockerCfg)
	}
	return Auth{}, nil
}

func parseAuth(key string, b []byte) (Auth, error) {
	bad := func(format string, args ...any) error {
		return failure.Usagef("%w: Secret key %s: "+format, append([]any{ErrInvalidAuth, key}, args...)...)
	}
	a := Auth{key: key}
	if len(bytes.TrimSpace(b)) == 0 {
		return a, nil
	}
	// The decoder's messages can quote the file; only the offset is shown.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return Auth{}, bad("not a JSON object%s", jsonOffset(err))
	}
	entries := raw
	if key != KeyDockerCfg {
		entries = nil
		if v, ok := raw["auths"]; ok {
			if err := json.Unmarshal(v, &entries); err != nil {
				return Auth{}, bad(`"auths" is not a JSON object%s`, jsonOffset(err))
			}
		}
		if len(entries) == 0 && (raw["credsStore"] != nil || raw["credHelpers"] != nil) {
			return Auth{}, bad(`credential helpers (credsStore, credHelpers) cannot run here: make the Secret with "kubectl create secret docker-registry", which writes the credentials themselves`)
		}
	}
	for _, pattern := range slices.Sorted(maps.Keys(entries)) {
		var d dockerEntry
		if err := json.Unmarshal(entries[pattern], &d); err != nil {
			return Auth{}, bad("the entry for %q is not an object of strings%s", pattern, jsonOffset(err))
		}
		e, err := makeEntry(pattern, d)
		if err != nil {
			return Auth{}, bad("the entry for %q: %s", pattern, err)
		}
		a.entries = append(a.entries, e)
	}
	return a, nil
}

func jsonOffset(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf(" (at byte %d)", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf(" (at byte %d)", te.Offset)
	}
	return ""
}

// dockerHub are the names Docker Hub's credentials are filed under.
var dockerHub = []string{"index.docker.io", "docker.io", "registry-1.docker.io"}

// makeEntry normalises an entry's name (scheme and a legacy /v1/ or /v2/ path
// dropped) and decodes auth; messages never quote values.
func makeEntry(pattern string, d dockerEntry) (entry, error) {
	p := strings.TrimSpace(pattern)
	for _, scheme := range []string{"https://", "http://"} {
		p = strings.TrimPrefix(p, scheme)
	}
	p = strings.Trim(p, "/")
	host, path, _ := strings.Cut(p, "/")
	host = strings.ToLower(host)
	if path == "v1" || path == "v2" {
		path = ""
	}
	if slices.Contains(dockerHub, host) {
		host = name.DefaultRegistry
	}
	if host == "" {
		return entry{}, errors.New("no registry host in its name")
	}
	e := entry{pattern: p, host: host, path: path, auth: d.Auth, cfg: authn.AuthConfig{
		Username: d.Username, Password: d.Password, IdentityToken: d.IdentityToken, RegistryToken: d.RegistryToken,
	}}
	if d.Auth != "" && d.Password == "" {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(d.Auth))
		if err != nil {
			return entry{}, errors.New(`"auth" is not base64`)
		}
		user, password, ok := strings.Cut(string(raw), ":")
		if !ok {
			return entry{}, errors.New(`"auth" is not base64 of user:password`)
		}
		if e.cfg.Username == "" {
			e.cfg.Username = user
		}
		e.cfg.Password = password
	}
	if e.cfg.Password == "" && e.cfg.IdentityToken == "" && e.cfg.RegistryToken == "" {
		return entry{}, errors.New(`it has no "password", "auth", "identitytoken" or "registrytoken"`)
	}
	return e, nil
}

// Anonymous reports whether no credentials are set.
func (a Auth) Anonymous() bool { return len(a.entries) == 0 }

// match is the entry for repo: the registry's entry whose repository prefix is the
// longest that holds repo.
func (a Auth) match(repo name.Repository) (entry, bool) {
	host := strings.ToLower(repo.RegistryStr())
	if slices.Contains(dockerHub, host) {
		host = name.DefaultRegistry
	}
	path := repo.RepositoryStr()
	var best entry
	found := false
	for _, e := range a.entries {
		if e.host != host || (e.path != "" && path != e.path && !strings.HasPrefix(path, e.path+"/")) {
			continue
		}
		if !found || len(e.path) > len(best.path) {
			best, found = e, true
		}
	}
	return best, found
}

// authenticator is what go-containerregistry sends for repo.
func (a Auth) authenticator(repo name.Repository) authn.Authenticator {
	if e, ok := a.match(repo); ok {
		return authn.FromConfig(e.cfg)
	}
	return authn.Anonymous
}

// hint says what to check when the registry refused access to repo on host.
func (a Auth) hint(host, repo string) string {
	r, err := name.NewRepository(host + "/" + repo)
	if err == nil {
		if e, ok := a.match(r); ok {
			return fmt.Sprintf("the registry refused the credentials of Secret key %s, entry %q: check that they are valid, not expired or revoked, and may pull %s",
				a.key, e.pattern, repo)
		}
	}
	var what string
	switch {
	case a.key == "":
		what = "no registry credentials were given"
	case len(a.entries) == 0:
		what = "Secret key " + a.key + " has no entries"
	default:
		what = fmt.Sprintf("Secret key %s has no entry for %s (its entries: %s)", a.key, host, strings.Join(a.patterns(), ", "))
	}
	return what + ": the registry asks for credentials (many registries answer so too for a repository that does not exist); give a kubernetes.io/dockerconfigjson Secret with an entry for " + host
}

func (a Auth) patterns() []string {
	p := make([]string, len(a.entries))
	for n, e := range a.entries {
		p[n] = e.pattern
	}
	return p
}

// String shows the Secret key and the registries with credentials, never the
// credentials.
func (a Auth) String() string {
	if a.key == "" {
		return "ocisource.Auth{anonymous}"
	}
	return fmt.Sprintf("ocisource.Auth{%s: [%s]}", a.key, strings.Join(a.patterns(), " "))
}

// GoString is String, for %#v.
func (a Auth) GoString() string { return a.String() }

// Format prints String for every verb: %d or %x of the struct would print fields.
func (a Auth) Format(f fmt.State, _ rune) { _, _ = fmt.Fprint(f, a.String()) }

// MarshalJSON is String as a JSON string.
func (a Auth) MarshalJSON() ([]byte, error) { return json.Marshal(a.String()) }
