package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/chartreuse-go/chartreuse/pkg/dbconn"
)

// SessionSettings are applied to every pooled connection right after it connects.
// database/sql hands goose any connection of the pool, so a setting made once on
// one connection would not be enough.
type SessionSettings struct {
	Role             string // SET ROLE; empty keeps the login role
	LockTimeout      time.Duration
	StatementTimeout time.Duration
}

// Probe observes the pool's connections: their backend pids (to find what a
// migration waits for) and the last statement that failed (to place an error in its
// file). The zero value observes nothing.
type Probe struct {
	mu     sync.Mutex
	pids   map[uint32]bool
	failed *failedStatement
}

type failedStatement struct {
	sql string
	err *pgconn.PgError
}

// PIDs are the backend pids of every connection the pool opened.
func (p *Probe) PIDs() []int32 {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int32, 0, len(p.pids))
	for pid := range p.pids {
		out = append(out, int32(pid))
	}
	return out
}

// FailedStatement returns the SQL of the statement that raised pgErr, if seen.
func (p *Probe) FailedStatement(pgErr *pgconn.PgError) (string, bool) {
	if p == nil || pgErr == nil {
		return "", false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed != nil && p.failed.err == pgErr {
		return p.failed.sql, true
	}
	return "", false
}

func (p *Probe) addPID(pid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pids == nil {
		p.pids = map[uint32]bool{}
	}
	p.pids[pid] = true
}

type sqlKey struct{}

// TraceQueryStart implements pgx.QueryTracer.
func (p *Probe) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, sqlKey{}, data.SQL)
}

// TraceQueryEnd implements pgx.QueryTracer.
func (p *Probe) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	var pgErr *pgconn.PgError
	if !errors.As(data.Err, &pgErr) {
		return
	}
	s, _ := ctx.Value(sqlKey{}).(string)
	p.mu.Lock()
	p.failed = &failedStatement{sql: s, err: pgErr}
	p.mu.Unlock()
}

// OpenDB opens the database/sql pool goose runs on (pgx's stdlib driver). Every new
// connection gets the session settings; a cancelled context (SIGTERM) sends the
// server a cancel request, so the running statement stops and its transaction rolls
// back at once instead of when it would have finished.
func OpenDB(cfg *pgx.ConnConfig, s SessionSettings) (*sql.DB, *Probe) {
	probe := &Probe{}
	c := cfg.Copy()
	c.Tracer = probe
	c.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 5 * time.Second}
	}
	db := stdlib.OpenDB(*c, stdlib.OptionAfterConnect(func(ctx context.Context, conn *pgx.Conn) error {
		if err := setupSession(ctx, conn, s); err != nil {
			_ = conn.Close(ctx) // stdlib does not close a connection whose AfterConnect failed
			return err
		}
		probe.addPID(conn.PgConn().PID())
		return nil
	}))
	return db, probe
}

func setupSession(ctx context.Context, conn *pgx.Conn, s SessionSettings) error {
	// client_connection_check_interval (PostgreSQL 14+) makes the server notice a
	// killed migrator during a long statement, roll back and free its locks.
	_, err := conn.Exec(ctx, `SELECT set_config('lock_timeout', $1, false), set_config('statement_timeout', $2, false),
		(SELECT set_config('client_connection_check_interval', '1000', false) WHERE current_setting('server_version_num')::int >= 140000)`,
		millis(s.LockTimeout), millis(s.StatementTimeout))
	if err != nil {
		return fmt.Errorf("setting lock_timeout and statement_timeout: %w", err)
	}
	if s.Role != "" {
		if _, err := conn.Exec(ctx, "SET ROLE "+pgx.Identifier{s.Role}.Sanitize()); err != nil {
			role, user := qualify("", s.Role), qualify("", conn.Config().User)
			hint := "check that the role exists"
			if dbconn.SQLState(err) == dbconn.InsufficientPrivilege {
				hint = fmt.Sprintf("the login user must be a member of the role: GRANT %s TO %s;", role, user)
			}
			return fmt.Errorf("--role: SET ROLE %s as %s: %w (%s)", role, user, err, hint)
		}
	}
	return nil
}

func millis(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
