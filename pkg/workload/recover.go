package workload

import (
	"context"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/chartreuse-go/chartreuse/pkg/kube"
)

// `kubectl rollout undo` (client side, kubectl's DeploymentRollbacker) patches
// the Deployment's pod template and replaces its annotations wholesale with
// those of the ReplicaSet it goes back to. Done while a run keeps the
// application down, it takes the record off the Deployment (that ReplicaSet,
// older, has none) or puts an older run's record on it (one a restore left on
// that ReplicaSet before restores removed them), and the Deployment stays at
// 0 with nothing, or the wrong thing, to restore. The ReplicaSet that was
// current when the run stopped it keeps the run's record (scale-down writes it
// there first, the deployment controller copies it there anyway), and the
// steps take it back from there:
//
//   - only for a Deployment at spec.replicas 0;
//   - only a record of more than 0 replicas, with a readable time;
//   - not a record older than a ReplicaSet of the Deployment that lacks it: the
//     controller gives every ReplicaSet it creates the Deployment's
//     annotations, so a ReplicaSet created after the record without it shows
//     the Deployment restored since (a restore that could not remove the
//     ReplicaSets' records left it);
//   - the newest record: a scale-down keeps the record it finds, so a later
//     one was written only once the earlier had gone; several different
//     records of that same time: none (it says so);
//   - a Deployment with a record keeps it unless the recovered one is newer
//     (the undo put an older run's record on it);
//   - scale-restore --only-run-uid takes back only a record its run holds.
//
// A Deployment scaled to 0 on purpose, with no record on any of its
// ReplicaSets, is left as it is.

// lostRecord is the record a Deployment lost, as found on its ReplicaSet.
type lostRecord struct {
	replicaSet string         // where it was found (the first, by name, when several carry it)
	ann        map[string]any // the record annotations to write back (nil values remove)
	rec        record
	replaces   string // the Deployment's own (older) record's time, when it had one
}

// rsRecord is one ReplicaSet's record.
type rsRecord struct {
	rs  string
	rec record
	at  time.Time
	key string // same record: same writer, run uid, time and value
}

