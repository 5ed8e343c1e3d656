package gitsource

import "time"

// SetStallTimeouts shortens the watchdog's timeouts for a test; the returned func
// puts them back.
func SetStallTimeouts(stall, progress time.Duration) (restore func()) {
	oldStall, oldProgress := stallTimeout, progressTimeout
	stallTimeout, progressTimeout = stall, progress
	return func() { stallTimeout, progressTimeout = oldStall, oldProgress }
}
