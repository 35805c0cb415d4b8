#!/usr/bin/env bash
# Tests the Python client against the real vfpgad and vfpga-agent built from this
# workspace: builds them, makes a virtual environment under ~/.cache/vfpga with pytest,
# numpy and mypy (pinned in requirements-test.txt; a rerun installs nothing), installs
# the package from pyproject.toml into it, type-checks it (mypy --strict, as Python 3.8
# sees it) and runs the tests. When a Python 3.8 is on the machine (PATH or pyenv), the
# suite runs under it too. Extra arguments go to pytest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$root/scripts/lib.sh"

if [ "$(id -u)" -eq 0 ]; then
	apt_install python3 python3-venv
fi
[ -x /usr/bin/python3 ] || die "no /usr/bin/python3: install python3 and python3-venv"

log "python client: building vfpgad, vfpga-agent and the vfpga CLI"
(cd "$root" && cargo build --release --locked -p vfpgad -p vfpga-agent -p vfpga)
target=${CARGO_TARGET_DIR:-$root/target}/release
export VFPGAD=$target/vfpgad VFPGA_AGENT=$target/vfpga-agent VFPGA_CLI=$target/vfpga

# venv DIR PYTHON REQUIREMENTS: a virtual environment with the requirements, made or
# updated only when they (or the interpreter) changed.
venv() {
	local dir=$1 python=$2 reqs=$3 stamp
	stamp="$("$python" -VV | tr '\n' ' ') $(sha256sum "$reqs" | cut -d' ' -f1)"
	if [ ! -x "$dir/bin/python" ] || [ "$(cat "$dir/.vfpga-stamp" 2>/dev/null)" != "$stamp" ]; then
		log "python client: virtual environment $dir ($("$python" -V))"
		rm -rf "$dir"
		"$python" -m venv "$dir"
		"$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
		printf '%s' "$stamp" >"$dir/.vfpga-stamp"
	fi
	# The package as a user installs it: built from pyproject.toml, not from the tree
	# (and not from what an earlier build left).
	rm -rf "$here/build" "$here/src/vfpga.egg-info"
	"$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation \
		--no-deps --force-reinstall "$here" >/dev/null
}

run_tests() {
	local dir=$1
	shift
	# From the tests folder, so `import vfpga` is the installed package.
	(cd "$here/tests" && "$dir/bin/python" -m pytest -q -p no:cacheprovider "$@" .)
}

main=$VFPGA_CACHE/python-venv
venv "$main" /usr/bin/python3 "$here/requirements-test.txt"
log "python client: mypy --strict"
(cd "$here" && "$main/bin/python" -m mypy --python-version 3.8 src/vfpga &&
	"$main/bin/python" -m mypy tests)
log "python client: tests ($("$main/bin/python" -V))"
run_tests "$main" "$@"

# A python3.8 that runs (a pyenv shim on PATH may not, unless 3.8 is selected).
py38=
for p in $(command -v python3.8 || true) $(compgen -G "${PYENV_ROOT:-$HOME/.pyenv}/versions/3.8.*/bin/python3.8" || true); do
	if "$p" -c 'import sys, ssl, venv; sys.exit(sys.version_info[:2] != (3, 8))' 2>/dev/null; then
		py38=$p
		break
	fi
done
if [ -n "$py38" ]; then
	venv "$VFPGA_CACHE/python38-venv" "$py38" "$here/requirements-test-py38.txt"
	log "python client: tests under $("$py38" -V) (a PYNQ v2.7 image's Python)"
	run_tests "$VFPGA_CACHE/python38-venv" "$@"
else
	log "SKIPPED: the Python client under Python 3.8 (no python3.8 on this machine)"
fi
