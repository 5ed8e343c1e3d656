package workload

import (
	"context"
	"sync/atomic"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// The deployment controller copies a Deployment's annotations to its current
// ReplicaSet (all but these). When the record arrives together with replicas 0,
// one sync of the controller copies them (a write), then, from the list of
// ReplicaSets it read before that write, tries to copy them again (409
// Conflict, the Deployment requeued), and scales only on a later sync: three
// ReplicaSet writes where a plain scale makes one, at the controller's own
// client limit (20 requests/s). Traced with the API server's audit log
// (bench/README.md, section 3): the pods of 110 Deployments began to go 14 s
// after the step's last change, against 0.9 s after a sequential scale loop.
var notCopiedToReplicaSet = map[string]bool{
	"kubectl.kubernetes.io/last-applied-configuration": true,
	"deployment.kubernetes.io/revision":                true,
	"deployment.kubernetes.io/revision-history":        true,
	"deployment.kubernetes.io/desired-replicas":        true,
	"deployment.kubernetes.io/max-replicas":            true,
	"deprecated.deployment.rollback.to":                true,
}

// revisionAnnotation is the revision the deployment controller gives a
// Deployment and its current ReplicaSet.
const revisionAnnotation = "deployment.kubernetes.io/revision"

// replicaSetCopier writes a new record to each Deployment's current
// ReplicaSet just before the Deployment itself, so that the deployment
// controller finds nothing to copy and scales at once. It is an optimisation:
// without permission to list or patch ReplicaSets (rbac/role.yaml grants it),
// or on any error, the controller copies the record itself.
type replicaSetCopier struct {
	p       patcher
	current map[types.UID]*appsv1.ReplicaSet // Deployment UID → its current ReplicaSet
	denied  atomic.Bool
}

// newReplicaSetCopier reads the namespace's ReplicaSets once, when some of ws
// are Deployments that get a new record; nil otherwise or when they cannot be
// read.
func (d *Downer) newReplicaSetCopier(ctx context.Context, ws []*Workload) *replicaSetCopier {
	revisions := map[types.UID]string{}
	for _, w := range ws {
		if _, has := w.Annotations[w.recordKey()]; w.Kind == Deployment && !has && !w.settledAtZero() {
			if rev := w.Annotations[revisionAnnotation]; rev != "" {
				revisions[w.UID] = rev
			}
		}
	}
	if len(revisions) == 0 {
		return nil
	}
	c := &replicaSetCopier{p: patcher{cs: d.Client, ns: d.Namespace}, current: map[types.UID]*appsv1.ReplicaSet{}}
	err := eachReplicaSet(ctx, d.Client, d.Namespace, func(rs *appsv1.ReplicaSet) {
		owner := metav1.GetControllerOf(rs)
		if owner == nil || owner.Kind != "Deployment" {
			return
		}
		if rev, ok := revisions[owner.UID]; ok && rs.Annotations[revisionAnnotation] == rev {
			c.current[owner.UID] = &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: rs.Name, Annotations: rs.Annotations}}
		}
	})
	if err != nil {
		d.Log.Info("not writing the record to the ReplicaSets first: the deployment controller copies it itself, in a slower sync (grant list and patch on replicasets to avoid that)", "error", err.Error())
		return nil
	}
	return c
}

// replicaSetPage bounds what one list of ReplicaSets holds in memory: a
// namespace can keep thousands (ten revisions per Deployment by default).
const replicaSetPage = 500

// eachReplicaSet calls fn with every ReplicaSet of the namespace, a page at a
// time; fn must not keep rs.
func eachReplicaSet(ctx context.Context, cs kubernetes.Interface, ns string, fn func(rs *appsv1.ReplicaSet)) error {
	opts := metav1.ListOptions{Limit: replicaSetPage}
	for {
		l, err := cs.AppsV1().ReplicaSets(ns).List(ctx, opts)
		if err != nil {
			return err
		}
		for i := range l.Items {
			fn(&l.Items[i])
		}
		if l.Continue == "" {
			return nil
		}
		opts.Continue = l.Continue
	}
}

