"""Drive the real app in a child process: open a project, start training on the Train page, and
SIGKILL the process in the middle of a given epoch (``killer.run_function`` runs it)."""

from __future__ import annotations

import os
import signal
import sys


def train_then_die(project_file: str, kill_in_epoch: str) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer

    from transfer_studio.ui.app import create_window

    app, window, _ = create_window(["--project", project_file])
    epoch = int(kill_in_epoch)
    written: list[str] = []  # the checkpoint of the epoch before is on disk (its writer thread is done)

    def on_batches(chunk) -> None:
        if chunk.epoch >= epoch and len(written) >= epoch - 1:
            print(f"gui_driver: SIGKILL in epoch {chunk.epoch}, batch {chunk.batch}", file=sys.stderr)
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def start() -> None:
        if window.state.path is None:  # the project opens on the event loop's first turn
            QTimer.singleShot(50, start)
            return
        window.show_page("train")
        page = window.page("train")
        page._controller.checkpointWritten.connect(written.append)
        page._controller.batches.connect(on_batches)
        page.start()

    QTimer.singleShot(0, start)
    QTimer.singleShot(300_000, app.quit)  # never hang a test run
    app.exec()
    return 3  # only reached if the kill never came
