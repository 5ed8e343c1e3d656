package workload

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

func rec(replicas string) map[string]string {
	return map[string]string{AnnotationReplicas: replicas, AnnotationBy: "wf-1", AnnotationAt: "2026-01-01T00:00:00Z"}
}

func cronRec(suspended string) map[string]string {
	return map[string]string{AnnotationSuspended: suspended, AnnotationBy: "wf-1", AnnotationAt: "2026-01-01T00:00:00Z"}
}

func TestRestore(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(
			deployment("web", 0, rec("3")),            // still at 0: put back 3
			deployment("api", 5, rec("2")),            // a new deploy set 5: keep 5
			statefulSet("cache", 0, rec("2")),         // still at 0: put back 2
			deployment("idle", 0, rec("0")),           // was at 0 before: stays 0
			cronJob("report", true, cronRec("false")), // resume
			cronJob("cleanup", true, cronRec("true")), // was suspended before: stays
			cronJob("resumed", false, cronRec("false")),
			deployment("plain", 4, nil), // never scaled down
		)
		r, logs := newRestorer(t, cs)
		out, err := r.Run(context.Background(), Selection{})
		if err != nil {
			t.Fatal(err)
		}
		want := "cronjob/cleanup=suspended cronjob/report=active cronjob/resumed=active deployment/api=5 deployment/idle=0 deployment/web=3 statefulset/cache=2"
		if got := strings.Join(Strings(out), " "); got != want {
			t.Fatalf("outcomes\n got %s\nwant %s", got, want)
		}
		for name, want := range map[string]int32{"web": 3, "api": 5, "idle": 0, "plain": 4} {
			d := getDeployment(t, cs, name)
			if *d.Spec.Replicas != want {
				t.Errorf("%s: replicas %d, want %d", name, *d.Spec.Replicas, want)
			}
			for _, a := range recordAnnotations {
				if _, ok := d.Annotations[a]; ok {
					t.Errorf("%s still has %s", name, a)
				}
			}
		}
		if s := getStatefulSet(t, cs, "cache"); *s.Spec.Replicas != 2 || len(s.Annotations) != 0 {
			t.Errorf("cache %d %v", *s.Spec.Replicas, s.Annotations)
		}
		for name, want := range map[string]bool{"report": false, "cleanup": true, "resumed": false} {
			c := getCronJob(t, cs, name)
			if *c.Spec.Suspend != want || len(c.Annotations) != 0 {
				t.Errorf("%s: suspend %v annotations %v", name, *c.Spec.Suspend, c.Annotations)
			}
		}
		if !strings.Contains(logs.String(), "replicas changed since scale-down") {
			t.Errorf("keeping a changed value is not logged:\n%s", logs)
		}
		if n := len(events(t, cs)); n != 7 {
			t.Errorf("%d events, want 7", n)
		}

		// Twice is safe: nothing left to do.
		cs.ClearActions()
		out, err = r.Run(context.Background(), Selection{})
		if err != nil || len(out) != 0 || len(patches(cs)) != 0 {
			t.Fatalf("second restore: %v %v %v", out, err, patches(cs))
		}
	})
}

func TestRestoreSelected(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("web", 0, rec("3")), deployment("api", 0, rec("2")))
		r, logs := newRestorer(t, cs)
		out, err := r.Run(context.Background(), sel(t, "", "deployment/web", "deployment/gone"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(Strings(out), " "); got != "deployment/web=3" {
			t.Fatalf("outcomes %s", got)
		}
		if *getDeployment(t, cs, "api").Spec.Replicas != 0 {
			t.Fatal("restored an unselected workload")
		}
		if !strings.Contains(logs.String(), "deployment/gone") {
			t.Errorf("missing workload not logged:\n%s", logs)
		}
	})
}

func TestRestoreWhenNothingWasScaledDown(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("web", 2, nil))
		r, logs := newRestorer(t, cs)
		out, err := r.Run(context.Background(), sel(t, "part-of=shop"))
		if err != nil || len(out) != 0 || len(patches(cs)) != 0 {
			t.Fatalf("%v %v %v", out, err, patches(cs))
		}
		if !strings.Contains(logs.String(), "nothing to restore") {
			t.Errorf("does not say so:\n%s", logs)
		}
	})
}

