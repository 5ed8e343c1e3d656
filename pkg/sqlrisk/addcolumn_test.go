package sqlrisk

import (
	"context"
	"slices"
	"testing"
)

// ADD COLUMN with a constraint of its own does what adding that constraint
// does: a UNIQUE or PRIMARY KEY column builds its index, a CHECK column is
// checked on every row, under the ACCESS EXCLUSIVE the ADD COLUMN takes
// (pg_locks; scans counted in the transaction, which is rolled back). Before,
// they were reported as the safe add-column.
func TestAddColumnWithConstraint(t *testing.T) {
	for _, tt := range []struct{ sql, rule string }{
		{"ALTER TABLE t ADD COLUMN c int UNIQUE", "add-unique-constraint"},
		{"ALTER TABLE t ADD COLUMN c serial PRIMARY KEY", "add-unique-constraint"},
		{"ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 1 CHECK (c > 0)", "add-check"},
		{"ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 1 CONSTRAINT c_pos CHECK (c > 0)", "add-check"},
		{"ALTER TABLE t ADD COLUMN c int DEFAULT 1 REFERENCES u (id)", "add-foreign-key"},
	} {
		t.Run(tt.sql, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c, cat := setUp(t, proofTable+" ALTER TABLE t DROP CONSTRAINT t_pkey; CREATE TABLE u (id int PRIMARY KEY); INSERT INTO u VALUES (1);")
			f, err := Analyze(ctx, cat, Statement{File: "f.sql", Line: 1, SQL: tt.sql, InTx: true})
			if err != nil {
				t.Fatal(err)
			}
			var oid, before uint32
			if err := c.QueryRow(ctx, `SELECT oid, relfilenode FROM pg_class WHERE relname = 't'`).Scan(&oid, &before); err != nil {
				t.Fatal(err)
			}
			lock, _, scanned := inTransaction(t, c, tt.sql, oid, before)
			t.Logf("pg_locks: %s, scanned %v; found %v", lock, scanned, names(f.Rules))
			if lock != AccessExclusiveLock || !scanned {
				t.Errorf("the server took %s, scanned %v: the test's premise fails", lock, scanned)
			}
			if !slices.Contains(names(f.Rules), tt.rule) || len(f.Risks) == 0 || f.Lock != AccessExclusiveLock || f.Table != "t" {
				t.Errorf("found %v (lock %s on %q), want %s", names(f.Rules), f.Lock, f.Table, tt.rule)
			}
		})
	}
}
