package kit

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/chartreuse-go/chartreuse/pkg/redact"
)

// Secrets collects the passwords a test uses and every output it captured, and
// fails the test at its end if any output holds a password in any of the forms a
// password reaches text in (raw, query- or path-escaped, in a URL's userinfo).
type Secrets struct {
	t       testing.TB
	mu      sync.Mutex
	secrets []string
	outputs []labeled
}

type labeled struct{ label, text string }

// NewSecrets returns a collector checked when t ends.
func NewSecrets(t testing.TB) *Secrets {
	s := &Secrets{t: t}
	t.Cleanup(func() {
		if hits := s.Hits(); len(hits) > 0 {
			t.Errorf("captured output leaks a password:\n%s", strings.Join(hits, "\n"))
		}
	})
	return s
}

// Add registers a password.
func (s *Secrets) Add(pw string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets = append(s.secrets, pw)
}

// Record keeps an output to scan.
func (s *Secrets) Record(label, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outputs = append(s.outputs, labeled{label, text})
}

// Hits lists every output holding a password, with the place.
func (s *Secrets) Hits() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var hits []string
	for _, o := range s.outputs {
		for _, pw := range s.secrets {
			for _, f := range redact.Forms(pw) {
				if i := strings.Index(o.text, f); i >= 0 {
					lo, hi := max(0, i-60), min(len(o.text), i+len(f)+60)
					hits = append(hits, fmt.Sprintf("%s: %q in ...%s...", o.label, f, o.text[lo:hi]))
				}
			}
		}
	}
	return hits
}

// Count is the number of outputs recorded.
func (s *Secrets) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.outputs)
}
