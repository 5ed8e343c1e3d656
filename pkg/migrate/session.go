package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// Probe observes the pool's connections: when each was opened, so that a new
// one is not pinged before its first use. The zero value observes nothing.
type Probe struct {
	mu   sync.Mutex
	pids map[uint32]time.Time // when each connection was opened
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

func (p *Probe) addPID(pid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pids == nil {
		p.pids = map[uint32]time.Time{}
	}
	p.pids[pid] = time.Now()
}

// shouldPing keeps stdlib's rule (ping a connection idle for more than a second
// before reusing it) but counts a new connection's age too: stdlib's idle time
// starts at the zero time, so it pinged every connection on its first reuse,
// just after connecting.
func (p *Probe) shouldPing(_ context.Context, sp stdlib.ShouldPingParams) bool {
	idle := sp.IdleDuration
	p.mu.Lock()
	opened, ok := p.pids[sp.Conn.PgConn().PID()]
	p.mu.Unlock()
	if ok {
		idle = min(idle, time.Since(opened))
	}
	return idle > time.Second
}

// OpenDB opens the database/sql pool goose runs on (pgx's stdlib driver). Every new
// connection gets the session settings; a cancelled context (SIGTERM) sends the
// server a cancel request, so the running statement stops and its transaction rolls
// back at once instead of when it would have finished.
func OpenDB(cfg *pgx.ConnConfig, s SessionSettings) (*sql.DB, *Probe) {
	probe := &Probe{}
	c := cfg.Copy()
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
	}), stdlib.OptionShouldPing(probe.shouldPing))
	return db, probe
}

// setupSession applies s in one round trip: one simple-protocol query string of
// SET statements (their values are digits and a quoted identifier, so nothing is
// interpolated unescaped; a utility statement needs no planning, cheaper than a
// SELECT of set_config on a new backend). The server's result for each statement
// tells which one failed.
func setupSession(ctx context.Context, conn *pgx.Conn, s SessionSettings) error {
	sets := sessionSets(s, conn.PgConn().ParameterStatus("server_version"))
	q := strings.Join(sets, ";\n")
	if s.Role != "" {
		q += ";\nSET ROLE " + dbconn.QuoteIdent(s.Role)
	}
	results, err := conn.PgConn().Exec(ctx, q).ReadAll()
	if err == nil {
		return nil
	}
	if s.Role == "" || len(results) < len(sets) || slices.ContainsFunc(results, func(r *pgconn.Result) bool { return r.Err != nil }) {
		return fmt.Errorf("setting lock_timeout and statement_timeout: %w", err)
	}
	role, user := qualify("", s.Role), qualify("", conn.Config().User)
	hint := "check that the role exists"
	if dbconn.SQLState(err) == dbconn.InsufficientPrivilege {
		hint = fmt.Sprintf("the login user must be a member of the role: GRANT %s TO %s;", role, user)
	}
	return fmt.Errorf("--role: SET ROLE %s as %s: %w (%s)", role, user, err, hint)
}

// sessionSets are the SET statements of s for a server of the given version.
//
// Besides the two timeouts, a migrator's sessions turn off the idle timeouts a
// managed server may impose (a lock session idle between two quick migrations
// must not be ended by the server) and keep TCP keepalives short, so the server
// ends the session of a migrator that vanished and frees the lock. All of them
// are settable by any user.
func sessionSets(s SessionSettings, serverVersion string) []string {
	sets := []string{
		"SET lock_timeout = " + millis(s.LockTimeout),
		"SET statement_timeout = " + millis(s.StatementTimeout),
		"SET idle_in_transaction_session_timeout = 0",
		"SET tcp_keepalives_idle = 30",
		"SET tcp_keepalives_interval = 10",
		"SET tcp_keepalives_count = 6",
	}
	// client_connection_check_interval (PostgreSQL 14+) makes the server notice a
	// killed migrator during a long statement, roll back and free its locks. The
	// server announced its version when the connection started.
	switch major := serverMajor(serverVersion); {
	case major >= 14:
		sets = append(sets, "SET client_connection_check_interval = 1000", "SET idle_session_timeout = 0")
		if major >= 17 {
			sets = append(sets, "SET transaction_timeout = 0")
		}
	case major == 0:
		sets = append(sets,
			"SELECT set_config('client_connection_check_interval', '1000', false), set_config('idle_session_timeout', '0', false) WHERE current_setting('server_version_num')::int >= 140000",
			"SELECT set_config('transaction_timeout', '0', false) WHERE current_setting('server_version_num')::int >= 170000")
	}
	return sets
}

// resetSQL puts a session back to exactly the settings of s, whatever an earlier
// migration on it changed (SET, SET ROLE, RESET ALL, SET SESSION AUTHORIZATION):
// it runs before every migration on the lock's session. DISCARD ALL would also
// release the advisory locks, so it is not used.
func resetSQL(s SessionSettings, serverVersion string) string {
	q := "RESET SESSION AUTHORIZATION;\nRESET ALL;\n" + strings.Join(sessionSets(s, serverVersion), ";\n")
	if s.Role != "" {
		q += ";\nSET ROLE " + dbconn.QuoteIdent(s.Role)
	}
	return q
}

// serverMajor reads the major version from server_version ("15.4 (Debian...)",
// "9.6.24", "17devel"); 0 when it does not start with one.
func serverMajor(v string) int {
	n := 0
	for i := 0; i < len(v) && '0' <= v[i] && v[i] <= '9' && n < 1000; i++ {
		n = n*10 + int(v[i]-'0')
	}
	return n
}

func millis(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
