package sqlrisk

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// goose sends the statements that share a line as one query, and PostgreSQL
// runs a query of several statements as one transaction: a CONCURRENTLY
// statement there fails (SQLSTATE 25001, run here as goose runs it, simple
// protocol, no transaction of its own) even in a NO TRANSACTION migration.
// Before, such a line was analysed as outside a transaction: no
// concurrently-in-transaction risk, and additive (needs-downtime false), and
// the migration then failed partway, recorded dirty.
func TestConcurrentlySharingALine(t *testing.T) {
	ctx := context.Background()
	c, cat := setUp(t, proofTable+" CREATE INDEX t_b ON t (b);")
	for _, sql := range []string{
		"CREATE INDEX CONCURRENTLY t_a ON t (a); CREATE INDEX CONCURRENTLY t_id ON t (id);",
		"CREATE TABLE n (id int); CREATE INDEX CONCURRENTLY t_a ON t (a);",
		"INSERT INTO t VALUES (101, 1, 'y'); CREATE INDEX CONCURRENTLY t_a ON t (a);",
		"SET lock_timeout = '5s'; DROP INDEX CONCURRENTLY t_b;",
		"SET lock_timeout = '5s'; REINDEX (CONCURRENTLY) TABLE t;",
	} {
		t.Run(sql, func(t *testing.T) {
			_, err := c.Exec(ctx, sql) // no arguments: one simple query, as goose sends it
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "25001" {
				t.Fatalf("the server ran the line: %v; the test's premise is that it fails with 25001", err)
			}
			stmt := Statement{File: "f.sql", Line: 3, SQL: sql, InTx: false}
			f, err := Analyze(ctx, cat, stmt)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(names(f.Rules), "concurrently-in-transaction") {
				t.Errorf("rules %v, want concurrently-in-transaction", names(f.Rules))
			}
			ok, why, err := Additive(ctx, cat, stmt)
			if err != nil || ok {
				t.Errorf("additive=%v (%q, %v), want false", ok, why, err)
			}
			if !strings.Contains(sql, "INSERT") && !strings.Contains(sql, "DROP") && !strings.Contains(sql, "REINDEX") && !strings.Contains(why, "inside a transaction") {
				t.Errorf("why %q, want it to say the index build runs inside a transaction", why)
			}
		})
	}
	// Alone on its line, outside a transaction, it is additive and runs.
	stmt := Statement{File: "f.sql", Line: 3, SQL: "CREATE INDEX CONCURRENTLY t_a ON t (a);"}
	if ok, why, err := Additive(ctx, cat, stmt); !ok || err != nil {
		t.Errorf("a lone CREATE INDEX CONCURRENTLY: additive=%v (%q, %v)", ok, why, err)
	}
	if _, err := c.Exec(ctx, stmt.SQL); err != nil {
		t.Fatal(err)
	}
}

// DETACH PARTITION CONCURRENTLY cannot run in a transaction either (25001 on
// the real server); before, it was reported as nothing at all.
func TestDetachConcurrentlyInTransaction(t *testing.T) {
	ctx := context.Background()
	c, cat := setUp(t, "CREATE TABLE p (id int) PARTITION BY RANGE (id); CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (10);")
	const sql = "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY"
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, sql)
	_ = tx.Rollback(ctx)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "25001" {
		t.Fatalf("%s in a transaction: %v; the test's premise is that it fails with 25001", sql, err)
	}
	f, err := Analyze(ctx, cat, Statement{File: "f.sql", Line: 1, SQL: sql, InTx: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Risks) != 1 || f.Risks[0].Rule != "concurrently-in-transaction" || f.Risks[0].Table != "p" {
		t.Errorf("risks %+v, want concurrently-in-transaction on p", f.Risks)
	}
	// Outside a transaction it runs, and is no risk.
	if f, err = Analyze(ctx, cat, Statement{File: "f.sql", Line: 1, SQL: sql}); err != nil || len(f.Risks) != 0 {
		t.Errorf("outside a transaction: risks %+v, %v; want none", f.Risks, err)
	}
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatal(err)
	}
}
