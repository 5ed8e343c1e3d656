package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// What the failure-path scenarios of both engines (argo_failure_test.go,
// tekton_failure_test.go) share: migrations that take a while, a session of
// the test that queues for migrate's advisory lock, a real eviction, and
// helpers that wait for a workload's scale-down record or break its
// readiness.

// SlowMigration is LoggedMigration that first sleeps for d (inside its
// transaction), so that a test can act while it runs.
func SlowMigration(version, table string, d time.Duration) string {
	return strings.Replace(LoggedMigration(version, table), "-- +goose Up\n",
		fmt.Sprintf("-- +goose Up\nSELECT pg_sleep(%g);\n", d.Seconds()), 1)
}

// SlowBrokenMigration is BrokenMigration that first sleeps for d.
func SlowBrokenMigration(table string, d time.Duration) string {
	return strings.Replace(BrokenMigration(table), "-- +goose Up\n",
		fmt.Sprintf("-- +goose Up\nSELECT pg_sleep(%g);\n", d.Seconds()), 1)
}

// WaitingMigration is LoggedMigration that first waits, inside its
// transaction, until the test creates the table signal (at most 15 minutes: 5 ran out once on the loaded CI node while another run went first), so
// that a test decides when it goes on. It reads pg_class with a query (a new
// snapshot each time round), not to_regclass, whose catalog cache does not see
// the new table while the transaction takes no lock.
func WaitingMigration(version, table, signal string) string {
	return strings.Replace(LoggedMigration(version, table), "-- +goose Up\n", fmt.Sprintf(`-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
  FOR i IN 1..4500 LOOP
    EXIT WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relname = '%s');
    PERFORM pg_sleep(0.2);
  END LOOP;
END $$;
-- +goose StatementEnd
`, signal), 1)
}

// heldByAnnotation lists the runs holding a workload stopped (pkg/workload.AnnotationHeldBy).
const heldByAnnotation = "chartreuse.io/held-by"

// holderFor is run's entry among the holders of a workload it stopped for dbs:
// its uid, its creation time in Unix seconds, its databases.
func holderFor(run metav1.Object, dbs string) string {
	return fmt.Sprintf("%s@%d:%s", run.GetUID(), run.GetCreationTimestamp().Unix(), dbs)
}

// badParameters are typos in the enum-like parameters, one run each: every one
// must fail the run before anything changes.
func badParameters() []map[string]string {
	return []map[string]string{
		{"stop-workloads": "True"},
		{"stop-workloads": "yes"},
		{"stop-workloads": "Auto"},
		{"patroni": "1"},
		{"on-migrate-failure": "Rollback"},
		{"wait-ready": "yes"},
		// strconv.ParseBool would take "False" and "0": the guard refuses them
		{"allow-empty-database": "False"},
		{"allow-out-of-order": "yes"},
		{"log-format": "JSON"},
		// Durations (Argo's guard, Tekton's gate task): restore-time ones were
		// once read first by scale-restore, after migrate, the application stopped.
		{"ready-timeout": "5 minutes"},
		{"ready-timeout": "0.1ns"}, // 0 to the steps: once passed Argo's guard
		{"retry-transient-for": "-1s"},
		{"lock-wait": "1d"},
		// A misspelt name: both engines pass an undeclared parameter on silently,
		// so the default (keep-down) would stay in force.
		{"on-migrate-falure": "rollback"},
		// A combination: after a failure neither restore nor rollback could tell
		// that a migration below the current version was applied.
		{"allow-out-of-order": "true", "on-migrate-failure": "rollback"},
	}
}

// migrationLockID is the key of migrate's session-level advisory lock
// (pkg/migrate.LockID, goose's default).
const migrationLockID = 4097083626

// sleeping reports whether a session of the database is inside pg_sleep (a
// SlowMigration or SlowBrokenMigration running).
func (d Database) sleeping(ctx context.Context) (bool, error) {
	db, err := d.open()
	if err != nil {
		return false, err
	}
	defer db.Close()
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%pg_sleep%'`).Scan(&n)
	return n > 0, err
}

// waitSleeping waits until a migration of the database is inside its pg_sleep.
func (d Database) waitSleeping(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := Poll(ctx, 100*time.Millisecond, func() (bool, error) { return d.sleeping(ctx) }); err != nil {
		t.Fatalf("no migration started sleeping: %v", err)
	}
}

// lockQueue is a session of the test that asked for migrate's advisory lock
// (pg_advisory_lock, which waits): it is in PostgreSQL's queue for the lock
// before any later asker, so it gets it as soon as the holder lets go.
type lockQueue struct {
	db   *sql.DB
	conn *sql.Conn
	pid  int
	done chan struct{} // closed when pg_advisory_lock returned
	err  error         // its error, set before done is closed
	once sync.Once
}

