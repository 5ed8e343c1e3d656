// Package waitdb is the wait-for-db step: it retries connecting and running
// SELECT 1 until PostgreSQL answers or a timeout passes, with capped, jittered
// backoff and a progress line every ~10 s. Errors that waiting cannot fix (bad
// password, malformed URL) end it at once. The attempt and the loop are dbconn's (Ping, Waiter), which
// migrate --wait-timeout shares.
package waitdb
