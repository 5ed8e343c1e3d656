package ocisource

import "time"

// SetLimits lowers the bounds on the directory for a test and puts them back
// when it ends.
func SetLimits(cleanup func(func()), entries int, bytes int64) {
	oldEntries, oldBytes := maxEntries, maxBytes
	maxEntries, maxBytes = entries, bytes
	cleanup(func() { maxEntries, maxBytes = oldEntries, oldBytes })
}

// SetStallTimeout shortens the stall timeout for a test and puts it back when it
// ends.
func SetStallTimeout(cleanup func(func()), d time.Duration) {
	old := stallTimeout
	stallTimeout = d
	cleanup(func() { stallTimeout = old })
}
