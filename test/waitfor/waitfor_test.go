package waitfor

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// Until looks at once, then every interval; it gives up at the timeout with a
// message naming it, or when its context ends with that context's error. The
// bubble's clock makes every wait exact.
func TestUntil(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		looks := 0
		start := time.Now()
		if err := Until(context.Background(), time.Second, time.Minute, func() bool { looks++; return looks == 3 }); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); looks != 3 || took != 2*time.Second {
			t.Fatalf("%d looks in %s, want 3 in 2s", looks, took)
		}

		start = time.Now()
		err := Until(context.Background(), time.Second, 10*time.Second, func() bool { return false })
		if err == nil || err.Error() != "timed out after 10s" || time.Since(start) != 10*time.Second {
			t.Fatalf("err %v after %s", err, time.Since(start))
		}

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start = time.Now()
		err = Until(ctx, time.Second, 0, func() bool { return false })
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 5*time.Second {
			t.Fatalf("err %v after %s", err, time.Since(start))
		}
		if err := Until(context.Background(), time.Second, 0, func() bool { return true }); err != nil {
			t.Fatal(err)
		}
	})
}

// True passes when the condition comes to hold; the failure names what it waited for.
func TestTrue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := 0
		True(t, "the third look", time.Minute, func() bool { n++; return n == 3 })
		ft := &fakeT{T: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			True(ft, "nothing", time.Second, func() bool { return false })
		}()
		<-done
		if !strings.Contains(ft.msg, "timed out after 1s waiting for nothing") {
			t.Fatalf("failure %q", ft.msg)
		}
	})
}

// fakeT records a Fatalf and ends the goroutine as testing.T does.
type fakeT struct {
	*testing.T
	msg string
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
