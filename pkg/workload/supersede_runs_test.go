package workload

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// A run that stopped nothing (nothing pending, or stop-workloads=auto with
// nothing to stop) is not among the holders, so only plan's list of the runs
// holding the workloads for its database (--supersede-runs) lets its success
// supersede them: a keep-down of the same database. A listed run that also
// named another database, or one not listed (a later run), keeps holding.
func TestSupersedeRuns(t *testing.T) {
	held := func(heldBy string) map[string]string {
		a := withUID(rec("3"), "a")
		a[AnnotationHeldBy] = heldBy
		return a
	}
	tests := []struct {
		name, heldBy, uid, db, runs string
		wantHeldBy                  string // "-": restored
		created                     int64  // the run's --run-created
	}{
		{"without the list a run that holds nothing lets go of nothing", "a:one", "z", "one", "", "a:one", 0},
		{"a listed run of the database is superseded", "a:one", "z", "one", "a", "-", 0},
		{"every listed run", "a:one,b:one", "z", "one", "a,b", "-", 0},
		{"a run not listed (a later one) keeps holding", "a:one,b:one", "z", "one", "a", "b:one", 0},
		{"a listed run of another database keeps holding", "a:two", "z", "one", "a", "a:two", 0},
		{"a listed run of several databases keeps holding", "a:one+two", "z", "one", "a", "a:one+two", 0},
		{"a listed holder of no known database keeps holding", "a,b:one", "z", "one", "a,b", "a", 0},
		{"the run's own hold and a listed one", "a:one,z:one", "z", "one", "a", "-", 0},
		// after a retry of the run: plan listed a, which joined before it anyway
		{"a listed run after the run's own entry", "z:one,a:one", "z", "one", "a", "-", 0},
		// an argo retry of an old run (z, created at 100) that reran its plan and
		// scale-down after a later run (b, created at 200) kept the workloads down
		{"a later run listed by a rerun plan keeps holding", "b@200:one", "z", "one", "b", "b@200:one", 100},
		{"a later run before the run's own entry keeps holding", "b@200:one,z@100:one", "z", "one", "", "b@200:one", 100},
		{"an older run before it is superseded", "a@50:one,z@100:one", "z", "one", "", "-", 100},
		{"a run of the same second keeps holding", "a@100:one,z@100:one", "z", "one", "a", "a@100:one", 100},
		{"a holder of no known time counts as older", "a:one,z@100:one", "z", "one", "", "-", 100},
		{"a run of no known time lets go as before", "b@200:one,z:one", "z", "one", "", "-", 0},
		{"a time edited by hand stays in the uid, which no run lists", "b@x:one", "z", "one", "b", "b@x:one", 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				cs := newFake(deployment("web", 0, held(tt.heldBy)))
				r, _ := newRestorer(t, cs)
				r.OnlyRunUID, r.SupersedeDatabase, r.SupersedeRuns, r.RunCreated = tt.uid, tt.db, tt.runs, tt.created
				if _, err := r.Run(context.Background(), sel(t, "", "deployment/web")); err != nil {
					t.Fatal(err)
				}
				d := getDeployment(t, cs, "web")
				got, ok := d.Annotations[AnnotationHeldBy]
				if !ok {
					got = "-"
				}
				want := int32(0)
				if tt.wantHeldBy == "-" {
					want = 3
				}
				if got != tt.wantHeldBy || *d.Spec.Replicas != want {
					t.Fatalf("held by %q with %d replicas, want %q with %d", got, *d.Spec.Replicas, tt.wantHeldBy, want)
				}
			})
		})
	}
}

