package workload

import (
	"context"
	"errors"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

// concurrency is how many workloads a step changes at once. Each change is one
// request; in flight together they cost the API server what a sequential loop
// costs it, in a fraction of the time (its priority and fairness queues them).
const concurrency = 16

// forEach calls fn(i) for i in [0, n), at most limit at a time, and returns each
// call's error at its index. With stopOnError, no call starts after one has
// failed (calls in flight finish: each is one atomic change), and the calls
// never started report errNotStarted. A cancelled ctx also stops new calls.
// The group has no context of its own (not errgroup.WithContext): a failure
// must not cancel the changes already in flight.
func forEach(ctx context.Context, n, limit int, stopOnError bool, fn func(i int) error) []error {
	errs := make([]error, n)
	var (
		g      errgroup.Group
		failed atomic.Bool
	)
	g.SetLimit(max(limit, 1))
	for i := range n {
		if stopOnError && failed.Load() || ctx.Err() != nil {
			errs[i] = errNotStarted
			continue
		}
		g.Go(func() error { // blocks while limit calls are in flight
			if stopOnError && failed.Load() || ctx.Err() != nil {
				errs[i] = errNotStarted
				return nil
			}
			if errs[i] = fn(i); errs[i] != nil {
				failed.Store(true)
			}
			return nil
		})
	}
	_ = g.Wait() // the errors are per call, in errs
	return errs
}

// errNotStarted marks the calls forEach did not make.
var errNotStarted = errors.New("not started: an earlier change failed or the step was interrupted")
