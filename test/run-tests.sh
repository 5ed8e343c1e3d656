#!/usr/bin/env bash
# `make test`: every test, against real servers. Installs what it needs (Debian
# packages, Go modules, the Kubernetes binaries on first use), then
#   1. the environment's own tests (test/kubeenv, test/images) and the Kubernetes fault
#      suite, which start, check and tear down their own cluster;
#   2. everything else against one shared cluster (test/env.sh run), torn down even on
#      failure; PostgreSQL and Patroni servers are started per package by the tests;
#   3. a check that nothing was left running or lying around.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "run-tests: the real-server tests need root (they run PostgreSQL as postgres and a kubelet)" >&2; exit 1; }

t0=$(date +%s)
started=$(mktemp /tmp/run-tests-started.XXXXXX)
trap 'rm -f "$started"' EXIT
test/install-deps.sh
go mod download
go build ./...
echo "run-tests: building the Kubernetes binaries (first run only)"
test/tools/kube/build.sh >/dev/null
echo "run-tests: building Argo Workflows and Tekton Pipelines (first run only)"
CHARTREUSE_ARGO_DIR=$(test/tools/argo/build.sh | tail -n1)
CHARTREUSE_TEKTON_BIN=$(test/tools/tekton/build.sh | tail -n1)
export CHARTREUSE_ARGO_DIR CHARTREUSE_TEKTON_BIN
echo "run-tests: building the argo and tkn CLIs (first run only)"
CHARTREUSE_ARGO_CLI_BIN=$(test/tools/argo-cli/build.sh | tail -n1)
CHARTREUSE_TKN_BIN=$(test/tools/tkn/build.sh | tail -n1)
export CHARTREUSE_ARGO_CLI_BIN CHARTREUSE_TKN_BIN
t1=$(date +%s)
echo "run-tests: set-up took $((t1 - t0))s"

status=0
# These own their cluster: kubeenv checks its own teardown, and the Kubernetes fault
# suite restarts the API server, which it does not do to a shared cluster.
go test -count=1 -timeout 30m ./test/kubeenv/ ./test/images/ ./test/faults/kube/ || status=1

mapfile -t pkgs < <(go list ./... | grep -v -e '/test/kubeenv$' -e '/test/images$' -e '/test/faults/kube$')
test/env.sh run go test -count=1 -timeout 60m "${pkgs[@]}" || status=1

test/check-clean.sh "$started" || status=1
echo "run-tests: finished in $(($(date +%s) - t0))s, status $status"
exit "$status"
