package migrate

import (
	"context"
	"database/sql"
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

// waitWatcher polls pg_locks while a migration runs, so that a lock timeout can
// name what it waited for and who held it (PostgreSQL's error says neither), and a
// long wait shows in the log while it happens. One watcher serves a whole run: a
// migration only marks its start and end, and only one that runs for half an
// interval is sampled, so the many that take milliseconds cost no query, timer or
// goroutine of their own.
type waitWatcher struct {
	q     Querier // idle connection, used only by the watcher while a migration runs
	pids  func() []int32
	every time.Duration
	log   *slog.Logger

	closeQ func() // releases q after the watcher stopped; nil keeps it

	mu     sync.Mutex    // held while sampling: End waits for a sample in flight
	cur    *watched      // the migration running, nil between migrations
	waited time.Duration // seen waiting, over the migrations that ended
	stop   chan struct{}
	done   chan struct{}
}

type watched struct {
	start   time.Time
	waiting time.Time // when a sample first saw the current wait; zero: not waiting
	attrs   []any     // for log
	last    *LockWait
	logged  string
}

// watchInterval samples a few times within lock_timeout so a wait that ends in a
// timeout has been seen.
func watchInterval(lockTimeout time.Duration) time.Duration {
	if lockTimeout <= 0 {
		return time.Second
	}
	return min(max(lockTimeout/5, 100*time.Millisecond), time.Second)
}

// startWatcher watches the lock's session (pid) from a connection of its own, or
// not at all when none can be had: the watcher only explains, it guards nothing.
func (m *Migrator) startWatcher(ctx context.Context, pid uint32) *waitWatcher {
	every := watchInterval(m.Opts.LockTimeout)
	conn, err := m.DB.Conn(ctx)
	if err != nil {
		m.Log.Warn("cannot watch the migrations' lock waits: no second connection", "error", err.Error())
		w := &waitWatcher{stop: make(chan struct{}), done: make(chan struct{})}
		close(w.done)
		return w
	}
	w := startWatcher(ctx, conn, func() []int32 { return []int32{int32(pid)} }, every, m.Log)
	w.closeQ = func() { conn.Close() }
	return w
}

func startWatcher(ctx context.Context, q Querier, pids func() []int32, every time.Duration, log *slog.Logger) *waitWatcher {
	w := &waitWatcher{q: q, pids: pids, every: every, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run(ctx)
	return w
}

func (w *waitWatcher) run(ctx context.Context) {
	defer close(w.done)
	half := max(w.every/2, time.Millisecond)
	t := time.NewTicker(half)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-ctx.Done():
			return
		case now := <-t.C:
			w.mu.Lock()
			if c := w.cur; c != nil && now.Sub(c.start) >= half {
				// The query runs on ctx, never cancelled by Stop, so the connection
				// is idle and usable again when End returns.
				wait, err := w.sample(ctx)
				switch {
				case err == nil && wait != nil && c.waiting.IsZero():
					c.waiting = now
				case err == nil && wait == nil && !c.waiting.IsZero():
					w.waited += time.Since(c.waiting)
					c.waiting = time.Time{}
				}
				if err == nil && wait != nil {
					c.last = wait
					if s := wait.String(); s != c.logged {
						w.log.Warn("migration is waiting for a lock", append(slices.Clip(c.attrs), "wait", s)...)
						c.logged = s
					}
				}
			}
			w.mu.Unlock()
		}
	}
}

// Begin marks the start of a migration; attrs name it in the log.
func (w *waitWatcher) Begin(attrs ...any) {
	if w.q == nil {
		return
	}
	w.mu.Lock()
	w.cur = &watched{start: time.Now(), attrs: attrs}
	w.mu.Unlock()
}

// End marks the end of the migration and returns the last wait seen, nil if none.
func (w *waitWatcher) End() *LockWait {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.cur
	w.cur = nil
	if c == nil {
		return nil
	}
	if !c.waiting.IsZero() {
		w.waited += time.Since(c.waiting)
	}
	return c.last
}

// Stop ends the watcher and returns how long the migrations were seen waiting
// for locks: from the first sample that saw a wait to the first that did not
// (or the migration's end), so a wait shorter than a sampling interval may
// not count and a counted one may be short by up to one interval.
func (w *waitWatcher) Stop() time.Duration {
	close(w.stop)
	<-w.done
	if w.closeQ != nil {
		w.closeQ()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.waited
}

func (w *waitWatcher) sample(ctx context.Context) (*LockWait, error) {
	pids := w.pids()
	if len(pids) == 0 {
		return nil, nil
	}
	rows, err := w.q.QueryContext(ctx, `
		SELECT wl.locktype, wl.mode, coalesce(wl.relation::regclass::text, ''),
		       b.pid, coalesce(a.usename::text, ''), coalesce(a.application_name, ''), coalesce(a.state, ''),
		       coalesce(extract(epoch FROM now() - a.xact_start), 0)::float8,
		       coalesce(host(a.client_addr), ''), a.backend_start
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
		var started sql.NullTime
		if err := rows.Scan(&lw.LockType, &lw.Mode, &lw.Relation, &s.PID, &s.User, &s.ApplicationName, &s.State, &age, &s.ClientAddr, &started); err != nil {
			return nil, err
		}
		s.XactAge = time.Duration(age * float64(time.Second))
		s.BackendStart = started.Time
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
