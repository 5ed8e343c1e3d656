//go:build tools

// Package tekton pins the Tekton commands built by build.sh. The build tag
// keeps this file out of every build; it only records the dependencies for
// `go mod tidy`.
package tekton

import (
	_ "github.com/tektoncd/pipeline/cmd/controller"
	_ "github.com/tektoncd/pipeline/cmd/entrypoint"
	_ "github.com/tektoncd/pipeline/cmd/nop"
	_ "github.com/tektoncd/pipeline/cmd/workingdirinit"
)
