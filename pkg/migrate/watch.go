package migrate

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// LockWait is a lock a migration waited for, as last seen in pg_locks.
type LockWait struct {
	LockType string // relation, tuple, transactionid, ...
	Mode     string // e.g. AccessExclusiveLock
	Relation string // "" when the wait is not on a relation (e.g. another transaction's row lock)
	Blockers []Session
}

func (w *LockWait) String() string {
	what := w.Mode
	if w.Relation != "" {
		what += " on " + w.Relation
	} else {
		what += " (" + w.LockType + " lock)"
	}
	if len(w.Blockers) == 0 {
		return what
	}
	b := make([]string, len(w.Blockers))
	for i := range w.Blockers {
		b[i] = w.Blockers[i].String()
	}
	return what + ", blocked by " + strings.Join(b, "; ")
}

// waitWatcher polls pg_locks while one migration runs, so that a lock timeout can
// name what it waited for and who held it (PostgreSQL's error says neither), and a
// long wait shows in the log while it happens.
type waitWatcher struct {
	q     Querier // idle connection, used only by the watcher while it runs
	pids  func() []int32
	every time.Duration
	log   *slog.Logger
	attrs []any // for log, added only when a wait is logged

	timer *time.Timer
	mu    sync.Mutex
	last  *LockWait
	stop  chan struct{}
	done  chan struct{} // closed when run returns
}

// watchInterval samples a few times within lock_timeout so a wait that ends in a
// timeout has been seen.
func watchInterval(lockTimeout time.Duration) time.Duration {
	if lockTimeout <= 0 {
		return time.Second
	}
	return min(max(lockTimeout/5, 100*time.Millisecond), time.Second)
}

func startWatcher(ctx context.Context, q Querier, pids func() []int32, every time.Duration, log *slog.Logger, attrs ...any) *waitWatcher {
	w := &waitWatcher{q: q, pids: pids, every: every, log: log, attrs: attrs, stop: make(chan struct{}), done: make(chan struct{})}
	// No sample at the start, nor a goroutine: the migration has not reached a lock
	// yet, and most finish in milliseconds, before the first interval ends.
	w.timer = time.AfterFunc(every, func() { w.run(ctx) })
	return w
}

func (w *waitWatcher) run(ctx context.Context) {
	defer close(w.done)
	t := time.NewTicker(w.every)
	defer t.Stop()
	logged := ""
	for {
		// The query runs on ctx, never cancelled by Stop, so the connection is idle
		// and usable again when Stop returns.
		if wait, err := w.sample(ctx); err == nil && wait != nil {
			w.mu.Lock()
			w.last = wait
			w.mu.Unlock()
			if s := wait.String(); s != logged {
				w.log.Warn("migration is waiting for a lock", append(slices.Clip(w.attrs), "wait", s)...)
				logged = s
			}
		}
		select {
		case <-w.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stop ends the watcher and returns the last wait it saw, nil if none.
func (w *waitWatcher) Stop() *LockWait {
	close(w.stop)
	if !w.timer.Stop() {
		<-w.done // sampling started: wait until its query is over
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

func (w *waitWatcher) sample(ctx context.Context) (*LockWait, error) {
	pids := w.pids()
	if len(pids) == 0 {
		return nil, nil
	}
	rows, err := w.q.QueryContext(ctx, `
		SELECT wl.locktype, wl.mode, coalesce(wl.relation::regclass::text, ''),
		       b.pid, coalesce(a.usename::text, ''), coalesce(a.application_name, ''), coalesce(a.state, ''),
		       coalesce(extract(epoch FROM now() - a.xact_start), 0)::float8
		FROM pg_locks wl
		CROSS JOIN LATERAL unnest(pg_blocking_pids(wl.pid)) AS b(pid)
		LEFT JOIN pg_stat_activity a ON a.pid = b.pid
		WHERE NOT wl.granted AND wl.pid = ANY($1) AND wl.pid <> pg_backend_pid()
		ORDER BY b.pid`, pids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var wait *LockWait
	for rows.Next() {
		var lw LockWait
		var s Session
		var age float64
		if err := rows.Scan(&lw.LockType, &lw.Mode, &lw.Relation, &s.PID, &s.User, &s.ApplicationName, &s.State, &age); err != nil {
			return nil, err
		}
		s.XactAge = time.Duration(age * float64(time.Second))
		if wait == nil {
			wait = &lw
		}
		wait.Blockers = append(wait.Blockers, s)
	}
	return wait, rows.Err()
}

// lockTimeoutDetail explains a lock_timeout failure with what the watcher saw.
func lockTimeoutDetail(timeout time.Duration, wait *LockWait) string {
	msg := fmt.Sprintf("lock_timeout (--lock-timeout %s) expired", timeout)
	if wait != nil {
		msg += " waiting for " + wait.String()
		if len(wait.Blockers) > 0 {
			msg += fmt.Sprintf("; let that transaction finish or end it (SELECT pg_terminate_backend(%d);), then rerun", wait.Blockers[0].PID)
			return msg
		}
	} else {
		msg += " waiting for a lock held by another session"
	}
	return msg + "; look for long transactions (SELECT pid, usename, state, xact_start FROM pg_stat_activity WHERE xact_start IS NOT NULL ORDER BY xact_start;), let them finish or end them, then rerun"
}
