# Shared by test/tools/{kube,argo,tekton}/build.sh (sourced, not run): reading
# the pinned version, the cache folder, the --print-dir / warm / lock sequence
# and installing the built bin/ folder. A build.sh sets `here` (its own
# directory) before sourcing this file; it defines `complete` (0 when the build
# is there and current) before calling build_start.

repo=$(cd "$here/../../.." && pwd)
cache=${CHARTREUSE_CACHE:-$repo/.cache}

# build_read_version MODULE [REGEX]: sets version to the version $here/go.mod
# requires of MODULE and exits unless it matches REGEX (default vX.Y.Z); the
# caller may read BASH_REMATCH afterwards.
build_read_version() {
	local mod=$1 re=${2:-'^v[0-9]+\.[0-9]+\.[0-9]+$'}
	version=$(awk -v m="$mod" '($1 == "require" && $2 == m) { print $3 } ($1 == m && $2 ~ /^v/) { print $2 }' "$here/go.mod" | head -n1)
	if [[ ! "$version" =~ $re ]]; then
		echo "build.sh: cannot read the pinned $mod version from $here/go.mod (got '$version')" >&2
		exit 1
	fi
}

# build_cmds_in DIR: every command of cmds is an executable in DIR.
build_cmds_in() {
	local c
	for c in "${cmds[@]}"; do [[ -x "$1/$c" ]] || return 1; done
}

# build_start WHAT PRINTED ABSENT [ARGS...]: with --print-dir, prints PRINTED
# when complete, else says "build.sh: ABSENT" and exits 1. Otherwise prints
# PRINTED and exits when complete, else takes $dir/.build.lock (waiting for
# another build of WHAT $version) and returns to build, unless that other
# build completed it.
build_start() {
	local what=$1 printed=$2 absent=$3
	shift 3
	build_what="$what $version"
	if [[ "${1:-}" == "--print-dir" ]]; then
		complete || { echo "build.sh: $absent" >&2; exit 1; }
		echo "$printed"
		exit 0
	fi

	if complete; then
		echo "$printed"
		exit 0
	fi

	mkdir -p "$dir"
	exec 9>"$dir/.build.lock"
	if ! flock -n 9; then
		echo "build.sh: another build of $what $version is running; waiting for it" >&2
		flock 9
	fi
	if complete; then # built by whoever held the lock
		echo "$printed"
		exit 0
	fi
}

# build_tmp: tmp is a new folder next to $out, removed if the script fails.
# From here until build_install, a line on stderr every 30 s
# (CHARTREUSE_BUILD_TICK) says the build goes on and for how long, so that a
# first run never stays silent for minutes.
build_tmp() {
	tmp=$(mktemp -d "$dir/bin.tmp.XXXXXX")
	local began
	began=$(date +%s)
	(
		trap 'kill $! 2>/dev/null; exit 0' TERM
		while :; do
			sleep "${CHARTREUSE_BUILD_TICK:-30}" &
			wait $!
			echo "build.sh: still building $build_what ($(($(date +%s) - began))s so far)" >&2
		done
	) &
	build_ticker=$!
	trap 'kill "$build_ticker" 2>/dev/null; rm -rf "$tmp"' EXIT
}

# build_install [MARKER]: checks that every command was built into $tmp, writes
# MARKER (if given) to $tmp/.complete and puts $tmp in place of $out.
build_install() {
	local c
	for c in "${cmds[@]}"; do
		[[ -x "$tmp/$c" ]] || { echo "build.sh: $c was not built" >&2; exit 1; }
	done
	if (($# > 0)); then
		echo "$1" >"$tmp/.complete"
	fi
	chmod 0755 "$tmp"
	rm -rf "$out"
	mv "$tmp" "$out"
	kill "$build_ticker" 2>/dev/null || true
	trap - EXIT
}

# build_keyed: key is the hash of $here's go.mod, go.sum and tools.go, and
# complete (what build_start asks) holds when $dir/.complete says
# "$version $key" and every command is in $out; build_done writes that.
build_keyed() {
	key=$(cat "$here/go.mod" "$here/go.sum" "$here/tools.go" | sha256sum | cut -c1-16)
	complete() {
		[[ -f "$dir/.complete" && "$(cat "$dir/.complete")" == "$version $key" ]] || return 1
		build_cmds_in "$out"
	}
}

build_done() {
	echo "$version $key" >"$dir/.complete"
}

# build_go PKG [GO-BUILD-FLAGS...]: go build -v (under nice, static) of PKG into
# $tmp, in the current directory and with its GOFLAGS. The first build takes
# minutes, so it says how far it is every 100 packages of the ones PKG needs;
# every other line (an error) is passed on.
build_go() {
	local pkg=$1 total
	shift
	total=$(go list -deps "$pkg" | wc -l)
	echo "build.sh: go build $pkg ($total packages)" >&2
	CGO_ENABLED=0 nice -n "${CHARTREUSE_NICE:-15}" go build -v -trimpath "$@" -o "$tmp/" "$pkg" 2>&1 |
		awk -v total="$total" '/^[^ #:]+$/ { if (++n % 100 == 0) printf "build.sh: %d/%d packages\n", n, total > "/dev/stderr"; next } { print > "/dev/stderr" }'
	return "${PIPESTATUS[0]}"
}