// replicaSetRecord reads the record on a ReplicaSet; ok is false when it has
// none worth taking back (none, 0 replicas, unreadable).
func replicaSetRecord(rs *appsv1.ReplicaSet) (rsRecord, bool) {
	v, has := rs.Annotations[AnnotationReplicas]
	if !has {
		return rsRecord{}, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
	if err != nil || n <= 0 {
		return rsRecord{}, false
	}
	at, err := time.Parse(time.RFC3339, rs.Annotations[AnnotationAt])
	if err != nil {
		return rsRecord{}, false
	}
	rec := record{replicas: int32(n), by: rs.Annotations[AnnotationBy], at: rs.Annotations[AnnotationAt],
		runUID: rs.Annotations[AnnotationByRunUID], heldBy: rs.Annotations[AnnotationHeldBy]}
	key := strings.Join([]string{rec.by, rec.runUID, rec.at, strconv.Itoa(int(n))}, "\x00")
	return rsRecord{rs: rs.Name, rec: rec, at: at, key: key}, true
}

// chooseLostRecord decides what record d (a Deployment) lost, from its
// ReplicaSets rss. It returns nil when there is nothing to take back, with why
// when that is worth saying.
func chooseLostRecord(d *Workload, rss []*appsv1.ReplicaSet) (lost *lostRecord, why string) {
	if d.Kind != Deployment || d.Replicas != 0 {
		return nil, ""
	}
	var own time.Time
	if d.hasRecord() {
		t, err := time.Parse(time.RFC3339, d.Annotations[AnnotationAt])
		if err != nil {
			return nil, ""
		}
		own = t
	}
	sort.Slice(rss, func(i, j int) bool { return rss[i].Name < rss[j].Name })
	var recs []rsRecord
	carries := map[string]string{} // ReplicaSet → the key of the record it carries
	for _, rs := range rss {
		if r, ok := replicaSetRecord(rs); ok {
			recs = append(recs, r)
			carries[rs.Name] = r.key
		}
	}
	if len(recs) == 0 {
		return nil, ""
	}
	current := map[string]bool{} // the Deployment's template is this ReplicaSet's
	if d.templateDigest != "" {
		for _, rs := range rss {
			current[rs.Name] = templateDigest(&rs.Spec.Template) == d.templateDigest
		}
	}
	var fresh []rsRecord
	var dropped []string
	for _, r := range recs {
		if later := laterWithout(r, rss, carries); later != "" {
			dropped = append(dropped, r.rs+" (restored since: "+later+" has none)")
			continue
		}
		if current[r.rs] {
			// kubectl rollout undo changes the template: here the record left
			// the Deployment without one, by hand or by a restore that could
			// not take it off this ReplicaSet; taken back, it would undo a
			// later scale to 0.
			dropped = append(dropped, r.rs+" (still the Deployment's current ReplicaSet: no rollout undo took the record off)")
			continue
		}
		if !own.IsZero() && !r.at.After(own) {
			continue
		}
		fresh = append(fresh, r)
	}
	if len(fresh) == 0 {
		if len(dropped) > 0 && !d.hasRecord() {
			return nil, "not taking back the scale-down record of " + strings.Join(dropped, ", ")
		}
		return nil, ""
	}
	newest := fresh[0]
	for _, r := range fresh[1:] {
		if r.at.After(newest.at) {
			newest = r
		}
	}
	var holders []holder
	seen := map[string]bool{}
	var same []string
	for _, r := range fresh {
		if !r.at.Equal(newest.at) {
			continue
		}
		if r.key != newest.key {
			return nil, "not taking back a scale-down record: its ReplicaSets " + newest.rs + " and " + r.rs + " carry different ones of the same time; set the Deployment's replicas by hand"
		}
		same = append(same, r.rs)
		for _, h := range r.rec.holders() {
			if !seen[h.String()] {
				seen[h.String()] = true
				holders = append(holders, h)
			}
		}
	}
	rec := newest.rec
	rec.heldBy = formatHolders(holders)
	ann := map[string]any{
		AnnotationReplicas: strconv.Itoa(int(rec.replicas)), AnnotationBy: rec.by, AnnotationAt: rec.at,
		AnnotationByRunUID: nil, AnnotationHeldBy: nil, AnnotationSuspended: nil,
	}
	if rec.runUID != "" {
		ann[AnnotationByRunUID] = rec.runUID
	}
	if rec.heldBy != "" && rec.heldBy != noRunUID {
		ann[AnnotationHeldBy] = rec.heldBy
	} else {
		rec.heldBy = ""
	}
	lost = &lostRecord{replicaSet: same[0], ann: ann, rec: rec}
	if d.hasRecord() {
		lost.replaces = d.Annotations[AnnotationAt]
	}
	return lost, ""
}

// laterWithout names a ReplicaSet created after r's record was written that
// does not carry it; "" when there is none.
func laterWithout(r rsRecord, rss []*appsv1.ReplicaSet, carries map[string]string) string {
	for _, rs := range rss {
		if rs.CreationTimestamp.After(r.at) && carries[rs.Name] != r.key {
			return rs.Name
		}
	}
	return ""
}

// recoverer takes back the records kubectl rollout undo took off Deployments.
type recoverer struct {
	cs kubernetes.Interface
	ns string
	// only, when not nil (scale-restore --only-run-uid): only the records it
	// lets go of
	only     *letGo
	backoffs Backoffs
	clock    clock.Clock
	log      *slog.Logger
}

// run writes back onto the Deployments of ws the records they lost, and
// returns ws with those Deployments as changed. Best effort: without
// permission to list ReplicaSets, or on an error, it says so and leaves them.
func (rc recoverer) run(ctx context.Context, ws []*Workload) []*Workload {
	atZero := map[types.UID]int{}
	for i, w := range ws {
		if w.Kind == Deployment && w.Replicas == 0 {
			atZero[w.UID] = i
		}
	}
	if len(atZero) == 0 {
		return ws
	}
	owned := map[types.UID][]*appsv1.ReplicaSet{}
	err := eachReplicaSet(ctx, rc.cs, rc.ns, func(rs *appsv1.ReplicaSet) {
		owner := metav1.GetControllerOf(rs)
		if owner == nil || owner.Kind != "Deployment" {
			return
		}
		if _, ok := atZero[owner.UID]; !ok {
			return
		}
		owned[owner.UID] = append(owned[owner.UID], &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
			Name: rs.Name, CreationTimestamp: rs.CreationTimestamp, Annotations: recordOnly(rs.Annotations)},
			Spec: appsv1.ReplicaSetSpec{Template: rs.Spec.Template}})
	})
	if err != nil {
		rc.log.Warn("could not look for the scale-down records that kubectl rollout undo takes off Deployments at 0 (grant list on replicasets)", "error", err.Error())
		return ws
	}
	out := append([]*Workload(nil), ws...)
	for uid, i := range atZero {
		if len(owned[uid]) == 0 {
			continue
		}
		if w := rc.recover(ctx, ws[i], owned[uid]); w != nil {
			out[i] = w
		}
	}
	return out
}

