"""Learning-rate schedules with warm-up, as a pure function of training progress.

The multiplier depends only on (phase, progress in epochs), never on hidden counters, so a resumed
run, a run whose batch size was halved after running out of memory, and parameter groups added at
an unfreeze step all follow the same curve. Each phase of the freeze plan (head-only, unfrozen) gets
its own warm-up and decay: the freshly unfrozen body starts gently instead of at a decayed lr.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("cosine", "onecycle", "none")


@dataclass(frozen=True)
class LRSchedule:
    kind: str
    start_epoch: int  # 0-based first epoch of the phase
    end_epoch: int  # 0-based, exclusive
    warmup_epochs: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            from transfer_studio.errors import UserError

            raise UserError(f"unknown lr scheduler {self.kind!r}: choose one of {', '.join(KINDS)}")

    def factor(self, epoch: int, step: int, steps: int) -> float:
        """Multiplier of the base lr for 0-based ``step`` of ``steps`` in 0-based ``epoch``."""
        total = max(self.end_epoch - self.start_epoch, 1e-9)
        p = (epoch - self.start_epoch) + step / max(steps, 1)  # epochs into the phase, at step start
        dp = 1.0 / max(steps, 1)  # one step, in epochs
        if self.kind == "onecycle":
            rise = self.warmup_epochs if self.warmup_epochs > 0 else 0.3 * total
            rise = min(rise, total)
            lo, floor = 1.0 / 25.0, 1.0 / 25.0 / 1e4
            if p < rise:
                t = (p + dp) / rise
                return lo + (1.0 - lo) * 0.5 * (1.0 - math.cos(math.pi * min(t, 1.0)))
            t = (p - rise) / max(total - rise, 1e-9)
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
        warm = min(self.warmup_epochs, total)
        if warm > 0 and p < warm:
            return min(1.0, (p + dp) / warm)
        if self.kind == "none":
            return 1.0
        t = (p - warm) / max(total - warm, 1e-9)
        return 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))

    def state_dict(self) -> dict:
        return {"kind": self.kind, "start_epoch": self.start_epoch, "end_epoch": self.end_epoch,
                "warmup_epochs": float(self.warmup_epochs)}
