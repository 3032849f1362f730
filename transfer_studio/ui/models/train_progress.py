"""A training run's progress as the Train page shows it: the two bars and the ETA (``RunClock``) and
the epoch table with its best epoch (``EpochTable``), as plain data."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from transfer_studio.ui.models.train_text import DASH, duration, fmt, pct


@dataclass(frozen=True)
class ProgressView:
    epoch_value: int  # of 1000
    epoch_text: str
    run_value: int  # of 1000
    run_text: str
    eta: str | None  # None: leave the ETA as it is


IDLE_PROGRESS = ProgressView(0, f"Epoch {DASH}", 0, f"Run {DASH}", None)


class RunClock:
    """Where a run is and how long the rest takes, from this session's pace: a resumed run's earlier
    epochs and paused time do not count."""

    def __init__(self) -> None:
        self.reset(1)

    def reset(self, epochs_total: int, start_epoch: int = 1) -> None:
        self.epochs_total = max(1, int(epochs_total))
        self.start_epoch = int(start_epoch)
        self.t0 = time.monotonic()
        self.fraction0 = (self.start_epoch - 1) / self.epochs_total
        self.paused_since: float | None = None
        self.paused_s = 0.0

    def pause(self) -> None:
        self.paused_since = time.monotonic()

    def resume(self) -> None:
        if self.paused_since is not None:
            self.paused_s += time.monotonic() - self.paused_since
            self.paused_since = None

    @property
    def paused(self) -> bool:
        return self.paused_since is not None

    def at(self, epoch: int, step: int, steps: int, epoch_done: int | None = None) -> ProgressView:
        """The bars at batch ``step`` of ``steps`` in ``epoch`` (or when ``epoch_done`` just ended)."""
        total = self.epochs_total
        if epoch_done is not None:  # an epoch just ended: the epoch bar is full
            epoch_value, epoch_text = 1000, f"Epoch {epoch_done}/{total} done"
            fraction = epoch_done / total
        else:
            frac_epoch = step / max(1, steps)
            epoch_value, epoch_text = int(1000 * frac_epoch), f"Epoch {epoch}/{total}: batch {step}/{steps}"
            fraction = (epoch - 1 + frac_epoch) / total
        fraction = min(1.0, max(0.0, fraction))
        eta = None
        if epoch_done is None and not self.paused:
            done = fraction - self.fraction0
            elapsed = time.monotonic() - self.t0 - self.paused_s
            if done > 0.002 and elapsed > 1.0:
                eta = f"ETA {duration(elapsed * (1.0 - fraction) / done)}"
        return ProgressView(epoch_value, epoch_text, int(1000 * fraction), f"Run {fraction * 100:.0f}%", eta)


@dataclass(frozen=True)
class EpochRow:
    epoch: int
    cells: tuple[str, ...]  # TABLE_COLUMNS
    val_loss: float | None


class EpochTable:
    """The epoch table's rows and which one is the best epoch (lowest validation loss, as the engine
    marks it; rows read back from a history without marks get the lowest validation loss)."""

    def __init__(self) -> None:
        self.rows: list[EpochRow] = []
        self.best = -1

    def clear(self) -> None:
        self.rows, self.best = [], -1

    def add(self, epoch: int, train_loss: Any, train_acc: Any, val_loss: Any, val_acc: Any, lr: Any,
            seconds: Any, is_best: bool) -> EpochRow:
        row = EpochRow(int(epoch), (str(epoch), fmt(train_loss, "{:.4f}"), pct(train_acc), fmt(val_loss, "{:.4f}"),
                                    pct(val_acc), fmt(lr, "{:.3g}"), fmt(seconds, "{:.1f} s")), _float(val_loss))
        self.rows.append(row)
        if is_best:
            self.best = len(self.rows) - 1
        return row

    def mark_best_by_val_loss(self) -> int:
        """Mark the row with the lowest validation loss (when none is marked); returns the best row."""
        if self.best < 0:
            losses = [(r.val_loss, i) for i, r in enumerate(self.rows) if r.val_loss is not None]
            if losses:
                self.best = min(losses)[1]
        return self.best

    def best_epoch(self) -> int | None:
        return self.rows[self.best].epoch if 0 <= self.best < len(self.rows) else None


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None
