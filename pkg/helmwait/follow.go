package helmwait

import (
	"context"
	"sort"
	"strings"

	"github.com/chartreuse-go/chartreuse/pkg/kube"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// follower turns the successive states of one run into log lines: the run's phase
// and message when they change, each step as it starts and ends, and, on Argo, the
// run holding the database's mutex while this one waits for it. It collects the
// failed steps for the final error.
type follower struct {
	w    *Waiter
	gvr  schema.GroupVersionResource
	name string
	ctx  context.Context

	phase, msg string
	holder     string          // Argo: the mutex holder waited for
	started    map[string]bool // step key -> logged as started
	ended      map[string]bool // step key -> logged as ended (or skipped)
	failed     []string        // "step: message" of the failed steps
}

func (f *follower) observe(u *unstructured.Unstructured, phase, msg string, done bool) {
	if phase != f.phase || msg != f.msg {
		f.w.Log.Info("run", "name", f.name, "phase", phase, "message", msg)
		f.phase, f.msg = phase, msg
	}
	if f.gvr == kube.Workflows {
		f.argoSteps(u)
		f.argoMutex(u, done)
		return
	}
	f.tektonSteps(u)
}

// argoSteps logs the Workflow's pod nodes (one per step attempt) and skipped steps.
func (f *follower) argoSteps(u *unstructured.Unstructured) {
	nodes, _, _ := unstructured.NestedMap(u.Object, "status", "nodes")
	type node struct{ id, name, typ, phase, msg, started string }
	var list []node
	for id, v := range nodes {
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		n := node{id: id}
		n.name, _ = m["displayName"].(string)
		n.typ, _ = m["type"].(string)
		n.phase, _ = m["phase"].(string)
		n.msg, _ = m["message"].(string)
		n.started, _ = m["startedAt"].(string)
		list = append(list, n)
	}
	// In the order they started (RFC 3339 seconds sort as text), then by name.
	sort.Slice(list, func(i, j int) bool {
		if list[i].started != list[j].started {
			return list[i].started < list[j].started
		}
		return list[i].name < list[j].name
	})
	for _, n := range list {
		switch {
		case n.typ == "Skipped" || n.phase == "Skipped" || n.phase == "Omitted":
			if n.typ != "Pod" && n.typ != "Skipped" {
				continue
			}
			if !f.ended[n.id] {
				f.ended[n.id] = true
				f.w.Log.Info("step skipped", "step", n.name, "reason", n.msg)
			}
		case n.typ != "Pod":
			continue
		default:
			if !f.started[n.id] {
				f.started[n.id] = true
				f.w.Log.Info("step started", "step", n.name)
			}
			switch n.phase {
			case "Succeeded":
				if !f.ended[n.id] {
					f.ended[n.id] = true
					f.w.Log.Info("step ended", "step", n.name, "phase", n.phase)
				}
			case "Failed", "Error":
				if !f.ended[n.id] {
					f.ended[n.id] = true
					f.w.Log.Warn("step ended", "step", n.name, "phase", n.phase, "message", n.msg)
					f.failed = append(f.failed, n.name+": "+n.msg)
				}
			}
		}
	}
}

// argoMutex logs the Workflow that holds the database's mutex while this one waits.
func (f *follower) argoMutex(u *unstructured.Unstructured, done bool) {
	waiting, _, _ := unstructured.NestedSlice(u.Object, "status", "synchronization", "mutex", "waiting")
	holder, mutex := "", ""
	for _, v := range waiting {
		if m, ok := v.(map[string]any); ok {
			h, _ := m["holder"].(string)
			mutex, _ = m["mutex"].(string)
			// "<workflow>/<node>" when another workflow holds it.
			holder, _, _ = strings.Cut(h, "/")
		}
	}
	if done || holder == f.holder {
		return
	}
	if holder == "" {
		f.w.Log.Info("the database's mutex is free for this run", "name", f.name)
	} else {
		f.w.Log.Info("waiting for the database's mutex", "mutex", mutex, "holder", holder)
	}
	f.holder = holder
}

// tektonSteps logs the PipelineRun's TaskRuns, read one by one until they end, and
// its skipped tasks. The PipelineRun's status changes as each TaskRun ends (its
// condition's message counts them), so each end is seen.
func (f *follower) tektonSteps(u *unstructured.Unstructured) {
	children, _, _ := unstructured.NestedSlice(u.Object, "status", "childReferences")
	for _, v := range children {
		m, ok := v.(map[string]any)
		if !ok || m["kind"] != "TaskRun" {
			continue
		}
		trName, _ := m["name"].(string)
		task, _ := m["pipelineTaskName"].(string)
		if !f.started[trName] {
			f.started[trName] = true
			f.w.Log.Info("step started", "step", task, "taskrun", trName)
		}
		if f.ended[trName] {
			continue
		}
		tr, err := f.w.Client.Resource(kube.TaskRuns).Namespace(f.w.Namespace).Get(f.ctx, trName, metav1.GetOptions{})
		if err != nil {
			f.w.Log.Debug("reading a TaskRun", "taskrun", trName, "error", err.Error())
			continue
		}
		done, ok, reason, msg := ended(kube.PipelineRuns, tr)
		if !done {
			continue
		}
		f.ended[trName] = true
		if ok {
			f.w.Log.Info("step ended", "step", task, "phase", reason)
		} else {
			f.w.Log.Warn("step ended", "step", task, "phase", reason, "message", msg)
			f.failed = append(f.failed, task+": "+msg)
		}
	}
	skipped, _, _ := unstructured.NestedSlice(u.Object, "status", "skippedTasks")
	for _, v := range skipped {
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		task, _ := m["name"].(string)
		if key := "skipped/" + task; !f.ended[key] {
			f.ended[key] = true
			reason, _ := m["reason"].(string)
			f.w.Log.Info("step skipped", "step", task, "reason", reason)
		}
	}
}