// --supersede-runs is a list of run uids, given only with the database the
// run migrated: anything else is refused before anything changes.
func TestSupersedeRunsFlag(t *testing.T) {
	for _, tt := range []struct {
		db, runs, want string // want "": refused
	}{
		{"one", " a , b ,", "a,b"},
		{"one", "", ""},
		{"", "a", ""},
		{"one", "a:one", ""},
		{"one", "a b", ""},
		{"one", noRunUID, ""},
	} {
		o := &RunOptions{Timeout: time.Minute, ReadyTimeout: time.Minute, ProgressEvery: time.Second, RunID: "wf-1", OnlyRunUID: "z", SupersedeDatabase: tt.db, SupersedeRuns: tt.runs, restore: true}
		err := o.Validate()
		switch {
		case tt.want == "" && tt.runs != "" && err == nil:
			t.Errorf("--supersede-database %q --supersede-runs %q: accepted", tt.db, tt.runs)
		case tt.want == "" && tt.runs != "" && !strings.Contains(err.Error(), "--supersede-runs"):
			t.Errorf("--supersede-runs %q: the error does not name the flag: %v", tt.runs, err)
		case tt.want != "" && (err != nil || o.SupersedeRuns != tt.want):
			t.Errorf("--supersede-runs %q: %q, %v; want %q", tt.runs, o.SupersedeRuns, err, tt.want)
		}
	}
}

// On the real API server: a keep-down run holds the application for its
// database; a later run for that database finds nothing pending and stops
// nothing. plan's list of the holds (HoldsFor) names the keep-down run and no
// other, and the later run's restore given that list brings the application
// back; without it the application stayed at 0 after a successful run.
func TestClusterRunThatStoppedNothingLetsGoOfAKeepDown(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.deployment("kd", 2, appOpts{labels: map[string]string{"app": "kd"}})
	c.deployment("other", 1, appOpts{labels: map[string]string{"app": "other"}})
	c.waitRunning("app in (kd, other)", 3, 3*time.Minute)
	kd := []string{"--selector", "app=kd"}
	c.mustRun(0, ScaleDownSpec(), "", append(kd, "--run-uid", "uid-kept", "--database-secret", "shop-db/url")...)
	// holders that are not the database's alone, on the other application
	c.mustRun(0, ScaleDownSpec(), "", "--selector", "app=other", "--run-uid", "uid-both", "--database-secret", "shop-db/url+billing-db/url")
	c.mustRun(0, ScaleDownSpec(), "", "--selector", "app=other", "--run-uid", "uid-billing", "--database-secret", "billing-db/url")

	sels := map[string]Selection{"kd": sel(t, "app=kd"), "whole namespace": {}}
	for name, want := range map[string][]string{"kd": {"uid-kept"}, "whole namespace": {"uid-kept"}} {
		got, _, err := HoldsFor(t.Context(), c.cs, c.ns, sels[name], "shop-db/url", 0)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("holds for shop-db/url on %s: %v %v, want %v", name, got, err, want)
		}
	}
	if got, _, err := HoldsFor(t.Context(), c.cs, c.ns, Selection{}, "billing-db/url", 0); err != nil || !slices.Equal(got, []string{"uid-billing"}) {
		t.Fatalf("holds for billing-db/url: %v %v", got, err)
	}

	restore := append(kd, "--only-run-uid", "uid-new", "--supersede-database", "shop-db/url", "--wait-ready", "--ready-timeout", "2m")
	// what the workflows did before: the run holds nothing, so nothing lets go
	c.mustRun(0, ScaleRestoreSpec(), "", restore...)
	if d := c.getDeployment("kd"); *d.Spec.Replicas != 0 || d.Annotations[AnnotationHeldBy] != "uid-kept:shop-db/url" {
		t.Fatalf("kd without --supersede-runs: replicas %d, annotations %v", *d.Spec.Replicas, d.Annotations)
	}
	r := c.mustRun(0, ScaleRestoreSpec(), "", append(restore, "--supersede-runs", "uid-kept")...)
	if got := r.results[ResultWorkloads]; got != `["deployment/kd=2"]` {
		t.Errorf("restored %s", got)
	}
	d := c.getDeployment("kd")
	if *d.Spec.Replicas != 2 || d.Status.ReadyReplicas != 2 {
		t.Fatalf("kd after the restore with --supersede-runs: replicas %d ready %d", *d.Spec.Replicas, d.Status.ReadyReplicas)
	}
	for _, a := range recordAnnotations {
		if v, ok := d.Annotations[a]; ok {
			t.Fatalf("kd keeps %s=%q", a, v)
		}
	}
	// the same list on the other application: a run of two databases and one of
	// another database are not this database's to supersede
	c.mustRun(0, ScaleRestoreSpec(), "", "--selector", "app=other", "--only-run-uid", "uid-new", "--supersede-database", "shop-db/url", "--supersede-runs", "uid-both,uid-billing")
	if d := c.getDeployment("other"); *d.Spec.Replicas != 0 || d.Annotations[AnnotationHeldBy] != "uid-both:shop-db/url+billing-db/url,uid-billing:billing-db/url" {
		t.Fatalf("other: replicas %d, annotations %v", *d.Spec.Replicas, d.Annotations)
	}
}

