package workload

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	"github.com/chartreuse-go/chartreuse/pkg/kube"
)

// Backoffs pace the retries of a workload change; each retry reads the workload
// afresh.
type Backoffs struct {
	// Conflict follows a change that lost a race with another writer (HTTP
	// 409); its Steps bound the attempts.
	Conflict wait.Backoff
	// Outage follows a change the API server did not answer; the retries go
	// on until the step's time is up.
	Outage wait.Backoff
}

// DefaultBackoffs are the steps' backoffs.
var DefaultBackoffs = Backoffs{
	Conflict: wait.Backoff{Steps: 8, Duration: 50 * time.Millisecond, Factor: 2, Jitter: 0.2, Cap: 2 * time.Second},
	Outage:   wait.Backoff{Steps: 1 << 30, Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.2, Cap: 2 * time.Second},
}

// orDefault is b, or DefaultBackoffs when b is the zero value.
func (b Backoffs) orDefault() Backoffs {
	if b == (Backoffs{}) {
		return DefaultBackoffs
	}
	return b
}

// restartedDenials is how long after an outage a denial (403, 401) is taken
// for a restarted API server's caches still loading, and retried.
const restartedDenials = 30 * time.Second

// changeRetry runs change, one read-modify-write of a workload whose patch carries
// the resourceVersion it was computed from, until it succeeds or fails in a way a
// fresh read cannot mend. change is told whether to read the workload afresh.
//
// Conflicts (409) are retried backoffs.Conflict.Steps times. An unreachable or
// unavailable API server is retried until until (or ctx's deadline), and so is a
// denial within restartedDenials of such an outage: that is safe
// because a change whose answer was lost, but which was made, meets a conflict on
// the retry, whose fresh read then finds it done.
//
// Not client-go's retry.OnError: that one returns nil when fn fails with a context
// error, because wait.Interrupted matches context errors and nothing retriable was
// seen before; an interrupted run would then report success for work it did not do.
type changeRetry struct {
	backoffs Backoffs
	clock    clock.Clock
	until    time.Time // zero: only ctx bounds the retries
	log      *slog.Logger
}

func (r changeRetry) run(ctx context.Context, what string, change func(fresh bool) error) error {
	b := r.backoffs.orDefault()
	conflicts, outages := b.Conflict, b.Outage
	until := r.until
	if d, ok := ctx.Deadline(); ok && (until.IsZero() || d.Before(until)) {
		until = d
	}
	var lastOutage time.Time
	for fresh := false; ; fresh = true {
		err := change(fresh)
		var pause time.Duration
		switch {
		case err == nil:
			return nil
		case apierrors.IsConflict(err):
			if conflicts.Steps <= 1 {
				return err
			}
			pause = conflicts.Step()
		case ctx.Err() == nil && (kube.IsUnavailable(err) || r.deniedAfterOutage(err, lastOutage)):
			why := "API server denied the change just after an outage (a restarted API server denies until its caches are loaded)"
			if kube.IsUnavailable(err) {
				lastOutage, why = r.clock.Now(), "API server did not answer the change"
			}
			pause = outages.Step()
			if !until.IsZero() && r.clock.Now().Add(pause).After(until) {
				return err
			}
			r.log.Warn(why+": retrying with a fresh read", "workload", what, "in", pause.Round(time.Millisecond).String(), "error", err.Error())
		default:
			return err
		}
		t := r.clock.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("retrying a change of %s: %w", what, ctx.Err())
		case <-t.C():
		}
	}
}

// deniedAfterOutage: err is a denial (403, 401) within restartedDenials of an
// outage the change met at lastOutage. A restarted API server answers before
// its authorization (and token) caches are loaded, and denies meanwhile: after
// an outage, a denial is believed only once it outlasts that.
func (r changeRetry) deniedAfterOutage(err error, lastOutage time.Time) bool {
	return !lastOutage.IsZero() && r.clock.Since(lastOutage) < restartedDenials &&
		(apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err))
}
