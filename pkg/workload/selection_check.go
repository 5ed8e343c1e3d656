package workload

import (
	"github.com/urfave/cli/v2"

	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// SelectionCheckOptions are the workload selection of the run, given to a
// step that runs before anything changes (plan) only to be checked.
//
// With stop-workloads=auto and migrations that need no downtime, scale-down is
// skipped and the first step to read the selection is scale-restore, after
// migrate: a typo in it then failed the run with the database already
// changed. Plan refuses it instead, before anything is stopped or applied.
type SelectionCheckOptions struct {
	Selector  string
	Workloads cli.StringSlice
	Namespace string
}

// Flags implements step.Options.
func (o *SelectionCheckOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "check-selector", Usage: "the label selector of the workloads the run's scale-down and scale-restore act on: checked only, before anything else (exit 2 when it is not a valid selector); the cluster is not read", Destination: &o.Selector},
		&cli.StringSliceFlag{Name: "check-workload", Usage: "a workload of the run as kind/name, repeatable or comma-separated: checked only, as --check-selector", Destination: &o.Workloads},
		&cli.StringFlag{Name: "check-namespace", Usage: "the namespace of those workloads: checked only, as --check-selector", Destination: &o.Namespace},
	}
}

// Validate implements step.Options: the checks scale-down and scale-restore
// make of the same values.
func (o *SelectionCheckOptions) Validate() error {
	_, err := parseSelectionIn("--check-selector (the run's workload-selector)", o.Selector, o.Workloads.Value(), o.Namespace)
	return err
}

// CheckSelection returns spec with the SelectionCheckOptions added: a bad
// selection fails the step as bad input before its Run starts.
func CheckSelection(spec step.Spec) step.Spec {
	spec.Options = append(spec.Options, &SelectionCheckOptions{})
	return spec
}
