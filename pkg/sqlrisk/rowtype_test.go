package sqlrisk

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// A function declared to return t's rows must return exactly t's columns: once
// ADD COLUMN gives t one more, a body that names the old columns fails on
// every call (42P13 in SQL, 42804 in PL/pgSQL). Proven on the real server:
// the running version's SELECT FROM f() worked before the ADD COLUMN and fails
// after. Before, the ADD COLUMN was additive (needs-downtime false).
func TestAdditiveColumnOfReturnedRows(t *testing.T) {
	for _, fn := range []string{
		"CREATE FUNCTION f() RETURNS SETOF t LANGUAGE sql AS 'SELECT id, a, b FROM t'",
		"CREATE FUNCTION f() RETURNS t LANGUAGE plpgsql AS $$BEGIN RETURN (SELECT x FROM (SELECT id, a, b FROM t LIMIT 1) x); END$$",
	} {
		t.Run(fn, func(t *testing.T) {
			ctx := context.Background()
			c, cat := setUp(t, proofTable+" "+fn)
			app := func() error {
				_, err := c.Exec(ctx, "SELECT count(*) FROM f()", pgx.QueryExecModeSimpleProtocol)
				return err
			}
			const stmt = "ALTER TABLE t ADD COLUMN c int"
			ok, why, err := Additive(ctx, cat, Statement{File: "f.sql", SQL: stmt, InTx: true})
			before := app()
			if _, err := c.Exec(ctx, stmt); err != nil {
				t.Fatal(err)
			}
			after := app()
			t.Logf("SELECT FROM f(): %v before, %v after", before, after)
			if before != nil || after == nil {
				t.Fatal("the test's premise fails")
			}
			if ok || err != nil {
				t.Errorf("additive=%v (%q, %v), want false", ok, why, err)
			}
		})
	}
}
