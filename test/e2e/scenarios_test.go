package e2e

import (
	"sync"
	"testing"
	"time"
)

// scenarioSlots bounds how many scenarios of one engine run at once. With all
// of them at once (over 20 per engine) the 2-core CI node thrashed: plan's SQL
// parser took 6 to 59 s to start in its pods (1.5 s on an idle node) and runs
// hit their 8-minute waits.
const scenarioSlots = 8

// scenario is one end-to-end case of an engine's suite.
type scenario struct {
	name string
	run  func(t *testing.T)
}

// runScenarios runs the scenarios as subtests of t, scenarioSlots at a time,
// logging how long each took once it had a slot.
func runScenarios(t *testing.T, engine string, scenarios []scenario) {
	slots := make(chan struct{}, scenarioSlots)
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
