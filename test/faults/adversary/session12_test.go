package adversary

// Session 12's findings: each test reproduces one break of the migrate step's
// rule (nothing lost or applied twice; a rerun finishes or refuses with an
// explanation; the right exit code; a transactional migration that ends its
// own transaction refused before anything runs) against a real PostgreSQL 15,
// found by attacking session 11's fixes (runNoTx's count in a transaction of
// its own or the migration's, sqlrisk.EndsTransaction's routine bodies). Each
// failed at dfea6ee (the code it was written on) and passes with the fix
// named in its comment. Run them (as root):
//
//	go test ./test/faults/adversary -run 'S12' -count=1 -v

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartreuse-go/chartreuse/pkg/sqlrisk"
	"github.com/chartreuse-go/chartreuse/test/waitfor"
)

// s12Ends runs text (one simple-protocol query string) in a transaction on the
// run's database as the superuser and reports whether it ended the
// transaction (committed, rolled back or chained into another): the truth
// EndsTransaction must agree with.
func (r *run) s12Ends(text string) (ended bool, err error) {
	r.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, r.srv.URL(r.db))
	if err != nil {
		r.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var xid int64
	mustExec(r.t, conn, "BEGIN")
	if err := conn.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		r.t.Fatal(err)
	}
	_, err = conn.Exec(ctx, text)
	var same bool
	if qerr := conn.QueryRow(ctx, "SELECT coalesce(txid_current_if_assigned() = $1, false)", xid).Scan(&same); qerr != nil {
		// an aborted transaction is still the one BEGIN opened
		_, _ = conn.Exec(ctx, "ROLLBACK")
		var status *string
		if serr := conn.QueryRow(ctx, "SELECT txid_status($1)", xid).Scan(&status); serr != nil {
			r.t.Fatal(serr)
		}
		return status != nil && *status == "committed", err
	}
	_, _ = conn.Exec(ctx, "ROLLBACK")
	return !same, err
}

// Finding 1 (plan passes a COMMIT, migrate leaves the database stopped
// partway; and the reverse, valid SQL refused). sqlrisk.EndsTransaction
// followed a CREATE FUNCTION's BEGIN ATOMIC body by counting CASE and END
// keywords, but PostgreSQL takes both as column labels (SELECT 1 AS case,
// SELECT 1 case, t.case, t.end) and a parameter or column named begin of a
// type named atomic for BEGIN ATOMIC: the count then ran past the body and hid
// the COMMIT after it, or ended the body early and named its own END as one
// ending the transaction. PREPARE transaction AS ... (a statement named
// transaction) was refused as PREPARE TRANSACTION. Every text here is run in a
// transaction on PostgreSQL 15, and EndsTransaction must say what the server
// did.
// Fixed (pkg/sqlrisk/txcontrol.go): the text is cut at every semicolon, a
// piece starting with END closes a body only when an earlier CREATE routine
// piece opened one (BEGIN ATOMIC outside parentheses, not empty); the server
// refuses COMMIT and the like inside a body, so no piece of one starts with
// them. PREPARE TRANSACTION needs its id, not AS or (.
func TestS12EndsTransactionAgreesWithTheServer(t *testing.T) {
	r := s10Run(t, map[string]string{})
	mustExec(t, r.connect(), "CREATE DOMAIN atomic AS int; CREATE TABLE s (a int, \"case\" int, \"end\" int, begin int)")
	n := 0
	for _, text := range []string{
		"CREATE FUNCTION f1() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 AS case; END; COMMIT",
		"CREATE FUNCTION f2() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 AS end; END",
		"CREATE FUNCTION f3() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT t.end FROM s t; END",
		"CREATE FUNCTION f4() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT t.case FROM s t; END; COMMIT",
		"CREATE FUNCTION f5(begin atomic) RETURNS int LANGUAGE sql RETURN 1; COMMIT",
		"CREATE FUNCTION f6() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 case; END; COMMIT",
		"CREATE FUNCTION f7() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 end; SELECT 2; END",
		"CREATE FUNCTION f8() RETURNS TABLE (begin atomic) LANGUAGE sql RETURN 1; COMMIT",
		"CREATE FUNCTION f9() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 case; END; COMMIT; SELECT 1 end",
		"CREATE FUNCTION f10() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 case; END; END",
		"CREATE FUNCTION f11() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT begin atomic FROM s; END; END",
		"CREATE PROCEDURE f12() LANGUAGE sql BEGIN ATOMIC END; END",
		"CREATE FUNCTION f13(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END; SELECT 2; END; SELECT 1",
		"CREATE OR REPLACE PROCEDURE f14() LANGUAGE sql BEGIN ATOMIC INSERT INTO s (a) VALUES (1); END; ROLLBACK AND CHAIN",
		"PREPARE transaction AS SELECT 1",
		"PREPARE transaction (int) AS SELECT $1",
		"SELECT 1 AS end; SELECT 2 case",
		"SELECT 1; END",
	} {
		n++
		ended, err := r.s12Ends(text)
		if err != nil {
			t.Fatalf("%q is not valid on PostgreSQL 15: %v", text, err)
		}
		if got := sqlrisk.EndsTransaction(text); (got != "") != ended {
			t.Errorf("EndsTransaction(%q) = %q, but PostgreSQL 15 ended the transaction: %v", text, got, ended)
		}
	}
	t.Logf("%d texts checked against the server", n)
}

