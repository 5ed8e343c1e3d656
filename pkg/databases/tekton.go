package databases

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
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
