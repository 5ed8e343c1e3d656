package main

import (
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"

	"github.com/chartreuse-go/chartreuse/test/engines"
)

func TestPhasesOf(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 3, 40, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	pod := func(tmpl string, from, to int) engines.ArgoNode {
		return engines.ArgoNode{Type: wfv1.NodeTypePod, Template: tmpl, Started: at(from), Finished: at(to)}
	}
	nodes := []engines.ArgoNode{
		pod("plan-db-pod", 10, 30), pod("plan-db-pod", 5, 20), pod("plan-db-pod", 12, 40),
		{Type: wfv1.NodeTypeDAG, Template: "databases-pipeline", Started: at(0), Finished: at(500)},
		pod("scale-down-pod", 45, 50),
		pod("migrate-db-pod", 55, 60), pod("migrate-db-pod", 61, 80),
		{Type: wfv1.NodeTypePod, Template: "migrate-db-pod", Started: at(81)}, // never ended: not counted
		pod("scale-restore-pod", 85, 92),
	}
	got := phasesOf(nodes)
	want := runPhases{plan: 35 * time.Second, migrate: 25 * time.Second, down: 47 * time.Second}
	if got != want {
		t.Errorf("phasesOf = %+v, want %+v", got, want)
	}
	if got := phasesOf(nodes[:3]); got.migrate != 0 || got.down != 0 || got.plan != 35*time.Second {
		t.Errorf("phasesOf(plan only) = %+v", got)
	}
}
