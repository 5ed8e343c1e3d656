// Package patronienv runs a throwaway single-member Patroni cluster for tests: Debian's
// etcd 3.4 as its store and Debian's patroni 3.0 managing PostgreSQL 15, both as the
// postgres user, bound to 127.0.0.1 on free ports, in one temporary directory that is
// removed at the end; every process is stopped by its PID.
package patronienv
