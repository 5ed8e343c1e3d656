#!/usr/bin/env bash
# `make demo`: on this machine, bring up the local Kubernetes with Argo
# Workflows, build and load the Chartreuse image (plus examples/migrations),
# install the WorkflowTemplate and a sample application, run the workflow twice
# (migrations pending, then nothing pending) with a short report of each run,
# and tear everything down. Needs root (it runs a kubelet and PostgreSQL).
#
# The first time it installs Debian packages and builds Kubernetes (~7-10 min)
# and Argo (~5 min) into ${CHARTREUSE_CACHE:-.cache}; later runs take about a minute.
# Extra arguments go to the demo program (test/cmd/demo), e.g. -keep.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "demo: needs root (it starts a kubelet, containerd and PostgreSQL); try: sudo make demo" >&2; exit 1; }

test/install-deps.sh >&2
echo "demo: building the Kubernetes binaries (first run only)" >&2
CHARTREUSE_KUBE_BIN=$(test/tools/kube/build.sh | tail -n1)
echo "demo: building Argo Workflows (first run only)" >&2
CHARTREUSE_ARGO_DIR=$(test/tools/argo/build.sh | tail -n1)
export CHARTREUSE_KUBE_BIN CHARTREUSE_ARGO_DIR CHARTREUSE_REPO=$PWD
go build -o "${CHARTREUSE_CACHE:-$PWD/.cache}/bin/demo" ./test/cmd/demo
exec "${CHARTREUSE_CACHE:-$PWD/.cache}/bin/demo" "$@"
