package workload

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// `kubectl rollout undo` during a keep-down (a failed release, rolled back by
// a person) replaces the Deployment's annotations with those of the ReplicaSet
// it goes back to (kubectl's DeploymentRollbacker: a JSON patch replacing
// /metadata/annotations). That ReplicaSet carries no record, or the stale
// record of a run before the restore removed them from ReplicaSets, so the
// Deployment loses this run's record while at 0. The ReplicaSet that was
// current at scale-down keeps it (scale-down wrote it there first): the steps
// recover it from there (recover.go), with the real kubectl doing the undo.
func TestClusterRolloutUndoDuringKeepDown(t *testing.T) {
	// Not parallel: its last check (no record left on any ReplicaSet) races the
	// deployment controller, which copies a Deployment's annotations onto its
	// ReplicaSet and, syncing a Deployment read before the restore, put one back
	// (seen once with four tests at a time). Such a leftover is harmless
	// (TestClusterLeftoverReplicaSetRecordNotRevived).
	c := newCluster(t)
	kubectl := filepath.Join(c.env.State().KubeBinDir, "kubectl")
	names := []string{"manual", "nextrun", "stale", "onpurpose"}
	for _, n := range names {
		c.deployment(n, 2, appOpts{labels: map[string]string{"undo": n}})
	}
	// A second revision of each, so that there is one to go back to.
	for _, n := range names {
		patch := []byte(`{"spec":{"template":{"metadata":{"annotations":{"release":"2"}}}}}`)
		if _, err := c.cs.AppsV1().Deployments(c.ns).Patch(context.Background(), n, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c.waitFor("the second revisions rolled out", 3*time.Minute, func() (bool, string) {
		for _, n := range names {
			d := c.getDeployment(n)
			s := d.Status
			if d.Annotations[revisionAnnotation] != "2" || s.ObservedGeneration < d.Generation || s.UpdatedReplicas != 2 || s.Replicas != 2 || s.AvailableReplicas != 2 {
				return false, fmt.Sprintf("%s: revision %q, status %+v", n, d.Annotations[revisionAnnotation], s)
			}
		}
		return true, ""
	})
	// What a restore before the ReplicaSets' records were removed left on the
	// first revision of "stale" (an old run that held it at 5 replicas).
	old := c.replicaSetAt("stale", "1")
	stale := map[string]string{AnnotationReplicas: "5", AnnotationBy: "wf-old", AnnotationAt: "2026-01-02T03:04:05.000Z", AnnotationByRunUID: "uid-old", AnnotationHeldBy: "uid-old:db"}
	c.annotateReplicaSet(old.Name, stale)

	// Run 1 stops them all and keeps them down (its migrate failed).
	c.mustRun(0, ScaleDownSpec(), "", "--selector", "undo", "--run-uid", "uid-1", "--database-secret", "db")
	for _, n := range names {
		if rs := c.replicaSetAt(n, "2"); rs.Annotations[AnnotationReplicas] != "2" || rs.Annotations[AnnotationByRunUID] != "uid-1" {
			t.Fatalf("%s's current ReplicaSet %s after scale-down: %v", n, rs.Name, rs.Annotations)
		}
	}
	// A person scales "onpurpose" down for good: the restore removes its records.
	c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "undo=onpurpose")
	c.scaleTo("onpurpose", 0)

	// The person rolls each back to revision 1, with the real kubectl.
	for _, n := range names {
		out, err := exec.Command(kubectl, "--kubeconfig", c.kubeconfig, "-n", c.ns, "rollout", "undo", "deployment/"+n).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl rollout undo deployment/%s: %v\n%s", n, err, out)
		}
		t.Logf("kubectl rollout undo deployment/%s: %s", n, strings.TrimSpace(string(out)))
	}
	// What the undo did: the Deployments have revision 1's annotations (none of
	// this run's record), still at 0; revision 2 keeps run 1's record.
	for _, n := range names {
		d := c.getDeployment(n)
		if *d.Spec.Replicas != 0 || d.Spec.Template.Annotations["release"] != "" {
			t.Fatalf("%s after the undo: replicas %d, template annotations %v", n, *d.Spec.Replicas, d.Spec.Template.Annotations)
		}
		want := ""
		switch n {
		case "stale":
			want = "5"
		case "onpurpose":
		default:
			if rs := c.replicaSetAt(n, "2"); rs.Annotations[AnnotationByRunUID] != "uid-1" {
				t.Errorf("%s's ReplicaSet %s after the undo: %v, want run 1's record", n, rs.Name, rs.Annotations)
			}
		}
		if got := d.Annotations[AnnotationReplicas]; got != want {
			t.Errorf("%s after the undo: %s=%q, want %q (annotations %v)", n, AnnotationReplicas, got, want, d.Annotations)
		}
		t.Logf("%s after the undo: revision %s, annotations %v", n, d.Annotations[revisionAnnotation], d.Annotations)
	}

	// A person's restore brings "manual" back, from run 1's record on revision 2.
	r := c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "undo=manual")
	c.wantReplicas("manual", 2, r.stderr)
	if !strings.Contains(r.stderr, "recovered") {
		t.Errorf("the restore did not say it recovered the record:\n%s", r.stderr)
	}

	// The next run: its scale-down records run 1's 2 replicas, not 0, and
	// its restore (same database, migrated) brings it back.
	r = c.mustRun(0, ScaleDownSpec(), "", "--selector", "undo=nextrun", "--run-uid", "uid-2", "--database-secret", "db")
	if got := r.workloads(t); !slices.Equal(got, []string{"deployment/nextrun=2"}) {
		t.Errorf("the next run's scale-down recorded %v, want [deployment/nextrun=2]\n%s", got, r.stderr)
	}
	r = c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "undo=nextrun", "--only-run-uid", "uid-2", "--supersede-database", "db")
	c.wantReplicas("nextrun", 2, r.stderr)

	// The stale record kubectl put on "stale" is older than run 1's: run 1's
	// failure path, resubmitted, restores it from run 1's record.
	r = c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "undo=stale", "--only-run-uid", "uid-1")
	c.wantReplicas("stale", 2, r.stderr)

	// Scaled to 0 on purpose, no record anywhere: left at 0, by both steps.
	r = c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "undo=onpurpose")
	c.wantReplicas("onpurpose", 0, r.stderr)

	// Every restore removed the records from all the ReplicaSets.
	l, err := c.cs.AppsV1().ReplicaSets(c.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, rs := range l.Items {
		if v, ok := rs.Annotations[AnnotationReplicas]; ok {
			t.Errorf("ReplicaSet %s after the restores: record %s=%q left", rs.Name, AnnotationReplicas, v)
		}
	}
}

