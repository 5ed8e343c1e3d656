package ocisource

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// stallTimeout: a Resolve or Fetch that receives no byte for this long is given up
// on (transient). The transport bounds only the wait for an answer's headers; a
// registry or proxy that stops in the middle of a body would hold migrate, which
// has no deadline, forever. A variable for tests.
var stallTimeout = 2 * time.Minute

// watchdog ends its context with ErrStalled when no byte came for stallTimeout.
type watchdog struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
}

func watch(ctx context.Context) *watchdog {
	w := &watchdog{}
	w.ctx, w.cancel = context.WithCancelCause(ctx)
	d := stallTimeout
	w.timer = time.AfterFunc(d, func() {
		w.cancel(fmt.Errorf("%w: nothing came from the registry for %s", ErrStalled, d))
	})
	return w
}

func (w *watchdog) alive() { w.timer.Reset(stallTimeout) }

func (w *watchdog) stop() {
	w.timer.Stop()
	w.cancel(nil)
}

// kickTransport tells the watchdog of every request sent and every byte of an
// answer's body received.
type kickTransport struct {
	inner http.RoundTripper
	w     *watchdog
}

func (k kickTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	k.w.alive()
	resp, err := k.inner.RoundTrip(req)
	k.w.alive()
	if resp != nil && resp.Body != nil {
		resp.Body = kickBody{ReadCloser: resp.Body, w: k.w}
	}
	return resp, err
}

type kickBody struct {
	io.ReadCloser
	w *watchdog
}

func (b kickBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.w.alive()
	}
	return n, err
}
