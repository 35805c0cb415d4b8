#!/usr/bin/env bash
# Runs inside the throwaway Debian root of packaging/test-debs.sh (chroot), with the
# packages in /mnt: installs them with dpkg, checks what they installed, purges them.
# Not meant to be run on a real system: it installs and purges vfpga's packages.
set -euo pipefail
say() { printf '[in-root] %s\n' "$*" >&2; }
fail() {
	printf '[in-root] FAILED: %s\n' "$*" >&2
	exit 1
}
# run DESC CMD...: runs CMD, showing the end of its output only if it fails.
run() {
	local desc=$1 out rc=0
	shift
	out=$("$@" 2>&1) || rc=$?
	[ "$rc" -eq 0 ] || { printf '%s\n' "$out" | tail -n 40 >&2; fail "$desc (exit $rc)"; }
}

programs=(vfpgad vfpga-agent vfpga vfpga-xen vfpga-pxe)
packages=("${programs[@]}" vfpga-dkms)
export HOME=/tmp/home LANG=C.UTF-8 MANWIDTH=80
mkdir -p "$HOME"
kver=$(basename "$(find /lib/modules -mindepth 1 -maxdepth 1 -type d | head -n1)")
[ -e "/lib/modules/$kver/build" ] || fail "no kernel headers in the root"
groups_before=$(getent group | cut -d: -f1 | sort)
users_before=$(getent passwd | cut -d: -f1 | sort)

say "dpkg -i: ${packages[*]}"
debs=()
for p in "${packages[@]}"; do debs+=(/mnt/"${p}"_*.deb); done
run "dpkg -i" dpkg -i "${debs[@]}"
for p in "${packages[@]}"; do
	[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p")" = "ii " ] || fail "$p is not installed"
done

say "every file the packages list is there, unchanged (dpkg --verify)"
for p in "${packages[@]}"; do
	while read -r f; do
		[ -e "$f" ] || fail "$p lists $f, which is missing"
	done < <(dpkg-query -L "$p")
	# vfpga-dkms is made by dpkg-deb without md5sums: nothing to verify there.
	[ "$p" = vfpga-dkms ] || run "dpkg --verify $p" sh -c "out=\$(dpkg --verify $p) && [ -z \"\$out\" ] || { echo \"\$out\"; exit 1; }"
done
[ "$(dpkg-query -W -f='${Conffiles}' vfpgad | awk 'NF {print $1}')" = /etc/vfpga/vfpgad.toml ] ||
	fail "vfpgad's conffiles are not exactly /etc/vfpga/vfpgad.toml"

say "man pages: found by name and rendered without warnings"
pages=0
for p in "${programs[@]}"; do
	[ "$(man -w "$p")" = "/usr/share/man/man1/$p.1.gz" ] || fail "man -w $p: $(man -w "$p" 2>&1)"
	for page in /usr/share/man/man1/"$p".1.gz /usr/share/man/man1/"$p"-*.1.gz; do
		[ -e "$page" ] || continue
		w=$(man --warnings -l "$page" 2>&1 >/dev/null) || fail "man -l $page failed: $w"
		[ -z "$w" ] || fail "man -l $page warns: $w"
		man -l "$page" 2>/dev/null | grep -q '^NAME' || fail "$page has no NAME section"
		pages=$((pages + 1))
	done
done
man -l /usr/share/man/man1/vfpgad.1.gz 2>/dev/null | grep -q '^EXAMPLES' || fail "vfpgad(1) has no EXAMPLES section"
say "$pages pages"

