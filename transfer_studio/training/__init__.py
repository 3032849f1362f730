"""The training engine (Qt-free): ``fit(project, callbacks, control) -> RunResult``.

The CLI and the desktop app's background worker call the same ``fit``; progress reaches them as
events (``training.events``) delivered to callbacks, and stop/pause requests travel through a
``Control`` (threading.Event based, polled every batch).

``fit`` is imported here eagerly on purpose: it shares its name with the ``training.fit`` module,
and importing that module later would otherwise rebind ``training.fit`` to the module.
"""

from transfer_studio.training.callbacks import Dispatcher, ProgressPrinter
from transfer_studio.training.control import Control
from transfer_studio.training.events import RunResult
from transfer_studio.training.fit import fit

__all__ = ["Control", "Dispatcher", "ProgressPrinter", "RunResult", "fit"]
