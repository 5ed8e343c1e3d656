// Package adversary attacks the migrate step the way a hostile operator and a
// careless platform would, against real PostgreSQL 15 servers, and checks that
// no migration statement ever runs twice and that the version table never lies.
//
// Each seeded run (TestSeededAttacks) gets a fresh database and a migration
// directory that mixes transactional and NO TRANSACTION migrations. Every
// statement INSERTs one row (version, statement number, backend pid,
// application_name) into a plain log table without a unique key, so a statement
// that runs twice leaves two rows. Two to four migrators start at random delays
// with a long --lock-wait, under random application names (default, in the URL,
// PGAPPNAME); some are planners (--plan); some runs use a version table in
// another schema, some a server that ends idle sessions after 400ms (as managed
// PostgreSQL may). Meanwhile the attacker SIGKILLs or SIGTERMs migrators,
// pg_terminate_backend()s the lock holder or any of their sessions (found in
// pg_stat_activity, which only the attacker may use), sometimes restarts the
// server (fast shutdown or crash) or resets every migrator connection (they go
// through a proxy). Then migrators are rerun until each exits 0,
// or 1 because a dirty record exists; a dirty record is then checked (--plan
// and a run refuse, naming the version and the statement), repaired by hand as
// an operator would, and cleared with migrate --resolve, and the run converges.
//
// Invariants, checked after the attack, at every dirty record and at the end:
//   - no statement ran twice;
//   - a transactional migration's statements all ran once iff its version row
//     exists, else none ran;
//   - a NO TRANSACTION migration with a version row and no dirty record ran each
//     statement once; with a dirty record saying k statements were done,
//     statements 1..k ran once, k+1 at most once, the rest never; with neither,
//     none ran;
//   - exit codes are 0, 1 or 75 (a process the attacker signalled may also die of
//     the signal), and 1 only while a dirty record exists;
//   - at the end every migration is applied, no dirty record is left and no one
//     holds the migration lock;
//   - no output shows a password.
//
// The dirty record is the table <version table>_dirty in the version table's
// schema, one row per dirty version (version, direction, file,
// statements_done, statements_total, started_at, run_id, last_error).
//
// A seed fixes the migrations, the migrators, the faults and the moments they
// strike; what the processes are doing at those moments still depends on the
// machine, so a replay reproduces the attack, not always the interleaving.
// ADVERSARY_SEED=N replays that seed ADVERSARY_REPEAT times (default 6) side by
// side, under a load like the sweep's; ADVERSARY_RUNS (default 100, and 200 in
// the full tier, CHARTREUSE_E2E=full: `make test-full`),
// ADVERSARY_FIRST_SEED (default 1) and ADVERSARY_WORKERS (servers run in
// parallel, default 3) size the sweep. The named tests replay the issue's
// reproductions (TestTerminatedLockHolder, TestStoppedPartway) and what the sweep
// found (TestRunsDuringNoTransaction, TestWaitingSessionTerminated) on purpose.
//
// The package needs root (PostgreSQL runs as postgres). Like every suite that
// starts servers, it skips them under -short, which runs only the checker's own
// tests (TestOracle, TestNamesStatement).
package adversary
