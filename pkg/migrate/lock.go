package migrate

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/pressly/goose/v3/lock"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// LockID is the key of the session-level advisory lock held while migrating:
// goose's lock.DefaultLockID, 4097083626 (crc32 of "goose"). A goose Provider with
// goose's default session locker takes the same lock, so the two never migrate a
// database at the same time. Advisory locks are per database. To see the holder:
//
//	SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 4097083626 AND granted;
const LockID int64 = lock.DefaultLockID

// migrationLock is the advisory lock, held by its own session for the whole run.
// The run's migrations execute on that same session (see Migrator.execute).
type migrationLock struct {
	conn   *sql.Conn
	locker lock.SessionLocker
	log    *slog.Logger
}

// acquireLock waits up to wait for the lock with goose's Postgres session locker.
// goose probes pg_try_advisory_lock once a second, so wait is rounded up to whole
// seconds (0 tries, then tries once more a second later). Returns *LockBusyError
// (transient) when another session kept it.
//
// The holder is named in the log when the wait begins and in the error: its run and
// step (from its application_name) and, through origins, its pod. The pod lookup
// runs beside the wait, never delaying it.
func acquireLock(ctx context.Context, db *sql.DB, wait time.Duration, log *slog.Logger, origins Origins) (*migrationLock, error) {
	probes := uint64(math.Ceil(wait.Seconds()))
	if probes < 1 {
		probes = 1
	}
	// A fresh locker per run: goose's retry counters live in the locker.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(LockID),
		lock.WithLockTimeout(1, probes), lock.WithUnlockTimeout(1, 5))
	if err != nil {
		return nil, fmt.Errorf("creating the migration locker: %w", err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, dbconn.Classify(fmt.Errorf("connecting for the migration lock: %w", err))
	}
	// A context of its own: the lookup stops when the wait ends, whichever first.
	octx, stopLookup := context.WithCancel(ctx)
	logged := make(chan struct{})
	if holder, err := lockHolder(ctx, conn); err == nil && holder != nil {
		go func() {
			defer close(logged)
			describeOrigin(octx, origins, holder)
			log.Info("waiting for the migration lock", "held-by", holder.String(), "lock-wait", wait.String())
		}()
	} else {
		close(logged)
	}
	defer func() { stopLookup(); <-logged }()
	done := make(chan struct{})
	go progress(done, log, "still waiting for the migration lock", wait)
	// The deadline only guards against a probe that hangs; goose's probe count ends the wait.
	lctx, cancel := context.WithTimeout(ctx, time.Duration(probes)*time.Second+30*time.Second)
	err = locker.SessionLock(lctx, conn)
	guardExpired := lctx.Err() != nil // read before cancel() sets it
	cancel()
	close(done)
	if err == nil {
		return &migrationLock{conn: conn, locker: locker, log: log}, nil
	}
	defer conn.Close()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted while waiting for the migration lock: %w", ctx.Err())
	}
	// goose wraps query failures; running out of probes returns its bare error.
	if errors.Unwrap(err) != nil && !guardExpired {
		return nil, dbconn.Classify(fmt.Errorf("taking the migration lock: %w", err))
	}
	// Out of probes because the server went away is not a busy lock.
	if perr := conn.PingContext(ctx); perr != nil {
		return nil, failure.Transientf("waiting for the migration lock: lost the connection to the database (restarted?): %v; rerun to continue", perr)
	}
	holder, _ := lockHolder(ctx, conn)
	if holder != nil {
		describeOrigin(ctx, origins, holder)
	}
	return nil, failure.AsTransient(&LockBusyError{Waited: wait, Holder: holder})
}

// refuseIfLockHeld is --plan's look at the migration lock: a plan does not take
// it, and does not wait for it either (its step runs before anything is
// stopped, and the workflow retries exit 75). A *LockBusyError with Planning
// when another session holds it.
func (m *Migrator) refuseIfLockHeld(ctx context.Context, q Querier) error {
	holder, err := lockHolder(ctx, q)
	if err != nil {
		return dbconn.Classify(fmt.Errorf("looking for a holder of the migration lock: %w", err))
	}
	if holder == nil {
		return nil
	}
	describeOrigin(ctx, m.Origins, holder)
	return failure.AsTransient(&LockBusyError{Holder: holder, Planning: true})
}

// Origins tells where a session comes from for messages (*podaddr.Finder: its pod,
// or why that cannot be told). It never fails and returns within its own timeout.
type Origins interface {
	Describe(ctx context.Context, addr string, started time.Time) string
}

// describeOrigin fills s.Origin; without origins the message keeps the bare address.
func describeOrigin(ctx context.Context, origins Origins, s *Session) {
	if origins != nil && s != nil {
		s.Origin = origins.Describe(ctx, s.ClientAddr, s.BackendStart)
	}
}

// release unlocks and returns the connection. If unlocking fails the connection is
// discarded, which ends the session and so releases the lock anyway.
func (l *migrationLock) release(ctx context.Context) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := l.locker.SessionUnlock(uctx, l.conn); err != nil {
		l.log.Warn("releasing the migration lock failed; closing its session instead", "error", err.Error())
		_ = l.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	_ = l.conn.Close()
}

// lockHolder finds the session holding the advisory lock, if another one does.
func lockHolder(ctx context.Context, q Querier) (*Session, error) {
	var s Session
	var age float64
	var started sql.NullTime
	err := q.QueryRowContext(ctx, `
		SELECT l.pid, coalesce(a.usename::text, ''), coalesce(a.application_name, ''), coalesce(a.state, ''),
		       coalesce(extract(epoch FROM now() - a.xact_start), 0)::float8,
		       coalesce(host(a.client_addr), ''), a.backend_start
		FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295)
		  AND l.pid <> pg_backend_pid()
		LIMIT 1`, LockID).Scan(&s.PID, &s.User, &s.ApplicationName, &s.State, &age, &s.ClientAddr, &started)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.XactAge = time.Duration(age * float64(time.Second))
	s.BackendStart = started.Time
	return &s, nil
}

// progress logs msg every 30s until done is closed, so long waits show in the log.
func progress(done <-chan struct{}, log *slog.Logger, msg string, limit time.Duration) {
	start := time.Now()
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			log.Info(msg, "waited", time.Since(start).Round(time.Second).String(), "limit", limit.String())
		}
	}
}
