package step

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/results"
	"github.com/chartreuse-go/chartreuse/pkg/version"
)

// countingOptions counts its validations: each attempt must validate afresh.
type countingOptions struct{ validated int }

func (o *countingOptions) Flags() []cli.Flag { return nil }
func (o *countingOptions) Validate() error   { o.validated++; return nil }

// attemptLog is what a test step saw of its attempts.
type attemptLog struct {
	at      []time.Duration // since the start, fake time
	freshRe []bool          // the Env's results were empty when the attempt began
}

// scripted returns a step that fails with errs[i] on attempt i (the last one
// repeating), recording when each attempt began.
func scripted(opts *countingOptions, log *attemptLog, errs ...error) Spec {
	start := time.Now()
	n := 0
	return Spec{Name: "demo", Options: []Options{opts}, Run: func(_ context.Context, env *Env) error {
		log.at = append(log.at, time.Since(start))
		log.freshRe = append(log.freshRe, len(env.Results.Names()) == 0)
		env.Results.Set("attempt-"+string(rune('a'+n)), "x")
		err := errs[min(n, len(errs)-1)]
		n++
		return err
	}}
}

func runIn(ctx context.Context, spec Spec, args ...string) (int, results.Summary, string) {
	var out, errOut bytes.Buffer
	code := Run(ctx, spec, append([]string{"demo", "--skip-version-check"}, args...), &out, &errOut)
	var sum results.Summary
	_ = json.Unmarshal(out.Bytes(), &sum)
	return code, sum, errOut.String()
}

var retryLine = regexp.MustCompile(`(?m)^.*level=WARN msg="transient failure: trying again".*attempt=(\d+).*$`)

func TestRetryTransientFor(t *testing.T) {
	version.Version = "0.1.0"
	transient := failure.Transientf("API server unreachable: connection refused")
	tests := []struct {
		name     string
		args     []string
		errs     []error
		code     int
		attempts int
		// pauses are the waits between attempts before jitter: each real pause is
		// that long or up to a fifth longer. The last pause is cut short to start
		// the last attempt exactly at --retry-transient-for when lastAt is set.
		pauses []time.Duration
		lastAt time.Duration
	}{
		{"off by default", nil, []error{transient}, 75, 1, nil, 0},
		{"succeeds on the third attempt", []string{"--retry-transient-for", "1m"}, []error{transient, transient, nil}, 0, 3,
			[]time.Duration{time.Second, 2 * time.Second}, 0},
		{"gives up once the time has passed", []string{"--retry-transient-for", "10s"}, []error{transient}, 75, 5,
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, 10 * time.Second},
		{"a permanent error ends it at once", []string{"--retry-transient-for", "1m"}, []error{transient, errors.New("forbidden")}, 1, 2,
			[]time.Duration{time.Second}, 0},
		{"a usage error ends it at once", []string{"--retry-transient-for", "1m"}, []error{failure.Usagef("bad")}, 2, 1, nil, 0},
		{"the pause stops growing at 30s", []string{"--retry-transient-for", "2m"}, []error{transient, transient, transient, transient, transient, transient, transient, nil}, 0, 8,
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				opts := &countingOptions{}
				var log attemptLog
				code, sum, stderr := runIn(context.Background(), scripted(opts, &log, tt.errs...), tt.args...)
				if code != tt.code || len(log.at) != tt.attempts {
					t.Fatalf("exit %d after %d attempts, want %d after %d; stderr:\n%s", code, len(log.at), tt.code, tt.attempts, stderr)
				}
				if opts.validated != tt.attempts {
					t.Errorf("options validated %d times for %d attempts", opts.validated, tt.attempts)
				}
				for i, p := range tt.pauses {
					if got := log.at[i+1] - log.at[i]; got < p || got > p*6/5 {
						t.Errorf("pause before attempt %d: %s, want %s to %s (attempts at %v)", i+2, got, p, p*6/5, log.at)
					}
				}
				if tt.lastAt > 0 && log.at[len(log.at)-1] != tt.lastAt {
					t.Errorf("last attempt at %s, want at %s (attempts at %v)", log.at[len(log.at)-1], tt.lastAt, log.at)
				}
				for i, fresh := range log.freshRe {
					if !fresh {
						t.Errorf("attempt %d began with the results of an earlier one", i+1)
					}
				}
				lines := retryLine.FindAllStringSubmatch(stderr, -1)
				if len(lines) != tt.attempts-1 {
					t.Errorf("%d retry lines for %d attempts:\n%s", len(lines), tt.attempts, stderr)
				}
				for i, l := range lines {
					if l[1] != string(rune('1'+i)) || !strings.Contains(l[0], "connection refused") || !strings.Contains(l[0], "next-attempt-in=") {
						t.Errorf("retry line %d: %s", i+1, l[0])
					}
				}
				if tt.code == 75 && tt.attempts > 1 && !strings.Contains(sum.Error, "still failing after 5 attempts in 10s") {
					t.Errorf("summary error %q does not say how long it tried", sum.Error)
				}
				// Only the last attempt's results are reported, with the step's error.
				if last := "attempt-" + string(rune('a'+len(log.at)-1)); tt.code != 2 && (len(sum.Results) != 1+min(tt.code, 1) || sum.Results[last] != "x" || sum.Results[ResultError] != sum.Error) {
					t.Errorf("results %v, want only %s and error %q", sum.Results, last, sum.Error)
				}
			})
		})
	}
}

