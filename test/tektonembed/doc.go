// Package tektonembed writes the installed Tekton Pipeline (tekton/pipeline.yaml)
// from its source (tekton/pipeline-source.yaml) and the Tasks of tekton/tasks/,
// with each Task's spec embedded where the source names it.
//
// Tekton stores a PipelineRun's Pipeline in its status when the run starts, but
// resolves a Task named by taskRef only when it creates that task's TaskRun. A
// `helm upgrade` or `kubectl apply` during a run would then give its later
// tasks, finally's restore included, the new Tasks: another image version's
// arguments, refused by the steps' version check, with the application left
// stopped. Embedded, every task of a run runs the definitions the run started
// with. The Tasks stay installed for the steps run by hand (tkn task start).
package tektonembed
