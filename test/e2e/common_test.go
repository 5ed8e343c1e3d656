package e2e

import (
	"context"
	"testing"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// TestMain (kubeenv.Main: one shared cluster for the package) is in
// tekton_helpers_test.go.

// StartPostgres starts a PostgreSQL the pods can reach: it listens on the cluster
// bridge address only and lets the pod network in with the password. It is
// stopped (by PID) when the test ends.
func StartPostgres(t testing.TB, env *kubeenv.Env) *pgenv.Server {
	t.Helper()
	s, err := pgenv.Start(pgenv.Options{Listen: env.BridgeIP, AllowCIDRs: []string{env.State().PodCIDR}})
	if err != nil {
		t.Fatalf("PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- PostgreSQL log:\n%s", s.LogTail())
		}
		s.Stop()
	})
	return s
}

// NewDatabase creates a database for one scenario, dropped when the test ends.
func NewDatabase(t testing.TB, s *pgenv.Server, prefix string) Database {
	t.Helper()
	name, err := s.CreateDatabase(t.Context(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.DropDatabase(context.Background(), name); err != nil {
			t.Logf("dropping %s: %v (the server is removed with the test anyway)", name, err)
		}
	})
	return Database{Server: s, Name: name}
}
