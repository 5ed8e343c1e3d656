package kubeobj

import (
	"fmt"
	"testing"
	"time"
)

func TestDeployment(t *testing.T) {
	d := App{Name: "web", Image: "app:1", Replicas: 2, Labels: map[string]string{"set": "x"}, ShutdownDelay: time.Second}.Deployment()
	pod := d.Spec.Template.Spec
	if got := fmt.Sprint(d.Name, " ", *d.Spec.Replicas, " ", d.Labels, " ", d.Spec.Selector.MatchLabels, " ", *pod.TerminationGracePeriodSeconds, " ", pod.Containers[0].Env[0].Value); got != "web 2 map[app:web set:x] map[app:web] 30 1s" {
		t.Errorf("deployment: %s", got)
	}
}

func TestWithoutVerb(t *testing.T) {
	rules := WithoutVerb(ScaleRules(), "deployments", "patch")
	var deployments, statefulsets []string
	for _, r := range rules {
		for _, res := range r.Resources {
			switch res {
			case "deployments":
				deployments = append(deployments, r.Verbs...)
			case "statefulsets":
				statefulsets = append(statefulsets, r.Verbs...)
			}
		}
	}
	if fmt.Sprint(deployments) != "[get list watch]" || fmt.Sprint(statefulsets) != "[get list watch patch]" {
		t.Errorf("deployments %v, statefulsets %v", deployments, statefulsets)
	}
}
