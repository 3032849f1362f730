#!/usr/bin/env bash
# Build a one-folder desktop bundle in dist/transfer-studio and install the desktop entry for the
# current user (Linux). Run from the repository root after the README's install step.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pip install -q pyinstaller
.venv/bin/pyinstaller --noconfirm --clean packaging/transfer_studio.spec
if [ "$(uname)" = "Linux" ] && [ "${INSTALL_DESKTOP_ENTRY:-1}" = "1" ]; then
  apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
  icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/scalable/apps"
  mkdir -p "$apps" "$icons"
  sed "s|^Exec=.*|Exec=$PWD/dist/transfer-studio/transfer-studio %f|" \
    resources/transfer-studio.desktop > "$apps/transfer-studio.desktop"
  cp resources/icons/app.svg "$icons/transfer-studio.svg"
  echo "desktop entry installed in $apps"
fi
echo "built dist/transfer-studio/transfer-studio"
