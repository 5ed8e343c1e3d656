#!/usr/bin/env bash
# `make demo`: on this machine, bring up the local Kubernetes with Argo
# Workflows, build and load the Chartreuse image (plus examples/migrations),
# install the WorkflowTemplate and a sample application, run the workflow twice
# (migrations pending, then nothing pending) with a short report of each run,
# and tear everything down. Needs root (it runs a kubelet and PostgreSQL).
#
# The first time it installs Debian packages and builds Kubernetes and Argo
# Workflows from source into ${CHARTREUSE_CACHE:-.cache}: on two cores that
# took about 23 minutes here, up to 35 on a busy machine (the builds then took
# 20 and 14 min), with a line at least every 30 s saying what it is doing and
# for how long; later runs take about a minute.
# Extra arguments go to the demo program (test/cmd/demo), e.g. -keep.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=test/tools/progress.sh
. test/tools/progress.sh
# shellcheck disable=SC2034 # read by progress
progress_who=demo
[[ $(id -u) -eq 0 ]] || { echo "demo: needs root (it starts a kubelet, containerd and PostgreSQL); try: sudo make demo" >&2; exit 1; }

if ! test/tools/kube/build.sh --print-dir >/dev/null 2>&1 || ! test/tools/argo/build.sh --print-dir >/dev/null 2>&1; then
	echo "demo: first run: installing Debian packages and building Kubernetes and Argo Workflows from source; on two cores this takes about 23 minutes, up to 35 on a busy machine (later runs about a minute). Each step says every 30 s how long it has been running." >&2
fi
test/install-deps.sh >&2
CHARTREUSE_KUBE_BIN=$(test/tools/kube/build.sh | tail -n1)
CHARTREUSE_ARGO_DIR=$(test/tools/argo/build.sh | tail -n1)
export CHARTREUSE_KUBE_BIN CHARTREUSE_ARGO_DIR CHARTREUSE_REPO=$PWD
progress "go build of the demo program" 0 -- go build -o "${CHARTREUSE_CACHE:-$PWD/.cache}/bin/demo" ./test/cmd/demo
exec "${CHARTREUSE_CACHE:-$PWD/.cache}/bin/demo" "$@"
