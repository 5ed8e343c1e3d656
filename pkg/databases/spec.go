package databases

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/kube"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// Options are the check-databases step's own flags: the list, and the run's
// single-database parameters its entries default to.
type Options struct {
	Action    string
	Databases string
	// MaxSecrets bounds the distinct Secrets of the list (0: no bound). The
	// engine sets it: Argo nests one template per Secret (hold-databases) and
	// refuses any template past its depth limit, which a list could reach after
	// the workloads were stopped.
	MaxSecrets int
	// MaxEntries bounds the entries below the package's MaxEntries (0: that
	// bound). The engine sets it to the largest list its run was measured to
	// hold: Argo fails a workflow whose object outgrows 1 MiB, and when it
	// cannot save even that failure the run stays Running, the workloads stopped.
	MaxEntries int
	// MaxBytes bounds the entries' JSON, defaults applied (0: no bound). The
	// engine sets it with MaxEntries: Argo keeps several copies of the list in
	// the workflow object, uncompressed, and hands the exit handler's steps the
	// plans (entries included) in one piece of at most 128 KiB, so long values
	// outgrow both where many short entries do not.
	MaxBytes int
	// MaxNamesBytes bounds the databases' names (Secret/key, distinct) as the
	// JSON array a result carries, encoded as Tekton's entrypoint writes it (0:
	// no bound). The Tekton check Task sets it: rounds (the run's holder, the
	// migrate order) and decide (rollback-order, rollback-secrets) each write
	// the names twice in one termination message, which the kubelet cuts at
	// 4096 bytes, and a cut message loses every result of its TaskRun.
	MaxNamesBytes int
	Defaults      Defaults
	// The flags of the later actions (rounds, decide, summary).
	Entries     string
	Plans       string
	Outputs     string
	Parallelism string
	Canary      bool
	Policy      string
	// OneEntryPerSecret refuses a list where two entries share a Secret: Tekton
	// fans a run out over its Secrets (a matrix crosses its parameters, so a
	// TaskRun cannot be handed a Secret and a key together), one TaskRun each.
	OneEntryPerSecret bool
	// Secret is the entry pick finds (its only one), or the Secret of the plan
	// whose line plan-line writes.
	Secret string
	// PlanResults is the directory of migrate --plan's results (plan-line).
	PlanResults string
	// Lines are the plan lines, one per Secret, given after the flags (Tekton
	// hands a step an array so): rounds and pick on Tekton; summary takes the
	// migrate lines too.
	Lines []string
	// Turn and TurnWhy are the results of the turn step (go, why), ExitCodeFile
	// the migrate step's exit code file and MigrateResults its results directory:
	// what migrate-line reads.
	Turn           string
	TurnWhy        string
	ExitCodeFile   string
	MigrateResults string
	// LineStep names the plan line's step: empty for plan, "recheck" for the
	// second plan of a failure path.
	LineStep string
	// Policies are the failure policies the engine's Pipeline has (check
	// refuses --policy outside them; empty: all).
	Policies cli.StringSlice
	// FailWhenFailed makes summary on Tekton fail when a migration failed (the
	// run's last task, its verdict).
	FailWhenFailed bool
	// ExpectRollbacks are the Secrets decide chose to roll back: summary on
	// Tekton counts one without a rollback line as a failed rollback.
	ExpectRollbacks cli.StringSlice

	entries     []Entry // parsed by Validate
	plans       []Plan
	outputs     Outputs
	parallelism int
}

// Actions of the step: check the list (the first step of a run), then, from the
// plans, cut the rounds, decide the failure path, write the summary.
const (
	ActionCheck   = "check"
	ActionRounds  = "rounds"
	ActionDecide  = "decide"
	ActionSummary = "summary"
	// ActionPick writes the fields of the entry of one Secret as results, for the
	// later steps of a Tekton TaskRun fanned out over the Secrets.
	ActionPick = "pick"
	// ActionPlanLine writes what migrate --plan reported for one Secret as one
	// line (ResultPlanLine), the result a Tekton plan TaskRun reports.
	ActionPlanLine = "plan-line"
	// ActionMigrateLine writes what migrate reported for one Secret as one line
	// (ResultMigrateLine), the result a Tekton migrate TaskRun reports.
	ActionMigrateLine = "migrate-line"
)

