#!/usr/bin/env bash
# Usage: scripts/test-docs.sh [FILE.md...]   (default: README.md and docs/*.md)
#
# Runs the examples of the documentation, so that docs and code cannot drift apart.
# Every ```sh and ```toml block says in its info string what it is:
#
#   ```sh                a script: run with `set -e`, it must succeed
#   ```sh daemon         each line starts a daemon: it must get ready (its log says
#                        `ready` or `listening`) and stop cleanly on SIGTERM
#   ```toml vfpgad       a vfpgad configuration: `vfpgad --config FILE --check`
#   ```toml xen-guest    a vfpga-xen guest description: `vfpga-xen guest-config`
#   ```toml manifest     a bitstream manifest: vfpgad --check with it in its library
#   ```sh norun:WHY      not run here, WHY one of: vm (inside a guest), xen (needs a Xen
#   ```toml norun:WHY    host), fpga (a board), network (a lab network), install (changes
#                        the host: packages, units), itself (this suite), fragment (part of
#                        a file shown elsewhere), long (a full benchmark)
#
# An example without a class fails the run: every new example is either run or says
# why it cannot be. Examples run as root in the repository, in a mount namespace of
# their own whose writes vanish (an overlay on the repository, tmpfs on /run/vfpga,
# /etc/vfpga, /srv and /var/lib/vfpga), with the release binaries first in PATH, and
# with /etc/vfpga set up afresh for each example as the docs tell a user to:
# packaging/vfpgad.toml installed as /etc/vfpga/vfpgad.toml and, unless the example
# makes its own, `vfpga-agent cert init` run into /etc/vfpga/pki.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
repo=$PWD

if [ "${1:-}" != --inside ]; then
	[ "$(id -u)" = 0 ] || die "run as root (the examples use /run, /etc and mount namespaces)"
	for b in vfpgad vfpga vfpga-agent vfpga-xen vfpga-pxe vfpga-vhu-demo; do
		[ -x "target/release/$b" ] || die "target/release/$b missing: cargo build --release first"
	done
	exec unshare --mount --propagation private --fork "$0" --inside "$@"
fi
shift

# The namespace: the repository under an overlay, scratch system folders.
scratch=$(mktemp -d)
mkdir -p "$scratch/upper" "$scratch/work"
mount -t overlay overlay -o "lowerdir=$repo,upperdir=$scratch/upper,workdir=$scratch/work" "$repo"
for d in /run/vfpga /etc/vfpga /srv /var/lib/vfpga; do
	mkdir -p "$d"
	mount -t tmpfs tmpfs "$d"
done
export PATH="$repo/target/release:$PATH" RUST_LOG=info

fresh() { # BLOCK: the system folders as a user who followed the docs has them
	local d
	for d in /run/vfpga /etc/vfpga /srv /var/lib/vfpga; do
		umount "$d"
		mount -t tmpfs tmpfs "$d"
	done
	install -D -m 0644 packaging/vfpgad.toml /etc/vfpga/vfpgad.toml
	if ! grep -q 'cert init' "$1"; then
		vfpga-agent cert init --dir /etc/vfpga/pki --server-name localhost \
			--server-name 127.0.0.1 >/dev/null
	fi
}

