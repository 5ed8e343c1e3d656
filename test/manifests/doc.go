// Package manifests validates the Argo Workflows and Tekton manifests of the
// project: the engines' own validation code, consistency with the step binaries'
// flags and results, and a server-side dry-run apply on a real kube-apiserver.
package manifests
