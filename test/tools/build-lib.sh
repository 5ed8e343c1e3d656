# shellcheck shell=bash
# Shared by test/tools/*/build.sh (sourced, not run): reading the pinned
# version, the cache folder, the --print-dir / warm / lock sequence, running
# the build under progress (progress.sh) and installing the built bin/ folder.
# A build.sh sets `here` (its own directory) before sourcing this file; it
# defines `complete` (0 when the build is there and current) before calling
# build_start.

# shellcheck source=test/tools/progress.sh
. "$here/../progress.sh"
# shellcheck disable=SC2034 # read by progress
progress_who=build.sh
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
		progress "waiting for the other build of $what $version" 0 -- flock 9
	fi
	if complete; then # built by whoever held the lock
		echo "$printed"
		exit 0
	fi
}

# build_tmp: tmp is a new folder next to $out, removed if the script fails.
build_tmp() {
	tmp=$(mktemp -d "$dir/bin.tmp.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
}

# build_run SECONDS COMMAND [ARGS...]: runs the build (COMMAND, usually a
# function of build.sh) under progress: a line saying what is built where and
# how long a first build took here (SECONDS, measured on two cores), then one
# every 30 s while it runs and one at the end, so that a first run never stays
# silent for the minutes a build takes. A warm run never gets here.
build_run() {
	local secs=$1
	shift
	echo "build.sh: building $build_what into $out; a first build took $(progress_about "$secs") on 2 cores here (later runs reuse it)" >&2
	progress "building $build_what" "$secs" -- "$@"
}

# build_install [MARKER]: checks that every command was built into $tmp, writes
# MARKER (if given) to $tmp/.complete and puts $tmp in place of $out.
# shellcheck disable=SC2120 # MARKER is optional
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
