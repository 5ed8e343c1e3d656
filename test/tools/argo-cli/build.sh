#!/usr/bin/env bash
# Builds the `argo` command line of the Argo Workflows release pinned in this
# directory's go.mod, static (CGO_ENABLED=0), into
#
#     ${CHARTREUSE_CACHE:-<repo>/.cache}/argo-cli-<version>/bin/argo
#
# and prints that bin directory on stdout (last line). The e2e tests
# (test/e2e/cli_test.go) run it as the docs write the commands, in kube mode
# (ARGO_SERVER unset: it talks to the API server with the kubeconfig). A build
# happens the first time and whenever the pin changes (go.mod, go.sum and
# tools.go are hashed into .complete); a warm run returns at once. Concurrent
# callers wait on a lock instead of building twice. Runs under `nice`.
#
# Built from a vendored copy of the module (in the cache folder, never in the
# repository), as test/tools/argo builds argoexec, because the module zip lacks
# a file the build needs: ui/dist/app, the argo-server UI that a go:embed
# requires and upstream's Makefile generates (a placeholder when the UI is not
# built). The CLI in kube mode never serves it.
#
# Usage: test/tools/argo-cli/build.sh [--print-dir]
#   --print-dir   only print the directory, build nothing (exit 1 if absent)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/tools/build-lib.sh
. "$here/../build-lib.sh"
mod=github.com/argoproj/argo-workflows/v3

build_read_version "$mod"

dir=$cache/argo-cli-$version
out=$dir/bin
cmds=(argo)
build_keyed

build_start "the argo CLI" "$out" "$out is not built yet (or is stale)" "$@"

build_cli() (
	cd "$src"
	echo "build.sh: go mod vendor" >&2
	# -e: vendor despite the missing ui/dist/app, made below.
	GOFLAGS=-buildvcs=false nice -n "${CHARTREUSE_NICE:-15}" go mod vendor -e 2> >(grep -v 'pattern dist/app: no matching files' >&2)
	ui=vendor/$mod/ui
	[[ -f "$ui/embed.go" ]] || { echo "build.sh: $ui/embed.go not found" >&2; exit 1; }
	mkdir -p "$ui/dist/app"
	echo 'argo-server UI not built (the chartreuse tests run the CLI in kube mode)' >"$ui/dist/app/index.html"
	build_go "$mod/cmd/argo" -ldflags "-s -w -X $mod.version=$version -X $mod.gitTag=$version -X $mod.gitTreeState=clean -X $mod.buildDate=1970-01-01T00:00:00Z"
)

rm -f "$dir/.complete"
src=$dir/src
rm -rf "$src"
mkdir -p "$src"
cp "$here/go.mod" "$here/go.sum" "$here/tools.go" "$src/"
export GOTOOLCHAIN=local GOFLAGS="-mod=vendor -buildvcs=false"
build_tmp
# 26 s: the first build here, right after Argo Workflows' (which compiled most
# of what it needs); alone it takes minutes.
build_run 26 build_cli
build_install
rm -rf "$src/vendor" # only needed for the build
build_done
echo "$out"
