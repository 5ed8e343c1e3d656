package workload

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/chartreuse-go/chartreuse/pkg/kube"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// SelectOptions choose the workloads: --selector and/or --workload.
type SelectOptions struct {
	Selector  string
	Workloads cli.StringSlice
	// RequireSome refuses an empty selection (scale-down must not stop "everything").
	RequireSome bool

	sel Selection
}

// Flags implements step.Options.
func (o *SelectOptions) Flags() []cli.Flag {
	selUsage := "label selector of the workloads (Deployments, StatefulSets, CronJobs), e.g. app.kubernetes.io/part-of=shop"
	wlUsage := "a workload as kind/name (deployment, statefulset, cronjob or deploy, sts, cj); repeatable, or comma-separated"
	if !o.RequireSome {
		selUsage += " (default: every workload carrying a scale-down record)"
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "selector", Usage: selUsage, Destination: &o.Selector},
		&cli.StringSliceFlag{Name: "workload", Usage: wlUsage, Destination: &o.Workloads},
	}
}

// Validate implements step.Options.
func (o *SelectOptions) Validate() error {
	sel, err := parseSelection("--selector", o.Selector, o.Workloads.Value())
	if err != nil {
		return err
	}
	o.sel = sel
	if o.RequireSome && o.sel.Empty() {
		return errors.New("no workloads chosen: pass --selector and/or --workload kind/name")
	}
	return nil
}

// parseSelection reads a label selector (its flag named flag, for the message)
// and kind/name references; blank ones are skipped.
func parseSelection(flag, selector string, refs []string) (Selection, error) {
	var out Selection
	if s := strings.TrimSpace(selector); s != "" {
		sel, err := labels.Parse(s)
		if err != nil {
			return Selection{}, fmt.Errorf("%s %q is not a valid label selector: %v", flag, selector, step.OneLine(err.Error()))
		}
		out.Selector = sel
	}
	for _, v := range refs {
		if strings.TrimSpace(v) == "" {
			continue
		}
		r, err := ParseRef(v)
		if err != nil {
			return Selection{}, err
		}
		out.Refs = append(out.Refs, r)
	}
	return out, nil
}

// parseSelectionIn is parseSelection for workloads in namespace ns, which must
// be a valid namespace name or empty.
func parseSelectionIn(flag, selector string, refs []string, ns string) (Selection, error) {
	sel, err := parseSelection(flag, selector, refs)
	if err != nil {
		return Selection{}, err
	}
	return sel, (&kube.Options{Namespace: ns}).Validate()
}

// Selection is the validated selection.
func (o *SelectOptions) Selection() Selection { return o.sel }

// RunOptions are the run flags of scale-down and scale-restore.
type RunOptions struct {
	RunID         string
	Timeout       time.Duration
	ProgressEvery time.Duration
	// RunUID and DatabaseSecret are flags of scale-down only: recorded with
	// each record it writes, or added to its holders.
	RunUID         string
	DatabaseSecret string
	GitCommit      string // written in the Events
	// RunCreated is when the run was created (both steps): a run lets go of no
	// hold of a run created after it. Parsed into created.
	RunCreated string
	created    int64
	// The flags of scale-restore only.
	OnlyRunUID        string
	SupersedeDatabase string
	SupersedeRuns     string
	WaitReady         bool
	ReadyTimeout      time.Duration

	restore bool
}

// DownOptions returns the run flags of scale-down.
func DownOptions() *RunOptions { return &RunOptions{} }

// RestoreOptions returns the run flags of scale-restore.
func RestoreOptions() *RunOptions { return &RunOptions{restore: true} }

