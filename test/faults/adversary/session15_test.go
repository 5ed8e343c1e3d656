package adversary

// Session 15's findings, as session14_test.go's: each failed on the code it was
// written on (c067c24) and passes with the fix named in its comment.
//
//	go test ./test/faults/adversary -run 'S15' -count=1 -v

import (
	"strings"
	"testing"
)

// Finding 1 (a rerun that refuses what it should finish). --resolve settles a
// dirty record in one statement that commits by itself. When the connection is
// lost while that COMMIT is in flight and the server committed it, the step
// exited 75 (a retry can fix it), and the retry of the same --resolve then
// refused with exit 1, "no migration is recorded as stopped partway": the
// operator could not tell a settled record from a mistyped version.
//
// Fixed (Migrator.resolve, settledAs): with no dirty record left and the
// version table already recording the version as --as says, --resolve exits 0
// and changes nothing; the lost commit is reported as of unknown outcome, to
// run again.
func TestS15ResolveAgainAfterItsCommitWasLost(t *testing.T) {
	for _, as := range []string{"applied", "not-applied"} {
		t.Run(as, func(t *testing.T) {
			r := s10Run(t, map[string]string{
				"1_a.sql": "-- +goose NO TRANSACTION\n-- +goose Up\n" + logInsert(1, 1, 0) + "\nSELECT 1/0;\n",
			})
			if res := r.migrate("migrate", appDefault); res.Code != 1 {
				t.Fatalf("migrate: exit %d, want 1 (stopped partway)\n%s", res.Code, s10Out(res))
			}
			// Both resolutions delete the dirty row: its commit sleeps a second.
			mustExec(t, r.connect(), `CREATE FUNCTION s15_slow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM pg_sleep(1); RETURN NULL; END$$;
				CREATE CONSTRAINT TRIGGER s15_slow AFTER DELETE ON `+r.dirtyTable()+` DEFERRABLE INITIALLY DEFERRED
				FOR EACH ROW EXECUTE FUNCTION s15_slow()`)
			px := r.s14UseProxy()
			resolve := []string{"--resolve", "1", "--as", as}
			out, code := r.s14CommitLostAfterCommitting(px, resolve...)
			if code != 75 || !strings.Contains(out, "whether it committed is unknown") {
				t.Fatalf("--resolve with its commit lost: exit %d, want 75 saying the outcome is unknown\n%s", code, tail(out, 6))
			}
			if s := r.snapshot(); len(s.dirty) != 0 || (s.rows[1] == 1) != (as == "applied") {
				t.Fatalf("after the lost commit: version rows %v, dirty %v; want the resolution committed", s.rows, s.dirty)
			}
			again := r.migrate("resolve again", appDefault, resolve...)
			if again.Code != 0 {
				t.Fatalf("the same --resolve again: exit %d, want 0 (already settled)\n%s", again.Code, s10Out(again))
			}
			if s := r.snapshot(); len(s.dirty) != 0 || (s.rows[1] == 1) != (as == "applied") || r.ran(1, 1) != 1 {
				t.Fatalf("the second --resolve changed something: version rows %v, dirty %v, statement 1 ran %d times", s.rows, s.dirty, r.ran(1, 1))
			}
			// The other resolution is not what is recorded: still refused.
			other := map[string]string{"applied": "not-applied", "not-applied": "applied"}[as]
			if res := r.migrate("resolve the other way", appDefault, "--resolve", "1", "--as", other); res.Code != 1 {
				t.Fatalf("--resolve 1 --as %s after settling as %s: exit %d, want 1\n%s", other, as, res.Code, s10Out(res))
			}
			// A version that is not a file is still refused.
			if res := r.migrate("resolve a typo", appDefault, "--resolve", "9", "--as", as); res.Code != 1 {
				t.Fatalf("--resolve 9 (no such migration): exit %d, want 1\n%s", res.Code, s10Out(res))
			}
		})
	}
}

// Finding 2 (a retry that cannot help). A migration that makes its own
// transaction read-only (SET TRANSACTION READ ONLY, then a write) failed with
// SQLSTATE 25006, which the step takes as a standby after a switchover: exit
// 75, retried by the workflow until its retries ran out, each time the same,
// and the message never said that the file did it.
//
// Fixed (Migrator.failed, writablePrimary): on a primary whose sessions may
// write, 25006 in a migration is permanent (exit 1) and names the cause.
func TestS15MigrationMakingItsTransactionReadOnlyIsPermanent(t *testing.T) {
	for name, stmt := range map[string]string{
		"set transaction":         "SET TRANSACTION READ ONLY;",
		"session characteristics": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY;\nSET TRANSACTION READ ONLY;",
	} {
		t.Run(name, func(t *testing.T) {
			r := s10Run(t, map[string]string{
				"1_a.sql": "-- +goose Up\n" + logInsert(1, 1, 0) + "\n-- +goose Down\nDELETE FROM adv_log WHERE version = 1;\n",
				"2_b.sql": "-- +goose Up\n" + stmt + "\n" + logInsert(2, 1, 0) + "\n-- +goose Down\nDELETE FROM adv_log WHERE version = 2;\n",
			})
			res := r.migrate("migrate", appDefault)
			out := res.Output()
			if res.Code != 1 || !strings.Contains(out, "the migration itself made its transaction read-only") {
				t.Fatalf("exit %d, want 1 naming the migration's own read-only transaction\n%s", res.Code, s10Out(res))
			}
			if s := r.snapshot(); s.rows[1] != 1 || s.rows[2] != 0 || len(s.dirty) != 0 || r.ran(2, 1) != 0 {
				t.Fatalf("version rows %v, dirty %v, migration 2 ran %d times; want 1 applied, 2 not", s.rows, s.dirty, r.ran(2, 1))
			}
		})
	}
}
