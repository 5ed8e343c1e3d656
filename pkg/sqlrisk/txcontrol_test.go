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
		{"prepare/**/transaction 'x'", "PREPARE TRANSACTION"},
		{"INSERT INTO t VALUES (1); COMMIT; INSERT INTO t VALUES (2)", "COMMIT"},
		// A comment glued to the word, or nested, or ended by \r.
		{"COMMIT/**/AND CHAIN;", "COMMIT"},
		{"ROLLBACK/**/AND CHAIN", "ROLLBACK"},
		{"COMMIT/* glued */;", "COMMIT"},
		{"END--x\n", "END"},
		{"/* a /* nested */ comment */ COMMIT;", "COMMIT"},
		{"/* a /* nested */ COMMIT; */ SELECT 1", ""},
		{"-- x\rCOMMIT", "COMMIT"},
		{"SELECT 1;COMMIT", "COMMIT"},
		{"INSERT INTO t VALUES (1);\n\tCoMmIt", "COMMIT"},
		// Every command of a multi-command statement.
		{"SELECT 1; SELECT 2; ABORT", "ABORT"},
		{"SELECT '''';END", "END"},
		// Strings read with standard_conforming_strings on and off.
		{`SELECT '\''; COMMIT AND CHAIN; SELECT '''';`, "COMMIT"},
		{`SELECT '\''; COMMIT AND CHAIN; SELECT '\'';`, "COMMIT"},
		{`SELECT E'\''; COMMIT; SELECT 1`, "COMMIT"},
		{`SELECT E'\'; COMMIT; '`, ""},
		{`SELECT replace(p, '\', '/') FROM t`, ""},
		{"SELECT E'a'\n'\\'; COMMIT; '", ""}, // a continued E'' string keeps its escapes
		{"SELECT 'a' 'b'; COMMIT", "COMMIT"},
		{"SELECT B'01'; COMMIT", "COMMIT"},
		{"SELECT U&'d\\0061t\\+000061'; COMMIT", "COMMIT"},
		{`SELECT "a""; COMMIT"`, ""},
		{`SELECT 1 AS "COMMIT"`, ""},
		// Dollar quotes, parameters and $ inside names.
		{"CREATE FUNCTION f() RETURNS void AS $$ BEGIN COMMIT; END $$ LANGUAGE plpgsql", ""},
		{"CREATE PROCEDURE p() AS $body$ BEGIN COMMIT; ROLLBACK; END $body$ LANGUAGE plpgsql; CALL p()", ""},
		{"DO $x$ BEGIN COMMIT; END $x$", ""},
		{"SELECT a$b$ FROM t; COMMIT; SELECT c$b$ FROM t", "COMMIT"},
		{"SELECT 1a$b$; COMMIT AND CHAIN; SELECT 1 AS x$b$", "COMMIT"},
		{"SELECT 1$a$;COMMIT$a$", ""},
		{"PREPARE q AS SELECT $1; COMMIT", "COMMIT"},
		// SQL-standard routine bodies: their semicolons and END stay inside.
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END", ""},
		{"create or replace function f(x int) returns int language sql\nbegin atomic\n  select case when x > 0 then 1 else 0 end;\n  select 2;\nend;", ""},
		{"CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); END; COMMIT", "COMMIT"},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; END", "END"},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN CASE WHEN true THEN 1 END; COMMIT", "COMMIT"},
		{"SELECT CASE WHEN true THEN 1 END; COMMIT", "COMMIT"},
		{"CREATE TABLE begin_end (a int); END", "END"},
		{"CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS 'SELECT 1'; COMMIT", "COMMIT"},
		{"CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql RETURN begin; COMMIT", "COMMIT"},
		// Column labels named case or end inside a body, a parameter or
		// column named begin of a type named atomic (session12 finding 1,
		// each checked on PostgreSQL 15 by test/faults/adversary).
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 AS case; END; COMMIT", "COMMIT"},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT t.case FROM s t; END; COMMIT", "COMMIT"},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 case; END; COMMIT; SELECT 1 end", "COMMIT"},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 case; END; END", "END"},
		{"CREATE FUNCTION f(begin atomic) RETURNS int LANGUAGE sql RETURN 1; COMMIT", "COMMIT"},
		{"CREATE FUNCTION f() RETURNS TABLE (begin atomic) LANGUAGE sql RETURN 1; COMMIT", "COMMIT"},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT begin atomic FROM s; END; END", "END"},
		{"CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC END; END", "END"},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 AS end; END", ""},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT t.end FROM s t; END", ""},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 end; SELECT 2; END", ""},
		{"PREPARE transaction AS SELECT 1", ""},
		{"PREPARE transaction (int) AS SELECT $1", ""},
		{"PREPARE TRANSACTION $$x$$", "PREPARE TRANSACTION"},
		// Names and commands that keep the transaction.
		{"ROLLBACK TO SAVEPOINT a", ""},
		{"rollback to a", ""},
		{"ROLLBACK WORK TO SAVEPOINT a", ""},
		{"rollback transaction to a", ""},
		{"SAVEPOINT a", ""},
		{"RELEASE SAVEPOINT a", ""},
		{"release a", ""},
		{"SET TRANSACTION ISOLATION LEVEL READ COMMITTED", ""},
		{"COMMITTED", ""},
		{"SELECT committed FROM t", ""},
		{"UPDATE t SET committed = true", ""},
		{"COMMIT1", ""},
		{"ENDS", ""},
		{"PREPARE q AS SELECT 1", ""},
		{"INSERT INTO t VALUES ('COMMIT'); SELECT 'x;END'", ""},
		{"SELECT 1 -- ; COMMIT", ""},
		{"SELECT 1 /* ; COMMIT */", ""},
		{"UPDATE t SET done = true", ""},
		{"", ""},
		{";;", ""},
		// Text that cannot be split either way.
		{"SELECT 'x; COMMIT", Unsplittable},
		{"SELECT $$ COMMIT", Unsplittable},
		{"SELECT 1 /* COMMIT", Unsplittable},
		{"SELECT 1 /* /* */ COMMIT", Unsplittable},
		{`SELECT "x; COMMIT`, Unsplittable},
		{`SELECT E'\'; COMMIT`, Unsplittable},
	} {
		if got := EndsTransaction(tc.sql); got != tc.want {
			t.Errorf("EndsTransaction(%q) = %q, want %q", tc.sql, got, tc.want)
		}
	}
}

func TestCopyFromClient(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want bool
	}{
		{"COPY t FROM STDIN", true},
		{"copy t (a, b) from stdin with (format csv);", true},
		{"INSERT INTO t VALUES (1); COPY t FROM stdin", true},
		{"COPY t FROM/**/STDIN", true},
		{"COPY t TO STDOUT", false},
		{"COPY (SELECT * FROM stdin) TO STDOUT", false},
		{"COPY t FROM '/tmp/data.csv'", false},
		{"SELECT 'COPY t FROM STDIN'", false},
		{"-- COPY t FROM STDIN\nSELECT 1", false},
		{"SELECT a FROM stdin", false},
		{"", false},
		{";", false},
	} {
		if got := CopyFromClient(tc.sql); got != tc.want {
			t.Errorf("CopyFromClient(%q) = %v, want %v", tc.sql, got, tc.want)
		}
	}
}
