package helmchart

import (
	"testing"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
)

// TestMain connects to the Kubernetes test environment (CHARTREUSE_TEST_ENV) or starts
// one when TestOnCluster first needs it; -short never does.
func TestMain(m *testing.M) { kubeenv.Main(m) }