say "completions: bash, zsh and fish offer each command's options"
for p in "${programs[@]}"; do
	# bash: the file bash-completion would load for the command defines its completion,
	# and that completion, asked for `CMD --`, offers --help.
	replies=$(bash -c '
		f=/usr/share/bash-completion/completions/$1
		. /usr/share/bash-completion/bash_completion
		. "$f"
		fn=$(complete -p "$1" | sed -n "s/.* -F \([^ ]*\) .*/\1/p")
		[ -n "$fn" ] || exit 3
		COMP_WORDS=("$1" --); COMP_CWORD=1; COMP_LINE="$1 --"; COMP_POINT=${#COMP_LINE}
		"$fn" "$1" -- "$1"
		printf "%s\n" "${COMPREPLY[@]}"' _ "$p") || fail "bash completion of $p does not load"
	grep -qx -- '--help' <<<"$replies" || fail "bash completion of '$p --' lacks --help: $replies"
	# zsh: compinit finds _CMD in the vendor folder and binds it to the command.
	z=$(zsh -fc 'autoload -Uz compinit && compinit -u -d "$HOME/.zcompdump" && print -r -- ${_comps[$1]}' _ "$p")
	[ "$z" = "_$p" ] || fail "zsh binds $p to '$z', not _$p"
	run "zsh -n _$p" zsh -n "/usr/share/zsh/vendor-completions/_$p"
	# fish: vendor completions load by themselves.
	run "fish --no-execute $p.fish" fish --no-execute "/usr/share/fish/vendor_completions.d/$p.fish"
	f=$(fish -c "complete -C '$p --'" 2>&1)
	grep -q -- '^--help' <<<"$f" || fail "fish completion of '$p --' lacks --help: $f"
done
# Options hidden from --help (the supervisor's, passed to its worker) are not offered.
f=$(fish -c "complete -C 'vfpgad --'" 2>&1)
grep -q -- '^--supervise' <<<"$f" || fail "fish does not offer vfpgad --supervise: $f"
! grep -q -- '^--worker-of' <<<"$f" || fail "fish offers vfpgad's internal --worker-of"

say "systemd units: systemd-analyze verify, not enabled by the installation"
units=(vfpgad.service vfpgad-dom0.service vfpga-agent.service)
for u in "${units[@]}"; do
	[ -f "/usr/lib/systemd/system/$u" ] || fail "$u not installed"
	[ ! -e "/etc/systemd/system/multi-user.target.wants/$u" ] || fail "$u was enabled by the installation"
done
run "systemd-analyze verify" systemd-analyze verify "${units[@]/#//usr/lib/systemd/system/}"

say "vfpgad --check on the installed example configuration"
run "vfpgad --check" vfpgad --config /etc/vfpga/vfpgad.toml --check

say "vfpga-dkms: group, udev rule, and the module DKMS built for $kver"
getent group vfpga >/dev/null || fail "group vfpga missing"
[ -f /usr/lib/udev/rules.d/60-vfpga.rules ] || fail "udev rule missing"
status=$(dkms status -m vfpga)
grep -q "^vfpga/.*, $kver, .*: installed" <<<"$status" || fail "dkms status: '$status', not installed for $kver"
ko=$(find "/lib/modules/$kver" -name 'virtio_vfpga.ko*' | head -n1)
[ -n "$ko" ] || fail "virtio_vfpga.ko not installed under /lib/modules/$kver"
alias=$(/sbin/modinfo -F alias "$ko")
[ "$alias" = 'virtio:d00000015v*' ] || fail "$ko: alias '$alias'"
[ "$(/sbin/modinfo -F vermagic "$ko" | cut -d' ' -f1)" = "$kver" ] || fail "$ko not built for $kver"

# What the agent's unit makes when it runs (StateDirectory=vfpga: the bitstream library
# hosts upload to), which its purge removes.
mkdir -p /var/lib/vfpga/bitstreams
echo 'name = "uploaded"' >/var/lib/vfpga/bitstreams/uploaded.toml

say "dpkg -r: the programs and the module go, the configuration stays"
run "dpkg -r" dpkg -r "${packages[@]}"
for p in "${programs[@]}"; do
	[ ! -e "/usr/bin/$p" ] || fail "/usr/bin/$p left after dpkg -r"
done
[ -f /etc/vfpga/vfpgad.toml ] || fail "dpkg -r removed the conffile /etc/vfpga/vfpgad.toml"
[ -z "$(dkms status -m vfpga)" ] || fail "dkms still has vfpga after dpkg -r: $(dkms status -m vfpga)"
[ -z "$(find /lib/modules -name 'virtio_vfpga.ko*')" ] || fail "virtio_vfpga.ko left after dpkg -r"

say "dpkg --purge"
run "dpkg --purge" dpkg --purge "${packages[@]}"
[ ! -e /etc/vfpga ] || fail "/etc/vfpga left after the purge"
for p in "${packages[@]}"; do
	s=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	[ -z "$s" ] || [ "$s" = "un " ] || fail "$p still known to dpkg: '$s'"
done
leftover=$(find /var/lib/dpkg/info -name 'vfpga*')
[ -z "$leftover" ] || fail "dpkg records left: $leftover"
[ -z "$(dkms status -m vfpga)" ] || fail "dkms still knows vfpga: $(dkms status -m vfpga)"
[ "$(getent group | cut -d: -f1 | sort)" = "$groups_before" ] || fail "groups differ after purge"
[ "$(getent passwd | cut -d: -f1 | sort)" = "$users_before" ] || fail "users differ after purge"
rm -rf "$HOME"
say "installed, checked and purged"
