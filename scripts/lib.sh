# shellcheck shell=bash
# Common helpers for the vfpga scripts: cache location, apt mirror, idempotent installs.

VFPGA_CACHE=${VFPGA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vfpga}
export VFPGA_CACHE

log() { printf '\033[1m[vfpga]\033[0m %s\n' "$*" >&2; }
die() { printf '[vfpga] error: %s\n' "$*" >&2; exit 1; }

# The Debian mirror this machine's apt already uses (first deb822 URIs or one-line deb).
apt_mirror() {
	local m
	m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '{print $2}' | grep -v -- '-security' | head -n1)
	[ -n "$m" ] || m=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '$2 ~ /debian\/?$/ {print $2}' | grep -v -- '-security' | head -n1)
	[ -n "$m" ] || die "no Debian mirror found in the apt configuration"
	printf '%s\n' "${m%/}"
}

# apt_install PKG... : install what is missing, updating the package lists once if needed.
apt_install() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	if ! apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
		apt-get update >/dev/null
		apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
	fi
}

# apt_download DIR PKG... : fetch .deb files into DIR unless already there.
apt_download() {
	local dir=$1 p
	shift
	mkdir -p "$dir"
	for p in "$@"; do
		compgen -G "$dir/${p}_*.deb" >/dev/null && continue
		log "downloading $p"
		(cd "$dir" && apt-get download "$p" >/dev/null 2>&1) ||
			{ apt-get update >/dev/null && (cd "$dir" && apt-get download "$p" >/dev/null); } ||
			die "cannot download $p"
	done
}
