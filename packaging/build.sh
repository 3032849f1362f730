#!/usr/bin/env bash
# Build the one-folder desktop bundle with PyInstaller, outside the repository, and (Linux) add it to
# the current user's applications menu. Run from anywhere after the README's install step:
#
#   bash packaging/build.sh                 # -> ${TS_BUILD_DIR:-/tmp/ts-build}/dist/transfer-studio/
#   INSTALL_DESKTOP_ENTRY=0 bash packaging/build.sh   # build only
#
# PyInstaller is a build tool, not a dependency of the app: it is installed into the same venv here.
# Remove the menu entry again with: <bundle>/transfer-studio desktop-entry remove
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
build="${TS_BUILD_DIR:-${TMPDIR:-/tmp}/ts-build}"
case "$build/" in
  "$repo"/*) echo "TS_BUILD_DIR must be outside the repository ($repo)" >&2; exit 2 ;;
esac
"$python" "$repo/packaging/make_icons.py" --check
"$python" -m pip install -q pyinstaller
"$python" -m PyInstaller --noconfirm --clean \
  --distpath "$build/dist" --workpath "$build/work" "$repo/packaging/transfer_studio.spec"
app="$build/dist/transfer-studio/transfer-studio"
if [ "$(uname)" = "Linux" ] && [ "${INSTALL_DESKTOP_ENTRY:-1}" = "1" ]; then
  "$app" desktop-entry install
fi
du -sh "$build/dist/transfer-studio"
echo "built $app"
