"""``fit(project, callbacks, control)``: the one training entry point the CLI and the app share.

Mistakes in the project or the data raise ``UserError`` before anything trains. Problems while
training (out of memory, a full disk) end the run with status "failed", an ``Error`` event and a
message in the result; a stop request ends it with status "stopped". Either way the run directory
keeps the last completed epoch's checkpoint, and ``fit(..., run_dir=RUN, resume=True)`` continues
from it exactly. Events reach ``callbacks`` in the calling thread; ``FitEnd`` is always the last.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from transfer_studio.config import Project
from transfer_studio.training import distributed
from transfer_studio.training.callbacks import Callback, Dispatcher
from transfer_studio.training.checkpoint import run_lock
from transfer_studio.training.control import Control
from transfer_studio.training.engine import prepare
from transfer_studio.training.events import RunResult
from transfer_studio.training.loop import Trainer


def fit(project: Project | None, callbacks: Iterable[Callback] = (), control: Control | None = None, *,
        run_dir: str | Path | None = None, resume: bool = False) -> RunResult:
    """Train the project's network on its data folder; see the module docstring.

    ``resume=True`` continues the run in ``run_dir`` from its checkpoint. Its snapshot (model,
    surgery, split, strategy, ...) is authoritative; from ``project`` (which may be None) only
    RESUMABLE_OVERRIDES are taken, e.g. more epochs or a smaller batch.
    """
    if distributed.requested():  # one of several processes started by torchrun
        return distributed.fit(project, callbacks, control, run_dir=run_dir, resume=resume)
    dispatch = Dispatcher(callbacks)
    setup = prepare(project, run_dir=run_dir, resume=resume)
    with run_lock(setup.run_dir):  # one process per run folder; tells a killed run from a live one
        return Trainer(setup, dispatch, control or Control()).run()