// TestS12EndsTransactionDifferential builds texts from a seeded generator
// (routine bodies whose statements use case, end, begin and atomic as labels,
// names and keywords, quoted and commented semicolons, then commands that do
// or do not end the transaction) and checks EndsTransaction against what
// PostgreSQL 15 does with each valid one. ADVERSARY_LEXER_SEED and
// ADVERSARY_LEXER_TEXTS choose the texts (1 and 400 by default).
func TestS12EndsTransactionDifferential(t *testing.T) {
	r := s10Run(t, map[string]string{})
	mustExec(t, r.connect(), "CREATE DOMAIN atomic AS int; CREATE TABLE s (a int, \"case\" int, \"end\" int, begin int)")
	body := []string{
		"SELECT 1 AS case", "SELECT 1 case", "SELECT 1 AS end", "SELECT 1 end", "SELECT t.case FROM s t", "SELECT t.end FROM s t",
		"SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END FROM s", "SELECT CASE a WHEN 1 THEN 2 END AS end FROM s", "SELECT begin atomic FROM s",
		"SELECT 'END; COMMIT' AS x", "SELECT $q$;END;$q$ AS y", "SELECT 1 /* ; END */", "SELECT 1 -- ; END\n", "SELECT (SELECT 1 case) AS end",
		"INSERT INTO s (a) VALUES (1)", "SELECT \"end\" FROM s",
	}
	tails := []string{"COMMIT", "END", "ROLLBACK", "ABORT", "COMMIT AND CHAIN", "END WORK", "SELECT 1", "SELECT 1 end", "SELECT 1 AS case",
		"SELECT CASE WHEN true THEN 1 END", "ROLLBACK TO SAVEPOINT sp", "RELEASE SAVEPOINT sp", "SELECT 'x' AS begin"}
	seed := uint64(envInt("ADVERSARY_LEXER_SEED", 1))
	n := envInt("ADVERSARY_LEXER_TEXTS", 400)
	rng := rand.New(rand.NewPCG(seed, seed))
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	valid, bad := 0, 0
	for i := range n {
		var b strings.Builder
		b.WriteString("SAVEPOINT sp; ")
		for range 1 + rng.IntN(2) {
			switch rng.IntN(3) {
			case 0: // a SQL-standard body
				fmt.Fprintf(&b, "CREATE FUNCTION d%d_%d() RETURNS int LANGUAGE sql BEGIN ATOMIC ", seed, i)
				for range rng.IntN(3) {
					b.WriteString(pick(body) + "; ")
				}
				b.WriteString("END; ")
			case 1: // a body-less routine with begin and atomic as names
				fmt.Fprintf(&b, "CREATE FUNCTION e%d_%d(begin atomic) RETURNS int LANGUAGE sql RETURN %s; ", seed, i, pick([]string{"1", "begin", "CASE WHEN begin > 0 THEN 1 END"}))
			default:
				b.WriteString(pick(tails) + "; ")
			}
		}
		b.WriteString(pick(tails))
		text := b.String()
		ended, err := r.s12Ends(text)
		if err != nil {
			continue // not valid SQL: nothing of it runs
		}
		valid++
		if got := sqlrisk.EndsTransaction(text); (got != "") != ended {
			bad++
			t.Errorf("seed %d text %d: EndsTransaction(%q) = %q, but PostgreSQL 15 ended the transaction: %v", seed, i, text, got, ended)
		}
	}
	t.Logf("seed %d: %d texts, %d valid on PostgreSQL 15, %d disagreements", seed, n, valid, bad)
}

