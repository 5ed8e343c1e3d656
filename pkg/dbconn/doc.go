// Package dbconn turns the database flags (URL, URL file, libpq variables) into a
// pgx connection config, connects without ever revealing the password,
// classifies PostgreSQL errors by SQLSTATE into the steps' failure kinds, and
// writes identifiers into SQL (QuoteIdent). Waiter waits until the database
// answers (wait-for-db, migrate --wait-timeout).
package dbconn
