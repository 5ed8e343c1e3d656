// Command gate keeps two Tekton runs for one database from overlapping (a Lease
// taken before plan and released in finally).
package main

import (
	"github.com/chartreuse-go/chartreuse/pkg/gate"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

func main() { step.Main(gate.Spec()) }
