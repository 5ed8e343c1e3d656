package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// repoRoot is the repository root, seen from this package's directory.
const repoRoot = "../../.."

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// readRepo returns a file of the repository, by path relative to its root.
func readRepo(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// exists reports whether a path relative to the repository root exists.
func exists(rel string) bool {
	_, err := os.Stat(filepath.Join(repoRoot, rel))
	return err == nil
}

// TestGeneratedDocsUpToDate is the contract of `make docs`: the committed reference
// is exactly what the generator prints from the binaries and the manifests.
func TestGeneratedDocsUpToDate(t *testing.T) {
	files, err := Generate(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := Stale(repoRoot, files)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stale {
		if _, ok := files[s]; ok {
			t.Errorf("%s is out of date: run `make docs` and commit the result", s)
		} else {
			t.Errorf("%s is generated but nothing generates it any more: run `make docs`", s)
		}
	}
}

// TestGenerateIsStable: two runs give the same bytes (no map order, no clock).
func TestGenerateIsStable(t *testing.T) {
	a, err := Generate(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for n := range a {
		if string(a[n]) != string(b[n]) {
			t.Errorf("%s differs between two runs", n)
		}
	}
}

// TestGeneratorIgnoresTheEnvironment: a CHARTREUSE_ variable set where `make docs`
// runs must not leak into the documented defaults.
func TestGeneratorIgnoresTheEnvironment(t *testing.T) {
	want, err := Generate(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("CHARTREUSE_LOCK_WAIT", "1h")
	t.Setenv("CHARTREUSE_DIR", "/elsewhere")
	got, err := Generate(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for n := range want {
		if string(want[n]) != string(got[n]) {
			t.Errorf("%s depends on the environment", n)
		}
	}
}
