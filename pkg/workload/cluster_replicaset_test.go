package workload

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// scale-down writes a new record to each Deployment's current ReplicaSet before
// the Deployment, so the deployment controller has nothing to copy and scales
// in one write (replicaset.go). Who wrote the record's fields on the
// ReplicaSet is in its managedFields: before, the controller's
// (kube-controller-manager) copy. The documented Role grants it; without
// permission on ReplicaSets the step still stops the Deployment and says why it
// left the copy to the controller.
func TestClusterRecordOnReplicaSetFirst(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("first", 1, appOpts{labels: map[string]string{"rs": "admin"}})
	c.deployment("plain", 1, appOpts{labels: map[string]string{"rs": "role"}})
	c.waitRunning("app in (first,plain)", 2, 3*time.Minute)
	// The controller has given each Deployment its revision (what the step
	// matches the current ReplicaSet by).
	c.waitFor("the Deployments' revisions", time.Minute, func() (bool, string) {
		for _, name := range []string{"first", "plain"} {
			if rev := c.getDeployment(name).Annotations[revisionAnnotation]; rev == "" {
				return false, name + " has no revision yet"
			}
		}
		return true, ""
	})

	// The documented Role (the workflows' own) lets the step write the ReplicaSet.
	c.mustRun(0, ScaleDownSpec(), c.serviceAccountKubeconfig("migrator", scaleRole(t)), "--selector", "rs=admin")
	rs := c.currentReplicaSet("first")
	for _, k := range []string{AnnotationReplicas, AnnotationBy, AnnotationAt} {
		if rs.Annotations[k] != c.getDeployment("first").Annotations[k] {
			t.Errorf("ReplicaSet %s: %s=%q, the Deployment's is %q", rs.Name, k, rs.Annotations[k], c.getDeployment("first").Annotations[k])
		}
	}
	if got := annotationManagers(rs, AnnotationAt); len(got) != 1 || got[0] != fieldManager {
		t.Errorf("ReplicaSet %s: %s written by %v, want only %s", rs.Name, AnnotationAt, got, fieldManager)
	}

	// A Role without it: the controller copies, as before.
	noRS := scaleRole(t)
	noRS.Rules = slices.DeleteFunc(noRS.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "replicasets") })
	r := c.mustRun(0, ScaleDownSpec(), c.serviceAccountKubeconfig("migrator-no-rs", noRS), "--selector", "rs=role")
	if !strings.Contains(r.stderr, "not writing the record to the ReplicaSets first") {
		t.Errorf("without permission on ReplicaSets the step did not say it left the copy to the controller:\n%s", r.stderr)
	}
	if d := c.getDeployment("plain"); *d.Spec.Replicas != 0 || d.Annotations[AnnotationReplicas] != "1" {
		t.Fatalf("plain after scale-down: replicas %d, annotations %v", *d.Spec.Replicas, d.Annotations)
	}

	// The restore removes the records from the ReplicaSets too, whoever wrote
	// them (the step, or the controller's copy for plain): kubectl rollout undo
	// copies a ReplicaSet's annotations onto its Deployment, and would bring a
	// finished run's record back.
	c.waitFor("the controller's copy of plain's record", time.Minute, func() (bool, string) {
		rs := c.currentReplicaSet("plain")
		return rs.Annotations[AnnotationReplicas] != "", "not copied yet"
	})
	c.mustRun(0, ScaleRestoreSpec(), c.serviceAccountKubeconfig("restorer", scaleRole(t)), "--selector", "rs in (admin,role)")
	for _, name := range []string{"first", "plain"} {
		rs := c.currentReplicaSet(name)
		for _, k := range recordAnnotations {
			if v, ok := rs.Annotations[k]; ok {
				t.Errorf("ReplicaSet %s of %s after restore: %s=%q left", rs.Name, name, k, v)
			}
		}
	}
}

// currentReplicaSet is the ReplicaSet of Deployment name with its revision.
func (c *cluster) currentReplicaSet(name string) *appsv1.ReplicaSet {
	c.t.Helper()
	d := c.getDeployment(name)
	l, err := c.cs.AppsV1().ReplicaSets(c.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	for i := range l.Items {
		rs := &l.Items[i]
		if o := metav1.GetControllerOf(rs); o != nil && o.UID == d.UID && rs.Annotations[revisionAnnotation] == d.Annotations[revisionAnnotation] {
			return rs
		}
	}
	c.t.Fatalf("no ReplicaSet of %s at revision %s", name, d.Annotations[revisionAnnotation])
	return nil
}

// annotationManagers are the field managers that own annotation key on obj.
func annotationManagers(obj metav1.Object, key string) []string {
	var out []string
	for _, m := range obj.GetManagedFields() {
		if m.FieldsV1 != nil && strings.Contains(m.FieldsV1.GetRawString(), `"f:`+key+`"`) {
			out = append(out, m.Manager)
		}
	}
	return out
}
