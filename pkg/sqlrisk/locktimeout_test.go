package sqlrisk

import (
	"context"
	"testing"
	"time"
)

// The migrate step's session sets lock_timeout (--lock-timeout, 10 s by
// default), which is what keeps ADD COLUMN's ACCESS EXCLUSIVE brief for the
// running version: queued behind a long transaction, it gives up instead of
// holding every query on the table behind it. A migration that resets the
// timeout, sets it to 0 or raises it past that takes the bound away (read back
// with SHOW on the real server, after the session's SET as the step makes it);
// before, each of them was additive (needs-downtime false). Lowering it stays
// additive.
func TestAdditiveLockTimeout(t *testing.T) {
	ctx := context.Background()
	c, cat := setUp(t, "SET lock_timeout = '10s'")
	for _, tt := range []struct {
		sql      string
		additive bool
	}{
		{"RESET lock_timeout", false},
		{"SET lock_timeout = 0", false},
		{"SET LOCAL lock_timeout TO DEFAULT", false},
		{"SET lock_timeout = '1h'", false},
		{"SET lock_timeout = '11s'", false},
		{"SET LOCAL lock_timeout = '5s'", true},
		{"SET lock_timeout = 2000", true},
		{"SET lock_timeout = '1.5 s'", true},
		{"SET lock_timeout TO '500ms'", true},
		{"SET statement_timeout = 0", true},
	} {
		t.Run(tt.sql, func(t *testing.T) {
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, tt.sql); err != nil {
				t.Fatal(err)
			}
			var ms int64
			if err := tx.QueryRow(ctx, `SELECT setting::bigint FROM pg_settings WHERE name = 'lock_timeout'`).Scan(&ms); err != nil {
				t.Fatal(err)
			}
			bounded := ms > 0 && time.Duration(ms)*time.Millisecond <= 10*time.Second
			if bounded != tt.additive {
				t.Fatalf("lock_timeout is %d ms after it: the test's premise fails", ms)
			}
			ok, why, err := Additive(ctx, cat, Statement{File: "f.sql", SQL: tt.sql, InTx: true})
			if err != nil || ok != tt.additive {
				t.Errorf("lock_timeout %d ms: additive=%v (%q, %v), want %v", ms, ok, why, err, tt.additive)
			}
		})
	}
}
