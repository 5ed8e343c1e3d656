// Package runwatch stops a step as soon as the workflow run it belongs to is
// cancelled, instead of when the engine's signal reaches its pod.
//
// An engine stops a running step in several hops: Tekton marks the
// PipelineRun, then each TaskRun, then deletes the pod; Argo marks the
// Workflow, then its node, then signals the pod. On a busy node those hops took
// seconds, in which a migrate step applied the next migration of a run the
// operator had cancelled. The watch reads the run's own objects every second
// and, once they ask for a stop, cancels the step as SIGTERM does: a
// migration in a transaction rolls back with its session, and none after it
// starts. The run is read once before the step starts (at most 3 s), so a
// run cancelled while its pod started migrates nothing, and a run that is not
// there with its uid (a template passing the wrong names) is refused, exit 2;
// then every second, each read bounded, for as long as the step and its
// retries run. It only adds a way to stop: a run it cannot read (no
// permission, an API server away) goes on as before, and the engine's own
// signal still comes.
//
// What counts as a stop (Watch):
//   - Tekton: the step's TaskRun cancelled (spec.status TaskRunCancelled: a
//     cancel, or the PipelineRun's timeout), or its PipelineRun cancelled
//     (Cancelled, CancelledRunFinally), unless the TaskRun is one of finally's,
//     which Tekton runs after such a cancel. StoppedRunFinally lets running
//     TaskRuns finish, and so does the watch.
//   - Argo: the Workflow's spec.shutdown set (argo stop, argo terminate). Only
//     the forward steps pass the flag: the exit handler runs after argo stop.
//   - Either: the object gone, being deleted (a finalizer holds it), or
//     another object now having its name.
package runwatch
