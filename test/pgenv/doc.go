// Package pgenv runs a throwaway PostgreSQL 15 server for tests: initdb into a temp
// directory as the postgres user, password authentication over TCP, one fresh
// database per test, and a complete stop (by PID) at the end.
package pgenv
