// Package kube holds the fault tests of scale-down and scale-restore on the real
// single-node Kubernetes of test/kubeenv: 409 conflicts forced by a concurrent
// editor, seeded random sequences of interrupted runs ending with a restore that
// must bring back the original replicas exactly, and the API server going away in
// the middle of a run (really restarted when this package owns its cluster, and at
// the connection level through a proxy). -short skips them.
package kube

import (
	"testing"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
)

func TestMain(m *testing.M) { kubeenv.Main(m) }
