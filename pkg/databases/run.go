package databases

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// MaxParallelism bounds the parallelism parameter: more databases migrated at
// once than this is more pod churn than any run of this size needs.
const MaxParallelism = 64

// Plan is one entry of the list with what plan reported for it: what every later
// step of the run reads about that database (the workflows' databases-plans).
type Plan struct {
	Entry
	// Index is the entry's position in the list, from 0: the workflows name the
	// per-database outputs of migrate, recheck and rollback after it.
	Index            int    `json:"index"`
	Pending          bool   `json:"pending"`
	NeedsDowntime    bool   `json:"needs-downtime"`
	PlannedVersion   string `json:"planned-version"`
	PlannedTarget    string `json:"planned-target"`
	FilesDigest      string `json:"planned-files-digest"`
	GitCommit        string `json:"git-commit"`
	MigrationsDigest string `json:"migrations-digest"`
}

// JoinPlans pairs each entry with its plan's outputs, given in the order of the
// entries (Argo's aggregated outputs of a withParam task whose every item
// succeeded). A count that differs, or an output missing, is a usage error: the
// workflow wired them wrong.
func JoinPlans(entries []Entry, outputs []map[string]string) ([]Plan, error) {
	if len(outputs) != len(entries) {
		return nil, failure.Usagef("--plans has %d plan outputs for %d entries: give every entry's plan, in the order of --entries", len(outputs), len(entries))
	}
	plans := make([]Plan, len(entries))
	for i, e := range entries {
		o := outputs[i]
		pending, err := strconv.ParseBool(strings.TrimSpace(o["pending"]))
		if err != nil {
			return nil, failure.Usagef("--plans: the plan of %s has pending=%q, not true or false", where(i, e.Name), o["pending"])
		}
		if _, err := strconv.ParseInt(strings.TrimSpace(o["current-version"]), 10, 64); err != nil {
			return nil, failure.Usagef("--plans: the plan of %s has current-version=%q, not a version", where(i, e.Name), o["current-version"])
		}
		plans[i] = Plan{
			Entry: e, Index: i, Pending: pending,
			// as the single-database run reads it: only an explicit false is additive
			NeedsDowntime:    strings.TrimSpace(o["needs-downtime"]) != "false",
			PlannedVersion:   strings.TrimSpace(o["current-version"]),
			PlannedTarget:    strings.TrimSpace(o["target-version"]),
			FilesDigest:      strings.TrimSpace(o["files-digest"]),
			GitCommit:        strings.TrimSpace(o["git-commit"]),
			MigrationsDigest: strings.TrimSpace(o["migrations-digest"]),
		}
	}
	return plans, nil
}

// Rounds cuts the pending plans, in list order, into the rounds a run migrates
// them in: with canary the first pending database alone, then rounds of at
// most parallelism databases. A round starts once the one before has
// succeeded. Nothing pending: no rounds (an empty list, never nil).
func Rounds(plans []Plan, parallelism int, canary bool) [][]Plan {
	rounds := [][]Plan{}
	var pending []Plan
	for _, p := range plans {
		if p.Pending {
			pending = append(pending, p)
		}
	}
	if canary && len(pending) > 0 {
		rounds = append(rounds, pending[:1])
		pending = pending[1:]
	}
	for len(pending) > 0 {
		n := min(parallelism, len(pending))
		rounds = append(rounds, pending[:n])
		pending = pending[n:]
	}
	return rounds
}

// ParseParallelism reads the parallelism parameter: an integer from 1 to
// MaxParallelism, else a usage error.
func ParseParallelism(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > MaxParallelism {
		return 0, failure.Usagef("--parallelism %q is not an integer from 1 to %d: give how many databases to migrate at once, e.g. 1 (one after another) or 4", s, MaxParallelism)
	}
	return n, nil
}

