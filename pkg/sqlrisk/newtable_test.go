package sqlrisk

import (
	"context"
	"strings"
	"testing"
)

// A table an earlier pending statement creates is in no schema yet, and the
// running version does not use it: indexing or altering it holds no lock on
// anything the running version uses. Before, CREATE TABLE n followed by CREATE
// INDEX ON n (the usual pair) stopped the application for nothing. Proven on
// the real server: run together in a transaction, they take no lock on t, the
// table the running version uses, beyond CREATE TABLE ... REFERENCES' brief one.
func TestAdditiveNewTable(t *testing.T) {
	ctx := context.Background()
	c, cat := setUp(t, proofTable+" CREATE VIEW v AS SELECT id, a FROM t; CREATE SCHEMA other; CREATE TABLE other.o (id int); CREATE TABLE p (id int) PARTITION BY RANGE (id);")
	newTable := []string{
		"CREATE INDEX n_a ON n (a)",
		"CREATE UNIQUE INDEX n_id ON n (id)",
		"CREATE INDEX CONCURRENTLY n_a2 ON n (a)",
		"ALTER TABLE n ADD COLUMN c int NOT NULL, ADD COLUMN d serial, ALTER COLUMN a SET NOT NULL, ADD CONSTRAINT n_a_pos CHECK (a > 0)",
		"ALTER TABLE n ADD CONSTRAINT n_t FOREIGN KEY (a) REFERENCES t (id) NOT VALID",
		"CREATE TABLE n_1 PARTITION OF n FOR VALUES FROM (1) TO (10)",
		"CREATE TABLE n_child () INHERITS (n)",
		"CREATE TABLE n2 (id int, a int); INSERT INTO n2 VALUES (1, 2), (2, -3); INSERT INTO n2 (id) VALUES (3::int)",
	}
	for _, sql := range newTable {
		inTx := !strings.Contains(sql, "CONCURRENTLY")
		if ok, why, err := Additive(ctx, cat, Statement{File: "f.sql", SQL: sql, InTx: inTx}); !ok || err != nil {
			t.Errorf("%s on a table this run creates: additive=%v (%q, %v), want true", sql, ok, why, err)
		}
	}
	for _, sql := range []string{
		"CREATE INDEX CONCURRENTLY n_a ON n (a)",                             // in a transaction: fails
		"ALTER TABLE n ADD CONSTRAINT n_t FOREIGN KEY (a) REFERENCES t (id)", // checks every row against t
		"ALTER TABLE n ADD COLUMN t_id int REFERENCES t (id)",
		"ALTER TABLE n ATTACH PARTITION t FOR VALUES FROM (1) TO (10)", // not n's own
		"ALTER TABLE p ATTACH PARTITION n FOR VALUES FROM (1) TO (10)",
		"ALTER TABLE n INHERIT t",
		"CREATE INDEX o_id ON o (id)",                // other.o exists
		"ALTER TABLE v ALTER COLUMN a SET DEFAULT 0", // a view, not a table
		"CREATE INDEX t_a ON t (a)",
		"CREATE TABLE p_1 PARTITION OF p FOR VALUES FROM (1) TO (10)", // p exists
		"CREATE TABLE n_child () INHERITS (n, t)",
		"INSERT INTO t VALUES (101, 1, 'y')",
		"INSERT INTO n SELECT id, a FROM t",
		"WITH d AS (DELETE FROM t RETURNING id) INSERT INTO n SELECT id FROM d",
		"INSERT INTO n VALUES (nextval('s'))",
		"INSERT INTO n VALUES (1) ON CONFLICT (id) DO UPDATE SET a = (SELECT max(a) FROM t)",
		"COPY n FROM '/etc/passwd'",
	} {
		if ok, _, err := Additive(ctx, cat, Statement{File: "f.sql", SQL: sql, InTx: true}); ok || err != nil {
			t.Errorf("%s: additive=%v (%v), want false", sql, ok, err)
		}
	}

	var oid uint32
	if err := c.QueryRow(ctx, `SELECT 't'::regclass::oid`).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	all := "CREATE TABLE n (id int, a int REFERENCES t (id)); " + strings.Join(newTable[:2], "; ") + "; " + newTable[3] + "; " + newTable[4]
	if lock, rewrote, scanned := inTransaction(t, c, all, oid, 0); lock != ShareRowExclusiveLock || scanned {
		t.Errorf("on t: %s, scanned %v, rewrote %v; want CREATE TABLE ... REFERENCES' ShareRowExclusiveLock and no scan", lock, scanned, rewrote)
	}
}

// A view of a new name over a table in use is no new table: rows inserted
// into it go to the table (t has 101 rows after, on the real server). Only the
// tables a run's CREATE TABLEs make take rows additively.
func TestAdditiveRowsThroughNewView(t *testing.T) {
	ctx := context.Background()
	c, cat := setUp(t, proofTable)
	stmts := []struct {
		sql      string
		additive bool
	}{
		{"CREATE VIEW n AS SELECT id, a FROM t", true},
		{"INSERT INTO n VALUES (101, 1)", false},
		{"CREATE TABLE m (id int)", true},
		{"INSERT INTO m VALUES (1)", true},
	}
	// Judged against the catalog before the run, as plan does.
	var run Run
	for _, tt := range stmts {
		ok, why, err := run.Additive(ctx, cat, Statement{File: "f.sql", SQL: tt.sql, InTx: true})
		if err != nil || ok != tt.additive {
			t.Errorf("%s: additive=%v (%q, %v), want %v", tt.sql, ok, why, err, tt.additive)
		}
	}
	for _, tt := range stmts {
		if _, err := c.Exec(ctx, tt.sql); err != nil {
			t.Fatal(err)
		}
	}
	var rows int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&rows); err != nil || rows != 101 {
		t.Fatalf("t has %d rows (%v): the test's premise is that the view passed the row on", rows, err)
	}
}
