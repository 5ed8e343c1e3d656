package sqlrisk

import (
	"context"
	"slices"
	"testing"
)

// Without a catalog (-short): which rules the analyser finds in statement
// forms the proofs do not cover.
func TestAnalyzeForms(t *testing.T) {
	tests := []struct {
		sql   string
		inTx  bool
		rules []string
		lock  string
		table string
	}{
		{"ALTER TABLE t ADD COLUMN c int DEFAULT 0", true, []string{"add-column"}, AccessExclusiveLock, "t"},
		{"ALTER TABLE s.t ADD COLUMN c bigserial", true, []string{"add-column-rewrite"}, AccessExclusiveLock, "s.t"},
		{"ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS (a * 2) STORED", true, []string{"add-column-rewrite"}, AccessExclusiveLock, "t"},
		{"ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS IDENTITY", true, []string{"add-column-rewrite"}, AccessExclusiveLock, "t"},
		{"ALTER TABLE t ALTER COLUMN a TYPE bigint, ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id) NOT VALID", true, []string{"alter-column-type", "add-foreign-key-not-valid"}, AccessExclusiveLock, "t"},
		{"ALTER TABLE t ADD PRIMARY KEY USING INDEX t_idx", true, nil, LockNone, ""},
		{"ALTER TABLE t ADD CONSTRAINT p PRIMARY KEY (id)", true, []string{"add-unique-constraint"}, AccessExclusiveLock, "t"},
		{"CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)", false, []string{"create-index-concurrently"}, ShareUpdateExclusiveLock, "t"},
		{"DROP INDEX CONCURRENTLY i", true, []string{"concurrently-in-transaction"}, LockNone, "i"},
		{"DROP INDEX CONCURRENTLY i", false, nil, LockNone, ""},
		{"REINDEX INDEX CONCURRENTLY i", false, nil, LockNone, ""},
		{"LOCK TABLE t IN SHARE MODE", true, []string{"lock-table"}, ShareLock, "t"},
		{"VACUUM (FULL false) t", false, nil, LockNone, ""},
		{"VACUUM (FULL, ANALYZE) t", false, []string{"vacuum-full"}, AccessExclusiveLock, "t"},
		{"DELETE FROM t", true, []string{"update-all-rows"}, RowExclusiveLock, "t"},
		{"UPDATE t SET a = 1 WHERE id < 10", true, nil, LockNone, ""},
		{"REFRESH MATERIALIZED VIEW CONCURRENTLY mv", true, nil, LockNone, ""},
		{"ALTER TABLE \"Big\" RENAME COLUMN a TO b", true, []string{"rename-column"}, AccessExclusiveLock, `"Big"`},
		{"DROP TABLE a, b", true, []string{"drop-table", "drop-table"}, AccessExclusiveLock, "a"},
		{"CREATE TABLE n (id int)", true, nil, LockNone, ""},
	}
	for _, tt := range tests {
		f, err := Analyze(context.Background(), nil, Statement{File: "f.sql", Line: 1, SQL: tt.sql, InTx: tt.inTx})
		if err != nil {
			t.Errorf("%s: %v", tt.sql, err)
			continue
		}
		if got := names(f.Rules); !slices.Equal(got, tt.rules) || f.Lock != tt.lock || f.Table != tt.table {
			t.Errorf("%s: rules %v lock %q table %q; want %v %q %q", tt.sql, got, f.Lock, f.Table, tt.rules, tt.lock, tt.table)
		}
	}
	// Data is never handed to the parser.
	f, err := Analyze(context.Background(), nil, Statement{SQL: "-- rows\nINSERT INTO t VALUES (1)"})
	if err != nil || f.Kind != "INSERT" || f.Lock != RowExclusiveLock {
		t.Errorf("INSERT: %+v %v", f, err)
	}
}

func TestRulesComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Rules() {
		if seen[r.Name] || r.Name == "" || r.What == "" || r.Advice == "" || r.Proof.SQL == "" || r.Proof.Table == "" {
			t.Errorf("rule %q: duplicate or incomplete", r.Name)
		}
		seen[r.Name] = true
		if _, ok := lockRank[r.Lock]; !ok {
			t.Errorf("rule %s: %q is not a lock mode", r.Name, r.Lock)
		}
	}
}

func TestHumanSize(t *testing.T) {
	for b, want := range map[int64]string{-1: "unknown", 0: "0 bytes", 8192: "8192 bytes", 16384: "16 kB", 5 << 30: "5120 MB", 50 << 30: "50 GB"} {
		if got := HumanSize(b); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", b, got, want)
		}
	}
}

func TestKindOfOtherStatements(t *testing.T) {
	for sql, want := range map[string]string{
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'": "CREATE_FUNCTION",
		"DO $$ BEGIN PERFORM 1; END $$":                              "DO",
		"CREATE TABLE n (id int)":                                    "CREATE TABLE",
	} {
		f, err := Analyze(context.Background(), nil, Statement{SQL: sql})
		if err != nil {
			t.Errorf("%s: %v", sql, err)
		} else if f.Kind != want {
			t.Errorf("%s: kind %q, want %q", sql, f.Kind, want)
		}
	}
}

// kindOf names each statement as PostgreSQL's command tag does; statements
// without a case of their own are named by their parse node.
func TestKindOf(t *testing.T) {
	for sql, want := range map[string]string{
		"ALTER TABLE t ADD COLUMN c int":                "ALTER TABLE",
		"ALTER INDEX i SET (fillfactor = 70)":           "ALTER INDEX",
		"CREATE INDEX i ON t (a)":                       "CREATE INDEX",
		"CREATE TABLE n (id int)":                       "CREATE TABLE",
		"ALTER TABLE t RENAME COLUMN a TO b":            "ALTER TABLE",
		"ALTER INDEX i RENAME TO j":                     "ALTER INDEX",
		"DROP TABLE t":                                  "DROP TABLE",
		"DROP INDEX i":                                  "DROP INDEX",
		"DROP VIEW v":                                   "DROP",
		"VACUUM t":                                      "VACUUM",
		"CLUSTER t USING i":                             "CLUSTER",
		"REINDEX TABLE t":                               "REINDEX",
		"LOCK TABLE t":                                  "LOCK",
		"TRUNCATE t":                                    "TRUNCATE",
		"REFRESH MATERIALIZED VIEW m":                   "REFRESH MATERIALIZED VIEW",
		"UPDATE t SET a = 1":                            "UPDATE",
		"DELETE FROM t":                                 "DELETE",
		"INSERT INTO t VALUES (1)":                      "INSERT",
		"SELECT 1":                                      "SELECT",
		"CREATE VIEW v AS SELECT 1":                     "VIEW",
		"GRANT SELECT ON t TO PUBLIC":                   "GRANT",
		"COMMENT ON TABLE t IS 'x'":                     "COMMENT",
		"CREATE FUNCTION f() RETURNS int AS 'SELECT 1'": "CREATE_FUNCTION",
	} {
		res, err := parse(sql)
		if err != nil || len(res.Stmts) != 1 {
			t.Fatalf("%s: %v", sql, err)
		}
		if got := kindOf(res.Stmts[0].Stmt); got != want {
			t.Errorf("%s: kind %q, want %q", sql, got, want)
		}
	}
}
