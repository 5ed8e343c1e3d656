#!/usr/bin/env bash
# Builds the Kubernetes binaries pinned in this directory's go.mod
# (kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy,
# kubelet, kubectl), version-stamped, into
#
#     ${CHARTREUSE_CACHE:-<repo>/.cache}/kube-<version>/bin/
#
# and prints that directory on stdout (last line). The folder is keyed by the
# pinned version, so a build happens only the first time and whenever go.mod
# pins another version; a warm run returns at once. Concurrent callers wait on
# a lock instead of building twice. The first build takes 10+ minutes on two
# cores; it runs under `nice` so the machine stays usable.
#
# Usage: test/tools/kube/build.sh [--print-dir]
#   --print-dir   only print the bin directory, build nothing (exit 1 if absent)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)

version=$(awk '($1 == "require" && $2 == "k8s.io/kubernetes") { print $3 } ($1 == "k8s.io/kubernetes" && $2 ~ /^v/) { print $2 }' "$here/go.mod" | head -n1)
if [[ ! "$version" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]]; then
	echo "build.sh: cannot read the pinned k8s.io/kubernetes version from $here/go.mod (got '$version')" >&2
	exit 1
fi
major=${BASH_REMATCH[1]}
minor=${BASH_REMATCH[2]}

cache=${CHARTREUSE_CACHE:-$repo/.cache}
dir=$cache/kube-$version
out=$dir/bin
cmds=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl)

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
	echo "build.sh: another build of Kubernetes $version is running; waiting for it" >&2
	flock 9
fi
if complete; then # built by whoever held the lock
	echo "$out"
	exit 0
fi

pkgs=()
for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done

ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $p.gitVersion=$version -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done

tmp=$(mktemp -d "$dir/bin.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build.sh: building Kubernetes $version (${cmds[*]}) into $out; the first build takes 10+ minutes" >&2
start=$(date +%s)
(
	cd "$here"
	export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
	nice -n "${CHARTREUSE_NICE:-15}" go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}"
)
for c in "${cmds[@]}"; do
	[[ -x "$tmp/$c" ]] || { echo "build.sh: $c was not built" >&2; exit 1; }
done
echo "$version" >"$tmp/.complete"
chmod 0755 "$tmp"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "build.sh: built Kubernetes $version in $(($(date +%s) - start))s" >&2
echo "$out"
