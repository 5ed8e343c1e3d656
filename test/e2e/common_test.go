package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// runBound bounds a wait that spans the pods of a run, up to a whole run (a
// scenario of two runs one after the other takes 2 * runBound): a bound
// against hangs, not a target. Alone a run takes 1 to 3 minutes; in the CI's
// shared 2-core node (load above 20) each pod took one to two minutes to
// start, and waits of 4, 8 and 10 minutes ran out with the runs still going
// (ci17b; the stop of 5d12c81; ci18a, where Tekton's suite took 40 minutes).
const runBound = 15 * time.Minute

// TestMain (kubeenv.Main: one shared cluster for the package) is in
// tekton_helpers_test.go.

// StartPostgres starts a PostgreSQL the pods can reach: it listens on the cluster
// bridge address only and lets the pod network in with the password. It is
// stopped (by PID) when the test ends.
func StartPostgres(t testing.TB, env *kubeenv.Env) *pgenv.Server {
	t.Helper()
	s, err := pgenv.Start(pgenv.Options{Listen: env.BridgeIP, AllowCIDRs: []string{env.State().PodCIDR}})
	if err != nil {
		t.Fatalf("PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- PostgreSQL log:\n%s", s.LogTail())
		}
		s.Stop()
	})
	return s
}

// NewDatabase creates a database for one scenario, dropped when the test ends.
func NewDatabase(t testing.TB, s *pgenv.Server, prefix string) Database {
	t.Helper()
	name, err := s.CreateDatabase(t.Context(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.DropDatabase(context.Background(), name); err != nil {
			t.Logf("dropping %s: %v (the server is removed with the test anyway)", name, err)
		}
	})
	return Database{Server: s, Name: name}
}

// BuildAndLoadTestImage builds the test image ref (BuildTestImage) and loads
// it into env, logging how long it took under the engine's name.
func BuildAndLoadTestImage(ctx context.Context, t testing.TB, env *kubeenv.Env, engine, repo, ref string, defaultSet MigrationSet, sets map[string]MigrationSet) error {
	t0 := time.Now()
	tar, err := BuildTestImage(ctx, repo, t.TempDir(), ref, defaultSet, sets)
	if err == nil {
		err = env.LoadImage(ctx, tar)
	}
	t.Logf("%s: image %s built and loaded in %s", engine, ref, time.Since(t0).Round(100*time.Millisecond))
	return err
}

// appState reads the state of app, failing the test on an error.
func appState(t testing.TB, kube kubernetes.Interface, app *App) AppState {
	t.Helper()
	st, err := app.State(t.Context(), kube)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// wantAppRestored: the application runs as before, with no record left and
// the HPA untouched.
func wantAppRestored(t testing.TB, kube kubernetes.Interface, app *App) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := app.WaitReady(ctx, kube, app.Replicas); err != nil {
		t.Error(err)
	}
	st := appState(t, kube, app)
	if st.CronSuspended {
		t.Error("CronJob still suspended")
	}
	if len(st.Annotations) != 0 {
		t.Errorf("records left on the workloads: %v", st.Annotations)
	}
	if st.HPAMin != app.Replicas || st.HPAMax != app.Replicas+2 {
		t.Errorf("HPA changed: min %d max %d", st.HPAMin, st.HPAMax)
	}
}

// wantAppStopped: the application is stopped, no pod left, the record in place.
func wantAppStopped(t testing.TB, kube kubernetes.Interface, app *App) {
	t.Helper()
	st := appState(t, kube, app)
	if st.SpecReplicas != 0 || len(st.Pods) != 0 {
		t.Errorf("Deployment: %d replicas, pods %v; want 0 and none", st.SpecReplicas, st.Pods)
	}
	if !st.CronSuspended {
		t.Error("CronJob not suspended")
	}
	if st.Annotations["deployment/chartreuse.io/replicas-before-migration"] != fmt.Sprint(app.Replicas) {
		t.Errorf("Deployment's record: %v", st.Annotations)
	}
}
