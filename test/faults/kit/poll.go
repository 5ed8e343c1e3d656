package kit

import (
	"testing"
	"time"
)

// Eventually polls cond every 10ms until it holds, failing the test after
// timeout. Tests may poll; the steps never do.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
