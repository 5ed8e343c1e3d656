#!/usr/bin/env bash
# Builds the `tkn` command line of the tektoncd/cli release pinned in this
# directory's go.mod, static (CGO_ENABLED=0), into
#
#     ${CHARTREUSE_CACHE:-<repo>/.cache}/tkn-<version>/bin/tkn
#
# and prints that bin directory on stdout (last line). The e2e tests
# (test/e2e/cli_test.go) run it as the docs write the commands. A build happens
# the first time and whenever the pin changes (go.mod, go.sum and tools.go are
# hashed into .complete); a warm run returns at once. Concurrent callers wait
# on a lock instead of building twice. Runs under `nice`.
#
# Usage: test/tools/tkn/build.sh [--print-dir]
#   --print-dir   only print the directory, build nothing (exit 1 if absent)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/tools/build-lib.sh
. "$here/../build-lib.sh"
mod=github.com/tektoncd/cli

build_read_version "$mod"

dir=$cache/tkn-$version
out=$dir/bin
cmds=(tkn)
build_keyed

build_start "the tkn CLI" "$out" "$out is not built yet (or is stale)" "$@"

build_tkn() (
	cd "$here"
	echo "build.sh: go mod download" >&2
	nice -n "${CHARTREUSE_NICE:-15}" go mod download
	# skipCheckFlag: `tkn version` does not ask GitHub for a newer release.
	build_go "$mod/cmd/tkn" -ldflags "-s -w -X $mod/pkg/cmd/version.clientVersion=$version -X $mod/pkg/cmd/version.skipCheckFlag=true"
)

rm -f "$dir/.complete"
export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
build_tmp
# 746 s: the first build here (two cores, a loaded machine).
build_run 746 build_tkn
build_install
build_done
echo "$out"
