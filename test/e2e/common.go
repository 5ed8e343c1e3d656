// Package e2e runs Chartreuse end to end on the real engines (Argo Workflows,
// Tekton) on the local single-node cluster (test/kubeenv), against a real
// PostgreSQL the pods reach on the cluster bridge (test/pgenv).
//
// This file holds what every engine's scenarios (and the demo, test/cmd/demo)
// share: the product image with sample migrations, the sample application, the
// database and its Secret, and a recorder of the application's pods. The
// assertions read the database, the cluster objects and the engine's status.
package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing/fstest"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/pressly/goose/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/chartreuse-go/chartreuse/images/build"
	"github.com/chartreuse-go/chartreuse/test/kubeenv"
	"github.com/chartreuse-go/chartreuse/test/pgenv"
)

// ---------------------------------------------------------------- the image

// MigrationSet is one goose migration directory: file name → content.
type MigrationSet map[string]string

// SetsRoot is where BuildTestImage puts the extra migration sets: /e2e/<set>. Pass
// "/e2e/<set>" as the migrations-dir parameter to use one.
const SetsRoot = "/e2e"

// BuildTestImage builds the product image from the repository (images/build, the
// same image `make image` builds) plus one layer: defaultSet's files at
// /migrations — what an application's `FROM chartreuse` + `COPY` makes — and
// every set of sets at /e2e/<name>/. It writes it, tagged ref, to a tarball in
// dir and returns the tarball's path. One image serves every scenario: each
// picks its set with the migrations-dir parameter.
func BuildTestImage(ctx context.Context, repo, dir, ref string, defaultSet MigrationSet, sets map[string]MigrationSet) (string, error) {
	img, _, err := build.Image(ctx, repo, build.Options{})
	if err != nil {
		return "", err
	}
	entries := []build.Entry{{Path: build.MigrationsDir, Dir: true, Mode: 0o755}}
	for f, body := range defaultSet {
		entries = append(entries, build.Entry{Path: path.Join(build.MigrationsDir, f), Data: []byte(body), Mode: 0o644})
	}
	for s, files := range sets {
		entries = append(entries, build.Entry{Path: path.Join(SetsRoot, s), Dir: true, Mode: 0o755})
		for f, body := range files {
			entries = append(entries, build.Entry{Path: path.Join(SetsRoot, s, f), Data: []byte(body), Mode: 0o644})
		}
	}
	img, err = build.AppendEntries(img, "COPY migrations/ /migrations/ (+ test sets under "+SetsRoot+")", entries)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "chartreuse-e2e.tar")
	if err := build.WriteTarball(img, ref, out); err != nil {
		return "", err
	}
	return out, nil
}

// ReadMigrationSet reads the *.sql files of a directory (e.g. examples/migrations).
func ReadMigrationSet(dir string) (MigrationSet, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.sql"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.sql in %s", dir)
	}
	set := MigrationSet{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		set[filepath.Base(f)] = string(b)
	}
	return set, nil
}

// ---------------------------------------------------------------- the application

// App is a deployed sample application: a Deployment with real pods (kubeenv's
// test-app image), a CronJob and an HPA on the Deployment, all labelled
// app.kubernetes.io/name=<Name> (the workload-selector to stop them by).
type App struct {
	Namespace string
	Name      string
	Selector  string
	Replicas  int32
}

// AppOptions configure DeployApp.
type AppOptions struct {
	Name     string // default "app"
	Image    string // default kubeenv.AppImage (imagePullPolicy Never)
	Replicas int32  // default 2
	// ShutdownDelay is how long a pod keeps running after SIGTERM (the app's
	// APP_SHUTDOWN_DELAY), so stopping takes a realistic moment. Default 2s.
	ShutdownDelay time.Duration
}

