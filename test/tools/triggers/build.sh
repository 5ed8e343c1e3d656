#!/usr/bin/env bash
# Builds the Tekton Triggers commands of the release pinned in this directory's
# go.mod (controller, eventlistenersink, interceptors), static
# (CGO_ENABLED=0), into
#
#     ${CHARTREUSE_CACHE:-<repo>/.cache}/triggers-<version>/bin/
#
# and prints that directory on stdout (last line). test/engines turns them into
# images (/ko-app/<name>, as ko lays them out) for the Triggers controller, the
# EventListener pods it creates and the core interceptors. A build happens the
# first time and whenever the pin changes (go.mod, go.sum and tools.go are
# hashed into .complete); a warm run returns at once. Concurrent callers wait
# on a lock instead of building twice. Runs under `nice`.
#
# Usage: test/tools/triggers/build.sh [--print-dir]
#   --print-dir   only print the bin directory, build nothing (exit 1 if absent)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/tools/build-lib.sh
. "$here/../build-lib.sh"
mod=github.com/tektoncd/triggers

build_read_version "$mod"

dir=$cache/triggers-$version
out=$dir/bin
cmds=(controller eventlistenersink interceptors)
build_keyed

build_start "Tekton Triggers" "$out" "$out is not built yet (or is stale)" "$@"

build_triggers() (
	cd "$here"
	for c in "${cmds[@]}"; do
		build_go "$mod/cmd/$c" -ldflags "-s -w"
	done
)

rm -f "$dir/.complete"
export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
build_tmp
# 81 s: the first build here (two cores, after Tekton Pipelines', which
# compiled most of what it needs).
build_run 81 build_triggers
build_install
build_done
echo "$out"
