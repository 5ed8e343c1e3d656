//go:build tools

// Package tkn pins the tkn command line built by build.sh. The build tag keeps
// this file out of every build; it only records the dependencies for
// `go mod tidy`.
package tkn

import (
	_ "github.com/tektoncd/cli/cmd/tkn"
)
