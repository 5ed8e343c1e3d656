package migrate

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// TestTransactionControlRefused: a migration that runs in a transaction and
// ends it itself (COMMIT, END, ROLLBACK, ABORT, ...) is refused before anything
// runs, in either direction, naming the command and its line; ROLLBACK TO
// SAVEPOINT and a COMMIT inside a function body are not refused. Before, a
// COMMIT let a retry after a lock timeout apply the first statements twice, and a
// ROLLBACK recorded the migration applied with its first statements undone
// (test/faults/adversary session 10, findings 1 and 1b).
func TestTransactionControlRefused(t *testing.T) {
	for _, tc := range []struct {
		name, file, want string
	}{
		{"commit", mig("CREATE TABLE a (id int);\nCOMMIT;\nCREATE TABLE b (id int);", "DROP TABLE b; DROP TABLE a;"), "statement 2 (line 3) is COMMIT"},
		{"end-in-a-block", mig("-- +goose StatementBegin\nCREATE TABLE a (id int); END;\n-- +goose StatementEnd", "DROP TABLE a;"), "is END"},
		{"rollback-in-down", mig("CREATE TABLE a (id int);", "DROP TABLE a;\nROLLBACK;"), "for down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDB(t)
			dir := writeDir(t, files{"00001_a.sql": tc.file})
			args := []string{}
			if strings.Contains(tc.name, "down") {
				// Applied by hand-made history, so the Down is what runs.
				mustRun(t, d.url(), writeDir(t, files{"00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")}))
				d.exec("TRUNCATE goose_db_version_sums")
				args = []string{"--down-to", "0"}
			}
			before := d.snapshot()
			for _, plan := range [][]string{{"--plan"}, nil} {
				if strings.Contains(tc.name, "down") && plan != nil {
					continue // --plan judges up-migrations only
				}
				o := runStep(t, d.url(), dir, append(plan, args...)...)
				if o.code != 1 || !strings.Contains(o.lastLine(), tc.want) || !strings.Contains(o.lastLine(), "nothing was applied") {
					t.Fatalf("%v: exit %d, want 1 with %q:\n%s", plan, o.code, tc.want, o.lastLine())
				}
			}
			if after := d.snapshot(); after != before {
				t.Errorf("the refused run changed the database:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	t.Run("kept", func(t *testing.T) {
		d := newDB(t)
		dir := writeDir(t, files{"00001_a.sql": mig(
			"CREATE TABLE a (id int);\nSAVEPOINT s;\nINSERT INTO a VALUES (1);\nROLLBACK TO SAVEPOINT s;\n"+
				"-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;\n-- +goose StatementEnd",
			"DROP FUNCTION f(); DROP TABLE a;")})
		mustRun(t, d.url(), dir)
		if n := d.queryString("SELECT count(*)::text FROM a"); n != "0" {
			t.Fatalf("a has %s rows, want 0 (rolled back to the savepoint)", n)
		}
	})
	// A SQL-standard function body (PostgreSQL 14+) holds semicolons and END
	// words of its own: before, preparse read its END as the command that ends
	// the transaction and refused the file.
	t.Run("begin-atomic", func(t *testing.T) {
		d := newDB(t)
		dir := writeDir(t, files{"00001_a.sql": mig(
			"CREATE TABLE a (id int);\n-- +goose StatementBegin\nCREATE FUNCTION g(x int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n"+
				"  INSERT INTO a VALUES (x);\n  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\nEND;\n-- +goose StatementEnd\nINSERT INTO a SELECT g(5);",
			"DROP FUNCTION g(int); DROP TABLE a;")})
		if o := runStep(t, d.url(), dir, "--plan"); o.code != 0 {
			t.Fatalf("plan: exit %d, want 0:\n%s", o.code, o.lastLine())
		}
		mustRun(t, d.url(), dir)
		if got := d.queryString("SELECT string_agg(id::text, ',' ORDER BY id) FROM a"); got != "1,5" {
			t.Fatalf("a holds %q, want 1,5 (g ran once and returned 1)", got)
		}
	})
}

// TestTransactionEndedAtRunTime: should a statement end the migration's
// transaction anyway (one preparse cannot see), the run stops at once, records
// the migration as stopped partway and exits 1, so that no retry applies what may
// have committed again. The statements are given to runTx directly: every form
// preparse knows is refused before it. COMMIT AND CHAIN and ROLLBACK AND CHAIN
// open a new transaction at once, so the protocol's status stays 'T': runTx
// compares the transaction's id with the one it began (test/faults/adversary
// session 11, findings 1 and 1d); a COMMIT AND CHAIN before a failing command of
// the same statement is found by the id's status after the rollback; and the
// record is written as the step's own role whatever role the migration took
// (finding 5).
func TestTransactionEndedAtRunTime(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stmts []string
		done  string // the dirty record's statements_done/statements_total
		a     bool   // table a committed
		want  string
	}{
		{"commit", []string{"CREATE TABLE a (id int)", "COMMIT", "CREATE TABLE b (id int)"}, "2/3", true, "its statement 2 ended the transaction"},
		{"commit-and-chain", []string{"CREATE TABLE a (id int)", "COMMIT AND CHAIN", "CREATE TABLE b (id int)"}, "2/3", true, "its statement 2 ended the transaction"},
		{"rollback-and-chain", []string{"CREATE TABLE a (id int)", "ROLLBACK AND CHAIN", "CREATE TABLE b (id int)"}, "2/3", false, "its statement 2 ended the transaction"},
		{"chain-then-a-failure", []string{"CREATE TABLE a (id int); COMMIT AND CHAIN; SELECT 1/0", "CREATE TABLE b (id int)"}, "1/2", true, "then a later command of the statement failed: ERROR: division by zero"},
		{"chain-as-another-role", []string{"SET ROLE h43_noprivs", "CREATE TEMP TABLE x (id int); COMMIT AND CHAIN", "CREATE TABLE b (id int)"}, "2/3", false, "its statement 2 ended the transaction"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDB(t)
			ctx := context.Background()
			if tc.name == "chain-as-another-role" {
				// A role that may not create the dirty record in public.
				d.exec("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'h43_noprivs') THEN CREATE ROLE h43_noprivs NOLOGIN; END IF; END$$")
				d.exec("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
			}
			dir := writeDir(t, files{"00001_a.sql": mig("CREATE TABLE a (id int);", "DROP TABLE a;")})
			mustRun(t, d.url(), dir, "--plan")
			db := d.sqlDB(t, nil)
			m := &Migrator{DB: db, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Opts: Options{Table: DefaultTable, LockTimeout: 10 * time.Second}}
			lk, err := acquireLock(ctx, db, 0, m.Log, nil)
			if err != nil {
				t.Fatal(err)
			}
			st, err := Inspect(ctx, lk.conn, DefaultTable)
			if err != nil {
				t.Fatal(err)
			}
			d.exec(createVersionSQL(st))
			d.exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true)")
			if st, err = Inspect(ctx, lk.conn, DefaultTable); err != nil {
				t.Fatal(err)
			}
			s := Source{Version: 1, File: "00001_a.sql"}
			p := &Parsed{UseTx: true, Statements: tc.stmts}
			err = lk.conn.Raw(func(dc any) error {
				pc := dc.(*stdlib.Conn).Conn()
				rerr := m.runTx(ctx, pc, st, s, true, p, pc.PgConn().ParameterStatus("server_version"), time.Now(), nil)
				return m.failed(ctx, pc, s, true, rerr, nil)
			})
			lk.release(ctx)
			var me *MigrationError
			if !errors.As(err, &me) || !me.Dirty || failure.Code(err) != 1 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (code %d), want a dirty migration error with %q, exit 1", err, failure.Code(err), tc.want)
			}
			if d.tableExists("a") != tc.a || d.tableExists("b") {
				t.Errorf("a exists %v, want %v; b exists %v (must not run)", d.tableExists("a"), tc.a, d.tableExists("b"))
			}
			if got := d.queryString("SELECT statements_done || '/' || statements_total FROM goose_db_version_dirty WHERE version = 1"); got != tc.done {
				t.Errorf("dirty record %q, want %s", got, tc.done)
			}
			if o := runStep(t, d.url(), dir); o.code != 1 || !strings.Contains(o.lastLine(), "stopped partway") {
				t.Errorf("the next run: exit %d, want 1 refusing the stopped migration:\n%s", o.code, o.lastLine())
			}
		})
	}
}
