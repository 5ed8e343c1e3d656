package workload

import (
	"testing"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
)

// The Cluster tests run against the real single-node Kubernetes of test/kubeenv
// (CHARTREUSE_TEST_ENV, or one started for this package); -short skips them.
// Each has a namespace of its own and mostly waits for pods, so they run four at
// a time (alone here, one after another, they took 621 s).
func TestMain(m *testing.M) {
	kubeenv.RaiseParallel(4)
	kubeenv.Main(m)
}
