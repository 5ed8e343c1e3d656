package runwatch_test

import (
	"testing"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
)

// The Cluster tests run against the real single-node Kubernetes of test/kubeenv
// (CHARTREUSE_TEST_ENV, or one started for this package); -short skips them.
func TestMain(m *testing.M) { kubeenv.Main(m) }
