"""What the app remembers between sessions (QSettings): geometry, splitters, recent files, theme.

The project file holds the user's work; these settings only hold window comfort. The storage is the
platform's native one, or an INI file when ``TS_SETTINGS_FILE`` is set (tests, portable installs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

ORGANIZATION = "TransferStudio"
APPLICATION = "transfer-studio"
MAX_RECENT = 10
FOLDER_KINDS = ("project", "data", "weights", "export", "images")


class Settings:
    """Typed access to QSettings. Create one per window; cheap to construct."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        path = path if path is not None else os.environ.get("TS_SETTINGS_FILE")
        if path:
            self._qs = QSettings(str(path), QSettings.Format.IniFormat)
        else:
            self._qs = QSettings(QSettings.Format.NativeFormat, QSettings.Scope.UserScope,
                                 ORGANIZATION, APPLICATION)

    # -- generic -------------------------------------------------------------------------------
    def value(self, key: str, default: Any = None) -> Any:
        return self._qs.value(key, default)

    def set_value(self, key: str, value: Any) -> None:
        self._qs.setValue(key, value)

    def reset(self) -> None:
        """Forget everything (``--reset-settings``)."""
        self._qs.clear()
        self._qs.sync()

    def sync(self) -> None:
        self._qs.sync()

    @property
    def file_name(self) -> str:
        return self._qs.fileName()

    # -- window --------------------------------------------------------------------------------
    def geometry(self) -> QByteArray | None:
        return self._bytes("window/geometry")

    def set_geometry(self, data: QByteArray) -> None:
        self._qs.setValue("window/geometry", data)

    def window_state(self) -> QByteArray | None:
        return self._bytes("window/state")

    def set_window_state(self, data: QByteArray) -> None:
        self._qs.setValue("window/state", data)

    def splitter_state(self, key: str) -> QByteArray | None:
        return self._bytes(f"splitters/{key}")

    def set_splitter_state(self, key: str, data: QByteArray) -> None:
        self._qs.setValue(f"splitters/{key}", data)

    def _bytes(self, key: str) -> QByteArray | None:
        value = self._qs.value(key)
        if isinstance(value, QByteArray) and not value.isEmpty():
            return value
        if isinstance(value, bytes | bytearray) and value:
            return QByteArray(bytes(value))
        return None

    # -- theme ---------------------------------------------------------------------------------
    def theme(self) -> str:
        value = self._qs.value("view/theme", "system")
        return value if value in ("system", "light", "dark") else "system"

    def set_theme(self, name: str) -> None:
        if name not in ("system", "light", "dark"):
            raise ValueError(f"unknown theme {name!r}")
        self._qs.setValue("view/theme", name)

    # -- recent projects -----------------------------------------------------------------------
    def recent_projects(self, existing_only: bool = False) -> list[str]:
        """Most recent first. ``existing_only`` drops files that were moved or deleted."""
        items = _as_list(self._qs.value("recent/projects", []))
        if existing_only:
            items = [p for p in items if Path(p).is_file()]
        return items

    def add_recent_project(self, path: str | os.PathLike[str]) -> None:
        full = str(Path(path).expanduser().resolve())
        items = [p for p in self.recent_projects() if p != full]
        self._qs.setValue("recent/projects", [full, *items][:MAX_RECENT])
        self.set_last_folder("project", str(Path(full).parent))

    def remove_recent_project(self, path: str | os.PathLike[str]) -> None:
        full = str(Path(path).expanduser().resolve())
        self._qs.setValue("recent/projects", [p for p in self.recent_projects() if p != full])

    def clear_recent_projects(self) -> None:
        self._qs.setValue("recent/projects", [])

    # -- last folders (file dialogs start where the user was) ----------------------------------
    def last_folder(self, kind: str) -> str:
        _check_kind(kind)
        value = self._qs.value(f"folders/{kind}", "")
        if isinstance(value, str) and value and Path(value).is_dir():
            return value
        return str(Path.home())

    def set_last_folder(self, kind: str, folder: str | os.PathLike[str]) -> None:
        _check_kind(kind)
        self._qs.setValue(f"folders/{kind}", str(folder))


def data_dir() -> Path:
    """Where the app keeps its own files (the sample project, the runs of a project never saved, the
    journal of runs it trains). ``TS_DATA_DIR`` overrides it."""
    override = os.environ.get("TS_DATA_DIR")
    if override:
        return Path(override)
    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(location or Path.home() / ".transfer-studio")


def _check_kind(kind: str) -> None:
    if kind not in FOLDER_KINDS:
        raise ValueError(f"unknown folder kind {kind!r}; one of {', '.join(FOLDER_KINDS)}")


def _as_list(value: Any) -> list[str]:
    # QSettings' INI backend returns a bare string for a one-element list and None for an empty one.
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value if v]
