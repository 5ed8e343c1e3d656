// Package binaries builds the steps whose binary wraps a step package's Spec
// in others' checks: the one place that says which wrappers go around it, so
// that the binary, the reference docs and the manifests' checks see the same
// flags. It imports only what those binaries link.
package binaries
