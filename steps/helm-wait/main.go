// Command helm-wait is the Helm chart's hook (charts/chartreuse): it creates the
// release revision's Workflow or PipelineRun and waits until it ends.
package main

import (
	"github.com/chartreuse-go/chartreuse/pkg/helmwait"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

func main() { step.Main(helmwait.Spec()) }
