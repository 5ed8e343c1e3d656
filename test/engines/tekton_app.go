package engines

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// The sample application the Tekton scenarios migrate: a Deployment with real
// pods (kubeenv's test-app image), a CronJob and an HPA on the Deployment, all
// labelled app.kubernetes.io/name=<name>, the selector the Pipeline's
// workload-selector stops. The defaults match tekton/triggers/triggertemplate.yaml
// (name "app", database Secret "app-database" with key "url").

// TektonApp is a deployed sample application.
type TektonApp struct {
	Namespace string
	Name      string // Deployment, CronJob and HPA name, and the label value
	Selector  string // app.kubernetes.io/name=<Name>
	Replicas  int32
}

// TektonAppOptions configure DeployTektonApp.
type TektonAppOptions struct {
	Name     string // default "app"
	Image    string // the app image (kubeenv.AppImage), imagePullPolicy Never
	Replicas int32  // default 2
}

// DeployTektonApp creates the application and waits until its pods are ready.
func DeployTektonApp(ctx context.Context, cs kubernetes.Interface, ns string, o TektonAppOptions) (*TektonApp, error) {
	if o.Name == "" {
		o.Name = "app"
	}
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	if o.Image == "" {
		return nil, fmt.Errorf("DeployTektonApp: no image")
	}
	a := &TektonApp{Namespace: ns, Name: o.Name, Selector: "app.kubernetes.io/name=" + o.Name, Replicas: o.Replicas}
	labels := map[string]string{"app.kubernetes.io/name": o.Name}
	podSpec := func(restart corev1.RestartPolicy) corev1.PodSpec {
		return corev1.PodSpec{
			RestartPolicy:                 restart,
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			EnableServiceLinks:            ptr.To(false),
			AutomountServiceAccountToken:  ptr.To(false),
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           o.Image,
				ImagePullPolicy: corev1.PullNever,
				Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 1,
				},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("5m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
				}},
			}},
		}
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(o.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec(corev1.RestartPolicyAlways)},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Labels: labels},
		Spec: batchv1.CronJobSpec{
			Schedule: "0 0 1 1 *", // never during a test
			Suspend:  ptr.To(false),
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": o.Name + "-job"}}, Spec: podSpec(corev1.RestartPolicyNever)},
			}},
		},
	}
	if _, err := cs.BatchV1().CronJobs(ns).Create(ctx, cj, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Labels: labels},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: o.Name},
			MinReplicas:    ptr.To[int32](1),
			MaxReplicas:    o.Replicas + 2,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](80)},
			}}},
		},
	}
	if _, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	return a, a.WaitReady(ctx, cs)
}

