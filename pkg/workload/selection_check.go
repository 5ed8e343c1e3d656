package workload

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/chartreuse-go/chartreuse/pkg/kube"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// ResultSupersededHolds is plan's list of the runs (uids, comma-separated)
// that hold the run's selection stopped for its database alone: the earlier
// runs that a success of this run supersedes (scale-restore --supersede-runs).
// Empty when there are none, or when plan was not asked (--report-holds-for).
const ResultSupersededHolds = "superseded-holds"

// SelectionCheckOptions are the workload selection of the run, given to a
// step that runs before anything changes (plan) to be checked and, with
// HoldsFor, read for the holds a success of the run lets go of.
//
// With stop-workloads=auto and migrations that need no downtime, scale-down is
// skipped and the first step to read the selection is scale-restore, after
// migrate: a typo in it then failed the run with the database already
// changed. Plan refuses it instead, before anything is stopped or applied.
//
// A run that stops nothing (nothing pending, or auto with nothing to stop)
// holds nothing, so its scale-restore could not tell an earlier keep-down of
// the same database (to let go of) from a later one (an `argo retry` of an
// old run must not lift it). Plan, under the run's database lock, names the
// runs holding the selection for that database alone; they are the earlier
// ones, and the workflows hand that list to scale-restore.
type SelectionCheckOptions struct {
	Selector  string
	Workloads cli.StringSlice
	Namespace string
	// HoldsFor is the run's database as secret/key: report the runs that
	// hold the selection for it alone.
	HoldsFor string
	// HoldsForResult names a result of the step that holds the run's
	// databases, known only once it ran (check-databases --action=rounds: its
	// holder, secret/key joined by "+"): report the runs that hold the
	// selection for those databases alone.
	HoldsForResult string
	// StopWorkloads is the run's stop-workloads: with false the run touches no
	// workload, lets go of no hold, and needs no right to read them.
	StopWorkloads string
	// RunCreated is when the run was created: only the holds of runs created
	// before it are reported (an argo retry of an old run reruns plan after a
	// later run's keep-down, which it must not lift).
	RunCreated string

	sel     Selection
	created int64
}

// Flags implements step.Options.
func (o *SelectionCheckOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "check-selector", Usage: "the label selector of the workloads the run's scale-down and scale-restore act on: checked before anything else (exit 2 when it is not a valid selector); the cluster is read only with --report-holds-for", Destination: &o.Selector},
		&cli.StringSliceFlag{Name: "check-workload", Usage: "a workload of the run as kind/name, repeatable or comma-separated: checked, as --check-selector", Destination: &o.Workloads},
		&cli.StringFlag{Name: "check-namespace", Usage: "the namespace of those workloads: checked, as --check-selector (default: the pod's own namespace in a cluster, else the kubeconfig context's)", Destination: &o.Namespace},
		&cli.StringFlag{Name: "report-holds-for-result", Usage: "as --report-holds-for, for the databases (secret/key joined by +) the step itself writes in this result (check-databases --action=rounds: holder), after it ran", Destination: &o.HoldsForResult},
		&cli.StringFlag{Name: "check-stop-workloads", Usage: "the run's stop-workloads (true, false or auto): with false the run touches no workload, so --report-holds-for reads nothing and reports none", Destination: &o.StopWorkloads},
		runCreated(&o.RunCreated),
		&cli.StringFlag{Name: "report-holds-for", Usage: "the run's database as secret/key: read the selected workloads (every workload of the namespace when none is selected) and write the result " + ResultSupersededHolds + ", the uids of the runs that hold them stopped for this database alone (an earlier keep-down), which scale-restore --supersede-runs lets go of once this run has succeeded; empty: the cluster is not read", Destination: &o.HoldsFor},
	}
}

// Validate implements step.Options: the checks scale-down and scale-restore
// make of the same values.
func (o *SelectionCheckOptions) Validate() error {
	sel, err := parseSelectionIn("--check-selector (the run's workload-selector)", o.Selector, o.Workloads.Value(), o.Namespace)
	if err != nil {
		return err
	}
	o.sel = sel
	if !slices.Contains([]string{"", "true", "false", "auto"}, o.StopWorkloads) {
		return fmt.Errorf("--check-stop-workloads %q: want true, false or auto (the run's stop-workloads parameter)", o.StopWorkloads)
	}
	holdsFor, err := secretList("--report-holds-for", o.HoldsFor)
	if err != nil {
		return err
	}
	o.HoldsFor = holdsFor
	if o.created, err = ParseRunCreated("--run-created", o.RunCreated); err != nil {
		return err
	}
	if o.HoldsFor != "" && o.HoldsForResult != "" {
		return fmt.Errorf("--report-holds-for and --report-holds-for-result both given: the databases come from one of them")
	}
	return nil
}

// HoldsCheckTimeout bounds the read of the holds: an API server that does not
// answer fails plan as transient (exit 75) instead of holding it.
const HoldsCheckTimeout = 30 * time.Second

