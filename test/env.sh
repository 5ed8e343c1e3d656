#!/usr/bin/env bash
# The local Kubernetes test environment (package test/kubeenv), by hand or
# shared by several test packages. Needs root.
#
#   test/env.sh up          install missing Debian packages, build the Kubernetes
#                           binaries (first time only, ~20 min), start the
#                           environment in $CHARTREUSE_ENV_DIR (default
#                           /tmp/chartreuse-env); prints the export lines
#   test/env.sh down        stop it and undo every host change (fails, keeping
#                           the state directory, if anything is left behind)
#   test/env.sh status      processes, node, network-safety check (exit 1 if not up)
#   test/env.sh env         export lines: eval "$(test/env.sh env)"
#   test/env.sh run CMD...  up, run CMD with CHARTREUSE_TEST_ENV and KUBECONFIG
#                           set, then down (also on failure or Ctrl-C); exits
#                           with CMD's status, e.g.
#                             test/env.sh run go test ./...
#
# CHARTREUSE_KUBE_AUDIT=1 (up, run) turns on the API server's audit log of
# workload and pod changes: $CHARTREUSE_ENV_DIR/audit/audit.log (JSON lines).
#
# Tests that call kubeenv.Main use the environment named by CHARTREUSE_TEST_ENV;
# without it each test package starts (and stops) its own.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${CHARTREUSE_CACHE:-$repo/.cache}
state=${CHARTREUSE_ENV_DIR:-/tmp/chartreuse-env}
localenv=$cache/bin/localenv

die() { echo "env.sh: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "the test environment needs root"

build_localenv() {
	mkdir -p "$cache/bin"
	(cd "$repo" && GOFLAGS="${GOFLAGS:--mod=mod}" go build -o "$localenv" ./test/cmd/localenv)
}

up() {
	"$here/install-deps.sh" >&2
	local bin
	bin=$(CHARTREUSE_CACHE=$cache "$here/tools/kube/build.sh" | tail -n1)
	build_localenv
	CHARTREUSE_KUBE_BIN=$bin CHARTREUSE_REPO=$repo "$localenv" up --state-dir "$state" ${CHARTREUSE_KUBE_AUDIT:+--audit}
}

down() {
	build_localenv
	"$localenv" down --state-dir "$state"
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case "$cmd" in
up) up ;;
down) down ;;
status)
	build_localenv
	"$localenv" status --state-dir "$state"
	;;
env)
	build_localenv
	"$localenv" env --state-dir "$state"
	;;
run)
	[[ $# -gt 0 ]] || die "usage: test/env.sh run COMMAND [ARGS...]"
	up >&2
	trap 'down >&2' EXIT
	trap 'exit 130' INT TERM
	export CHARTREUSE_TEST_ENV=$state KUBECONFIG=$state/kubeconfig
	set +e
	"$@"
	rc=$?
	set -e
	exit "$rc"
	;;
*)
	sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
