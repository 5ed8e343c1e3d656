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
//  1. scan --dir, streaming each file for its annotations and its sha256: every
//     *.sql file must be named <version>_<name>.sql, versions unique; nothing of
//     a file is kept;
//  2. inspect the database read-only (version table shape and rows, the dirty
//     record, the recorded checksums, user tables) and refuse inconsistent
//     states with an explanation and the repair, among them an applied
//     migration whose file was edited or removed (checksum.go);
//  3. parse every file the run would apply with goose's own parser (parse.go),
//     one at a time, so a malformed later file stops the run before the first;
//  4. --plan stops here (no lock, nothing created);
//  5. take the advisory lock (LockID) on a dedicated session, waiting up to
//     --lock-wait; inspect and check again under the lock;
//  6. record the checksums of versions applied without one and the edits
//     --accept-changed accepts; run each migration on that same session, after
//     resetting it to --role and the timeouts: a transactional one with its
//     version row and checksum row in one transaction, one without under the
//     dirty record (dirty.go); release the lock.
//
// Because the migrations run on the lock's session, whatever ends that session
// ends the lock and the migration in flight together: no other migrator can
// start while one of this run's statements may still run. Every version row
// write is also guarded by this session still holding the lock.
//
// Decisions:
//   - LockID is goose's default session-lock id, so this step and any goose Provider
//     using goose's default session locker exclude each other on the same database.
//   - With --role every connection runs SET ROLE right after connecting, and the
//     version table (with the dirty and checksum tables next to it) is created
//     on the lock's session, so it is owned by the role like every migrated
//     object.
package migrate
