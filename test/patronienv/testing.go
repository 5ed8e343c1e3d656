package patronienv

import (
	"context"
	"testing"
)

// New starts a cluster for one test and stops it when the test ends; a cluster that
// leaves anything behind fails the test. Skipped under -short; otherwise a cluster
// that cannot start fails the test.
func New(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real Patroni cluster (not run with -short)")
	}
	c, err := Start(context.Background())
	if err != nil {
		t.Fatalf("starting the Patroni cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stopping the Patroni cluster: %v", err)
		}
	})
	return c
}
