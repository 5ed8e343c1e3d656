package workload

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	testclock "k8s.io/utils/clock/testing"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// Progress lines come every ProgressEvery, and the deadline ends the wait, both on
// the injected clock.
func TestWaitProgressAndTimeout(t *testing.T) {
	cs := newFake(deployment("web", 3, nil), pod("web-1", "web"))
	log, logs := testLogger(t)
	clk := testclock.NewFakeClock(time.Now())
	w, err := newWatcher(context.Background(), cs, testNS, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer w.stop()
	web, _, _ := finder{cs: cs, ns: testNS}.get(context.Background(), Ref{Deployment, "web"})
	wt := &waiter{w: w, clock: clk, log: log, progressEvery: 10 * time.Second, deadline: clk.Now().Add(time.Minute), timeout: time.Minute}
	done := make(chan error, 1)
	go func() {
		done <- wt.until(context.Background(), "pods to stop", w.stoppedCond([]*Workload{web}))
	}()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for i := 0; i < 500 && !cond(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if !cond() {
			t.Fatalf("never: %s\n%s", what, logs)
		}
	}
	waitFor("waiting line", func() bool { return strings.Contains(logs.String(), "msg=\"waiting for pods to stop\"") })
	for i := 1; i <= 3; i++ {
		clk.Step(10 * time.Second)
		waitFor("progress line", func() bool { return strings.Count(logs.String(), "still waiting") == i })
	}
	clk.Step(5 * time.Second) // not yet another progress line
	time.Sleep(50 * time.Millisecond)
	if n := strings.Count(logs.String(), "still waiting"); n != 3 {
		t.Fatalf("%d progress lines after 35s, want 3", n)
	}
	clk.Step(30 * time.Second)
	select {
	case err := <-done:
		if failure.Code(err) != 75 || !strings.Contains(err.Error(), "pod/web-1 (deployment/web, Running)") {
			t.Fatalf("err %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("deadline did not end the wait")
	}
}

// A pod that finishes (Succeeded) stops counting without being deleted.
func TestWaitEndsWhenPodSucceeds(t *testing.T) {
	cs := newFake(deployment("web", 3, nil), pod("web-1", "web"))
	d, _ := newDowner(t, cs)
	go func() {
		time.Sleep(200 * time.Millisecond)
		p := pod("web-1", "web")
		p.Status.Phase = corev1.PodSucceeded
		_ = cs.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), p, testNS)
	}()
	if _, err := d.Run(context.Background(), sel(t, "", "deployment/web")); err != nil {
		t.Fatal(err)
	}
}
