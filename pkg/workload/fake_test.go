package workload

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/chartreuse-go/chartreuse/test/syncbuf"
)

const testNS = "shop"

// inBubble runs a fake-client test in a synctest bubble, in parallel with the
// other tests. clock.RealClock reads the bubble's clock there: timeouts,
// backoffs, progress tickers and the informers' timers advance only once every
// goroutine of the test waits, so no test waits in real time and none depends on
// how fast the machine is. A test's goroutines must all end before it does.
func inBubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	t.Parallel()
	synctest.Test(t, f)
}

func deployment(name string, replicas int32, ann map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Annotations: ann, Labels: map[string]string{"part-of": "shop"}, UID: types.UID("uid-" + name)},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
		},
	}
}

func statefulSet(name string, replicas int32, ann map[string]string) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Annotations: ann, Labels: map[string]string{"part-of": "shop"}, UID: types.UID("uid-" + name)},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
		},
	}
}

func cronJob(name string, suspend bool, ann map[string]string) *batchv1.CronJob {
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Annotations: ann, Labels: map[string]string{"part-of": "shop"}, UID: types.UID("uid-" + name)},
		Spec:       batchv1.CronJobSpec{Schedule: "*/5 * * * *", Suspend: ptr.To(suspend)},
	}
}

func pod(name, app string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Labels: map[string]string{"app": app}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func testLogger(t *testing.T) (*slog.Logger, *syncbuf.Buffer) {
	buf := &syncbuf.Buffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// newFake returns a fake clientset that, like the API server, names objects
// created with generateName (Events).
func newFake(objs ...runtime.Object) *fake.Clientset {
	cs := fake.NewClientset(objs...)
	var n atomic.Int64
	cs.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj := a.(k8stesting.CreateAction).GetObject()
		if m, err := meta.Accessor(obj); err == nil && m.GetName() == "" && m.GetGenerateName() != "" {
			m.SetName(fmt.Sprintf("%s%05d", m.GetGenerateName(), n.Add(1)))
		}
		return false, nil, nil
	})
	return cs
}

func newDowner(t *testing.T, cs *fake.Clientset) (*Downer, *syncbuf.Buffer) {
	log, buf := testLogger(t)
	return &Downer{
		Client: cs, Namespace: testNS, RunID: "wf-1", Timeout: 5 * time.Second, ProgressEvery: time.Second,
		Clock: clock.RealClock{}, Log: log, Backoffs: testBackoffs,
	}, buf
}

func newRestorer(t *testing.T, cs *fake.Clientset) (*Restorer, *syncbuf.Buffer) {
	log, buf := testLogger(t)
	return &Restorer{
		Client: cs, Namespace: testNS, RunID: "wf-1", Timeout: 5 * time.Second, ReadyTimeout: 5 * time.Second, ProgressEvery: time.Second,
		Clock: clock.RealClock{}, Log: log, Backoffs: testBackoffs,
	}, buf
}

// testBackoffs keep the fake-client tests quick: 4 attempts after conflicts,
// retries every 5 ms while the API server does not answer.
var testBackoffs = Backoffs{
	Conflict: wait.Backoff{Steps: 4, Duration: time.Millisecond},
	Outage:   wait.Backoff{Steps: 1 << 30, Duration: 5 * time.Millisecond},
}

func getDeployment(t *testing.T, cs *fake.Clientset, name string) *appsv1.Deployment {
	t.Helper()
	d, err := cs.AppsV1().Deployments(testNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func getStatefulSet(t *testing.T, cs *fake.Clientset, name string) *appsv1.StatefulSet {
	t.Helper()
	s, err := cs.AppsV1().StatefulSets(testNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func getCronJob(t *testing.T, cs *fake.Clientset, name string) *batchv1.CronJob {
	t.Helper()
	c, err := cs.BatchV1().CronJobs(testNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// patches lists the patch actions as "resource[/sub] name".
func patches(cs *fake.Clientset) []string {
	var out []string
	for _, a := range cs.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok && a.GetVerb() == "patch" {
			r := p.GetResource().Resource
			if s := a.GetSubresource(); s != "" {
				r += "/" + s
			}
			out = append(out, r+" "+p.GetName())
		}
	}
	return out
}

func events(t *testing.T, cs *fake.Clientset) []corev1.Event {
	t.Helper()
	l, err := cs.CoreV1().Events(testNS).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func sel(t *testing.T, selector string, refs ...string) Selection {
	t.Helper()
	o := &SelectOptions{Selector: selector}
	for _, r := range refs {
		_ = o.Workloads.Set(r)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	return o.Selection()
}

func metav1UpdateOptions() metav1.UpdateOptions { return metav1.UpdateOptions{} }
