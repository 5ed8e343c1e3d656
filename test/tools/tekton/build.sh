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
repo=$(cd "$here/../../.." && pwd)

version=$(awk '($1 == "require" && $2 == "github.com/tektoncd/pipeline") { print $3 } ($1 == "github.com/tektoncd/pipeline" && $2 ~ /^v/) { print $2 }' "$here/go.mod" | head -n1)
if [[ ! "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
	echo "build.sh: cannot read the pinned github.com/tektoncd/pipeline version from $here/go.mod (got '$version')" >&2
	exit 1
fi

cache=${CHARTREUSE_CACHE:-$repo/.cache}
dir=$cache/tekton-$version
out=$dir/bin
cmds=(controller entrypoint nop workingdirinit)

complete() {
	[[ -f "$out/.complete" ]] || return 1
	local c
	for c in "${cmds[@]}"; do [[ -x "$out/$c" ]] || return 1; done
}

if [[ "${1:-}" == "--print-dir" ]]; then
	complete || { echo "build.sh: $out is not built yet" >&2; exit 1; }
	echo "$out"
	exit 0
fi

if complete; then
	echo "$out"
	exit 0
fi

mkdir -p "$dir"
exec 9>"$dir/.build.lock"
if ! flock -n 9; then
	echo "build.sh: another build of Tekton $version is running; waiting for it" >&2
	flock 9
fi
if complete; then # built by whoever held the lock
	echo "$out"
	exit 0
fi

pkgs=()
for c in "${cmds[@]}"; do pkgs+=("github.com/tektoncd/pipeline/cmd/$c"); done

tmp=$(mktemp -d "$dir/bin.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build.sh: building Tekton Pipelines $version (${cmds[*]}) into $out" >&2
start=$(date +%s)
(
	cd "$here"
	export CGO_ENABLED=0 GOOS=linux GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
	nice -n "${CHARTREUSE_NICE:-15}" go build -trimpath -ldflags "-s -w" -o "$tmp/" "${pkgs[@]}"
)
for c in "${cmds[@]}"; do
	[[ -x "$tmp/$c" ]] || { echo "build.sh: $c was not built" >&2; exit 1; }
done
echo "$version" >"$tmp/.complete"
chmod 0755 "$tmp"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "build.sh: built Tekton Pipelines $version in $(($(date +%s) - start))s" >&2
echo "$out"
