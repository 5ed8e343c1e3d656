package migrate

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
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

// migrationLock is the advisory lock, held by its own connection for the whole run.
type migrationLock struct {
	conn   *sql.Conn
	locker lock.SessionLocker
	log    *slog.Logger
	token  lockToken
}

// lockToken holds the two keys of a second advisory lock that the lock's session
// takes at random after the migration lock and releases just before it. While the
// token is held, that session is alive and holds the migration lock; any other
// connection can test that by trying to take the token, a lock table probe much
// cheaper than reading pg_locks.
type lockToken [2]int64

// takeToken takes a token no other session holds.
func (l *migrationLock) takeToken(ctx context.Context) error {
	for range 3 {
		t := lockToken{rand.Int64N(1 << 31), rand.Int64N(1 << 31)}
		var ok bool
		if err := l.conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1::int4, $2::int4)`,
			pgx.QueryExecModeExec, t[0], t[1]).Scan(&ok); err != nil {
			return err
		}
		if ok {
			l.token = t
			return nil
		}
	}
	return errors.New("no free advisory lock key for the lock's token")
}

// acquireLock waits up to wait for the lock with goose's Postgres session locker.
// goose probes pg_try_advisory_lock once a second, so wait is rounded up to whole
// seconds (0 tries, then tries once more a second later). Returns *LockBusyError
// (transient) when another session kept it.
func acquireLock(ctx context.Context, db *sql.DB, wait time.Duration, log *slog.Logger) (*migrationLock, error) {
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
	if holder, err := lockHolder(ctx, conn); err == nil && holder != nil {
		log.Info("waiting for the migration lock", "held-by", holder.String(), "lock-wait", wait.String())
	}
	done := make(chan struct{})
	go progress(done, log, "still waiting for the migration lock", wait)
	// The deadline only guards against a probe that hangs; goose's probe count ends the wait.
	lctx, cancel := context.WithTimeout(ctx, time.Duration(probes)*time.Second+30*time.Second)
	err = locker.SessionLock(lctx, conn)
	guardExpired := lctx.Err() != nil // read before cancel() sets it
	cancel()
	close(done)
	if err == nil {
		lk := &migrationLock{conn: conn, locker: locker, log: log}
		if err := lk.takeToken(ctx); err != nil {
			lk.release(ctx)
			return nil, dbconn.Classify(fmt.Errorf("taking the migration lock: %w", err))
		}
		return lk, nil
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
	return nil, failure.AsTransient(&LockBusyError{Waited: wait, Holder: holder})
}

// release unlocks and returns the connection. If unlocking fails the connection is
// discarded, which ends the session and so releases the lock anyway.
func (l *migrationLock) release(ctx context.Context) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if l.token != (lockToken{}) {
		var ok bool
		err := l.conn.QueryRowContext(uctx, `SELECT pg_advisory_unlock($1::int4, $2::int4)`, pgx.QueryExecModeExec, l.token[0], l.token[1]).Scan(&ok)
		if err != nil || !ok {
			if err == nil {
				err = errors.New("the lock's session did not hold its token")
			}
			l.log.Warn("releasing the migration lock failed; closing its session instead", "error", err.Error())
			_ = l.conn.Raw(func(any) error { return driver.ErrBadConn })
			_ = l.conn.Close()
			return
		}
	}
	if err := l.locker.SessionUnlock(uctx, l.conn); err != nil {
		l.log.Warn("releasing the migration lock failed; closing its session instead", "error", err.Error())
		_ = l.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	_ = l.conn.Close()
}

// ErrLockLost is returned (transient) when the session holding the migration lock
// ended during the run (terminated, or the server restarted): another migrator may
// hold the lock now, so this one must not apply anything more.
var ErrLockLost = errors.New("lost the migration lock: its session ended (terminated, or the server restarted); rerun to continue")

// held proves that the lock's session is alive and still holds the lock: before a
// migration without a transaction, and to explain a failed check of versionStore.
func (l *migrationLock) held(ctx context.Context) error {
	var n int
	err := l.conn.QueryRowContext(ctx, `
		SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND pid = pg_backend_pid()
		  AND classid::bigint = ($1::bigint >> 32) AND objid::bigint = ($1::bigint & 4294967295)`, LockID).Scan(&n)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return failure.AsTransient(fmt.Errorf("%w: %v", ErrLockLost, err))
	}
	if n == 0 {
		return failure.AsTransient(ErrLockLost)
	}
	return nil
}

// lost is the error for a version row write that versionStore refused: the
// lock session's own view when it has one (its error, as held gives before a
// migration), ErrLockLost otherwise.
func (l *migrationLock) lost(ctx context.Context) error {
	if err := l.held(ctx); err != nil {
		return err
	}
	return failure.AsTransient(ErrLockLost)
}

// settle waits, after the lock is taken, until no other chartreuse session of this
// database is inside a transaction. A migrator whose lock session was terminated may
// still be committing the migration it started before it noticed; reading the
// version table before that commit would apply the same migration twice.
func (l *migrationLock) settle(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var pids []int64
		rows, err := l.conn.QueryContext(ctx, `
			SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'chartreuse'
			  AND pid <> pg_backend_pid() AND xact_start IS NOT NULL AND state <> 'idle'
			  AND backend_type = 'client backend'`)
		if err != nil {
			return dbconn.Classify(fmt.Errorf("checking for migrations still in flight: %w", err))
		}
		for rows.Next() {
			var pid int64
			if err := rows.Scan(&pid); err != nil {
				rows.Close()
				return dbconn.Classify(err)
			}
			pids = append(pids, pid)
		}
		rows.Close()
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return failure.Transientf("after taking the migration lock, chartreuse sessions %v were still in a transaction after %s (a migrator that lost its lock?); rerun later", pids, limit)
		}
		l.log.Info("waiting for transactions of another chartreuse session to end before reading the version table", "pids", pids)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lockHolder finds the session holding the advisory lock, if another one does.
func lockHolder(ctx context.Context, q Querier) (*Session, error) {
	var s Session
	var age float64
	err := q.QueryRowContext(ctx, `
		SELECT l.pid, coalesce(a.usename::text, ''), coalesce(a.application_name, ''), coalesce(a.state, ''),
		       coalesce(extract(epoch FROM now() - a.xact_start), 0)::float8
		FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295)
		  AND l.pid <> pg_backend_pid()
		LIMIT 1`, LockID).Scan(&s.PID, &s.User, &s.ApplicationName, &s.State, &age)
	if err == sql.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.XactAge = time.Duration(age * float64(time.Second))
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
