// Command migrate is the migrate phase of a Chartreuse migration workflow.
package main

import (
	"github.com/chartreuse-go/chartreuse/pkg/migrate"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
)

// The workloads checks (--stopped-selector, --check-selector) run before
// migrate touches the database; they live with the other workload code, not in
// pkg/migrate.
func main() { step.Main(workload.RequireStopped(workload.CheckSelection(migrate.Spec()))) }
