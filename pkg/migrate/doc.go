// Package migrate applies goose SQL migrations safely: it checks the migration
// directory and goose's version table before changing anything, takes one advisory
// lock per database so only one migrator runs, sets the owner role and lock/statement
// timeouts on the connections goose uses, and reports what it did as step results.
//
// The version table is goose's own (goose_db_version by default), so a database
// migrated by the goose CLI can be continued by this step and the other way round.
//
// Flow of one run (Migrator.Run):
//
//  1. scan --dir: every *.sql file must be named <version>_<name>.sql, versions unique;
//  2. inspect the database read-only (version table shape and rows, user tables) and
//     refuse inconsistent states with an explanation and the repair;
//  3. --plan stops here (no lock, nothing created);
//  4. take the advisory lock (LockID) on a dedicated connection, waiting up to
//     --lock-wait; inspect and check again under the lock, since another migrator
//     may have finished meanwhile;
//  5. apply (or roll back) one migration at a time with goose's Provider, each in its
//     own transaction unless the file says NO TRANSACTION; release the lock.
//
// The lock's session also holds a random second advisory lock (a token) while it
// holds the migration lock. A migration's version row is written, in its
// transaction, only while the token is held by that session, so no migration
// commits after the lock was lost; one without a transaction is checked before
// it starts.
//
// Decisions:
//   - LockID is goose's default session-lock id, so this step and any goose Provider
//     using goose's default session locker exclude each other on the same database.
//   - With --role every pooled connection runs SET ROLE right after connecting, and
//     goose creates its version table on such a connection, so the version table is
//     owned by the role like every migrated object.
package migrate
