package results

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// Set collects a step's results. Names are kebab-case and the same in Argo and Tekton.
type Set struct {
	values map[string]string
}

// New returns an empty Set.
func New() *Set { return &Set{values: map[string]string{}} }

// Set records a string result. A name that is not kebab-case is a programming error.
func (s *Set) Set(name, value string) {
	if !nameRE.MatchString(name) {
		panic(fmt.Sprintf("results: %q is not a kebab-case result name", name))
	}
	s.values[name] = value
}

// SetJSON records a result encoded as compact JSON.
func (s *Set) SetJSON(name string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("results: encoding %s: %v", name, err))
	}
	s.Set(name, string(b))
}

// Get returns a recorded result.
func (s *Set) Get(name string) (string, bool) {
	v, ok := s.values[name]
	return v, ok
}

// Names returns the recorded names, sorted.
func (s *Set) Names() []string {
	names := make([]string, 0, len(s.values))
	for n := range s.values {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// WriteDir writes one file per result into dir (created if needed), each holding the
// bare value with no trailing newline. An empty dir writes nothing.
func (s *Set) WriteDir(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating results directory: %w", err)
	}
	for _, name := range s.Names() {
		path := filepath.Join(dir, name)
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s.values[name]), 0o644); err != nil {
			return fmt.Errorf("writing result %s: %w", name, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("writing result %s: %w", name, err)
		}
	}
	return nil
}

// Summary is the final JSON line a step prints on stdout.
type Summary struct {
	Step     string            `json:"step"`
	Version  string            `json:"version"`
	Status   string            `json:"status"` // "ok" or "failed"
	ExitCode int               `json:"exit-code"`
	Error    string            `json:"error,omitempty"`
	Duration string            `json:"duration"`
	Results  map[string]string `json:"results"`
}

// WriteSummary prints the summary as one JSON line.
func (s *Set) WriteSummary(w io.Writer, sum Summary) error {
	sum.Results = s.values
	b, err := json.Marshal(sum)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
