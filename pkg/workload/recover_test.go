package workload

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// What chooseLostRecord takes back onto a Deployment from its ReplicaSets
// after kubectl rollout undo replaced the Deployment's annotations.
func TestChooseLostRecord(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) string { return t0.Add(d).Format(recordTimeFormat) }
	rec := func(replicas, by, uid, held string, when time.Duration) map[string]string {
		m := map[string]string{AnnotationReplicas: replicas, AnnotationBy: by, AnnotationAt: at(when)}
		if uid != "" {
			m[AnnotationByRunUID] = uid
		}
		if held != "" {
			m[AnnotationHeldBy] = held
		}
		return m
	}
	rs := func(name string, created time.Duration, ann map[string]string) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(created)), Annotations: ann}}
	}
	run1 := rec("3", "wf-1", "uid-1", "uid-1:db", time.Hour)
	for _, tc := range []struct {
		name     string
		replicas int32
		own      map[string]string
		rss      []*appsv1.ReplicaSet
		want     string // the recovered replicas and run uid, "" for none
		why      string // in the reason for none
		held     string
	}{
		{name: "lost by the undo", rss: []*appsv1.ReplicaSet{rs("v1", -time.Hour, nil), rs("v2", 0, run1)}, want: "3 uid-1", held: "uid-1:db"},
		{name: "running: not touched", replicas: 2, rss: []*appsv1.ReplicaSet{rs("v2", 0, run1)}},
		{name: "scaled to 0 on purpose, no record anywhere", rss: []*appsv1.ReplicaSet{rs("v1", -time.Hour, nil), rs("v2", 0, nil)}},
		{name: "a record of 0 replicas is nothing to take back", rss: []*appsv1.ReplicaSet{rs("v2", 0, rec("0", "wf-1", "uid-1", "", time.Hour))}},
		{name: "unreadable time", rss: []*appsv1.ReplicaSet{rs("v2", 0, map[string]string{AnnotationReplicas: "3", AnnotationAt: "yesterday"})}},
		{
			name: "restored since: a later ReplicaSet has no record",
			rss:  []*appsv1.ReplicaSet{rs("v1", 0, run1), rs("v2", 2*time.Hour, nil)},
			why:  "restored since: v2 has none",
		},
		{
			name: "a later ReplicaSet created during the keep-down carries it too",
			rss:  []*appsv1.ReplicaSet{rs("v1", 0, run1), rs("v2", 2*time.Hour, run1)},
			want: "3 uid-1", held: "uid-1:db",
		},
		{
			name: "the newest record wins over a stale one",
			rss:  []*appsv1.ReplicaSet{rs("v1", -2*time.Hour, rec("5", "wf-old", "uid-old", "", -time.Hour)), rs("v2", 0, run1)},
			want: "3 uid-1", held: "uid-1:db",
		},
		{
			name: "the undo put an older record on the Deployment: the newer one replaces it",
			own:  rec("5", "wf-old", "uid-old", "uid-old:db", -time.Hour),
			rss:  []*appsv1.ReplicaSet{rs("v1", -2*time.Hour, rec("5", "wf-old", "uid-old", "uid-old:db", -time.Hour)), rs("v2", 0, run1)},
			want: "3 uid-1", held: "uid-1:db",
		},
		{name: "the Deployment's own record is the newest: kept", own: run1, rss: []*appsv1.ReplicaSet{rs("v2", 0, run1)}},
		{
			name: "different records of the same time: none",
			rss:  []*appsv1.ReplicaSet{rs("v1", -time.Hour, rec("4", "wf-2", "uid-2", "", time.Hour)), rs("v2", 0, run1)},
			why:  "carry different ones of the same time",
		},
		{
			name: "the same record, held by more runs on one ReplicaSet: all holders kept",
			rss:  []*appsv1.ReplicaSet{rs("v1", -time.Hour, run1), rs("v2", 0, rec("3", "wf-1", "uid-1", "uid-1:db,uid-2:db", time.Hour))},
			want: "3 uid-1", held: "uid-1:db,uid-2:db",
		},
		{name: "a person's record, no run uid", rss: []*appsv1.ReplicaSet{rs("v2", 0, rec("2", "alice", "", "", time.Hour))}, want: "2 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Workload{Ref: Ref{Kind: Deployment, Name: "shop"}, Replicas: tc.replicas, Annotations: tc.own}
			lost, why := chooseLostRecord(d, tc.rss)
			if tc.want == "" {
				if lost != nil {
					t.Fatalf("took back %v from %s", lost.ann, lost.replicaSet)
				}
				if !strings.Contains(why, tc.why) || (tc.why == "") != (why == "") {
					t.Errorf("why %q, want it to say %q", why, tc.why)
				}
				return
			}
			if lost == nil {
				t.Fatalf("took back nothing (%s), want %s", why, tc.want)
			}
			uid, _ := lost.ann[AnnotationByRunUID].(string)
			if got := lost.ann[AnnotationReplicas].(string) + " " + uid; got != tc.want {
				t.Errorf("took back %q, want %q", got, tc.want)
			}
			held, _ := lost.ann[AnnotationHeldBy].(string)
			if held != tc.held {
				t.Errorf("held-by %q, want %q", held, tc.held)
			}
			if (tc.own != nil) != (lost.replaces != "") {
				t.Errorf("replaces %q with the Deployment's own record %v", lost.replaces, tc.own)
			}
		})
	}
}

