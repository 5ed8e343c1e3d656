package e2e

import (
	"slices"
	"sync"
	"testing"
	"testing/synctest"
)

// The slots go to Argo's scenarios first, then in the order asked.
func TestSlotQueueOrder(t *testing.T) { synctest.Test(t, slotQueueOrder) }

func slotQueueOrder(t *testing.T) {
	q := newSlotQueue(1)
	q.acquire(0)
	var mu sync.Mutex
	var got []string
	var wg sync.WaitGroup
	for i, w := range []struct {
		name   string
		weight int
	}{{"tekton-1", 0}, {"argo-1", 1}, {"tekton-2", 0}, {"argo-2", 1}} {
		wg.Go(func() {
			q.acquire(w.weight)
			mu.Lock()
			got = append(got, w.name)
			mu.Unlock()
			q.release()
		})
		// each waits before the next asks
		synctest.Wait()
		q.mu.Lock()
		if n := len(q.waiting); n != i+1 {
			t.Fatalf("%d waiting after %s asked, want %d", n, w.name, i+1)
		}
		q.mu.Unlock()
	}
	q.release()
	wg.Wait()
	if want := []string{"argo-1", "argo-2", "tekton-1", "tekton-2"}; !slices.Equal(got, want) {
		t.Errorf("slots went to %v, want %v", got, want)
	}
	if q.free != 1 {
		t.Errorf("%d free after every release, want 1", q.free)
	}
}
