package e2e

import (
	"sync"
	"testing"
	"time"
)

// scenarioSlots bounds how many scenarios run at once, all suites together
// (TestArgo, TestTekton and TestCLI run side by side and share the slots, so
// that one suite's last long scenarios do not run alone). With all of them at
// once (over 20 per engine) the 2-core CI node thrashed: plan's SQL parser
// took 6 to 59 s to start in its pods (1.5 s on an idle node) and runs hit
// their 8-minute waits.
const scenarioSlots = 8

var slots = make(chan struct{}, scenarioSlots)

// scenario is one end-to-end case of an engine's suite.
type scenario struct {
	name string
	run  func(t *testing.T)
}

// runScenarios runs the scenarios as subtests of t, each once it has one of
// the slots, logging how long it took then.
func runScenarios(t *testing.T, engine string, scenarios []scenario) {
	var wg sync.WaitGroup
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
