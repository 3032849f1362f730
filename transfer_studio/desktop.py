"""Desktop integration on Linux and other XDG desktops: a menu entry, icons and the project MIME type.

``install()`` writes, for the current user only (no root):

- ``$XDG_DATA_HOME/applications/transfer-studio.desktop`` (its ``Exec`` runs this installation),
- ``$XDG_DATA_HOME/icons/hicolor/<N>x<N>/apps/transfer-studio.png`` and ``scalable/apps/…svg``,
- ``$XDG_DATA_HOME/mime/packages/transfer-studio.xml`` (``*.tsproj`` files open in the app),

then refreshes the desktop's caches when their tools are installed. ``remove()`` deletes exactly
those files. ``XDG_DATA_HOME`` defaults to ``~/.local/share``. Qt-free: the CLI's ``desktop-entry``
command and the packaging script use it. Windows and macOS get their shortcut or .app from the
PyInstaller build instead (docs/packaging.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transfer_studio.config import atomic_write_bytes, atomic_write_text
from transfer_studio.errors import UserError

APP_ID = "transfer-studio"
DESKTOP_FILE = f"{APP_ID}.desktop"
MIME_FILE = f"{APP_ID}.xml"


@dataclass
class DesktopResult:
    action: str  # "install" | "remove"
    files: list[str] = field(default_factory=list)  # written or removed
    exec_line: str = ""
    refreshed: list[str] = field(default_factory=list)  # cache tools that ran


def data_home(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    value = env.get("XDG_DATA_HOME", "").strip()
    # The XDG spec: a relative path is invalid and must be ignored.
    if value and Path(value).is_absolute():
        return Path(value)
    return Path.home() / ".local" / "share"


def _resources() -> Path:
    from transfer_studio.resources_path import resources_dir

    return resources_dir()


def default_command() -> list[str]:
    """The command that starts this installation of the app."""
    if getattr(sys, "frozen", False):  # a PyInstaller bundle: its own executable
        return [str(Path(sys.executable).resolve())]
    script = Path(sys.executable).with_name("transfer-studio")
    if script.is_file():  # the console script beside this interpreter (a venv or a user install)
        return [str(script)]
    found = shutil.which("transfer-studio")
    if found:
        return [str(Path(found).resolve())]
    return [str(Path(sys.executable).resolve()), "-m", "transfer_studio"]


def _desktop_quote(arg: str) -> str:
    """Quote one Exec argument as the Desktop Entry spec asks (double quotes, escapes inside)."""
    if arg and not any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`%'):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
    return f'"{escaped.replace("%", "%%")}"'


def exec_line(command: Sequence[str]) -> str:
    return " ".join(_desktop_quote(a) for a in command) + " %f"


def desktop_entry_text(command: Sequence[str]) -> str:
    """resources/transfer-studio.desktop with Exec (and TryExec) pointing at ``command``."""
    lines = []
    for line in (_resources() / DESKTOP_FILE).read_text(encoding="utf-8").splitlines():
        if line.startswith("Exec="):
            lines.append("Exec=" + exec_line(command))
            lines.append("TryExec=" + _desktop_quote(command[0]))
        elif not line.startswith("TryExec="):
            lines.append(line)
    return "\n".join(lines) + "\n"


def _icon_targets(home: Path) -> list[tuple[Path, Path]]:
    """(source, destination) for every icon the entry uses."""
    res = _resources()
    hicolor = home / "icons" / "hicolor"
    pairs = [(res / f"{APP_ID}.svg", hicolor / "scalable" / "apps" / f"{APP_ID}.svg")]
    for png in sorted((res / "app-icon").glob(f"{APP_ID}-*.png")):
        size = png.stem.rsplit("-", 1)[1]
        pairs.append((png, hicolor / f"{size}x{size}" / "apps" / f"{APP_ID}.png"))
    return pairs


def planned_files(home: Path | None = None) -> list[Path]:
    home = data_home() if home is None else home
    return ([home / "applications" / DESKTOP_FILE, home / "mime" / "packages" / MIME_FILE]
            + [dst for _src, dst in _icon_targets(home)])


def _check_platform() -> None:
    if sys.platform == "win32" or sys.platform == "darwin":
        raise UserError("desktop entries are for Linux (XDG) desktops; on Windows and macOS use the "
                        "PyInstaller build's shortcut or .app (see docs/packaging.md)")


def _refresh(home: Path) -> list[str]:
    """Run the desktop's cache tools that are installed; their failure is not ours to report."""
    ran = []
    for tool, args in (("update-desktop-database", [str(home / "applications")]),
                       ("update-mime-database", [str(home / "mime")]),
                       ("gtk-update-icon-cache", ["-f", "-t", str(home / "icons" / "hicolor")])):
        exe = shutil.which(tool)
        if exe is None:
            continue
        try:
            subprocess.run([exe, *args], capture_output=True, timeout=60, check=False)
            ran.append(tool)
        except (OSError, subprocess.SubprocessError):
            continue
    return ran


def install(command: Sequence[str] | None = None, home: Path | None = None, refresh: bool = True
            ) -> DesktopResult:
    """Install the menu entry, icons and MIME type for the current user."""
    _check_platform()
    home = data_home() if home is None else home
    command = list(command) if command else default_command()
    result = DesktopResult("install", exec_line=exec_line(command))
    desktop = home / "applications" / DESKTOP_FILE
    atomic_write_text(desktop, desktop_entry_text(command))
    result.files.append(str(desktop))
    mime = home / "mime" / "packages" / MIME_FILE
    atomic_write_bytes(mime, (_resources() / MIME_FILE).read_bytes())
    result.files.append(str(mime))
    for src, dst in _icon_targets(home):
        atomic_write_bytes(dst, src.read_bytes())
        result.files.append(str(dst))
    if refresh:
        result.refreshed = _refresh(home)
    return result


def remove(home: Path | None = None, refresh: bool = True) -> DesktopResult:
    """Delete what ``install`` wrote (files that are not there are skipped)."""
    _check_platform()
    home = data_home() if home is None else home
    result = DesktopResult("remove")
    for path in planned_files(home):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        result.files.append(str(path))
    if refresh:
        result.refreshed = _refresh(home)
    return result
