"""Live training charts (pyqtgraph): loss, accuracy and learning rate.

Follows pyqtgraph's scrollingPlots example: every curve is one ``PlotDataItem`` created once and fed
with ``setData(ndarray)``. Incoming data only lands in growable numpy buffers; a QTimer redraws the
curves that changed at most ``REFRESH_HZ`` times a second, so a burst of training events never turns
into a burst of repaints on the GUI thread.

The x axis of every chart is the epoch: batch ``i`` (0-based) of ``n`` in epoch ``e`` (1-based) sits
at ``e - 1 + (i + 1) / n`` and the epoch's own figures at ``x = e``, so per-batch and per-epoch curves
share one axis. A phase change (blocks unfrozen) draws a vertical marker where its epoch starts,
named above the plot area (on a top axis) where no data point can hide under the name.

The learning rate is shown in plain scientific notation ("2e-4") and no axis is rescaled:
pyqtgraph's automatic SI scaling labelled the axes "lr (x1e-06)" with ticks around 900 and
"loss (x0.001)" with ticks around 600.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtGui import QColor, QImage, QPainter, QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

# Redraws a second, at most. Each redraw calls into Python dozens of times (pyqtgraph items paint
# in Python) and every call must win the GIL back from the training thread: fewer, fuller redraws
# keep the GUI responsive (bench/bench_gui_stall.py) while the curves still visibly move.
REFRESH_HZ = 5
SMOOTHING = 0.9  # EMA factor of the smoothed per-batch loss (TensorBoard-style, debiased)

# Semantic series colours: mid-saturation so they read on light and dark backgrounds alike.
TRAIN_COLOUR = QColor(31, 119, 220)
VAL_COLOUR = QColor(232, 120, 20)
LR_COLOUR = QColor(40, 160, 90)
PHASE_COLOUR = QColor(170, 80, 200)
EPOCH_SERIES = ("train_loss", "val_loss", "train_acc", "val_acc")  # one point per epoch
LR_NONE_TITLE = "Learning rate: none reported in this run"


class Series:
    """Growable x/y float buffers for one curve (amortised O(1) append, views without copies)."""

    def __init__(self, capacity: int = 64):
        self._x = np.empty(capacity, np.float64)
        self._y = np.empty(capacity, np.float64)
        self.n = 0

    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        if need > self._x.size:
            size = max(need, self._x.size * 2)
            self._x = np.resize(self._x, size)
            self._y = np.resize(self._y, size)

    def append(self, x: float, y: float) -> None:
        self._reserve(1)
        self._x[self.n] = x
        self._y[self.n] = y
        self.n += 1

    def extend(self, xs: np.ndarray, ys: np.ndarray) -> None:
        xs = np.asarray(xs, np.float64).ravel()
        ys = np.asarray(ys, np.float64).ravel()
        if xs.shape != ys.shape:
            raise ValueError("x and y must have the same length")
        self._reserve(xs.size)
        self._x[self.n:self.n + xs.size] = xs
        self._y[self.n:self.n + ys.size] = ys
        self.n += xs.size

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self.n]

    def clear(self) -> None:
        self.n = 0


def ema_debiased(values: np.ndarray, state: tuple[float, int], beta: float = SMOOTHING
                 ) -> tuple[np.ndarray, tuple[float, int]]:
    """Continue an exponential moving average over ``values``; returns (smoothed, new state).

    state is (raw accumulator, count). Debiasing divides by 1 - beta**count so the first points are
    not dragged towards zero.
    """
    acc, count = state
    out = np.empty(len(values), np.float64)
    for i, v in enumerate(np.asarray(values, np.float64)):
        if not np.isfinite(v):  # a NaN loss must not poison every later point
            out[i] = np.nan
            continue
        count += 1
        acc = beta * acc + (1.0 - beta) * v
        out[i] = acc / (1.0 - beta ** count)
    return out, (acc, count)


def _legend_html() -> str:
    def swatch(colour: QColor, glyph: str, text: str) -> str:
        return (f'<span style="color:{colour.name()}; font-weight:bold">{glyph}</span>'
                f"&nbsp;{text}")

    items = [
        swatch(TRAIN_COLOUR, "―", "train, per batch (smoothed)"),
        swatch(TRAIN_COLOUR, "- ● -", "train, per epoch"),
        swatch(VAL_COLOUR, "―■―", "validation"),
        swatch(LR_COLOUR, "―", "learning rate"),
        swatch(PHASE_COLOUR, "┆", "blocks unfrozen"),
    ]
    return "&nbsp;&nbsp;&nbsp;&nbsp;".join(items)


def sci_tick(value: float, spacing: float) -> str:
    """A tick label in compact scientific notation, with the digits the tick spacing needs:
    ``sci_tick(0.0004, 0.0002) == "4e-4"``, ``sci_tick(0.00025, 0.00005) == "2.5e-4"``."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    exp = math.floor(math.log10(abs(value)))
    step = math.floor(math.log10(spacing)) if spacing > 0 and math.isfinite(spacing) else exp
    digits = min(6, max(0, exp - step))
    mantissa, _, power = f"{value:.{digits}e}".partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(power)}"


