#!/bin/bash
# Set up a fresh Debian 12 machine (as root) for pyha's demo and tests:
# the Debian packages in packaging/debian-packages.txt, then a virtualenv in
# .venv on Debian's python3 (with its site-packages, so the agents' libraries
# are Debian's) holding the test tools.  Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' packaging/debian-packages.txt)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
fi
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
.venv/bin/python -m pip install -q --disable-pip-version-check \
    "pytest>=7" "pytest-timeout" "pytest-randomly" vermin ruff mypy lxml-stubs
