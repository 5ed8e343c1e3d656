package workload

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	testclock "k8s.io/utils/clock/testing"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// Progress lines come every ProgressEvery, and the deadline ends the wait, both on
// the injected clock. synctest.Wait lets the waiter act on each step of it
// before the test looks at the log.
func TestWaitProgressAndTimeout(t *testing.T) {
	inBubble(t, func(t *testing.T) {
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

		synctest.Wait()
		if !strings.Contains(logs.String(), "msg=\"waiting for pods to stop\"") {
			t.Fatalf("no waiting line\n%s", logs)
		}
		for i := 1; i <= 3; i++ {
			clk.Step(10 * time.Second)
			synctest.Wait()
			if n := strings.Count(logs.String(), "still waiting"); n != i {
				t.Fatalf("%d progress lines after %ds, want %d\n%s", n, 10*i, i, logs)
			}
		}
		clk.Step(5 * time.Second) // not yet another progress line
		synctest.Wait()
		if n := strings.Count(logs.String(), "still waiting"); n != 3 {
			t.Fatalf("%d progress lines after 35s, want 3", n)
		}
		clk.Step(30 * time.Second)
		synctest.Wait()
		select {
		case err := <-done:
			if failure.Code(err) != 75 || !strings.Contains(err.Error(), "pod/web-1 (deployment/web, Running)") {
				t.Fatalf("err %v", err)
			}
		default:
			t.Fatal("deadline did not end the wait")
		}
	})
}

// A pod that finishes (Succeeded) stops counting without being deleted.
func TestWaitEndsWhenPodSucceeds(t *testing.T) {
	inBubble(t, func(t *testing.T) {
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
	})
}
