package e2e

import (
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// scenarioSlots bounds how many scenarios run at once, all suites together
// (TestArgo, TestTekton, TestCLI and TestAttack12Argo run side by side and
// share the slots, so that one suite's last long scenarios do not run alone).
// With all of them at once (over 20 per engine) the 2-core CI node thrashed:
// plan's SQL parser took 6 to 59 s to start in its pods (1.5 s on an idle
// node) and runs hit their 8-minute waits; with 8 the node's load average
// stayed over 30.
const scenarioSlots = 6

// slots hands the scenarios their places, Argo's first: an Argo run costs about
// twice a Tekton run, and the suites whose set-up ended last (the CLI's, the
// attacks') queued behind the others' scenarios, so that their long ones ran
// alone at the end (a CI run of e2e past its 70 minutes).
var slots = newSlotQueue(scenarioSlots)

// slotQueue is a counting semaphore whose waiters of a higher weight go first;
// of one weight, the first to ask.
type slotQueue struct {
	mu      sync.Mutex
	free    int
	waiting []*slotWaiter
}

type slotWaiter struct {
	weight int
	ready  chan struct{}
}

func newSlotQueue(n int) *slotQueue { return &slotQueue{free: n} }

func (q *slotQueue) acquire(weight int) {
	q.mu.Lock()
	if q.free > 0 && len(q.waiting) == 0 {
		q.free--
		q.mu.Unlock()
		return
	}
	w := &slotWaiter{weight: weight, ready: make(chan struct{})}
	// after every waiter of the same or a higher weight
	i := len(q.waiting)
	for i > 0 && q.waiting[i-1].weight < weight {
		i--
	}
	q.waiting = slices.Insert(q.waiting, i, w)
	q.mu.Unlock()
	<-w.ready
}

func (q *slotQueue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) > 0 {
		w := q.waiting[0]
		q.waiting = q.waiting[1:]
		close(w.ready)
		return
	}
	q.free++
}

// scenarioWeight: Argo's scenarios, the CLI's included, go first.
func scenarioWeight(engine, name string) int {
	if engine == "argo" || strings.HasPrefix(name, "argo/") {
		return 1
	}
	return 0
}

// tierEnv selects the extended scenarios: CHARTREUSE_E2E=full (make
// test-full) runs them too.
const tierEnv = "CHARTREUSE_E2E"

// fullTier reports whether the extended scenarios run.
func fullTier() bool { return os.Getenv(tierEnv) == "full" }

// suiteParallel is how many of the package's parallel tests run at once. go
// test's default is GOMAXPROCS, 2 on the CI node: the third suite then waited
// for one of the others to end, and a scenario's own parallel cases waited for
// a whole suite, 20 to 30 minutes.
const suiteParallel = 8

// scenario is one end-to-end case of an engine's suite.
type scenario struct {
	name string
	run  func(t *testing.T)
}

// runScenarios runs the scenarios as subtests of t, each once it has one of
// the slots, logging how long it took then. The extended ones run only in the
// full tier (make test-full); otherwise they are reported as skipped. They
// are variants of a path that a scenario of the first lists already takes, on
// the same engine or on the other with the same step code (another cause of
// the same refusal, a policy's second outcome), kept out of make test so that
// it fits a 2-core CI node.
func runScenarios(t *testing.T, engine string, scenarios []scenario, extended ...scenario) {
	var wg sync.WaitGroup
	if fullTier() {
		scenarios = append(scenarios, extended...)
	} else {
		for _, sc := range extended {
			t.Run(sc.name, func(t *testing.T) {
				t.Skipf("extended scenario: runs with %s=full (make test-full)", tierEnv)
			})
		}
	}
	for _, sc := range scenarios {
		wg.Go(func() {
			slots.acquire(scenarioWeight(engine, sc.name))
			defer slots.release()
			t0 := time.Now()
			t.Run(sc.name, sc.run)
			t.Logf("%s: scenario %s took %s", engine, sc.name, time.Since(t0).Round(100*time.Millisecond))
		})
	}
	wg.Wait()
}
