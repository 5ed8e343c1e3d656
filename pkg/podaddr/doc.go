// Package podaddr tells which pod a database session comes from: the session's
// client address (pg_stat_activity.client_addr) looked up as a pod IP through the
// Kubernetes API, with one read-only request (list pods, field selector
// status.podIP), bounded by a short timeout.
//
// It explains and never decides: every outcome, including "could not look", is a
// sentence for a message, never an error, and nothing is written to the cluster.
// It speaks plain HTTPS with the pod's ServiceAccount token, so the binaries that
// use it (migrate) do not link client-go.
package podaddr