// TakeArgs implements step.ArgsTaker: the plan lines.
func (o *Options) TakeArgs(args []string) { o.Lines = args }

// Flags implements step.Options.
func (o *Options) Flags() []cli.Flag {
	d := &o.Defaults
	return []cli.Flag{
		&cli.StringFlag{Name: "action", Value: ActionCheck, Usage: "check: check --databases (the first step of a run); pick: write the fields of the entry of --secret as results (Tekton: the first step of a TaskRun fanned out over the Secrets; reads no Secret), and with plan lines after the flags its plan too; plan-line: write migrate --plan's results (--plan-results) as one line naming --secret (Tekton: a plan TaskRun's result); rounds: from --entries and --plans, cut the pending databases into the rounds migrate runs them in; decide: the failure path over all databases (--policy) from --plans and --outputs; summary: one line and one result entry per database, from --plans and --outputs", Destination: &o.Action},
		&cli.StringFlag{Name: "entries", Usage: "rounds: check's entries result (the list with the defaults applied)", Destination: &o.Entries},
		&cli.StringFlag{Name: "plans", Usage: "rounds: the plan outputs of the entries, a JSON list of objects in the order of --entries (Argo's aggregated outputs); decide, summary: the plans result of rounds (default: the output databases-plans in --outputs)", Destination: &o.Plans},
		&cli.StringFlag{Name: "outputs", Usage: "decide, summary: the run's per-database outputs, a JSON object whose keys are db-<index>-<step>-<result> (step migrate, recheck or rollback); other keys are ignored", Destination: &o.Outputs},
		&cli.StringFlag{Name: "parallelism", Value: "1", Usage: "rounds, decide: how many databases to migrate (or roll back) at once, 1 to 64", Destination: &o.Parallelism},
		&cli.BoolFlag{Name: "canary", Value: true, Usage: "rounds: migrate the first pending database alone before any other starts", Destination: &o.Canary},
		&cli.StringFlag{Name: "policy", Value: KeepDown, Usage: "decide: the failure policy, keep-down, restore or rollback (the workflows' on-migrate-failure); check: refused outside --policies", Destination: &o.Policy},
		&cli.StringSliceFlag{Name: "policies", Usage: "check: refuse --policy outside these failure policies, comma-separated (Tekton's list: keep-down, restore); empty: --policy is not checked", Destination: &o.Policies},
		&cli.StringFlag{Name: "line-step", Usage: "plan-line: the step the line is of: empty for plan, recheck for the plan again after a failed migration; migrate-line: empty for migrate, rollback for migrate --down-to", Destination: &o.LineStep},
		&cli.StringSliceFlag{Name: "expect-rollbacks", Usage: "summary given lines (Tekton): the Secrets decide chose to roll back (its rollback-secrets result, comma-separated); one without a rollback line that ran makes rollback-failed true", Destination: &o.ExpectRollbacks},
		&cli.BoolFlag{Name: "fail-when-failed", Usage: "summary given lines (Tekton): fail (exit 1) when a pending database is not at its planned target: the run's verdict", Destination: &o.FailWhenFailed},
		&cli.BoolFlag{Name: "one-entry-per-secret", Usage: "check: refuse a list where two entries share a Secret (Tekton: a run fans out over its Secrets, one TaskRun each); pick always does", Destination: &o.OneEntryPerSecret},
		&cli.StringFlag{Name: "secret", Usage: "pick: the Secret whose entry to write (the TaskRun's matrix value); plan-line: the Secret the plan was for", Destination: &o.Secret},
		&cli.StringFlag{Name: "plan-results", Usage: "plan-line: the --results-dir migrate --plan wrote its results in, earlier in the same pod", Destination: &o.PlanResults},
		&cli.StringFlag{Name: "turn", Usage: "migrate-line: the go result of the TaskRun's turn step (true: migrate ran)", Destination: &o.Turn},
		&cli.StringFlag{Name: "turn-why", Usage: "migrate-line: the why result of the turn step (why migrate did not start)", Destination: &o.TurnWhy},
		&cli.StringFlag{Name: "exit-code-file", Usage: "migrate-line: the file holding the migrate step's exit code (Tekton's $(steps.step-migrate.exitCode.path)); plan-line: the plan step's ($(steps.step-plan.exitCode.path)), optional: a recheck whose plan failed for good reports its version as not known", Destination: &o.ExitCodeFile},
		&cli.StringFlag{Name: "migrate-results", Usage: "migrate-line: the --results-dir migrate wrote its results in, earlier in the same pod", Destination: &o.MigrateResults},
		&cli.IntFlag{Name: "max-entries", Usage: "check: refuse a list of more entries than this (0: the most any run takes, 1000); the Argo WorkflowTemplate sets the largest list measured to fit its workflow object", Destination: &o.MaxEntries},
		&cli.IntFlag{Name: "max-bytes", Usage: "check: refuse a list whose entries, with the defaults applied, take more bytes of JSON than this (0: no bound); the Argo WorkflowTemplate sets it with --max-entries", Destination: &o.MaxBytes},
		&cli.IntFlag{Name: "max-names-bytes", Usage: "check: refuse a list whose databases' names (Secret/key) take more bytes than this as a JSON array in a Tekton result (0: no bound); the Tekton check Task sets it, since rounds and decide write the names twice in one 4096-byte termination message", Destination: &o.MaxNamesBytes},
		&cli.IntFlag{Name: "max-secrets", Usage: "check: refuse a list naming more distinct Secrets than this (0: no bound); the Argo WorkflowTemplate sets it, since it nests one template per Secret", Destination: &o.MaxSecrets},
		&cli.StringFlag{Name: "databases", Usage: "the databases of the run: a JSON list of objects with the keys name, secret, key, dir, git-url, git-revision, migrations-image, role, table, to (required)", Destination: &o.Databases},
		&cli.StringFlag{Name: "database-secret", Usage: "default of an entry's secret (the workflow's database-secret)", Destination: &d.Secret},
		&cli.StringFlag{Name: "database-secret-key", Value: "url", Usage: "default of an entry's key", Destination: &d.Key},
		&cli.StringFlag{Name: "migrations-dir", Value: "/migrations", Usage: "default of an entry's dir", Destination: &d.Dir},
		&cli.StringFlag{Name: "git-url", Usage: "default of an entry's git-url (with git-revision and migrations-image, taken only by an entry that names neither git-url nor migrations-image)", Destination: &d.GitURL},
		&cli.StringFlag{Name: "git-revision", Usage: "default of an entry's git-revision", Destination: &d.GitRevision},
		&cli.StringFlag{Name: "migrations-image", Usage: "default of an entry's migrations-image", Destination: &d.MigrationsImage},
		&cli.StringFlag{Name: "migrate-role", Usage: "default of an entry's role", Destination: &d.Role},
		&cli.StringFlag{Name: "table", Value: "goose_db_version", Usage: "default of an entry's table", Destination: &d.Table},
		&cli.StringFlag{Name: "to", Usage: "default of an entry's to", Destination: &d.To},
	}
}

