// Command migrate is the migrate phase of a Chartreuse migration workflow.
package main

import (
	"github.com/chartreuse-go/chartreuse/pkg/binaries"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

func main() { step.Main(binaries.Migrate()) }
