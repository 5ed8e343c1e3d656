package gate

import (
	"fmt"
	"strings"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
	"github.com/chartreuse-go/chartreuse/pkg/poll"
)

// durationChecks are the run's duration parameters that the gate checks before
// anything changes, given as --check-duration NAME=VALUE: Tekton's when
// expressions compare values with lists, so a malformed duration that only a
// later task reads (scale-restore's ready-timeout, after migrate) would
// otherwise be found with the application already stopped.
type durationChecks struct {
	positive bool // 0 is refused too (the steps need some time)
	// wait: from 1s to 24h, the limit of the steps' own waits (wait-for-db,
	// wait-patroni, migrate --wait-timeout), which would refuse more only
	// when their task starts.
	wait bool
	// timeout: 0 (none) or at least 1s, a PostgreSQL timeout the step's own
	// queries run under (migrate refuses less, but only when plan starts).
	timeout bool
	checks  []string
}

// Set implements cli.Generic: one NAME=VALUE per flag, commas kept.
func (d *durationChecks) Set(s string) error {
	if name, _, ok := strings.Cut(s, "="); !ok || name == "" {
		return fmt.Errorf("'%s' is not NAME=VALUE, e.g. ready-timeout=5m", s)
	}
	d.checks = append(d.checks, s)
	return nil
}

func (d *durationChecks) String() string { return strings.Join(d.checks, " ") }

// invalid lists every check whose value is not a duration the steps take.
func (d *durationChecks) invalid() []string {
	var bad []string
	for _, c := range d.checks {
		name, value, _ := strings.Cut(c, "=")
		v, err := time.ParseDuration(value)
		switch {
		case d.wait && (err != nil || v < poll.MinTimeout || v > poll.MaxTimeout):
			bad = append(bad, fmt.Sprintf("%s='%s' (a duration from 1s to 24h, e.g. 5m)", name, value))
		case d.timeout && (err != nil || v < 0 || v > 0 && v < time.Second):
			bad = append(bad, fmt.Sprintf("%s='%s' (0, or a duration of at least 1s, e.g. 30s)", name, value))
		case d.positive && (err != nil || v <= 0):
			bad = append(bad, fmt.Sprintf("%s='%s' (a positive duration, e.g. 5m)", name, value))
		case err != nil || v < 0:
			bad = append(bad, fmt.Sprintf("%s='%s' (a duration, e.g. 10s, or 0)", name, value))
		}
	}
	return bad
}

// runIDCheck is the run's run-id parameter (--check-run-id): Tekton's when
// expressions refuse only "", and every step trims it and falls back to its
// pod's name when blank, so that a rollback, which undoes only what the run id
// applied, refused after migrate had failed.
type runIDCheck struct {
	given bool
	value string
}

// Set implements cli.Generic.
func (r *runIDCheck) Set(s string) error { r.given, r.value = true, s; return nil }

func (r *runIDCheck) String() string { return r.value }

func (r *runIDCheck) invalid() []string {
	if !r.given {
		return nil
	}
	id := strings.TrimSpace(r.value)
	if id == "" || dbconn.ValidateRunID(id) != nil {
		// Quoted: it is a name the run chose, never a secret.
		return []string{fmt.Sprintf("run-id='%s' (one line of at most 253 characters, not blank, or leave run-id out for the PipelineRun name: the failure path rolls back only what this run id applied)", r.value)}
	}
	return nil
}

// checkValues names every invalid value of the run id and the duration
// checks, in one error.
func checkValues(runID *runIDCheck, checks ...*durationChecks) error {
	bad := runID.invalid()
	for _, c := range checks {
		bad = append(bad, c.invalid()...)
	}
	if len(bad) > 0 {
		return fmt.Errorf("invalid parameters: %s; fix them and start the run again: nothing was changed", strings.Join(bad, "; "))
	}
	return nil
}
