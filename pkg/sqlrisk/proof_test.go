package sqlrisk

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
	"github.com/chartreuse-go/chartreuse/test/waitfor"
)

func TestMain(m *testing.M) { pgenv.Main(m) }

// TestRuleLocks proves every rule's claims against the real server: the
// analyser finds the rule in its proof statement, and running that statement
// takes the rule's lock on the rule's table (read from pg_locks), rewrites the
// table exactly when the rule says so (its relfilenode changes) and, where
// that can be read inside the transaction, scans it exactly when it says so
// (pg_stat_get_xact_numscans). The rule table is the source of truth: a
// wrong claim in it fails here.
func TestRuleLocks(t *testing.T) {
	for _, rule := range Rules() {
		t.Run(rule.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv, db := pgenv.NewDatabase(t)
			p := rule.Proof
			c := connect(t, srv.URL(db))
			if _, err := c.Exec(ctx, p.Setup); err != nil {
				t.Fatalf("setup: %v", err)
			}
			cat := catalog(t, srv.URL(db))
			f, err := Analyze(ctx, cat, Statement{File: "proof.sql", Line: 1, SQL: p.SQL, InTx: p.InTx})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(f.Rules, rule) {
				t.Fatalf("the analyser does not find %s in its own proof %q: found %v", rule.Name, p.SQL, names(f.Rules))
			}
			if rule.Lock != LockNone && f.Table != p.Table {
				t.Errorf("finding names table %q, the proof's table is %q", f.Table, p.Table)
			}
			var oid, before uint32
			if err := c.QueryRow(ctx, `SELECT oid, relfilenode FROM pg_class WHERE oid = $1::regclass`, p.Table).Scan(&oid, &before); err != nil {
				t.Fatal(err)
			}
			var lock string
			var rewrote bool
			switch p.Observe {
			case InTransaction:
				var scanned bool
				lock, rewrote, scanned = inTransaction(t, c, p.SQL, oid, before)
				if scanned != rule.Scans && !p.ScanNotRead {
					t.Errorf("rule says scans=%v, the transaction's scans of %s say %v", rule.Scans, p.Table, scanned)
				}
			case Fails:
				tx, err := c.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				_, err = tx.Exec(ctx, p.SQL)
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != p.SQLState {
					t.Fatalf("%s in a transaction: got %v, want SQLSTATE %s", p.SQL, err, p.SQLState)
				}
				_ = tx.Rollback(ctx)
				lock = LockNone // refused before it locks anything
			case Blocked:
				lock = blocked(t, srv.URL(db), c, p.SQL, p.Table, oid)
				var after uint32
				if err := c.QueryRow(ctx, `SELECT relfilenode FROM pg_class WHERE oid = $1`, oid).Scan(&after); err != nil {
					t.Fatal(err)
				}
				rewrote = after != before
			}
			if lock != rule.Lock {
				t.Errorf("rule claims %q on %s; pg_locks shows %q", rule.Lock, p.Table, lock)
			}
			if rewrote != rule.Rewrites {
				t.Errorf("rule says rewrites=%v; the relfilenode of %s says %v", rule.Rewrites, p.Table, rewrote)
			}
		})
	}
}

func names(rs []*Rule) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func catalog(t *testing.T, url string) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	return db
}

// inTransaction runs stmt in a transaction and reads, before rolling it back,
// the strongest lock it holds on oid, whether the table got a new relfilenode
// and whether the transaction scanned it.
func inTransaction(t *testing.T, c *pgx.Conn, stmt string, oid, before uint32) (lock string, rewrote, scanned bool) {
	t.Helper()
	ctx := context.Background()
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var scans0, scans1 int64
	if err := tx.QueryRow(ctx, `SELECT pg_stat_get_xact_numscans($1)`, oid).Scan(&scans0); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
	lock = strongestHeld(t, tx, oid)
	var after sql.NullInt64
	if err := tx.QueryRow(ctx, `SELECT (SELECT relfilenode FROM pg_class WHERE oid = $1)::bigint, pg_stat_get_xact_numscans($1)`, oid).Scan(&after, &scans1); err != nil {
		t.Fatal(err)
	}
	return lock, after.Valid && uint32(after.Int64) != before, scans1 > scans0
}

func strongestHeld(t *testing.T, tx pgx.Tx, oid uint32) string {
	t.Helper()
	rows, err := tx.Query(context.Background(), `SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation' AND relation = $1 AND granted`, oid)
	if err != nil {
		t.Fatal(err)
	}
	modes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	lock := LockNone
	for _, m := range modes {
		if Stronger(m, lock) {
			lock = m
		}
	}
	return lock
}

// blocked runs stmt, which cannot run in a transaction block, while another
// session holds ROW EXCLUSIVE on table in an open transaction, and reads from
// a third session, once stmt waits, the strongest lock it holds or waits for
// on table. Then the blocker commits and stmt must complete.
func blocked(t *testing.T, url string, watcher *pgx.Conn, stmt, table string, oid uint32) string {
	t.Helper()
	ctx := context.Background()
	blocker := connect(t, url)
	btx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := btx.Exec(ctx, "LOCK TABLE "+table+" IN ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	runner := connect(t, url)
	pid := runner.PgConn().PID()
	done := make(chan error, 1)
	go func() {
		_, err := runner.Exec(ctx, stmt)
		done <- err
	}()
	var modes []string
	// The limit only stops a hung test.
	if err := waitfor.Until(ctx, waitfor.Interval, 2*time.Minute, func() bool {
		var waiting bool
		if err := watcher.QueryRow(ctx, `SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			rows, err := watcher.Query(ctx, `SELECT mode FROM pg_locks WHERE pid = $1 AND locktype = 'relation' AND relation = $2`, pid, oid)
			if err != nil {
				t.Fatal(err)
			}
			if modes, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				t.Fatal(err)
			}
			return true
		}
		select {
		case err := <-done:
			t.Fatalf("%s finished (%v) without waiting for the blocker's lock", stmt, err)
		default:
		}
		return false
	}); err != nil {
		t.Fatalf("%s never waited for a lock on %s", stmt, table)
	}
	if err := btx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("%s after the blocker let go: %v", stmt, err)
	}
	mode := LockNone
	for _, m := range modes {
		if Stronger(m, mode) {
			mode = m
		}
	}
	return mode
}

// setUp creates a database, runs setup in it, and returns the connection it ran
// on and the catalog Analyze and Additive read.
func setUp(t *testing.T, setup string) (*pgx.Conn, *sql.DB) {
	t.Helper()
	srv, db := pgenv.NewDatabase(t)
	c := connect(t, srv.URL(db))
	if _, err := c.Exec(context.Background(), setup); err != nil {
		t.Fatal(err)
	}
	return c, catalog(t, srv.URL(db))
}
