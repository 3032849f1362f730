"""Small pyqtgraph charts that follow the application palette (light and dark)."""

from __future__ import annotations

from collections.abc import Sequence

import pyqtgraph as pg
from PySide6.QtCore import QEvent
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QWidget

from transfer_studio.ui import theme


def _elide(text: str, limit: int = 12) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class BarChart(pg.PlotWidget):
    """Vertical bars with category labels; some bars can be highlighted (e.g. under-represented)."""

    def __init__(self, parent: QWidget | None = None, *, y_label: str = ""):
        self._ready = False  # PlotWidget's own __init__ already triggers changeEvent
        super().__init__(parent)
        self.labels: list[str] = []
        self.values: list[float] = []
        self.highlighted: list[bool] = []
        self._bars: pg.BarGraphItem | None = None
        self._y_label = y_label
        plot = self.getPlotItem()
        plot.setMenuEnabled(False)
        plot.hideButtons()
        plot.setMouseEnabled(x=False, y=False)
        plot.showGrid(x=False, y=True, alpha=0.25)
        if y_label:
            plot.setLabel("left", y_label)
        self.setMinimumHeight(160)
        self._ready = True
        self._apply_palette()

    def set_bars(self, labels: Sequence[str], values: Sequence[float],
                 highlight: Sequence[bool] | None = None) -> None:
        self.labels = [str(x) for x in labels]
        self.values = [float(v) for v in values]
        self.highlighted = list(highlight) if highlight is not None else [False] * len(self.values)
        if len(self.highlighted) != len(self.values):
            raise ValueError("highlight must have one entry per bar")
        self._redraw()

    # -- drawing -------------------------------------------------------------------------------
    def _colors(self) -> tuple[QColor, QColor]:
        """Normal bars in the palette's highlight colour, highlighted ones in the theme's warning colour."""
        pal = self.palette()
        return pal.color(QPalette.ColorRole.Highlight), theme.semantic_colors(theme.is_dark(pal)).warning

    def _redraw(self) -> None:
        plot = self.getPlotItem()
        if self._bars is not None:
            plot.removeItem(self._bars)
            self._bars = None
        n = len(self.values)
        if n == 0:
            return
        normal, warn = self._colors()
        brushes = [pg.mkBrush(warn if h else normal) for h in self.highlighted]
        self._bars = pg.BarGraphItem(x=list(range(n)), height=self.values, width=0.7, brushes=brushes,
                                     pens=[pg.mkPen(None)] * n)
        plot.addItem(self._bars)
        # Label every bar while they fit; with many classes, every k-th.
        step = max(1, (n + 24) // 25)
        ticks = [(i, _elide(self.labels[i])) for i in range(0, n, step)]
        plot.getAxis("bottom").setTicks([ticks, []])
        plot.setXRange(-0.6, n - 0.4, padding=0)
        plot.setYRange(0, max(self.values) * 1.08 or 1.0, padding=0)

    def _apply_palette(self) -> None:
        pal = self.palette()
        self.setBackground(pal.color(QPalette.ColorRole.Base))
        text = pal.color(QPalette.ColorRole.Text)
        plot = self.getPlotItem()
        for name in ("left", "bottom"):
            axis = plot.getAxis(name)
            axis.setPen(pg.mkPen(text))
            axis.setTextPen(pg.mkPen(text))
        if self._y_label:
            plot.setLabel("left", self._y_label, color=text.name())
        self._redraw()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange and self._ready:
            self._apply_palette()
        super().changeEvent(event)
