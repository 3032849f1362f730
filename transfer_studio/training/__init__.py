"""The training engine (Qt-free): ``fit(project, callbacks, control) -> RunResult``.

The CLI and the desktop app's background worker call the same ``fit``; progress reaches them as
events (``training.events``) delivered to callbacks, and stop/pause requests travel through a
``Control`` (threading.Event based, polled every batch).

Names are imported lazily: ``training.control`` and ``training.events`` stay cheap to import (no
torch) for a GUI that only needs to create a Control or recognise events.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "fit": "transfer_studio.training.fit",
    "Control": "transfer_studio.training.control",
    "RunResult": "transfer_studio.training.events",
    "Dispatcher": "transfer_studio.training.callbacks",
    "ProgressPrinter": "transfer_studio.training.callbacks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
