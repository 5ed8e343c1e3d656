package sqlrisk

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// x.label calls the function label(t) while t has no column label (a
// "computed field", as PostgREST and Hasura use them); once ADD COLUMN label
// exists, the same query reads the new, empty column instead. Proven on the
// real server; before, the ADD COLUMN was additive (needs-downtime false). A
// column whose name only a function of other arguments has stays additive.
func TestAdditiveColumnHidesComputedField(t *testing.T) {
	ctx := context.Background()
	c, cat := setUp(t, proofTable+` CREATE FUNCTION label(r t) RETURNS text LANGUAGE sql AS 'SELECT ''label-'' || r.id';`)
	app := func() string {
		var v *string
		if err := c.QueryRow(ctx, "SELECT x.label FROM t x WHERE id = 1", pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
			return "error: " + err.Error()
		}
		if v == nil {
			return "NULL"
		}
		return fmt.Sprint(*v)
	}
	const stmt = "ALTER TABLE t ADD COLUMN label text"
	ok, why, err := Additive(ctx, cat, Statement{File: "f.sql", SQL: stmt, InTx: true})
	before := app()
	if _, err := c.Exec(ctx, stmt); err != nil {
		t.Fatal(err)
	}
	after := app()
	t.Logf("x.label: %s before, %s after", before, after)
	if before == after {
		t.Fatal("the running version's x.label is unchanged: the test's premise fails")
	}
	if ok || err != nil {
		t.Errorf("additive=%v (%q, %v), want false", ok, why, err)
	}
	// lower(text) is no computed field of t.
	if ok, why, err := Additive(ctx, cat, Statement{File: "f.sql", SQL: "ALTER TABLE t ADD COLUMN lower text", InTx: true}); !ok || err != nil {
		t.Errorf("a column named like a function of other arguments: additive=%v (%q, %v), want true", ok, why, err)
	}
}