// A held-by entry edited by hand can name a uid that --supersede-runs refuses
// (a blank inside, over 253 characters): plan leaves it out of its list,
// which scale-restore must always take, instead of failing every later run of
// the database at scale-restore (an attack in session 30).
func TestHoldsForListsOnlyRunUIDsScaleRestoreTakes(t *testing.T) {
	long := strings.Repeat("x", 300)
	for heldBy, want := range map[string]struct{ listed, unlisted string }{
		"a:one,a:one": {"a", ""}, " a : one , b:one ": {"a,b", ""}, "none:one": {}, "a:two": {}, "a:one+": {}, ",,a:one,,": {"a", ""},
		"a b:one,c:one": {"c", "a b"}, "a\tb:one": {"", "a\tb"}, long + ":one": {"", long}, "a:one:extra": {},
	} {
		ann := withUID(rec("3"), "a")
		ann[AnnotationHeldBy] = heldBy
		uids, unlisted, err := HoldsFor(context.Background(), newFake(deployment("web", 0, ann)), testNS, sel(t, "", "deployment/web"), "one", 0)
		if err != nil {
			t.Fatalf("%q: %v", heldBy, err)
		}
		if strings.Join(uids, ",") != want.listed || strings.Join(unlisted, ",") != want.unlisted {
			t.Errorf("held by %q: listed %q, unlisted %q; want %q, %q", heldBy, uids, unlisted, want.listed, want.unlisted)
		}
		o := &RunOptions{Timeout: time.Minute, ReadyTimeout: time.Minute, ProgressEvery: time.Second, RunID: "wf-1", OnlyRunUID: "z", SupersedeDatabase: "one", SupersedeRuns: strings.Join(uids, ","), restore: true}
		if err := o.Validate(); err != nil {
			t.Errorf("held by %q: plan lists %q, which scale-restore refuses: %v", heldBy, uids, err)
		}
	}
}

// plan reads the workloads' holds only for a run that may touch them: with
// stop-workloads=false it needs no right on them (a run for a namespace where
// the plan identity has none), and otherwise a refusal names the Role to bind.
func TestClusterPlanReadsHoldsOnlyWhenTheRunTouchesWorkloads(t *testing.T) {
	c := newCluster(t)
	t.Setenv("KUBECONFIG", c.serviceAccountKubeconfig("no-rights", nil))
	spec := CheckSelection(step.Spec{Name: "migrate", Description: "Results: pending.", Run: func(context.Context, *step.Env) error { return nil }})
	for _, tt := range []struct {
		stop string
		code int
		says string
	}{{"false", 0, "touches no workload"}, {"true", 1, "Role chartreuse-migrate"}, {"auto", 1, "Role chartreuse-migrate"}} {
		dir := t.TempDir()
		var out, errOut bytes.Buffer
		code := step.Run(t.Context(), spec, []string{"migrate", "--skip-version-check", "--results-dir", dir, "--check-selector", "app=kd",
			"--check-namespace", c.ns, "--report-holds-for", "shop-db/url", "--check-stop-workloads", tt.stop}, &out, &errOut)
		if code != tt.code || !strings.Contains(errOut.String(), tt.says) {
			t.Errorf("stop-workloads=%s: exit %d, want %d saying %q:\n%s", tt.stop, code, tt.code, tt.says, errOut.String())
		}
		if b, err := os.ReadFile(filepath.Join(dir, ResultSupersededHolds)); tt.code == 0 && (err != nil || len(b) != 0) {
			t.Errorf("stop-workloads=%s: result %s %q %v, want empty", tt.stop, ResultSupersededHolds, b, err)
		}
	}
}

