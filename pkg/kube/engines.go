package kube

import "k8s.io/apimachinery/pkg/runtime/schema"

// The workflow engines' resources the steps read with a dynamic client
// (Client.Dynamic): their modules stay out of the step binaries.
var (
	PipelineRuns = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelineruns"}
	TaskRuns     = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "taskruns"}
	Workflows    = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"}
)
