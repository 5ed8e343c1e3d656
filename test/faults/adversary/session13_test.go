package adversary

// Session 13's findings: migrations that remove the step's own records (the
// version table, its checksum and dirty tables, or the schema holding them)
// or write them themselves. Each test reproduces one break of the migrate
// step's rule (nothing lost or applied twice; a rerun finishes or refuses with
// an explanation; the right exit code and a message that says what happened)
// against a real PostgreSQL 15. Each failed at c22231d (the code it was
// written on) and passes with the fix named in its comment. Run them (as
// root):
//
//	go test ./test/faults/adversary -run 'S13' -count=1 -v

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

// s13Log is a log table outside public (which some migrations here drop),
// owned by the migrators' role; s13Ran counts the times statement stmt of
// version v ran.
func (r *run) s13Log() {
	r.t.Helper()
	mustExec(r.t, r.connect(), "CREATE TABLE adv.log13 (version bigint NOT NULL, stmt int NOT NULL); ALTER TABLE adv.log13 OWNER TO "+owner)
}

func s13Insert(v, stmt int) string {
	return "INSERT INTO adv.log13 VALUES (" + strconv.Itoa(v) + ", " + strconv.Itoa(stmt) + ");"
}

func (r *run) s13Ran(v, stmt int) int {
	r.t.Helper()
	return r.queryInt(`SELECT count(*)::int FROM adv.log13 WHERE version = $1 AND stmt = $2`, v, stmt)
}