// plan lists at most MaxSupersededHolds holders (its result must fit Tekton's
// termination message beside the risks, test/manifests); past that it refuses
// (exit 1), naming the remedy, and writes no list.
func TestClusterPlanRefusesMoreHoldsThanItCanList(t *testing.T) {
	c := newCluster(t)
	t.Setenv("KUBECONFIG", c.kubeconfig)
	spec := CheckSelection(step.Spec{Name: "migrate", Description: "Results: pending.", Run: func(context.Context, *step.Env) error { return nil }})
	for _, n := range []int{MaxSupersededHolds, MaxSupersededHolds + 1} {
		var holders []string
		for i := range n {
			holders = append(holders, fmt.Sprintf("uid-%02d:shop-db/url", i))
		}
		ann := withUID(rec("1"), "uid-00")
		ann[AnnotationHeldBy] = strings.Join(holders, ",")
		name := fmt.Sprintf("held-%d", n)
		c.deployment(name, 0, appOpts{labels: map[string]string{"holds": name}, annotations: ann})
		dir := t.TempDir()
		var out, errOut bytes.Buffer
		code := step.Run(t.Context(), spec, []string{"migrate", "--skip-version-check", "--results-dir", dir,
			"--check-selector", "holds=" + name, "--check-namespace", c.ns, "--report-holds-for", "shop-db/url", "--check-stop-workloads", "true"}, &out, &errOut)
		b, _ := os.ReadFile(filepath.Join(dir, ResultSupersededHolds))
		switch {
		case n <= MaxSupersededHolds && (code != 0 || strings.Count(string(b), ",") != n-1):
			t.Errorf("%d holders: exit %d, listed %q\n%s", n, code, b, errOut.String())
		case n > MaxSupersededHolds && (code != failure.CodePermanent || !strings.Contains(errOut.String(), "more than the 24 one run lets go of") || len(b) != 0):
			t.Errorf("%d holders: exit %d, listed %q, want 1 naming the bound:\n%s", n, code, b, errOut.String())
		}
	}
}

// plan lists only the holds of runs created before its own: an argo retry of
// an old run reruns plan after a later run kept the workloads down, and its
// list must not name that later run. Times written as scale-down writes them
// come back as such; a holder of no known time counts as older.
func TestHoldsForListsOnlyOlderRuns(t *testing.T) {
	ann := withUID(rec("3"), "a")
	ann[AnnotationHeldBy] = "a@50:one,b@200:one,c:one,d@150:one"
	cs := newFake(deployment("web", 0, ann))
	for created, want := range map[int64]string{0: "a,b,c,d", 100: "a,c", 150: "a,c", 151: "a,c,d", 300: "a,b,c,d"} {
		uids, _, err := HoldsFor(context.Background(), cs, testNS, sel(t, "", "deployment/web"), "one", created)
		if err != nil || strings.Join(uids, ",") != want {
			t.Errorf("run created at %d: listed %q (%v), want %q", created, uids, err, want)
		}
	}
	if hs := parseHolders("a@50:one, b@x:one"); len(hs) != 2 || hs[0] != (holder{runUID: "a", database: "one", created: 50}) || hs[1].runUID != "b@x" || hs[0].String() != "a@50:one" {
		t.Errorf("parsed %+v", hs)
	}
}