// copyRecord patches w's current ReplicaSet with the annotations w is about to
// have (ann: the record's changes, nil values removing) that the controller
// would copy; best effort, errors are logged.
func (c *replicaSetCopier) copyRecord(ctx context.Context, d *Downer, w *Workload, ann map[string]any) {
	if c == nil || w.Kind != Deployment || c.denied.Load() {
		return
	}
	rs := c.current[w.UID]
	if rs == nil {
		return
	}
	after := map[string]string{}
	for k, v := range w.Annotations {
		after[k] = v
	}
	for k, v := range ann {
		if s, ok := v.(string); ok {
			after[k] = s
		} else {
			delete(after, k)
		}
	}
	changes := map[string]any{}
	for k, v := range after {
		if cur, ok := rs.Annotations[k]; !notCopiedToReplicaSet[k] && (!ok || cur != v) {
			changes[k] = v
		}
	}
	if len(changes) == 0 {
		return
	}
	patch := mergePatch(map[string]any{"metadata": map[string]any{"annotations": changes}})
	_, err := c.p.cs.AppsV1().ReplicaSets(c.p.ns).Patch(ctx, rs.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager})
	switch {
	case err == nil:
	case apierrors.IsForbidden(err):
		if !c.denied.Swap(true) {
			d.Log.Info("not writing the record to the ReplicaSets first: the deployment controller copies it itself, in a slower sync (grant patch on replicasets to avoid that)", "error", err.Error())
		}
	default:
		d.Log.Debug("writing the record to the ReplicaSet first failed: the deployment controller copies it itself", "workload", w.String(), "replicaset", rs.Name, "error", err.Error())
	}
}

// stripReplicaSetRecords removes the record annotations from every ReplicaSet
// of the Deployments in ds, whose own record a restore has just removed. The
// deployment controller copies a Deployment's annotations to its current
// ReplicaSet and never removes them, and `kubectl rollout undo` copies a
// ReplicaSet's annotations back onto the Deployment: a record left on a
// ReplicaSet would come back on a running Deployment, held by a run long
// finished, and a later run would then stop it and leave it stopped. Best
// effort: without permission on ReplicaSets, or on an error, it says so.
func (r *Restorer) stripReplicaSetRecords(ctx context.Context, ds []*Workload) {
	uids := map[types.UID]bool{}
	for _, w := range ds {
		if w.Kind == Deployment {
			uids[w.UID] = true
		}
	}
	if len(uids) == 0 {
		return
	}
	patches := map[string][]byte{} // ReplicaSet name → the patch removing its record
	err := eachReplicaSet(ctx, r.Client, r.Namespace, func(rs *appsv1.ReplicaSet) {
		owner := metav1.GetControllerOf(rs)
		if owner == nil || owner.Kind != "Deployment" || !uids[owner.UID] {
			return
		}
		remove := map[string]any{}
		for _, k := range recordAnnotations {
			if _, ok := rs.Annotations[k]; ok {
				remove[k] = nil
			}
		}
		if len(remove) > 0 {
			patches[rs.Name] = mergePatch(map[string]any{"metadata": map[string]any{"annotations": remove}})
		}
	})
	if err != nil {
		r.Log.Warn("could not remove the scale-down records the Deployments' ReplicaSets carry (grant list and patch on replicasets): kubectl rollout undo would bring them back", "error", err.Error())
		return
	}
	for name, patch := range patches {
		if _, err := r.Client.AppsV1().ReplicaSets(r.Namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
			r.Log.Warn("could not remove the scale-down record from a ReplicaSet: kubectl rollout undo to it would bring it back", "replicaset", name, "error", err.Error())
			if apierrors.IsForbidden(err) {
				return
			}
		}
	}
}
