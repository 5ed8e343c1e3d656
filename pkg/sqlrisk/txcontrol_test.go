package sqlrisk

import "testing"

func TestEndsTransaction(t *testing.T) {
	for _, tc := range []struct{ sql, want string }{
		{"COMMIT", "COMMIT"},
		{"commit work", "COMMIT"},
		{"  -- done\nEND", "END"},
		{"/* x */ abort", "ABORT"},
		{"ROLLBACK", "ROLLBACK"},
		{"rollback and chain", "ROLLBACK"},
		{"COMMIT AND CHAIN", "COMMIT"},
		{"PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION"},
		{"INSERT INTO t VALUES (1); COMMIT; INSERT INTO t VALUES (2)", "COMMIT"},
		{"ROLLBACK TO SAVEPOINT a", ""},
		{"rollback to a", ""},
		{"SAVEPOINT a", ""},
		{"PREPARE q AS SELECT 1", ""},
		{"INSERT INTO t VALUES ('COMMIT'); SELECT 'x;END'", ""},
		{"CREATE FUNCTION f() RETURNS void AS $$ BEGIN COMMIT; END $$ LANGUAGE plpgsql", ""},
		{"SELECT 1 -- ; COMMIT", ""},
		{"UPDATE t SET done = true", ""},
		{"", ""},
	} {
		if got := EndsTransaction(tc.sql); got != tc.want {
			t.Errorf("EndsTransaction(%q) = %q, want %q", tc.sql, got, tc.want)
		}
	}
}
