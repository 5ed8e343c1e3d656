package gate

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// A run over several databases takes the Lease of its workload namespace, then
// one per database Secret (the Leases a single-database run takes), so that it
// excludes every run that shares a database or the workloads with it.

// secretsFile writes the JSON list check-databases gives the gate.
func (c *cluster) secretsFile(list string) string {
	c.t.Helper()
	p := filepath.Join(c.t.TempDir(), "secrets")
	if err := os.WriteFile(p, []byte(list), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// holders maps each Lease of names to its holder's run name ("" when free).
func (c *cluster) holders(names ...string) map[string]string {
	c.t.Helper()
	got := map[string]string{}
	for _, n := range names {
		ls, err := c.cs.CoordinationV1().Leases(c.ns).Get(c.t.Context(), n, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			got[n] = ""
		case err != nil:
			c.t.Fatal(err)
		default:
			got[n] = holderOf(ls).run
		}
	}
	return got
}

func (c *cluster) wantHolders(want map[string]string) {
	c.t.Helper()
	var names []string
	for n := range want {
		names = append(names, n)
	}
	got := c.holders(names...)
	for n, w := range want {
		if got[n] != w {
			c.t.Errorf("Lease %s is held by %q, want %q", n, got[n], w)
		}
	}
}

func TestClusterSeveralDatabases(t *testing.T) {
	c := newCluster(t)
	workloads := WorkloadLeaseName(c.ns)
	multi, single, other := c.pipelineRun("run-multi"), c.pipelineRun("run-single"), c.pipelineRun("run-other")
	// Given unsorted and with a repeat, as no check-databases writes it.
	list := c.secretsFile(`["orders-db","app-database","orders-db"]`)
	r := c.mustRun(0, multi, "--database-secrets-file", list)
	wantLog(t, r, "workload-namespace="+c.ns, "database-secret=app-database", "database-secret=orders-db")
	if i, j := strings.Index(r.stderr, "database-secret=app-database"), strings.Index(r.stderr, "database-secret=orders-db"); i > j {
		t.Errorf("the Secrets' Leases were not taken in sorted order:\n%s", r.stderr)
	}
	c.wantHolders(map[string]string{workloads: "run-multi", LeaseName("app-database"): "run-multi", LeaseName("orders-db"): "run-multi"})
	ls, err := c.cs.CoordinationV1().Leases(c.ns).Get(t.Context(), workloads, metav1.GetOptions{})
	if err != nil || ls.Annotations[AnnotationWorkloads] != c.ns {
		t.Errorf("the workloads' Lease: %v, annotations %v", err, ls.GetAnnotations())
	}
	// A retried attempt proceeds.
	wantLog(t, c.mustRun(0, multi, "--database-secrets-file", list), "gate already held by this run")

	// A single-database run for one of its databases waits, and gives up naming it.
	r = c.mustRun(failure.CodeTransient, single, "--timeout", "1s")
	if !strings.Contains(r.summary.Error, "the gate for database Secret app-database") || !strings.Contains(r.summary.Error, "held by PipelineRun run-multi") {
		t.Errorf("the single-database run's error: %s", r.summary.Error)
	}
	// A run over other databases of the same workloads waits for the workloads' Lease.
	r = c.mustRun(failure.CodeTransient, other, "--database-secrets-file", c.secretsFile(`["billing-db"]`), "--timeout", "1s")
	for _, want := range []string{"the gate for workload namespace " + c.ns, "held by PipelineRun run-multi", "a run for the same workloads is still at work"} {
		if !strings.Contains(r.summary.Error, want) {
			t.Errorf("the other run's error does not say %q: %s", want, r.summary.Error)
		}
	}
	c.wantHolders(map[string]string{LeaseName("billing-db"): ""}) // it took nothing it waited behind
	// Another workload namespace's run for another database does not wait.
	c.mustRun(0, other, "--database-secrets-file", c.secretsFile(`["billing-db"]`), "--workload-namespace", "elsewhere")
	c.mustRun(0, other, "--database-secrets-file", c.secretsFile(`["billing-db"]`), "--workload-namespace", "elsewhere", "--action", "release")

	// Released, every Lease is free, and the single-database run takes its own.
	wantLog(t, c.mustRun(0, multi, "--database-secrets-file", list, "--action", "release"), "gate released")
	c.wantHolders(map[string]string{workloads: "", LeaseName("app-database"): "", LeaseName("orders-db"): ""})
	c.mustRun(0, single)
	c.wantHolder(single)
}

// A run that waits behind one Secret's holder keeps the Leases it took before
// (its retry goes on from there, and its finally frees them); when the holder
// lets go, the retry takes the rest.
func TestClusterSeveralDatabasesPartlyHeld(t *testing.T) {
	c := newCluster(t)
	multi, single := c.pipelineRun("run-multi"), c.pipelineRun("run-single")
	list := c.secretsFile(`["app-database","zz-db"]`)
	c.mustRun(0, single) // holds app-database
	// A Secret sorted after the held one is not taken while it waits.
	r := c.mustRun(failure.CodeTransient, multi, "--database-secrets-file", list, "--timeout", "1s")
	if !strings.Contains(r.summary.Error, "held by PipelineRun run-single") {
		t.Errorf("error %q does not name the holder", r.summary.Error)
	}
	c.wantHolders(map[string]string{WorkloadLeaseName(c.ns): "run-multi", LeaseName(secret): "run-single", LeaseName("zz-db"): ""})
	// Its release frees what it took, and leaves the other run's Lease alone.
	wantLog(t, c.mustRun(0, multi, "--database-secrets-file", list, "--action", "release"), "not this run's to release", "gate released")
	c.wantHolders(map[string]string{WorkloadLeaseName(c.ns): "", LeaseName(secret): "run-single"})
	c.mustRun(0, single, "--action", "release")
	c.mustRun(0, multi, "--database-secrets-file", list)
	c.wantHolders(map[string]string{WorkloadLeaseName(c.ns): "run-multi", LeaseName(secret): "run-multi", LeaseName("zz-db"): "run-multi"})
}

// Two runs over the same databases, listed in opposite orders, started at
// once: the Leases are taken in one order, so one run gets them all and the
// other none of the Secrets' (no deadlock, and no half each).
func TestClusterSeveralDatabasesAtOnce(t *testing.T) {
	c := newCluster(t)
	runs := []*unstructured.Unstructured{c.pipelineRun("run-a"), c.pipelineRun("run-b")}
	lists := []string{c.secretsFile(`["a-db","b-db","c-db"]`), c.secretsFile(`["c-db","b-db","a-db"]`)}
	codes := make([]int, 2)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() { codes[i] = c.run(runs[i], nil, "--database-secrets-file", lists[i], "--timeout", "3s").code })
	}
	wg.Wait()
	if codes[0]+codes[1] != failure.CodeTransient {
		t.Fatalf("exit codes %v: want one 0 and one %d", codes, failure.CodeTransient)
	}
	winner := "run-a"
	if codes[1] == 0 {
		winner = "run-b"
	}
	c.wantHolders(map[string]string{WorkloadLeaseName(c.ns): winner, LeaseName("a-db"): winner, LeaseName("b-db"): winner, LeaseName("c-db"): winner})
}