// replicaSetAt is Deployment name's ReplicaSet with revision rev.
func (c *cluster) replicaSetAt(name, rev string) *appsv1.ReplicaSet {
	c.t.Helper()
	d := c.getDeployment(name)
	l, err := c.cs.AppsV1().ReplicaSets(c.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	for i := range l.Items {
		rs := &l.Items[i]
		if o := metav1.GetControllerOf(rs); o != nil && o.UID == d.UID && rs.Annotations[revisionAnnotation] == rev {
			return rs
		}
	}
	c.t.Fatalf("no ReplicaSet of %s at revision %s", name, rev)
	return nil
}

func (c *cluster) annotateReplicaSet(name string, ann map[string]string) {
	c.t.Helper()
	patch := mergePatch(map[string]any{"metadata": map[string]any{"annotations": ann}})
	if _, err := c.cs.AppsV1().ReplicaSets(c.ns).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) scaleTo(name string, n int32) {
	c.t.Helper()
	patch := mergePatch(map[string]any{"spec": map[string]any{"replicas": n}})
	if _, err := c.cs.AppsV1().Deployments(c.ns).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) wantReplicas(name string, n int32, stderr string) {
	c.t.Helper()
	if d := c.getDeployment(name); *d.Spec.Replicas != n {
		c.t.Errorf("%s: replicas %d, want %d (annotations %v)\nstderr:\n%s", name, *d.Spec.Replicas, n, d.Annotations, stderr)
	}
}
