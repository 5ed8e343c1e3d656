package migrate

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// countingQuerier counts the watcher's queries and fails them.
type countingQuerier struct{ n atomic.Int32 }

func (q *countingQuerier) QueryContext(context.Context, string, ...any) (*sql.Rows, error) {
	q.n.Add(1)
	return nil, errors.New("no database here")
}

func (q *countingQuerier) QueryRowContext(context.Context, string, ...any) *sql.Row {
	panic("the watcher uses QueryContext")
}

// TestWatcherSamplesOnlyAfterAnInterval: a migration that ends before half an
// interval costs no pg_locks query; a longer one is sampled.
func TestWatcherSamplesOnlyAfterAnInterval(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pids := func() []int32 { return []int32{1} }
	q := &countingQuerier{}
	w := startWatcher(context.Background(), q, pids, time.Hour, log)
	w.Begin("version", 1)
	if wait := w.End(); wait != nil || q.n.Load() != 0 {
		t.Fatalf("a migration shorter than the interval was sampled %d times (last wait %v)", q.n.Load(), wait)
	}
	w.Stop()

	q = &countingQuerier{}
	w = startWatcher(context.Background(), q, pids, 2*time.Millisecond, log)
	defer w.Stop()
	w.Begin("version", 2)
	eventually(t, "the watcher's first sample", func() bool { return q.n.Load() > 0 })
	w.End()
}
