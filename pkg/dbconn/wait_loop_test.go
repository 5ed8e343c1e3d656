package dbconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/poll"
)

// fakeClock advances only when the loop sleeps, so tests run instantly and
// deterministically.
type fakeClock struct {
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

func testLogger(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var testCfg = func() *pgx.ConnConfig {
	cfg, err := pgx.ParseConfig("postgres://app@db.internal:5432/app")
	if err != nil {
		panic(err)
	}
	return cfg
}()

// connectErr wraps a cause the way a failed Connect would, then explains it.
func connectErr(cause error) error {
	return Explain(testCfg, Classify(fmt.Errorf("connecting to %s: %w", Describe(testCfg), cause)))
}

func TestWaiterClassifiesErrors(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name     string
		err      error
		code     int
		attempts int    // 0: more than one
		progress string // must appear in the log
	}{
		{"connection refused", connectErr(refused), 75, 0, "connection refused"},
		{"DNS name not found", connectErr(&net.DNSError{Err: "no such host", Name: "db.internal", IsNotFound: true}), 75, 0, "no such host"},
		{"server starting up", connectErr(&pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"}), 75, 0, "starting up"},
		{"connect timeout", connectErr(fmt.Errorf("dial: %w", context.DeadlineExceeded)), 75, 0, "deadline exceeded"},
		{"database does not exist yet", connectErr(&pgconn.PgError{Severity: "FATAL", Code: "3D000", Message: `database "app" does not exist`}), 75, 0, `database \"app\" does not exist yet`},
		{"too many connections", connectErr(&pgconn.PgError{Severity: "FATAL", Code: "53300", Message: "sorry, too many clients already"}), 75, 0, "no free connection slots"},
		{"wrong password", connectErr(&pgconn.PgError{Severity: "FATAL", Code: "28P01", Message: `password authentication failed for user "app"`}), 1, 1, ""},
		{"pg_hba rejects", connectErr(&pgconn.PgError{Severity: "FATAL", Code: "28000", Message: `no pg_hba.conf entry for host`}), 1, 1, ""},
		{"role may not log in", connectErr(&pgconn.PgError{Severity: "FATAL", Code: "28000", Message: `role "app" is not permitted to log in`}), 1, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			clock := newFakeClock()
			calls := 0
			w := &Waiter{Clock: clock, Log: testLogger(&logs), Attempt: func(context.Context) error { calls++; return tt.err }}
			st, err := w.Wait(context.Background(), 30*time.Second)
			if got := failure.Code(err); got != tt.code {
				t.Fatalf("exit code %d, want %d (%v)", got, tt.code, err)
			}
			if st.Attempts != calls {
				t.Errorf("Stats.Attempts = %d, but the attempt ran %d times", st.Attempts, calls)
			}
			if tt.attempts > 0 && calls != tt.attempts {
				t.Errorf("attempts = %d, want %d", calls, tt.attempts)
			}
			if tt.attempts == 0 && calls < 10 {
				t.Errorf("only %d attempts in 30s of transient errors", calls)
			}
			if !strings.Contains(logs.String(), tt.progress) {
				t.Errorf("log does not say %q:\n%s", tt.progress, logs.String())
			}
			if tt.code == 75 && !strings.Contains(err.Error(), "not ready after 30s") {
				t.Errorf("timeout error does not say so: %v", err)
			}
		})
	}
}

func TestWaiterSucceedsAfterFailures(t *testing.T) {
	clock := newFakeClock()
	calls := 0
	w := &Waiter{Clock: clock, Attempt: func(context.Context) error {
		calls++
		if calls < 4 {
			return connectErr(syscall.ECONNREFUSED)
		}
		return nil
	}}
	st, err := w.Wait(context.Background(), time.Minute)
	if err != nil || st.Attempts != 4 || st.Last != nil {
		t.Fatalf("stats %+v, err %v", st, err)
	}
	var slept time.Duration
	for _, d := range clock.sleeps {
		slept += d
	}
	if st.Waited != slept || len(clock.sleeps) != 3 {
		t.Errorf("waited %s over %d sleeps, want %s over 3", st.Waited, len(clock.sleeps), slept)
	}
}

func TestLoopTimeoutNamesTheLastErrorAndKeepsTheDeadline(t *testing.T) {
	clock := newFakeClock()
	start := clock.now
	calls := 0
	l := &poll.Loop{Clock: clock, Backoff: poll.Backoff{Initial: InitialPause, Max: MaxPause}, What: "the database"}
	st, err := l.Run(context.Background(), 10*time.Second, func(context.Context) error {
		calls++
		if calls < 5 {
			return connectErr(syscall.ECONNREFUSED)
		}
		return connectErr(&pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is shutting down"})
	})
	if failure.Code(err) != 75 {
		t.Fatalf("code %d: %v", failure.Code(err), err)
	}
	if !strings.Contains(err.Error(), "shutting down") || strings.Contains(err.Error(), "refused") {
		t.Errorf("the timeout error should name the last error only: %v", err)
	}
	if !errors.Is(err, st.Last) {
		t.Errorf("the timeout error does not wrap the last error")
	}
	if got := clock.now.Sub(start); got != 10*time.Second {
		t.Errorf("the last attempt ran %s after the start, want exactly at the deadline (10s)", got)
	}
	for i, d := range clock.sleeps {
		if d > MaxPause {
			t.Errorf("sleep %d = %s exceeds the cap", i, d)
		}
	}
}

func TestProgressAtMostEveryTenSeconds(t *testing.T) {
	var logs bytes.Buffer
	clock := newFakeClock()
	w := &Waiter{Clock: clock, Log: testLogger(&logs), Attempt: func(context.Context) error {
		clock.now = clock.now.Add(50 * time.Millisecond) // each attempt takes a little time
		return connectErr(&pgconn.PgError{Severity: "FATAL", Code: "3D000", Message: `database "app" does not exist`})
	}}
	if _, err := w.Wait(context.Background(), time.Minute); failure.Code(err) != 75 {
		t.Fatalf("want a timeout, got %v", err)
	}
	lines := 0
	first := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `msg="waiting for the database"`) {
			first++
		}
		if strings.Contains(line, `msg="still waiting for the database"`) {
			if !strings.Contains(line, "does not exist yet") {
				t.Errorf("progress line does not say what is wrong: %s", line)
			}
			lines++
		}
	}
	if first != 1 {
		t.Errorf("%d initial waiting lines, want 1", first)
	}
	// One minute with a line at most every 10 s after the first: 5 or 6 lines.
	if lines < 4 || lines > 6 {
		t.Errorf("%d progress lines in one minute, want about one per 10 s:\n%s", lines, logs.String())
	}
}

func TestCancelledWaitIsTransient(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	w := &Waiter{Clock: newFakeClock(), Attempt: func(context.Context) error {
		calls++
		if calls == 3 {
			cancel() // SIGTERM during the third attempt
		}
		return connectErr(syscall.ECONNREFUSED)
	}}
	st, err := w.Wait(ctx, time.Hour)
	if failure.Code(err) != 75 || !errors.Is(err, context.Canceled) || st.Attempts != 3 {
		t.Fatalf("stats %+v, err %v", st, err)
	}
	if !strings.Contains(err.Error(), "stopped waiting for the database after 3 attempts") {
		t.Errorf("message: %v", err)
	}
}
