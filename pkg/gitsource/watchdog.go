package gitsource

import (
	"context"
	"fmt"
	"io"
	"time"
)

// The watchdog's timeouts (variables for tests). A fetch that gets no byte for
// stallTimeout, or only progress messages and keep-alives for progressTimeout, is
// given up on: transient, a retry may find the server well. Neither bounds a
// transfer that keeps making progress, however large.
var (
	stallTimeout    = 2 * time.Minute
	progressTimeout = 10 * time.Minute // git's servers send keep-alives while they count objects
)

// watchdog ends its context with ErrStalled when alive has not been called for
// stallTimeout, or (with progress watched) progress for progressTimeout.
type watchdog struct {
	ctx          context.Context
	cancel       context.CancelCauseFunc
	idle, noData *time.Timer
}

func watch(ctx context.Context, progress bool) *watchdog {
	w := &watchdog{}
	w.ctx, w.cancel = context.WithCancelCause(ctx)
	w.idle = time.AfterFunc(stallTimeout, func() {
		w.cancel(fmt.Errorf("%w: nothing came for %s", ErrStalled, stallTimeout))
	})
	if progress {
		w.noData = time.AfterFunc(progressTimeout, func() {
			w.cancel(fmt.Errorf("%w: no pack data came for %s, only progress messages", ErrStalled, progressTimeout))
		})
	}
	return w
}

// alive: a byte came.
func (w *watchdog) alive() { w.idle.Reset(stallTimeout) }

// progress: pack data came.
func (w *watchdog) progress() {
	w.idle.Reset(stallTimeout)
	if w.noData != nil {
		w.noData.Reset(progressTimeout)
	}
}

func (w *watchdog) stop() {
	w.idle.Stop()
	if w.noData != nil {
		w.noData.Stop()
	}
	w.cancel(nil)
}

// kicker calls kick at every read that gave bytes.
type kicker struct {
	r    io.Reader
	kick func()
}

func (k kicker) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if n > 0 {
		k.kick()
	}
	return n, err
}
