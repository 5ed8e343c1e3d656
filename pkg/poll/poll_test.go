package poll

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// wait-for-db's pauses.
const initial, maxPause = 100 * time.Millisecond, 2 * time.Second

func TestBackoffIsCappedAndJittered(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		b := Backoff{Initial: initial, Max: maxPause, Rand: func() float64 { return r }}
		prev := time.Duration(0)
		for n := 1; n <= 40; n++ {
			p := b.Pause(n)
			if p > maxPause {
				t.Fatalf("rand %v: pause %d = %s exceeds the cap %s", r, n, p, maxPause)
			}
			if p < initial/2 {
				t.Fatalf("rand %v: pause %d = %s is below half the first pause", r, n, p)
			}
			if p < prev {
				t.Fatalf("rand %v: pause %d = %s shrank from %s", r, n, p, prev)
			}
			prev = p
		}
		if got := b.Pause(40); got < maxPause/2 {
			t.Errorf("rand %v: pauses never reach the cap: %s", r, got)
		}
	}
	if p := (Backoff{Initial: initial, Max: maxPause, Rand: func() float64 { return 0 }}).Pause(1); p != initial/2 {
		t.Errorf("first pause with no jitter draw = %s, want %s", p, initial/2)
	}
}

// TestLoopOnTheRealClock runs the loop on RealClock inside a synctest bubble,
// whose clock moves only when every goroutine waits: the last attempt starts at
// the deadline, the timeout names the last error, progress lines come every 10 s.
func TestLoopOnTheRealClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		l := &Loop{Clock: RealClock{}, Backoff: Backoff{Initial: initial, Max: maxPause}, What: "the database",
			Log: slog.New(slog.NewTextHandler(&logs, nil))}
		start := time.Now()
		var last time.Time
		st, err := l.Run(t.Context(), time.Minute, func(context.Context) error {
			last = time.Now()
			return failure.AsTransient(errors.New("connection refused"))
		})
		if failure.Code(err) != 75 || !strings.Contains(err.Error(), "the database was not ready after 1m0s") || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("code %d: %v", failure.Code(err), err)
		}
		if got := last.Sub(start); got != time.Minute {
			t.Errorf("last attempt at %s, want at the deadline, 1m0s", got)
		}
		if st.Waited != time.Minute || st.Attempts < 30 {
			t.Errorf("stats %+v: want a minute of attempts at most 2 s apart", st)
		}
		if n := strings.Count(logs.String(), "still waiting for the database"); n < 5 || n > 6 {
			t.Errorf("%d progress lines in a minute, want one per 10 s:\n%s", n, logs.String())
		}
	})
}

// TestLoopStopsAtOnce: a permanent error ends the wait after one attempt, and a
// cancelled context ends it as transient (a rerun can finish it).
func TestLoopStopsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &Loop{Clock: RealClock{}, Backoff: Backoff{Initial: initial, Max: maxPause}, What: "the cluster"}
		wrong := errors.New("password authentication failed")
		st, err := l.Run(t.Context(), time.Hour, func(context.Context) error { return wrong })
		if !errors.Is(err, wrong) || failure.Code(err) != 1 || st.Attempts != 1 {
			t.Errorf("permanent error: stats %+v, code %d, err %v", st, failure.Code(err), err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(5*time.Second, cancel)
		start := time.Now()
		_, err = l.Run(ctx, time.Hour, func(context.Context) error { return failure.AsTransient(errors.New("not yet")) })
		if !errors.Is(err, context.Canceled) || failure.Code(err) != 75 || time.Since(start) != 5*time.Second {
			t.Errorf("cancelled after %s: code %d, err %v", time.Since(start), failure.Code(err), err)
		}
	})
}

func TestValidateTimeout(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second, time.Millisecond, 25 * time.Hour} {
		if err := ValidateTimeout("--timeout", d, "5m"); err == nil || !strings.Contains(err.Error(), "--timeout") || !strings.Contains(err.Error(), "e.g. 5m") {
			t.Errorf("timeout %s: %v", d, err)
		}
	}
	for _, d := range []time.Duration{time.Second, 5 * time.Minute, 24 * time.Hour} {
		if err := ValidateTimeout("--timeout", d, "5m"); err != nil {
			t.Errorf("timeout %s: %v", d, err)
		}
	}
}