// Finding 1, end to end: a transactional migration whose function body has a
// column labelled case and a COMMIT after it on the same line passed plan
// (exit 0) and migrate committed statement 1 on its own, then stopped with the
// database recorded stopped partway (exit 1; every run refuses until
// --resolve). It must be refused before anything runs, as any COMMIT is. The
// reverse: a body with a column labelled end was refused (exit 1, "is END").
func TestS12RoutineBodyLabelsDoNotHideOrInventACommit(t *testing.T) {
	t.Run("case label hides COMMIT", func(t *testing.T) {
		r := s10Run(t, map[string]string{
			"1_f.sql": "-- +goose Up\n" + logInsert(1, 1, 0) +
				"\nCREATE FUNCTION s12_f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 AS case; END; COMMIT;\n" + s11Blocked(1, 3) +
				"\n-- +goose Down\nDELETE FROM adv_log WHERE version = 1;\n",
		})
		plan := r.migrate("plan", appDefault, "--plan")
		res := r.migrate("migrate", appDefault)
		if plan.Code != 1 || res.Code != 1 || r.ran(1, 1) != 0 || !strings.Contains(res.Output(), "is COMMIT") {
			t.Fatalf("plan exit %d, migrate exit %d, statement 1 ran %d times; want both refused naming the COMMIT, nothing run\nplan: %s\nmigrate: %s",
				plan.Code, res.Code, r.ran(1, 1), s10Out(plan), s10Out(res))
		}
	})
	t.Run("end label is no END", func(t *testing.T) {
		r := s10Run(t, map[string]string{
			"1_f.sql": "-- +goose Up\nCREATE FUNCTION s12_g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 AS end; END;\n" + logInsert(1, 2, 0) +
				"\n-- +goose Down\nDROP FUNCTION s12_g();\n",
		})
		res := r.migrate("migrate", appDefault)
		if res.Code != 0 || r.snapshot().rows[1] != 1 || r.ran(1, 2) != 1 {
			t.Fatalf("migrate exit %d, statement 2 ran %d times; want migration 1 applied\n%s", res.Code, r.ran(1, 2), s10Out(res))
		}
	})
}

// s12Role is a role the owner may SET ROLE to, which may insert into adv_log
// and nothing of the step's tables.
func (r *run) s12Role() {
	r.t.Helper()
	r.super("postgres", "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 's12_app') THEN CREATE ROLE s12_app NOLOGIN; END IF; END$$")
	r.super("postgres", "GRANT s12_app TO "+owner)
	mustExec(r.t, r.connect(), "GRANT INSERT ON adv_log TO s12_app")
}

