package migrate

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
)

// TestVersionStoreChecks: the version row is written or deleted in a transaction
// only while the lock's session holds the token, and only if the row is absent
// (up) or present (down); outside a transaction goose's plain statements run.
func TestVersionStoreChecks(t *testing.T) {
	d := newDB(t)
	mustRun(t, d.url(), writeDir(t, subset(threeTables, "00001_a.sql")))
	db := d.sqlDB(t, nil)
	ctx := context.Background()

	holder := d.conn() // the lock's session: migration lock and token
	token := lockToken{11, 22}
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1), pg_advisory_lock(11, 22)", LockID); err != nil {
		t.Fatal(err)
	}
	noTx := []int64{9}
	store, err := newVersionStore(DefaultTable, token,
		func(v int64) bool { return v == 1 },
		func(v int64) bool { return slices.Contains(noTx, v) })
	if err != nil {
		t.Fatal(err)
	}
	inTx := func(fn func(tx *sql.Tx) error) error {
		t.Helper()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := fn(tx); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	}
	insert := func(v int64) error {
		return inTx(func(tx *sql.Tx) error { return store.Insert(ctx, tx, database.InsertRequest{Version: v}) })
	}
	remove := func(v int64) error {
		return inTx(func(tx *sql.Tx) error { return store.Delete(ctx, tx, v) })
	}
	versions := func() string { return d.versions(DefaultTable) }

	if err := insert(2); err != nil || versions() != "0:true 1:true 2:true" {
		t.Fatalf("insert 2 under the lock: %v, versions %s", err, versions())
	}
	if err := insert(2); !errors.Is(err, goose.ErrAlreadyApplied) || versions() != "0:true 1:true 2:true" {
		t.Fatalf("insert 2 again: %v, versions %s", err, versions())
	}
	if err := remove(2); err != nil || versions() != "0:true 1:true" {
		t.Fatalf("delete 2 under the lock: %v, versions %s", err, versions())
	}
	if err := remove(2); !errors.Is(err, goose.ErrNotApplied) {
		t.Fatalf("delete 2 again: %v", err)
	}

	// GetMigration answers from the state read under the lock, except for
	// migrations without a transaction, which are looked up.
	if r, err := store.GetMigration(ctx, db, 1); err != nil || r == nil || !r.IsApplied {
		t.Fatalf("GetMigration(1) = %+v, %v", r, err)
	}
	if _, err := store.GetMigration(ctx, db, 3); !errors.Is(err, database.ErrVersionNotFound) {
		t.Fatalf("GetMigration(3): %v", err)
	}
	if _, err := store.GetMigration(ctx, db, 9); !errors.Is(err, database.ErrVersionNotFound) {
		t.Fatalf("GetMigration(9) without a row: %v", err)
	}
	d.exec("INSERT INTO goose_db_version (version_id, is_applied) VALUES (9, true)")
	if r, err := store.GetMigration(ctx, db, 9); err != nil || r == nil {
		t.Fatalf("GetMigration(9) with a row = %+v, %v (not read from the table)", r, err)
	}
	d.exec("DELETE FROM goose_db_version WHERE version_id = 9")

	// The lock's session ended and another one took the migration lock.
	holder.Close(ctx)
	eventually(t, "the lock's session to end", func() bool { return !d.advisoryLockHeld() })
	other := d.conn()
	if _, err := other.Exec(ctx, "SELECT pg_advisory_lock($1)", LockID); err != nil {
		t.Fatal(err)
	}
	if err := insert(3); !errors.Is(err, errLockCheck) || versions() != "0:true 1:true" {
		t.Fatalf("insert 3 after the lock's session ended: %v, versions %s", err, versions())
	}
	if err := remove(1); !errors.Is(err, errLockCheck) || versions() != "0:true 1:true" {
		t.Fatalf("delete 1 after the lock's session ended: %v, versions %s", err, versions())
	}
	// The token the check took went with its rolled-back transaction.
	if n := d.queryString(`SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND classid = 11 AND objid = 22`); n != "0" {
		t.Fatalf("%s sessions hold the token after the failed checks", n)
	}
	// Outside a transaction (NO TRANSACTION migrations) goose's statements run:
	// their lock check comes before the migration.
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := store.Insert(ctx, c, database.InsertRequest{Version: 9}); err != nil || versions() != "0:true 1:true 9:true" {
		t.Fatalf("insert 9 outside a transaction: %v, versions %s", err, versions())
	}
	if err := store.Delete(ctx, c, 9); err != nil || versions() != "0:true 1:true" {
		t.Fatalf("delete 9 outside a transaction: %v, versions %s", err, versions())
	}
}

// TestLockLostDuringMigration ends the lock's session while a migration waits in
// its transaction: the migration must be rolled back, not committed without the
// lock, and the run must stop with exit 75.
func TestLockLostDuringMigration(t *testing.T) {
	d := newDB(t)
	f := files{}
	for i := 1; i <= 3; i++ {
		v := strconv.Itoa(i)
		up := "CREATE TABLE IF NOT EXISTS effects (version int);\nINSERT INTO effects VALUES (" + v + ");"
		if i == 2 {
			up += "\nSELECT pg_advisory_xact_lock(777);"
		}
		f["0000"+v+"_m"+v+".sql"] = mig(up, "DELETE FROM effects WHERE version = "+v+";")
	}
	dir := writeDir(t, f)
	gate := d.conn()
	ctx := context.Background()
	if _, err := gate.Exec(ctx, "SELECT pg_advisory_lock(777)"); err != nil {
		t.Fatal(err)
	}
	done := make(chan outcome, 1)
	go func() { done <- runStep(t, d.url(), dir, "--lock-timeout", "0") }()
	eventually(t, "migration 2 to wait at the gate", func() bool {
		return d.queryString(`SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND objid = 777 AND NOT granted)::text`) == "true"
	})
	if _, err := gate.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND objsubid = 1 AND objid::bigint = $1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, LockID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the lock's session to end", func() bool { return !d.advisoryLockHeld() })
	if _, err := gate.Exec(ctx, "SELECT pg_advisory_unlock(777)"); err != nil {
		t.Fatal(err)
	}
	o := <-done
	t.Log(o.lastLine())
	if o.code != 75 || !strings.Contains(o.lastLine(), "lost the migration lock") {
		t.Fatalf("exit %d: %s", o.code, o.lastLine())
	}
	if got := d.versions("goose_db_version"); got != "0:true 1:true" {
		t.Fatalf("versions after the lock was lost: %q", got)
	}
	if o.result("applied-versions") != "[1]" {
		t.Errorf("applied-versions %s, want [1]", o.result("applied-versions"))
	}
	if o := mustRun(t, d.url(), dir); o.result("applied-versions") != "[2,3]" {
		t.Fatalf("rerun: %v", o.summary.Results)
	}
	d.checkEffectsOnce(3)
}