// Flags implements step.Options.
func (o *RunOptions) Flags() []cli.Flag {
	runID := &cli.StringFlag{Name: "run-id", Usage: "who is doing this, recorded on each workload and in its Events, e.g. the workflow name (default: the host name, i.e. the pod name)", Destination: &o.RunID}
	progress := &cli.DurationFlag{Name: "progress-interval", Value: 10 * time.Second, Usage: "how often to log progress while waiting", Destination: &o.ProgressEvery}
	if !o.restore {
		return []cli.Flag{
			runID,
			&cli.StringFlag{Name: "run-uid", Usage: "a value unique to this run (Argo: {{workflow.uid}}, Tekton: $(context.pipelineRun.uid)), recorded on each workload this run stops (" + AnnotationByRunUID + ") so that its failure path can restore only those (scale-restore --only-run-uid); a workload another run already stopped keeps that run's record and gets this run added to its holders (" + AnnotationHeldBy + "); empty: not recorded", Destination: &o.RunUID},
			&cli.StringFlag{Name: "database-secret", Usage: "the database this run migrates as secret/key (the Secret and the key holding its URL), or those of a run of several databases joined by + (orders-db/url+billing-db/url), recorded with the run uid among the holders (" + AnnotationHeldBy + "), so that a later run that migrates all of them successfully can supersede this run's hold (scale-restore --supersede-database)", Destination: &o.DatabaseSecret},
			runCreated(&o.RunCreated),
			&cli.StringFlag{Name: "git-commit", Usage: "the commit the run's migrations come from (plan's git-commit result), written in each workload's ScaledDownForMigration Event; empty: the image's migrations", Destination: &o.GitCommit},
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "how long to wait for the workloads' pods to stop", Destination: &o.Timeout},
			progress,
		}
	}
	return []cli.Flag{
		runID,
		&cli.StringFlag{Name: "only-run-uid", Usage: "restore only the workloads this run holds stopped (scale-down --run-uid with this value), and leave every other record (another run's, or one without a run uid) as it is, saying so; a workload another run holds too stays stopped, with this run taken off its holders, until the last holder lets go; empty: restore every record in the selection", Destination: &o.OnlyRunUID},
		&cli.StringFlag{Name: "supersede-database", Usage: "with --only-run-uid, after this run migrated this database (secret/key) successfully (or several joined by +, orders-db/url+billing-db/url): also take off the holders every run that joined them before this run (an earlier scale-down) all of whose databases are among them, as this run's migration supersedes what they decided (a keep-down); a run that joined after it (a later run, when this one is an argo retry) keeps holding; a run that also named another database, and holders whose database is not recorded (a person's scale-down without --run-uid), keep holding", Destination: &o.SupersedeDatabase},
		runCreated(&o.RunCreated),
		&cli.StringFlag{Name: "supersede-runs", Usage: "with --supersede-database: the runs (uids, comma-separated) plan found holding the selection for those databases (its superseded-holds result), which let go too wherever they stand among the holders: a run that stopped nothing (nothing pending, or stop-workloads=auto with nothing to stop) otherwise supersedes no earlier keep-down; a listed run that also named another database keeps holding", Destination: &o.SupersedeRuns},
		&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "how long reading and restoring the workloads may take in all (an unreachable API server, endless conflicts), not counting the wait for readiness (--ready-timeout); then exit 75", Destination: &o.Timeout},
		progress,
		&cli.BoolFlag{Name: "wait-ready", Usage: "wait until the restored Deployments and StatefulSets report all replicas ready, each priority group before restoring the next; with nothing to restore (an earlier attempt restored them), the selected ones that run replicas", Destination: &o.WaitReady},
		&cli.DurationFlag{Name: "ready-timeout", Value: 5 * time.Minute, Usage: "with --wait-ready: how long to wait in all for the restored workloads to be ready; then the step fails with exit 1, naming each workload not ready with its ready/desired replicas (not 75: the records are gone, so a retry would have nothing left to wait for)", Destination: &o.ReadyTimeout},
	}
}

// Validate implements step.Options.
func (o *RunOptions) Validate() error {
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout %s must be positive, e.g. 10m", o.Timeout)
	}
	if o.ProgressEvery <= 0 {
		return fmt.Errorf("--progress-interval %s must be positive, e.g. 10s", o.ProgressEvery)
	}
	// Only a restore that waits reads it: the exit handler's restores (no wait)
	// must not fail over it after a migration, leaving the application stopped.
	if o.restore && o.WaitReady && o.ReadyTimeout <= 0 {
		return fmt.Errorf("--ready-timeout %s must be positive, e.g. 5m", o.ReadyTimeout)
	}
	o.RunID = strings.TrimSpace(o.RunID)
	if o.RunID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "unknown"
		}
		o.RunID = h
	}
	if !oneLineValue(o.RunID) {
		return fmt.Errorf("--run-id must be one line of at most 253 characters, e.g. the workflow name")
	}
	for _, u := range []struct {
		flag string
		v    *string
	}{{"--run-uid", &o.RunUID}, {"--only-run-uid", &o.OnlyRunUID}} {
		*u.v = strings.TrimSpace(*u.v)
		// one check with --supersede-runs: the uid stands in held-by and in
		// plan's superseded-holds list
		if *u.v != "" && !listableRunUID(*u.v) {
			return fmt.Errorf("%s %q must be one word of at most 253 characters without commas, colons, blanks or tabs (and not %q), e.g. the workflow's uid", u.flag, *u.v, noRunUID)
		}
	}
	for _, u := range []struct {
		flag string
		v    *string
	}{{"--database-secret", &o.DatabaseSecret}, {"--supersede-database", &o.SupersedeDatabase}} {
		v, err := secretList(u.flag, *u.v)
		if err != nil {
			return err
		}
		*u.v = v
	}
	o.GitCommit = strings.ToLower(strings.TrimSpace(o.GitCommit))
	if o.GitCommit != "" && !fullSHA(o.GitCommit) {
		return fmt.Errorf("--git-commit %q is not a full commit SHA (40 hexadecimal digits): pass plan's git-commit result unchanged, or nothing", o.GitCommit)
	}
	if o.SupersedeDatabase != "" && o.OnlyRunUID == "" {
		return fmt.Errorf("--supersede-database needs --only-run-uid: without it every record of the selection is restored anyway")
	}
	created, err := ParseRunCreated("--run-created", o.RunCreated)
	if err != nil {
		return err
	}
	o.created = created
	runs, err := RunList("--supersede-runs", o.SupersedeRuns)
	if err != nil {
		return err
	}
	o.SupersedeRuns = runs
	if o.SupersedeRuns != "" && o.SupersedeDatabase == "" {
		return fmt.Errorf("--supersede-runs needs --supersede-database: a run lets go of another's hold only for the databases it migrated")
	}
	return nil
}