// Finding 2 (a migration that PostgreSQL runs never completes). A migration
// without a transaction that opens one itself (BEGIN; ...; COMMIT; as its
// statements) and in it takes another role (SET [LOCAL] ROLE, the usual way to
// have objects owned by the application's role) or reads only (BEGIN READ
// ONLY): runNoTx's count after each statement joins the migration's
// transaction, its UPDATE of the dirty record fails there (42501, 25006), which
// aborts the migration's transaction; the SET ROLE fallback (asOwnRole) then
// fails too (25P02), and the run exits 1 with the migration recorded stopped
// partway, every time.
// Fixed (countStatement): inside the migration's transaction the count runs
// under a savepoint; when it cannot write, the savepoint undoes only the
// failed write and the count catches up after the COMMIT.
func TestS12CountInsideTheMigrationsOwnTransactionDoesNotBreakIt(t *testing.T) {
	for name, body := range map[string]string{
		"SET LOCAL ROLE": "BEGIN;\nSET LOCAL ROLE s12_app;\n" + logInsert(1, 3, 0) + "\nCOMMIT;\n",
		"SET ROLE":       "BEGIN;\nSET ROLE s12_app;\n" + logInsert(1, 3, 0) + "\nCOMMIT;\nRESET ROLE;\n",
		"READ ONLY":      "BEGIN READ ONLY;\nSELECT 1;\nCOMMIT;\n" + logInsert(1, 4, 0) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			r := s10Run(t, map[string]string{
				"1_a.sql": "-- +goose NO TRANSACTION\n-- +goose Up\n" + body + "-- +goose Down\nDELETE FROM adv_log WHERE version = 1;\n",
				"2_b.sql": "-- +goose Up\n" + logInsert(2, 1, 0) + "\n-- +goose Down\nDELETE FROM adv_log WHERE version = 2;\n",
			})
			r.s12Role()
			res := r.migrate("migrate", appDefault)
			s := r.snapshot()
			if d, ok := s.dirty[1]; ok || res.Code != 0 || s.rows[1] != 1 || s.rows[2] != 1 {
				t.Fatalf("migrate: exit %d, version rows %v, dirty record %v (%+v); want exit 0, both applied\n%s", res.Code, s.rows, ok, d, s10Out(res))
			}
		})
	}
}

// The sibling of finding 2: inside the migration's transaction the count is
// still written (as the step's role, countAsOwnRole) and joins it, and the
// role the migration set is given back as it was, for the session (SET ROLE:
// still in effect after its COMMIT) or the transaction (SET LOCAL ROLE: gone
// after it). Statement 4 reads the count inside the transaction; statement 6
// logs the role after it.
func TestS12CountInsideTheMigrationsTransactionKeepsItsRole(t *testing.T) {
	for set, after := range map[string]string{"SET ROLE": "s12_app", "SET LOCAL ROLE": owner} {
		t.Run(set, func(t *testing.T) {
			r := s10Run(t, map[string]string{
				"1_a.sql": "-- +goose NO TRANSACTION\n-- +goose Up\nBEGIN;\n" + set + " s12_app;\n" + logInsert(1, 3, 0) + "\n" +
					"INSERT INTO adv_log (version, stmt, pid, app) SELECT 1, 4, pg_backend_pid(), statements_done || ' ' || current_user FROM goose_db_version_dirty WHERE version = 1;\n" +
					"COMMIT;\nINSERT INTO adv_log (version, stmt, pid, app) SELECT 1, 6, pg_backend_pid(), current_user;\n" +
					"-- +goose Down\nDELETE FROM adv_log WHERE version = 1;\n",
			})
			r.s12Role()
			// The dirty table made beforehand, its layout the step's, so the
			// migration's role may read it.
			mustExec(t, r.connect(), `CREATE TABLE goose_db_version_dirty (version bigint PRIMARY KEY,
				direction text NOT NULL CHECK (direction IN ('up', 'down')), file text NOT NULL, statements_done integer NOT NULL,
				statements_total integer NOT NULL, started_at timestamptz NOT NULL DEFAULT now(), run_id text NOT NULL DEFAULT '',
				last_error text NOT NULL DEFAULT ''); ALTER TABLE goose_db_version_dirty OWNER TO `+owner+`; GRANT SELECT ON goose_db_version_dirty TO s12_app`)
			res := r.migrate("migrate", appDefault)
			s := r.snapshot()
			in, out := s.ran[stmtKey{1, 4}].apps, s.ran[stmtKey{1, 6}].apps
			if res.Code != 0 || len(in) != 1 || in[0] != "3 s12_app" || len(out) != 1 || out[0] != after {
				t.Fatalf("exit %d; inside the transaction count and role %q, want [\"3 s12_app\"]; role after it %q, want [%q]\n%s", res.Code, in, out, after, s10Out(res))
			}
		})
	}
}

