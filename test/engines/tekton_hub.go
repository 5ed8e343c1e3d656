package engines

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	resolutionv1beta1 "github.com/tektoncd/pipeline/pkg/apis/resolution/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

// The hub resolver stand-in.
//
// The project's Pipeline takes its fetch-source Task (the catalog's git-clone
// 0.9) from Artifact Hub through the hub resolver, and Tekton resolves every
// taskRef of a Pipeline when a PipelineRun starts, even that of a task its when
// expression then skips. Artifact Hub is not reachable here (and the
// resolvers deployment is not installed), so this stand-in plays the resolver:
// it watches ResolutionRequests of type hub and answers the request the
// Pipeline makes (catalog tekton-catalog-tasks, kind task, name git-clone,
// version 0.9) with a Task of the same interface as the catalog's: the params
// the Pipeline passes (url, revision, depth, deleteExisting), the output
// workspace and the commit/url results. It cannot clone: its step runs a
// command that does not exist in a local image, so a run with git-url set
// fails at fetch-source instead of pulling anything. Any other hub request is
// answered with a failure naming what was asked. Answers are written the way
// the resolver framework writes them (status.data base64, refSource); the
// controller's own ResolutionRequest reconciler then marks them succeeded.

// HubRequest is one request the stand-in answered.
type HubRequest struct {
	Namespace, Name string
	Params          map[string]string
	Answered        bool // false: answered with a failure
}

type hubStandIn struct {
	tk     *Tekton
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	seen map[types.UID]HubRequest
}

func startHubStandIn(tk *Tekton) *hubStandIn {
	ctx, cancel := context.WithCancel(context.Background())
	h := &hubStandIn{tk: tk, cancel: cancel, done: make(chan struct{}), seen: map[types.UID]HubRequest{}}
	go h.loop(ctx)
	return h
}

func (h *hubStandIn) stop() {
	h.cancel()
	<-h.done
}

// HubRequests lists the hub resolution requests answered so far in namespace
// ns ("" for all).
func (tk *Tekton) HubRequests(ns string) []HubRequest {
	if tk.hub == nil {
		return nil
	}
	h := tk.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []HubRequest
	for _, r := range h.seen {
		if ns == "" || r.Namespace == ns {
			out = append(out, r)
		}
	}
	return out
}

func (h *hubStandIn) loop(ctx context.Context) {
	defer close(h.done)
	for {
		h.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(150 * time.Millisecond):
		}
	}
}

func (h *hubStandIn) poll(ctx context.Context) {
	list, err := h.tk.Resolution.ResolutionV1beta1().ResolutionRequests("").List(ctx, metav1.ListOptions{
		LabelSelector: "resolution.tekton.dev/type=hub",
	})
	if err != nil {
		return
	}
	for i := range list.Items {
		rr := &list.Items[i]
		if rr.Status.Data != "" || rr.IsDone() {
			continue
		}
		h.answer(ctx, rr)
	}
}

func (h *hubStandIn) answer(ctx context.Context, rr *resolutionv1beta1.ResolutionRequest) {
	params := map[string]string{}
	for _, p := range rr.Spec.Params {
		params[p.Name] = p.Value.StringVal
	}
	want := map[string]string{"catalog": "tekton-catalog-tasks", "type": "artifact", "kind": "task", "name": "git-clone", "version": "0.9"}
	ok := true
	for k, v := range want {
		if params[k] != v {
			ok = false
		}
	}
	var patch any
	if ok {
		data := gitCloneStandIn(h.tk.Images["nop"])
		sum := sha256.Sum256(data)
		src := map[string]any{
			"uri":        "https://artifacthub.io/api/v1/packages/tekton-task/tekton-catalog-tasks/git-clone/0.9",
			"digest":     map[string]string{"sha256": hex.EncodeToString(sum[:])},
			"entryPoint": "git-clone.yaml",
		}
		patch = map[string]any{"status": map[string]any{
			"data":      base64.StdEncoding.EncodeToString(data),
			"refSource": src,
			"source":    src,
			"annotations": map[string]string{
				"resolution.tekton.dev/content-type": "application/x-yaml",
			},
		}}
	} else {
		patch = map[string]any{"status": map[string]any{"conditions": []map[string]any{{
			"type": "Succeeded", "status": "False", "reason": "ResolutionFailed",
			"message":            fmt.Sprintf("chartreuse test hub stand-in: only the catalog git-clone 0.9 Task is available offline, not %v", params),
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
		}}}}
	}
	b, _ := json.Marshal(patch)
	_, err := h.tk.Resolution.ResolutionV1beta1().ResolutionRequests(rr.Namespace).Patch(ctx, rr.Name, types.MergePatchType, b, metav1.PatchOptions{}, "status")
	if err != nil {
		return // retried on the next poll
	}
	h.mu.Lock()
	h.seen[rr.UID] = HubRequest{Namespace: rr.Namespace, Name: rr.Name, Params: params, Answered: ok}
	h.mu.Unlock()
	h.tk.logf("tekton: hub stand-in answered %s/%s %v (ok=%v)", rr.Namespace, rr.Name, params, ok)
}

// gitCloneStandIn is the Task the stand-in returns for git-clone 0.9.
func gitCloneStandIn(image string) []byte {
	task := map[string]any{
		"apiVersion": "tekton.dev/v1",
		"kind":       "Task",
		"metadata": map[string]any{
			"name":   "git-clone",
			"labels": map[string]string{"app.kubernetes.io/version": "0.9"},
			"annotations": map[string]string{
				"chartreuse.test/stand-in": "offline stand-in for the catalog git-clone 0.9 Task (same params, workspace and results); it cannot clone",
			},
		},
		"spec": map[string]any{
			"params": []map[string]any{
				{"name": "url", "type": "string", "description": "repository URL to clone from"},
				{"name": "revision", "type": "string", "default": ""},
				{"name": "depth", "type": "string", "default": "1"},
				{"name": "deleteExisting", "type": "string", "default": "true"},
			},
			"workspaces": []map[string]any{{"name": "output"}},
			"results":    []map[string]any{{"name": "commit"}, {"name": "url"}},
			"steps": []map[string]any{{
				"name":            "clone",
				"image":           image,
				"imagePullPolicy": "Never",
				"command":         []string{"/ko-app/git-clone-is-not-available-offline"},
				"args":            []string{"$(params.url)", "$(params.revision)"},
			}},
		},
	}
	b, err := yaml.Marshal(task)
	if err != nil {
		panic(err)
	}
	return b
}