// DeployApp creates the application in ns and waits until its pods are ready.
func DeployApp(ctx context.Context, cs kubernetes.Interface, ns string, o AppOptions) (*App, error) {
	if o.Name == "" {
		o.Name = "app"
	}
	if o.Image == "" {
		o.Image = kubeenv.AppImage
	}
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	if o.ShutdownDelay == 0 {
		o.ShutdownDelay = 2 * time.Second
	}
	a := &App{Namespace: ns, Name: o.Name, Selector: "app.kubernetes.io/name=" + o.Name, Replicas: o.Replicas}
	labels := map[string]string{"app.kubernetes.io/name": o.Name}
	podSpec := func(restart corev1.RestartPolicy) corev1.PodSpec {
		return corev1.PodSpec{
			RestartPolicy:                 restart,
			TerminationGracePeriodSeconds: ptr.To(max(int64(30), int64((o.ShutdownDelay+30*time.Second)/time.Second))),
			EnableServiceLinks:            ptr.To(false),
			AutomountServiceAccountToken:  ptr.To(false),
			// Pod Security "restricted", so that its pods start again after a
			// run in a namespace that enforces it (podsecurity_test.go).
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           o.Image,
				ImagePullPolicy: corev1.PullNever,
				Env:             []corev1.EnvVar{{Name: "APP_SHUTDOWN_DELAY", Value: o.ShutdownDelay.String()}},
				Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 1,
				},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("5m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
				}},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		}
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(o.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       podSpec(corev1.RestartPolicyAlways),
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name + "-report", Labels: labels},
		Spec: batchv1.CronJobSpec{
			// What matters is that it is suspended while migrating. Once a year:
			// nightly at 03:17 fired in a CI run that crossed that minute, and its
			// job (the app image, which never ends) held scale-down to its timeout.
			Schedule:          "0 0 1 1 *",
			ConcurrencyPolicy: batchv1.ForbidConcurrent,
			Suspend:           ptr.To(false),
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       podSpec(corev1.RestartPolicyNever),
				}},
			},
		},
	}
	if _, err := cs.BatchV1().CronJobs(ns).Create(ctx, cj, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Labels: labels},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: o.Name},
			MinReplicas:    ptr.To(o.Replicas),
			MaxReplicas:    o.Replicas + 2,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{
					Name:   corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](80)},
				},
			}},
		},
	}
	if _, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	return a, a.WaitReady(ctx, cs, o.Replicas)
}

// WaitReady waits until the Deployment has want ready pods (and no others).
func (a *App) WaitReady(ctx context.Context, cs kubernetes.Interface, want int32) error {
	var last AppState
	for {
		st, err := a.State(ctx, cs)
		if err == nil {
			last = st
			if st.ReadyReplicas == want && st.SpecReplicas == want && len(st.Pods) == int(want) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("app %s/%s: not %d ready pods: %+v: %w", a.Namespace, a.Name, want, last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// AppState is what the scenarios assert about the application.
type AppState struct {
	SpecReplicas  int32
	ReadyReplicas int32
	Generation    int64
	Pods          map[types.UID]string // running or terminating pods of the Deployment → name
	CronSuspended bool
	HPAMin        int32
	HPAMax        int32
	// Annotations are the chartreuse.io/ annotations on the Deployment and the
	// CronJob ("deployment/<key>", "cronjob/<key>").
	Annotations map[string]string
}

// State reads the application's objects and pods.
func (a *App) State(ctx context.Context, cs kubernetes.Interface) (AppState, error) {
	st := AppState{Pods: map[types.UID]string{}, Annotations: map[string]string{}}
	d, err := cs.AppsV1().Deployments(a.Namespace).Get(ctx, a.Name, metav1.GetOptions{})
	if err != nil {
		return st, err
	}
	st.SpecReplicas = ptr.Deref(d.Spec.Replicas, 1)
	st.ReadyReplicas = d.Status.ReadyReplicas
	st.Generation = d.Generation
	for k, v := range d.Annotations {
		if strings.HasPrefix(k, "chartreuse.io/") {
			st.Annotations["deployment/"+k] = v
		}
	}
	cj, err := cs.BatchV1().CronJobs(a.Namespace).Get(ctx, a.Name+"-report", metav1.GetOptions{})
	if err != nil {
		return st, err
	}
	st.CronSuspended = ptr.Deref(cj.Spec.Suspend, false)
	for k, v := range cj.Annotations {
		if strings.HasPrefix(k, "chartreuse.io/") {
			st.Annotations["cronjob/"+k] = v
		}
	}
	h, err := cs.AutoscalingV2().HorizontalPodAutoscalers(a.Namespace).Get(ctx, a.Name, metav1.GetOptions{})
	if err != nil {
		return st, err
	}
	st.HPAMin, st.HPAMax = ptr.Deref(h.Spec.MinReplicas, 1), h.Spec.MaxReplicas
	pods, err := cs.CoreV1().Pods(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: a.Selector})
	if err != nil {
		return st, err
	}
	for _, p := range pods.Items {
		st.Pods[p.UID] = p.Name
	}
	return st, nil
}

// ---------------------------------------------------------------- pods over time

// PodEvent is one change of an application pod seen by a PodWatch.
type PodEvent struct {
	At          time.Time
	Type        watch.EventType // Added, Modified, Deleted
	UID         types.UID
	Name        string
	Ready       bool // the pod's Ready condition is true
	Terminating bool // deletionTimestamp set
}

func podEvent(at time.Time, t watch.EventType, p *corev1.Pod) PodEvent {
	e := PodEvent{At: at, Type: t, UID: p.UID, Name: p.Name, Terminating: p.DeletionTimestamp != nil}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			e.Ready = true
		}
	}
	return e
}

// PodWatch records the application's pods as they come and go, with the time
// each event arrived (the same clock as PostgreSQL's clock_timestamp() on this
// machine).
type PodWatch struct {
	mu     sync.Mutex
	events []PodEvent
	w      watch.Interface
	done   chan struct{}
}

// WatchPods starts recording the pods matching selector in ns.
func WatchPods(ctx context.Context, cs kubernetes.Interface, ns, selector string) (*PodWatch, error) {
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: list.ResourceVersion})
	if err != nil {
		return nil, err
	}
	pw := &PodWatch{w: w, done: make(chan struct{})}
	now := time.Now()
	for _, p := range list.Items {
		pw.events = append(pw.events, podEvent(now, watch.Added, &p))
	}
	go func() {
		defer close(pw.done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			pw.mu.Lock()
			pw.events = append(pw.events, podEvent(time.Now(), ev.Type, p))
			pw.mu.Unlock()
		}
	}()
	return pw, nil
}

