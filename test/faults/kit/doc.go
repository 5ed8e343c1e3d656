// Package kit holds what the fault and bad-input programs share besides running
// the steps (test/stepbin): scanning every captured output for the passwords in
// use, snapshots of a database's catalog and version table and of a namespace's
// objects (to prove that a refused run changed nothing), a TCP proxy that takes
// the Kubernetes API server away and brings it back, seeded randomness and
// polling.
package kit