// Validate implements step.Options: the list is read here, so that a bad one is a
// usage error (exit 2) before the step connects to anything.
func (o *Options) Validate() error {
	switch o.Action {
	case ActionCheck, ActionPick:
	case ActionPlanLine:
		if strings.TrimSpace(o.Secret) == "" || strings.TrimSpace(o.PlanResults) == "" {
			return failure.Usagef("--action=plan-line needs --secret (the Secret planned) and --plan-results (the directory of plan's results)")
		}
		if o.LineStep != "" && o.LineStep != stepRecheck {
			return failure.Usagef("--line-step %q is not empty (plan) or recheck", o.LineStep)
		}
		return nil
	case ActionMigrateLine:
		if strings.TrimSpace(o.Secret) == "" || strings.TrimSpace(o.MigrateResults) == "" || strings.TrimSpace(o.ExitCodeFile) == "" {
			return failure.Usagef("--action=migrate-line needs --secret (the Secret migrated), --migrate-results (the directory of migrate's results) and --exit-code-file (migrate's exit code)")
		}
		if o.LineStep != "" && o.LineStep != stepRollback {
			return failure.Usagef("--line-step %q is not empty (migrate) or rollback", o.LineStep)
		}
		if o.Turn != "true" && o.Turn != "false" {
			return failure.Usagef("--turn %q is not true or false: give the go result of the turn step", o.Turn)
		}
		return nil
	case ActionRounds, ActionDecide, ActionSummary:
		return o.validateLater()
	default:
		return failure.Usagef("--action %q is not one of check, pick, plan-line, migrate-line, rounds, decide, summary", o.Action)
	}
	if o.Action == ActionCheck {
		if err := o.checkPolicy(); err != nil {
			return err
		}
	}
	if o.Action == ActionCheck && o.Parallelism != "" {
		// the run's parallelism, refused before the gate (Tekton's check; Argo's
		// guard refuses it first)
		if _, err := ParseParallelism(o.Parallelism); err != nil {
			return err
		}
	}
	entries, err := Parse(o.Databases, o.Defaults)
	if err != nil {
		return err
	}
	if entries == nil {
		return failure.Usagef("--databases is empty: there is no list to check (a run without databases migrates database-secret alone)")
	}
	if o.MaxEntries < 0 || o.MaxEntries > MaxEntries {
		return failure.Usagef("--max-entries %d is not from 0 to %d: give the most entries a run may list, or 0 for %d", o.MaxEntries, MaxEntries, MaxEntries)
	}
	if o.MaxEntries > 0 && len(entries) > o.MaxEntries {
		return failure.Usagef("databases: %d entries, more than the %d one run takes (its workflow must stay within the engine's size limit); split the list into several runs", len(entries), o.MaxEntries)
	}
	if o.MaxBytes < 0 {
		return failure.Usagef("--max-bytes %d is negative: give the most bytes of JSON a run's list may take, or 0 for no bound", o.MaxBytes)
	}
	if o.MaxBytes > 0 {
		if err := checkBytes(entries, o.MaxBytes); err != nil {
			return err
		}
	}
	if o.MaxSecrets < 0 {
		return failure.Usagef("--max-secrets %d is negative: give the most distinct Secrets a run may name, or 0 for no bound", o.MaxSecrets)
	}
	if n := len(Secrets(entries)); o.MaxSecrets > 0 && n > o.MaxSecrets {
		return failure.Usagef("databases: %d distinct Secrets, more than the %d one run takes (it holds a lock per Secret, nested); "+
			"put several databases in one Secret, one key each, or split the list into several runs", n, o.MaxSecrets)
	}
	if o.MaxNamesBytes < 0 {
		return failure.Usagef("--max-names-bytes %d is negative: give the most bytes the databases' names may take in a result, or 0 for no bound", o.MaxNamesBytes)
	}
	if o.MaxNamesBytes > 0 {
		if err := checkNamesBytes(entries, o.MaxNamesBytes); err != nil {
			return err
		}
	}
	if o.OneEntryPerSecret || o.Action == ActionPick {
		if err := oneEntryPerSecret(entries); err != nil {
			return err
		}
	}
	if o.Action == ActionPick {
		if _, ok := entryOf(entries, o.Secret); !ok {
			return failure.Usagef("--secret %q names no entry of the list: give the Secret of one of its entries (the TaskRun's matrix value)", o.Secret)
		}
		if len(o.Lines) > 0 {
			outs, err := planOutputs(entries, o.Lines)
			if err != nil {
				return err
			}
			if o.plans, err = JoinPlans(entries, outs); err != nil {
				return err
			}
		}
	} else if len(o.Lines) > 0 {
		return failure.Usagef("--action=check takes no arguments after the flags (%d given)", len(o.Lines))
	}
	o.entries = entries
	return nil
}

