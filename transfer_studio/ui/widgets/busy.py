"""A busy indicator for background tasks: spinner, text, progress bar and a Cancel button."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QPainter, QPalette, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QWidget

from transfer_studio.ui.worker import TaskHandle


class Spinner(QWidget):
    """A rotating arc. Its timer only runs while it is visible, so a hidden spinner costs nothing."""

    def __init__(self, parent: QWidget | None = None, size: int = 18):
        super().__init__(parent)
        self.setFixedSize(size, size)
        self._angle = 0
        self._timer = QTimer(self)
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._tick)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._timer.start()
        super().showEvent(event)

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._timer.stop()
        super().hideEvent(event)

    def _tick(self) -> None:
        self._angle = (self._angle + 30) % 360
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pen = QPen(self.palette().color(QPalette.ColorRole.Highlight), 2.5)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        p.setPen(pen)
        r = QRectF(2, 2, self.width() - 4, self.height() - 4)
        p.drawArc(r, -self._angle * 16, 270 * 16)
        p.end()


class BusyIndicator(QWidget):
    """Shows that a background task runs, how far it is, and lets the user cancel it.

    Hidden while idle. Typical use with ``ui.worker.run_task``::

        handle = run_task(fn, on_result=..., on_finished=busy.stop)
        busy.start("Loading resnet50…", handle=handle)   # progress + Cancel wired to the handle

    Without a handle, call ``set_progress`` yourself and connect ``cancelRequested``.

    A task that reports few, long steps (``progress(k, n)`` once per step) can name them:
    ``start(text, handle=h, steps=["Loading", "Writing", ...])`` shows the step under way next to the
    text, so a bar that rests on one value for a while still says what is happening. The time since
    the start shows once a task has run for a few seconds.
    """

    ELAPSED_AFTER_S = 3.0  # shorter tasks do not need a clock

    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None, *, object_name: str = "busy"):
        super().__init__(parent)
        self.setObjectName(object_name)
        self.spinner = Spinner(self)
        self.label = QLabel()
        self.label.setObjectName(f"{object_name}_label")
        self.label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.progress = QProgressBar()
        self.progress.setObjectName(f"{object_name}_progress")
        self.progress.setMaximumWidth(220)
        self.progress.setTextVisible(True)
        self.elapsed_label = QLabel()
        self.elapsed_label.setObjectName(f"{object_name}_elapsed")
        self.elapsed_label.setToolTip("Time since this started")
        self.elapsed_label.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName(f"{object_name}_cancel")
        self.cancel_button.clicked.connect(self._on_cancel)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.addWidget(self.spinner)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.elapsed_label)
        lay.addWidget(self.progress)
        lay.addWidget(self.cancel_button)
        self._handle: TaskHandle | None = None
        self._busy = False
        self._text = ""
        self._steps: list[str] = []
        self._t0 = 0.0
        self._clock = QTimer(self)
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self._tick)
        self.setVisible(False)

    def start(self, text: str, *, cancellable: bool = True, handle: TaskHandle | None = None,
              steps: Sequence[str] | None = None) -> None:
        self._disconnect()
        self._handle = handle
        if handle is not None:
            handle.progress.connect(self.set_progress)
        self._busy = True
        self._text = text
        self._steps = list(steps or [])
        self._t0 = time.monotonic()
        self.elapsed_label.setVisible(False)
        self._clock.start()
        self.label.setText(self._step_text(0) if self._steps else text)
        self.progress.setRange(0, 0)  # indeterminate until the first progress report
        self.progress.setVisible(True)
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("Cancel")
        self.cancel_button.setVisible(cancellable)
        self.setVisible(True)

    def set_text(self, text: str) -> None:
        self._text = text
        self._steps = []
        self.label.setText(text)

    def set_progress(self, done: int, total: int) -> None:
        if total <= 0:
            self.progress.setRange(0, 0)
            return
        if self._steps:
            self.label.setText(self._step_text(done))
        # QProgressBar holds ints: scale byte counts (downloads) down to a safe range.
        scale = max(1, total // 1_000_000)
        self.progress.setRange(0, total // scale)
        self.progress.setValue(min(done, total) // scale)

    def stop(self) -> None:
        self._disconnect()
        self._handle = None
        self._busy = False
        self._clock.stop()
        self.elapsed_label.setVisible(False)
        self.setVisible(False)

    def elapsed_text(self) -> str:
        """The time since ``start`` as shown ("0:42"), or "" while it is not shown yet."""
        return self.elapsed_label.text() if self.elapsed_label.isVisibleTo(self) else ""

    def _step_text(self, done: int) -> str:
        """``text — step k of n: name`` for the step under way after ``done`` finished steps."""
        n = len(self._steps)
        k = min(max(done, 0), n - 1)
        return f"{self._text} \u2014 step {k + 1} of {n}: {self._steps[k]}"

    def _tick(self) -> None:
        seconds = int(time.monotonic() - self._t0)
        if seconds < self.ELAPSED_AFTER_S:
            return
        self.elapsed_label.setText(f"{seconds // 60}:{seconds % 60:02d}")
        self.elapsed_label.setVisible(True)

    def is_busy(self) -> bool:
        return self._busy

    def _on_cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Cancelling…")
        if self._handle is not None:
            self._handle.cancel()
        self.cancelRequested.emit()

    def _disconnect(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(RuntimeError, TypeError):
                self._handle.progress.disconnect(self.set_progress)
