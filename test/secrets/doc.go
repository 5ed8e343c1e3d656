// Package secrets proves, as a property over random passwords, that no step binary
// prints any piece of the database password: every printable ASCII character, the
// password raw (as an operator pastes it) and escaped, in a URL, a URL file, a
// keyword/value string and the libpq variables, against a real PostgreSQL and an
// unreachable port. Its test builds the five binaries itself; -short skips it.
package secrets
