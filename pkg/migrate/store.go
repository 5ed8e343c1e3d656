package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
)

// errLockCheck marks a version row write refused because the migration lock's
// session no longer holds the lock.
var errLockCheck = errors.New("the migration lock's session no longer holds the lock")

// versionStore is goose's Postgres store with the checks chartreuse made in extra
// round trips before each migration moved into the version row's write, which
// runs in the migration's transaction just before COMMIT:
//
//   - the lock: the row is written only while the lock's session still holds its
//     token (see lockToken), so no migration commits after the lock was lost;
//   - the row itself: up, it must not exist yet; down, it must exist (a migrator
//     that takes no lock changed the table meanwhile).
//
// GetMigration, which goose's ApplyVersion queries first, answers from the state
// read under the lock. Migrations without a transaction keep the checks before
// they start (their statements cannot be undone): execute checks the lock, and
// GetMigration reads the table.
type versionStore struct {
	database.Store
	table   string             // as goose writes it into its SQL
	token   lockToken          // held by the lock's session
	applied func(v int64) bool // versions recorded, as read under the lock and applied since
	noTx    func(v int64) bool // migrations run without a transaction
}

func newVersionStore(table string, token lockToken, applied, noTx func(int64) bool) (*versionStore, error) {
	s, err := database.NewStore(database.DialectPostgres, table)
	if err != nil {
		return nil, err
	}
	return &versionStore{Store: s, table: table, token: token, applied: applied, noTx: noTx}, nil
}

// TableExists lets goose check for the table as its own Postgres store does.
func (s *versionStore) TableExists(ctx context.Context, db database.DBTxConn) (bool, error) {
	if t, ok := s.Store.(interface {
		TableExists(context.Context, database.DBTxConn) (bool, error)
	}); ok {
		return t.TableExists(ctx, db)
	}
	return false, errors.ErrUnsupported
}

// GetMigration implements database.Store.
func (s *versionStore) GetMigration(ctx context.Context, db database.DBTxConn, v int64) (*database.GetMigrationResult, error) {
	if s.noTx(v) {
		return s.Store.GetMigration(ctx, db, v)
	}
	if s.applied(v) {
		return &database.GetMigrationResult{IsApplied: true}, nil
	}
	return nil, fmt.Errorf("%w: %d", database.ErrVersionNotFound, v)
}

// heldSQL is true while another session, the lock's, holds the token: trying to
// take it fails. When it succeeds the lock is gone, and the token taken here goes
// with the transaction, which is then rolled back. $2 and $3 are the token's keys.
const heldSQL = `NOT pg_try_advisory_xact_lock($2::int4, $3::int4)`

// Insert implements database.Store.
func (s *versionStore) Insert(ctx context.Context, db database.DBTxConn, req database.InsertRequest) error {
	if _, inTx := db.(*sql.Tx); !inTx {
		return s.Store.Insert(ctx, db, req)
	}
	res, err := db.ExecContext(ctx, `INSERT INTO `+s.table+` (version_id, is_applied) SELECT $1, true
		WHERE `+heldSQL+` AND NOT EXISTS (SELECT FROM `+s.table+` WHERE version_id = $1)`,
		req.Version, s.token[0], s.token[1])
	if err != nil {
		return fmt.Errorf("failed to insert version %d: %w", req.Version, err)
	}
	if n, err := res.RowsAffected(); err == nil && n > 0 {
		return nil
	}
	return s.refused(ctx, db, fmt.Errorf("version %d: %w", req.Version, goose.ErrAlreadyApplied))
}

// Delete implements database.Store.
func (s *versionStore) Delete(ctx context.Context, db database.DBTxConn, v int64) error {
	if _, inTx := db.(*sql.Tx); !inTx {
		return s.Store.Delete(ctx, db, v)
	}
	res, err := db.ExecContext(ctx, `DELETE FROM `+s.table+` WHERE version_id = $1 AND `+heldSQL, v, s.token[0], s.token[1])
	if err != nil {
		return fmt.Errorf("failed to delete version %d: %w", v, err)
	}
	if n, err := res.RowsAffected(); err == nil && n > 0 {
		return nil
	}
	return s.refused(ctx, db, fmt.Errorf("version %d: %w", v, goose.ErrNotApplied))
}

// refused tells why a guarded write changed nothing: errLockCheck when the lock
// is gone, rowErr when the row was there (up) or missing (down).
func (s *versionStore) refused(ctx context.Context, db database.DBTxConn, rowErr error) error {
	var held bool
	if err := db.QueryRowContext(ctx, `SELECT NOT pg_try_advisory_xact_lock($1::int4, $2::int4)`, s.token[0], s.token[1]).Scan(&held); err != nil {
		return fmt.Errorf("checking the migration lock: %w", err)
	}
	if !held {
		return errLockCheck
	}
	return rowErr
}
