package step

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/redact"
	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/version"
)

// Spec describes one step binary.
type Spec struct {
	Name        string
	Usage       string
	Description string
	// Options are the step's own flag bundles, validated in order before Run.
	Options []Options
	// Run does the step's work. Errors are classified with package failure;
	// unclassified errors are permanent.
	Run func(ctx context.Context, env *Env) error
	// Args, when not empty, says what the arguments after the flags are, and
	// lets the step take them: an option that implements ArgsTaker is handed
	// them before it is validated. Tekton hands a step an array only so, one
	// argument per value. Empty: the step takes flags only.
	Args string
}

// ArgsTaker is an option that reads the arguments after the flags (Spec.Args).
type ArgsTaker interface {
	TakeArgs(args []string)
}

// Env is what a running step gets from the scaffolding.
type Env struct {
	Log      *slog.Logger
	Results  *results.Set
	Redactor *redact.Redactor
	// Interrupt stops the step as SIGTERM does, for reason (a short phrase
	// the error then carries): its context is cancelled, the failure it
	// causes is transient unless final, and no further attempt is made. For
	// an option that learns from elsewhere that the run was stopped.
	Interrupt func(reason string)
}

// interruption is the cause Env.Interrupt cancels the step's context with.
type interruption string

func (i interruption) Error() string { return string(i) }

// ResultError is the result a failed step writes (but not a usage error, which
// writes none): its one-line error, masked.
const ResultError = "error"

// Main runs the step with the process's arguments and exits with its code.
func Main(spec Spec) {
	setMemoryLimit()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := Run(ctx, spec, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Run runs the step and returns its exit code. Logs go to stderr; stdout receives
// only help/version text or the final JSON summary line.
func Run(ctx context.Context, spec Spec, args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	interrupt := func(reason string) { cancel(interruption(reason)) }
	common := &CommonOptions{}
	red := redact.New()
	var (
		ran    bool  // the action started: summary and results are owed
		runErr error // the action's error, already classified
		env    *Env
		start  = time.Now()
	)
	app := &cli.App{
		Name:            spec.Name,
		Usage:           spec.Usage,
		Description:     spec.Description,
		ArgsUsage:       spec.Args,
		Version:         version.Version,
		Flags:           appFlags(common, spec),
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
		// A bad flag gets the one-line error below, not the whole help text.
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return err },
		Action: func(c *cli.Context) error {
			// A workflow definition's guard (an invalid parameter) makes the step
			// fail with its message and do nothing else: no version check, no
			// results, no connection.
			if c.IsSet(refuseFlag) {
				return refusal(common.Refuse)
			}
			if c.NArg() > 0 && spec.Args != "" {
				for _, o := range spec.Options {
					if t, ok := o.(ArgsTaker); ok {
						t.TakeArgs(c.Args().Slice())
					}
				}
			} else if c.NArg() > 0 {
				// Not quoted back: such an argument is often the rest of a value
				// whose blank split it (a password), and no secret is known yet.
				return fmt.Errorf("unexpected argument (%d of them after the flags, not shown): %s takes flags only; put a value holding a blank in quotes, as one argument", c.NArg(), spec.Name)
			}
			ran = true
			env, runErr = runAttempts(ctx, spec, common, red, stderr, interrupt)
			return runErr
		},
	}
	err := checkArgs(args, app.Flags)
	if err == nil {
		err = app.RunContext(ctx, args)
	}
	if !ran {
		if err == nil {
			return failure.CodeOK // --help, --version
		}
		// Everything urfave/cli rejects before the action is a usage error.
		hint := " (see --help)"
		var r refusal
		if errors.As(err, &r) {
			hint = "" // the guard's own message, as it wrote it
		}
		fmt.Fprintf(stderr, "%s: %s%s\n", spec.Name, OneLine(red.String(err.Error())), hint)
		return failure.CodeUsage
	}
	code := failure.Code(runErr)
	status := "ok"
	msg := ""
	if runErr != nil {
		status = "failed"
		msg = OneLine(red.String(runErr.Error()))
		// Whatever failed after SIGTERM or the deadline failed because of it (a rate
		// limiter refusing to wait past the deadline is not a context error): a
		// rerun can finish, so the run is transient.
		if ctx.Err() != nil {
			var why interruption
			if errors.As(context.Cause(ctx), &why) {
				msg = "interrupted (" + string(why) + "): " + msg
			} else {
				msg = "interrupted: " + msg
			}
			if !failure.IsFinal(runErr) {
				code = failure.CodeTransient
			}
		}
		if env.Log != nil {
			env.Log.Error(msg, "exit-code", code, "kind", failure.KindOf(runErr).String())
		} else {
			fmt.Fprintf(stderr, "%s: %s\n", spec.Name, msg)
		}
	}
	// A usage error stops before any work, so there are no results to write (and
	// the results directory itself may be what is wrong).
	if code != failure.CodeUsage {
		if runErr != nil {
			// The one-line error, masked like the log: a run summary over
			// several databases (check-databases --action=summary) reports it.
			env.Results.Set(ResultError, msg)
		}
		// A step that did its work (a migration committed) must not report a
		// failure the database contradicts: a failed write of its results is
		// logged, and the summary line below still carries them.
		if werr := env.Results.WriteDir(common.ResultsDir); werr != nil {
			fmt.Fprintf(stderr, "%s: writing the results failed (the step's own outcome stands; its results are in the summary line on stdout): %s\n",
				spec.Name, OneLine(red.String(werr.Error())))
		}
	}
	_ = env.Results.WriteSummary(stdout, results.Summary{
		Step: spec.Name, Version: version.Version, Status: status, ExitCode: code,
		Error: msg, Duration: time.Since(start).Round(time.Millisecond).String(),
	})
	return code
}

// refusal is the usage error --refuse asks for: its message, verbatim.
type refusal string

func (r refusal) Error() string {
	if r == "" {
		return "refused by the workflow definition (--refuse gave no reason)"
	}
	return string(r)
}

// flagName is the shape of a flag's name: lower-case words joined by dashes.
var flagName = regexp.MustCompile(`^[a-z]+(-[a-z]+)*$`)

// checkArgs finds, as the flag parser will, an argument it would refuse as
// an unknown flag or bad flag syntax and quote back, and returns the usage
// error that replaces the parser's when the argument is not shaped like a
// flag's name: a password split at a blank ("...:ab -cd@db/app" unquoted)
// puts its rest there ("flag provided but not defined: -cd@db/app"), and no
// secret is registered yet. A misspelt flag (--nope, --databse-url) is left to
// the parser, which names it. It also refuses a duration flag's value that
// time.ParseDuration refuses, naming the flag and the form (the flag package
// says only "parse error").
func checkArgs(args []string, flags []cli.Flag) error {
	takesValue, isDuration := map[string]bool{}, map[string]bool{}
	for _, f := range append(slices.Clone(flags), cli.HelpFlag, cli.VersionFlag) {
		_, isBool := f.(*cli.BoolFlag)
		_, isDur := f.(*cli.DurationFlag)
		for _, n := range f.Names() {
			takesValue[n], isDuration[n] = !isBool, isDur
		}
	}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			return nil // the flags end here; the rest is positional
		}
		name := strings.TrimPrefix(a[1:], "-")
		name, _, hasValue := strings.Cut(name, "=")
		value, known := takesValue[name]
		switch {
		case known:
			_, v, given := strings.Cut(a, "=")
			if value && !hasValue && i+1 < len(args) {
				i++ // its value
				v, given = args[i], true
			}
			if isDuration[name] && given {
				if _, err := time.ParseDuration(v); err != nil {
					return fmt.Errorf("--%s %q is not a duration: write numbers with units (ns, us, ms, s, m, h), e.g. 30s, 5m or 1h30m, of at most 2562047h", name, v)
				}
			}
			continue
		case name != "" && !strings.HasPrefix(a, "---") && flagName.MatchString(name):
			return nil
		}
		return fmt.Errorf("argument %d is an unknown flag or bad flag syntax (not shown: it may be the rest of a value that a blank split, such as a password): put a value holding a blank in quotes, as one argument", i)
	}
	return nil
}

