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
# a lock instead of building twice. The first build takes about 20 minutes on
# two cores; it runs under `nice` so the machine stays usable, and says every
# 30 s how long it has been running.
#
# Usage: test/tools/kube/build.sh [--print-dir]
#   --print-dir   only print the bin directory, build nothing (exit 1 if absent)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/tools/build-lib.sh
. "$here/../build-lib.sh"

build_read_version k8s.io/kubernetes '^v([0-9]+)\.([0-9]+)\.[0-9]+$'
major=${BASH_REMATCH[1]}
minor=${BASH_REMATCH[2]}

dir=$cache/kube-$version
out=$dir/bin
cmds=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl)

complete() {
	[[ -f "$out/.complete" ]] || return 1
	build_cmds_in "$out"
}

build_start Kubernetes "$out" "$out is not built yet" "$@"

pkgs=()
for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done

ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $p.gitVersion=$version -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done

build_kube() (
	cd "$here"
	export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
	nice -n "${CHARTREUSE_NICE:-15}" go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}"
)

build_tmp
# 1192 s: the first build here (two cores, a loaded machine).
build_run 1192 build_kube
build_install "$version"
echo "$out"