// Finding 3 (applied twice). A migration without a transaction that removes
// its own dirty record: DROP TABLE goose_db_version_dirty (or DROP OWNED),
// DELETE or TRUNCATE of it. After a DROP the count fails (42P01) and
// recordDirtyError's UPDATE finds no table: the run exits 1 saying the
// migration is recorded as stopped partway while no record exists, and the
// rerun takes it for one that never started and runs its first statement again
// (each rerun once more). After a DELETE the counts change nothing: a run
// killed later leaves no record, and the rerun applies it again.
// Fixed (countStatement, rewriteDirty, recordDirtyError): a count that finds
// no row or no table writes the record again (the table too) and the migration
// goes on; a failure's record is written again when its UPDATE finds nothing.
func TestS12MigrationRemovingItsDirtyRecordIsNotAppliedTwice(t *testing.T) {
	t.Run("DROP TABLE", func(t *testing.T) {
		r := s10Run(t, map[string]string{
			"1_a.sql": "-- +goose NO TRANSACTION\n-- +goose Up\n" + logInsert(1, 1, 0) + "\nDROP TABLE goose_db_version_dirty;\n" + logInsert(1, 3, 0) +
				"\n-- +goose Down\nDELETE FROM adv_log WHERE version = 1;\n",
		})
		first := r.migrate("migrate", appDefault)
		again := r.migrate("rerun", appDefault)
		s := r.snapshot()
		if n := r.ran(1, 1); n != 1 || first.Code != 0 || again.Code != 0 || s.rows[1] != 1 || len(s.dirty) > 0 {
			t.Fatalf("statement 1 ran %d times, first exit %d, rerun exit %d, version rows %v, dirty records %v; want applied once, exit 0 twice\nfirst: %s\nrerun: %s",
				n, first.Code, again.Code, s.rows, s.dirty, s10Out(first), s10Out(again))
		}
	})
	t.Run("DELETE then SIGKILL", func(t *testing.T) {
		r := s10Run(t, map[string]string{
			"1_a.sql": "-- +goose NO TRANSACTION\n-- +goose Up\n" + logInsert(1, 1, 0) + "\nDELETE FROM goose_db_version_dirty;\n" +
				logInsert(1, 3, 60*time.Second) + "\n-- +goose Down\nDELETE FROM adv_log WHERE version = 1;\n",
		})
		ctx := context.Background()
		attacker := r.connect()
		p := r.start("migrate", appDefault)
		waitfor.True(t, "statement 3 to sleep", time.Minute, func() bool {
			var n int
			if err := attacker.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND usename = $1 AND wait_event = 'PgSleep'`, owner).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return !p.Running() || n > 0
		})
		p.send(syscall.SIGKILL)
		if _, timedOut := r.finish(p, time.Minute); timedOut {
			t.Fatal("the killed run did not end")
		}
		// Its backend ends the sleep when it finds the client gone, and
		// frees the lock.
		waitfor.True(t, "the killed run's lock to be released", time.Minute, func() bool {
			h, err := lockHolders(ctx, attacker)
			return err == nil && len(h) == 0
		})
		again := r.migrate("rerun", appDefault)
		s := r.snapshot()
		d, ok := s.dirty[1]
		if n := r.ran(1, 1); n != 1 || again.Code != 1 || !ok || d.Done != 2 {
			t.Fatalf("statement 1 ran %d times, rerun exit %d, dirty record %v (%+v); want once, the rerun refusing (exit 1) with the migration recorded after 2 statements\nrerun: %s",
				n, again.Code, ok, d, s10Out(again))
		}
	})
}

// Finding 4 (a refusal naming the wrong cause; known, made a test). A
// migration that runs ALTER ROLE <login> SET role = <app role> (so that what
// later sessions create belongs to the application's role) switches every
// later session of the login, the next run's too: that run's Inspect sees
// current_user = the app role, and refuses naming the app role's missing
// grants on the version table ("Grant it: GRANT ... TO s12_app"), a repair
// that would work but hides that the step no longer runs as its login and
// that the role default is what changed.
// Fixed (Analyze, explainRoleDefault): Inspect reads where the role setting
// came from (pg_settings.source), and a missing-privilege refusal for a
// role that is a default of the login (or the database, or the connection's
// options) says so and names the ALTER ROLE ... RESET role that undoes it.
func TestS12RoleDefaultLeftByAMigrationIsNamedInTheRefusal(t *testing.T) {
	r := s10Run(t, map[string]string{
		"1_a.sql": "-- +goose Up\nALTER ROLE " + owner + " SET role = s12_app;\n" + logInsert(1, 2, 0) + "\n-- +goose Down\nALTER ROLE " + owner + " RESET role;\n",
	})
	r.s12Role()
	t.Cleanup(func() { r.super("postgres", "ALTER ROLE "+owner+" RESET role") })
	if res := r.migrate("migrate 1", appDefault); res.Code != 0 {
		t.Fatalf("migrate 1: exit %d\n%s", res.Code, s10Out(res))
	}
	r.write("2_b.sql", "-- +goose Up\n"+logInsert(2, 1, 0)+"\n-- +goose Down\nDELETE FROM adv_log WHERE version = 2;\n")
	res := r.migrate("migrate 2", appDefault)
	out := res.Output()
	if res.Code != 1 || r.ran(2, 1) != 0 || !strings.Contains(out, "ALTER ROLE "+owner+" RESET role") || !strings.Contains(out, "not the login role") {
		t.Fatalf("migrate 2: exit %d, statement 1 ran %d times; want exit 1, nothing run, the refusal naming the role default and ALTER ROLE %s RESET role\n%s",
			res.Code, r.ran(2, 1), owner, out)
	}
	t.Log(tail(out, 1))
}

// Finding 5 (wrong exit code: 75, retried forever). A transactional migration
// that releases the migration lock (SELECT pg_advisory_unlock_all(), or
// pg_advisory_unlock of the step's lock): the version row, written only while
// the session holds the lock, changes nothing, and failed() takes
// errVersionRow for a migrator without a lock (the goose CLI) having written
// it: exit 75, "rerun when it is done", and every retry does the same. One
// without a transaction (DISCARD ALL, which also releases it) exits 1 but
// says the same "rerun when it is done" while every rerun refuses.
// Fixed (versionRowUnwritten): after a guarded write that changed nothing the
// session is asked whether it still holds the lock; when it does not, the
// failure is permanent and names the migration's statement as the cause.
func TestS12MigrationReleasingTheLockIsPermanent(t *testing.T) {
	for name, body := range map[string]string{
		"transactional, pg_advisory_unlock_all": "-- +goose Up\n" + logInsert(1, 1, 0) + "\nSELECT pg_advisory_unlock_all();\n",
		"NO TRANSACTION, DISCARD ALL":           "-- +goose NO TRANSACTION\n-- +goose Up\n" + logInsert(1, 1, 0) + "\nDISCARD ALL;\n",
	} {
		t.Run(name, func(t *testing.T) {
			r := s10Run(t, map[string]string{"1_a.sql": body + "-- +goose Down\nDELETE FROM adv_log WHERE version = 1;\n"})
			res := r.migrate("migrate", appDefault)
			again := r.migrate("rerun", appDefault)
			if res.Code != 1 || again.Code != 1 || r.ran(1, 1) > 1 || !strings.Contains(res.Output(), "released the migration lock itself") {
				t.Fatalf("exit %d, rerun exit %d, statement 1 ran %d times; want exit 1 twice naming the migration's release of the lock, applied at most once\nfirst: %s\nrerun: %s",
					res.Code, again.Code, r.ran(1, 1), s10Out(res), s10Out(again))
			}
		})
	}
}

// Finding 6 (the step hangs until killed, and every retry hangs again). A
// migration with COPY ... FROM STDIN (pg_dump's data sections, a seed file):
// the server answers CopyInResponse and waits for the rows; pgconn's Exec does
// not handle it and waits for the server, and statement_timeout does not end
// a wait for the client. A transactional one hung again on every retry; one
// without a transaction was left stopped partway by the kill.
// Fixed (preparse, checkCopyFromClient, sqlrisk.CopyFromClient): such a file
// is refused before anything runs, naming the statement and the repair.
func TestS12CopyFromStdinIsRefusedBeforeRunning(t *testing.T) {
	for name, head := range map[string]string{
		"transactional":  "-- +goose Up\n",
		"NO TRANSACTION": "-- +goose NO TRANSACTION\n-- +goose Up\n",
	} {
		t.Run(name, func(t *testing.T) {
			r := s10Run(t, map[string]string{"1_a.sql": head + logInsert(1, 1, 0) + "\nCOPY adv_blocked FROM STDIN;\n-- +goose Down\nDELETE FROM adv_log WHERE version = 1;\n"})
			plan := r.migrate("plan", appDefault, "--plan")
			p := r.start("migrate", appDefault)
			res, timedOut := r.finish(p, time.Minute)
			if timedOut || plan.Code != 1 || res.Code != 1 || r.ran(1, 1) != 0 || !strings.Contains(res.Output(), "FROM STDIN") {
				t.Fatalf("plan exit %d, migrate exit %d (killed after a minute: %v), statement 1 ran %d times; want both refused naming COPY ... FROM STDIN, nothing run\nplan: %s\nmigrate: %s",
					plan.Code, res.Code, timedOut, r.ran(1, 1), s10Out(plan), s10Out(res))
			}
		})
	}
}

// Finding 7 (wrong exit code: 75, retried forever, naming the wrong cause). A
// transactional migration that writes its own version row (INSERT INTO
// goose_db_version ..., as a dump of a database goose migrated has): the
// step's guarded write finds the row there and changes nothing, and failed()
// takes that for a migrator without a lock (the goose CLI) having written it:
// exit 75, "rerun when it is done", and every retry does the same.
// Fixed (runTx, versionRowOwnWrite): after the rollback the row is looked
// for; gone with the rollback, it was the migration's own: exit 1 naming it.
// (One without a transaction exits 1 with the migration stopped partway,
// every statement done, its version row written by itself; its message names
// the cause since session13 finding 2.)
func TestS12MigrationWritingItsOwnVersionRowIsPermanent(t *testing.T) {
	r := s10Run(t, map[string]string{
		"1_a.sql": "-- +goose Up\n" + logInsert(1, 1, 0) + "\nINSERT INTO goose_db_version (version_id, is_applied) VALUES (1, true);\n" +
			"-- +goose Down\nDELETE FROM adv_log WHERE version = 1;\n",
	})
	res := r.migrate("migrate", appDefault)
	again := r.migrate("rerun", appDefault)
	if res.Code != 1 || again.Code != 1 || r.ran(1, 1) != 0 || !strings.Contains(res.Output(), "writes its own version row") {
		t.Fatalf("exit %d, rerun exit %d, statement 1 ran %d times; want exit 1 twice naming the migration's own version row, nothing committed\nfirst: %s\nrerun: %s",
			res.Code, again.Code, r.ran(1, 1), s10Out(res), s10Out(again))
	}
}
