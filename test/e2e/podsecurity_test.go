package e2e

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
)

// TestPodSecurity runs a whole migration (pending migrations, scale-down,
// migrate, restore) on both engines in namespaces that enforce Pod Security
// "restricted": every pod of the run (the engines' own containers included,
// configured by test/engines as docs/operations.md tells users) and the
// application's pods started again afterwards must be admitted by the API
// server's PodSecurity admission. On Argo the namespace is restricted before
// the controller is installed into it (namespace-install), so the controller
// pod must pass too.
func TestPodSecurity(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the real cluster and both engines (not run with -short)")
	}
	var wg sync.WaitGroup
	for _, e := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"argo", testPodSecurityArgo},
		{"tekton", testPodSecurityTekton},
	} {
		wg.Go(func() { t.Run(e.name, e.run) })
	}
	wg.Wait()
}

func testPodSecurityArgo(t *testing.T) {
	env := kubeenv.Shared(t)
	ns := env.NewNamespace(t)
	kube, err := env.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	restrictNamespace(t, kube, ns)
	s := newArgoSuite(t, env, ns)
	c := s.newCase(t, "restricted")

	wf := c.run(t, "", nil)
	wantPhase(t, wf, wfv1.WorkflowSucceeded)
	wantNodes(t, wf, map[string]wfv1.NodePhase{
		"plan": wfv1.NodeSucceeded, "scale-down": wfv1.NodeSucceeded,
		"migrate": wfv1.NodeSucceeded, "scale-restore": wfv1.NodeSucceeded,
	})
	wantOutputs(t, wf, "migrate", map[string]string{"applied": "3", "current-version": "3"})
	wantVersions(t, c.versions(t), 1, 2, 3)
	wantRestrictedPods(t, runPods(t, s.kube, ns, "workflows.argoproj.io/workflow="+wf.Name), 4)
	c.wantRestored(t) // new pods, admitted under restricted
}

func testPodSecurityTekton(t *testing.T) {
	s := newTektonSuite(t)
	c := s.newCase(t, nil)
	// Restricted once the project is applied and the application runs: the
	// application's pods started before are left alone (a warning); the run
	// stops them, and those its scale-restore starts are admitted under
	// restricted.
	before := appState(t, s.kube, c.app)
	restrictNamespace(t, s.kube, c.ns)

	pr, trs := c.run(t, c.pipelineRun(t, "", nil))
	wantSucceeded(t, pr, true)
	wantResults(t, trs, "scale-down", map[string]string{"scaled": "2"})
	wantResults(t, trs, "migrate", map[string]string{"applied": "3", "current-version": "3"})
	wantResults(t, trs, "scale-restore", map[string]string{"restored": "2"})
	c.wantVersions(t, 1, 2, 3)
	wantRestrictedPods(t, runPods(t, s.kube, c.ns, "tekton.dev/pipelineRun="+pr.Name), len(phases))
	c.wantRestored(t)
	for uid, name := range appState(t, s.kube, c.app).Pods {
		if _, old := before.Pods[uid]; old {
			t.Errorf("app pod %s from before the namespace was restricted still runs", name)
		}
	}
}

// restrictNamespace labels ns with Pod Security "restricted" (enforce, audit,
// warn) and waits until the API server refuses a pod that is not restricted
// there (server-side dry run): the admission plugin reads namespaces from a
// cache, so the label takes effect a moment later.
func restrictNamespace(t *testing.T, kube kubernetes.Interface, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	labels := map[string]string{}
	for _, mode := range []string{"enforce", "audit", "warn"} {
		labels["pod-security.kubernetes.io/"+mode] = "restricted"
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	// What a container gets by default: root allowed, privilege escalation,
	// the runtime's capabilities, no seccomp profile.
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-security-probe"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "probe", Image: kubeenv.PauseImage, ImagePullPolicy: corev1.PullNever,
		}}},
	}
	var refused error
	err = Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		_, err := kube.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		switch {
		case err == nil:
			return false, nil
		case apierrors.IsForbidden(err):
			refused = err
			return true, nil
		}
		return false, err
	})
	if err != nil {
		t.Fatalf("namespace %s labelled restricted, but a pod that is not restricted is still admitted: %v", ns, err)
	}
	t.Logf("namespace %s enforces restricted: %v", ns, refused)
}

// wantRestrictedPods checks that the run made at least min pods (each of them
// was admitted under restricted) and that the engine's own containers carry the
// securityContext its configuration gives them.
func wantRestrictedPods(t *testing.T, pods []corev1.Pod, min int) {
	t.Helper()
	if len(pods) < min {
		t.Errorf("%d pods of the run, want at least %d", len(pods), min)
	}
	for _, p := range pods {
		for _, c := range append(append([]corev1.Container(nil), p.Spec.InitContainers...), p.Spec.Containers...) {
			sc := c.SecurityContext
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
				t.Errorf("pod %s container %s: securityContext %+v, want allowPrivilegeEscalation false and capabilities drop [ALL]", p.Name, c.Name, sc)
			}
		}
	}
}
