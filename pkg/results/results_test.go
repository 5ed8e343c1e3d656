package results

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteDirAndSummary(t *testing.T) {
	s := New()
	s.Set("pending", "true")
	s.Set("current-version", "3")
	s.SetJSON("pending-versions", []int64{4, 5})
	dir := filepath.Join(t.TempDir(), "results")
	if err := s.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"pending": "true", "current-version": "3", "pending-versions": "[4,5]"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("result %s = %q (%v), want %q", name, got, err, want)
		}
	}
	var buf bytes.Buffer
	if err := s.WriteSummary(&buf, Summary{Step: "migrate", Status: "ok"}); err != nil {
		t.Fatal(err)
	}
	if bytes.Count(buf.Bytes(), []byte("\n")) != 1 {
		t.Fatalf("summary is not one line: %q", buf.String())
	}
	var sum Summary
	if err := json.Unmarshal(buf.Bytes(), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Results["pending"] != "true" || sum.Step != "migrate" {
		t.Fatalf("summary = %+v", sum)
	}
}

func TestNonKebabNamePanics(t *testing.T) {
	for _, name := range []string{"Pending", "current_version", "-x", "x-", ""} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Set(%q) did not panic", name)
				}
			}()
			New().Set(name, "v")
		}()
	}
}
