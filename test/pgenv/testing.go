package pgenv

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
)

var shared *Server

// Main is for TestMain: it starts one server for the package (unless -short), runs
// the tests and stops the server by PID, whatever happened.
func Main(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		if os.Geteuid() != 0 {
			fmt.Fprintln(os.Stderr, "pgenv:", ErrNotRoot)
			os.Exit(1)
		}
		s, err := Start(Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, "pgenv:", err)
			os.Exit(1)
		}
		shared = s
	}
	code := m.Run()
	if shared != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "--- PostgreSQL log (tests failed):\n%s\n", shared.LogTail())
		}
		shared.Stop()
	}
	os.Exit(code)
}

// Shared returns the package's server, skipping the test under -short.
func Shared(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the real PostgreSQL server (not run with -short)")
	}
	if shared == nil {
		t.Fatal("pgenv.Main was not called from TestMain")
	}
	return shared
}

// NewDatabase creates a fresh database named after the test, dropped when the test
// ends, and returns the server and its name.
func NewDatabase(t testing.TB) (*Server, string) {
	t.Helper()
	s := Shared(t)
	ctx := context.Background()
	name, err := s.CreateDatabase(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.DropDatabase(context.Background(), name); err != nil {
			t.Errorf("dropping %s: %v", name, err)
		}
	})
	return s, name
}