// s13Records are the versions of the applied rows of public.goose_db_version
// ("" without the table) and the number of dirty records (-1 without their
// table): the snapshot's adv_log is in public, which some migrations drop.
func (r *run) s13Records() (rows string, dirty int) {
	r.t.Helper()
	conn := r.connect()
	defer conn.Close(context.Background())
	ctx := context.Background()
	var vt, dt bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('public.goose_db_version') IS NOT NULL, to_regclass('public.goose_db_version_dirty') IS NOT NULL`).Scan(&vt, &dt); err != nil {
		r.t.Fatal(err)
	}
	dirty = -1
	if vt {
		if err := conn.QueryRow(ctx, `SELECT coalesce(string_agg(version_id::text, ' ' ORDER BY version_id), '') FROM public.goose_db_version WHERE is_applied`).Scan(&rows); err != nil {
			r.t.Fatal(err)
		}
	}
	if dt {
		if err := conn.QueryRow(ctx, `SELECT count(*)::int FROM public.goose_db_version_dirty`).Scan(&dirty); err != nil {
			r.t.Fatal(err)
		}
	}
	return rows, dirty
}

// s13First is a transactional migration applied before the attacking one.
const s13First = "-- +goose Up\nINSERT INTO adv.log13 VALUES (1, 1);\n-- +goose Down\nDELETE FROM adv.log13 WHERE version = 1;\n"

// Finding 1 (applied twice; a record said to exist that does not; a rerun
// refusal that leads to applying every migration again). A migration without
// a transaction that removes the version table: DROP SCHEMA public CASCADE
// (public holding the version table and its _sums and _dirty companions),
// DROP TABLE or ALTER TABLE ... RENAME of the version table.
//   - DROP SCHEMA public CASCADE: the count after it failed (the dirty table's
//     schema is gone), writing the record again failed, and the run exited 1
//     saying the migration "is recorded as stopped partway" while nothing
//     recorded anything; the rerun refused "no schema to hold the version
//     table" and told to create the schema, after which every migration,
//     the first included, ran again.
//   - DROP SCHEMA public CASCADE; CREATE SCHEMA public (one statement): the
//     count wrote the dirty record again in the new schema, the version row
//     failed (42P01), and the rerun, finding no version table, did not read
//     the dirty record (Inspect stopped at the missing table): it created a
//     new version table and applied migrations 1 and 2 again.
//   - DROP TABLE or RENAME of the version table: exit 1 naming only "relation
//     ... does not exist", and the rerun refused about the checksum records
//     without naming the migration stopped partway.
//
// Fixed (recordDirtyError, restoreRecords; Inspect, checkDirty): when the
// migration has removed the version table, the step writes its records back
// from what it read under the lock (the schema if it is gone, the version
// table with the versions applied before, the dirty record) and says so; a
// dirty record is read, and refused, even without a version table. The rerun
// refuses until --resolve, which then works.
func TestS13NoTransactionMigrationRemovingTheVersionTableIsNotLost(t *testing.T) {
	for name, body := range map[string]string{
		"DROP SCHEMA public CASCADE":                    "DROP SCHEMA public CASCADE;\n",
		"DROP SCHEMA then CREATE SCHEMA, one statement": "-- +goose StatementBegin\nDROP SCHEMA public CASCADE; CREATE SCHEMA public;\n-- +goose StatementEnd\n",
		"DROP TABLE goose_db_version":                   "DROP TABLE goose_db_version;\n",
		"ALTER TABLE goose_db_version RENAME":           "ALTER TABLE goose_db_version RENAME TO goose_db_version_old;\n",
	} {
		t.Run(name, func(t *testing.T) {
			r := s10Run(t, map[string]string{
				"1_a.sql": s13First,
				"2_b.sql": "-- +goose NO TRANSACTION\n-- +goose Up\n" + s13Insert(2, 1) + "\n" + body + s13Insert(2, 3) +
					"\n-- +goose Down\nDELETE FROM adv.log13 WHERE version = 2;\n",
			})
			r.s13Log()
			first := r.migrate("migrate", appDefault)
			again := r.migrate("rerun", appDefault)
			out := first.Output()
			if first.Code != 1 || !strings.Contains(out, "removed the version table") || !strings.Contains(out, "wrote back") ||
				again.Code != 1 || !strings.Contains(again.Output(), "migration 2 (2_b.sql) stopped partway") ||
				r.s13Ran(1, 1) != 1 || r.s13Ran(2, 1) != 1 {
				t.Fatalf("exit %d, rerun exit %d, migration 1 ran %d times, migration 2's statement 1 %d times; want exit 1 naming the removed version table and the records written back, the rerun refusing naming migration 2 stopped partway, each statement once\nfirst: %s\nrerun: %s",
					first.Code, again.Code, r.s13Ran(1, 1), r.s13Ran(2, 1), s10Out(first), s10Out(again))
			}
			// The operator settles it as the refusal says; nothing runs again.
			res := r.migrate("resolve", appDefault, "--resolve", "2", "--as", "applied")
			after := r.migrate("after", appDefault)
			rows, dirty := r.s13Records()
			if res.Code != 0 || after.Code != 0 || rows != "0 1 2" || dirty != 0 || r.s13Ran(1, 1) != 1 || r.s13Ran(2, 1) != 1 {
				t.Fatalf("resolve exit %d, next run exit %d, version rows %q, %d dirty records, ran %d and %d times; want both 0, versions 0 1 2 recorded once, nothing run again\nresolve: %s\nnext: %s",
					res.Code, after.Code, rows, dirty, r.s13Ran(1, 1), r.s13Ran(2, 1), s10Out(res), s10Out(after))
			}
			t.Log(tail(out, 1))
		})
	}
}

// The transactional sibling of finding 1: the same statements in a migration
// with a transaction are rolled back (the version row's write fails, 42P01),
// and every rerun does the same. Before, it was exit 1 with only "relation
// ... does not exist"; now the message names the migration's removal of the
// version table and the repair.
// Fixed (runTx, versionTableOwnRemoval).
func TestS13TransactionalMigrationRemovingTheVersionTableIsNamed(t *testing.T) {
	for name, body := range map[string]string{
		"DROP SCHEMA public CASCADE":          "DROP SCHEMA public CASCADE;\n",
		"DROP TABLE goose_db_version":         "DROP TABLE goose_db_version;\n",
		"ALTER TABLE goose_db_version RENAME": "ALTER TABLE goose_db_version RENAME TO goose_db_version_old;\n",
	} {
		t.Run(name, func(t *testing.T) {
			r := s10Run(t, map[string]string{
				"1_a.sql": s13First,
				"2_b.sql": "-- +goose Up\n" + s13Insert(2, 1) + "\n" + body + "-- +goose Down\nDELETE FROM adv.log13 WHERE version = 2;\n",
			})
			r.s13Log()
			first := r.migrate("migrate", appDefault)
			again := r.migrate("rerun", appDefault)
			s := r.snapshot()
			if first.Code != 1 || again.Code != 1 || !strings.Contains(first.Output(), "removes the version table") ||
				r.s13Ran(2, 1) != 0 || s.rows[1] != 1 || s.rows[2] != 0 || len(s.dirty) > 0 {
				t.Fatalf("exit %d, rerun exit %d, statement 1 committed %d times, version rows %v, dirty %v; want exit 1 twice naming the removal, nothing of migration 2 committed\nfirst: %s\nrerun: %s",
					first.Code, again.Code, r.s13Ran(2, 1), s.rows, s.dirty, s10Out(first), s10Out(again))
			}
			t.Log(tail(first.Output(), 1))
		})
	}
}

// Finding 2 (a message that contradicts itself). A migration without a
// transaction that writes its own version row (INSERT INTO goose_db_version,
// as a dump of a goose-migrated database has): every statement completes, the
// step's guarded write finds the row there, and the run exited 1 saying "a
// migrator that takes no lock (the goose CLI?) changed the version table;
// rerun when it is done" and, in the same message, that every run refuses
// until --resolve. The transactional case names the cause (a17f220).
// Fixed (runNoTx, versionRowExists): the row is looked for after the
// write changed nothing; there (up) or gone (down), the message names the
// migration's own write and the settlement, and the dirty record says so.
func TestS13NoTransactionMigrationWritingItsOwnVersionRowIsNamed(t *testing.T) {
	r := s10Run(t, map[string]string{
		"1_a.sql": "-- +goose NO TRANSACTION\n-- +goose Up\n" + logInsert(1, 1, 0) + "\nINSERT INTO goose_db_version (version_id, is_applied) VALUES (1, true);\n" +
			"-- +goose Down\nDELETE FROM adv_log WHERE version = 1;\n",
	})
	res := r.migrate("migrate", appDefault)
	again := r.migrate("rerun", appDefault)
	out := res.Output()
	if res.Code != 1 || again.Code != 1 || r.ran(1, 1) != 1 || !strings.Contains(out, "writes its own version row") ||
		strings.Contains(out, "rerun when it is done") || !strings.Contains(again.Output(), "writes its own version row") {
		t.Fatalf("exit %d, rerun exit %d, statement 1 ran %d times; want exit 1 twice naming the migration's own version row (the rerun's record too), no 'rerun when it is done', applied once\nfirst: %s\nrerun: %s",
			res.Code, again.Code, r.ran(1, 1), s10Out(res), s10Out(again))
	}
	resolve := r.migrate("resolve", appDefault, "--resolve", "1", "--as", "applied")
	after := r.migrate("after", appDefault)
	if s := r.snapshot(); resolve.Code != 0 || after.Code != 0 || s.rows[1] != 1 || len(s.dirty) > 0 || r.ran(1, 1) != 1 {
		t.Fatalf("resolve exit %d, next exit %d, rows %v, dirty %v; want 0, 0, version 1 once\n%s\n%s", resolve.Code, after.Code, s.rows, s.dirty, s10Out(resolve), s10Out(after))
	}
	t.Log(tail(out, 1))
}
