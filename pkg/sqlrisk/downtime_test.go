package sqlrisk

import (
	"context"
	"strings"
	"testing"

	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// downtimeSetup is the schema the additive cases run against: proofTable's t
// (100 rows), a table u another can reference, a domain with a check.
const downtimeSetup = proofTable + " CREATE TABLE u (id int PRIMARY KEY); CREATE DOMAIN posint AS int CHECK (VALUE > 0); CREATE TYPE mood AS ENUM ('ok');"

// TestAdditive classifies statements, the tricky negatives above all: every
// form that rewrites, scans under a blocking lock, or changes what the running
// version reads or writes is not additive; so is anything unknown.
func TestAdditive(t *testing.T) {
	ctx := context.Background()
	_, cat := setUp(t, downtimeSetup)
	for _, tt := range []struct {
		sql      string
		inTx     bool
		additive bool
		why      string // part of the reason given when not additive
	}{
		{sql: "CREATE TABLE n (id bigint PRIMARY KEY, t_id int REFERENCES t (id), note text NOT NULL)", inTx: true, additive: true},
		{sql: "CREATE TABLE IF NOT EXISTS n (id int)", inTx: true, additive: true},
		{sql: "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a)", additive: true},
		{sql: "ALTER TABLE t ADD COLUMN c int", inTx: true, additive: true},
		{sql: "ALTER TABLE t ADD COLUMN c text NOT NULL DEFAULT 'x', ADD COLUMN IF NOT EXISTS d int DEFAULT -1, ADD e numeric(10,2)[] DEFAULT NULL", inTx: true, additive: true},
		{sql: "ALTER TABLE t ADD COLUMN c mood DEFAULT 'ok'::mood", inTx: true, additive: true},
		{sql: "CREATE SEQUENCE s START 10", inTx: true, additive: true},
		{sql: "CREATE SCHEMA reports", inTx: true, additive: true},
		{sql: "CREATE TYPE pair AS (x int, y int)", inTx: true, additive: true},
		{sql: "CREATE TYPE level AS ENUM ('a', 'b')", inTx: true, additive: true},
		{sql: "CREATE VIEW v AS SELECT id, a FROM t", inTx: true, additive: true},
		{sql: "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x + 1'", inTx: true, additive: true},
		{sql: "COMMENT ON COLUMN t.a IS 'the a'", inTx: true, additive: true},
		{sql: "GRANT SELECT ON t TO PUBLIC", inTx: true, additive: true},
		{sql: "SET LOCAL lock_timeout = '5s'", inTx: true, additive: true},
		{sql: "-- only a comment\n", inTx: true, additive: true},

		{sql: "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now()", inTx: true, why: "not a constant"},
		{sql: "ALTER TABLE t ADD COLUMN c float8 DEFAULT random()", inTx: true, why: "not a constant"},
		{sql: "ALTER TABLE t ADD COLUMN c int NOT NULL", inTx: true, why: "NOT NULL without a default"},
		{sql: "ALTER TABLE t ADD COLUMN c int DEFAULT NULL NOT NULL", inTx: true, why: "NOT NULL without a default"},
		{sql: "ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT NULL::int", inTx: true, why: "NOT NULL without a default"},
		{sql: "ALTER TABLE t ADD COLUMN c int UNIQUE", inTx: true, why: "adds a constraint"},
		{sql: "ALTER TABLE t ADD COLUMN c int PRIMARY KEY", inTx: true, why: "adds a constraint"},
		{sql: "ALTER TABLE t ADD COLUMN c int DEFAULT 1 REFERENCES u (id)", inTx: true, why: "adds a constraint"},
		{sql: "ALTER TABLE t ADD COLUMN c int DEFAULT 1 CHECK (c > 0)", inTx: true, why: "adds a constraint"},
		{sql: "ALTER TABLE t ADD COLUMN c serial", inTx: true, why: "serial"},
		{sql: "ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS IDENTITY", inTx: true, why: "identity"},
		{sql: "ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS (a * 2) STORED", inTx: true, why: "identity or generated"},
		{sql: "ALTER TABLE t ADD COLUMN c posint", inTx: true, why: "domain"},
		{sql: "ALTER TABLE t ADD COLUMN c not_yet_created", inTx: true, why: "not in the database yet"},
		{sql: "ALTER TABLE t ADD COLUMN c int, DROP COLUMN b", inTx: true, why: "more than ADD COLUMN"},
		{sql: "ALTER TABLE t ALTER COLUMN a TYPE bigint", inTx: true, why: "more than ADD COLUMN"},
		{sql: "ALTER TABLE t ALTER COLUMN a SET DEFAULT 0", inTx: true, why: "more than ADD COLUMN"},
		{sql: "ALTER TABLE t RENAME COLUMN a TO aa", inTx: true, why: "not one of the additive"},
		{sql: "ALTER INDEX t_pkey SET (fillfactor = 70)", inTx: true, why: "ALTER INDEX"},
		{sql: "CREATE OR REPLACE VIEW v AS SELECT 1", inTx: true, why: "OR REPLACE VIEW"},
		{sql: "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", inTx: true, why: "OR REPLACE FUNCTION"},
		{sql: "CREATE TABLE t_2024 PARTITION OF t FOR VALUES IN (1)", inTx: true, why: "PARTITION OF"},
		{sql: "CREATE TABLE t_child () INHERITS (t)", inTx: true, why: "INHERITS"},
		{sql: "CREATE TABLE n AS SELECT * FROM t", inTx: true, why: "not one of the additive"},
		{sql: "CREATE INDEX t_a ON t (a)", inTx: true, why: "without CONCURRENTLY"},
		{sql: "CREATE INDEX CONCURRENTLY t_a ON t (a)", inTx: true, why: "inside a transaction"},
		{sql: "CREATE UNIQUE INDEX CONCURRENTLY t_a ON t (a)", why: "UNIQUE"},
		{sql: "INSERT INTO t VALUES (101, 1, 'y')", inTx: true, why: "INSERT changes rows"},
		{sql: "UPDATE t SET a = 0 WHERE id = 1", inTx: true, why: "UPDATE"},
		{sql: "DELETE FROM t WHERE id = 1", inTx: true, why: "DELETE"},
		{sql: "COPY t FROM STDIN", inTx: true, why: "COPY changes rows"},
		{sql: "CREATE TABLE n (id int); INSERT INTO t VALUES (101, 1, 'y')", inTx: true, why: "INSERT changes rows"},
		{sql: "DO $$ BEGIN EXECUTE 'CREATE TABLE n (id int)'; END $$", inTx: true, why: "not one of the additive"},
		{sql: "REVOKE SELECT ON t FROM PUBLIC", inTx: true, why: "REVOKE"},
		{sql: "SET search_path TO other", inTx: true, why: "SET search_path"},
		{sql: "DROP TABLE u", inTx: true, why: "DROP"},
		{sql: "TRUNCATE t", inTx: true, why: "TRUNCATE"},
		{sql: "VACUUM t", why: "VACUUM"},
		{sql: "LOCK TABLE t IN ACCESS SHARE MODE", inTx: true, why: "LOCK"},
		{sql: "ALTER TYPE mood ADD VALUE 'bad'", inTx: true, why: "not one of the additive"},
		{sql: "CREATE SCHEMA s CREATE TABLE x (id int)", inTx: true, why: "elements"},
	} {
		t.Run(tt.sql, func(t *testing.T) {
			ok, why, err := Additive(ctx, cat, Statement{File: "f.sql", Line: 1, SQL: tt.sql, InTx: tt.inTx})
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.additive || (!ok && !strings.Contains(why, tt.why)) || (ok && why != "") {
				t.Errorf("additive=%v (%q), want %v (%q)", ok, why, tt.additive, tt.why)
			}
		})
	}

	t.Run("unparsed", func(t *testing.T) {
		ok, _, err := Additive(ctx, cat, Statement{File: "f.sql", Line: 3, SQL: "CREATE TABLE (", InTx: true})
		if ok || err == nil || !strings.Contains(err.Error(), "f.sql:3") {
			t.Errorf("a statement the parser rejects: additive=%v, err %v; want false and an error naming f.sql:3", ok, err)
		}
	})
	t.Run("no catalog", func(t *testing.T) {
		ok, why, _ := Additive(ctx, nil, Statement{File: "f.sql", SQL: "ALTER TABLE t ADD COLUMN c int", InTx: true})
		if ok || !strings.Contains(why, "not known without the database") {
			t.Errorf("ADD COLUMN without a catalog: additive=%v (%q), want false", ok, why)
		}
	})
}

// TestAdditiveLocks proves, on the real server, the lock claim behind each
// additive form: on an existing table of 100 rows (t), the statement takes
// the lock written here and no stronger one (read from pg_locks, in a
// transaction rolled back afterwards, or, for CONCURRENTLY, while another
// session holds ROW EXCLUSIVE), never rewrites the table (its relfilenode
// stays), and never reads it all (pg_stat_get_xact_numscans) except CREATE
// INDEX CONCURRENTLY, whose lock lets writes go on. Only ADD COLUMN takes
// ACCESS EXCLUSIVE, for the instant of a catalog change.
func TestAdditiveLocks(t *testing.T) {
	for _, tt := range []struct {
		sql   string
		lock  string // the strongest lock on t
		scans bool
		inTx  bool
	}{
		{sql: "CREATE TABLE n (id bigint PRIMARY KEY, t_id int REFERENCES t (id), note text NOT NULL)", lock: ShareRowExclusiveLock, inTx: true},
		{sql: "CREATE TABLE n (id int)", lock: LockNone, inTx: true},
		{sql: "CREATE INDEX CONCURRENTLY t_a ON t (a)", lock: ShareUpdateExclusiveLock, scans: true},
		{sql: "ALTER TABLE t ADD COLUMN c int", lock: AccessExclusiveLock, inTx: true},
		{sql: "ALTER TABLE t ADD COLUMN c text NOT NULL DEFAULT 'x', ADD COLUMN d int DEFAULT -1, ADD e numeric(10,2)[] DEFAULT NULL", lock: AccessExclusiveLock, inTx: true},
		{sql: "ALTER TABLE t ADD COLUMN c mood DEFAULT 'ok'::mood", lock: AccessExclusiveLock, inTx: true},
		{sql: "CREATE SEQUENCE s START 10", lock: LockNone, inTx: true},
		{sql: "CREATE SCHEMA reports", lock: LockNone, inTx: true},
		{sql: "CREATE TYPE pair AS (x int, y int)", lock: LockNone, inTx: true},
		{sql: "CREATE TYPE level AS ENUM ('a', 'b')", lock: LockNone, inTx: true},
		{sql: "CREATE VIEW v AS SELECT id, a FROM t", lock: AccessShareLock, inTx: true},
		{sql: "CREATE FUNCTION f(x int) RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM t WHERE a = x'", lock: AccessShareLock, inTx: true},
		{sql: "COMMENT ON COLUMN t.a IS 'the a'", lock: ShareUpdateExclusiveLock, inTx: true},
		{sql: "COMMENT ON TABLE t IS 'the t'", lock: ShareUpdateExclusiveLock, inTx: true},
		{sql: "GRANT SELECT ON t TO PUBLIC", lock: LockNone, inTx: true},
		{sql: "SET LOCAL lock_timeout = '5s'", lock: LockNone, inTx: true},
	} {
		t.Run(tt.sql, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv, db := pgenv.NewDatabase(t)
			c := connect(t, srv.URL(db))
			if _, err := c.Exec(ctx, downtimeSetup); err != nil {
				t.Fatal(err)
			}
			ok, why, err := Additive(ctx, catalog(t, srv.URL(db)), Statement{File: "f.sql", Line: 1, SQL: tt.sql, InTx: tt.inTx})
			if err != nil || !ok {
				t.Fatalf("not additive (%q, %v): the proof is of an additive form", why, err)
			}
			var oid, before uint32
			if err := c.QueryRow(ctx, `SELECT oid, relfilenode FROM pg_class WHERE oid = 't'::regclass`).Scan(&oid, &before); err != nil {
				t.Fatal(err)
			}
			var lock string
			var rewrote, scanned bool
			if tt.inTx {
				lock, rewrote, scanned = inTransaction(t, c, tt.sql, oid, before)
				if scanned != tt.scans {
					t.Errorf("scans of t: %v, want %v", scanned, tt.scans)
				}
			} else {
				lock = blocked(t, srv.URL(db), c, tt.sql, "t", oid)
				var after uint32
				if err := c.QueryRow(ctx, `SELECT relfilenode FROM pg_class WHERE oid = $1`, oid).Scan(&after); err != nil {
					t.Fatal(err)
				}
				rewrote = after != before
			}
			if lock != tt.lock {
				t.Errorf("pg_locks shows %q on t, the claim is %q", lock, tt.lock)
			}
			if lock == AccessExclusiveLock && !strings.Contains(tt.sql, "ADD COLUMN") {
				t.Errorf("%s blocks reads of t: not additive", tt.sql)
			}
			if rewrote {
				t.Errorf("t was rewritten (new relfilenode)")
			}
		})
	}
}
