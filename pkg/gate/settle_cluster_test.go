package gate

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
	"github.com/chartreuse-go/chartreuse/pkg/podaddr"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
)

// workflowPod creates a pod labelled as Argo labels the pods of the workflow
// wf, owned by owner (a ConfigMap standing in for the Workflow: the collector
// keeps a pod whose owner exists), that never starts (see pod).
func (c *cluster) workflowPod(wf string, owner *corev1.ConfigMap, onExit bool) string {
	c.t.Helper()
	labels := map[string]string{labelWorkflow: wf, "chartreuse.io/changes-database": "true"}
	if onExit {
		labels[labelOnExit] = "true"
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: wf + "-", Labels: labels, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID,
		}}},
		Spec: corev1.PodSpec{
			SchedulerName:                 "chartreuse-test-no-scheduler",
			Containers:                    []corev1.Container{{Name: "main", Image: "chartreuse.invalid/never-pulled:1", ImagePullPolicy: corev1.PullNever}},
			TerminationGracePeriodSeconds: new(int64),
		},
	}
	created, err := c.cs.CoreV1().Pods(c.ns).Create(c.t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return created.Name
}

func (c *cluster) owner(name string) *corev1.ConfigMap {
	c.t.Helper()
	cm, err := c.cs.CoreV1().ConfigMaps(c.ns).Create(c.t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return cm
}

// ended gives the pod a final phase, as the kubelet does when its containers
// have stopped.
func (c *cluster) ended(name string, phase corev1.PodPhase) {
	c.t.Helper()
	p, err := c.cs.CoreV1().Pods(c.ns).Get(c.t.Context(), name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	p.Status.Phase = phase
	if _, err := c.cs.CoreV1().Pods(c.ns).UpdateStatus(c.t.Context(), p, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) settle(wf string, uid types.UID, timeout string) stepRun {
	c.t.Helper()
	args := []string{"--action", ActionSettle, "--timeout", timeout, "--pod-selector", "chartreuse.io/changes-database=true"}
	return c.run(nil, nil, append([]string{"--run-name", wf, "--run-uid", string(uid)}, args...)...)
}

// Argo's exit handler must not end the run while a stopped step's pod is still
// at work (after argo stop Argo marks the step failed before its pod has
// stopped). settle waits for the workflow's own pods outside the exit handler,
// and for no other: not the exit handler's (itself among them), not a finished
// one, not one of another workflow that had the same name.
func TestClusterSettleWaitsForTheWorkflowsPods(t *testing.T) {
	c := newCluster(t)
	// as the WorkflowTemplate runs it: chartreuse-migrate's Role (test/rbacrules'
	// Migrate, which imports this package), nothing more
	var rules []rbacv1.PolicyRule
	for _, doc := range [][]byte{podaddr.RoleYAML, workload.StoppedRoleYAML} {
		var r rbacv1.Role
		if err := yaml.UnmarshalStrict(doc, &r); err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r.Rules...)
	}
	c.identity = c.env.ServiceAccountKubeconfig(t, c.ns, "chartreuse-migrate", &rbacv1.Role{Rules: rules})
	wf := c.owner("wf")
	migrate := c.workflowPod("wf", wf, false)
	done := c.workflowPod("wf", wf, false)
	c.ended(done, corev1.PodFailed)
	exit := c.workflowPod("wf", wf, true)
	earlier := c.owner("wf-earlier")
	sameName := c.workflowPod("wf", earlier, false)
	other := c.workflowPod("other", c.owner("other"), false)
	unselected := c.workflowPod("wf", wf, false) // a scale-down, say: not waited for
	p, err := c.cs.CoreV1().Pods(c.ns).Get(t.Context(), unselected, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(p.Labels, "chartreuse.io/changes-database")
	if _, err := c.cs.CoreV1().Pods(c.ns).Update(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	r := c.settle("wf", wf.UID, "1s")
	if r.code != failure.CodeTransient {
		t.Fatalf("settle with a pod still running exited %d, want %d: %s\n%s", r.code, failure.CodeTransient, r.summary.Error, r.stderr)
	}
	wantLog(t, r, "pod "+migrate, "still running")
	for _, p := range []string{done, exit, sameName, other, unselected} {
		if strings.Contains(r.summary.Error, p) {
			t.Errorf("settle waited for pod %s: %s", p, r.summary.Error)
		}
	}

	c.ended(migrate, corev1.PodFailed)
	if r := c.settle("wf", wf.UID, "30s"); r.code != 0 || !strings.Contains(r.stderr, "every step of the run has stopped") {
		t.Fatalf("settle once the pod ended: exit %d %s\n%s", r.code, r.summary.Error, r.stderr)
	}

	// A pod deleted while it runs (Argo deletes a pending one) counts until it is gone.
	late := c.workflowPod("wf", wf, false)
	r = c.settle("wf", wf.UID, "1s")
	wantLog(t, r, "pod "+late)
	c.deletePod(late)
	if r := c.settle("wf", wf.UID, "30s"); r.code != 0 {
		t.Fatalf("settle after the last pod went exited %d: %s", r.code, r.summary.Error)
	}
}
