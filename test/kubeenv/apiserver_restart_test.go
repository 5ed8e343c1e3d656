package kubeenv_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chartreuse-go/chartreuse/test/kubeenv"
)

// Runs before the teardown tests of kubeenv_test.go (files are taken in name order).
func TestAPIServerRestartKeepsTheCluster(t *testing.T) {
	env := kubeenv.Shared(t)
	ns := env.NewNamespace(t)
	cs, err := env.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	before := env.State().Processes
	if err := env.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
		t.Fatal("the API answered while kube-apiserver was stopped")
	}
	if err := env.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Fatalf("namespace %s after the restart: %v", ns, err)
	}
	after := env.State().Processes
	if len(after) != len(before) {
		t.Fatalf("the state records %d processes after the restart, %d before", len(after), len(before))
	}
	for _, p := range after {
		if !p.Alive() {
			t.Errorf("%s (pid %d) is not running after the restart", p.Name, p.PID)
		}
	}
}
