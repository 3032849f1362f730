"""Training charts: readable learning-rate axis, marker names clear of the data, resumed runs."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRectF

from transfer_studio.ui.plots import TrainingCharts, sci_tick


@pytest.fixture
def charts(qtbot):
    c = TrainingCharts()
    qtbot.addWidget(c)
    c.resize(1100, 320)
    c.show()
    qtbot.waitExposed(c)
    return c


def _run(c: TrainingCharts, epochs: int = 10, per_epoch: int = 12) -> None:
    c.set_epoch_range(epochs)
    for e in range(1, epochs + 1):
        x = e - 1 + np.arange(1, per_epoch + 1) / per_epoch
        c.add_batches(x, 2.3 * np.exp(-x / 3), 9e-4 * np.cos(np.pi * x / (2 * epochs)))
        c.add_epoch(e, 2.3 * np.exp(-e / 3), 2.4 * np.exp(-e / 3), 1 - np.exp(-e / 2), 0.9 - np.exp(-e / 2))
    c.flush()


def test_the_learning_rate_axis_reads_in_plain_scientific_notation(qtbot, charts):
    """Issue 12.7: the axis read "lr (x1e-06)" with ticks around 900."""
    _run(charts)
    qtbot.wait(50)
    axis = charts.lr_chart.plot.getAxis("left")
    assert "x1e" not in axis.labelString() and axis.autoSIPrefixScale == 1.0
    # nor a loss scaled to "loss (x0.001)" with ticks around 600 (small losses: a converged head)
    charts.clear()
    for e in range(1, 11):
        charts.add_epoch(e, 0.4 / e**2, 0.5 + 0.02 * e, 1.0, 0.87)
    charts.flush()
    qtbot.wait(50)
    loss_axis = charts.loss_chart.plot.getAxis("left")
    assert "(x" not in loss_axis.labelString() and loss_axis.autoSIPrefixScale == 1.0
    assert axis.tickStrings([0.0, 0.0002, 0.0004, 0.0008], 1.0, 0.0002) == ["0", "2e-4", "4e-4", "8e-4"]
    assert sci_tick(0.00025, 0.00005) == "2.5e-4" and sci_tick(0.01, 0.005) == "1e-2"


def test_a_phase_marker_is_named_above_the_data_not_on_it(qtbot, charts):
    """Issue 12.7: the "unfreeze" label overlapped the first point."""
    charts.set_epoch_range(10)
    charts.add_batches(np.linspace(0.1, 1.0, 10), np.full(10, 2.3), np.full(10, 1e-3))
    charts.add_epoch(1, 2.3, 2.4, 0.1, 0.1)  # the first point: at the top, on the marker's line
    charts.mark_phase(1, "unfreeze")
    charts.mark_phase(1, "unfreeze")  # a resumed run marks it again: drawn once
    charts.flush()
    qtbot.wait(50)
    chart = charts.loss_chart
    assert len(chart.markers) == 1 and charts.phases == [(1.0, "unfreeze")]
    (label, rect), = chart.marker_label_rects()
    assert label == "unfreeze"
    view = chart.plot.getViewBox()
    assert rect.bottom() <= view.sceneBoundingRect().top() + 1  # outside the plot area
    for key in ("train_loss", "val_loss", "smooth_loss"):
        x, y = charts.curves[key].getData()
        for px, py in zip(x, y, strict=True):
            centre = view.mapViewToScene(QPointF(float(px), float(py)))
            symbol = QRectF(centre - QPointF(4, 4), centre + QPointF(4, 4))  # symbolSize 6, pen
            assert not rect.intersects(symbol), (key, px, py)


def test_truncate_keeps_the_trace_up_to_the_checkpoint(charts):
    _run(charts, epochs=4)
    charts.mark_phase(3, "unfreeze")
    n = charts.series("batch_loss").n
    charts.truncate(2)
    charts.flush()
    assert charts.series("batch_loss").n == n // 2 and charts.series("batch_loss").x[-1] == pytest.approx(2.0)
    assert charts.series("lr").n == n // 2 and charts.point_count("val_loss") == 2
    assert charts.phases == [] and charts.loss_chart.markers == []
    charts.clear(keep_batches=True)
    charts.flush()
    assert charts.point_count("smooth_loss") == n // 2 and charts.point_count("val_loss") == 0


def test_a_run_without_a_learning_rate_says_so(qtbot, charts):
    """Issue 12 screenshots: a head fitted in one solve left an empty chart with a 0…1 "lr" axis."""
    charts.set_epoch_range(5)
    for e in range(1, 4):
        charts.add_epoch(e, 0.003, 0.7, 1.0, 0.86)
    charts.flush()
    axis = charts.lr_chart.plot.getAxis("left")
    assert charts.lr_missing and "none reported" in charts.lr_chart.plot.titleLabel.text
    assert not axis.style["showValues"]
    charts.clear()
    _run(charts, epochs=2)
    assert not charts.lr_missing and charts.lr_chart.plot.titleLabel.text == "Learning rate"
    assert axis.style["showValues"]


def test_the_epoch_axis_shows_whole_epochs_only(charts):
    axis = charts.loss_chart.plot.getAxis("bottom")
    for lo, hi in ((0.0, 1.0), (0.0, 5.0), (0.0, 60.0)):
        levels = axis.tickValues(lo, hi, 400)
        assert levels and all(float(t).is_integer() for _s, ticks in levels for t in ticks)
