package poll

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// The range of a step's own wait: less is no wait, more (over a day) is surely a
// unit mistake such as 300h for 300s.
const (
	MinTimeout = time.Second
	MaxTimeout = 24 * time.Hour
)

// ValidateTimeout rejects waits outside MinTimeout..MaxTimeout, naming flag and
// giving example.
func ValidateTimeout(flag string, d time.Duration, example string) error {
	if d < MinTimeout || d > MaxTimeout {
		return fmt.Errorf("%s %s is out of range: use a duration between 1s and 24h, e.g. %s", flag, d, example)
	}
	return nil
}

// Clock is the loop's time. Tests replace it to drive attempts without waiting.
type Clock interface {
	Now() time.Time
	// Sleep pauses for d or until ctx is done, whichever comes first.
	Sleep(ctx context.Context, d time.Duration) error
}

// RealClock is the wall clock.
type RealClock struct{}

// Now implements Clock.
func (RealClock) Now() time.Time { return time.Now() }

// Sleep implements Clock.
func (RealClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Backoff doubles the pause between attempts from Initial up to Max. Each pause
// is jittered down to half its value, so pods started together spread out and
// no pause ever exceeds Max.
type Backoff struct {
	Initial, Max time.Duration
	// Rand returns a number in [0, 1); nil means math/rand/v2.
	Rand func() float64
}

// Pause is the pause after the n-th failed attempt (n from 1).
func (b Backoff) Pause(n int) time.Duration {
	d := b.Initial
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	return d/2 + time.Duration(r()*float64(d/2))
}

// Loop retries an attempt until it succeeds, fails for good, or time runs out.
type Loop struct {
	Clock   Clock
	Backoff Backoff
	Log     *slog.Logger
	// What is waited for, for messages: "the database".
	What string
	// ProgressEvery is the interval of "still waiting" lines; 0 means 10 s.
	ProgressEvery time.Duration
}

// Stats describe a finished wait.
type Stats struct {
	Attempts int
	Waited   time.Duration
	// Last is the last error of a failed attempt, nil if the last attempt succeeded.
	Last error
}

// Run calls attempt until it returns nil (ready), an error that is not transient
// (returned at once), or timeout passes (a transient error naming the last
// failure). Each attempt's context ends at the deadline, so the wait never
// overruns it by more than the time to give up a connection.
func (l *Loop) Run(ctx context.Context, timeout time.Duration, attempt func(context.Context) error) (Stats, error) {
	log := l.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	every := l.ProgressEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	start := l.Clock.Now()
	deadline := start.Add(timeout)
	lastProgress := start
	var st Stats
	for {
		st.Attempts++
		err := l.try(ctx, deadline, attempt, st.Last)
		now := l.Clock.Now()
		st.Waited = now.Sub(start)
		if err == nil {
			st.Last = nil
			return st, nil
		}
		if ctx.Err() != nil {
			return st, l.stopped(st, ctx.Err())
		}
		st.Last = err
		if failure.KindOf(err) != failure.Transient {
			return st, err
		}
		if !now.Before(deadline) {
			return st, failure.AsTransient(fmt.Errorf("%s was not ready after %s (%d attempts): %w", l.What, timeout, st.Attempts, err))
		}
		switch {
		case st.Attempts == 1:
			log.Info("waiting for "+l.What, "reason", err.Error(), "timeout", timeout.String())
			lastProgress = now
		case now.Sub(lastProgress) >= every:
			log.Info("still waiting for "+l.What, "reason", err.Error(),
				"waited", st.Waited.Round(time.Second).String(), "attempts", st.Attempts,
				"left", deadline.Sub(now).Round(time.Second).String())
			lastProgress = now
		}
		pause := min(l.Backoff.Pause(st.Attempts), deadline.Sub(now))
		log.Debug("attempt failed", "attempt", st.Attempts, "error", err.Error(), "pause", pause.Round(time.Millisecond).String())
		if err := l.Clock.Sleep(ctx, pause); err != nil {
			return st, l.stopped(st, err)
		}
	}
}

// stopped is the error for a wait cut short by ctx (SIGTERM): transient, since a
// rerun can finish it.
func (l *Loop) stopped(st Stats, err error) error {
	if st.Last == nil {
		return fmt.Errorf("stopped waiting for %s after %d attempts: %w", l.What, st.Attempts, err)
	}
	return fmt.Errorf("stopped waiting for %s after %d attempts (last error: %v): %w", l.What, st.Attempts, st.Last, err)
}

// try runs one attempt bounded by the deadline. When the deadline itself cuts the
// attempt short, the previous error says more about what is wrong, so it is kept.
func (l *Loop) try(ctx context.Context, deadline time.Time, attempt func(context.Context) error, prev error) error {
	remaining := deadline.Sub(l.Clock.Now())
	if remaining < time.Second {
		remaining = time.Second // the final attempt gets a fair chance
	}
	actx, cancel := context.WithTimeout(ctx, remaining)
	defer cancel()
	err := attempt(actx)
	if err != nil && prev != nil && actx.Err() != nil && ctx.Err() == nil {
		return prev
	}
	return err
}
