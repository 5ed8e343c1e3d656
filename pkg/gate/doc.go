// Package gate keeps two runs for one database from overlapping: the gate step
// of the Tekton Pipeline, and the settle step of Argo's exit handler. Its turn
// action paces a Tekton run's fanned-out migrations (Turn).
//
// Argo has a mutex (synchronization.mutexes keyed by the database Secret);
// Tekton has none. The gate is a coordination.k8s.io Lease in the run's
// namespace, named after the database Secret (LeaseName), whose holder is the
// PipelineRun's uid. It has no owner reference: the garbage collector would
// delete it the moment the run is deleted, while the run's pods are still in
// their grace period; a deleted run's Lease is taken over like a finished one's.
// The Pipeline's first real task acquires it, before anything reads or changes
// state; a finally task releases it.
//
// Acquire creates the Lease, or proceeds when this run already holds it (a
// retried attempt). While another run holds it, it waits, up to a timeout that
// ends in a transient failure naming the holder. A holder whose PipelineRun is
// gone or finished is stale: once that run's TaskRuns and pods have stopped
// (a cancelled run's pods take their grace period to go), its Lease is deleted
// and taken, and the step says so.
//
// Before it acquires, the step checks the run's parameters (CheckParameters):
// Tekton passes on a param the Pipeline does not declare without a word, so a
// misspelt name, or the Argo WorkflowTemplate's databases list, is refused
// (exit 2, naming it) before anything is held. So is a run with a run-level
// timeout (timeouts.pipeline other than "0", or timeouts.finally): when it
// expires Tekton stops the migration or finally's restore, and runs nothing
// after.
//
// Release deletes the Lease only when this run holds it, and only after every
// other TaskRun and pod of this run has stopped: Tekton runs finally tasks side
// by side, so the release must not free the gate while a restore or rollback of
// the same run is still at work.
//
// Every change is guarded: the Lease is deleted with a precondition on its uid
// and resourceVersion (a 409 means someone changed it: read it again), and
// taken by creating it (AlreadyExists: someone was quicker). A takeover deletes
// and re-creates rather than updating, so that a Lease from an older version of
// the gate, which had an owner the collector may be deleting it for, can never
// take the new holder with it.
//
// Settle is Argo's. Its mutex is freed when the workflow ends, and after
// `argo stop` the workflow can end before a stopped step's pod has: Argo marks
// the step failed at once and signals the pod afterwards. The exit handler
// runs settle first; it waits until the workflow's pods that change the
// database (migrate, rollback), outside the exit handler, have stopped, so that
// nothing of the run is still in the database when the next run (or an
// `argo retry` of this one) starts.
package gate
