//go:build tools

// Package argo pins the Argo Workflows commands built by build.sh. The build tag
// keeps this file out of every build; it only records the dependencies for
// `go mod tidy`.
package argo

import (
	_ "github.com/argoproj/argo-workflows/v3/cmd/argoexec"
	_ "github.com/argoproj/argo-workflows/v3/cmd/workflow-controller"
)
