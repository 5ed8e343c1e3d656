# shellcheck shell=bash
# Sourced (not run) by the scripts of make test and make demo and by
# build-lib.sh: `progress`, so that no step of a first run stays silent for
# minutes. Needs bash 5 (EPOCHREALTIME).
#
#   progress WHAT SECONDS -- COMMAND [ARGS...]
#
# runs COMMAND in the foreground (its stdin, stdout and signals untouched) and,
# while it runs, writes to stderr after 10 s and then every 30 s
#
#   <who>: WHAT: 2m30s elapsed (a first run took about 14 min on 2 cores)
#
# and, when it took 10 s or more, "<who>: WHAT: done in 14m01s" (or "failed
# (exit N) after ...", or "failed or interrupted after ..." when the shell ended
# during COMMAND). A COMMAND that ends sooner prints nothing, so warm runs stay
# quiet. SECONDS is how long COMMAND took here the first time on two cores
# (0: not said). <who> is $progress_who, by default the script's name.
# CHARTREUSE_PROGRESS_FIRST and CHARTREUSE_PROGRESS_TICK (seconds, fractions
# allowed) change the 10 s and 30 s.
#
# The exit status is COMMAND's. Under set -e a failing COMMAND ends the script
# as it would without progress (unless progress is itself tested by if, && or
# ||; then it returns the status). COMMAND may be a shell function.
#
# The heartbeat is a process substitution reading a pipe whose only writer is
# this shell (COMMAND runs with that end closed): it waits on the pipe, not in
# sleep, and ends as soon as progress writes that the step is over or the pipe
# closes because the shell exited in any way (set -e, a signal, even SIGKILL),
# so it never outlives the step and leaves no process behind.

# progress_dur SECONDS: 45s, 2m30s, 1h05m.
progress_dur() {
	local s=$1
	if ((s < 60)); then
		printf '%ds' "$s"
	elif ((s < 3600)); then
		printf '%dm%02ds' $((s / 60)) $((s % 60))
	else
		printf '%dh%02dm' $((s / 3600)) $((s % 3600 / 60))
	fi
}

# progress_about SECONDS: "about 14 min" (or "about 40 s").
progress_about() {
	if (($1 < 90)); then
		printf 'about %d s' "$1"
	else
		printf 'about %d min' $((($1 + 30) / 60))
	fi
}

# _progress_ms: the time in milliseconds (EPOCHREALTIME, whatever the
# locale's decimal point).
_progress_ms() {
	local us=${EPOCHREALTIME//[!0-9]/}
	echo $((10#$us / 1000))
}

# _progress_first: CHARTREUSE_PROGRESS_FIRST (seconds, 10 by default) in
# milliseconds: a step that took less says nothing at its end.
_progress_first() {
	local f=${CHARTREUSE_PROGRESS_FIRST:-10} frac
	[[ $f =~ ^([0-9]*)(\.([0-9]*))?$ ]] || f=10
	frac=${BASH_REMATCH[3]}000
	echo $((10#${BASH_REMATCH[1]:-0} * 1000 + 10#${frac:0:3}))
}

# _progress_beat WHO WHAT SECONDS BEGAN-MS: the heartbeat (stdin: the pipe).
_progress_beat() {
	local who=$1 what=$2 expected=$3 began=$4 wait=${CHARTREUSE_PROGRESS_FIRST:-10} rc note='' first took
	first=$(_progress_first)
	if ((expected > 0)); then
		note=" (a first run took $(progress_about "$expected") on 2 cores)"
	fi
	while :; do
		rc=0
		read -r -t "$wait" _ || rc=$?
		((rc == 0)) && return 0 # progress says the step is over
		if ((rc <= 128)); then
			# End of file without that: the shell ended during the step.
			took=$(($(_progress_ms) - began))
			if ((took >= first)); then
				echo "$who: $what: failed or interrupted after $(progress_dur $((took / 1000)))"
			fi
			return 0
		fi
		echo "$who: $what: $(progress_dur $((($(_progress_ms) - began) / 1000))) elapsed$note"
		wait=${CHARTREUSE_PROGRESS_TICK:-30}
	done
}

progress() {
	if (($# < 4)) || [[ $3 != -- || ! $2 =~ ^[0-9]+$ ]]; then
		echo "usage: progress WHAT SECONDS -- COMMAND [ARGS...]" >&2
		return 2
	fi
	local what=$1 expected=$2 who=${progress_who:-${0##*/}} began fd beat st=0 took first
	shift 3
	began=$(_progress_ms)
	exec {fd}> >(exec >&2 && _progress_beat "$who" "$what" "$expected" "$began")
	beat=$!
	# No `|| st=$?` here: it would turn set -e off inside a COMMAND that is a
	# function. Under set -e a failure ends the shell, and with it the heartbeat.
	"$@" {fd}>&-
	st=$?
	# (A subshell: should the heartbeat be gone, SIGPIPE ends only that.)
	(echo over >&"$fd") 2>/dev/null || true
	exec {fd}>&-
	wait "$beat" 2>/dev/null || true
	took=$(($(_progress_ms) - began))
	first=$(_progress_first)
	if ((took >= first)); then
		if ((st == 0)); then
			echo "$who: $what: done in $(progress_dur $((took / 1000)))" >&2
		else
			echo "$who: $what: failed (exit $st) after $(progress_dur $((took / 1000)))" >&2
		fi
	fi
	return "$st"
}
