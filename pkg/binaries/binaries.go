package binaries

import (
	"github.com/chartreuse-go/chartreuse/pkg/migrate"
	"github.com/chartreuse-go/chartreuse/pkg/runwatch"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
)

// Migrate is the migrate binary: the run watch (--watch-run) around the check
// that the workloads the run stopped are still stopped (--stopped-selector),
// around the checks of the selection (--check-selector, which write plan's
// superseded-holds), around migrate itself.
func Migrate() step.Spec {
	return runwatch.Stopping(workload.RequireStopped(workload.CheckSelection(migrate.Spec())))
}