// oneEntryPerSecret refuses entries that share a Secret, naming the first pair of
// each Secret.
func oneEntryPerSecret(entries []Entry) error {
	var bad problems
	first := map[string]int{}
	for i, e := range entries {
		j, ok := first[e.Secret]
		if !ok {
			first[e.Secret] = i
			continue
		}
		if j >= 0 {
			bad.add("%s and %s share the Secret %s", where(j, entries[j].Name), where(i, e.Name), e.Secret)
			first[e.Secret] = -1 // said once per Secret
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return failure.Usagef("databases: %s; a Tekton run migrates one database per Secret (its TaskRuns fan out over the Secrets): give each database a Secret of its own, or run this list on Argo", bad.message())
}

// entryOf returns the entry of the Secret, which oneEntryPerSecret made the only one.
func entryOf(entries []Entry, secret string) (int, bool) {
	for i, e := range entries {
		if e.Secret == secret {
			return i, true
		}
	}
	return -1, false
}

// checkBytes refuses entries whose JSON (the entries result other steps read) is
// longer than limit, naming the longest entry: one very long value is the likely
// cause of a list too large.
func checkBytes(entries []Entry, limit int) error {
	total, longest, at := 1, 0, 0 // the brackets, a comma between entries
	for i, e := range entries {
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("databases: encoding entry %d: %w", i+1, err)
		}
		total += len(b) + 1
		if len(b) > longest {
			longest, at = len(b), i
		}
	}
	if total <= limit {
		return nil
	}
	return failure.Usagef("databases: the list takes %d bytes with its defaults applied, more than the %d one run takes (its workflow must stay within the engine's size limit); "+
		"its longest entry is %s (%d bytes): shorten long values or split the list into several runs", total, limit, where(at, entries[at].Name), longest)
}

// validateLater reads the flags of the actions after plan.
func (o *Options) validateLater() error {
	var err error
	if o.Action == ActionRounds || o.Action == ActionDecide {
		if o.parallelism, err = ParseParallelism(o.Parallelism); err != nil {
			return err
		}
	}
	if o.Action == ActionRounds && len(o.Lines) > 0 {
		// Tekton: the list itself (no entries result travels, it may outgrow a
		// TaskRun's results) and a line per Secret
		entries, err := Parse(o.Databases, o.Defaults)
		if err != nil {
			return err
		}
		if entries == nil {
			return failure.Usagef("--databases is empty: rounds with plan lines reads the run's list")
		}
		if err := oneEntryPerSecret(entries); err != nil {
			return err
		}
		outs, err := planOutputs(entries, o.Lines)
		if err != nil {
			return err
		}
		o.entries = entries
		o.plans, err = JoinPlans(entries, outs)
		return err
	}
	if (o.Action == ActionSummary || o.Action == ActionDecide) && len(o.Lines) > 0 {
		// Tekton: the list, a plan line per Secret and a migrate line per
		// pending Secret whose TaskRun reported
		entries, err := Parse(o.Databases, o.Defaults)
		if err != nil {
			return err
		}
		if entries == nil {
			return failure.Usagef("--databases is empty: %s with lines reads the run's list", o.Action)
		}
		if err := oneEntryPerSecret(entries); err != nil {
			return err
		}
		o.entries = entries
		if o.plans, o.outputs, err = linesOutputs(entries, o.Lines); err != nil {
			return err
		}
		return o.checkDecidePolicy()
	}
	if len(o.Lines) > 0 {
		return failure.Usagef("--action=%s takes no arguments after the flags (%d given)", o.Action, len(o.Lines))
	}
	if o.Action == ActionRounds {
		if err := json.Unmarshal([]byte(o.Entries), &o.entries); err != nil || len(o.entries) == 0 {
			return failure.Usagef("--entries is not check-databases' entries result (a non-empty JSON list of entries)")
		}
		var outs []map[string]string
		if err := json.Unmarshal([]byte(o.Plans), &outs); err != nil {
			return failure.Usagef("--plans is not a JSON list of the plans' outputs (objects of strings)")
		}
		o.plans, err = JoinPlans(o.entries, outs)
		return err
	}
	if o.outputs, err = ParseOutputs(o.Outputs); err != nil {
		return err
	}
	plans := o.Plans
	if strings.TrimSpace(plans) == "" {
		plans = o.outputs[PlansOutput] // given every global output, as the exit handler once did
	}
	if err := json.Unmarshal([]byte(plans), &o.plans); err != nil || len(o.plans) == 0 {
		return failure.Usagef("--plans (or the output %s in --outputs) is not the plans result of --action=rounds (a non-empty JSON list)", PlansOutput)
	}
	return o.checkDecidePolicy()
}

func (o *Options) checkDecidePolicy() error {
	if o.Action == ActionDecide && o.Policy != KeepDown && o.Policy != Restore && o.Policy != Rollback {
		return failure.Usagef("--policy %q is not keep-down, restore or rollback", o.Policy)
	}
	return nil
}

// checkPolicy refuses, before the gate, a run's on-migrate-failure that is not
// a policy or not one its engine's Pipeline has.
func (o *Options) checkPolicy() error {
	all := []string{KeepDown, Restore, Rollback}
	has := o.Policies.Value()
	if len(has) == 0 {
		return nil // Argo's guard checks on-migrate-failure itself
	}
	for _, p := range has {
		if !slices.Contains(all, p) {
			return failure.Usagef("--policies: %q is not keep-down, restore or rollback", p)
		}
	}
	if !slices.Contains(has, o.Policy) {
		if slices.Contains(all, o.Policy) {
			return failure.Usagef("on-migrate-failure %q is not built for this Pipeline yet: use %s (or the Argo WorkflowTemplate, which has every policy)", o.Policy, strings.Join(has, " or "))
		}
		return failure.Usagef("on-migrate-failure %q is not %s", o.Policy, strings.Join(has, ", "))
	}
	return nil
}

// PlansOutput is the workflow output (Argo's globalName) that holds the plans
// result of --action=rounds: --action=decide and summary read it from --outputs
// when --plans is not given.
const PlansOutput = "databases-plans"

// runLater runs the actions after plan: no API, no database, only results.
func (o *Options) runLater(env *step.Env) error {
	switch o.Action {
	case ActionRounds:
		rounds := Rounds(o.plans, o.parallelism, o.Canary)
		pending, downtime := 0, false
		for _, p := range o.plans {
			if p.Pending {
				pending++
				downtime = downtime || p.NeedsDowntime
			}
		}
		if len(o.Lines) > 0 {
			// Tekton: the pending Secrets in the order migrate starts them
			// (its matrix); the plans stay in the lines, which the later
			// steps are given too
			env.Results.SetJSON("order", order(rounds))
		} else {
			env.Results.SetJSON("plans", o.plans)
			env.Results.SetJSON("rounds", rounds)
		}
		env.Results.Set("pending", strconv.FormatBool(pending > 0))
		env.Results.Set("needs-downtime", strconv.FormatBool(downtime))
		env.Results.Set("holder", Holder(o.plans))
		env.Log.Info("rounds", "databases", len(o.plans), "pending", pending, "rounds", len(rounds), "parallelism", o.parallelism, "canary", o.Canary)
	case ActionDecide:
		d := Decide(o.plans, o.outputs, o.Policy, o.parallelism)
		rollback := d.Rollback
		if rollback == nil {
			rollback = [][]Plan{}
		}
		env.Results.Set("migrate-failed", strconv.FormatBool(d.MigrateFailed))
		env.Results.Set("restore", strconv.FormatBool(d.Restore))
		env.Results.SetJSON("rollback", rollback)
		env.Results.Set("restore-after-rollback", strconv.FormatBool(d.RestoreAfterRollback))
		if len(o.Lines) > 0 {
			// Tekton: what the run's TaskRuns show (bounded: it names
			// databases), and the rollbacks' matrix
			why := d.Why
			if len(why) > maxWhyResult {
				why = strings.ToValidUTF8(why[:maxWhyResult], "") + "… (the step's log has it whole)"
			}
			env.Results.Set("why", why)
			secrets := []string{}
			for _, r := range rollback {
				for _, p := range r {
					secrets = append(secrets, p.Secret)
				}
			}
			env.Results.SetJSON("rollback-order", secrets)
			env.Results.Set("rollback-secrets", strings.Join(secrets, ","))
			env.Results.Set("rollback-any", strconv.FormatBool(len(secrets) > 0))
		}
		env.Log.Info(d.Why, "policy", o.Policy)
	case ActionSummary:
		rows := Summarize(o.plans, o.outputs)
		lines := SummaryLines(rows)
		for _, l := range lines {
			env.Log.Info(l)
		}
		if len(o.Lines) == 0 {
			env.Results.SetJSON("databases", rows)
			return nil
		}
		var missing []string
		for _, secret := range o.ExpectRollbacks.Value() {
			if secret = strings.TrimSpace(secret); secret == "" {
				continue // the Task's default, and decide's when it rolls back none
			}
			i, ok := entryOf(o.entries, secret)
			if !ok {
				return failure.Usagef("--expect-rollbacks names the Secret %q, which no entry of the list has", secret)
			}
			if !o.outputs.ran(o.plans[i].Index, stepRollback) {
				missing = append(missing, o.plans[i].Name)
			}
		}
		return tektonVerdict(env, rows, lines[len(lines)-1], o.FailWhenFailed, missing)
	}
	return nil
}

// pick writes the entry of o.Secret, each field a result named after its key,
// and its position in the list (index, from 0).
func (o *Options) pick(env *step.Env) {
	i, _ := entryOf(o.entries, o.Secret)
	e := o.entries[i]
	env.Results.Set("index", strconv.Itoa(i))
	env.Results.Set("name", e.Name)
	env.Results.Set("secret", e.Secret)
	env.Results.Set("key", e.Key)
	env.Results.Set("dir", e.Dir)
	env.Results.Set("git-url", e.GitURL)
	env.Results.Set("git-revision", e.GitRevision)
	env.Results.Set("migrations-image", e.MigrationsImage)
	env.Results.Set("role", e.Role)
	env.Results.Set("table", e.Table)
	env.Results.Set("to", e.To)
	if o.plans != nil {
		p := o.plans[i]
		env.Results.Set("pending", strconv.FormatBool(p.Pending))
		env.Results.Set("planned-version", p.PlannedVersion)
		env.Results.Set("planned-target", p.PlannedTarget)
		env.Results.Set("planned-files-digest", p.FilesDigest)
		env.Results.Set("git-commit", p.GitCommit)
		env.Results.Set("migrations-digest", p.MigrationsDigest)
	}
	env.Log.Info("entry picked", "name", e.Name, "secret", e.Secret, "index", i, "with-plan", o.plans != nil)
}

// namespaceUsage replaces kube.Options' wording: the Secrets are beside the run.
const namespaceUsage = "namespace of the run and its database Secrets (default: the pod's own namespace in a cluster, else the kubeconfig context's)"

// Spec describes the check-databases step binary.
func Spec() step.Spec {
	ko := &kube.Options{}
	o := &Options{}
	return step.Spec{
		Name:  "check-databases",
		Usage: "check the list of databases a run migrates before anything else runs",
		Description: "reads --databases (a JSON list), applies the defaults (the single-database flags), and refuses (exit 2), naming every bad entry, " +
			"a list that is not a JSON list of objects, an empty one, an unknown or repeated key, a value that is not a string, an invalid Secret name or key, a git-url that is not valid or holds credentials (as migrate refuses it), a to that is not a version, a table or role migrate would refuse (a version table that is not a lowercase name or schema.name, role none), " +
			"two entries for one database (the same Secret and key) or with one name, more entries than --max-entries, more bytes than --max-bytes or more distinct Secrets than --max-secrets. It then reads each Secret and refuses (exit 1) one that does not exist, " +
			"or lacks an entry's key, or holds nothing there; it never prints a value. " +
			"The later actions read what the run's other steps reported and touch nothing: --action=rounds pairs the entries with their plans' outputs and cuts the pending databases into rounds " +
			"(with --canary the first alone; then at most --parallelism at once); --action=decide applies the failure policy over all the databases; " +
			"--action=summary logs one line per database and writes the run summary. " +
			"With --one-entry-per-secret (Tekton) check refuses a list where two entries share a Secret. --action=pick writes the entry of --secret, each key a result of its own, for the later steps of its TaskRun; " +
			"given the plan lines after the flags (PLAN-LINE..., one argument each, as Tekton hands an array), also what its plan reported. " +
			"--action=plan-line writes what migrate --plan reported for --secret (its results in --plan-results) as one JSON line. " +
			"--action=migrate-line writes what migrate reported for --secret (its results in --migrate-results, its exit code in --exit-code-file, or why its --turn never came) as one JSON line, and exits 75 when migrate exited 75, 137 or 143 (a rerun may fix it). " +
			"On Tekton --action=rounds reads --databases and the plan lines (paired by Secret, since Tekton sorts a fanned-out task's results by TaskRun name) instead of --entries and --plans; " +
			"--action=summary reads --databases, the plan lines and the migrate lines, and with --fail-when-failed fails (exit 1) when a pending database is not at its planned target; --action=decide reads the recheck lines too (plan-line --line-step=recheck). " +
			"Results: entries (check: the list with the defaults applied), secrets (check: the distinct Secret names; sorted), count (check), " +
			"index (pick), name, secret, key, dir, git-url, git-revision, migrations-image, role, table, to (pick), " +
			"planned-version, planned-target, planned-files-digest, git-commit, migrations-digest (pick with plan lines, which also writes pending), plan-line (plan-line), " +
			"plans (rounds), rounds (rounds), order (rounds with plan lines), pending (rounds), needs-downtime (rounds), holder (rounds), " +
			"migrate-line (migrate-line), failed (migrate-line), " +
			"migrate-failed (decide; summary on Tekton), restore (decide), rollback (decide), restore-after-rollback (decide), why, rollback-order, rollback-any, rollback-secrets (decide on Tekton), databases (summary), rollback-failed (summary on Tekton), summary (summary on Tekton: how many databases ended how).",
		Args:    "[PLAN-LINE... MIGRATE-LINE...]",
		Options: []step.Options{kubeOptions{ko}, o},
		Run: func(ctx context.Context, env *step.Env) error {
			switch o.Action {
			case ActionPick:
				o.pick(env)
				return nil
			case ActionPlanLine:
				line, err := o.readPlanLineAfter()
				if err != nil {
					return err
				}
				if o.LineStep != "" {
					line["step"] = o.LineStep
				}
				if line[step.ResultError] != "" {
					env.Log.Warn("the recheck's plan failed: its version is not known to decide", "secret", o.Secret, "error", line[step.ResultError])
				}
				env.Results.SetJSON(ResultPlanLine, line)
				return nil
			case ActionMigrateLine:
				line, failed, err := o.readMigrateLine()
				if err != nil {
					return err
				}
				if o.LineStep != "" {
					line["step"] = o.LineStep
				}
				env.Results.SetJSON(ResultMigrateLine, line)
				env.Results.Set(ResultFailed, strconv.FormatBool(failed))
				if failed {
					env.Log.Warn("the migration failed: the run starts no other", "secret", o.Secret, "error", line[step.ResultError])
				}
				return nil
			case ActionCheck:
			default:
				return o.runLater(env)
			}
			c, err := ko.ConnectStep("check-databases", env.Log)
			if err != nil {
				return err
			}
			if err := CheckSecrets(ctx, c.Interface, c.Namespace, o.entries); err != nil {
				return err
			}
			secrets := Secrets(o.entries)
			env.Results.SetJSON("entries", o.entries)
			env.Results.SetJSON("secrets", secrets)
			env.Results.Set("count", strconv.Itoa(len(o.entries)))
			env.Log.Info("databases checked", "databases", len(o.entries), "secrets", len(secrets), "namespace", c.Namespace)
			return nil
		},
	}
}

// kubeOptions are kube.Options with --namespace described for this step.
type kubeOptions struct{ *kube.Options }

func (k kubeOptions) Flags() []cli.Flag {
	flags := k.Options.Flags()
	for _, f := range flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Name == "namespace" {
			sf.Usage = namespaceUsage
		}
	}
	return flags
}

// checkNamesBytes refuses a list whose Secret/key names, as a JSON array in a
// Tekton result, take more than max bytes. Parse has refused two entries of
// one Secret and key, so the names are distinct.
func checkNamesBytes(entries []Entry, max int) error {
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Secret + "/" + e.Key
	}
	b, _ := json.Marshal(names)
	if n := encodedLen(string(b)); n > max {
		return failure.Usagef("databases: the names of the %d databases (Secret/key) take %d bytes in a result, more than the %d a Tekton run carries "+
			"(rounds and decide write them twice in one termination message, which the kubelet cuts at 4096 bytes); use shorter Secret names or keys, or split the list into several runs",
			len(names), n, max)
	}
	return nil
}
