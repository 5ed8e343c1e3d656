// Package waitfor is how tests and the benchmark wait for a condition they cannot
// watch: poll it until it holds, for at most a given time. It is one home for the
// deadline-and-sleep loops they each wrote, on apimachinery's wait (the steps
// never poll like this: they watch, or retry with pkg/poll's backoff). It is a
// leaf: it imports nothing of this module.
package waitfor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Interval is the pause between two looks at a condition.
const Interval = 20 * time.Millisecond

// Until checks cond at once and then every interval until it holds. It returns
// an error saying how long it waited when timeout passes first (timeout <= 0:
// no limit but ctx), and ctx's error when ctx ends first.
func Until(ctx context.Context, interval, timeout time.Duration, cond func() bool) error {
	check := func(context.Context) (bool, error) { return cond(), nil }
	if timeout <= 0 {
		return wait.PollUntilContextCancel(ctx, interval, true, check)
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := wait.PollUntilContextCancel(tctx, interval, true, check)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("timed out after %s", timeout)
	}
	return err
}

// True fails t unless cond holds within timeout (timeout <= 0: before t's
// context ends), naming what it waited for.
func True(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if err := Until(t.Context(), Interval, timeout, cond); err != nil {
		t.Fatalf("%v waiting for %s", err, what)
	}
}
