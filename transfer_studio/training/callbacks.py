"""Delivering events to callbacks, and the CLI's progress printer (just another callback)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import TextIO

from transfer_studio.training import events as ev

log = logging.getLogger("transfer_studio.training")

Callback = Callable[[object], None]


class Dispatcher:
    """Calls every callback with every event. A callback that raises is logged (with traceback) and
    noted in the run's result, and training goes on: a broken progress bar must not kill a run."""

    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks = list(callbacks)
        self.failures: list[str] = []

    @property
    def active(self) -> bool:
        return bool(self.callbacks)

    def __call__(self, event: object) -> None:
        for cb in self.callbacks:
            try:
                cb(event)
            except Exception as exc:  # noqa: BLE001 - logged, training continues
                log.exception("training callback %r failed on %s", cb, type(event).__name__)
                line = f"callback {getattr(cb, '__name__', type(cb).__name__)} failed: {type(exc).__name__}: {exc}"
                if line not in self.failures:
                    self.failures.append(line)


def _fmt_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class ProgressPrinter:
    """One line per epoch (and the run's notes, phase changes and problems) on a text stream.

    With ``batches=True`` on a terminal, a transient batch line is redrawn in place as well.
    """

    def __init__(self, stream: TextIO | None = None, batches: bool | None = None):
        self.stream = stream or sys.stderr
        self.batches = batches if batches is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self._batch_line = False
        self._last = 0.0

    def _print(self, text: str) -> None:
        if self._batch_line:
            self.stream.write("\r\033[K")
            self._batch_line = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, event: object) -> None:
        if isinstance(event, ev.FitStart):
            what = "resuming" if event.resumed else "training"
            self._print(f"{what} {event.model} ({event.strategy}) on {event.device}, {event.precision}: "
                        f"{event.num_train} train / {event.num_val} val images, {len(event.classes)} classes, "
                        f"batch {event.batch_size}, epochs {event.start_epoch}-{event.epochs}, "
                        f"{event.trainable_params:,} of {event.total_params:,} parameters trainable")
            for note in event.notes:
                self._print(f"note: {note}")
        elif isinstance(event, ev.PhaseChanged):
            self._print(f"phase {event.phase} from epoch {event.epoch}: {event.description} "
                        f"({event.trainable_params:,} trainable parameters)")
        elif isinstance(event, ev.BatchEnd) and self.batches:
            now = time.monotonic()
            if now - self._last >= 0.2 or event.step == event.steps:
                self._last = now
                self.stream.write(f"\r\033[Kepoch {event.epoch} {event.step}/{event.steps} "
                                  f"loss {event.loss:.4f} acc {event.accuracy:.3f} "
                                  f"{event.images_per_s:.0f} img/s")
                self.stream.flush()
                self._batch_line = True
        elif isinstance(event, ev.EpochEnd):
            val = (f"val_loss {event.val_loss:.4f} val_acc {event.val_accuracy:.3f}"
                   if event.val_loss is not None else "no validation split")
            best = " *" if event.is_best else ""
            self._print(f"epoch {event.epoch}/{event.epochs}  loss {event.train_loss:.4f} "
                        f"acc {event.train_accuracy:.3f}  {val}  "
                        + ("head fit (L-BFGS)  " if event.lr is None else f"lr {event.lr:.2e}  ")
                        + f"{event.seconds:.1f}s  eta {_fmt_seconds(event.eta_s)}{best}")
        elif isinstance(event, ev.Notice):
            self._print(f"note: {event.message}")
        elif isinstance(event, ev.Paused):
            self._print(f"paused at epoch {event.epoch}, batch {event.step}")
        elif isinstance(event, ev.Resumed):
            self._print("resumed")
        elif isinstance(event, ev.Error):
            self._print(f"error: {event.message}" + (f" ({event.suggestion})" if event.suggestion else ""))
