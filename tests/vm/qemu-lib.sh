# shellcheck shell=bash
# QEMU process handling shared by tests/vm/run-guest.sh, tests/vm/smoke.sh and
# tests/xen/run-xen.sh. The caller keeps the PID of the `timeout` process it started
# QEMU under in $qpid.

# Children of PID $1, read from /proc (no procps needed).
children_of() {
	local f s st
	for f in /proc/[0-9]*/stat; do
		s=$(cat "$f" 2>/dev/null) || continue
		read -r -a st <<<"${s##*) }" # state ppid ...
		[ "${st[1]}" = "$1" ] && { f=${f#/proc/}; echo "${f%/stat}"; }
	done
	return 0
}

# Stops the timeout process $qpid and the QEMU below it, by PID only: SIGTERM (which
# timeout forwards), up to 5 s, then SIGKILL; reaps it. Leaves $qpid set, so a caller
# may still `wait` on it for the status.
stop_qemu() {
	[ -n "${qpid:-}" ] && kill -0 "$qpid" 2>/dev/null || return 0
	local kids n=0
	kids=$(children_of "$qpid")
	kill -TERM "$qpid" 2>/dev/null || true
	while kill -0 "$qpid" 2>/dev/null && [ $((n += 1)) -le 50 ]; do sleep 0.1; done
	# shellcheck disable=SC2086 # PID list
	kill -KILL $kids "$qpid" 2>/dev/null || true
	wait "$qpid" 2>/dev/null || true
}