func TestRestoreGoesOnAfterAFailure(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("a", 0, rec("oops")), deployment("b", 0, rec("2")), deployment("c", 0, rec("1")))
		cs.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.(k8stesting.PatchAction).GetName() == "c" {
				return true, nil, apierrors.NewServiceUnavailable("restarting")
			}
			return false, nil, nil
		})
		r, _ := newRestorer(t, cs)
		out, err := r.Run(context.Background(), Selection{})
		if failure.Code(err) != 75 || !strings.Contains(err.Error(), "2 workloads could not be restored") {
			t.Fatalf("err %v (code %d)", err, failure.Code(err))
		}
		if got := strings.Join(Strings(out), " "); got != "deployment/b=2" {
			t.Fatalf("outcomes %s", got)
		}
		if *getDeployment(t, cs, "b").Spec.Replicas != 2 {
			t.Fatal("b not restored")
		}
	})
}

func TestRestoreBadRecordIsPermanent(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("a", 0, rec("-1")))
		r, _ := newRestorer(t, cs)
		_, err := r.Run(context.Background(), Selection{})
		if failure.Code(err) != 1 || !strings.Contains(err.Error(), AnnotationReplicas) {
			t.Fatalf("err %v", err)
		}
	})
}

func TestRestoreRetriesConflicts(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("web", 0, rec("3")))
		n := 0
		cs.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if n++; n == 1 {
				return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, "web", errors.New("modified"))
			}
			return false, nil, nil
		})
		r, _ := newRestorer(t, cs)
		if _, err := r.Run(context.Background(), Selection{}); err != nil {
			t.Fatal(err)
		}
		if d := getDeployment(t, cs, "web"); *d.Spec.Replicas != 3 || len(d.Annotations) != 0 {
			t.Fatalf("%d %v", *d.Spec.Replicas, d.Annotations)
		}
	})
}

func TestRestoreWaitReady(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("web", 0, rec("2")))
		r, _ := newRestorer(t, cs)
		r.WaitReady = true
		r.ReadyTimeout = 300 * time.Millisecond
		_, err := r.Run(context.Background(), Selection{})
		// Permanent: the record is gone, so a retry would succeed with nothing to wait for.
		if failure.Code(err) != 1 || !strings.Contains(err.Error(), "not ready within --ready-timeout 300ms: deployment/web (0/2 ready)") {
			t.Fatalf("err %v", err)
		}
		// Ready now: a rerun has nothing left to restore and returns at once.
		d := getDeployment(t, cs, "web")
		d.Status.ReadyReplicas, d.Status.UpdatedReplicas = 2, 2
		if _, err := cs.AppsV1().Deployments(testNS).UpdateStatus(context.Background(), d, metav1UpdateOptions()); err != nil {
			t.Fatal(err)
		}
		cs2 := newFake(deployment("web", 0, rec("2")))
		go func() {
			time.Sleep(200 * time.Millisecond)
			d := getDeployment(t, cs2, "web")
			d.Status.ReadyReplicas, d.Status.UpdatedReplicas = 2, 2
			_, _ = cs2.AppsV1().Deployments(testNS).UpdateStatus(context.Background(), d, metav1UpdateOptions())
		}()
		r2, _ := newRestorer(t, cs2)
		r2.WaitReady = true
		if _, err := r2.Run(context.Background(), Selection{}); err != nil {
			t.Fatal(err)
		}
	})
}

// withUID is a record written by the run whose uid is uid ("" for a run without
// --run-uid, as every record before it).
func withUID(ann map[string]string, uid string) map[string]string {
	if uid != "" {
		ann[AnnotationByRunUID] = uid
	}
	return ann
}

