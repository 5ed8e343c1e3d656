package sqlrisk

import (
	"context"
	"testing"
)

// A migration that sets its own search_path indexes an existing table the
// plan's session cannot see by that name: the index build still takes SHARE on
// it (pg_locks, in a transaction rolled back), so it is not an index on a new
// table. Before, the catalog's "no such table" made it one, and no risk was
// reported.
func TestIndexAfterSetSearchPath(t *testing.T) {
	ctx := context.Background()
	c, cat := setUp(t, `CREATE SCHEMA app; CREATE TABLE app.big (id int); INSERT INTO app.big SELECT generate_series(1, 1000)`)
	var oid uint32
	if err := c.QueryRow(ctx, `SELECT 'app.big'::regclass::oid`).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL search_path TO app; CREATE INDEX big_id ON big (id)"); err != nil {
		t.Fatal(err)
	}
	if lock := strongestHeld(t, tx, oid); lock != ShareLock {
		t.Fatalf("the index build holds %s on app.big, want ShareLock", lock)
	}
	_ = tx.Rollback(ctx)

	f, err := Analyze(ctx, cat, Statement{File: "f.sql", Line: 2, SQL: "CREATE INDEX big_id ON big (id)", InTx: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Risks) != 1 || f.Risks[0].Rule != "create-index" {
		t.Fatalf("risks %+v, want create-index", f.Risks)
	}
	// A table no schema has is one an earlier statement creates.
	f, err = Analyze(ctx, cat, Statement{File: "f.sql", Line: 3, SQL: "CREATE INDEX fresh_id ON fresh (id)", InTx: true})
	if err != nil || len(f.Risks) != 0 {
		t.Fatalf("index on a new table: risks %+v, %v; want none", f.Risks, err)
	}
}
