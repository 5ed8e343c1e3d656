//go:build tools

// Package argocli pins the argo command line built by build.sh. The build tag
// keeps this file out of every build; it only records the dependencies for
// `go mod tidy`.
package argocli

import (
	_ "github.com/argoproj/argo-workflows/v3/cmd/argo"
)
