// Command scale-down is the scale-down phase of a Chartreuse migration workflow.
package main

import (
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
)

func main() { step.Main(workload.ScaleDownSpec()) }