// SIGTERM while waiting for the next attempt ends the step at once, exit 75.
func TestRetryEndsAtOnceOnSIGTERM(t *testing.T) {
	version.Version = "0.1.0"
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var log attemptLog
		go func() {
			time.Sleep(500 * time.Millisecond) // inside the 1s pause after the first attempt
			cancel()
		}()
		start := time.Now()
		code, sum, stderr := runIn(ctx, scripted(&countingOptions{}, &log, failure.Transientf("lock busy")), "--retry-transient-for", "10m")
		if code != 75 || len(log.at) != 1 {
			t.Fatalf("exit %d after %d attempts:\n%s", code, len(log.at), stderr)
		}
		if took := time.Since(start); took != 500*time.Millisecond {
			t.Errorf("returned %s after the start, want at the SIGTERM (500ms)", took)
		}
		if !strings.HasPrefix(sum.Error, "interrupted: ") {
			t.Errorf("summary error %q", sum.Error)
		}
	})
}

// The retry line carries the error masked like every other log line.
func TestRetryLineIsRedacted(t *testing.T) {
	version.Version = "0.1.0"
	const pw = "s3cr3t-pa55"
	synctest.Test(t, func(t *testing.T) {
		n := 0
		spec := Spec{Name: "demo", Run: func(_ context.Context, env *Env) error {
			env.Redactor.Add(pw)
			if n++; n == 1 {
				return failure.Transientf("dial postgres://app:%s@db: refused", pw)
			}
			return nil
		}}
		for _, format := range []string{"text", "json"} {
			n = 0
			code, _, stderr := runIn(context.Background(), spec, "--retry-transient-for", "1m", "--log-format", format)
			if code != 0 || !strings.Contains(stderr, "trying again") {
				t.Fatalf("%s: exit %d:\n%s", format, code, stderr)
			}
			if strings.Contains(stderr, pw) {
				t.Errorf("%s: the retry line leaks the password:\n%s", format, stderr)
			}
		}
	})
}

func TestRetryTransientForRejectsNegative(t *testing.T) {
	version.Version = "0.1.0"
	var log attemptLog
	code, _, stderr := runIn(context.Background(), scripted(&countingOptions{}, &log, nil), "--retry-transient-for", "-1s")
	if code != 2 || len(log.at) != 0 || !strings.Contains(stderr, "--retry-transient-for") {
		t.Fatalf("exit %d, %d attempts:\n%s", code, len(log.at), stderr)
	}
}
