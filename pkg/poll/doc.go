// Package poll retries an attempt until it succeeds, fails for good or a timeout
// passes: capped, jittered exponential backoff, a progress line every ~10 s, and the
// last error named when time runs out. It is the one wait loop of the steps that
// wait (wait-for-db, wait-patroni); the failure kind of each attempt's error decides
// whether to go on.
package poll