// queueForLock asks for the lock on a session of its own and returns once
// PostgreSQL shows the request (granted or waiting). The lock is released when
// the test ends, if not before.
func (d Database) queueForLock(t *testing.T, ctx context.Context) *lockQueue {
	t.Helper()
	db, err := d.open()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	q := &lockQueue{db: db, conn: conn, done: make(chan struct{})}
	if err := conn.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&q.pid); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.release)
	go func() {
		defer close(q.done)
		_, q.err = conn.ExecContext(context.Background(), `SELECT pg_advisory_lock($1)`, int64(migrationLockID))
	}()
	err = Poll(ctx, 50*time.Millisecond, func() (bool, error) {
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid::bigint = $1 AND pid = $2`,
			int64(migrationLockID), q.pid).Scan(&n)
		return n > 0, err
	})
	if err != nil {
		t.Fatalf("the test's lock request never showed in pg_locks: %v", err)
	}
	return q
}

// wait waits until the test's session holds the lock.
func (q *lockQueue) wait(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-q.done:
		if q.err != nil {
			t.Fatalf("pg_advisory_lock: %v", q.err)
		}
	case <-ctx.Done():
		t.Fatalf("the test never got the migration lock: %v", ctx.Err())
	}
}

// release lets the lock go, or stops asking for it, and ends the session; safe
// to call twice.
func (q *lockQueue) release() {
	q.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		select {
		case <-q.done:
		default:
			// Still waiting: cancel the request from another session.
			_, _ = q.db.ExecContext(ctx, `SELECT pg_cancel_backend($1)`, q.pid)
			<-q.done
		}
		if q.err == nil {
			_, _ = q.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, int64(migrationLockID))
		}
		q.conn.Close()
		q.db.Close()
	})
}

// retryingLine is what a step logs when it tries again after a transient
// failure (--retry-transient-for).
const retryingLine = "transient failure: trying again"

// releaseWhenRetried releases lock once retrying reports that the step said it
// is trying again, or once done reports the run over, polling both; the
// returned function waits for that and reports whether the step retried.
func releaseWhenRetried(ctx context.Context, lock *lockQueue, retrying, done func(context.Context) bool) func() bool {
	seen := make(chan bool, 1)
	go func() {
		defer lock.release()
		for ctx.Err() == nil {
			if retrying(ctx) {
				seen <- true
				return
			}
			if done(ctx) {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		seen <- false
	}()
	var once sync.Once
	var retried bool
	return func() bool {
		once.Do(func() { retried = <-seen })
		return retried
	}
}

// evict evicts a pod the way kubectl drain does: a policy/v1 Eviction, which
// the API server turns into a graceful deletion (SIGTERM, which the steps
// answer with exit 75, then the pod is gone).
func evict(ctx context.Context, kube kubernetes.Interface, ns, pod string) error {
	return kube.CoreV1().Pods(ns).EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: ns}})
}

// logContains reports whether a container's log holds s.
func logContains(ctx context.Context, kube kubernetes.Interface, ns, pod, container, s string) (bool, error) {
	raw, err := kube.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	if err != nil {
		return false, nil // not started yet, or gone: not there (yet)
	}
	return strings.Contains(string(raw), s), nil
}

// recordAnnotation is the annotation scale-down writes first on a Deployment it
// stops (its replicas before).
const recordAnnotation = "chartreuse.io/replicas-before-migration"

// runUIDAnnotation names the run that stopped a workload (scale-down --run-uid).
const runUIDAnnotation = "chartreuse.io/scaled-down-by-run-uid"

// waitStopped waits until scale-down has recorded and stopped the Deployment
// (replicas 0 with its record); its pods may still be terminating.
func waitStopped(t *testing.T, ctx context.Context, kube kubernetes.Interface, ns, name string) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	err := Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		var err error
		d, err = kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return ptr.Deref(d.Spec.Replicas, 1) == 0 && d.Annotations[recordAnnotation] != "", nil
	})
	if err != nil {
		t.Fatalf("Deployment %s was never stopped by scale-down: %v", name, err)
	}
	return d
}

// breakReadiness changes the Deployment's pod template so that new pods never
// become ready (the readiness probe asks a port nothing listens on), as a bad
// release of the application would.
func breakReadiness(ctx context.Context, kube kubernetes.Interface, ns, name string) error {
	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"app","readinessProbe":{"httpGet":{"path":"/readyz","port":8081}}}]}}}}`
	_, err := kube.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}
