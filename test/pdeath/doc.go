// Package pdeath starts test servers that die with the test process.
//
// A test binary that go test's -timeout kills (or that panics) runs no
// cleanup, so the servers it started would outlive it and hold ports, data
// directories and the next run's locks. Start sets the parent-death signal
// and starts every process from one OS thread that never ends: the kernel
// sends that signal when the creating thread ends, not the process, and Go
// may end an idle thread at any time.
package pdeath