// An argo retry of an old run R (created first) after a later run N kept the
// application down: R's rerun scale-down joins the holders after N, its rerun
// plan reads N's hold, and its success lifted N's keep-down (an attack on the
// real Argo, both ways). With the runs' creation times recorded, R lets go of
// no hold of N; a run created after N does.
func TestClusterRetryOfAnOlderRunKeepsALaterHold(t *testing.T) {
	// not parallel: plan reads KUBECONFIG (t.Setenv)
	c := newCluster(t)
	c.deployment("kept", 2, appOpts{labels: map[string]string{"app.kubernetes.io/name": "kept"}})
	const older, later, newest = "2026-12-07T09:00:00Z", "2026-12-07T09:05:00Z", "2026-12-07T09:10:00Z"
	sel := []string{"--selector", "app.kubernetes.io/name=kept"}
	c.mustRun(0, ScaleDownSpec(), "", append(sel, "--run-id", "wf-n", "--run-uid", "uid-n", "--database-secret", "shop-db/url", "--run-created", later)...)
	c.mustRun(0, ScaleDownSpec(), "", append(sel, "--run-id", "wf-r", "--run-uid", "uid-r", "--database-secret", "shop-db/url", "--run-created", older)...)
	unix := func(v string) string {
		tm, _ := time.Parse(time.RFC3339, v)
		return fmt.Sprint(tm.Unix())
	}
	nHold := "uid-n@" + unix(later) + ":shop-db/url"
	d := c.getDeployment("kept")
	if got, want := d.Annotations[AnnotationHeldBy], nHold+",uid-r@"+unix(older)+":shop-db/url"; got != want {
		t.Fatalf("held by %q, want %q", got, want)
	}
	holds := func(created string) string {
		t.Helper()
		t.Setenv("KUBECONFIG", c.kubeconfig)
		spec := CheckSelection(step.Spec{Name: "migrate", Description: "Results: pending.", Run: func(context.Context, *step.Env) error { return nil }})
		dir := t.TempDir()
		var out, errOut bytes.Buffer
		if code := step.Run(t.Context(), spec, []string{"migrate", "--skip-version-check", "--results-dir", dir, "--check-selector", "app.kubernetes.io/name=kept",
			"--check-namespace", c.ns, "--report-holds-for", "shop-db/url", "--check-stop-workloads", "true", "--run-created", created}, &out, &errOut); code != 0 {
			t.Fatalf("plan: exit %d\n%s", code, errOut.String())
		}
		b, _ := os.ReadFile(filepath.Join(dir, ResultSupersededHolds))
		return string(b)
	}
	if got := holds(older); got != "" {
		t.Errorf("R's rerun plan lists %q, want none (N is later)", got)
	}
	c.mustRun(0, ScaleRestoreSpec(), "", append(sel, "--only-run-uid", "uid-r", "--supersede-database", "shop-db/url", "--run-created", older)...)
	d = c.getDeployment("kept")
	if *d.Spec.Replicas != 0 || d.Annotations[AnnotationHeldBy] != nHold {
		t.Fatalf("after R's success: %d replicas, held by %q; want 0, held by N alone", *d.Spec.Replicas, d.Annotations[AnnotationHeldBy])
	}
	// a run created after N, with nothing pending, lets go of it
	if got := holds(newest); got != "uid-n" {
		t.Errorf("a newer run's plan lists %q, want uid-n", got)
	}
	c.mustRun(0, ScaleRestoreSpec(), "", append(sel, "--only-run-uid", "uid-m", "--supersede-database", "shop-db/url", "--supersede-runs", "uid-n", "--run-created", newest)...)
	if d := c.getDeployment("kept"); *d.Spec.Replicas != 2 {
		t.Errorf("after the newer run: %d replicas, want 2", *d.Spec.Replicas)
	}
}