// appFlags lists the common flags bound to common, then each option bundle's, every
// one with its CHARTREUSE_ environment variable.
func appFlags(common *CommonOptions, spec Spec) []cli.Flag {
	flags := common.Flags()
	for _, o := range spec.Options {
		flags = append(flags, o.Flags()...)
	}
	return withEnvVars(flags)
}

func run(ctx context.Context, spec Spec, common *CommonOptions, env *Env, stderr io.Writer) error {
	if err := common.Validate(); err != nil {
		return failure.AsUsage(err)
	}
	// Checked before any work: a step that changed the database and then could
	// not write its results would send the workflow down its failure branch.
	if err := checkWritableDir(common.ResultsDir); err != nil {
		return failure.Usagef("--results-dir %s is not a writable directory: %w", common.ResultsDir, err)
	}
	level, _ := common.level()
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(stderr, hopts)
	if common.LogFormat == "json" {
		h = slog.NewJSONHandler(stderr, hopts)
	}
	env.Log = slog.New(env.Redactor.Handler(h)).With("step", spec.Name)
	if err := version.Check(version.Version, common.ManifestVersion, common.SkipVersionCheck); err != nil {
		return err
	}
	for _, o := range spec.Options {
		if err := o.Validate(); err != nil {
			if failure.KindOf(err) == failure.Permanent && !isClassified(err) {
				return failure.AsUsage(err)
			}
			return err
		}
	}
	return spec.Run(ctx, env)
}

func isClassified(err error) bool {
	var fe *failure.Error
	return errors.As(err, &fe)
}

// checkWritableDir creates dir if needed and proves a file can be written in it.
func checkWritableDir(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

// OneLine folds a multi-line message into one line (one log line, one error line).
func OneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
