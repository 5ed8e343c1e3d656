// Package downtime reads a run's downtime window and its floor (issue 13) from
// the application's pods as an e2e.PodWatch recorded them, so that `make demo`
// and `make bench` (section 8) print the same figures, measured the same way.
//
//   - the window: the first application pod that existed when the run started
//     begins terminating (or is deleted) → the first new pod is Ready;
//   - the floor, what no orchestration can save, measured in the same run: the
//     old pods terminating as their own shutdown allows (first stopping → last
//     gone), plus the migrations' own SQL time (migrate's sql-seconds result),
//     plus a new pod starting (first seen → Ready).
package downtime

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/chartreuse-go/chartreuse/test/e2e"
)

// Figures are one run's window and floor. Times are when the events reached
// this process (e2e.PodWatch's clock).
type Figures struct {
	Down, Up time.Time     // first old pod stopping; first new pod Ready
	Window   time.Duration // Up − Down
	// AllUp is when the last of the new pods the caller expects was first
	// Ready (zero if fewer became Ready): with several Deployments, when every
	// one of them serves again.
	AllUp time.Time

	// The floor; Floor is zero when a part of it could not be read (a pod not
	// seen gone, no new pod, no sql-seconds result).
	Stopping time.Duration // first old pod stopping → last old pod gone
	SQL      time.Duration // migrate's sql-seconds
	Starting time.Duration // first new pod seen → Ready
	Floor    time.Duration // Stopping + SQL + Starting
}

// Measure reads the figures of a run that started at start (before it was
// submitted) from pods, with migrate's sql-seconds result; want is how many
// new pods the application runs once restored (for AllUp). ok is false when
// no old pod stopped or no new pod became Ready.
func Measure(pods *e2e.PodWatch, start time.Time, sqlSeconds string, want int) (f Figures, ok bool) {
	f.Down, f.Up = pods.Window(start)
	if f.Down.IsZero() || f.Up.IsZero() {
		return f, false
	}
	f.Window = f.Up.Sub(f.Down)
	old := pods.Existing(start)
	f.AllUp = allReady(pods.Events(), old, want)
	gone := pods.LastDeleted(old)
	seen, ready := pods.FirstNewReady(start)
	sql, err := strconv.ParseFloat(sqlSeconds, 64)
	if gone.IsZero() || seen.IsZero() || err != nil {
		return f, true
	}
	f.Stopping, f.Starting = gone.Sub(f.Down), ready.Sub(seen)
	f.SQL = time.Duration(sql * float64(time.Second))
	f.Floor = f.Stopping + f.SQL + f.Starting
	return f, true
}

// allReady is when the want-th pod not in old was first seen Ready.
func allReady(events []e2e.PodEvent, old map[types.UID]string, want int) time.Time {
	if want <= 0 {
		return time.Time{}
	}
	ready := map[types.UID]bool{}
	for _, e := range events {
		if _, isOld := old[e.UID]; isOld || e.Type == watch.Deleted || !e.Ready || ready[e.UID] {
			continue
		}
		ready[e.UID] = true
		if len(ready) == want {
			return e.At
		}
	}
	return time.Time{}
}

// Ratio is Window/Floor (0 without a floor).
func (f Figures) Ratio() float64 {
	if f.Floor <= 0 {
		return 0
	}
	return f.Window.Seconds() / f.Floor.Seconds()
}

// WindowLine renders the window as make demo prints it.
func (f Figures) WindowLine() string {
	return fmt.Sprintf("downtime: first pod stopping %s -> first new pod ready %s = %s",
		f.Down.Format("15:04:05.0"), f.Up.Format("15:04:05.0"), f.Window.Round(100*time.Millisecond))
}

// FloorLine renders the floor and the ratio ("" without a floor).
func (f Figures) FloorLine() string {
	if f.Floor <= 0 {
		return ""
	}
	return fmt.Sprintf("floor: pods terminating %s + migrations' SQL %.3fs + a new pod starting %s = %s; window/floor %.1fx",
		f.Stopping.Round(100*time.Millisecond), f.SQL.Seconds(), f.Starting.Round(100*time.Millisecond), f.Floor.Round(100*time.Millisecond), f.Ratio())
}

// WaitWindow waits (until ctx ends) for the pods to show the window's end:
// a step that restores without waiting for readiness returns before it.
func WaitWindow(ctx context.Context, pods *e2e.PodWatch, start time.Time) {
	_ = e2e.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		_, up := pods.Window(start)
		return !up.IsZero(), nil
	})
}