// Stop ends the recording.
func (pw *PodWatch) Stop() {
	pw.w.Stop()
	<-pw.done
}

// Events returns what was recorded so far.
func (pw *PodWatch) Events() []PodEvent {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return append([]PodEvent(nil), pw.events...)
}

// Existing returns the pods that existed (added, not yet deleted) at t.
func (pw *PodWatch) Existing(t time.Time) map[types.UID]string {
	m := map[types.UID]string{}
	for _, e := range pw.Events() {
		if e.At.After(t) {
			break
		}
		switch e.Type {
		case watch.Added, watch.Modified:
			m[e.UID] = e.Name
		case watch.Deleted:
			delete(m, e.UID)
		}
	}
	return m
}

// Window is the application's downtime as its pods show it: from the moment
// the first pod that existed at start began terminating (or was deleted) to the
// moment the first new pod was Ready; zero times when that did not happen.
func (pw *PodWatch) Window(start time.Time) (down, up time.Time) {
	before := pw.Existing(start)
	for _, e := range pw.Events() {
		_, old := before[e.UID]
		if down.IsZero() && old && (e.Terminating || e.Type == watch.Deleted) {
			down = e.At
		}
		if !down.IsZero() && !old && e.Ready && e.Type != watch.Deleted {
			return down, e.At
		}
	}
	return down, time.Time{}
}

// FirstNewReady is the first pod that did not exist at start to become Ready:
// when it was first seen and when it was Ready (zero times if none was).
func (pw *PodWatch) FirstNewReady(start time.Time) (seen, ready time.Time) {
	before := pw.Existing(start)
	first := map[types.UID]time.Time{}
	for _, e := range pw.Events() {
		if _, old := before[e.UID]; old || e.Type == watch.Deleted {
			continue
		}
		if _, ok := first[e.UID]; !ok {
			first[e.UID] = e.At
		}
		if e.Ready {
			return first[e.UID], e.At
		}
	}
	return time.Time{}, time.Time{}
}

// LastDeleted returns when the last of pods was deleted (zero if one never was).
func (pw *PodWatch) LastDeleted(pods map[types.UID]string) time.Time {
	var last time.Time
	gone := map[types.UID]bool{}
	for _, e := range pw.Events() {
		if _, ok := pods[e.UID]; ok && e.Type == watch.Deleted {
			gone[e.UID] = true
			if e.At.After(last) {
				last = e.At
			}
		}
	}
	if len(gone) != len(pods) {
		return time.Time{}
	}
	return last
}

// ---------------------------------------------------------------- the database

// Database is one database of the test PostgreSQL.
type Database struct {
	Server *pgenv.Server
	Name   string
}

// URL is the superuser URL the pods use (the server listens on the bridge).
func (d Database) URL() string { return d.Server.URL(d.Name) }

func (d Database) open() (*sql.DB, error) { return sql.Open("pgx", d.URL()) }

// Exec runs statements on the database.
func (d Database) Exec(ctx context.Context, q string, args ...any) error {
	return d.Server.Exec(ctx, d.Name, q, args...)
}

