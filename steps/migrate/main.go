// Command migrate is the migrate phase of a Chartreuse migration workflow.
package main

import (
	"github.com/chartreuse-go/chartreuse/pkg/migrate"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
)

// The workloads check (--stopped-selector) runs before migrate touches the
// database; it lives with the other workload code, not in pkg/migrate.
func main() { step.Main(workload.RequireStopped(migrate.Spec())) }
