"""The learning-rate range test as a small plot: loss against the rate (log scale), the chosen rate marked."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


class LRCurve(QWidget):
    """Draws ``set_curve(lrs, losses, chosen)``; empty until then."""

    def __init__(self, parent: QWidget | None = None, *, object_name: str = "lr_curve"):
        super().__init__(parent)
        self.setObjectName(object_name)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._lrs: list[float] = []
        self._losses: list[float] = []
        self._chosen: float | None = None
        self.setToolTip("Learning-rate range test on your images' cached features: the loss of a fresh "
                        "output layer while its rate grows. The marked rate is where the loss falls fastest.")

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(360, 110)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(200, 90)

    def set_curve(self, lrs: Sequence[float], losses: Sequence[float], chosen: float | None) -> None:
        pairs = [(a, b) for a, b in zip(lrs, losses, strict=False) if a > 0 and math.isfinite(b)]
        self._lrs = [a for a, _ in pairs]
        self._losses = [b for _, b in pairs]
        self._chosen = chosen
        self.update()

    def points(self) -> int:
        return len(self._lrs)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        if len(self._lrs) < 2:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        text = pal.color(pal.ColorRole.PlaceholderText)
        fm = p.fontMetrics()
        x0, x1 = math.log10(self._lrs[0]), math.log10(self._lrs[-1])
        # inset by half the widest tick label, so "1e-6" and "1e0" at the ends are not cut off
        pad = 4 + max(fm.horizontalAdvance(f"1e{e}") for e in (math.ceil(x0), math.floor(x1))) / 2
        area = QRectF(pad, 6, self.width() - 2 * pad, self.height() - fm.height() - 12)
        top = min(max(self._losses), 3 * min(self._losses) + 1e-9)  # the explosion at the end is clipped
        y0, y1 = min(self._losses), top

        def pt(lr: float, loss: float) -> QPointF:
            fx = (math.log10(lr) - x0) / max(x1 - x0, 1e-9)
            fy = (min(loss, top) - y0) / max(y1 - y0, 1e-9)
            return QPointF(area.left() + fx * area.width(), area.bottom() - fy * area.height())

        p.setPen(QPen(text, 1))
        p.drawLine(area.bottomLeft(), area.bottomRight())
        path = QPainterPath(pt(self._lrs[0], self._losses[0]))
        for lr, loss in zip(self._lrs[1:], self._losses[1:], strict=True):
            path.lineTo(pt(lr, loss))
        p.setPen(QPen(pal.color(pal.ColorRole.Highlight), 2))
        p.drawPath(path)
        if self._chosen:
            x = pt(self._chosen, y0).x()
            p.setPen(QPen(QColor(230, 120, 30), 1.5, Qt.PenStyle.DashLine))
            p.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
        p.setPen(QPen(text, 1))
        base = area.bottom() + fm.ascent() + 4
        for e in range(math.ceil(x0), math.floor(x1) + 1):
            x = pt(10.0**e, y0).x()
            label = f"1e{e}"
            p.drawText(QPointF(x - fm.horizontalAdvance(label) / 2, base), label)
        p.end()
