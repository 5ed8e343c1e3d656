#!/usr/bin/env bash
# Builds the Tekton Pipelines commands pinned in this directory's go.mod
# (controller, entrypoint, nop, workingdirinit), static (CGO_ENABLED=0), into
#
#     ${CHARTREUSE_CACHE:-<repo>/.cache}/tekton-<version>/bin/
#
# and prints that directory on stdout (last line). The folder is keyed by the
# pinned version, so a build happens only the first time and whenever go.mod
# pins another version; a warm run returns at once. Concurrent callers wait on
# a lock instead of building twice. It runs under `nice` so the machine stays
# usable. test/engines turns the binaries into images (/ko-app/<name>, as ko
# lays them out, which is where the controller expects them).
#
# Usage: test/tools/tekton/build.sh [--print-dir]
#   --print-dir   only print the bin directory, build nothing (exit 1 if absent)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/tools/build-lib.sh
. "$here/../build-lib.sh"

build_read_version github.com/tektoncd/pipeline

dir=$cache/tekton-$version
out=$dir/bin
cmds=(controller entrypoint nop workingdirinit)

complete() {
	[[ -f "$out/.complete" ]] || return 1
	build_cmds_in "$out"
}

build_start "Tekton Pipelines" "$out" "$out is not built yet" "$@"

pkgs=()
for c in "${cmds[@]}"; do pkgs+=("github.com/tektoncd/pipeline/cmd/$c"); done

build_tekton() (
	cd "$here"
	export CGO_ENABLED=0 GOOS=linux GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
	nice -n "${CHARTREUSE_NICE:-15}" go build -trimpath -ldflags "-s -w" -o "$tmp/" "${pkgs[@]}"
)

build_tmp
# 363 s: the first build here (two cores, after Argo's).
build_run 363 build_tekton
build_install "$version"
echo "$out"
