// Package failure classifies step errors into the exit codes the workflows retry on.
//
// The exit codes are a contract with the workflow definitions: 0 done, 1 permanent
// (never retried), 2 usage (never retried), 75 transient (retried with backoff).
// Code is the single place that turns an error into an exit code.
package failure
