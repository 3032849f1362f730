"""tests/core must pass with PySide6 absent: TS_BLOCK_QT=1 makes any Qt import fail loudly."""

import os
import sys

if os.environ.get("TS_BLOCK_QT"):
    class _BlockQt:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph", "PyQt5", "PyQt6"):
                raise ImportError(f"{name} is blocked: core code must not import Qt")
            return None

    sys.meta_path.insert(0, _BlockQt())
