"""Where the app's resources (icons, stylesheet, app icon, .desktop entry) are, without Qt.

Resources live in the repository's top-level ``resources/`` folder; the wheel maps that folder into
the package as ``transfer_studio/resources`` (pyproject's force-include) and a PyInstaller build
copies it to the same place. ``resources_dir`` finds it either way: first inside the package, then
beside it in an editable install or source checkout.
"""

from __future__ import annotations

import functools
from pathlib import Path


@functools.cache
def resources_dir() -> Path:
    """The folder holding icons/, app-icon/, style.qss, the app icon and the .desktop entry."""
    here = Path(__file__).resolve().parent
    # An installed wheel or a PyInstaller build: transfer_studio/resources. (Not through
    # importlib.resources: the folder has no __init__.py, and files() on such a namespace package
    # returns a MultiplexedPath that is no file-system path.)
    # Then an editable install / source checkout: <repo>/resources next to <repo>/transfer_studio.
    for candidate in (here / "resources", here.parent / "resources"):
        if (candidate / "style.qss").is_file():
            return candidate
    raise FileNotFoundError(
        "Transfer Studio's resources folder is missing (expected transfer_studio/resources in an "
        "installed wheel or resources/ in a source checkout); reinstall the package."
    )


def resource_path(name: str) -> Path:
    return resources_dir() / name
