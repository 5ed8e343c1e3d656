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
# shellcheck source=test/tools/progress.sh
. test/tools/progress.sh
# shellcheck disable=SC2034 # read by progress
progress_who=run-tests
[[ $(id -u) -eq 0 ]] || { echo "run-tests: the real-server tests need root (they run PostgreSQL as postgres and a kubelet)" >&2; exit 1; }

t0=$(date +%s)
started=$(mktemp /tmp/run-tests-started.XXXXXX)
built=$(mktemp -d /tmp/run-tests-built.XXXXXX)
# every test's output, for the failure summary printed last (CI shows only the tail)
out=$(mktemp /tmp/run-tests-output.XXXXXX)
bpid=
trap '[[ -n $bpid ]] && kill "$bpid" 2>/dev/null; rm -rf "$started" "$built" "$out"' EXIT

# The engines and CLIs the shared-cluster tests need, as test/tools/<dir>:<variable>
# (each build.sh prints its output directory last).
# triggers after tekton: most packages it needs are compiled by then.
tools=(argo:CHARTREUSE_ARGO_DIR tekton:CHARTREUSE_TEKTON_BIN triggers:CHARTREUSE_TRIGGERS_BIN argo-cli:CHARTREUSE_ARGO_CLI_BIN tkn:CHARTREUSE_TKN_BIN)
for t in kube "${tools[@]%%:*}"; do
	if ! test/tools/"$t"/build.sh --print-dir >/dev/null 2>&1; then
		# Measured here on two cores: the builds took Kubernetes 1192 s, Argo
		# 841 s, tkn 746 s, Tekton 363 s, Triggers 81 s, the argo CLI 26 s.
		echo "run-tests: first run: building Kubernetes, Argo Workflows, Tekton (Pipelines, Triggers) and the argo and tkn CLIs from source; on two cores the set-up and the first tests took about 70 minutes here on a loaded machine (10 when warm), and the rest of the suite takes about 50 to 60 more. Each step says every 30 s how long it has been running."
		break
	fi
done

test/install-deps.sh
progress "go mod download" 0 -- go mod download
progress "go build ./..." 0 -- go build ./...
# go test -json through testlog: plain go test's output, then the slowest tests
# (the CI log shows only its tail, and that says where the time went)
testlog=$built/testlog
go build -o "$testlog" ./test/cmd/testlog
test/tools/kube/build.sh >/dev/null
# The first group of tests needs only Kubernetes, so on a first run these build
# meanwhile (each build.sh runs under nice and prints its progress); a warm run
# finds them at once.
(
	for t in "${tools[@]}"; do
		test/tools/"${t%%:*}"/build.sh | tail -n1 >"$built/${t#*:}" || { echo "run-tests: building ${t%%:*} failed" >&2; exit 1; }
	done
) &
bpid=$!

status=0
# These own their cluster: kubeenv checks its own teardown, and the Kubernetes fault
# suite restarts the API server, which it does not do to a shared cluster.
progress "the first tests (kubeenv, images, Kubernetes faults)" 0 -- go test -json -count=1 -timeout 30m ./test/kubeenv/ ./test/images/ ./test/faults/kube/ 2>&1 | "$testlog" -slowest 5 | tee -a "$out" || status=1

wait "$bpid" || exit 1
bpid=
for t in "${tools[@]}"; do
	export "${t#*:}=$(cat "$built/${t#*:}")"
done
echo "run-tests: set-up and the first tests took $(($(date +%s) - t0))s"

# e2e, the longest, first: go test starts packages in the order given, and the others
# follow one another in the second slot. Three at a time (-p 3) loaded the 2-core
# node past its waits (load average over 50; 17 tests failed on time-outs).
# CHARTREUSE_E2E=full (make test-full) adds e2e's extended scenarios: variants of
# paths the others take, which a 2-core CI node cannot fit in its 90 minutes.
limit=70m
if [[ ${CHARTREUSE_E2E:-} == full ]]; then
	limit=150m
	echo "run-tests: the full tier: e2e's extended scenarios too"
fi
mapfile -t pkgs < <(go list ./... | grep -v -e '/test/kubeenv$' -e '/test/images$' -e '/test/faults/kube$' -e '/test/e2e$')
pkgs=(./test/e2e "${pkgs[@]}")
progress "the shared-cluster tests" 0 -- test/env.sh run go test -json -count=1 -timeout "$limit" "${pkgs[@]}" 2>&1 | "$testlog" -slowest 40 | tee -a "$out" || status=1

# Without -v, go test prints only failing tests' logs; their first lines (file:line:
# message) and the FAIL lines, without the server-log tails, are the summary.
if [[ $status -ne 0 ]]; then
	echo "run-tests: failure summary (the full output is above):"
	# The failed steps first (their node lines and own messages, from the step
	# logs printed under a failing test; each step binary prefixes its lines with
	# its name), then the FAIL lines and messages, last because CI shows the tail.
	grep -E '^\s*(wait-for-db|wait-patroni|check-databases|scale-down|migrate|scale-restore|gate|helm-wait): | exit=[1-9][0-9]* ' "$out" | cut -c1-300 | head -n 40 || true
	grep -E '^\s*(--- FAIL|--- UNFINISHED|FAIL\s|panic:)|^\s+[A-Za-z0-9_]+\.go:[0-9]+: ' "$out" | cut -c1-400 | head -n 200 || true
fi

test/check-clean.sh "$started" || status=1
echo "run-tests: finished in $(($(date +%s) - t0))s, status $status"
exit "$status"
