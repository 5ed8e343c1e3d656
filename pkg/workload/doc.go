// Package workload stops and restarts the workloads that must not run while a
// database schema changes: the scale-down and scale-restore steps.
//
// Workloads are Deployments and StatefulSets (scaled through their scale
// subresource) and CronJobs (suspended), chosen in one namespace by a label selector
// and/or by kind/name. Before changing a workload, scale-down records what it was in
// annotations on the object itself (chartreuse.io/replicas-before-migration or
// chartreuse.io/suspended-before-migration, plus who and when), so the record
// survives any failure of the workflow and a rerun never loses it. scale-down then
// watches the namespace's pods until none of those workloads' pods is left.
// scale-restore puts back what was recorded unless someone changed the workload in
// the meantime, and removes the record. Both are safe to run again after any failure.
//
// The annotation chartreuse.io/stop-priority (an integer, default 0) orders the
// work: higher priorities stop first, and each priority group's pods are gone before
// the next group is touched; restore goes the other way round.
package workload
