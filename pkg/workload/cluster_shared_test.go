package workload

import (
	"strings"
	"testing"
	"time"
)

// Two runs that stop the same workloads (two databases of one application,
// migrated at once): the first to restore must not bring the workloads back in
// the middle of the other's migration, nor against the other's decision to keep
// them down. Each scale-down holds the workloads for its run; a restore with
// --only-run-uid lets go of them and restores only what no other run holds.
// Before, run A's restore brought them back while run B was still migrating.
func TestClusterTwoRunsHoldTheSameWorkloads(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("shared", 2, appOpts{labels: map[string]string{"shared": "yes"}})
	c.deployment("worker", 1, appOpts{labels: map[string]string{"shared": "yes"}})
	c.waitRunning("shared=yes", 3, 3*time.Minute)
	sel := []string{"--selector", "shared=yes"}

	a := c.mustRun(0, ScaleDownSpec(), "", append(sel, "--run-uid", "uid-a")...)
	b := c.mustRun(0, ScaleDownSpec(), "", append(sel, "--run-uid", "uid-b")...)
	for _, r := range []stepRun{a, b} {
		if got := r.results[ResultWorkloads]; got != `["deployment/shared=2","deployment/worker=1"]` {
			t.Fatalf("scale-down workloads %s", got)
		}
	}
	if d := c.getDeployment("shared"); d.Annotations[AnnotationHeldBy] != "uid-a,uid-b" || d.Annotations[AnnotationByRunUID] != "uid-a" {
		t.Fatalf("holders after both scale-downs: %v", d.Annotations)
	}
	// B's scale-down again (a retry): it holds them already.
	c.mustRun(0, ScaleDownSpec(), "", append(sel, "--run-uid", "uid-b")...)
	if d := c.getDeployment("shared"); d.Annotations[AnnotationHeldBy] != "uid-a,uid-b" {
		t.Fatalf("holders after a retry: %q", d.Annotations[AnnotationHeldBy])
	}

	// A finishes first: B is still migrating, so nothing comes back.
	r := c.mustRun(0, ScaleRestoreSpec(), "", append(sel, "--only-run-uid", "uid-a", "--wait-ready", "--ready-timeout", "1m")...)
	if !strings.Contains(r.stderr, "another run still holds it") {
		t.Errorf("A's restore did not say why it left the workloads stopped:\n%s", r.stderr)
	}
	for _, name := range []string{"shared", "worker"} {
		d := c.getDeployment(name)
		if *d.Spec.Replicas != 0 || d.Annotations[AnnotationHeldBy] != "uid-b" || d.Annotations[AnnotationReplicas] == "" {
			t.Fatalf("%s after A's restore: replicas %d, annotations %v", name, *d.Spec.Replicas, d.Annotations)
		}
	}
	if left := c.livePods("shared=yes"); len(left) > 0 {
		t.Fatalf("pods back while B still holds the workloads: %v", left)
	}
	if ev := c.eventsFor(ReasonStillHeld); ev["deployment/shared"] != 1 {
		t.Errorf("%s events: %v", ReasonStillHeld, ev)
	}
	// A's restore again (a retry): it holds nothing any more.
	c.mustRun(0, ScaleRestoreSpec(), "", append(sel, "--only-run-uid", "uid-a")...)
	if d := c.getDeployment("shared"); *d.Spec.Replicas != 0 {
		t.Fatalf("A's retried restore brought shared back: %d", *d.Spec.Replicas)
	}

	// B, the last holder, lets go: the workloads come back as first recorded.
	c.mustRun(0, ScaleRestoreSpec(), "", append(sel, "--only-run-uid", "uid-b", "--wait-ready", "--ready-timeout", "2m")...)
	for name, want := range map[string]int32{"shared": 2, "worker": 1} {
		d := c.getDeployment(name)
		if *d.Spec.Replicas != want || d.Status.ReadyReplicas != want {
			t.Fatalf("%s after B's restore: replicas %d ready %d, want %d", name, *d.Spec.Replicas, d.Status.ReadyReplicas, want)
		}
		for _, a := range recordAnnotations {
			if v, ok := d.Annotations[a]; ok {
				t.Fatalf("%s keeps %s=%q after the last holder's restore", name, a, v)
			}
		}
	}
}