files=("$@")
[ ${#files[@]} -gt 0 ] || files=(README.md docs/*.md)
ran=0 skipped=0 failed=0
declare -A why_count=()

fail() { # WHERE MESSAGE...
	printf '[docs] FAIL %s: %s\n' "$1" "${*:2}" >&2
	failed=$((failed + 1))
}

run_script() { # WHERE FILE
	local out=$scratch/out
	if ! (cd "$repo" && timeout 300 bash -e "$2") </dev/null >"$out" 2>&1; then
		fail "$1" "the example failed:"
		sed 's/^/    /' "$out" >&2
	fi
}

run_daemons() { # WHERE FILE: each command a daemon (a line, or lines joined by \)
	local line n=0 log pid cont=''
	while IFS= read -r line; do
		line=${line%%#*}
		if [[ $line =~ \\[[:space:]]*$ ]]; then
			cont+="${line%\\*} "
			continue
		fi
		line="$cont$line"
		cont=''
		[ -n "${line// /}" ] || continue
		n=$((n + 1))
		log=$scratch/daemon.$n.log
		(cd "$repo" && exec bash -c "exec $line") </dev/null >"$log" 2>&1 &
		pid=$!
		local t=0
		until grep -q -e ' ready' -e 'listening' "$log"; do
			if ! kill -0 "$pid" 2>/dev/null || [ $t -ge 300 ]; then
				fail "$1" "\`$line\` did not get ready:"
				sed 's/^/    /' "$log" >&2
				kill "$pid" 2>/dev/null || true
				wait "$pid" 2>/dev/null || true
				continue 2
			fi
			sleep 0.1
			t=$((t + 1))
		done
		kill -TERM "$pid"
		if ! wait "$pid"; then
			fail "$1" "\`$line\` did not stop cleanly on SIGTERM:"
			sed 's/^/    /' "$log" >&2
		fi
	done <"$2"
}

check_toml() { # WHERE FILE CLASS
	local out=$scratch/out
	local cmd
	case $3 in
	vfpgad) cmd=(vfpgad --config "$2" --check) ;;
	xen-guest) cmd=(vfpga-xen guest-config "$2" --arch x86_64 --xen-version 4.19) ;;
	manifest)
		local name
		name=$(sed -n 's/^name *= *"\([^"]*\)".*/\1/p' "$2" | head -n1)
		mkdir -p "$scratch/lib"
		cp "$2" "$scratch/lib/$name.toml"
		printf '[library]\ndir = "%s"\nallow = ["%s"]\n[[guest]]\nname = "vm0"\nsocket = "/run/vfpga/vm0.sock"\n' \
			"$scratch/lib" "$name" >"$scratch/manifest.vfpgad.toml"
		cmd=(vfpgad --config "$scratch/manifest.vfpgad.toml" --check)
		;;
	esac
	if ! (cd "$repo" && "${cmd[@]}") </dev/null >"$out" 2>&1; then
		fail "$1" "${cmd[*]} refuses the example:"
		sed 's/^/    /' "$out" >&2
	fi
}

for f in "${files[@]}"; do
	n=0 in=0 lang='' class='' start=0 body=$scratch/block
	while IFS= read -r line || [ -n "$line" ]; do
		n=$((n + 1))
		if [ $in = 0 ]; then
			case $line in
			'```sh'* | '```toml'*)
				info=${line#\`\`\`}
				lang=${info%% *}
				class=${info#"$lang"}
				class=${class# }
				in=1 start=$n
				: >"$body"
				;;
			esac
			continue
		fi
		if [ "$line" != '```' ]; then
			printf '%s\n' "$line" >>"$body"
			continue
		fi
		in=0
		where="$f:$start"
		case "$lang:$class" in
		sh: | sh:daemon | toml:vfpgad | toml:xen-guest | toml:manifest)
			ran=$((ran + 1))
			fresh "$body"
			;;
		*:norun:*)
			skipped=$((skipped + 1))
			why_count[${class#norun:}]=$((${why_count[${class#norun:}]:-0} + 1))
			;;
		esac
		case "$lang:$class" in
		sh:) run_script "$where" "$body" ;;
		sh:daemon) run_daemons "$where" "$body" ;;
		toml:vfpgad | toml:xen-guest | toml:manifest) check_toml "$where" "$body" "$class" ;;
		*:norun:vm | *:norun:xen | *:norun:fpga | *:norun:network | *:norun:install | *:norun:itself | *:norun:fragment | *:norun:long) ;;
		*) fail "$where" "\`\`\`$lang $class: give the example a class (see scripts/test-docs.sh)" ;;
		esac
	done <"$f"
	[ $in = 0 ] || fail "$f:$start" "unterminated code block"
done
reasons=''
for w in "${!why_count[@]}"; do reasons+=" $w ${why_count[$w]},"; done
log "docs: ran $ran examples, $failed failed; not run here:${reasons%,}"
[ $failed = 0 ]