// Holder is the holder entry's database list for a run of these plans: each
// database as secret/key, distinct, sorted, joined by "+" (scale-down
// --database-secret, scale-restore --supersede-database). The key is part of
// it: tenants that share one Secret are different databases, and a run that
// migrated one of them must not lift another's keep-down.
func Holder(plans []Plan) string {
	seen := map[string]bool{}
	var ids []string
	for _, p := range plans {
		id := p.Secret + "/" + p.Key
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return strings.Join(ids, "+")
}

// Outputs are the workflow's global outputs the per-database steps wrote, by
// name: db-<index>-<step>-<result>, step one of migrate, recheck and rollback.
type Outputs map[string]string

// ParseOutputs reads the global outputs: a JSON object of strings; empty or
// null is none.
func ParseOutputs(raw string) (Outputs, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" || raw == "null" {
		return Outputs{}, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return nil, failure.Usagef("--outputs is not a JSON object: %s", jsonError(err))
	}
	out := Outputs{}
	for k, v := range m {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out, nil
}

// OutputName is the global output name of result of step for the database at
// index: what the workflows give as globalName.
func OutputName(index int, step, result string) string {
	return fmt.Sprintf("db-%d-%s-%s", index, step, result)
}

// get returns one per-database output and whether the step wrote it.
func (o Outputs) get(index int, step, result string) (string, bool) {
	v, ok := o[OutputName(index, step, result)]
	return strings.TrimSpace(v), ok
}

// ran reports whether step ran for the database at index (any of its outputs is there).
func (o Outputs) ran(index int, step string) bool {
	prefix := fmt.Sprintf("db-%d-%s-", index, step)
	for k := range o {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// migrated reports whether migrate reached the planned target of p without an error.
func (o Outputs) migrated(p Plan) bool {
	cur, _ := o.get(p.Index, "migrate", "current-version")
	errMsg, _ := o.get(p.Index, "migrate", "error")
	return errMsg == "" && cur != "" && cur == p.PlannedTarget
}

// Decision is what the failure path does over all the databases of a run.
type Decision struct {
	// MigrateFailed: a migrate ran and did not reach its planned target.
	MigrateFailed bool
	// Restore now, with no rollback: no migrate failed (the run failed elsewhere,
	// every database at its planned version or target), or policy restore with
	// every database still at its planned version.
	Restore bool
	// Rollback: the databases to roll back (their version moved), in rounds.
	Rollback [][]Plan
	// RestoreAfterRollback: restore once every rollback succeeded (every other
	// database being at its planned version).
	RestoreAfterRollback bool
	// Why says in one line what was decided and why.
	Why string
}

// Policies of the failure path (the on-migrate-failure parameter).
const (
	KeepDown = "keep-down"
	Restore  = "restore"
	Rollback = "rollback"
)

// Decide applies the failure policy to a run whose workflow did not succeed,
// from the plans and what recheck found in each database afterwards
// (db-<i>-recheck-current-version; a database without it is not known).
func Decide(plans []Plan, out Outputs, policy string, parallelism int) Decision {
	var d Decision
	var moved, unknown, failed []string
	// changed: moved, or migrated to its target, which out-of-order files below
	// the current version leave at the planned version
	var changed []string
	var toRollBack []Plan
	cause := "" // what failed, for Why
	for _, p := range plans {
		if p.Pending && out.ran(p.Index, "migrate") && !out.migrated(p) {
			d.MigrateFailed = true
			failed = append(failed, p.Name)
		}
		cur, ok := out.get(p.Index, "recheck", "current-version")
		switch {
		case !ok || cur == "":
			unknown = append(unknown, p.Name)
		case cur != p.PlannedVersion:
			moved = append(moved, p.Name)
			changed = append(changed, p.Name)
			toRollBack = append(toRollBack, p)
		case p.Pending && out.migrated(p):
			changed = append(changed, p.Name)
		}
	}
	if len(unknown) > 0 {
		d.Why = "keeping the workloads down: the version of " + strings.Join(unknown, ", ") + " is not known (its recheck failed)"
		if policy == Rollback && d.MigrateFailed {
			// roll back what is known to have moved; the rest waits for a person
			d.Rollback = Rounds(pendingAll(toRollBack), parallelism, false)
		}
		return d
	}
	if !d.MigrateFailed {
		// No migrate reported a failure. Restore only when the run failed before
		// migrating anything or after migrating everything (scale-down, the final
		// restore): a database at neither its planned version nor its target is a
		// failure, and so is a pending one whose migrate never reported (not
		// reached) while another changed (argo stop between rounds), a mixed state
		// the old application must not come back to. Not reached is told by the
		// missing report, not by the version: with out-of-order files a target can
		// be the planned version.
		var notReached []string
		for _, p := range plans {
			cur, _ := out.get(p.Index, "recheck", "current-version")
			switch {
			case cur != p.PlannedVersion && cur != p.PlannedTarget:
				d.MigrateFailed = true
				failed = append(failed, p.Name)
			case p.Pending && !out.migrated(p):
				notReached = append(notReached, p.Name)
			}
		}
		if len(changed) > 0 && len(notReached) > 0 && len(failed) == 0 {
			d.MigrateFailed = true
			cause = strings.Join(notReached, ", ") + " never migrated while " + strings.Join(changed, ", ") + " changed (the run stopped between rounds)"
		}
	}
	if cause == "" {
		cause = "the migration of " + strings.Join(failed, ", ") + " failed"
	}
	if !d.MigrateFailed {
		d.Restore = true
		d.Why = "restoring: no migration failed, every database is at its planned version or target"
		return d
	}
	switch policy {
	case Restore:
		if len(changed) == 0 {
			d.Restore = true
			d.Why = "restoring: " + cause + ", and every database is still at its planned version"
		} else if len(failed) == 0 {
			d.Why = "keeping the workloads down: " + cause // already says what changed
		} else {
			d.Why = "keeping the workloads down: " + cause + ", and " + strings.Join(changed, ", ") + " changed"
		}
	case Rollback:
		d.Rollback = Rounds(pendingAll(toRollBack), parallelism, false)
		// Out-of-order files applied below the current version leave it where it
		// was: no rollback to a version undoes them, so no restore after one.
		d.RestoreAfterRollback = len(changed) == len(moved)
		switch {
		case len(changed) == 0:
			d.Why = "restoring: " + cause + ", and nothing moved, so there is nothing to roll back"
			d.Restore, d.RestoreAfterRollback = true, false
		case len(moved) == 0:
			d.Why = "keeping the workloads down: " + cause + ", and " + strings.Join(changed, ", ") + " changed without moving its version (out-of-order files), which no rollback undoes"
		case !d.RestoreAfterRollback:
			d.Why = "rolling back " + strings.Join(moved, ", ") + " to the planned versions, then keeping the workloads down: " + strings.Join(changed, ", ") + " also changed without moving its version (out-of-order files), which no rollback undoes"
		default:
			d.Why = "rolling back " + strings.Join(moved, ", ") + " to the planned versions, then restoring if every rollback succeeds"
		}
	default:
		d.Why = "keeping the workloads down (keep-down): " + cause
	}
	return d
}

// pendingAll marks plans pending, so that Rounds takes every one.
func pendingAll(plans []Plan) []Plan {
	out := make([]Plan, len(plans))
	for i, p := range plans {
		p.Pending = true
		out[i] = p
	}
	return out
}

// Outcomes of a database in the run summary.
const (
	NothingPending = "nothing-pending"
	Migrated       = "migrated"
	Failed         = "failed"
	NotReached     = "not-reached"
	RolledBack     = "rolled-back"
	RollbackFailed = "rollback-failed"
)

// Row is one database in the run summary.
type Row struct {
	Name            string  `json:"name"`
	PlannedVersion  string  `json:"planned-version"`
	TargetVersion   string  `json:"target-version"`
	CurrentVersion  string  `json:"current-version"`
	AppliedVersions []int64 `json:"applied-versions"`
	Seconds         float64 `json:"seconds"`
	Outcome         string  `json:"outcome"`
	Error           string  `json:"error"`
}

// Summarize says, per database, what the run did: from the plans and the
// per-database outputs of migrate, recheck and rollback. current-version is the
// latest known: rollback's, else recheck's, else migrate's, else the planned one.
func Summarize(plans []Plan, out Outputs) []Row {
	rows := make([]Row, 0, len(plans))
	for _, p := range plans {
		r := Row{Name: p.Name, PlannedVersion: p.PlannedVersion, TargetVersion: p.PlannedTarget, CurrentVersion: p.PlannedVersion, AppliedVersions: []int64{}}
		if v, ok := out.get(p.Index, "migrate", "current-version"); ok && v != "" {
			r.CurrentVersion = v
		}
		if v, ok := out.get(p.Index, "recheck", "current-version"); ok && v != "" {
			r.CurrentVersion = v
		}
		if v, ok := out.get(p.Index, "migrate", "applied-versions"); ok && v != "" {
			_ = json.Unmarshal([]byte(v), &r.AppliedVersions)
			if r.AppliedVersions == nil {
				r.AppliedVersions = []int64{}
			}
		}
		if v, ok := out.get(p.Index, "migrate", "sql-seconds"); ok {
			r.Seconds, _ = strconv.ParseFloat(v, 64)
		}
		migrateErr, _ := out.get(p.Index, "migrate", "error")
		switch {
		case !p.Pending:
			r.Outcome = NothingPending
		case !out.ran(p.Index, "migrate"):
			r.Outcome = NotReached
		case out.migrated(p):
			r.Outcome = Migrated
		default:
			r.Outcome = Failed
			r.Error = migrateErr
			if r.Error == "" {
				r.Error = "migrate did not reach version " + p.PlannedTarget
			}
		}
		if out.ran(p.Index, "rollback") {
			cur, _ := out.get(p.Index, "rollback", "current-version")
			rbErr, _ := out.get(p.Index, "rollback", "error")
			if cur != "" {
				r.CurrentVersion = cur
			}
			if rbErr == "" && cur == p.PlannedVersion {
				r.Outcome = RolledBack
			} else {
				r.Outcome = RollbackFailed
				if rbErr == "" {
					rbErr = "rollback did not reach version " + p.PlannedVersion
				}
				r.Error = joinErrors(r.Error, "rollback: "+rbErr)
			}
		}
		rows = append(rows, r)
	}
	return rows
}

func joinErrors(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// SummaryLines renders the rows as one log line each, and a count of outcomes.
func SummaryLines(rows []Row) []string {
	lines := make([]string, 0, len(rows)+1)
	counts := map[string]int{}
	for _, r := range rows {
		counts[r.Outcome]++
		applied := make([]string, len(r.AppliedVersions))
		for i, v := range r.AppliedVersions {
			applied[i] = strconv.FormatInt(v, 10)
		}
		line := fmt.Sprintf("%s: %s, version %s -> %s (target %s), applied [%s] in %.3fs", r.Name, r.Outcome, r.PlannedVersion, r.CurrentVersion, r.TargetVersion, strings.Join(applied, ","), r.Seconds)
		if r.Error != "" {
			line += ": " + r.Error
		}
		lines = append(lines, line)
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", counts[k], k)
	}
	lines = append(lines, fmt.Sprintf("%d databases: %s", len(rows), strings.Join(parts, ", ")))
	return lines
}
