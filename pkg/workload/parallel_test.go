package workload

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestForEach(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name        string
		n, limit    int
		stopOnError bool
		failAt      int // -1: none
		wantCalls   func(int) bool
		wantNotRun  bool
	}{
		{"all succeed", 50, 4, true, -1, func(c int) bool { return c == 50 }, false},
		{"failure stops new calls", 50, 1, true, 3, func(c int) bool { return c == 4 }, true},
		{"failure does not stop the others", 50, 4, false, 3, func(c int) bool { return c == 50 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				var calls, inFlight, peak atomic.Int32
				errs := forEach(context.Background(), tt.n, tt.limit, tt.stopOnError, func(i int) error {
					calls.Add(1)
					now := inFlight.Add(1)
					defer inFlight.Add(-1)
					for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
					}
					time.Sleep(time.Millisecond)
					if i == tt.failAt {
						return boom
					}
					return nil
				})
				if !tt.wantCalls(int(calls.Load())) {
					t.Errorf("%d calls", calls.Load())
				}
				if int(peak.Load()) > tt.limit {
					t.Errorf("%d calls at once, limit %d", peak.Load(), tt.limit)
				}
				if tt.failAt >= 0 && !errors.Is(errs[tt.failAt], boom) {
					t.Errorf("error at %d: %v", tt.failAt, errs[tt.failAt])
				}
				notRun := 0
				for _, err := range errs {
					if errors.Is(err, errNotStarted) {
						notRun++
					}
				}
				if (notRun > 0) != tt.wantNotRun || notRun+int(calls.Load()) != tt.n {
					t.Errorf("%d calls, %d marked not started, of %d", calls.Load(), notRun, tt.n)
				}
			})
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		inBubble(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			errs := forEach(ctx, 3, 2, false, func(int) error { t.Error("called after cancel"); return nil })
			for _, err := range errs {
				if !errors.Is(err, errNotStarted) {
					t.Errorf("err %v", err)
				}
			}
		})
	})
}