// CheckSelection returns spec with the SelectionCheckOptions added: a bad
// selection fails the step as bad input before its Run starts, and with
// --report-holds-for the Run first reports the holds.
func CheckSelection(spec step.Spec) step.Spec {
	o := &SelectionCheckOptions{}
	spec.Options = append(spec.Options, o)
	// the description's Results list ends it
	spec.Description = strings.TrimSuffix(spec.Description, ".") + ", " + ResultSupersededHolds + " (with --report-holds-for: the uids of the runs holding the selected workloads stopped for that database alone)."
	run := spec.Run
	spec.Run = func(ctx context.Context, env *step.Env) error {
		// after the step's own work: a database that does not answer is what a
		// run most often waits for, and it fails as such (75) first
		if err := run(ctx, env); err != nil || o.HoldsFor == "" && o.HoldsForResult == "" {
			return err
		}
		dbs := o.HoldsFor
		if o.HoldsForResult != "" {
			v, _ := env.Results.Get(o.HoldsForResult)
			list, err := secretList("result "+o.HoldsForResult, v)
			if err != nil {
				return err
			}
			dbs = list
		}
		env.Results.Set(ResultSupersededHolds, "")
		if dbs == "" {
			return nil
		}
		if o.StopWorkloads == "false" {
			env.Log.Info("no holds read: this run touches no workload (stop-workloads=false)")
			return nil
		}
		c, err := (&kube.Options{Namespace: o.Namespace}).ConnectStep(spec.Name, env.Log)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, HoldsCheckTimeout)
		uids, unlisted, err := HoldsFor(cctx, c.Interface, c.Namespace, o.sel, dbs, o.created)
		cancel()
		if err != nil {
			return fmt.Errorf("reading the workloads' holds (%s) in namespace %s, which needs the Role chartreuse-migrate bound to this step's ServiceAccount there (Argo: chartreuse-migrate; Tekton: chartreuse-pipeline-migrate, the PipelineRun's taskRunSpecs for plan), or stop-workloads=false: %w",
				AnnotationHeldBy, c.Namespace, err)
		}
		if len(unlisted) > 0 {
			env.Log.Warn("holders this run cannot let go of: not a run uid (edited by hand?); fix "+AnnotationHeldBy+" or restore by hand", "databases", dbs, "holders", strings.Join(unlisted, ","))
		}
		if len(uids) > MaxSupersededHolds {
			return fmt.Errorf("%d earlier runs hold the selected workloads stopped for %s (a keep-down each), more than the %d one run lets go of (its result must fit Tekton's 4096-byte results): "+
				"restore them by hand (scale-restore without --only-run-uid restores every record: the scale-restore entrypoint or Task), then run again", len(uids), dbs, MaxSupersededHolds)
		}
		if len(uids) > 0 {
			env.Log.Info("the selection is held stopped by earlier runs for these databases (a keep-down): a success of this run lets go of them", "databases", dbs, "runs", strings.Join(uids, ","))
		}
		env.Results.Set(ResultSupersededHolds, strings.Join(uids, ","))
		return nil
	}
	return spec
}

// MaxSupersededHolds bounds the superseded-holds result: Tekton carries all of a
// TaskRun's results in a termination message of 4096 bytes, which plan shares
// with its risks (test/manifests checks the sum). Each failed keep-down run of a
// database adds a holder; past this many, plan refuses, naming the remedy.
const MaxSupersededHolds = 24

// HoldsFor returns, sorted, the uids of the runs that hold a workload of sel
// (every workload of the namespace when sel is empty) stopped and whose
// databases are all among dbs (secret/key joined by "+"): the runs a
// successful run for dbs supersedes. A
// holder without a run uid or a database (a person's scale-down) is never
// among them; one whose uid --supersede-runs would refuse (a hand edit) is
// returned in unlisted instead, so that the list plan writes is one
// scale-restore takes.
//
// created (Unix seconds, 0: not known) is when the run was created: a holder
// whose run was created later (a later keep-down, when this run is an argo
// retry of an old one) is not among them.
func HoldsFor(ctx context.Context, cs kubernetes.Interface, ns string, sel Selection, dbs string, created int64) (uids, unlisted []string, err error) {
	f := finder{cs: cs, ns: ns}
	var ws []*Workload
	if sel.Empty() {
		ws, err = f.list(ctx, labels.Everything())
	} else {
		ws, _, err = f.find(ctx, sel)
	}
	if err != nil {
		return nil, nil, err
	}
	set := databaseSet(dbs)
	for _, w := range ws {
		if !w.hasRecord() {
			continue
		}
		for _, h := range recordOf(w).holders() {
			switch {
			case h.runUID == noRunUID || !h.supersededBy(set) || !h.olderThan(created):
			case !listableRunUID(h.runUID):
				if !slices.Contains(unlisted, h.runUID) {
					unlisted = append(unlisted, h.runUID)
				}
			case !slices.Contains(uids, h.runUID):
				uids = append(uids, h.runUID)
			}
		}
	}
	slices.Sort(uids)
	slices.Sort(unlisted)
	return uids, unlisted, nil
}
