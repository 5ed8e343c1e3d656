package sqlrisk

import (
	"context"
	"slices"
	"testing"
)

// A column of a domain with a constraint (its own or its base domain's) is
// checked on every row, and one whose domain gives it a volatile default is
// filled row by row: either way the table is rewritten under ACCESS EXCLUSIVE
// (a new relfilenode on the real server, in a transaction rolled back).
// Before, all were the safe add-column: no risk, so --risk-policy=fail let
// them through. A domain without constraints and with a constant default is
// not rewritten, and stays add-column.
func TestAddColumnOfDomain(t *testing.T) {
	const setup = proofTable + ` CREATE DOMAIN posint AS int CHECK (VALUE > 0); CREATE DOMAIN posint2 AS posint;
		CREATE SEQUENCE s; CREATE DOMAIN numbered AS int DEFAULT nextval('s'); CREATE DOMAIN plain AS int DEFAULT 0;`
	for _, tt := range []struct {
		sql     string
		rewrite bool
	}{
		{"ALTER TABLE t ADD COLUMN c posint", true},
		{"ALTER TABLE t ADD COLUMN c posint DEFAULT 1", true},
		{"ALTER TABLE t ADD COLUMN c public.posint2", true},
		{"ALTER TABLE t ADD COLUMN c numbered", true},
		{"ALTER TABLE t ADD COLUMN c plain", false},
		{"ALTER TABLE t ADD COLUMN c numbered DEFAULT 7", false},
		{"ALTER TABLE t ADD COLUMN c posint[]", false},
	} {
		t.Run(tt.sql, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c, cat := setUp(t, setup)
			var oid, before uint32
			if err := c.QueryRow(ctx, `SELECT oid, relfilenode FROM pg_class WHERE oid = 't'::regclass`).Scan(&oid, &before); err != nil {
				t.Fatal(err)
			}
			lock, rewrote, _ := inTransaction(t, c, tt.sql, oid, before)
			if lock != AccessExclusiveLock || rewrote != tt.rewrite {
				t.Fatalf("the server took %s, rewrote %v: the test's premise fails", lock, rewrote)
			}
			f, err := Analyze(ctx, cat, Statement{File: "f.sql", SQL: tt.sql, InTx: true})
			if err != nil {
				t.Fatal(err)
			}
			want := "add-column"
			if tt.rewrite {
				want = "add-column-rewrite"
			}
			if !slices.Contains(names(f.Rules), want) || f.Rewrites != tt.rewrite {
				t.Errorf("rules %v (rewrites %v), want %s", names(f.Rules), f.Rewrites, want)
			}
		})
	}
}
