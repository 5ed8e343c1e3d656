package helmchart

import "testing"

// TestHelmTekton: TestHelmArgo's scenarios with engine: tekton and the real Tekton
// controller.
func TestHelmTekton(t *testing.T) { helmScenarios(t, "tekton") }
