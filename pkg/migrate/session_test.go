package migrate

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// TestSessionSettings: every pooled connection carries the settings and the role,
// set in one query string, and a new connection is not pinged on its first reuse.
func TestSessionSettings(t *testing.T) {
	owner := plainRole(t, "mig_owner")
	d := newDB(t)
	cfg, err := pgx.ParseConfig(d.url())
	if err != nil {
		t.Fatal(err)
	}
	db, probe := OpenDB(cfg, SessionSettings{Role: owner, LockTimeout: 1500 * time.Millisecond, StatementTimeout: 2500 * time.Millisecond})
	defer db.Close()
	ctx := context.Background()
	var conns []interface{ Close() error }
	for i := 0; i < 2; i++ {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var lockTimeout, stmtTimeout, checkInterval, user string
		if err := c.QueryRowContext(ctx, `SELECT current_setting('lock_timeout'), current_setting('statement_timeout'),
			current_setting('client_connection_check_interval'), current_user`).Scan(&lockTimeout, &stmtTimeout, &checkInterval, &user); err != nil {
			t.Fatal(err)
		}
		if lockTimeout != "1500ms" || stmtTimeout != "2500ms" || checkInterval != "1s" || user != owner {
			t.Fatalf("connection %d: lock_timeout %s, statement_timeout %s, client_connection_check_interval %s, user %s", i, lockTimeout, stmtTimeout, checkInterval, user)
		}
		err = c.Raw(func(dc any) error {
			pc := dc.(*stdlib.Conn).Conn()
			if probe.shouldPing(ctx, stdlib.ShouldPingParams{Conn: pc, IdleDuration: time.Hour}) {
				t.Error("a connection opened just now would be pinged")
			}
			probe.mu.Lock()
			probe.pids[pc.PgConn().PID()] = time.Now().Add(-2 * time.Second)
			probe.mu.Unlock()
			if !probe.shouldPing(ctx, stdlib.ShouldPingParams{Conn: pc, IdleDuration: time.Hour}) {
				t.Error("a connection idle for an hour would not be pinged")
			}
			if probe.shouldPing(ctx, stdlib.ShouldPingParams{Conn: pc, IdleDuration: time.Millisecond}) {
				t.Error("a connection used a moment ago would be pinged")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	if n := len(probe.PIDs()); n != 2 {
		t.Fatalf("probe saw %d connections, want 2", n)
	}
}

func TestServerMajor(t *testing.T) {
	for v, want := range map[string]int{"15.20 (Debian 15.20-0+deb12u1)": 15, "9.6.24": 9, "17devel": 17, "14beta1": 14, "": 0, "x": 0, "13": 13} {
		if got := serverMajor(v); got != want {
			t.Errorf("serverMajor(%q) = %d, want %d", v, got, want)
		}
	}
}
