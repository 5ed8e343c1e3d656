// Package sqlrisk tells, before a migration runs, which locks each of its statements takes, whether they rewrite or scan a table, how big that table is, and which known hazards they carry.
//
// Statements are parsed by PostgreSQL's own parser (libpg_query compiled to
// WebAssembly and run by wazero, github.com/wasilibs/go-pgquery), so CGO stays
// off. Starting that parser costs about 1.5 s and 250 MiB (bench section 7),
// so it is started only when the first statement is analysed: a plan with
// nothing pending never starts it (ParserStarted).
//
// What each statement does is decided by the rule table (Rules). Every rule
// states the lock it takes and on which table, and carries a proof: a
// statement that the tests run against a real PostgreSQL, reading pg_locks, so
// a wrong claim in the table fails a test rather than misleading a user.
package sqlrisk
