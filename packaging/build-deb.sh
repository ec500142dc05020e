#!/bin/bash
# Build pyha's .deb from a copy of this tree (nothing is written into the tree).
#
#   packaging/build-deb.sh [OUTDIR]     # default OUTDIR: the current directory
#
# Copies the source (without .git, .venv and caches) to /tmp/pyha-pkg-XXXXXX,
# puts packaging/debian at its top, runs "dpkg-buildpackage -us -uc -b" there
# and moves pyha_*.deb to OUTDIR.  Prints the path of the .deb.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath "${1:-.}")
WORK=$(mktemp -d /tmp/pyha-pkg-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/pyha"
tar -C "$SRC" --exclude=.git --exclude=.venv --exclude=__pycache__ --exclude='*.egg-info' \
    --exclude=.pytest_cache --exclude=.mypy_cache --exclude=.ruff_cache --exclude=build \
    --exclude=./debian -cf - . | tar -C "$WORK/pyha" -xf -
cp -r "$SRC/packaging/debian" "$WORK/pyha/debian"
(cd "$WORK/pyha" && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$WORK" LANG=C.UTF-8 \
    dpkg-buildpackage -us -uc -b) > "$WORK/build.log" 2>&1 || {
    tail -40 "$WORK/build.log" >&2
    exit 1
}
deb=$(ls "$WORK"/pyha_*_all.deb)
mv "$deb" "$OUT/"
echo "$OUT/$(basename "$deb")"
