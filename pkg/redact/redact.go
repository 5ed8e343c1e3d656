package redact

import (
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Mask replaces every secret.
const Mask = "xxxxx"

var (
	// scheme://user:password@host — greedy up to the last '@' of the token, so an
	// unescaped '@' or '/' in the password is still covered.
	urlPassword = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s]*@`)
	// password=secret or password='se cret' in libpq keyword/value strings and env dumps.
	kvPassword = regexp.MustCompile(`(?i)(password\s*[=:]\s*)('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s,;]+)`)
)

// Redactor masks credentials in text. The zero value is not usable; call New.
type Redactor struct {
	mu      sync.RWMutex
	secrets []string // longest first, so a secret containing another is masked whole
}

// New returns a Redactor with no registered secrets; URL and DSN passwords are
// masked regardless.
func New() *Redactor { return &Redactor{} }

// Add registers a secret. Its URL-escaped forms are registered too, since a
// password often reaches text inside a URL.
func (r *Redactor) Add(secret string) {
	if secret == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret), url.UserPassword("u", secret).String()[2:]} {
		if s == "" || slices.Contains(r.secrets, s) {
			continue
		}
		r.secrets = append(r.secrets, s)
	}
	sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
}

// String returns s with every credential masked.
func (r *Redactor) String(s string) string {
	if s == "" {
		return s
	}
	r.mu.RLock()
	for _, secret := range r.secrets {
		s = strings.ReplaceAll(s, secret, Mask)
	}
	r.mu.RUnlock()
	// The patterns cost microseconds per string, and every log attribute passes
	// here: run them only where they can match.
	if strings.Contains(s, "://") {
		s = urlPassword.ReplaceAllString(s, "${1}"+Mask+"@")
	}
	if containsFold(s, "password") {
		s = kvPassword.ReplaceAllString(s, "${1}"+Mask)
	}
	return s
}

// containsFold reports whether s contains the lower-case ASCII word, in any case.
func containsFold(s, word string) bool {
	for i := 0; i+len(word) <= len(s); i++ {
		if s[i]|0x20 == word[0] && strings.EqualFold(s[i:i+len(word)], word) {
			return true
		}
	}
	return false
}
