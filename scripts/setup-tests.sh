#!/usr/bin/env bash
# Installs what only the tests need (scripts/test-all.sh runs it after setup.sh),
# idempotently: the main job (scripts/demo.sh) does without.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

[ "$(id -u)" -eq 0 ] || die "run as root (installs Debian packages)"

# The vfpga CLI's tests (guest-driver/tests/cli.rs): .npy files written and read by
# NumPy, an implementation independent of the CLI's own reader and writer.
apt_install python3-numpy
# The metrics endpoint's tests (backend/vfpgad/tests/metrics.rs): Prometheus's
# promtool checks scrapes, its server scrapes the endpoint.
apt_install prometheus
# The benchmark plots' check (scripts/test-plots.py) and the Python client's tests
# (clients/python/test.sh installs its own virtual environments from it).
apt_install python3 python3-venv
# The libvirt VM test (tests/vm/tests/libvirt.rs): Debian's libvirtd and virsh.
"$here/../tests/vm/setup-libvirt.sh"
# The packages' test (packaging/test-debs.sh; packaging/build-debs.sh builds them with
# these too): cargo-deb, which runs dpkg-shlibdeps (dpkg-dev) and objcopy (binutils), and
# man-db to read the pages it builds.
apt_install dpkg-dev binutils man-db
deb_version=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$deb_version"; then
	log "installing cargo-deb $deb_version (a couple of minutes, once)"
	cargo install --locked cargo-deb --version "$deb_version" >/dev/null
fi
