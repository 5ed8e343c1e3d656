package kube

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/chartreuse-go/chartreuse/pkg/workload"
)

// cancelWhen returns a context cancelled as soon as count(Deployments) reaches n,
// as seen by a watch on the test's Deployments.
func (c *cluster) cancelWhen(n int, count func(ds []*appsv1.Deployment) int) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	f := informers.NewSharedInformerFactoryWithOptions(c.cs, 0, informers.WithNamespace(c.ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = "set=faults" }))
	inf := f.Apps().V1().Deployments().Informer()
	var once sync.Once
	check := func(any) {
		var ds []*appsv1.Deployment
		for _, o := range inf.GetStore().List() {
			ds = append(ds, o.(*appsv1.Deployment))
		}
		if count(ds) >= n {
			once.Do(cancel)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: func(_, o any) { check(o) }}); err != nil {
		c.t.Fatal(err)
	}
	stop := make(chan struct{})
	f.Start(stop)
	f.WaitForCacheSync(stop)
	return ctx, func() { close(stop); f.Shutdown(); cancel() }
}

func withRecord(ds []*appsv1.Deployment) (n int) {
	for _, d := range ds {
		if _, ok := d.Annotations[workload.AnnotationReplicas]; ok {
			n++
		}
	}
	return n
}

// TestCancelDuringWrites interrupts scale-down and scale-restore (SIGTERM does it
// through step.Run's context) while they write: once 5 of 60 Deployments carry the
// record (scale-down) or have lost it (scale-restore). The run must stop with exit
// 75 saying it was interrupted, never panic and never report success for work it
// did not do; a rerun finishes the job.
func TestCancelDuringWrites(t *testing.T) {
	c := newCluster(t)
	c.deployments(60, func(i int) int32 {
		if i%10 == 0 {
			return 1
		}
		return 0
	}, 0)
	waitPods(t, c, 6)

	ctx, done := c.cancelWhen(5, withRecord)
	start := time.Now()
	code, stderr := c.down(ctx, "")
	done()
	t.Logf("scale-down cancelled after %s: exit %d: %s", time.Since(start).Round(time.Millisecond), code, lastLine(stderr))
	if code != 75 || !strings.Contains(lastLine(stderr), "interrupted") {
		t.Errorf("scale-down interrupted while writing: exit %d, want 75 saying it was interrupted: %s", code, lastLine(stderr))
	}
	c.invariant("after the interrupted scale-down")
	c.until("scale-down rerun", 3, func() (int, string) { return c.down(context.Background(), "") })
	c.stopped()

	ctx, done = c.cancelWhen(5, func(ds []*appsv1.Deployment) int { return len(ds) - withRecord(ds) })
	start = time.Now()
	code, stderr = c.restore(ctx, "")
	done()
	t.Logf("scale-restore cancelled after %s: exit %d: %s", time.Since(start).Round(time.Millisecond), code, lastLine(stderr))
	if code != 75 {
		st := 0
		for _, name := range c.names() {
			if _, _, has, err := replicasOf(c, name); err == nil && has {
				st++
			}
		}
		t.Errorf("scale-restore interrupted while writing: exit %d, want 75 (%d of %d Deployments still carry their record, i.e. were not restored): %s",
			code, st, len(c.originals), lastLine(stderr))
	}
	c.invariant("after the interrupted scale-restore")
	c.until("scale-restore rerun", 3, func() (int, string) { return c.restore(context.Background(), "") })
	c.restored()
}
