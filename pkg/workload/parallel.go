package workload

import (
	"context"
	"errors"
	"sync"
)

// concurrency is how many workloads a step changes at once. Each change is one
// request; in flight together they cost the API server what a sequential loop
// costs it, in a fraction of the time (its priority and fairness queues them).
const concurrency = 16

// forEach calls fn(i) for i in [0, n), at most limit at a time, and returns each
// call's error at its index. With stopOnError, no call starts after one has
// failed (calls in flight finish: each is one atomic change), and the calls
// never started report errNotStarted. A cancelled ctx also stops new calls.
func forEach(ctx context.Context, n, limit int, stopOnError bool, fn func(i int) error) []error {
	errs := make([]error, n)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed bool
	)
	sem := make(chan struct{}, max(limit, 1))
	for i := range n {
		sem <- struct{}{}
		mu.Lock()
		stop := stopOnError && failed
		mu.Unlock()
		if stop || ctx.Err() != nil {
			<-sem
			for j := i; j < n; j++ {
				errs[j] = errNotStarted
			}
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := fn(i)
			errs[i] = err
			if err != nil {
				mu.Lock()
				failed = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

// errNotStarted marks the calls forEach did not make.
var errNotStarted = errors.New("not started: an earlier change failed or the step was interrupted")
