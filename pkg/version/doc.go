// Package version holds the binary's version and the check that refuses to run
// under manifests of a different major.minor.
package version