// The Secrets after the flags (Tekton hands an array result so) are a run over
// several databases as --database-secrets-file is: the same Leases, in the
// same order, freed by a release given them too.
func TestClusterSeveralDatabasesAsArguments(t *testing.T) {
	c := newCluster(t)
	multi := c.pipelineRun("run-multi")
	r := c.runArgs(multi, "--action", "acquire", "orders-db", "app-database")
	if r.code != 0 {
		t.Fatalf("acquire: exit %d %s", r.code, r.summary.Error)
	}
	if i, j := strings.Index(r.stderr, "database-secret=app-database"), strings.Index(r.stderr, "database-secret=orders-db"); i < 0 || i > j {
		t.Errorf("the Secrets' Leases were not taken in sorted order:\n%s", r.stderr)
	}
	c.wantHolders(map[string]string{WorkloadLeaseName(c.ns): "run-multi", LeaseName("app-database"): "run-multi", LeaseName("orders-db"): "run-multi"})
	if r := c.runArgs(multi, "--action", "release", "--task-run", "run-multi-release", "--timeout", "5s", "orders-db", "app-database"); r.code != 0 {
		t.Fatalf("release: exit %d %s", r.code, r.summary.Error)
	}
	c.wantHolders(map[string]string{WorkloadLeaseName(c.ns): "", LeaseName("app-database"): "", LeaseName("orders-db"): ""})
	if r := c.runArgs(multi, "--action", "acquire", "Orders"); r.code != failure.CodeUsage || !strings.Contains(r.summary.Error, "the Secrets after the flags") {
		t.Errorf("a bad Secret after the flags: exit %d %q, want 2", r.code, r.summary.Error)
	}
}

// runArgs is run without the default --database-secret: the Secrets are the
// arguments after the flags.
func (c *cluster) runArgs(pr *unstructured.Unstructured, args ...string) stepRun {
	c.t.Helper()
	c.noSecret = true
	defer func() { c.noSecret = false }()
	return c.run(pr, nil, args...)
}