func TestRestoreOnlyRunUID(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		objs := func() []runtime.Object {
			return []runtime.Object{
				deployment("mine", 0, withUID(rec("3"), "uid-b")),
				cronJob("mine-too", true, withUID(cronRec("false"), "uid-b")),
				deployment("kept-down", 0, withUID(rec("2"), "uid-a")), // run A's keep-down
				deployment("old", 0, withUID(rec("1"), "")),            // before run uids
				deployment("odd", 0, withUID(rec("oops"), "uid-a")),    // not ours: not even read
			}
		}
		cs := newFake(objs()...)
		r, logs := newRestorer(t, cs)
		r.OnlyRunUID = "uid-b"
		out, err := r.Run(context.Background(), Selection{})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(Strings(out), " "); got != "cronjob/mine-too=active deployment/mine=3" {
			t.Fatalf("outcomes %s", got)
		}
		if d := getDeployment(t, cs, "mine"); *d.Spec.Replicas != 3 || len(d.Annotations) != 0 {
			t.Fatalf("mine: %d %v", *d.Spec.Replicas, d.Annotations)
		}
		for name, uid := range map[string]string{"kept-down": "uid-a", "old": "none", "odd": "uid-a"} {
			d := getDeployment(t, cs, name)
			if *d.Spec.Replicas != 0 || d.Annotations[AnnotationReplicas] == "" {
				t.Errorf("%s was touched: %d %v", name, *d.Spec.Replicas, d.Annotations)
			}
			line := `msg="left alone: stopped by another run" workload=deployment/` + name + ` by=wf-1 by-run-uid=` + uid + ` at=2026-01-01T00:00:00Z`
			if strings.Count(logs.String(), line) != 1 {
				t.Errorf("no single line %q:\n%s", line, logs)
			}
		}
		for _, p := range patches(cs) {
			if !strings.Contains(p, "mine") {
				t.Errorf("patched a record of another run: %s", p)
			}
		}

		// Without the flag (the success path) every record is restored, as before.
		cs = newFake(objs()[:4]...)
		r, _ = newRestorer(t, cs)
		out, err = r.Run(context.Background(), Selection{})
		if err != nil || len(out) != 4 {
			t.Fatalf("%v %v", Strings(out), err)
		}
	})
}

// A conflict makes the restore read the workload again; if another run has
// restored it and stopped it anew meanwhile, the record is that run's now.
func TestRestoreOnlyRunUIDRereadsAfterAConflict(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		cs := newFake(deployment("web", 0, withUID(rec("3"), "uid-b")))
		n := 0
		cs.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if n++; n > 1 {
				return false, nil, nil
			}
			// Run C got there first: restored B's record, then stopped it again.
			// (The tracker, not the clientset: the fake holds its lock in reactors.)
			gvr := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
			obj, err := cs.Tracker().Get(gvr, testNS, "web")
			if err != nil {
				t.Error(err)
				return true, nil, err
			}
			d := obj.(*appsv1.Deployment).DeepCopy()
			d.Annotations = withUID(rec("4"), "uid-c")
			if err := cs.Tracker().Update(gvr, d, testNS); err != nil {
				t.Error(err)
			}
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, "web", errors.New("modified"))
		})
		r, logs := newRestorer(t, cs)
		r.OnlyRunUID = "uid-b"
		out, err := r.Run(context.Background(), Selection{})
		if err != nil || len(out) != 0 {
			t.Fatalf("%v %v", Strings(out), err)
		}
		if d := getDeployment(t, cs, "web"); *d.Spec.Replicas != 0 || d.Annotations[AnnotationByRunUID] != "uid-c" {
			t.Fatalf("run C's record was restored: %d %v", *d.Spec.Replicas, d.Annotations)
		}
		if !strings.Contains(logs.String(), "by-run-uid=uid-c") {
			t.Errorf("not said:\n%s", logs)
		}
	})
}

// The readiness waits have their own allowance: a restore that used up most of
// --timeout still gets --ready-timeout for the pods.
func TestAllowance(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		a := &allowance{clock: realClock(), left: 50 * time.Millisecond}
		err := a.spend(context.Background(), func(ctx context.Context) error {
			<-ctx.Done()
			return fmt.Errorf("patching deployment/web: %w", ctx.Err())
		})
		r := &Restorer{Timeout: 50 * time.Millisecond}
		err = r.outOfTime(context.Background(), err)
		if failure.Code(err) != 75 || !strings.Contains(err.Error(), "restoring took longer than --timeout 50ms") {
			t.Fatalf("err %v", err)
		}
		if a.left > 0 {
			t.Fatalf("%s left after running out", a.left)
		}
		// Spent: the next piece starts with an expired context.
		_ = a.spend(context.Background(), func(ctx context.Context) error {
			if ctx.Err() == nil {
				t.Error("a spent allowance gave time")
			}
			return nil
		})
	})
}

