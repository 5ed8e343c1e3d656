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
	folded  []string // secrets[i] with its ASCII letters lower-cased
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
	for _, s := range Forms(secret) {
		if !slices.Contains(r.secrets, s) {
			r.secrets = append(r.secrets, s)
		}
	}
	sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
	r.folded = r.folded[:0]
	for _, s := range r.secrets {
		r.folded = append(r.folded, asciiLower(s))
	}
}

// Forms are the spellings in which secret reaches text: raw, query- and
// path-escaped, and escaped as a URL's password. Empty and repeated ones are
// left out.
func Forms(secret string) []string {
	var out []string
	for _, s := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret), url.UserPassword("u", secret).String()[2:]} {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// AddURLPassword registers the password of a scheme://user:password@host URL,
// read before any parser sees raw, so even a malformed URL cannot leak it
// through a parser's message. The password is everything between the first ':'
// of the userinfo and the last '@': with an unescaped '@' or '/' in it, that is
// still the whole password. It is registered as written and unescaped, and, when
// a URL parser reads a different password (a later '@' in a path or query),
// that one too.
func (r *Redactor) AddURLPassword(raw string) {
	i := strings.Index(raw, "://")
	if i < 0 {
		return
	}
	rest := raw[i+3:]
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if colon := strings.Index(rest[:at], ":"); colon >= 0 {
			r.Add(rest[colon+1 : at])
			if pw, err := url.PathUnescape(rest[colon+1 : at]); err == nil {
				r.Add(pw)
			}
		}
	}
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		pw, _ := u.User.Password()
		r.Add(pw)
	}
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
	if len(r.secrets) > 0 {
		s = r.maskFolded(s)
	}
	if len(r.secrets) > 0 && strings.Contains(s, `"`) {
		s = r.maskQuotedParts(s)
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

// minPart is the shortest part of a secret masked on its own.
const minPart = 4

// minPrefix is the shortest beginning of a secret masked on its own, in any
// case: PostgreSQL quotes a value it stopped parsing up to where it stopped
// (a JSON document's context line), and an unquoted identifier lower-cased
// and cut to 63 bytes.
const minPrefix = 8

// maskFolded masks, in any ASCII case, every secret of at least minPart bytes
// and every beginning of a secret of at least minPrefix bytes. PostgreSQL
// folds an unquoted identifier to lower case, so a secret substituted into
// SQL without quotes (ENVSUB) comes back as column "s3cr3t..." in its error.
// Called with r.mu held for reading.
func (r *Redactor) maskFolded(s string) string {
	lower := asciiLower(s)
	var spans [][2]int
	for _, ls := range r.folded {
		if len(ls) < minPart {
			continue
		}
		head := ls[:min(len(ls), minPrefix)]
		for from := 0; ; {
			i := strings.Index(lower[from:], head)
			if i < 0 {
				break
			}
			i += from
			n := len(head)
			for n < len(ls) && i+n < len(lower) && lower[i+n] == ls[n] {
				n++
			}
			spans = append(spans, [2]int{i, i + n})
			from = i + n
		}
	}
	if len(spans) == 0 {
		return s
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i][0] < spans[j][0] })
	var b strings.Builder
	at, masked := 0, false // masked: s[:at] ends in a mask written
	for _, sp := range spans {
		if masked && sp[0] <= at {
			at = max(at, sp[1]) // overlapping or adjacent: one mask
			continue
		}
		b.WriteString(s[at:sp[0]])
		b.WriteString(Mask)
		at, masked = sp[1], true
	}
	b.WriteString(s[at:])
	return b.String()
}

// asciiLower lower-cases the ASCII letters of s only, keeping every byte offset.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// quoted is a double-quoted token, as PostgreSQL's and its parser's messages
// quote the text they stumbled on (syntax error at or near "...").
var quoted = regexp.MustCompile(`"([^"]*)"`)

// maskQuotedParts masks a quoted token that is part of a secret: a secret
// holding a quote or a space breaks the SQL it was substituted into (ENVSUB),
// and the error then quotes a piece of it, which the whole-value replacement
// cannot catch. Called with r.mu held for reading.
func (r *Redactor) maskQuotedParts(s string) string {
	return quoted.ReplaceAllStringFunc(s, func(q string) string {
		part := q[1 : len(q)-1]
		if len(part) < minPart {
			return q
		}
		lp := asciiLower(part)
		for _, secret := range r.folded {
			if strings.Contains(secret, lp) {
				return `"` + Mask + `"`
			}
		}
		return q
	})
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
