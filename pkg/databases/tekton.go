package databases

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// A Tekton run fans out over its Secrets, one TaskRun each, and gets the
// results of a fanned-out task back as arrays sorted by TaskRun name, not in
// the list's order; a TaskRun that wrote no value shifts them. So each plan
// TaskRun reports one line, a JSON object naming its Secret, and the later
// steps pair the lines with the entries by Secret.

// PlanLineKeys are the results of migrate --plan a plan line carries, with the
// Secret: what JoinPlans reads.
var PlanLineKeys = []string{"pending", "current-version", "target-version", "files-digest", "git-commit", "migrations-digest", "needs-downtime"}

// ResultPlanLine is the result --action=plan-line writes.
const ResultPlanLine = "plan-line"

// readPlanLine builds the plan line of secret from the result files migrate
// --plan wrote in dir. pending and current-version must be there (plan
// finished); the others may be absent (empty).
func readPlanLine(dir, secret string) (map[string]string, error) {
	line := map[string]string{"secret": secret}
	for _, k := range PlanLineKeys {
		b, err := os.ReadFile(filepath.Join(dir, k))
		switch {
		case errors.Is(err, fs.ErrNotExist) && k != "pending" && k != "current-version":
			b = nil
		case err != nil:
			return nil, fmt.Errorf("reading plan's result %s in %s (plan must run before plan-line, with --results-dir there): %w", k, dir, err)
		}
		line[k] = strings.TrimSpace(string(b))
	}
	return line, nil
}

// planOutputs pairs the plan lines with the entries by Secret and returns the
// outputs in the entries' order, for JoinPlans. A line that is not a JSON
// object of strings naming a Secret of the list, a Secret with two lines, or
// an entry without one is a usage error: the Pipeline wired them wrong.
func planOutputs(entries []Entry, lines []string) ([]map[string]string, error) {
	bySecret := map[string]map[string]string{}
	for i, l := range lines {
		var o map[string]string
		if err := json.Unmarshal([]byte(l), &o); err != nil {
			return nil, failure.Usagef("plan line %d is not a JSON object of strings (the plan-line result of a plan TaskRun): %v", i+1, err)
		}
		s := o["secret"]
		if _, dup := bySecret[s]; dup {
			return nil, failure.Usagef("plan line %d names the Secret %q again: give each plan TaskRun's line once", i+1, s)
		}
		if _, ok := entryOf(entries, s); !ok {
			return nil, failure.Usagef("plan line %d names the Secret %q, which no entry of the list has: give the lines of this run's plan", i+1, s)
		}
		bySecret[s] = o
	}
	outs := make([]map[string]string, len(entries))
	var missing []string
	for i, e := range entries {
		o, ok := bySecret[e.Secret]
		if !ok {
			missing = append(missing, where(i, e.Name))
			continue
		}
		outs[i] = o
	}
	if len(missing) > 0 {
		return nil, failure.Usagef("no plan line for %s: every entry's plan must have succeeded before this step (%d lines for %d entries)", strings.Join(missing, ", "), len(lines), len(entries))
	}
	return outs, nil
}

// order is the pending Secrets in the order migrate starts them: the rounds
// flattened (with canary the first alone, then the list's order).
func order(rounds [][]Plan) []string {
	out := []string{}
	for _, r := range rounds {
		for _, p := range r {
			out = append(out, p.Secret)
		}
	}
	return out
}

// ActionMigrateLine's results: the line a migrate TaskRun reports, and whether
// its migration failed (which the turns of the run's other TaskRuns read).
const (
	ResultMigrateLine = "migrate-line"
	ResultFailed      = "failed"
)

// MigrateLineKeys are the results of migrate a migrate line carries, with the
// Secret, "step": "migrate", and "ran" (whether its turn came).
var MigrateLineKeys = []string{"current-version", "target-version", "applied-versions", "sql-seconds", step.ResultError}

// rerunCodes are migrate's exit codes a rerun may fix: 75, a transient failure
// (design.md), and 137 and 143, the process killed (the OOM killer, SIGTERM):
// the codes Argo's retries take too. Tekton's entrypoint writes -1 (Go's
// ExitCode of a process a signal killed), also a rerun.
var rerunCodes = []int{75, 137, 143}

// exitCodeWait bounds how long migrate-line waits for the exit code file: the
// entrypoint writes it just after the file that starts the next step.
var exitCodeWait = 10 * time.Second

// Bounds of a migrate line. Its step's termination message holds its results
// JSON-encoded once more, and the kubelet keeps at most 12288 bytes of messages
// per pod, shared by its containers (2457 each for the five of a migrate or
// rollback TaskRun's pod); past it the message no longer parses and the TaskRun
// succeeds without results. So the line, encoded twice, stays within
// maxLineEncoded: its error is cut until it fits, and a list of applied
// versions longer than maxLineApplied keeps its first and last halves (the
// count is applied-count).
const (
	maxLineEncoded = 1800
	maxLineApplied = 40
)

