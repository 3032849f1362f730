"""Stop and pause requests for a running ``fit``, settable from any thread.

The CLI's Ctrl-C handler and the app's Stop/Pause buttons call these methods directly (not through a
queued signal: the training thread is busy inside ``fit`` and would never run it). The loop polls the
flags once per batch.
"""

from __future__ import annotations

import threading


class Control:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._pause = threading.Event()
        self._wake = threading.Event()  # set whenever stop or resume happens, so a paused loop wakes

    def request_stop(self) -> None:
        """Stop within one batch; the last completed epoch's checkpoint stays the resumable state."""
        self._stop.set()
        self._wake.set()

    def request_pause(self) -> None:
        self._wake.clear()
        self._pause.set()

    def resume(self) -> None:
        self._pause.clear()
        self._wake.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def pause_requested(self) -> bool:
        return self._pause.is_set() and not self._stop.is_set()

    def wait_while_paused(self) -> None:
        """Block while a pause is requested and no stop is; returns at once otherwise."""
        while self.pause_requested:
            # The timeout makes a lost wake-up (pause and resume racing) cost at most a quarter second.
            self._wake.wait(0.25)
