#!/usr/bin/env bash
# `make bench`: builds the step binaries (make build), then runs bench/cmd/bench,
# which starts its own PostgreSQL (test/pgenv), for sections 3 and 8 uses the test
# cluster named by CHARTREUSE_TEST_ENV or starts one (test/kubeenv), builds the goose CLI into
# .cache/bench once, and prints the table (also written to
# bench/results-<date>.txt). Arguments go to the program (e.g. -sections 1,2
# -runs-nothing 21); `go run ./bench/cmd/bench -h` lists them. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "bench: needs root (PostgreSQL runs as postgres, the cluster needs a kubelet)" >&2; exit 1; }
test/install-deps.sh >&2
if [[ ! -x /usr/bin/time ]]; then
	echo "bench: GNU time (/usr/bin/time, Debian package time) is missing: peak RSS will include the benchmark's own memory" >&2
fi
make build >&2
exec go run ./bench/cmd/bench "$@"
