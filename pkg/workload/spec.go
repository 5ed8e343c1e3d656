package workload

import (
	"context"
	"strconv"
	"time"

	"k8s.io/utils/clock"

	"github.com/chartreuse-go/chartreuse/pkg/kube"
	"github.com/chartreuse-go/chartreuse/pkg/step"
)

// Result names.
const (
	ResultScaled    = "scaled"
	ResultRestored  = "restored"
	ResultWorkloads = "workloads"
	// ResultDowntime is scale-restore's count of seconds the application was
	// down (Downtime); empty when it brought no workload back from 0.
	ResultDowntime = "downtime-seconds"
	// ResultWorkloadsStopped is scale-restore's "false", written only when it
	// succeeded: the workflows' mark that this run has put its workloads back.
	// A restore that failed writes nothing, so the mark stays as scale-down set it
	// and the run's failure path still restores.
	ResultWorkloadsStopped = "workloads-stopped"
)

// Downtime is how long the application was down, for a scale-restore that
// returned outs and ended at end (after waiting for readiness, if it did):
// from the earliest stop recorded on a Deployment or StatefulSet it brought
// back from 0. ok is false when it brought none back.
func Downtime(outs []Outcome, end time.Time) (d time.Duration, ok bool) {
	var first time.Time
	for _, o := range outs {
		if !o.Stopped.IsZero() && (first.IsZero() || o.Stopped.Before(first)) {
			first = o.Stopped
		}
	}
	if first.IsZero() {
		return 0, false
	}
	return max(end.Sub(first), 0), true
}

func setResults(env *step.Env, count string, outcomes []Outcome) {
	env.Results.Set(count, strconv.Itoa(len(outcomes)))
	env.Results.SetJSON(ResultWorkloads, Strings(outcomes))
}

// runOnCluster is a step's Run: it sets the results to none, connects, runs
// fn, and sets the results to the outcomes fn returns, also on failure.
func runOnCluster(name, count string, ko *kube.Options, fn func(context.Context, *kube.Client, *step.Env) ([]Outcome, error)) func(context.Context, *step.Env) error {
	return func(ctx context.Context, env *step.Env) error {
		setResults(env, count, nil)
		c, err := ko.ConnectStep(name, env.Log)
		if err != nil {
			return err
		}
		outcomes, err := fn(ctx, c, env)
		setResults(env, count, outcomes)
		return err
	}
}

// ScaleDownSpec describes the scale-down step binary.
func ScaleDownSpec() step.Spec {
	ko := &kube.Options{}
	so := &SelectOptions{RequireSome: true}
	ro := DownOptions()
	return step.Spec{
		Name:  "scale-down",
		Usage: "stop the workloads that must not run during a schema migration",
		Description: "Records each selected workload's replicas (CronJobs: suspend) in annotations on the object " +
			"and, in the same change, scales Deployments and StatefulSets to 0 and suspends CronJobs, highest chartreuse.io/stop-priority first, " +
			"and waits until their pods are gone. A Deployment or StatefulSet already at 0 (and seen so by its controller) is left untouched. " +
			"Safe to rerun: an existing record is kept, with the run uid it has. " +
			"A running StatefulSet whose persistentVolumeClaimRetentionPolicy.whenScaled is Delete is refused (exit 1) before anything changes: scaled to 0 it would lose its volumes. " +
			"With --run-uid, after each group's wait it checks that this run still holds what it stopped, and fails (exit 1) stopping nothing more when a restore took any back meanwhile (the run's failure path after a stop that never reached this process). " +
			"Results: scaled (count), workloads (JSON list of kind/name=replicas-before).",
		Options: []step.Options{ko, so, ro},
		Run: runOnCluster("scale-down", ResultScaled, ko, func(ctx context.Context, c *kube.Client, env *step.Env) ([]Outcome, error) {
			d := &Downer{
				Client: c.Interface, Namespace: c.Namespace, RunID: ro.RunID, RunUID: ro.RunUID, DatabaseSecret: ro.DatabaseSecret, RunCreated: ro.created, GitCommit: ro.GitCommit, Timeout: ro.Timeout,
				ProgressEvery: ro.ProgressEvery, Clock: clock.RealClock{}, Log: env.Log, CheckAccess: true,
			}
			return d.Run(ctx, so.Selection())
		}),
	}
}

// ScaleRestoreSpec describes the scale-restore step binary.
func ScaleRestoreSpec() step.Spec {
	ko := &kube.Options{}
	so := &SelectOptions{}
	ro := RestoreOptions()
	return step.Spec{
		Name:  "scale-restore",
		Usage: "put back the workloads that scale-down stopped",
		Description: "For each workload carrying a scale-down record (selected, or all in the namespace): " +
			"restores the recorded replicas if it is still at 0 (keeps a newer value otherwise), resumes CronJobs " +
			"that were not suspended before, removes the record, lowest chartreuse.io/stop-priority first. " +
			"With --only-run-uid, only the records of that run; with --wait-ready, it succeeds only once the restored workloads are ready. " +
			"Safe when nothing was scaled down and safe to run twice. " +
			"Results: restored (count), workloads (JSON list of kind/name=replicas), downtime-seconds (from the earliest recorded stop of a Deployment or StatefulSet it brought back from 0 until they were restored, and ready with --wait-ready; empty when none), workloads-stopped (false, and only when it succeeded).",
		Options: []step.Options{ko, so, ro},
		Run: runOnCluster("scale-restore", ResultRestored, ko, func(ctx context.Context, c *kube.Client, env *step.Env) ([]Outcome, error) {
			r := &Restorer{
				Client: c.Interface, Namespace: c.Namespace, RunID: ro.RunID, OnlyRunUID: ro.OnlyRunUID, SupersedeDatabase: ro.SupersedeDatabase, SupersedeRuns: ro.SupersedeRuns, RunCreated: ro.created, Timeout: ro.Timeout,
				WaitReady: ro.WaitReady, ReadyTimeout: ro.ReadyTimeout, ProgressEvery: ro.ProgressEvery, Clock: clock.RealClock{}, Log: env.Log, CheckAccess: true,
			}
			env.Results.Set(ResultDowntime, "")
			outs, err := r.Run(ctx, so.Selection())
			if err == nil {
				env.Results.Set(ResultWorkloadsStopped, "false")
			}
			if d, ok := Downtime(outs, r.Clock.Now()); ok && err == nil {
				env.Results.Set(ResultDowntime, strconv.FormatFloat(d.Seconds(), 'f', 1, 64))
				env.Log.Info("application back", "downtime", d.Round(100*time.Millisecond).String(), "ready", ro.WaitReady)
			}
			return outs, err
		}),
	}
}
