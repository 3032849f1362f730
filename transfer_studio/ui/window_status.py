"""The main window's status bar: messages, the project's path and the compute device.

The path shortens in the middle (full path on hover) and takes at most a third of the bar; messages
shorten to the room left of it and of the device line (a long message used to run into the path),
again whenever the path, the device line or the window's width changes.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QLabel, QStatusBar

from transfer_studio.ui import runtime, worker
from transfer_studio.ui.widgets import ElidedLabel


def detect_compute_device() -> str:
    """One line for the status bar (``core.devices``). Imports torch, so it runs on a worker thread."""
    from transfer_studio.core import devices

    return devices.describe_machine(devices.probe())


class StatusLine(QObject):
    """The status bar's permanent labels and its shortened messages (``show_message``)."""

    def __init__(self, bar: QStatusBar):
        super().__init__(bar)
        self.bar = bar
        self.device_label = QLabel("Detecting compute device…")
        self.device_label.setObjectName("device_label")
        self.device_label.setToolTip("Where training runs")
        self.path_label = ElidedLabel(mode=Qt.TextElideMode.ElideMiddle, min_chars=16)
        self.path_label.setObjectName("path_label")
        bar.setObjectName("status_bar")
        bar.addPermanentWidget(self.path_label)
        bar.addPermanentWidget(self.device_label)
        self.text = ""  # the message shown, in full (it is shown shortened to fit)
        self._deadline: float | None = None
        self.device_task: worker.TaskHandle | None = None
        bar.messageChanged.connect(self._on_message_changed)

    def show_message(self, text: str, timeout_ms: int) -> None:
        self.text = text
        self._deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms > 0 else None
        self.relayout()

    def set_path(self, text: str) -> None:
        self.path_label.setText(text)
        self.relayout()

    def relayout(self) -> None:
        """Show the current message shortened to the room there is now."""
        text = self.text
        if not text:
            return
        timeout_ms = 0
        if self._deadline is not None:
            timeout_ms = int((self._deadline - time.monotonic()) * 1000)
            if timeout_ms <= 0:
                return
        bar = self.bar
        self.fit_widgets()
        room = bar.width() - 32  # the status bar's own margins and a gap before the path
        for widget in (self.path_label, self.device_label):
            if widget.isVisible():  # the width the layout will give it (it may not have run yet)
                hint = widget.sizeHint().width()
                room -= min(max(hint, widget.minimumSizeHint().width()), widget.maximumWidth()) + 8
        shown = bar.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, max(room, 40))
        bar.setToolTip(text if shown != text else "")
        bar.showMessage(shown, timeout_ms)

    def fit_widgets(self) -> None:
        """The path takes at most a third of the status bar; messages get the rest."""
        self.path_label.setMaximumWidth(max(160, self.bar.width() // 3))

    def _on_message_changed(self, message: str) -> None:
        if not message:  # timed out or cleared
            self.text, self._deadline = "", None

    def detect_device(self) -> None:
        """Find the compute device (imports torch) on a worker thread, then name it."""

        def done(text: str) -> None:
            self.device_label.setText(text)
            self.relayout()
            runtime.settle_heap()  # torch is loaded now: keep full GC passes from scanning all of it

        def failed(message: str, _details: str) -> None:
            self.device_label.setText("Compute device unknown")
            self.relayout()
            self.device_label.setToolTip(message)

        self.device_task = worker.run_task(detect_compute_device, name="device", pass_control=False,
                                           on_result=done, on_error=failed)
