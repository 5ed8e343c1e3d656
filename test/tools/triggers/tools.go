//go:build tools

// Package triggers pins the Tekton Triggers commands built by build.sh. The
// build tag keeps this file out of every build; it only records the
// dependencies for `go mod tidy`.
package triggers

import (
	_ "github.com/tektoncd/triggers/cmd/controller"
	_ "github.com/tektoncd/triggers/cmd/eventlistenersink"
	_ "github.com/tektoncd/triggers/cmd/interceptors"
)
