package step

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/redact"
	"github.com/chartreuse-go/chartreuse/pkg/results"
)

// retryBackoff paces the attempts of --retry-transient-for: 1 s, 2 s, 4 s … up to
// 30 s between attempts, each stretched by up to a fifth at random so that steps
// that failed together do not come back together.
var retryBackoff = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.2, Steps: math.MaxInt32, Cap: 30 * time.Second}

// runAttempts runs the step, and runs it again while it fails with a transient
// error, until --retry-transient-for has passed since the first attempt began (the
// wait before the last attempt is cut short to start it then). It exists for
// Argo's exit handler: a workflow that is being stopped retries nothing, so the
// step must ride out a short outage itself.
//
// Every attempt is a whole run on a fresh Env: options validated again, new
// clients, results from scratch; only the redactor carries over, so a secret
// learnt once stays masked. Whatever makes the step safe to rerun by hand makes
// the attempts safe. It returns the last attempt's Env and error.
func runAttempts(ctx context.Context, spec Spec, common *CommonOptions, red *redact.Redactor, stderr io.Writer, interrupt func(string)) (*Env, error) {
	start := time.Now()
	var (
		env     *Env
		err     error
		attempt int
	)
	once := func() {
		attempt++
		env = &Env{Results: results.New(), Redactor: red, Interrupt: interrupt}
		err = run(ctx, spec, common, env, stderr)
	}
	retryable := func() bool {
		return err != nil && failure.KindOf(err) == failure.Transient && ctx.Err() == nil
	}
	once()
	if !retryable() || common.RetryTransientFor <= 0 {
		return env, err
	}
	deadline := start.Add(common.RetryTransientFor)
	next := retryBackoff.DelayFunc()
	// Called once after each failed attempt (sliding), so the line it logs
	// knows the wait that follows.
	delay := func() time.Duration {
		d := max(min(next(), time.Until(deadline)), 0)
		logRetry(env, red, stderr, spec.Name, attempt, err, d)
		return d
	}
	// The error of Until is only ever the context's (SIGTERM while waiting): the
	// last attempt's error is what the step reports either way.
	_ = wait.DelayFunc(delay).Until(ctx, false, true, func(context.Context) (bool, error) {
		once()
		return !retryable() || !time.Now().Before(deadline), nil
	})
	if failure.KindOf(err) == failure.Transient {
		err = fmt.Errorf("still failing after %d attempts in %s: %w", attempt, time.Since(start).Round(time.Second), err)
	}
	return env, err
}

// logRetry writes the one line that announces another attempt, through the
// step's redacting logger.
func logRetry(env *Env, red *redact.Redactor, stderr io.Writer, name string, attempt int, err error, wait time.Duration) {
	msg := OneLine(red.String(err.Error()))
	in := wait.Round(time.Millisecond).String()
	if env.Log == nil { // not reached: transient errors come after the logger is set up
		fmt.Fprintf(stderr, "%s: attempt %d failed (transient), trying again in %s: %s\n", name, attempt, in, msg)
		return
	}
	env.Log.Warn("transient failure: trying again", "attempt", attempt, "error", msg, "next-attempt-in", in)
}
