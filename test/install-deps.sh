#!/usr/bin/env bash
# Installs the Debian 12 packages the real-server tests need:
#   Kubernetes node: containerd, runc, CNI plugins, iptables, iproute2, conntrack,
#                    util-linux/mount (nsenter, mount), etcd
#   PostgreSQL/Patroni tests: postgresql-15, patroni, etcd, python3-alembic, python3-psycopg2
#   the docs' commands (test/e2e/cli_test.go): git (serves the example repository), jq
#   migrations from an image (pkg/ocisource, test/registry): docker-registry
# Idempotent: when every package is already installed it does nothing (no
# apt-get update), so warm runs are instant. Packages' own services are not
# started (the tests start their own servers with their own configuration).
set -euo pipefail
# shellcheck source=test/tools/progress.sh
. "$(dirname "${BASH_SOURCE[0]}")/tools/progress.sh"
# shellcheck disable=SC2034 # read by progress
progress_who=install-deps

pkgs=(
	etcd-server etcd-client
	containerd runc containernetworking-plugins
	iptables iproute2 conntrack util-linux mount
	postgresql-15 patroni python3-alembic python3-psycopg2
	ca-certificates time
	git jq
	docker-registry
)

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done
if ((${#missing[@]} == 0)); then
	echo "install-deps: all ${#pkgs[@]} packages are installed"
	exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
	sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}"

# Keep the packages' services (containerd, etcd, postgresql, docker-registry) from starting:
# they would hold default ports and sockets the tests do not use.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 0755 "$policy"
	trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi

# Both print as they go, but a slow mirror or a package's set-up can keep them
# quiet for minutes: progress says how long they have been at it.
progress "apt-get update" 0 -- "${sudo[@]}" apt-get update -q
progress "apt-get install of ${#missing[@]} packages" 0 -- "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"

# docker-registry's package enables its service (a registry on :5000 for every
# user): the tests run their own, so it is stopped if it started and disabled.
if [[ " ${missing[*]} " == *" docker-registry "* ]]; then
	if [[ -d /run/systemd/system ]]; then
		"${sudo[@]}" systemctl stop docker-registry.service || true
	fi
	"${sudo[@]}" systemctl disable docker-registry.service 2>/dev/null ||
		"${sudo[@]}" update-rc.d docker-registry disable
fi