// A run that keeps the workloads down (its failure policy) is a holder like any
// other: another run's restore does not undo that decision; only a restore
// without --only-run-uid (a person's) brings them back.
func TestClusterKeptDownByOneRunStaysDown(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("kept", 1, appOpts{labels: map[string]string{"kept": "yes"}})
	c.waitRunning("kept=yes", 1, 3*time.Minute)
	sel := []string{"--selector", "kept=yes"}
	c.mustRun(0, ScaleDownSpec(), "", append(sel, "--run-uid", "uid-failed")...)
	c.mustRun(0, ScaleDownSpec(), "", append(sel, "--run-uid", "uid-ok")...)
	// uid-failed keeps them down: it never restores. uid-ok finishes.
	c.mustRun(0, ScaleRestoreSpec(), "", append(sel, "--only-run-uid", "uid-ok", "--wait-ready")...)
	if d := c.getDeployment("kept"); *d.Spec.Replicas != 0 || d.Annotations[AnnotationHeldBy] != "uid-failed" {
		t.Fatalf("kept after the other run's restore: replicas %d, annotations %v", *d.Spec.Replicas, d.Annotations)
	}
	r := c.mustRun(0, ScaleRestoreSpec(), "", append(sel, "--wait-ready")...)
	if !strings.Contains(r.stderr, "other runs still hold") && !strings.Contains(r.stderr, "restored") {
		t.Errorf("manual restore:\n%s", r.stderr)
	}
	if d := c.getDeployment("kept"); *d.Spec.Replicas != 1 || d.Annotations[AnnotationHeldBy] != "" {
		t.Fatalf("kept after a restore without --only-run-uid: replicas %d, annotations %v", *d.Spec.Replicas, d.Annotations)
	}
}

// A run of several databases (issue 15) holds the workloads once, naming its
// Secrets joined by "+". A later run for one of those databases does not
// supersede it (the others may be at a version the application cannot run
// against); a later run that migrated every one of them does. A bad list is a
// usage error before anything changes.
func TestClusterRunOfSeveralDatabasesHolds(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("multi", 2, appOpts{labels: map[string]string{"multi": "yes"}})
	c.waitRunning("multi=yes", 2, 3*time.Minute)
	sel := []string{"--selector", "multi=yes"}

	for _, bad := range []string{"orders-db++billing-db", "orders-db+Billing_DB", "orders-db+orders-db"} {
		r := c.mustRun(2, ScaleDownSpec(), "", append(sel, "--run-uid", "uid-bad", "--database-secret", bad)...)
		if !strings.Contains(r.stderr, "--database-secret") {
			t.Errorf("--database-secret %q: the error does not name the flag:\n%s", bad, r.stderr)
		}
	}
	if d := c.getDeployment("multi"); *d.Spec.Replicas != 2 || d.Annotations[AnnotationReplicas] != "" {
		t.Fatalf("a refused scale-down changed the workload: replicas %d, annotations %v", *d.Spec.Replicas, d.Annotations)
	}

	// The run of two databases stops the workload, then fails and keeps it down.
	c.mustRun(0, ScaleDownSpec(), "", append(sel, "--run-uid", "uid-multi", "--database-secret", "orders-db+billing-db")...)
	// A single-database run for orders-db joins and succeeds: it does not
	// supersede the run of two, whose billing-db may be half-way.
	c.mustRun(0, ScaleDownSpec(), "", append(sel, "--run-uid", "uid-one", "--database-secret", "orders-db")...)
	if d := c.getDeployment("multi"); d.Annotations[AnnotationHeldBy] != "uid-multi:orders-db+billing-db,uid-one:orders-db" {
		t.Fatalf("holders: %q", d.Annotations[AnnotationHeldBy])
	}
	r := c.mustRun(0, ScaleRestoreSpec(), "", append(sel, "--only-run-uid", "uid-one", "--supersede-database", "orders-db")...)
	if d := c.getDeployment("multi"); *d.Spec.Replicas != 0 || d.Annotations[AnnotationHeldBy] != "uid-multi:orders-db+billing-db" {
		t.Fatalf("after the single-database run's restore: replicas %d, held by %q\n%s", *d.Spec.Replicas, d.Annotations[AnnotationHeldBy], r.stderr)
	}
	if left := c.livePods("multi=yes"); len(left) > 0 {
		t.Fatalf("pods back while the run of two still holds the workload: %v", left)
	}

	// The next run of the same databases (listed in another order, plus one)
	// migrates all of them: it supersedes the failed run, and the workload
	// comes back as first recorded.
	c.mustRun(0, ScaleDownSpec(), "", append(sel, "--run-uid", "uid-next", "--database-secret", "billing-db+orders-db+users-db")...)
	r = c.mustRun(0, ScaleRestoreSpec(), "", append(sel, "--only-run-uid", "uid-next", "--supersede-database", "billing-db+orders-db+users-db", "--wait-ready", "--ready-timeout", "2m")...)
	d := c.getDeployment("multi")
	if *d.Spec.Replicas != 2 || d.Status.ReadyReplicas != 2 {
		t.Fatalf("after the superseding run's restore: replicas %d ready %d, annotations %v\n%s", *d.Spec.Replicas, d.Status.ReadyReplicas, d.Annotations, r.stderr)
	}
	for _, a := range recordAnnotations {
		if v, ok := d.Annotations[a]; ok {
			t.Fatalf("keeps %s=%q after the last holder's restore", a, v)
		}
	}
}