// The steps with a fake API server: a Deployment that lost its record to
// kubectl rollout undo gets it back from its ReplicaSet, in scale-down (not
// recorded as 0) and in scale-restore (only the run's own with --only-run-uid).
func TestLostRecordTakenBack(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	replicaSet := func(name, owner string, created time.Time, ann map[string]string) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: testNS, CreationTimestamp: metav1.NewTime(created), Annotations: ann,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: owner, UID: types.UID("uid-" + owner), Controller: ptr.To(true)}},
		}}
	}
	run1 := map[string]string{AnnotationReplicas: "3", AnnotationBy: "wf-0", AnnotationAt: t0.Add(time.Hour).Format(recordTimeFormat), AnnotationByRunUID: "uid-1", AnnotationHeldBy: "uid-1:db"}
	release := func(rs *appsv1.ReplicaSet, n string) *appsv1.ReplicaSet {
		rs.Spec.Template.Annotations = map[string]string{"release": n}
		return rs
	}
	objects := func() []runtime.Object {
		// web was rolled back to v1 (kubectl rollout undo): its template is v1's.
		web := deployment("web", 0, nil)
		web.Spec.Template.Annotations = map[string]string{"release": "1"}
		return []runtime.Object{
			web, release(replicaSet("web-v1", "web", t0, nil), "1"), release(replicaSet("web-v2", "web", t0.Add(time.Minute), run1), "2"),
			deployment("idle", 0, nil), replicaSet("idle-v1", "idle", t0, nil),
		}
	}
	t.Run("scale-down", func(t *testing.T) {
		inBubble(t, func(t *testing.T) {
			cs := newFake(objects()...)
			d, logs := newDowner(t, cs)
			d.RunUID, d.DatabaseSecret = "uid-2", "db"
			out, err := d.Run(context.Background(), sel(t, "part-of=shop"))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(Strings(out), " "); got != "deployment/idle=0 deployment/web=3" {
				t.Errorf("outcomes %s, want deployment/idle=0 deployment/web=3", got)
			}
			ann := getDeployment(t, cs, "web").Annotations
			if ann[AnnotationReplicas] != "3" || ann[AnnotationByRunUID] != "uid-1" || ann[AnnotationHeldBy] != "uid-1:db,uid-2:db" {
				t.Errorf("web's record after scale-down: %v", ann)
			}
			if _, ok := getDeployment(t, cs, "idle").Annotations[AnnotationReplicas]; ok {
				t.Errorf("idle, at 0 on purpose, got a record")
			}
			if !strings.Contains(logs.String(), "recovered the scale-down record") || !strings.Contains(logs.String(), "replicaset=web-v2") {
				t.Errorf("the recovery is not logged with the ReplicaSet:\n%s", logs)
			}

			r, _ := newRestorer(t, cs)
			r.OnlyRunUID, r.SupersedeDatabase = "uid-2", "db"
			if _, err := r.Run(context.Background(), sel(t, "part-of=shop")); err != nil {
				t.Fatal(err)
			}
			if n := *getDeployment(t, cs, "web").Spec.Replicas; n != 3 {
				t.Errorf("web after the restore: %d replicas, want 3", n)
			}
		})
	})
	t.Run("scale-restore of another run", func(t *testing.T) {
		inBubble(t, func(t *testing.T) {
			cs := newFake(objects()...)
			r, logs := newRestorer(t, cs)
			r.OnlyRunUID = "uid-9"
			if _, err := r.Run(context.Background(), sel(t, "part-of=shop")); err != nil {
				t.Fatal(err)
			}
			if d := getDeployment(t, cs, "web"); *d.Spec.Replicas != 0 || len(d.Annotations) != 0 {
				t.Errorf("another run's restore changed web: replicas %d, annotations %v", *d.Spec.Replicas, d.Annotations)
			}
			if !strings.Contains(logs.String(), "another run's") {
				t.Errorf("not said why the record stays on the ReplicaSet:\n%s", logs)
			}
		})
	})
	t.Run("scale-restore by a person", func(t *testing.T) {
		inBubble(t, func(t *testing.T) {
			cs := newFake(objects()...)
			r, _ := newRestorer(t, cs)
			out, err := r.Run(context.Background(), Selection{})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(Strings(out), " "); got != "deployment/web=3" {
				t.Errorf("outcomes %s, want deployment/web=3", got)
			}
			if ann := getReplicaSetAnnotations(t, cs, "web-v2"); ann[AnnotationReplicas] != "" {
				t.Errorf("web-v2 keeps the record after the restore: %v", ann)
			}
		})
	})
}

func getReplicaSetAnnotations(t *testing.T, cs kubernetes.Interface, name string) map[string]string {
	t.Helper()
	rs, err := cs.AppsV1().ReplicaSets(testNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rs.Annotations
}
