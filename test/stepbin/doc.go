// Package stepbin builds the step binaries as `make build` does and runs them
// with their output captured: exit code, stdout and stderr, the JSON summary
// line, the single error line, wall time and peak memory. The fault, bad-input
// and secrets tests and the benchmark share it; it imports nothing of this
// module but pkg/results and test/syncbuf.
package stepbin