// encodedLen is the length of s once it is a JSON string inside a JSON
// message, as the entrypoint writes a result.
func encodedLen(s string) int {
	b, _ := json.Marshal(s)
	return len(b)
}

// readPlanLineAfter is readPlanLine after the plan step's exit code, when
// --exit-code-file gives it. The plan step of a recheck runs with onError:
// continue: a plan that failed for good there (exit 1: a dirty database, which
// migrate --plan refuses) becomes a line without current-version, which decide
// reads as not known, so that the policy still applies to the other databases
// (as on Argo) instead of the run stopping before decide. A rerun code fails
// the step (75), so that the TaskRun's retries plan again. A failed first plan
// never reaches this step (stopAndFail), but fails it too if it does.
func (o *Options) readPlanLineAfter() (map[string]string, error) {
	if o.ExitCodeFile != "" {
		code, err := readExitCode(o.ExitCodeFile)
		if err != nil {
			return nil, err
		}
		switch {
		case code == 0:
		case code < 0 || slices.Contains(rerunCodes, code):
			return nil, failure.Transientf("the plan of %s failed (exit %d), which a rerun may fix: see the plan step's log", o.Secret, code)
		case o.LineStep != stepRecheck:
			return nil, failure.Permanentf("the plan of %s failed (exit %d): see the plan step's log", o.Secret, code)
		default:
			b, _ := os.ReadFile(filepath.Join(o.PlanResults, step.ResultError))
			line := map[string]string{"secret": o.Secret, "current-version": "", step.ResultError: cmp.Or(strings.TrimSpace(string(b)), fmt.Sprintf("migrate --plan exited %d", code))}
			boundLine(line)
			return line, nil
		}
	}
	return readPlanLine(o.PlanResults, o.Secret)
}

