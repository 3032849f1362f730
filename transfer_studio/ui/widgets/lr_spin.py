"""The learning-rate field of the Train and Strategy pages: one widget, one range, one way to step."""

from __future__ import annotations

import math

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox, QWidget

LR_RANGE = (1e-8, 10.0)  # any learning rate the engine accepts that anyone would type


class LrSpinBox(QDoubleSpinBox):
    """A rate: typed in plain or scientific notation, shown as 3 significant digits ("0.0003",
    "1e-05"), and the arrows step along 1-2-5 per decade (…, 1e-4, 2e-4, 5e-4, 1e-3, …)."""

    def __init__(self, minimum: float = LR_RANGE[0], maximum: float = LR_RANGE[1],
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setDecimals(12)
        self.setRange(minimum, maximum)
        self.setKeyboardTracking(False)

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt override
        return f"{value:.3g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt override
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int) -> object:
        stripped = text.strip()
        try:
            value = float(stripped)
        except ValueError:
            partial = stripped == "" or stripped[-1] in "eE.-+" or stripped in ("-", "+")
            state = QValidator.State.Intermediate if partial else QValidator.State.Invalid
            return state, text, pos
        ok = self.minimum() <= value <= self.maximum()
        return (QValidator.State.Acceptable if ok else QValidator.State.Intermediate), text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802 - Qt override
        value = self.value()
        for _ in range(abs(steps)):
            value = step_125(value, up=steps > 0)
        self.setValue(min(max(value, self.minimum()), self.maximum()))


def step_125(value: float, up: bool) -> float:
    """The next value of the 1-2-5 series (…, 1e-4, 2e-4, 5e-4, 1e-3, …) above or below value."""
    exp = math.floor(math.log10(value))
    candidates = sorted(m * 10.0 ** e for e in (exp - 1, exp, exp + 1) for m in (1, 2, 5))
    if up:
        return next(c for c in candidates if c > value * (1 + 1e-9))
    return next(c for c in reversed(candidates) if c < value * (1 - 1e-9))
