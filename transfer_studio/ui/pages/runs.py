"""Runs page: the project's training runs, their curves side by side, evaluation and deletion.

The table lists ``project.runs`` (the records the Train page and ``transfer-studio train --project``
write). Selecting runs overlays their validation accuracy and loss curves, read from each run
folder's ``history.json`` (a few KB; cached by modification time). "Open evaluation" hands the run
to the Evaluate page (``AppState.request_evaluation``: remembered in ``project.ui.evaluate_run``,
announced by ``evaluateRequested``) and asks the window to show it. Deleting asks first, removes the record, and removes the folder only when the user agrees.

The run-choosing helpers the Evaluate, Try and Export pages share (``run_label``, ``default_run``,
``RunCombo``, ``browse_start``) are in ``ui.widgets.run_chooser``. pyqtgraph loads only when the page
is built.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
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

from transfer_studio.config import RunRecord
from transfer_studio.core import run_folder  # torch-free: the folders' file names
from transfer_studio.core.runs import find_record, norm_path, record_from_folder, refresh_record
from transfer_studio.errors import UserError
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import EmptyState, MessageBanner
from transfer_studio.ui.widgets.heading import page_heading
from transfer_studio.ui.widgets.run_chooser import default_run, format_created, run_label
from transfer_studio.ui.worker import preload_module, wait_for_tasks

# Distinct, mid-saturation colours for overlaid runs: readable on light and dark backgrounds.
RUN_COLOURS = ("#1f77dc", "#e8780f", "#2ca05a", "#d6456b", "#9467bd", "#8c6d31", "#17a3b8", "#7f7f7f")
COLUMNS = ("Date", "Model", "Strategy", "Epochs", "Best val. accuracy", "Duration", "Status")


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds <= 0:
        return "–"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def format_accuracy(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def folder_size(path: Path) -> int:
    total = 0
    for f in path.rglob("*"):
        try:
            if f.is_file():
                total += f.stat().st_size
        except OSError:
            continue
    return total


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
FOLLOW_MS = 3000  # how often runs still training are re-read


class RunsPage(QWidget):
    TITLE = "Runs"
    RunRole = Qt.ItemDataRole.UserRole

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_runs")
        self.state = state
        self._history_cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
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
        # Runs written by other processes (a job folder's torchrun, the CLI) are followed: their
        # run.json and history.json are re-read while the page shows them.
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
        runs = self.state.project.runs
        self.table.setSortingEnabled(False)
        blocked = self.table.blockSignals(True)
        self.table.setRowCount(0)
        self.table.setRowCount(len(runs))
        for row, rec in enumerate(reversed(runs)):  # newest first
            self._fill_row(row, rec)
        self.table.blockSignals(blocked)
        self.table.setSortingEnabled(True)
        if not selected and runs:
            # Nothing chosen yet: show the latest run's curves rather than two empty charts.
            latest = default_run(self.state.project)
            selected = [latest] if latest and Path(latest).is_dir() else []
        self.select_runs(selected)
        has = bool(runs)
        self.empty.setVisible(not has)
        self.splitter.setVisible(has)
        self._on_selection()

    def _add_row_to_selection(self, row: int) -> None:
        from PySide6.QtCore import QItemSelectionModel

        sm = self.table.selectionModel()
        sm.select(self.table.model().index(row, 0),
                  QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)

    def _fill_row(self, row: int, rec: RunRecord) -> None:
        exists = Path(rec.run_dir).is_dir()
        epochs = str(rec.epochs_completed) + (f" (best {rec.best_epoch})" if rec.best_epoch else "")
        status = rec.status if exists else f"{rec.status} · folder missing"
        cells = [
            _SortItem(format_created(rec.created), rec.created or ""),
            _SortItem(rec.model or "?", rec.model or ""),
            _SortItem(rec.strategy or "–", rec.strategy or ""),
            _SortItem(epochs, rec.epochs_completed),
            _SortItem(format_accuracy(rec.val_accuracy), -1.0 if rec.val_accuracy is None else rec.val_accuracy),
            _SortItem(format_duration(rec.duration_s), float(rec.duration_s or 0.0)),
            _SortItem(status, status),
        ]
        for col, item in enumerate(cells):
            item.setData(self.RunRole, rec.run_dir)
            item.setToolTip(rec.run_dir)
            if col in (3, 4, 5):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if not exists:
                item.setForeground(self.palette().color(self.palette().ColorRole.PlaceholderText))
            self.table.setItem(row, col, item)

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
        n = len(runs)
        self.evaluate_button.setEnabled(n == 1)
        self.delete_button.setEnabled(n >= 1)
        if n == 0:
            self.selection_label.setText("Select a run to see its curves; select several to compare them.")
        elif n == 1:
            self.selection_label.setText("Select another run (Ctrl+click) to overlay its curves.")
        else:
            self.selection_label.setText(f"{n} runs overlaid.")
        self._plot(runs)

    def history(self, run_dir: str) -> list[dict[str, Any]]:
        path = Path(run_dir) / run_folder.HISTORY
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return []
        cached = self._history_cache.get(run_dir)
        if cached is None or cached[0] != mtime:
            cached = (mtime, run_folder.read_history(run_dir))
            self._history_cache[run_dir] = cached
        return cached[1]

    def _plot(self, runs: list[str]) -> None:
        if self.acc_plot is None:
            return  # drawn once the charts exist
        import pyqtgraph as pg

        for widget in (self.acc_plot, self.loss_plot):
            widget.getPlotItem().clear()
        self._plot_items = []
        legend = []
        for k, run_dir in enumerate(runs):
            colour = QColor(RUN_COLOURS[k % len(RUN_COLOURS)])
            hist = self.history(run_dir)
            rec = find_record(self.state.project, run_dir)
            name = run_label(rec) if rec is not None else Path(run_dir).name
            if not hist:
                legend.append(f"<span style='color:{colour.name()}'>■</span> {name} (no history)")
                continue
            epochs = [float(h["epoch"]) for h in hist]

            def series(key: str, scale: float = 1.0, h=hist) -> tuple[list[float], list[float]]:
                pts = [(float(x["epoch"]), float(x[key]) * scale) for x in h if x.get(key) is not None]
                return [p[0] for p in pts], [p[1] for p in pts]

            xs, ys = series("val_accuracy", 100.0)
            if xs:
                self._plot_items.append(("val_accuracy", run_dir, self.acc_plot.plot(
                    xs, ys, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5, symbolBrush=colour,
                    symbolPen=colour)))
            xs, ys = series("val_loss")
            if xs:
                self._plot_items.append(("val_loss", run_dir, self.loss_plot.plot(
                    xs, ys, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5, symbolBrush=colour,
                    symbolPen=colour)))
            xs, ys = series("train_loss")
            if xs:
                self._plot_items.append(("train_loss", run_dir, self.loss_plot.plot(
                    xs, ys, pen=pg.mkPen(colour, width=1.5, style=Qt.PenStyle.DashLine))))
            legend.append(f"<span style='color:{colour.name()}'>■</span> {name} ({len(epochs)} epochs)")
        self.legend.setText("&nbsp;&nbsp;&nbsp;".join(legend))
        self.legend.setVisible(bool(legend))

    def curves(self, kind: str = "val_accuracy") -> dict[str, tuple[list[float], list[float]]]:
        """What the charts draw: run folder -> (epochs, values) for one kind of curve."""
        out = {}
        for k, run_dir, item in self._plot_items:
            if k == kind:
                x, y = item.getData()
                out[run_dir] = ([float(v) for v in x], [float(v) for v in y])
        return out

    def shutdown(self) -> None:
        wait_for_tasks([self._preload])

    # -- actions ---------------------------------------------------------------------------------
    def add_run_folder(self, path: str | None = None) -> bool:
        """Add a run folder trained elsewhere to the project (asks for it without ``path``)."""
        if path is None:
            runs = self.state.project.runs
            start = (str(Path(runs[-1].run_dir).parent) if runs else
                     str(Path(self.state.path).parent) if self.state.path else str(Path.home()))
            path = QFileDialog.getExistingDirectory(self, "Add a run folder", start)
            if not path:
                return False
        try:
            record = record_from_folder(path)
        except UserError as exc:
            self.banner.show_message(str(exc), "error")
            return False
        if find_record(self.state.project, record.run_dir) is None:
            self.state.project.runs.append(record)
            self.state.mark_changed("runs")
        self.banner.clear()
        self.select_runs([record.run_dir])
        self.state.status(f"Added the run {run_label(record)}", 4000)
        return True

    def follow_runs(self) -> None:
        """Re-read the records of runs still training and redraw the selected curves if a history grew."""
        if not self.isVisible():
            return
        changed = [rec for rec in self.state.project.runs if rec.status == "running" and refresh_record(rec)]
        if changed:
            self.state.mark_changed("runs")  # reloads the table and the curves
        elif any(self._history_grew(d) for d in self.selected_runs()):
            self._plot(self.selected_runs())

    def _history_grew(self, run_dir: str) -> bool:
        cached = self._history_cache.get(run_dir)
        try:
            return cached is not None and (Path(run_dir) / run_folder.HISTORY).stat().st_mtime != cached[0]
        except OSError:
            return False

    def open_evaluation(self, run_dir: str | None = None) -> bool:
        """Show ``run_dir`` (default: the selected run) on the Evaluate page."""
        if run_dir is None:
            runs = self.selected_runs()
            if len(runs) != 1:
                return False
            run_dir = runs[0]
        if not Path(run_dir).is_dir():
            self.banner.show_message(f"The run folder {run_dir} no longer exists, so it cannot be evaluated.",
                                     "warning")
            return False
        self.state.request_evaluation(run_dir)
        self.state.navigateRequested.emit("evaluate")
        return True

    def delete_selected(self) -> int:
        """Ask, then remove the selected runs from the project (and their folders if the user agrees).

        Returns the number of records removed. A run that is training right now is never deleted.
        """
        runs = self.selected_runs()
        if not runs:
            return 0
        project = self.state.project
        records = [r for r in (find_record(project, d) for d in runs) if r is not None]
        running = [r for r in records if r.status == "running"]
        if running:
            self.banner.show_message("A run that is still training cannot be deleted: stop it on the Train "
                                     "page first.", "warning")
            return 0
        B = QMessageBox.StandardButton
        what = f"the run “{run_label(records[0])}”" if len(records) == 1 else f"{len(records)} runs"
        answer = QMessageBox.question(self, "Delete runs", f"Remove {what} from this project?",
                                      B.Yes | B.No, B.No)
        if answer != B.Yes:
            return 0
        folders = [Path(r.run_dir) for r in records if Path(r.run_dir).is_dir()]
        delete_files = False
        if folders:
            size = sum(folder_size(f) for f in folders)
            from transfer_studio.ui.widgets import format_bytes

            where = str(folders[0]) if len(folders) == 1 else f"{len(folders)} run folders"
            answer = QMessageBox.question(
                self, "Delete files too?",
                f"Also delete {where} from disk ({format_bytes(size)})? Its checkpoints and weights are "
                "lost for good; exported bundles elsewhere are kept.", B.Yes | B.No, B.No)
            delete_files = answer == B.Yes
        failed: list[str] = []
        for rec in records:
            # Only a folder a run wrote: a hand-edited project may list any folder (even home) as a run.
            if delete_files and Path(rec.run_dir).is_dir() and run_folder.is_run_folder(rec.run_dir):
                try:
                    shutil.rmtree(rec.run_dir)
                except OSError as exc:
                    failed.append(f"{rec.run_dir} ({exc.strerror or exc})")
            project.runs.remove(rec)
            for key in ("selected_run", "evaluate_run", "export_run", "try_run"):
                value = getattr(project.ui, key)
                if value and norm_path(value) == norm_path(rec.run_dir):
                    project.ui.reset(key)
        self.state.mark_changed("runs")
        self.state.mark_changed("ui")
        if failed:
            self.banner.show_message(f"Removed from the project, but could not delete {'; '.join(failed)}.",
                                     "warning")
        else:
            self.banner.clear()
            self.state.status(f"Deleted {what}" + (" and its files" if delete_files else ""), 4000)
        return len(records)