class ScientificAxis(pg.AxisItem):
    """An axis for small quantities (learning rates): "2e-4", never a scale factor in the label."""

    def __init__(self, orientation: str, **kwargs):
        super().__init__(orientation, **kwargs)
        self.enableAutoSIPrefix(False)

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph override
        return [sci_tick(float(v) * scale, float(spacing) * scale) for v in values]


class EpochAxis(pg.AxisItem):
    """An epoch axis: whole epochs only (no "1.5" or "0.2" ticks), never SI-scaled."""

    def __init__(self, orientation: str = "bottom", **kwargs):
        super().__init__(orientation, **kwargs)
        self.enableAutoSIPrefix(False)

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, N803 - pyqtgraph override
        levels = [(spacing, values) for spacing, values in super().tickValues(minVal, maxVal, size)
                  if spacing >= 1]
        if levels:
            return levels
        lo, hi = math.ceil(minVal), math.floor(maxVal)
        return [(1.0, [float(v) for v in range(lo, hi + 1)])] if hi >= lo else []


class _Chart:
    """One PlotWidget and its curves."""

    def __init__(self, title: str, y_label: str, *, scientific: bool = False):
        axes = {"bottom": EpochAxis("bottom")}
        if scientific:
            axes["left"] = ScientificAxis("left")
        self.widget = pg.PlotWidget(axisItems=axes)
        # No automatic SI scaling on any axis: it turned a loss of 0.64 into "loss (x0.001)" ~ 640.
        for name in ("left", "bottom"):
            self.widget.getPlotItem().getAxis(name).enableAutoSIPrefix(False)
        self.widget.setObjectName(f"chart_{title.lower().replace(' ', '_')}")
        self.plot: pg.PlotItem = self.widget.getPlotItem()
        self.plot.setTitle(title)
        self.plot.setLabel("bottom", "epoch")
        self.plot.setLabel("left", y_label)
        # Horizontal grid lines only: the full x/y grid doubled the cost of a redraw.
        self.plot.showGrid(x=False, y=True, alpha=0.15)
        self.plot.setClipToView(True)
        self.plot.setDownsampling(auto=True, mode="peak")
        self.plot.setMenuEnabled(False)
        self.widget.setMinimumSize(220, 150)
        self.markers: list[pg.InfiniteLine] = []
        # Marker names sit on a top axis, shown once there is a marker: above the data, never on it.
        top = self.plot.getAxis("top")
        top.setPen(pg.mkPen(None))
        top.setTextPen(pg.mkPen(PHASE_COLOUR))
        top.setStyle(tickLength=0, hideOverlappingLabels=False)
        self.plot.hideAxis("top")

    def set_marker_labels(self, marks: list[tuple[float, str]]) -> None:
        """Name the vertical markers above the plot area (none: the top axis hides)."""
        top = self.plot.getAxis("top")
        top.setTicks([[(x, label) for x, label in marks], []])
        if marks:
            self.plot.showAxis("top")
            top.setStyle(showValues=True)
        else:
            self.plot.hideAxis("top")

    def curve(self, colour: QColor, width: float = 2.0, symbol: str | None = None,
              style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> pg.PlotDataItem:
        pen = pg.mkPen(colour, width=width, style=style)
        kwargs: dict = {"pen": pen}
        if symbol:
            kwargs.update(symbol=symbol, symbolSize=6, symbolBrush=colour, symbolPen=colour)
        item = self.plot.plot(np.empty(0), np.empty(0), **kwargs)
        return item

    def apply_palette(self, palette: QPalette) -> None:
        base = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        self.widget.setBackground(base)
        for name in ("left", "bottom"):
            axis = self.plot.getAxis(name)
            axis.setPen(pg.mkPen(text))
            axis.setTextPen(pg.mkPen(text))
        self.plot.titleLabel.setText(self.plot.titleLabel.text, color=text)

    def marker_label_rects(self) -> list[tuple[str, object]]:
        """(label, scene rectangle) of each marker name drawn (tests: nothing overlaps the data)."""
        top = self.plot.getAxis("top")
        if not top.isVisible():
            return []
        return [(label, top.mapRectToScene(rect)) for rect, _flags, label in _axis_text_specs(top)]


def _axis_text_specs(axis: pg.AxisItem) -> list[tuple[object, int, str]]:
    """The text rectangles an axis lays out for its tick labels (pyqtgraph's own drawing specs)."""
    image = QImage(8, 8, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return list(specs[2]) if specs else []


class TrainingCharts(QWidget):
    """Loss, accuracy and learning-rate charts fed by training events (plain numbers/arrays)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("training_charts")
        self.loss_chart = _Chart("Loss", "loss")
        self.acc_chart = _Chart("Accuracy", "accuracy (%)")
        self.lr_chart = _Chart("Learning rate", "lr", scientific=True)
        # One shared legend above the charts: an in-plot legend would cover the curves.
        self.legend = QLabel(_legend_html())
        self.legend.setObjectName("training_charts_legend")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(6)
        for chart in (self.loss_chart, self.acc_chart, self.lr_chart):
            row.addWidget(chart.widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.legend)
        layout.addLayout(row, 1)

        faint = QColor(TRAIN_COLOUR)
        faint.setAlpha(70)
        self._series: dict[str, Series] = {
            key: Series() for key in ("batch_loss", "smooth_loss", "lr", "train_loss", "val_loss",
                                      "train_acc", "val_acc")
        }
        self.curves: dict[str, pg.PlotDataItem] = {
            # Per-batch curves (thousands of points) are drawn 1 px wide: wider pens made Qt's
            # raster stroker the largest part of a redraw.
            "batch_loss": self.loss_chart.curve(faint, width=1),
            "smooth_loss": self.loss_chart.curve(TRAIN_COLOUR, width=1),
            "train_loss": self.loss_chart.curve(TRAIN_COLOUR, symbol="o", style=Qt.PenStyle.DashLine),
            "val_loss": self.loss_chart.curve(VAL_COLOUR, symbol="s"),
            "train_acc": self.acc_chart.curve(TRAIN_COLOUR, symbol="o", style=Qt.PenStyle.DashLine),
            "val_acc": self.acc_chart.curve(VAL_COLOUR, symbol="s"),
            "lr": self.lr_chart.curve(LR_COLOUR, width=1),
        }
        self._ema_state: tuple[float, int] = (0.0, 0)
        self._dirty: set[str] = set()
        self._phases: list[tuple[float, str]] = []
        self.lr_missing = False  # the run reports epochs but no learning rate (see _update_lr_note)
        self.redraws = 0  # number of timer ticks that redrew something (tests, bench)

        self._timer = QTimer(self)
        self._timer.setInterval(int(1000 / REFRESH_HZ))
        self._timer.timeout.connect(self.flush)
        self._timer.start()
        self._apply_palette()

    # -- data in ---------------------------------------------------------------------------------
    def add_batches(self, x: np.ndarray, loss: np.ndarray, lr: np.ndarray | None = None) -> None:
        """Per-batch points (x in epochs, see module doc); drawn on the next timer tick."""
        x = np.asarray(x, np.float64)
        loss = np.asarray(loss, np.float64)
        if x.size == 0:
            return
        self._series["batch_loss"].extend(x, loss)
        smooth, self._ema_state = ema_debiased(loss, self._ema_state)
        self._series["smooth_loss"].extend(x, smooth)
        self._dirty.update(("batch_loss", "smooth_loss"))
        if lr is not None:
            self._series["lr"].extend(x, np.asarray(lr, np.float64))
            self._dirty.add("lr")

    def add_epoch(self, epoch: int, train_loss: float | None, val_loss: float | None,
                  train_acc: float | None, val_acc: float | None) -> None:
        """One epoch's figures at x = epoch (1-based); accuracies are fractions in [0, 1]."""
        for key, value, scale in (("train_loss", train_loss, 1.0), ("val_loss", val_loss, 1.0),
                                  ("train_acc", train_acc, 100.0), ("val_acc", val_acc, 100.0)):
            if value is not None:
                self._series[key].append(float(epoch), float(value) * scale)
                self._dirty.add(key)

    def mark_phase(self, epoch_start: float, label: str) -> None:
        """A vertical marker on every chart at x = epoch_start (where the new phase begins), named
        above the plot area. Marking the same place twice (a resumed run) draws it once."""
        if (float(epoch_start), label) in self._phases:
            return
        self._phases.append((float(epoch_start), label))
        for chart in (self.loss_chart, self.acc_chart, self.lr_chart):
            line = pg.InfiniteLine(pos=float(epoch_start), angle=90, movable=False,
                                   pen=pg.mkPen(PHASE_COLOUR, width=1.5, style=Qt.PenStyle.DashLine))
            line.setObjectName("phase_marker")
            chart.plot.addItem(line)
            chart.markers.append(line)
            chart.set_marker_labels(self._phases)

    def truncate(self, last_epoch: float) -> None:
        """Forget what was drawn after ``last_epoch`` (a resumed run continues from its checkpoint:
        the batches of an interrupted epoch are trained again). Earlier points stay."""
        limit = float(last_epoch) + 1e-9
        for key, series in self._series.items():
            keep = int(np.searchsorted(series.x, limit, side="right"))
            if keep < series.n:
                series.n = keep
                self._dirty.add(key)
        batch = self._series["batch_loss"]
        _smooth, self._ema_state = ema_debiased(batch.y, (0.0, 0))  # continue from the kept points
        kept = [(x, label) for x, label in self._phases if x <= limit]
        if kept != self._phases:
            self._phases[:] = kept
            for chart in (self.loss_chart, self.acc_chart, self.lr_chart):
                for line in list(chart.markers):
                    if line.value() > limit:
                        chart.plot.removeItem(line)
                        chart.markers.remove(line)
                chart.set_marker_labels(self._phases)

    def add_epoch_lr(self, epochs: np.ndarray, lrs: np.ndarray) -> None:
        """Learning rates known only per epoch (a run's saved history), drawn at x = epoch."""
        self._series["lr"].extend(np.asarray(epochs, np.float64), np.asarray(lrs, np.float64))
        self._dirty.add("lr")

    def set_epoch_range(self, epochs: int) -> None:
        """Fix the x axes to the run's epochs [0, epochs].

        With a fixed x range the axes are not re-laid out on every update (auto-range moved them
        with each new point, and regenerating the ticks was a good part of a redraw's cost); the
        view also shows how far the run has come.
        """
        for chart in (self.loss_chart, self.acc_chart, self.lr_chart):
            chart.plot.enableAutoRange(x=False)
            chart.plot.setXRange(0, max(1, int(epochs)), padding=0.02)

    def clear(self, *, keep_batches: bool = False) -> None:
        """Empty the charts; ``keep_batches`` keeps the per-batch traces, the learning rate and the
        markers (the same run resumes: its epoch figures are reloaded from its history)."""
        for key, series in self._series.items():
            if not keep_batches or key in EPOCH_SERIES:
                series.clear()
                self._dirty.add(key)
        if keep_batches:
            self.flush()
            return
        self._ema_state = (0.0, 0)
        for chart in (self.loss_chart, self.acc_chart, self.lr_chart):
            for line in chart.markers:
                chart.plot.removeItem(line)
            chart.markers.clear()
            chart.set_marker_labels([])
            chart.plot.enableAutoRange(x=True)
        self._phases.clear()
        self.flush()

    # -- drawing ---------------------------------------------------------------------------------
    def flush(self) -> None:
        """Push changed buffers to their curves (the timer calls this at REFRESH_HZ)."""
        if not self._dirty:
            return
        for key in self._dirty:
            s = self._series[key]
            # copies: pyqtgraph keeps references, and our buffers are resized/overwritten in place
            self.curves[key].setData(s.x.copy(), s.y.copy())
        self._dirty.clear()
        self._update_lr_note()
        self.redraws += 1

    def _update_lr_note(self) -> None:
        """A run that reports no learning rate (a head fitted in one solve) says so, instead of an
        empty chart with a made-up 0…1 axis."""
        missing = self._series["lr"].n == 0 and any(self._series[k].n for k in EPOCH_SERIES)
        if missing == self.lr_missing:
            return
        self.lr_missing = missing
        self.lr_chart.plot.getAxis("left").setStyle(showValues=not missing)
        self.lr_chart.plot.setTitle(LR_NONE_TITLE if missing else "Learning rate")
        self.lr_chart.apply_palette(self.palette())

    # -- inspection (tests, accessibility) -------------------------------------------------------
    def point_count(self, key: str) -> int:
        """Points currently drawn by curve ``key`` (after the last flush)."""
        x, _ = self.curves[key].getData()
        return 0 if x is None else len(x)

    def series(self, key: str) -> Series:
        return self._series[key]

    @property
    def phases(self) -> list[tuple[float, str]]:
        return list(self._phases)

    # -- palette ---------------------------------------------------------------------------------
    def _apply_palette(self) -> None:
        for chart in (self.loss_chart, self.acc_chart, self.lr_chart):
            chart.apply_palette(self.palette())

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.PaletteChange:
            self._apply_palette()
        super().changeEvent(event)
