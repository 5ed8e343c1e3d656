#!/usr/bin/env bash
# Builds the Argo Workflows commands pinned in this directory's go.mod
# (workflow-controller, argoexec), static (CGO_ENABLED=0), into
#
#     ${CHARTREUSE_CACHE:-<repo>/.cache}/argo-<version>/bin/
#
# and prints the argo-<version> directory on stdout (last line); test/engines
# reads the manifests (CRDs, controller, RBAC) from the module cache. A build
# happens the first time and whenever the pin changes (go.mod, go.sum and
# tools.go are hashed into .complete); a warm run returns at once. Concurrent callers wait on a lock instead of building
# twice. Runs under `nice`.
#
# argoexec is built from a vendored copy of the module: upstream's
# workflow/executor/osspecific/signal_linux.go is a symlink to signal_darwin.go
# and module zips drop symlinks, so it is copied in the vendor tree (which lives
# in the cache folder, never in the repository).
#
# Usage: test/tools/argo/build.sh [--print-dir]
#   --print-dir   only print the directory, build nothing (exit 1 if absent)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/tools/build-lib.sh
. "$here/../build-lib.sh"
mod=github.com/argoproj/argo-workflows/v3

build_read_version "$mod"

dir=$cache/argo-$version
out=$dir/bin
cmds=(workflow-controller argoexec)
key=$(cat "$here/go.mod" "$here/go.sum" "$here/tools.go" | sha256sum | cut -c1-16)

complete() {
	[[ -f "$dir/.complete" && "$(cat "$dir/.complete")" == "$version $key" ]] || return 1
	build_cmds_in "$out"
}

build_start "Argo Workflows" "$dir" "$dir is not built yet (or is stale)" "$@"

ldflags="-s -w -X $mod.version=$version -X $mod.gitTag=$version -X $mod.gitTreeState=clean -X $mod.buildDate=1970-01-01T00:00:00Z"
build_argo() (
	cd "$src"
	nice -n "${CHARTREUSE_NICE:-15}" go mod vendor
	osdir=vendor/$mod/workflow/executor/osspecific
	[[ -f "$osdir/signal_darwin.go" ]] || { echo "build.sh: $osdir/signal_darwin.go not found" >&2; exit 1; }
	if [[ ! -e "$osdir/signal_linux.go" ]]; then
		cp "$osdir/signal_darwin.go" "$osdir/signal_linux.go"
	fi
	CGO_ENABLED=0 nice -n "${CHARTREUSE_NICE:-15}" go build -mod=vendor -trimpath -ldflags "$ldflags" -o "$tmp/" \
		"$mod/cmd/workflow-controller" "$mod/cmd/argoexec"
)

rm -f "$dir/.complete"
src=$dir/src
rm -rf "$src"
mkdir -p "$src"
cp "$here/go.mod" "$here/go.sum" "$here/tools.go" "$src/"
export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false"
build_tmp
# 841 s: the first build here (two cores, a loaded machine).
build_run 841 build_argo
build_install
# The vendor tree is only needed for the build.
rm -rf "$src/vendor"
echo "$version $key" >"$dir/.complete"
echo "$dir"