// runCreated is the --run-created flag of the steps that hold or let go of
// workloads for a run.
func runCreated(dest *string) cli.Flag {
	return &cli.StringFlag{Name: "run-created", Usage: "when this run was created, RFC 3339 (Argo: {{workflow.creationTimestamp}}; Tekton: the gate's run-created result): recorded with this run among the holders (" + AnnotationHeldBy + ", <uid>" + CreatedSeparator + "<unix seconds>), and a run lets go of no hold of a run created after it (an argo retry of an old run never lifts a later run's keep-down); empty: not known (every hold counts as older)", Destination: dest}
}

// ParseRunCreated reads a --run-created value: RFC 3339, or empty (0).
func ParseRunCreated(flag, v string) (int64, error) {
	if v = strings.TrimSpace(v); v == "" {
		return 0, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil || t.Unix() <= 0 {
		return 0, fmt.Errorf("%s %q is not a time in RFC 3339 (e.g. 2026-12-07T09:30:00Z): pass the run's creation time as the workflow gives it, or nothing", flag, v)
	}
	return t.Unix(), nil
}

// RunList checks a list of run uids (comma-separated, as plan's
// superseded-holds result writes it) and returns it without blanks.
func RunList(flag, v string) (string, error) {
	var uids []string
	for _, u := range strings.Split(v, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if !listableRunUID(u) {
			return "", fmt.Errorf("%s: %q is not a run uid: give plan's superseded-holds result unchanged (uids joined by commas), or nothing", flag, u)
		}
		uids = append(uids, u)
	}
	return strings.Join(uids, ","), nil
}

// listableRunUID reports whether u can stand in a --supersede-runs list: one
// word of at most 253 characters, without the separators of the holder list.
func listableRunUID(u string) bool {
	return u != "" && oneLineValue(u) && !strings.ContainsAny(u, ",: \t") && u != noRunUID
}

// secretList checks the value of --database-secret or --supersede-database:
// empty, one database, or several joined by "+" (a run of several databases),
// none twice. A database is secret/key, the Secret and the key holding its URL
// (the workflows pass these), or a bare Secret name (a person's scale-down): a
// bare name and a secret/key never match, so a run for one key of a Secret
// never supersedes a hold on another. It returns the list without blanks
// around the pieces.
func secretList(flag, v string) (string, error) {
	if strings.TrimSpace(v) == "" {
		return "", nil
	}
	parts := strings.Split(v, DatabaseSeparator)
	seen := map[string]bool{}
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return "", fmt.Errorf("%s %q has an empty database at position %d: give databases as secret/key joined by %q, e.g. orders-db/url+billing-db/url", flag, v, i+1, DatabaseSeparator)
		}
		secret, key, keyed := strings.Cut(p, KeySeparator)
		if errs := validation.IsDNS1123Subdomain(secret); len(errs) > 0 {
			return "", fmt.Errorf("%s: %q is not a Secret name: %s; give databases as secret/key joined by %q, e.g. orders-db/url+billing-db/url", flag, secret, strings.Join(errs, "; "), DatabaseSeparator)
		}
		if errs := validation.IsConfigMapKey(key); keyed && len(errs) > 0 {
			return "", fmt.Errorf("%s: %q is not a Secret key: %s; give databases as secret/key joined by %q, e.g. orders-db/url+billing-db/url", flag, key, strings.Join(errs, "; "), DatabaseSeparator)
		}
		if seen[p] {
			return "", fmt.Errorf("%s names database %q twice: give each database once", flag, p)
		}
		seen[p] = true
		parts[i] = p
	}
	return strings.Join(parts, DatabaseSeparator), nil
}

// oneLineValue reports whether v fits an annotation value the way the steps use
// them: one line, at most 253 characters.
func oneLineValue(v string) bool {
	return len(v) <= 253 && !strings.ContainsAny(v, "\n\r")
}

func fullSHA(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
