// Command wait-patroni is the wait-patroni phase of a Chartreuse migration workflow.
package main

import (
	"github.com/chartreuse-go/chartreuse/pkg/patroni"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

func main() { step.Main(patroni.Spec()) }