// readExitCode reads a step's exit code (Tekton's exitCode.path), waiting up
// to exitCodeWait for the file to hold a number.
func readExitCode(file string) (int, error) {
	deadline := time.Now().Add(exitCodeWait)
	for {
		b, err := os.ReadFile(file)
		if err == nil {
			if code, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return code, nil
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				return 0, fmt.Errorf("reading the exit code of the step before (it ran before this one): %w", err)
			}
			return 0, fmt.Errorf("the exit code %q in %s is not a number", strings.TrimSpace(string(b)), file)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// boundLine keeps a migrate line within its share of the TaskRun's results.
func boundLine(line map[string]string) {
	var applied []int64
	if json.Unmarshal([]byte(line["applied-versions"]), &applied) == nil && len(applied) > maxLineApplied {
		kept := append(slices.Clone(applied[:maxLineApplied/2]), applied[len(applied)-maxLineApplied/2:]...)
		b, _ := json.Marshal(kept)
		line["applied-versions"] = string(b)
		line["applied-count"] = strconv.Itoa(len(applied))
	}
	const cut = "… (cut: the step's log has it whole)"
	for e := line[step.ResultError]; e != ""; {
		b, _ := json.Marshal(line)
		if encodedLen(string(b)) <= maxLineEncoded {
			return
		}
		e = strings.ToValidUTF8(e[:len(e)/2], "")
		line[step.ResultError] = e + cut
		if e == "" {
			line[step.ResultError] = cut
			return
		}
	}
}

// readMigrateLine builds the migrate line of o.Secret after the turn and migrate
// steps of its TaskRun, and reports whether its migration failed. A migrate
// that exited 75 (or was killed) is returned as transient: the TaskRun fails, and Tekton's
// retries run pick, turn and migrate again (safe: migrate's contract). Any other
// failure becomes the line, so that the TaskRun succeeds and the run's summary
// sees every database.
func (o *Options) readMigrateLine() (map[string]string, bool, error) {
	line := map[string]string{"step": "migrate", "secret": o.Secret, "ran": "false"}
	if o.Turn != "true" {
		line["why"] = o.TurnWhy
		return line, false, nil
	}
	code, err := readExitCode(o.ExitCodeFile)
	if err != nil {
		return nil, false, err
	}
	line["ran"] = "true"
	for _, k := range MigrateLineKeys {
		b, err := os.ReadFile(filepath.Join(o.MigrateResults, k))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, false, fmt.Errorf("reading migrate's result %s: %w", k, err)
		}
		line[k] = strings.TrimSpace(string(b))
	}
	boundLine(line)
	if code == 0 {
		return line, false, nil
	}
	if code < 0 || slices.Contains(rerunCodes, code) {
		return nil, false, failure.Transientf("the migration of %s failed (exit %d), which a rerun may fix: %s", o.Secret, code, cmp.Or(line[step.ResultError], "see the migrate step's log"))
	}
	if line[step.ResultError] == "" {
		line[step.ResultError] = fmt.Sprintf("migrate exited %d", code)
	}
	return line, true, nil
}

// stepRecheck is the step of a plan line of the second plan after a failed
// migration (plan-line --line-step).
const stepRecheck = "recheck"

// stepRollback is the step of a migrate line of migrate --down-to after a
// failed migration (migrate-line --line-step).
const stepRollback = "rollback"

// linesOutputs splits the lines given after the flags of summary and decide
// (Tekton) into the plans and the per-database outputs of migrate and recheck
// (db-<index>-<step>-<key>, as on Argo), pairing each line with its entry by
// Secret.
func linesOutputs(entries []Entry, lines []string) ([]Plan, Outputs, error) {
	var planLines []string
	migrateLines := map[string]map[string]string{}
	recheckLines := map[string]map[string]string{}
	rollbackLines := map[string]map[string]string{}
	for i, l := range lines {
		var o map[string]string
		if err := json.Unmarshal([]byte(l), &o); err != nil {
			return nil, nil, failure.Usagef("line %d is not a JSON object of strings (a plan-line or migrate-line result): %v", i+1, err)
		}
		switch o["step"] {
		case "":
			planLines = append(planLines, l)
		case "migrate", stepRecheck, stepRollback:
			by := map[string]map[string]map[string]string{"migrate": migrateLines, stepRecheck: recheckLines, stepRollback: rollbackLines}[o["step"]]
			if _, dup := by[o["secret"]]; dup {
				return nil, nil, failure.Usagef("%s line %d names the Secret %q again: give each %s TaskRun's line once", o["step"], i+1, o["secret"], o["step"])
			}
			if _, ok := entryOf(entries, o["secret"]); !ok {
				return nil, nil, failure.Usagef("%s line %d names the Secret %q, which no entry of the list has: give the lines of this run's %s", o["step"], i+1, o["secret"], o["step"])
			}
			by[o["secret"]] = o
		default:
			return nil, nil, failure.Usagef("line %d is of step %q, not a plan, migrate, recheck or rollback line", i+1, o["step"])
		}
	}
	outs, err := planOutputs(entries, planLines)
	if err != nil {
		return nil, nil, err
	}
	plans, err := JoinPlans(entries, outs)
	if err != nil {
		return nil, nil, err
	}
	out := Outputs{}
	for _, p := range plans {
		if l, ok := recheckLines[p.Secret]; ok {
			out[OutputName(p.Index, stepRecheck, "current-version")] = l["current-version"]
		}
		if l, ok := rollbackLines[p.Secret]; ok && l["ran"] == "true" {
			out[OutputName(p.Index, stepRollback, "current-version")] = l["current-version"]
			out[OutputName(p.Index, stepRollback, step.ResultError)] = l[step.ResultError]
		}
		l, ok := migrateLines[p.Secret]
		if !ok || l["ran"] != "true" {
			continue
		}
		for _, k := range MigrateLineKeys {
			out[OutputName(p.Index, "migrate", k)] = l[k]
		}
	}
	return plans, out, nil
}

// maxSummaryResult bounds the summary's databases result on Tekton, encoded
// as the entrypoint writes it: its TaskRun's results share one termination
// message of 4096 bytes; a longer summary is in the step's log only.
const maxSummaryResult = 2500

// tektonVerdict writes the summary's results on Tekton and, with fail (the
// run's last task, its verdict), fails the step (exit 1) when a pending
// database is not at its planned target, so that the run ends Failed.
func tektonVerdict(env *step.Env, rows []Row, count string, fail bool, missingRollbacks []string) error {
	var bad []string
	// a rollback decide chose whose TaskRun reported no line (its results
	// lost, or never run) is not known to have come back
	rollbackFailed := len(missingRollbacks) > 0
	for _, m := range missingRollbacks {
		bad = append(bad, m+" (no rollback reported)")
	}
	for _, r := range rows {
		switch r.Outcome {
		case Failed, NotReached, RolledBack:
			// rolled back: after a failed migration, its own or another's
			bad = append(bad, r.Name+" ("+r.Outcome+")")
		case RollbackFailed:
			bad = append(bad, r.Name+" ("+r.Outcome+")")
			rollbackFailed = true
		}
	}
	env.Results.Set("rollback-failed", strconv.FormatBool(rollbackFailed))
	env.Results.Set("summary", count)
	if b, _ := json.Marshal(rows); encodedLen(string(b)) <= maxSummaryResult {
		env.Results.Set("databases", string(b))
	} else {
		env.Results.Set("databases", "")
		env.Log.Info("the summary is in this log only: it outgrows the TaskRun's results", "bytes", len(b), "most", maxSummaryResult)
	}
	env.Results.Set("migrate-failed", strconv.FormatBool(len(bad) > 0))
	if len(bad) > 0 && fail {
		return failure.Permanentf("not every database reached its planned target: %s (the tasks before this one applied the failure policy): fix the migration and run the list again", strings.Join(bad, ", "))
	}
	return nil
}

// maxWhyResult bounds decide's why result on Tekton (it names databases).
const maxWhyResult = 500
