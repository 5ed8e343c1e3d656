#!/usr/bin/env bash
# Installs the Debian 12 packages the real-server tests need:
#   Kubernetes node: containerd, runc, CNI plugins, iptables, iproute2, conntrack,
#                    util-linux/mount (nsenter, mount), etcd
#   PostgreSQL/Patroni tests: postgresql-15, patroni, etcd, python3-alembic, python3-psycopg2
#   the docs' commands (test/e2e/cli_test.go): git (serves the example repository), jq
# Idempotent: when every package is already installed it does nothing (no
# apt-get update), so warm runs are instant. Packages' own services are not
# started (the tests start their own servers with their own configuration).
set -euo pipefail

pkgs=(
	etcd-server etcd-client
	containerd runc containernetworking-plugins
	iptables iproute2 conntrack util-linux mount
	postgresql-15 patroni python3-alembic python3-psycopg2
	ca-certificates time
	git jq
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

# Keep the packages' services (containerd, etcd, postgresql) from starting:
# they would hold default ports and sockets the tests do not use.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 0755 "$policy"
	trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi

"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
