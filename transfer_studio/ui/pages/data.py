"""Data page: choose an image folder, see what is in it and what is wrong with it, and split it.

The page binds widgets to its model (``ui.models.data_model.DataModel``), which runs the scan
(``core.dataset.scan``) and the split (``core.dataset.make_split``) on worker threads, writes what the
user decides into ``project.data`` and hands the scan report to ``state.scan`` for the Strategy,
Augment and Review pages. The page keeps what needs Qt: thumbnails, loaded lazily on a thread pool
(``ui.thumbnails``), the bar chart, the recent-folders menu, drag and drop, and the short delay before
the split follows its fields.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QTableWidgetItem,
    QTreeWidgetItem,
    QWidget,
)

from transfer_studio.ui import theme
from transfer_studio.ui.models import data_model as dm
from transfer_studio.ui.models.data_model import DataModel, fmt_int
from transfer_studio.ui.pages import data_widgets as w
from transfer_studio.ui.settings import Settings
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets.num_item import NumItem
from transfer_studio.ui.worker import preload_module, run_task, wait_for_tasks

RECENT_KEY = "recent/data_folders"
MAX_RECENT = 8

_open_url = QDesktopServices.openUrl  # indirection: tests replace it instead of opening a file manager


class DataPage(QWidget):
    TITLE = "Data"

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_data")
        self.state = state
        self.model = DataModel(state, run_task)
        self._loading = False  # filling widgets from the model: don't write back
        self._chart: Any = None  # charts.BarChart, created with the first results (pyqtgraph is heavy)
        # pyqtgraph takes a second or more to import: do it in the background now, so the first
        # results never stall the GUI thread; the chart is created once that import has finished.
        self._charts_ready = "transfer_studio.ui.charts" in sys.modules
        self._chart_pending: tuple[Any, list[int]] | None = None
        if not self._charts_ready:
            self._preload = preload_module("transfer_studio.ui.charts", on_finished=self._on_charts_ready)
        self._thumbs: Any = None  # thumbnails.ThumbnailModel, created when the gallery is first needed
        self.setAcceptDrops(True)
        w.build(self)
        self._split_timer = QTimer(self)
        self._split_timer.setSingleShot(True)
        self._split_timer.setInterval(200)
        self._split_timer.timeout.connect(self.model.start_split)
        state.projectReplaced.connect(self._split_timer.stop)
        self._connect_model()
        self.model.load_from_project()

    @property
    def report(self) -> Any:
        """The ScanReport shown."""
        return self.model.report

    @property
    def split(self) -> dict[str, list[str]] | None:
        return self.model.split

    @property
    def split_counts(self) -> dict[str, list[int]]:
        return self.model.split_counts

    # -- public API ----------------------------------------------------------------------------
    def choose_folder(self, path: str | os.PathLike[str], *, verify: bool | None = None) -> None:
        """Scan ``path`` (in the background) and make it the project's dataset when it succeeds."""
        self.model.choose_folder(path, verify=verify)

    def cancel_scan(self) -> None:
        self.model.cancel_scan()

    def busy(self) -> bool:
        return self.model.busy()

    def shutdown(self) -> None:
        self._split_timer.stop()
        wait_for_tasks([self.model.scan_job, self.model.split_job, getattr(self, "_preload", None)])
        if self._thumbs is not None:
            self._thumbs.loader.shutdown()

    def reveal(self, path: str) -> None:
        """Open the folder holding ``path`` (relative to the dataset root) in the file manager."""
        _open_url(QUrl.fromLocalFile(self.model.folder_of(path)))

    def _choose_dialog(self) -> None:
        text = self.folder_edit.text()
        start = text if text and Path(text).is_dir() else Settings().last_folder("data")
        path = QFileDialog.getExistingDirectory(self, "Choose the image folder", start)
        if path:
            self.choose_folder(path)

    # -- model -> widgets ----------------------------------------------------------------------
    def _connect_model(self) -> None:
        m = self.model
        m.folderText.connect(self.folder_edit.setText)
        m.message.connect(self.banner.show_message)
        m.messageCleared.connect(self.banner.clear)
        m.busyStarted.connect(lambda text, job: self.busy_indicator.start(text, handle=job))
        m.busyText.connect(self.busy_indicator.set_text)
        m.busyStopped.connect(self.busy_indicator.stop)
        m.reportShown.connect(self._show_report)
        m.emptied.connect(self._show_empty)
        m.splitShown.connect(self._show_split)
        m.splitPending.connect(self._on_split_pending)
        m.splitFailed.connect(lambda: self.split_counts_label.setText("—"))
        m.fieldsChanged.connect(self._set_fields)
        m.scanned.connect(self._remember_folder)

    def _set_fields(self, val: float, test: float, seed: int) -> None:
        self._loading = True
        try:
            self.val_spin.setValue(val)
            self.test_spin.setValue(test)
            self.seed_spin.setValue(seed)
        finally:
            self._loading = False

    def _on_split_settings_changed(self) -> None:
        if not self._loading:
            self.model.edit_split_settings(self.val_spin.value(), self.test_spin.value(), self.seed_spin.value())

    def _on_split_pending(self) -> None:
        self.split_counts_label.setText("Splitting…")
        self._split_timer.start()  # debounced: spinning the value does not split every step

    def _show_empty(self) -> None:
        self.results.hide()
        self.empty.show()

    def _show_report(self, report: Any) -> None:
        self.empty.hide()
        self.results.show()
        counts = dm.class_counts(report)
        self.summary_label.setText(dm.summary_text(report))
        warnings = dm.warnings_text(report)
        self.warnings_label.setText(warnings)
        self.warnings_frame.setVisible(bool(warnings))
        self._fill_class_table(report, counts)
        self._fill_chart(report, counts)
        self._fill_problems(report)
        self.gallery_class.blockSignals(True)
        self.gallery_class.clear()
        self.gallery_class.addItem(f"All classes ({fmt_int(report.num_images)})", -1)
        for i, (c, n) in enumerate(zip(report.classes, counts, strict=True)):
            self.gallery_class.addItem(f"{c} ({fmt_int(n)})", i)
        self.gallery_class.blockSignals(False)
        if self._thumbs is not None:
            self._thumbs.set_items([])
        if self.tabs.currentIndex() == 1:
            self._fill_gallery()
        presplit = report.layout == "split"
        for spin in (self.val_spin, self.test_spin, self.seed_spin):
            spin.setEnabled(not presplit)
        self.presplit_label.setVisible(presplit)

    def _fill_class_table(self, report: Any, counts: list[int]) -> None:
        table = self.class_table
        table.setSortingEnabled(False)
        table.setRowCount(len(report.classes))
        total = max(1, sum(counts))
        flags = dm.under_represented(counts)
        warn_brush = theme.semantic_colors().warning
        for row, (name, n) in enumerate(zip(report.classes, counts, strict=True)):
            item = QTableWidgetItem(name)
            item.setData(Qt.ItemDataRole.UserRole, row)  # class index, survives sorting
            if flags[row]:
                item.setForeground(warn_brush)
                item.setToolTip(f"'{name}' has few images compared with the other classes")
            table.setItem(row, 0, item)
            table.setItem(row, 1, NumItem(fmt_int(n), n))
            table.setItem(row, 2, NumItem(f"{100 * n / total:.1f} %", n / total))
            for col in (3, 4, 5):
                table.setItem(row, col, NumItem("", 0))
        table.setSortingEnabled(True)

    def _on_charts_ready(self) -> None:
        self._charts_ready = True
        if self._chart_pending is not None:
            report, counts = self._chart_pending
            self._chart_pending = None
            self._fill_chart(report, counts)

    def _fill_chart(self, report: Any, counts: list[int]) -> None:
        if not self._charts_ready:
            self._chart_pending = (report, counts)
            self.chart_legend.setText("Drawing the chart…")
            return
        if self._chart is None:
            from transfer_studio.ui.charts import BarChart

            self._chart = BarChart(y_label="images")
            self._chart.setObjectName("data_chart")
            self.chart_layout.insertWidget(0, self._chart, 1)
        flags = dm.under_represented(counts)
        self._chart.set_bars(report.classes, counts, flags)
        mark = f"<span style='color:{theme.semantic_colors().warning.name()}'>■</span>"
        self.chart_legend.setText(dm.chart_legend(report, flags, mark))

    def _fill_problems(self, report: Any) -> None:
        table = self.skipped_table
        table.setSortingEnabled(False)
        table.setRowCount(len(report.skipped))
        for row, sk in enumerate(report.skipped):
            item = QTableWidgetItem(sk.path)
            item.setData(Qt.ItemDataRole.UserRole, sk.path)
            item.setToolTip(sk.path)
            table.setItem(row, 0, item)
            table.setItem(row, 1, QTableWidgetItem(sk.reason))
        table.setSortingEnabled(True)
        tree = self.duplicates_tree
        tree.clear()
        for group in report.duplicates:
            top = QTreeWidgetItem([f"{len(group)} identical files"])
            for path in group:
                child = QTreeWidgetItem([path])
                child.setData(0, Qt.ItemDataRole.UserRole, path)
                top.addChild(child)
            tree.addTopLevelItem(top)
        tree.expandAll()
        skipped, duplicates, tab = dm.problems_texts(report)
        self.skipped_title.setText(skipped)
        self.duplicates_title.setText(duplicates)
        self.tabs.setTabText(2, tab)

    def _on_duplicate_double_clicked(self, item: QTreeWidgetItem, _col: int) -> None:
        path = item.data(0, Qt.ItemDataRole.UserRole)
        if path:
            self.reveal(path)

    def _show_split(self) -> None:
        self.split_counts_label.setText(self.model.split_text())
        table = self.class_table
        table.setSortingEnabled(False)
        for row in range(table.rowCount()):
            ci = table.item(row, 0).data(Qt.ItemDataRole.UserRole)
            for col, key in ((3, "train"), (4, "val"), (5, "test")):
                n = self.model.part_count(key, ci)
                table.setItem(row, col, NumItem(fmt_int(n), n))
        table.setColumnHidden(5, not (self.model.split or {}).get("test"))
        table.setSortingEnabled(True)

    # -- gallery -------------------------------------------------------------------------------
    def _on_tab_changed(self, index: int) -> None:
        if index == 1 and self.report is not None and (self._thumbs is None or self._thumbs.rowCount() == 0):
            self._fill_gallery()

    def _show_class_images(self, row: int, _col: int) -> None:
        item = self.class_table.item(row, 0)
        if item is None:
            return
        class_index = item.data(Qt.ItemDataRole.UserRole)
        self.tabs.setCurrentIndex(1)
        self.gallery_class.setCurrentIndex(self.gallery_class.findData(class_index))

    def _fill_gallery(self) -> None:
        if self.report is None:
            return
        if self._thumbs is None:
            from transfer_studio.ui.thumbnails import ThumbnailModel, make_gallery_view

            self._thumbs = ThumbnailModel(parent=self)
            self.gallery = make_gallery_view(self._thumbs)
            self.gallery.setObjectName("data_gallery")
            self.gallery.doubleClicked.connect(
                lambda idx: _open_url(QUrl.fromLocalFile(self._thumbs.path(idx.row()))))
            self.gallery_holder.addWidget(self.gallery)
        class_index = self.gallery_class.currentData()
        rel = self.model.gallery_files(-1 if class_index is None else class_index)
        self._thumbs.set_items([os.path.join(self.report.root, f) for f in rel], rel)
        self.gallery_count.setText(f"{fmt_int(len(rel))} images — double-click one to open it")

    # -- recent folders and drag and drop ------------------------------------------------------
    def _recent_folders(self) -> list[str]:
        value = Settings().value(RECENT_KEY, [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or []) if v]

    def _remember_folder(self, path: str) -> None:
        folders = [path] + [p for p in self._recent_folders() if os.path.normpath(p) != os.path.normpath(path)]
        settings = Settings()
        settings.set_value(RECENT_KEY, folders[:MAX_RECENT])
        settings.set_last_folder("data", str(Path(path).parent))

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        folders = self._recent_folders()
        if not folders:
            action = self.recent_menu.addAction("No recent folders")
            action.setEnabled(False)
            return
        for folder in folders:
            action = self.recent_menu.addAction(folder)
            action.setEnabled(Path(folder).is_dir())
            action.triggered.connect(lambda _=False, f=folder: self.choose_folder(f))

    @staticmethod
    def _dropped_folder(event: QDragEnterEvent | QDropEvent) -> str | None:
        mime = event.mimeData()
        if not mime.hasUrls():
            return None
        for url in mime.urls():
            if url.isLocalFile() and Path(url.toLocalFile()).is_dir():
                return url.toLocalFile()
        return None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_folder(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: Any) -> None:
        event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        folder = self._dropped_folder(event)
        if folder:
            event.acceptProposedAction()
            self.choose_folder(folder)
