// Package engines installs the real workflow engines on the local test cluster
// (test/kubeenv) and drives them the way a user would, for the end-to-end tests
// (test/e2e) and the demo (test/cmd/demo):
//
//   - Argo Workflows (argo*.go): workflow-controller and argoexec built from the
//     module pinned in test/tools/argo, the controller as a pod in one namespace it
//     manages (namespace-install), the project's workflowtemplates/ applied with
//     `kubectl apply -k`, workflows submitted from the WorkflowTemplate as
//     `argo submit --from workflowtemplate/chartreuse` creates them;
//   - Tekton Pipelines (tekton*.go): the controller built from the module pinned in
//     test/tools/tekton, the project's tekton/ applied, PipelineRuns and TaskRuns.
//
// Names of one engine carry its prefix (Argo..., Tekton...; argo..., tk...) so
// both live in one package without colliding.
package engines
