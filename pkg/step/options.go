package step

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// Options is a bundle of flags bound to a struct, validated before any work starts.
// Validate errors that are not classified count as usage errors (exit 2).
type Options interface {
	Flags() []cli.Flag
	Validate() error
}

// EnvVar is the environment variable that also sets a flag: CHARTREUSE_<FLAG>.
func EnvVar(flag string) string {
	return "CHARTREUSE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// withEnvVars gives every flag its CHARTREUSE_ variable unless it already names some.
func withEnvVars(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		env := []string{EnvVar(f.Names()[0])}
		switch f := f.(type) {
		case *cli.StringFlag:
			f.EnvVars = append(f.EnvVars, env...)
		case *cli.BoolFlag:
			f.EnvVars = append(f.EnvVars, env...)
		case *cli.IntFlag:
			f.EnvVars = append(f.EnvVars, env...)
		case *cli.Int64Flag:
			f.EnvVars = append(f.EnvVars, env...)
		case *cli.UintFlag:
			f.EnvVars = append(f.EnvVars, env...)
		case *cli.Float64Flag:
			f.EnvVars = append(f.EnvVars, env...)
		case *cli.DurationFlag:
			f.EnvVars = append(f.EnvVars, env...)
		case *cli.StringSliceFlag:
			f.EnvVars = append(f.EnvVars, env...)
		case *cli.PathFlag:
			f.EnvVars = append(f.EnvVars, env...)
		case *cli.GenericFlag:
			f.EnvVars = append(f.EnvVars, env...)
		default:
			panic(fmt.Sprintf("step: flag %s of type %T cannot be given an environment variable", f.Names()[0], f))
		}
	}
	return flags
}

// CommonOptions are the flags every step binary has.
type CommonOptions struct {
	LogFormat        string
	LogLevel         string
	ResultsDir       string
	ManifestVersion  string
	SkipVersionCheck bool
	// RetryTransientFor: how long a run that fails with a transient error is
	// tried again inside the process (0: not at all).
	RetryTransientFor time.Duration
	// Refuse: the message of a workflow definition's guard (a parameter
	// outside its list); the step prints it and exits 2 without doing anything.
	Refuse string
}

// refuseFlag is the flag a workflow definition's guard runs a step binary with.
const refuseFlag = "refuse"

// Flags implements Options.
func (o *CommonOptions) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json", Destination: &o.LogFormat},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "log level: debug, info, warn or error", Destination: &o.LogLevel},
		&cli.StringFlag{Name: "results-dir", Usage: "directory that receives one file per result (Argo output parameters, Tekton results)", Destination: &o.ResultsDir},
		&cli.StringFlag{Name: "manifest-version", Usage: "version of the workflow manifests running this step; its major.minor must match the binary's", Destination: &o.ManifestVersion},
		&cli.BoolFlag{Name: "skip-version-check", Usage: "run without --manifest-version (for running a step by hand)", Destination: &o.SkipVersionCheck},
		&cli.DurationFlag{Name: "retry-transient-for", Usage: "when the step fails with a transient error (exit 75), run it again inside the process, with growing pauses (1s doubling to 30s, with jitter), until this long after it began; then exit 75. For callers that cannot retry, e.g. an Argo exit handler while the workflow is stopping. 0: no retry", Destination: &o.RetryTransientFor},
		&cli.StringFlag{Name: refuseFlag, Usage: "for workflow-definition guards (a parameter outside its list): print this message as the usage error and exit 2, doing nothing else (no connection, no results). Set, even empty, it refuses", Destination: &o.Refuse},
	}
}

// Validate implements Options.
func (o *CommonOptions) Validate() error {
	if o.LogFormat != "text" && o.LogFormat != "json" {
		return fmt.Errorf("--log-format %q is not valid: use text or json", o.LogFormat)
	}
	if _, err := o.level(); err != nil {
		return err
	}
	if o.RetryTransientFor < 0 {
		return fmt.Errorf("--retry-transient-for %s must not be negative: use 0 for no retry, or e.g. 2m", o.RetryTransientFor)
	}
	return nil
}

func (o *CommonOptions) level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return 0, fmt.Errorf("--log-level %q is not valid: use debug, info, warn or error", o.LogLevel)
	}
	return l, nil
}
