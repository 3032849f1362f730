"""Runs page: the project's training runs, their curves side by side, evaluation and deletion.

The page binds widgets to ``ui.models.runs_model.RunsModel``: the table shows its rows (``project.runs``,
newest first), selecting runs overlays their validation accuracy and loss curves (each run folder's
``history.json``, cached by modification time), "Open evaluation" hands the run to the Evaluate page
(``AppState.request_evaluation``) and asks the window to show it, "Add run folder…" adds a run trained
elsewhere, and deleting asks first, removes the record, and removes the folder only when the user
agrees (the folders are measured and deleted in jobs, shown by the page's busy bar with its Cancel;
Delete stays disabled meanwhile). Runs still training are followed: the page's timer only says a refresh
is due; the model re-reads their files in a job, never on the GUI thread.

The run-choosing helpers the Evaluate, Try and Export pages share (``run_label``, ``default_run``,
``RunCombo``, ``browse_start``) are in ``ui.widgets.run_chooser``. pyqtgraph loads only when the page
is built.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.core.runs import norm_path
from transfer_studio.ui.models.runs_model import (  # noqa: F401 - format_duration: importable from the page
    COLUMNS,
    FOLLOW_MS,
    NUMERIC_COLUMNS,
    DeletePlan,
    Row,
    RunsModel,
    format_duration,
    selection_text,
)
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import BusyIndicator, EmptyState, MessageBanner, format_bytes
from transfer_studio.ui.widgets.heading import page_heading
from transfer_studio.ui.widgets.run_chooser import default_run, format_created, run_label
from transfer_studio.ui.worker import preload_module, run_task, wait_for_tasks


class _SortItem(QTableWidgetItem):
    """Shown as text, sorted by a number (or the ISO date)."""

    def __init__(self, text: str, key: Any):
        super().__init__(text)
        self.setData(Qt.ItemDataRole.UserRole + 1, key)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a, b = self.data(Qt.ItemDataRole.UserRole + 1), other.data(Qt.ItemDataRole.UserRole + 1)
        if a is None or b is None or type(a) is not type(b):
            return (a is None) and (b is not None)
        return a < b


# -- the page ------------------------------------------------------------------------------------
class RunsPage(QWidget):
    TITLE = "Runs"
    RunRole = Qt.ItemDataRole.UserRole

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_runs")
        self.state = state
        self.model = RunsModel(state, run_task, selected=self.selected_runs, shown=self.isVisible,
                               label=run_label, created=format_created)
        self.model.message.connect(lambda text, level: self.banner.show_message(text, level))
        self.model.messageCleared.connect(lambda: self.banner.clear())
        self.model.selectRequested.connect(self.select_runs)
        self.model.curvesChanged.connect(lambda: self._plot(self.selected_runs()))
        self.model.busyStarted.connect(self._on_busy_started)
        self.model.busyStopped.connect(self._on_busy_stopped)
        model = self.model
        self.destroyed.connect(lambda *_: model.close())  # a late follow answer must not reach deleted widgets
        self._plot_items: list[Any] = []
        self._build()
        state.projectReplaced.connect(self.reload)
        state.projectChanged.connect(self._on_project_changed)
        self.reload()

    # -- construction ----------------------------------------------------------------------------
    def _build(self) -> None:
        title, hint = page_heading(
            "Runs",
            "Every training run of this project. Select two or more to compare their curves; "
            "open one's evaluation, or delete runs you no longer need.")
        self.banner = MessageBanner(object_name="runs_banner")
        self.busy_indicator = BusyIndicator(object_name="runs_busy")

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("runs_table")
        self.table.setAccessibleName("Training runs")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSortIndicator(0, Qt.SortOrder.DescendingOrder)  # newest first until the user sorts
        self.table.setSortingEnabled(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.itemDoubleClicked.connect(lambda _item: self.open_evaluation())

        self.evaluate_button = QPushButton("Open evaluation")
        self.evaluate_button.setObjectName("runs_open_evaluation")
        self.evaluate_button.setToolTip("Show the selected run on the Evaluate page")
        self.evaluate_button.clicked.connect(lambda: self.open_evaluation())
        self.add_button = QPushButton("Add run folder…")
        self.add_button.setObjectName("runs_add_folder")
        self.add_button.setToolTip("Add a run trained elsewhere (a job on several GPUs or a cluster, the command "
                                   "line) to this project; its row and curves follow it while it trains")
        self.add_button.clicked.connect(lambda: self.add_run_folder())
        self.delete_button = QPushButton("Delete…")
        self.delete_button.setObjectName("runs_delete")
        self.delete_button.setToolTip("Remove the selected runs from the project (and, if you agree, from disk)")
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        self.selection_label = QLabel()
        self.selection_label.setObjectName("runs_selection")
        self.selection_label.setProperty("role", "muted")
        buttons = QHBoxLayout()
        buttons.addWidget(self.selection_label, 1)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.evaluate_button)
        buttons.addWidget(self.delete_button)

        # The charts need pyqtgraph, imported on a worker thread the first time (see _build_charts).
        self.charts = QWidget()
        self.charts.setObjectName("runs_charts")
        self._charts_layout = QVBoxLayout(self.charts)
        self._charts_layout.setContentsMargins(0, 0, 0, 0)
        self.legend = QLabel()
        self.legend.setObjectName("runs_legend")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self._charts_layout.addWidget(self.legend)
        self.acc_plot: Any = None
        self.loss_plot: Any = None

        table_box = QWidget()
        tlay = QVBoxLayout(table_box)
        tlay.setContentsMargins(0, 0, 0, 0)
        tlay.addWidget(self.table, 1)
        tlay.addLayout(buttons)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("runs_splitter")
        self.splitter.addWidget(table_box)
        self.splitter.addWidget(self.charts)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([260, 440])  # the curves get most of the height

        self.empty = EmptyState("runs", "No runs yet", "Train a model on the Train page: every run appears "
                                "here with its curves and metrics.", object_name="runs_empty")
        self.empty.add_action("Go to Train", lambda: self.state.navigateRequested.emit("train"),
                              object_name="runs_go_train", primary=True)
        self.empty.add_action("Add run folder…", lambda: self.add_run_folder(), object_name="runs_empty_add")
        # Runs written by other processes (a job folder's torchrun, the CLI) are followed while the page
        # shows them: the timer only says a refresh is due, the model reads their files in a job.
        self._follow = QTimer(self)
        self._follow.setInterval(FOLLOW_MS)
        self._follow.timeout.connect(self.follow_runs)
        self._follow.start()

        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 12, 16, 12)
        lay.setSpacing(8)
        lay.addWidget(title)
        lay.addWidget(hint)
        lay.addWidget(self.banner)
        lay.addWidget(self.busy_indicator)
        lay.addWidget(self.empty, 1)
        lay.addWidget(self.splitter, 1)
        self._preload: Any = None
        if "pyqtgraph" in sys.modules:
            self._build_charts()
        else:
            self._preload = preload_module("transfer_studio.ui.charts", on_finished=self._build_charts)

    def _build_charts(self) -> None:
        import pyqtgraph as pg  # loaded already (here or by the preload task): no import on this thread

        if self.acc_plot is not None:
            return
        pg.setConfigOptions(antialias=True)
        from transfer_studio.ui.plots import EpochAxis

        # Whole epochs on x; no SI scaling on y (a loss of 0.68 read "loss (x0.001)" ~ 680).
        self.acc_plot = pg.PlotWidget(axisItems={"bottom": EpochAxis()})
        self.acc_plot.setObjectName("runs_accuracy_plot")
        self.loss_plot = pg.PlotWidget(axisItems={"bottom": EpochAxis()})
        self.loss_plot.setObjectName("runs_loss_plot")
        for widget, title_text, y in ((self.acc_plot, "Validation accuracy", "accuracy (%)"),
                                      (self.loss_plot, "Loss (solid: validation, dashed: training)", "loss")):
            plot = widget.getPlotItem()
            plot.setTitle(title_text)
            plot.setLabel("bottom", "epoch")
            plot.setLabel("left", y)
            plot.getAxis("left").enableAutoSIPrefix(False)
            plot.showGrid(x=True, y=True, alpha=0.15)
            plot.setMenuEnabled(False)
            widget.setMinimumSize(240, 180)
        row = QHBoxLayout()
        row.addWidget(self.acc_plot)
        row.addWidget(self.loss_plot)
        self._charts_layout.addLayout(row, 1)
        self._apply_palette()
        self._plot(self.selected_runs())

    def charts_ready(self) -> bool:
        return self.acc_plot is not None

    def _apply_palette(self) -> None:
        if self.acc_plot is None:
            return
        import pyqtgraph as pg

        pal = self.palette()
        base, text = pal.color(pal.ColorRole.Base), pal.color(pal.ColorRole.Text)
        for widget in (self.acc_plot, self.loss_plot):
            widget.setBackground(base)
            plot = widget.getPlotItem()
            for name in ("left", "bottom"):
                plot.getAxis(name).setPen(pg.mkPen(text))
                plot.getAxis(name).setTextPen(pg.mkPen(text))
            plot.titleLabel.setText(plot.titleLabel.text, color=text)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt override
        from PySide6.QtCore import QEvent

        if event.type() == QEvent.Type.PaletteChange and getattr(self, "acc_plot", None) is not None:
            self._apply_palette()
        super().changeEvent(event)

    # -- project ---------------------------------------------------------------------------------
    def _on_project_changed(self, section: str) -> None:
        if section == "runs":
            self.reload()

    def reload(self) -> None:
        """Refill the table from ``project.runs``, keeping the selection where runs remain."""
        selected = self.selected_runs()
        rows = self.model.rows()
        self.table.setSortingEnabled(False)
        blocked = self.table.blockSignals(True)
        self.table.setRowCount(0)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            self._fill_row(r, row)
        self.table.blockSignals(blocked)
        self.table.setSortingEnabled(True)
        # Nothing chosen yet: show the latest run's curves rather than two empty charts.
        self.select_runs(self.model.shown_runs(selected, default_run(self.state.project)))
        self.empty.setVisible(not rows)
        self.splitter.setVisible(bool(rows))
        self._on_selection()

    def _add_row_to_selection(self, row: int) -> None:
        from PySide6.QtCore import QItemSelectionModel

        sm = self.table.selectionModel()
        sm.select(self.table.model().index(row, 0),
                  QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)

    def _fill_row(self, r: int, row: Row) -> None:
        for col, (text, key) in enumerate(row.cells):
            item = _SortItem(text, key)
            item.setData(self.RunRole, row.run_dir)
            item.setToolTip(row.run_dir)
            if col in NUMERIC_COLUMNS:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if not row.exists:
                item.setForeground(self.palette().color(self.palette().ColorRole.PlaceholderText))
            self.table.setItem(r, col, item)

    # -- selection and curves --------------------------------------------------------------------
    def selected_runs(self) -> list[str]:
        """Run folders of the selected rows, in table order."""
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [str(self.table.item(r, 0).data(self.RunRole)) for r in rows if self.table.item(r, 0)]

    def select_runs(self, run_dirs: Sequence[str]) -> None:
        wanted = {norm_path(d) for d in run_dirs}
        self.table.clearSelection()
        for row in range(self.table.rowCount()):
            if norm_path(self.table.item(row, 0).data(self.RunRole)) in wanted:
                self._add_row_to_selection(row)

    def _on_selection(self) -> None:
        runs = self.selected_runs()
        self.evaluate_button.setEnabled(self.model.can_open_evaluation(runs))
        self.delete_button.setEnabled(self.model.can_delete(runs) and not self.model.deleting())
        self.selection_label.setText(selection_text(len(runs)))
        self._plot(runs)

    def _plot(self, runs: list[str]) -> None:
        if self.acc_plot is None:
            return  # drawn once the charts exist
        import pyqtgraph as pg

        for widget in (self.acc_plot, self.loss_plot):
            widget.getPlotItem().clear()
        self._plot_items = []
        curves = self.model.curves(runs)
        for c in curves:
            colour = QColor(c.colour)
            for kind, (xs, ys) in c.series.items():
                if kind == "train_loss":
                    item = self.loss_plot.plot(xs, ys, pen=pg.mkPen(colour, width=1.5, style=Qt.PenStyle.DashLine))
                else:
                    item = (self.acc_plot if kind == "val_accuracy" else self.loss_plot).plot(
                        xs, ys, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5, symbolBrush=colour,
                        symbolPen=colour)
                self._plot_items.append((kind, c.run_dir, item))
        self.legend.setText("&nbsp;&nbsp;&nbsp;".join(c.legend for c in curves))
        self.legend.setVisible(bool(curves))

    def curves(self, kind: str = "val_accuracy") -> dict[str, tuple[list[float], list[float]]]:
        """What the charts draw: run folder -> (epochs, values) for one kind of curve."""
        out = {}
        for k, run_dir, item in self._plot_items:
            if k == kind:
                x, y = item.getData()
                out[run_dir] = ([float(v) for v in x], [float(v) for v in y])
        return out

    def shutdown(self) -> None:
        self._follow.stop()
        self.model.close()
        wait_for_tasks([self._preload, self.model.follow_job, self.model.delete_job])

    def busy(self) -> bool:
        """Runs are being deleted (the window asks before quitting)."""
        return self.model.deleting()

    def stop_delete(self) -> None:
        """Cancel a delete under way (between folders) and wait for it: the runs whose folders are gone
        leave the project, the others stay."""
        wait_for_tasks([self.model.delete_job])

    def _on_busy_started(self, text: str, job: Any, steps: list[str]) -> None:
        self.busy_indicator.start(text, handle=job, steps=steps)
        self.setCursor(Qt.CursorShape.BusyCursor)
        self.delete_button.setEnabled(False)

    def _on_busy_stopped(self) -> None:
        self.busy_indicator.stop()
        self.unsetCursor()
        self.delete_button.setEnabled(self.model.can_delete(self.selected_runs()) and not self.model.deleting())

    # -- actions ---------------------------------------------------------------------------------
    def add_run_folder(self, path: str | None = None) -> bool:
        """Add a run folder trained elsewhere to the project (asks for it without ``path``)."""
        if path is None:
            path = QFileDialog.getExistingDirectory(self, "Add a run folder", self.model.add_folder_start())
            if not path:
                return False
        return self.model.add_run_folder(path)

    def follow_runs(self) -> Any:
        """The timer's tick: a refresh of the runs still training is due (the model reads their files
        in a job and updates the rows and curves when it answers). Returns the job, if one started."""
        return self.model.follow()

    def open_evaluation(self, run_dir: str | None = None) -> bool:
        """Show ``run_dir`` (default: the selected run) on the Evaluate page."""
        if run_dir is None:
            runs = self.selected_runs()
            if not self.model.can_open_evaluation(runs):
                return False
            run_dir = runs[0]
        return self.model.open_evaluation(run_dir)

    def delete_selected(self) -> Any:
        """Ask, then remove the selected runs from the project (and their folders if the user agrees).

        The folders are measured (for the second question) and deleted in jobs; the records go when the
        delete ends (``busy()`` is false again). Returns the measuring job, or None when nothing started:
        the user said no, a run is training right now (it is never deleted), or a delete is under way.
        """
        plan = self.model.plan_delete(self.selected_runs())
        if plan is None:
            return None
        B = QMessageBox.StandardButton
        if QMessageBox.question(self, "Delete runs", plan.question, B.Yes | B.No, B.No) != B.Yes:
            return None
        return self.model.start_delete(plan, self._ask_delete_files)

    def _ask_delete_files(self, plan: DeletePlan) -> bool:
        B = QMessageBox.StandardButton
        text = self.model.files_question(plan, format_bytes)
        return QMessageBox.question(self, "Delete files too?", text, B.Yes | B.No, B.No) == B.Yes
