package sqlrisk

import (
	"context"
	"testing"
)

// An index's expressions and predicate are computed on every write of the
// running version once the index exists: where they fail for a value (a
// division, a cast) the write fails, as with a UNIQUE index. Proven on the
// real server: after each CREATE INDEX CONCURRENTLY below, the running
// version's INSERT of a row with a = 0 fails (22012), where it worked before.
// Before, both were additive (needs-downtime false). A predicate of plain
// comparisons and NULL tests cannot fail, and stays additive.
func TestAdditiveIndexExpression(t *testing.T) {
	for _, tt := range []struct {
		sql      string
		additive bool
	}{
		{"CREATE INDEX CONCURRENTLY t_x ON t ((100 / a))", false},
		{"CREATE INDEX CONCURRENTLY t_x ON t (b) WHERE 100 / a > 1", false},
		{"CREATE INDEX CONCURRENTLY t_x ON t (b) WHERE a IS NOT NULL AND (b = 'x' OR b IN ('y', 'z')) AND NOT a <> 5", true},
	} {
		t.Run(tt.sql, func(t *testing.T) {
			ctx := context.Background()
			c, cat := setUp(t, proofTable)
			ok, why, err := Additive(ctx, cat, Statement{File: "f.sql", SQL: tt.sql})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, "INSERT INTO t VALUES (1000, 0, 'x'); DELETE FROM t WHERE id = 1000"); err != nil {
				t.Fatalf("before the index: %v", err)
			}
			if _, err := c.Exec(ctx, tt.sql); err != nil {
				t.Fatal(err)
			}
			_, insertErr := c.Exec(ctx, "INSERT INTO t VALUES (1001, 0, 'x')")
			t.Logf("the running version's INSERT after the index: %v; additive=%v (%q)", insertErr, ok, why)
			if (insertErr == nil) != tt.additive {
				t.Fatalf("the test's premise fails: insert error %v", insertErr)
			}
			if ok != tt.additive {
				t.Errorf("additive=%v (%q), want %v", ok, why, tt.additive)
			}
		})
	}
}