// The holders of a stopped workload, through scale-down (joining) and
// scale-restore --only-run-uid (letting go): what the annotations say after
// each, and whether the workload came back.
func TestHolders(t *testing.T) {
	held := func(uid, heldBy string) map[string]string {
		a := withUID(rec("3"), uid)
		if heldBy != "" {
			a[AnnotationHeldBy] = heldBy
		}
		return a
	}
	tests := []struct {
		name        string
		ann         map[string]string
		step        string // "down" or "restore"
		uid         string // --run-uid or --only-run-uid
		db          string // --database-secret or --supersede-database
		wantHeldBy  string // "-": no such annotation
		wantReplica int32
	}{
		{"a second run joins", held("a", ""), "down", "b", "", "a,b", 0},
		{"a second run joins with its database", held("a", "a:one"), "down", "b", "two", "a:one,b:two", 0},
		{"a third run joins", held("a", "a,b"), "down", "c", "", "a,b,c", 0},
		{"the writer again holds already", held("a", ""), "down", "a", "", "-", 0},
		{"a joiner again holds already", held("a", "a,b:two"), "down", "b", "two", "a,b:two", 0},
		{"a run without uid does not join", held("a", ""), "down", "", "", "-", 0},
		{"joining a record without run uid", held("", ""), "down", "b", "", "none,b", 0},
		{"the writer lets go first", held("a", "a,b"), "restore", "a", "", "b", 0},
		{"the joiner lets go first", held("a", "a,b"), "restore", "b", "", "a", 0},
		{"the last holder restores", held("a", "b"), "restore", "b", "", "-", 3},
		{"the only holder restores", held("a", ""), "restore", "a", "", "-", 3},
		{"not a holder: left alone", held("a", "a,b"), "restore", "c", "", "a,b", 0},
		{"a person's restore restores", held("a", "a,b"), "restore", "", "", "-", 3},
		{"a run-uid-less writer keeps it", held("", "none,b"), "restore", "b", "", "none", 0},
		{"a failed run of the same database keeps it", held("a", "a:one,b:one"), "restore", "b", "", "a:one", 0},
		{"success supersedes the same database", held("a", "a:one,b:one"), "restore", "b", "one", "-", 3},
		// argo retry of an older run a succeeds after b, a later run for the
		// same database, kept the application down: b's decision stands
		{"an earlier run's success leaves a later run holding", held("a", "a:one,b:one"), "restore", "a", "one", "b:one", 0},
		{"success supersedes only the runs before it", held("a", "a:one,b:one,c:one"), "restore", "b", "one", "c:one", 0},
		{"success does not supersede holders of no known database", held("a", "a,none,b:one"), "restore", "b", "one", "a,none", 0},
		{"success leaves another database's run holding", held("a", "a:one,b:two,c:one"), "restore", "c", "one", "b:two", 0},
		{"a run of several databases joins", held("a", "a:one"), "down", "b", "one+two", "a:one,b:one+two", 0},
		{"success of several supersedes a run of all of them", held("a", "a:one+two,b:two+one+three"), "restore", "b", "two+one+three", "-", 3},
		{"success of several supersedes a run of one of them", held("a", "a:two,b:one+two"), "restore", "b", "one+two", "-", 3},
		{"success of one does not supersede a run of several", held("a", "a:one+two,b:one"), "restore", "b", "one", "a:one+two", 0},
		{"a run naming a database not migrated keeps holding", held("a", "a:one+three,b:one+two"), "restore", "b", "one+two", "a:one+three", 0},
		{"an entry with an empty piece is never superseded", held("a", "a:one+,b:one"), "restore", "b", "one", "a:one+", 0},
		{"the run of several lets go, the other keeps it", held("a", "a:one+two,b:three"), "restore", "a", "one+two", "b:three", 0},
		// one Secret with a key per tenant: different databases (secret/key)
		{"success for one key does not supersede another key of the Secret", held("a", "a:tenants/a+tenants/b,b:tenants/c"), "restore", "b", "tenants/c", "a:tenants/a+tenants/b", 0},
		{"success for a key supersedes the same key", held("a", "a:tenants/a,b:tenants/a"), "restore", "b", "tenants/a", "-", 3},
		{"a bare Secret (a person's) is not superseded by one of its keys", held("a", "a:tenants,b:tenants/url"), "restore", "b", "tenants/url", "a:tenants", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				cs := newFake(deployment("web", 0, tt.ann))
				var err error
				if tt.step == "down" {
					d, _ := newDowner(t, cs)
					d.RunUID, d.DatabaseSecret = tt.uid, tt.db
					_, err = d.Run(context.Background(), sel(t, "", "deployment/web"))
				} else {
					r, _ := newRestorer(t, cs)
					r.OnlyRunUID, r.SupersedeDatabase = tt.uid, tt.db
					_, err = r.Run(context.Background(), sel(t, "", "deployment/web"))
				}
				if err != nil {
					t.Fatal(err)
				}
				d := getDeployment(t, cs, "web")
				got, ok := d.Annotations[AnnotationHeldBy]
				if !ok {
					got = "-"
				}
				if got != tt.wantHeldBy || *d.Spec.Replicas != tt.wantReplica {
					t.Fatalf("held by %q with %d replicas, want %q with %d", got, *d.Spec.Replicas, tt.wantHeldBy, tt.wantReplica)
				}
				if tt.wantReplica == 0 && d.Annotations[AnnotationReplicas] != "3" {
					t.Fatalf("the record is gone while the workload is still stopped: %v", d.Annotations)
				}
			})
		})
	}
}

