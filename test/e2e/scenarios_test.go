package e2e

import (
	"os"
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

var slots = make(chan struct{}, scenarioSlots)

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
			slots <- struct{}{}
			defer func() { <-slots }()
			t0 := time.Now()
			t.Run(sc.name, sc.run)
			t.Logf("%s: scenario %s took %s", engine, sc.name, time.Since(t0).Round(100*time.Millisecond))
		})
	}
	wg.Wait()
}
