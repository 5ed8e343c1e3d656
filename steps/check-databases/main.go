// Command check-databases checks the list of databases a run migrates (the
// workflows' databases parameter) before anything else runs: the list itself
// (exit 2) and each entry's Secret and key (exit 1).
package main

import (
	"github.com/chartreuse-go/chartreuse/pkg/databases"
	"github.com/chartreuse-go/chartreuse/pkg/step"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
)

// The holds check (--report-holds-for-result) lives with the other workload
// code, not in pkg/databases.
func main() { step.Main(workload.CheckSelection(databases.Spec())) }
