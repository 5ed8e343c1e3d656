// Package kit holds what the fault, bad-input and benchmark programs share: building
// the step binaries as `make build` does, running them with their output captured,
// scanning every captured output for the passwords in use, snapshots of a
// database's catalog and version table and of a namespace's objects (to prove that
// a refused run changed nothing), and a TCP proxy that takes the Kubernetes API
// server away and brings it back.
package kit