// carries reports whether w's annotations are as ann would make them (a nil
// value: absent).
func carries(w *Workload, ann map[string]any) bool {
	for k, v := range ann {
		got, ok := w.Annotations[k]
		if s, isString := v.(string); isString != ok || (ok && got != s) {
			return false
		}
	}
	return true
}

// recordOnly keeps the record annotations of a ReplicaSet (and nothing else:
// a namespace can hold thousands of ReplicaSets).
func recordOnly(ann map[string]string) map[string]string {
	var out map[string]string
	for _, k := range recordAnnotations {
		if v, ok := ann[k]; ok {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// recover writes back the record d lost, retrying with a fresh read after a
// conflict; it returns d as changed, or nil when it changed nothing.
func (rc recoverer) recover(ctx context.Context, d *Workload, rss []*appsv1.ReplicaSet) *Workload {
	f := finder{cs: rc.cs, ns: rc.ns}
	retry := changeRetry{backoffs: rc.backoffs, clock: rc.clock, log: rc.log}
	var changed *Workload
	var sent map[string]any // the record last written, if it may have been made
	err := retry.run(ctx, d.String(), func(fresh bool) error {
		cur := d
		if fresh {
			w, found, err := f.get(ctx, d.Ref)
			if err != nil {
				return err
			}
			if !found {
				return nil
			}
			w.Priority = d.Priority
			cur = w
			if sent != nil && carries(w, sent) {
				// Written though its answer was lost: the fresh copy, record and
				// all, is what the step goes on with.
				rc.log.Info("the API server's answer was lost; a fresh read shows the scale-down record written back", "workload", w.String())
				changed = w
				return nil
			}
		}
		lost, why := chooseLostRecord(cur, rss)
		if lost == nil {
			if why != "" {
				rc.log.Warn(why, "workload", cur.String())
			}
			return nil
		}
		if rc.only != nil && !lost.rec.letGoBy(*rc.only) {
			rc.log.Info("not taking back the scale-down record its ReplicaSet carries: another run's", "workload", cur.String(), "replicaset", lost.replicaSet, "by-run-uid", lost.rec.runUID, "held-by", lost.rec.heldBy)
			return nil
		}
		patch := map[string]any{"metadata": map[string]any{"resourceVersion": cur.ResourceVersion, "annotations": lost.ann}}
		w, err := patcher{cs: rc.cs, ns: rc.ns}.object(ctx, cur.Ref, patch)
		if err != nil {
			if kube.IsUnavailable(err) || apierrors.IsConflict(err) {
				sent = lost.ann
			}
			return err
		}
		w.Priority = cur.Priority
		changed = w
		attrs := []any{"workload", cur.String(), "replicaset", lost.replicaSet, "replicas", lost.rec.replicas, "by", lost.rec.by, "by-run-uid", lost.rec.runUID, "at", lost.rec.at}
		if lost.replaces != "" {
			rc.log.Warn("replaced the Deployment's older scale-down record (put back by kubectl rollout undo?) with the newer one its ReplicaSet carries", append(attrs, "replaced-at", lost.replaces)...)
		} else {
			rc.log.Warn("recovered the scale-down record the Deployment lost at 0 replicas (kubectl rollout undo?) from its ReplicaSet", attrs...)
		}
		return nil
	})
	if err != nil {
		rc.log.Warn("could not write back the scale-down record the Deployment lost", "workload", d.String(), "error", err.Error())
	}
	return changed
}