// Run uids are listed as uid:secret with commas in AnnotationHeldBy: a uid with
// a comma, a colon, a space, or the placeholder for no uid is refused, and so is
// a database that is not a Secret name.
func TestRunUIDsThatCannotBeListed(t *testing.T) {
	for _, bad := range []string{"a,b", "a b", "a:b", noRunUID} {
		for _, flag := range []string{"--run-uid", "--only-run-uid"} {
			o := &RunOptions{Timeout: time.Minute, ReadyTimeout: time.Minute, ProgressEvery: time.Second, RunID: "wf-1"}
			if flag == "--run-uid" {
				o.RunUID = bad
			} else {
				o.OnlyRunUID = bad
			}
			if err := o.Validate(); err == nil || !strings.Contains(err.Error(), flag) {
				t.Errorf("%s %q: %v", flag, bad, err)
			}
		}
	}
	for _, o := range []*RunOptions{
		{DatabaseSecret: "Not_A_Secret"}, {OnlyRunUID: "b", SupersedeDatabase: "a,b"}, {SupersedeDatabase: "shop-db"},
		{DatabaseSecret: "a++b"}, {DatabaseSecret: "+a"}, {DatabaseSecret: "a+"}, {DatabaseSecret: "a+Not_A_Secret"}, {DatabaseSecret: "a+b+a"},
		{OnlyRunUID: "b", SupersedeDatabase: "a+b:c"}, {OnlyRunUID: "b", SupersedeDatabase: "a+ +b"}, {OnlyRunUID: "b", SupersedeDatabase: "b+b"},
	} {
		o.Timeout, o.ReadyTimeout, o.ProgressEvery, o.RunID = time.Minute, time.Minute, time.Second, "wf-1"
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: accepted", *o)
		}
	}
}

// --database-secret and --supersede-database take databases (secret/key, or a
// bare Secret) joined by "+" (a run of several databases), written back
// without blanks.
func TestDatabaseSecretLists(t *testing.T) {
	for in, want := range map[string]string{"": "", " shop-db ": "shop-db", "orders-db+billing-db": "orders-db+billing-db", " a + b.c +d ": "a+b.c+d",
		"shop-db/url": "shop-db/url", " tenants/a.b + tenants/A_1 ": "tenants/a.b+tenants/A_1"} {
		o := &RunOptions{Timeout: time.Minute, ReadyTimeout: time.Minute, ProgressEvery: time.Second, RunID: "wf-1", DatabaseSecret: in, OnlyRunUID: "u", SupersedeDatabase: in}
		if err := o.Validate(); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if o.DatabaseSecret != want || o.SupersedeDatabase != want {
			t.Errorf("%q: --database-secret %q, --supersede-database %q, want %q", in, o.DatabaseSecret, o.SupersedeDatabase, want)
		}
	}
}

func TestDowntime(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 12, 3, 10, 0, s, 0, time.UTC) }
	web, cron := Ref{Kind: Deployment, Name: "web"}, Ref{Kind: CronJob, Name: "report"}
	tests := []struct {
		name string
		outs []Outcome
		end  time.Time
		want time.Duration
		ok   bool
	}{
		{"nothing restored", nil, at(30), 0, false},
		{"none brought back from 0", []Outcome{{Ref: web, Value: "4"}, {Ref: cron, Value: "active"}}, at(30), 0, false},
		{"the earliest stop counts", []Outcome{{Ref: web, Value: "2", Stopped: at(12)}, {Ref: web, Value: "1", Stopped: at(10)}, {Ref: cron, Value: "active"}}, at(30), 20 * time.Second, true},
		{"a clock behind the record", []Outcome{{Ref: web, Value: "2", Stopped: at(12)}}, at(11), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Downtime(tt.outs, tt.end)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("Downtime = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
