package dbconn

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"
)

// AppPrefix starts the application_name of every session a step opens:
// chartreuse/<run-id>/<step>, or chartreuse/<step> when the step was given no run
// id. Other sessions (pg_stat_activity, the "lock busy" message) read it back.
const AppPrefix = "chartreuse/"

// maxAppName is PostgreSQL's limit (NAMEDATALEN-1): it cuts longer names silently.
const maxAppName = 63

// ApplicationName is the application_name for a step's sessions. The step name is
// kept whole; a run id too long for the remaining bytes keeps its end (where Argo's
// and Tekton's generated names put their random suffix, the part that tells runs
// apart) and as much of its start as fits, joined by "~". Characters PostgreSQL would
// replace (anything but printable ASCII) become '?', so the name in
// pg_stat_activity is exactly this one.
func ApplicationName(runID, step string) string {
	runID, step = printable(runID), printable(step)
	if runID == "" {
		return cut(AppPrefix+step, maxAppName)
	}
	room := maxAppName - len(AppPrefix) - len("/") - len(step)
	if room < 8 {
		return cut(AppPrefix+step, maxAppName)
	}
	if len(runID) > room {
		tail := room / 2
		runID = runID[:room-1-tail] + "~" + runID[len(runID)-tail:]
	}
	return AppPrefix + runID + "/" + step
}

// ParseApplicationName reads back what ApplicationName wrote: ok is false for a
// name no step wrote. run is "" when the step had no run id; shortened tells that
// the run id was cut to fit (it holds a '~').
func ParseApplicationName(name string) (run, step string, shortened, ok bool) {
	rest, found := strings.CutPrefix(name, AppPrefix)
	if !found || rest == "" {
		return "", "", false, false
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return "", rest, false, true
	}
	run, step = rest[:i], rest[i+1:]
	return run, step, strings.Contains(run, "~"), step != ""
}

func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, strings.TrimSpace(s))
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// RunIDOptions is the --run-id flag of the steps that have no other use for it
// (wait-for-db, wait-patroni): it only names their sessions. migrate has its own.
type RunIDOptions struct {
	RunID string
}

// Flags implements step.Options.
func (o *RunIDOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "run-id", Usage: "the run this step belongs to, e.g. the workflow name: its database sessions are named chartreuse/<run-id>/<step> (application_name) unless the URL or PGAPPNAME names them; empty: chartreuse/<step>", Destination: &o.RunID},
	}
}

// Validate implements step.Options.
func (o *RunIDOptions) Validate() error {
	o.RunID = strings.TrimSpace(o.RunID)
	return ValidateRunID(o.RunID)
}

// ValidateRunID accepts what migrate's --run-id accepts: one line of at most 253
// characters.
func ValidateRunID(id string) error {
	if len(id) > 253 || strings.ContainsFunc(id, unicode.IsControl) || !utf8.ValidString(id) {
		return errors.New("--run-id must be one line of at most 253 characters, e.g. the workflow name")
	}
	return nil
}
