#!/usr/bin/env bash
# Fails when a test left a server process or a temporary directory behind.
# Usage: test/check-clean.sh [SINCE-FILE]
#   SINCE-FILE  only directories newer than this file count (run-tests.sh touches
#               one when it starts), so what an earlier, killed run left does not
#               fail this one; it is reported as a note instead.
set -uo pipefail
since=${1:-}
left=0
for name in postgres patroni etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet containerd workflow-controller; do
	# Only processes started from a test's own temp directories or cache count: a
	# system service of the same name is not ours.
	while read -r pid args; do
		case "$args" in
		*chartreuse*)
			echo "check-clean: process $pid still running: $args" >&2
			left=1
			;;
		esac
	done < <(pgrep -a -x "$name" 2>/dev/null || true)
done
for d in /tmp/chartreuse-*; do
	[[ -e $d ]] || continue
	case "$d" in /tmp/chartreuse-env-logs-*) continue ;; esac # kept on purpose after a failure
	if [[ -n $since && ! $d -nt $since ]]; then
		echo "check-clean: note: $d predates this run (left by an earlier one)" >&2
		continue
	fi
	echo "check-clean: temporary directory left behind: $d" >&2
	left=1
done
if ip link show chartreuse0 >/dev/null 2>&1; then
	echo "check-clean: bridge chartreuse0 still exists" >&2
	left=1
fi
[[ $left -eq 0 ]] && echo "check-clean: no process, directory or bridge left behind"
exit "$left"
