// Package dbtest runs the SQL that the documentation shows against a real
// PostgreSQL (test/pgenv): the Alembic-to-goose baseline of
// docs/migrating-from-chartreuse.md, the example migrations of README.md and
// docs/operations.md through the migrate step, and the diagnostic queries. Skipped
// with -short.
package dbtest