// WaitReady waits until the Deployment runs its desired replicas, all ready
// and updated, with exactly that many pods.
func (a *TektonApp) WaitReady(ctx context.Context, cs kubernetes.Interface) error {
	var last string
	for {
		d, err := cs.AppsV1().Deployments(a.Namespace).Get(ctx, a.Name, metav1.GetOptions{})
		if err == nil {
			want := *d.Spec.Replicas
			pods, perr := a.Pods(ctx, cs)
			if perr == nil && want > 0 && d.Status.ObservedGeneration >= d.Generation && d.Status.ReadyReplicas == want &&
				d.Status.UpdatedReplicas == want && int32(len(pods)) == want {
				return nil
			}
			last = fmt.Sprintf("replicas %d, ready %d, pods %d", want, d.Status.ReadyReplicas, len(pods))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("app %s/%s not ready: %s", a.Namespace, a.Name, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Pods lists the Deployment's pods (not terminated ones).
func (a *TektonApp) Pods(ctx context.Context, cs kubernetes.Interface) ([]corev1.Pod, error) {
	l, err := cs.CoreV1().Pods(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: a.Selector})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// TektonAppState is what a scenario checks on the workloads.
type TektonAppState struct {
	Replicas    int32 // Deployment spec.replicas
	Suspended   bool  // CronJob spec.suspend
	Annotations map[string]string
	CronJobAnn  map[string]string
	HPAExists   bool
}

// State reads the workloads.
func (a *TektonApp) State(ctx context.Context, cs kubernetes.Interface) (TektonAppState, error) {
	var s TektonAppState
	d, err := cs.AppsV1().Deployments(a.Namespace).Get(ctx, a.Name, metav1.GetOptions{})
	if err != nil {
		return s, err
	}
	s.Replicas, s.Annotations = *d.Spec.Replicas, d.Annotations
	cj, err := cs.BatchV1().CronJobs(a.Namespace).Get(ctx, a.Name, metav1.GetOptions{})
	if err != nil {
		return s, err
	}
	s.Suspended, s.CronJobAnn = cj.Spec.Suspend != nil && *cj.Spec.Suspend, cj.Annotations
	_, err = cs.AutoscalingV2().HorizontalPodAutoscalers(a.Namespace).Get(ctx, a.Name, metav1.GetOptions{})
	s.HPAExists = err == nil
	return s, nil
}

// CreateDatabaseSecret creates a Secret holding the database URL under key "url".
func CreateDatabaseSecret(ctx context.Context, cs kubernetes.Interface, ns, name, url string) error {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		StringData: map[string]string{"url": url},
	}
	_, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{})
	return err
}

// PodEvent is one observed change of an application pod.
type PodEvent struct {
	At      time.Time
	Type    watch.EventType
	UID     types.UID
	Name    string
	Running bool // phase Running and not being deleted
}

// PodRecorder records, with the time it saw them, every change of the pods
// matching a selector, so a scenario can check when they existed.
type PodRecorder struct {
	mu     sync.Mutex
	events []PodEvent
	stop   context.CancelFunc
	done   chan struct{}
}

// RecordPods starts watching the pods of selector in ns (from the current
// state on: the initial pods are recorded as ADDED).
func RecordPods(ctx context.Context, cs kubernetes.Interface, ns, selector string) (*PodRecorder, error) {
	l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	r := &PodRecorder{done: make(chan struct{})}
	now := time.Now()
	for i := range l.Items {
		r.add(now, watch.Added, &l.Items[i])
	}
	wctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	rv := l.ResourceVersion
	go func() {
		defer close(r.done)
		for wctx.Err() == nil {
			w, err := cs.CoreV1().Pods(ns).Watch(wctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				rv = p.ResourceVersion
				if ev.Type == watch.Bookmark {
					continue
				}
				r.add(time.Now(), ev.Type, p)
			}
		}
	}()
	return r, nil
}

func (r *PodRecorder) add(at time.Time, t watch.EventType, p *corev1.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, PodEvent{At: at, Type: t, UID: p.UID, Name: p.Name,
		Running: t != watch.Deleted && p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning})
}

// Stop ends the watch.
func (r *PodRecorder) Stop() {
	r.stop()
	<-r.done
}

// Events returns a copy of what was recorded.
func (r *PodRecorder) Events() []PodEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]PodEvent(nil), r.events...)
}

// Existing returns the pods (by UID) that existed, not yet deleted, at time t
// according to the recording.
func (r *PodRecorder) Existing(t time.Time) map[types.UID]string {
	out := map[types.UID]string{}
	for _, e := range r.Events() {
		if e.At.After(t) {
			break
		}
		if e.Type == watch.Deleted {
			delete(out, e.UID)
		} else {
			out[e.UID] = e.Name
		}
	}
	return out
}

// LastDeleted returns when the last of the given pods was seen deleted (zero
// if one of them never was).
func (r *PodRecorder) LastDeleted(uids []types.UID) time.Time {
	var last time.Time
	for _, u := range uids {
		var at time.Time
		for _, e := range r.Events() {
			if e.UID == u && e.Type == watch.Deleted {
				at = e.At
			}
		}
		if at.IsZero() {
			return time.Time{}
		}
		if at.After(last) {
			last = at
		}
	}
	return last
}

// FirstAdded returns when the first pod not in old was seen (zero if none).
func (r *PodRecorder) FirstAdded(old []types.UID) time.Time {
	known := map[types.UID]bool{}
	for _, u := range old {
		known[u] = true
	}
	for _, e := range r.Events() {
		if !known[e.UID] && e.Type == watch.Added {
			return e.At
		}
	}
	return time.Time{}
}