// AppliedVersions lists goose's applied versions (goose_db_version rows with
// is_applied, version 0 excluded), in order, with duplicates kept so a
// migration applied twice shows twice. A missing table means none.
func (d Database) AppliedVersions(ctx context.Context) ([]int64, error) {
	db, err := d.open()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT version_id, is_applied FROM goose_db_version WHERE version_id > 0 ORDER BY id`)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return nil, nil
		}
		return nil, err
	}
	defer rows.Close()
	// goose records a rollback as a row with is_applied=false.
	var applied []int64
	for rows.Next() {
		var v int64
		var ok bool
		if err := rows.Scan(&v, &ok); err != nil {
			return nil, err
		}
		if ok {
			applied = append(applied, v)
			continue
		}
		for i := len(applied) - 1; i >= 0; i-- {
			if applied[i] == v {
				applied = append(applied[:i], applied[i+1:]...)
				break
			}
		}
	}
	return applied, rows.Err()
}

// Version is the highest applied version (0 when none).
func (d Database) Version(ctx context.Context) (int64, error) {
	vs, err := d.AppliedVersions(ctx)
	if err != nil {
		return 0, err
	}
	var max int64
	for _, v := range vs {
		if v > max {
			max = v
		}
	}
	return max, nil
}

// TableExists reports whether public.<name> exists.
func (d Database) TableExists(ctx context.Context, name string) (bool, error) {
	db, err := d.open()
	if err != nil {
		return false, err
	}
	defer db.Close()
	var ok bool
	err = db.QueryRowContext(ctx, `SELECT to_regclass('public.' || $1) IS NOT NULL`, name).Scan(&ok)
	return ok, err
}

// MigrationLog reads the chartreuse_e2e_log table the test migrations write
// (INSERT INTO chartreuse_e2e_log VALUES ('<version>', clock_timestamp())):
// version → when it ran. A missing table means none ran.
func (d Database) MigrationLog(ctx context.Context) (map[string]time.Time, error) {
	db, err := d.open()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT version, at FROM chartreuse_e2e_log ORDER BY at`)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return map[string]time.Time{}, nil
		}
		return nil, err
	}
	defer rows.Close()
	m := map[string]time.Time{}
	for rows.Next() {
		var v string
		var at time.Time
		if err := rows.Scan(&v, &at); err != nil {
			return nil, err
		}
		if _, dup := m[v]; dup {
			return nil, fmt.Errorf("migration %s ran twice", v)
		}
		m[v] = at
	}
	return m, rows.Err()
}

// HoldLock takes migrate's advisory lock (4097083626, goose's default) on a
// session of its own, as another migrator would, and returns a function that
// releases it (and closes the session).
func (d Database) HoldLock(ctx context.Context) (release func(), err error) {
	db, err := d.open()
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(4097083626)`); err != nil {
		conn.Close()
		db.Close()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			_, _ = conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock(4097083626)`)
			conn.Close()
			db.Close()
		})
	}, nil
}

// MigrateTo applies set up to version with the goose library (as a person or an
// earlier release would have), to give a scenario its starting point.
func (d Database) MigrateTo(ctx context.Context, set MigrationSet, version int64) error {
	db, err := d.open()
	if err != nil {
		return err
	}
	defer db.Close()
	fsys := fstest.MapFS{}
	for f, body := range set {
		fsys[f] = &fstest.MapFile{Data: []byte(body), Mode: 0o644}
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys)
	if err != nil {
		return err
	}
	_, err = p.UpTo(ctx, version)
	return err
}

// CreateSecret stores a database URL in a Secret (key "url"), as the
// WorkflowTemplate's and the Pipeline's database-secret parameter expects.
func CreateSecret(ctx context.Context, cs kubernetes.Interface, ns, name, url string) error {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{"url": url},
	}
	_, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = cs.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
	}
	return err
}

// ---------------------------------------------------------------- sample migrations

// LoggedMigration is a goose migration that creates table, records when it ran
// in chartreuse_e2e_log (so a test can compare that moment with the pods'
// comings and goings) and drops the table on the way down.
func LoggedMigration(version, table string) string {
	return fmt.Sprintf(`-- +goose Up
CREATE TABLE IF NOT EXISTS chartreuse_e2e_log (version text PRIMARY KEY, at timestamptz NOT NULL);
INSERT INTO chartreuse_e2e_log VALUES ('%[1]s', clock_timestamp());
CREATE TABLE %[2]s (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now());

-- +goose Down
DROP TABLE %[2]s;
DELETE FROM chartreuse_e2e_log WHERE version = '%[1]s';
`, version, table)
}

// BrokenMigration fails with an SQL error (a column that does not exist) after
// creating a table, inside its transaction: nothing of it stays.
func BrokenMigration(table string) string {
	return fmt.Sprintf(`-- +goose Up
CREATE TABLE %[1]s (id bigserial PRIMARY KEY);
ALTER TABLE %[1]s ADD CONSTRAINT %[1]s_check CHECK (no_such_column > 0);

-- +goose Down
DROP TABLE %[1]s;
`, table)
}

// Files returns the set's file names, sorted.
func (s MigrationSet) Files() []string {
	out := make([]string, 0, len(s))
	for f := range s {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// ErrNotReady is returned by Poll when the condition never held.
var ErrNotReady = errors.New("condition not met")

// Poll calls cond every interval until it returns true or an error, or ctx ends.
func Poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
		case <-time.After(interval):
		}
	}
}
