"""Data page: choose an image folder, see what is in it and what is wrong with it, and split it.

The scan (``core.dataset.scan``) and the split (``core.dataset.make_split``) run on worker threads;
thumbnails load lazily on a thread pool (``ui.thumbnails``). What the user decides here lands in
``project.data`` (root, shares, seed, the frozen split, class names) and the scan report in
``state.scan`` for the Strategy and Augment pages.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.errors import Cancelled, UserError
from transfer_studio.ui import theme
from transfer_studio.ui.runtime import import_core
from transfer_studio.ui.settings import Settings
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import BusyIndicator, EmptyState, MessageBanner
from transfer_studio.ui.widgets.heading import page_heading
from transfer_studio.ui.widgets.num_item import NumItem
from transfer_studio.ui.worker import TaskHandle, preload_module, run_task, wait_for_tasks

RECENT_KEY = "recent/data_folders"
MAX_RECENT = 8
# A class is "under-represented" below this share of the largest class, or below NEAR_EMPTY images.
UNDER_REPRESENTED = 1 / 3
NEAR_EMPTY = 10

_open_url = QDesktopServices.openUrl  # indirection: tests replace it instead of opening a file manager


# -- background jobs (run on worker threads; only plain data crosses back) ------------------------------
def scan_folder(root: str, verify: bool, val: float, test: float, seed: int,
                progress: Any = None, cancel: Any = None) -> tuple[Any, dict[str, list[str]], dict]:
    """Scan ``root`` and split it: (ScanReport, split, per-class split counts).

    OS errors while scanning (a folder deleted meanwhile, permission denied) become one-line
    UserErrors that say what to do.
    """
    dataset = import_core("dataset")
    import_core("head")  # for the GUI thread, which matches the head to the classes found
    try:
        report = dataset.scan(root, verify=verify, progress=progress, cancel=cancel)
    except (UserError, Cancelled):
        raise
    except PermissionError as exc:
        where = exc.filename or root
        raise UserError(f"Permission denied reading {where}. Give your user account read access to "
                        "the folder, or choose another folder.") from exc
    except FileNotFoundError as exc:
        raise UserError(f"{exc.filename or root} disappeared while it was being scanned (deleted or "
                        "moved?). Check the folder and scan it again.") from exc
    except OSError as exc:
        raise UserError(f"Could not read {exc.filename or root}: {exc.strerror or exc}. "
                        "Check the folder and scan it again.") from exc
    if cancel is not None and cancel():
        raise Cancelled()
    split, per_class = split_dataset(report, val, test, seed)
    return report, split, per_class


def split_dataset(report: Any, val: float, test: float, seed: int) -> tuple[dict[str, list[str]], dict]:
    """``make_split`` plus the number of images of each class in each part."""
    dataset = import_core("dataset")
    split = dataset.make_split(report, val=val, test=test, seed=seed)
    return split, split_class_counts(report, split)


def split_class_counts(report: Any, split: dict[str, list[str]]) -> dict[str, list[int]]:
    label_of = dict(zip(report.files, report.labels, strict=True))
    out: dict[str, list[int]] = {}
    for part, files in split.items():
        counts = [0] * len(report.classes)
        for f in files:
            label = label_of.get(f)
            if label is not None:
                counts[label] += 1
        out[part] = counts
    return out


def under_represented(counts: list[int]) -> list[bool]:
    top = max(counts, default=0)
    return [c < NEAR_EMPTY or c < top * UNDER_REPRESENTED for c in counts]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def _fmt_int(n: int) -> str:
    return f"{n:,}"


# -- the page ---------------------------------------------------------------------------------------
class DataPage(QWidget):
    TITLE = "Data"

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_data")
        self.state = state
        self.report: Any = None  # the ScanReport shown
        self.split: dict[str, list[str]] | None = None
        self.split_counts: dict[str, list[int]] = {}
        self._scan_task: TaskHandle | None = None
        self._split_task: TaskHandle | None = None
        self._scan_token = 0
        self._split_token = 0
        self._restoring = False  # the scan re-reads the opened project's folder: keep its saved split
        self._loading = False  # filling widgets from the project: don't write back
        self._chart: Any = None  # charts.BarChart, created with the first results (pyqtgraph is heavy)
        # pyqtgraph takes a second or more to import: do it in the background now, so the first
        # results never stall the GUI thread; the chart is created once that import has finished.
        self._charts_ready = "transfer_studio.ui.charts" in sys.modules
        self._chart_pending: tuple[Any, list[int]] | None = None
        if not self._charts_ready:
            self._preload = preload_module("transfer_studio.ui.charts", on_finished=self._on_charts_ready)
        self._thumbs: Any = None  # thumbnails.ThumbnailModel, created when the gallery is first needed
        self.setAcceptDrops(True)
        self._build()
        self._split_timer = QTimer(self)
        self._split_timer.setSingleShot(True)
        self._split_timer.setInterval(200)
        self._split_timer.timeout.connect(self._start_split)
        state.projectReplaced.connect(self._load_from_project)
        state.projectChanged.connect(self._on_project_changed)
        self._load_from_project()

    # -- construction --------------------------------------------------------------------------
    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(16, 12, 16, 12)
        root.setSpacing(8)

        title, hint = page_heading(
            "Data",
            "Choose a folder with one sub-folder per class (or train/ and val/ sub-folders that "
            "each hold the class folders). You can also drop a folder onto this page.")
        root.addWidget(title)
        root.addWidget(hint)

        row = QHBoxLayout()
        self.folder_edit = QLineEdit()
        self.folder_edit.setObjectName("data_folder")
        self.folder_edit.setPlaceholderText("Folder of images…")
        self.folder_edit.setClearButtonEnabled(True)
        self.folder_edit.returnPressed.connect(lambda: self.choose_folder(self.folder_edit.text()))
        self.choose_button = QPushButton("Choose folder…")
        self.choose_button.setObjectName("data_choose")
        self.choose_button.clicked.connect(self._choose_dialog)
        self.recent_button = QToolButton()
        self.recent_button.setObjectName("data_recent")
        self.recent_button.setText("Recent")
        self.recent_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.recent_menu = QMenu(self.recent_button)
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.recent_button.setMenu(self.recent_menu)
        self.rescan_button = QPushButton("Scan again")
        self.rescan_button.setObjectName("data_rescan")
        self.rescan_button.setToolTip("Read the folder again (after you added, removed or fixed files)")
        self.rescan_button.clicked.connect(lambda: self.choose_folder(self.folder_edit.text()))
        self.verify_check = QCheckBox("Decode every image")
        self.verify_check.setObjectName("data_verify")
        self.verify_check.setToolTip("Slower, but also finds images whose pixel data is corrupt")
        row.addWidget(self.folder_edit, 1)
        row.addWidget(self.choose_button)
        row.addWidget(self.recent_button)
        row.addWidget(self.rescan_button)
        row.addWidget(self.verify_check)
        root.addLayout(row)

        self.busy_indicator = BusyIndicator(object_name="data_busy")
        self.busy_indicator.cancelRequested.connect(self.cancel_scan)
        root.addWidget(self.busy_indicator)

        self.banner = MessageBanner(object_name="data_message")
        root.addWidget(self.banner)

        self.empty = EmptyState(
            "data", "No dataset yet",
            "Choose a folder of images — for example photos/cat/…, photos/dog/… — or drop one on this page.",
            object_name="data_empty")
        self.empty.add_action("Choose folder…", self._choose_dialog, object_name="data_empty_choose",
                              primary=True)
        root.addWidget(self.empty, 1)

        self.results = QWidget()
        self.results.setObjectName("data_results")
        res = QVBoxLayout(self.results)
        res.setContentsMargins(0, 0, 0, 0)
        self.summary_label = QLabel()
        self.summary_label.setObjectName("data_summary")
        self.summary_label.setWordWrap(True)
        self.warnings_frame = QFrame()
        self.warnings_frame.setProperty("banner", "warning")  # style.qss colours it (both themes)
        wl = QVBoxLayout(self.warnings_frame)
        wl.setContentsMargins(10, 6, 10, 6)
        self.warnings_label = QLabel()
        self.warnings_label.setObjectName("data_warnings")
        wl.addWidget(self.warnings_label)
        self.warnings_label.setWordWrap(True)
        self.warnings_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        res.addWidget(self.summary_label)
        res.addWidget(self.warnings_frame)

        self.tabs = QTabWidget()
        self.tabs.setObjectName("data_tabs")
        self.tabs.addTab(self._build_classes_tab(), "Classes")
        self.tabs.addTab(self._build_gallery_tab(), "Images")
        self.tabs.addTab(self._build_problems_tab(), "Problems")
        self.tabs.currentChanged.connect(self._on_tab_changed)
        res.addWidget(self.tabs, 1)
        self.results.hide()
        root.addWidget(self.results, 1)

    def _build_classes_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        self.class_table = QTableWidget(0, 6)
        self.class_table.setObjectName("data_class_table")
        self.class_table.setHorizontalHeaderLabels(["Class", "Images", "Share", "Train", "Validation", "Test"])
        self.class_table.verticalHeader().hide()
        self.class_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.class_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.class_table.setAlternatingRowColors(True)
        header = self.class_table.horizontalHeader()
        header.setSortIndicator(0, Qt.SortOrder.AscendingOrder)  # class order until the user sorts
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, 6):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.class_table.cellDoubleClicked.connect(self._show_class_images)
        self.class_table.setToolTip("Double-click a class to see its images")
        self.class_table.setMinimumWidth(320)
        splitter.addWidget(self.class_table)

        right = QWidget()
        self.chart_layout = QVBoxLayout(right)
        self.chart_layout.setContentsMargins(0, 0, 0, 0)
        self.chart_legend = QLabel()
        self.chart_legend.setObjectName("data_chart_legend")
        self.chart_legend.setWordWrap(True)
        self.chart_layout.addWidget(self.chart_legend)
        right.setMinimumWidth(300)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 5)
        splitter.setSizes([400, 500])
        lay.addWidget(splitter, 1)
        lay.addWidget(self._build_split_box())
        return tab

    def _build_split_box(self) -> QGroupBox:
        box = QGroupBox("Split into training / validation / test")
        box.setObjectName("data_split_box")
        row = QHBoxLayout(box)
        self.val_spin = QDoubleSpinBox()
        self.val_spin.setObjectName("data_val_split")
        self.val_spin.setRange(1, 90)
        self.val_spin.setDecimals(0)
        self.val_spin.setSuffix(" %")
        self.val_spin.setToolTip("Share of each class held out to measure how well the model generalises")
        self.test_spin = QDoubleSpinBox()
        self.test_spin.setObjectName("data_test_split")
        self.test_spin.setRange(0, 80)
        self.test_spin.setDecimals(0)
        self.test_spin.setSuffix(" %")
        self.test_spin.setSpecialValueText("none")
        self.test_spin.setToolTip("Optional: a share kept aside for a final, untouched evaluation")
        self.seed_spin = QSpinBox()
        self.seed_spin.setObjectName("data_seed")
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("The same seed always gives the same split")
        for w in (self.val_spin, self.test_spin, self.seed_spin):
            w.valueChanged.connect(self._on_split_settings_changed)
        self.split_counts_label = QLabel("—")
        self.split_counts_label.setObjectName("data_split_counts")
        self.split_counts_label.setWordWrap(True)
        self.presplit_label = QLabel("This folder is already split into train/ and val/ folders; that "
                                     "split is used as it is.")
        self.presplit_label.setWordWrap(True)
        self.presplit_label.hide()
        for label, widget in (("Validation", self.val_spin), ("Test", self.test_spin), ("Seed", self.seed_spin)):
            row.addWidget(QLabel(label))
            row.addWidget(widget)
            row.addSpacing(12)
        row.addWidget(QLabel("→"))
        row.addWidget(self.split_counts_label, 1)
        row.addWidget(self.presplit_label, 1)
        return box

    def _build_gallery_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        row = QHBoxLayout()
        row.addWidget(QLabel("Class"))
        self.gallery_class = QComboBox()
        self.gallery_class.setObjectName("data_gallery_class")
        self.gallery_class.setMinimumContentsLength(16)
        self.gallery_class.currentIndexChanged.connect(self._fill_gallery)
        self.gallery_count = QLabel()
        self.gallery_count.setObjectName("data_gallery_count")
        row.addWidget(self.gallery_class)
        row.addWidget(self.gallery_count, 1)
        lay.addLayout(row)
        self.gallery_holder = QVBoxLayout()
        lay.addLayout(self.gallery_holder, 1)
        self.gallery: Any = None  # QListView, created on first use
        return tab

    def _build_problems_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        splitter = QSplitter(Qt.Orientation.Vertical)
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        self.skipped_title = QLabel()
        tl.addWidget(self.skipped_title)
        self.skipped_table = QTableWidget(0, 2)
        self.skipped_table.setObjectName("data_skipped")
        self.skipped_table.setHorizontalHeaderLabels(["File", "Why it is left out"])
        self.skipped_table.verticalHeader().hide()
        self.skipped_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.skipped_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.skipped_table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)
        self.skipped_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.skipped_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.skipped_table.setToolTip("Double-click to open the file's folder")
        self.skipped_table.cellDoubleClicked.connect(
            lambda r, _c: self.reveal(self.skipped_table.item(r, 0).data(Qt.ItemDataRole.UserRole)))
        tl.addWidget(self.skipped_table)
        splitter.addWidget(top)
        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(0, 0, 0, 0)
        self.duplicates_title = QLabel()
        bl.addWidget(self.duplicates_title)
        self.duplicates_tree = QTreeWidget()
        self.duplicates_tree.setObjectName("data_duplicates")
        self.duplicates_tree.setHeaderLabels(["Identical files"])
        self.duplicates_tree.setToolTip("Double-click a file to open its folder")
        self.duplicates_tree.itemDoubleClicked.connect(self._on_duplicate_double_clicked)
        bl.addWidget(self.duplicates_tree)
        splitter.addWidget(bottom)
        lay.addWidget(splitter)
        return tab

    # -- public API ----------------------------------------------------------------------------
    def choose_folder(self, path: str | os.PathLike[str], *, verify: bool | None = None) -> None:
        """Scan ``path`` (in the background) and make it the project's dataset when it succeeds."""
        self._start_scan(str(path).strip(), verify=verify, restoring=False)

    def cancel_scan(self) -> None:
        if self._scan_task is not None:
            self._scan_task.cancel()
            self.busy_indicator.set_text("Cancelling…")

    def busy(self) -> bool:
        return (self._scan_task is not None and self._scan_task.is_running()) or (
            self._split_task is not None and self._split_task.is_running())

    def shutdown(self) -> None:
        self._split_timer.stop()
        wait_for_tasks([self._scan_task, self._split_task, getattr(self, "_preload", None)])
        if self._thumbs is not None:
            self._thumbs.loader.shutdown()

    def reveal(self, path: str) -> None:
        """Open the folder holding ``path`` (relative to the dataset root) in the file manager."""
        p = Path(path)
        if not p.is_absolute() and self.report is not None:
            p = Path(self.report.root) / p
        folder = p if p.is_dir() else p.parent
        _open_url(QUrl.fromLocalFile(str(folder)))

    # -- scanning ------------------------------------------------------------------------------
    def _choose_dialog(self) -> None:
        text = self.folder_edit.text()
        start = text if text and Path(text).is_dir() else Settings().last_folder("data")
        path = QFileDialog.getExistingDirectory(self, "Choose the image folder", start)
        if path:
            self.choose_folder(path)

    def _start_scan(self, path: str, *, verify: bool | None, restoring: bool) -> None:
        if not path:
            self.banner.show_message("Choose a folder first.", "error")
            return
        if self._scan_task is not None:
            self._scan_task.cancel()
        if verify is None:
            verify = self.verify_check.isChecked()
        self._scan_token += 1
        token = self._scan_token
        self._restoring = restoring
        self.folder_edit.setText(path)
        self.banner.clear()
        self._scan_task = run_task(
            scan_folder, path, verify, self.val_spin.value() / 100, self.test_spin.value() / 100,
            self.seed_spin.value(), name="scan",
            on_progress=lambda d, t: self._on_scan_progress(token, d, t),
            on_result=lambda r: self._on_scan_result(token, path, r),
            on_error=lambda m, tb: self._on_scan_error(token, path, m, tb),
            on_cancelled=lambda: self._on_scan_cancelled(token),
            on_finished=lambda: self._on_scan_finished(token),
        )
        self.busy_indicator.start(f"Scanning {path}…", handle=self._scan_task)

    def _on_scan_progress(self, token: int, done: int, total: int) -> None:
        if token != self._scan_token:
            return
        if total > 0 and self._scan_task is not None and not self._scan_task.cancel_event.is_set():
            self.busy_indicator.set_text(f"Scanning… {_fmt_int(done)} of {_fmt_int(total)} files")

    def _on_scan_result(self, token: int, path: str, result: tuple) -> None:
        if token != self._scan_token:
            return
        report, split, per_class = result
        self._remember_folder(report.root)
        restoring = self._restoring
        self._restoring = False
        self._show_report(report)
        self._set_split(split, per_class)
        self._apply_to_project(report, split, restoring=restoring)
        self.state.set_scan(report)
        self.state.status(f"Scanned {report.root}: {_fmt_int(report.num_images)} images in "
                          f"{len(report.classes)} classes")

    def _on_scan_error(self, token: int, path: str, message: str, tb: str) -> None:
        if token != self._scan_token:
            return
        self._restoring = False
        text = message if not tb else f"The scan of {path} failed: {message}"
        if self.report is not None:
            text += f" — still showing the previous dataset ({self.report.root})."
        self.banner.show_message(text, "error")

    def _on_scan_cancelled(self, token: int) -> None:
        if token != self._scan_token:
            return
        self._restoring = False
        shown = f" Still showing {self.report.root}." if self.report is not None else ""
        self.banner.show_message("Scan cancelled." + shown, "info")
        if self.report is not None:
            self.folder_edit.setText(self.report.root)

    def _on_scan_finished(self, token: int) -> None:
        if token == self._scan_token:
            self.busy_indicator.stop()
            self._scan_task = None

    # -- showing a report ----------------------------------------------------------------------
    def _show_report(self, report: Any) -> None:
        self.report = report
        self.folder_edit.setText(report.root)
        self.empty.hide()
        self.results.show()
        counts = [int(report.counts.get(c, 0)) for c in report.classes]
        sizes = report.image_size_range or {}
        size_text = ""
        if sizes.get("min_width"):
            size_text = (f" · sizes from {sizes['min_width']}×{sizes['min_height']} to "
                         f"{sizes['max_width']}×{sizes['max_height']} pixels")
        layout = " (already split into train/val folders)" if report.layout == "split" else ""
        self.summary_label.setText(
            f"<b>{_fmt_int(report.num_images)} images</b> in <b>{len(report.classes)} classes</b>{layout}"
            f"{size_text} · largest class / smallest class: {report.imbalance:.1f}×")
        warnings = list(report.warnings)
        if warnings:
            self.warnings_label.setText("\n".join(f"⚠  {_sentence(w)}" for w in warnings))
            self.warnings_frame.show()
        else:
            self.warnings_label.clear()
            self.warnings_frame.hide()
        self._fill_class_table(report, counts)
        self._fill_chart(report, counts)
        self._fill_problems(report)
        self.gallery_class.blockSignals(True)
        self.gallery_class.clear()
        self.gallery_class.addItem(f"All classes ({_fmt_int(report.num_images)})", -1)
        for i, (c, n) in enumerate(zip(report.classes, counts, strict=True)):
            self.gallery_class.addItem(f"{c} ({_fmt_int(n)})", i)
        self.gallery_class.blockSignals(False)
        if self._thumbs is not None:
            self._thumbs.set_items([])
        if self.tabs.currentIndex() == 1:
            self._fill_gallery()
        presplit = report.layout == "split"
        for w in (self.val_spin, self.test_spin, self.seed_spin):
            w.setEnabled(not presplit)
        self.presplit_label.setVisible(presplit)

    def _fill_class_table(self, report: Any, counts: list[int]) -> None:
        table = self.class_table
        table.setSortingEnabled(False)
        table.setRowCount(len(report.classes))
        total = max(1, sum(counts))
        flags = under_represented(counts)
        warn_brush = theme.semantic_colors().warning
        for row, (name, n) in enumerate(zip(report.classes, counts, strict=True)):
            item = QTableWidgetItem(name)
            item.setData(Qt.ItemDataRole.UserRole, row)  # class index, survives sorting
            if flags[row]:
                item.setForeground(warn_brush)
                item.setToolTip(f"'{name}' has few images compared with the other classes")
            table.setItem(row, 0, item)
            table.setItem(row, 1, NumItem(_fmt_int(n), n))
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
        flags = under_represented(counts)
        self._chart.set_bars(report.classes, counts, flags)
        few = [c for c, f in zip(report.classes, flags, strict=True) if f]
        if few:
            names = ", ".join(f"'{c}'" for c in few[:6]) + (" …" if len(few) > 6 else "")
            self.chart_legend.setText(
                f"<span style='color:{theme.semantic_colors().warning.name()}'>■</span> Too few images compared with the largest class: "
                f"{names}. Add images to these classes if you can; training balances the classes either "
                "way.")
        else:
            self.chart_legend.setText("Images per class: the classes are reasonably balanced.")

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
        n = len(report.skipped)
        self.skipped_title.setText(
            f"<b>{n} file{'s' if n != 1 else ''} left out</b> — they are not used for training." if n
            else "No unreadable files: every image could be read.")
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
        d = len(report.duplicates)
        self.duplicates_title.setText(
            f"<b>{d} group{'s' if d != 1 else ''} of identical files</b> — each group is kept in the same "
            "split, so validation never sees a copy of a training image." if d
            else "No duplicate files.")
        problems = n + d
        self.tabs.setTabText(2, f"Problems ({problems})" if problems else "Problems")

    def _on_duplicate_double_clicked(self, item: QTreeWidgetItem, _col: int) -> None:
        path = item.data(0, Qt.ItemDataRole.UserRole)
        if path:
            self.reveal(path)

    # -- gallery -------------------------------------------------------------------------------
    def _on_tab_changed(self, index: int) -> None:
        if index == 1 and self.report is not None and (self._thumbs is None or
                                                       self._thumbs.rowCount() == 0):
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
        report = self.report
        class_index = self.gallery_class.currentData()
        if class_index is None:
            class_index = -1
        root = report.root
        if class_index < 0:
            rel = list(report.files)
        else:
            rel = [f for f, lab in zip(report.files, report.labels, strict=True) if lab == class_index]
        self._thumbs.set_items([os.path.join(root, f) for f in rel], rel)
        self.gallery_count.setText(f"{_fmt_int(len(rel))} images — double-click one to open it")

    # -- split ---------------------------------------------------------------------------------
    def _on_split_settings_changed(self) -> None:
        if self._loading:
            return
        data = self.state.project.data
        data.val_split = round(self.val_spin.value() / 100, 4)
        data.test_split = round(self.test_spin.value() / 100, 4)
        data.seed = int(self.seed_spin.value())
        if data.val_split + data.test_split >= 0.95:
            self.banner.show_message("Validation and test together take almost every image: leave at least "
                                     "5 % for training.", "warning")
            return
        self.state.mark_changed("data")
        if self.report is not None:
            self.split_counts_label.setText("Splitting…")
            self._split_timer.start()  # debounced: spinning the value does not split every step

    def _start_split(self) -> None:
        if self.report is None:
            return
        if self._split_task is not None:
            self._split_task.cancel()
        self._split_token += 1
        token = self._split_token
        data = self.state.project.data
        self._split_task = run_task(
            split_dataset, self.report, data.val_split, data.test_split, data.seed, name="split",
            pass_control=False,
            on_result=lambda r: self._on_split_result(token, r),
            on_error=lambda m, tb: self._on_split_error(token, m),
        )

    def _on_split_result(self, token: int, result: tuple) -> None:
        if token != self._split_token or self.report is None:
            return
        split, per_class = result
        self._set_split(split, per_class)
        data = self.state.project.data
        if data.split != split:
            data.split = split
            self.state.mark_changed("data")

    def _on_split_error(self, token: int, message: str) -> None:
        if token == self._split_token:
            self.split_counts_label.setText("—")
            self.banner.show_message(f"Could not split the dataset: {message}", "error")

    def _set_split(self, split: dict[str, list[str]], per_class: dict[str, list[int]]) -> None:
        self.split = split
        self.split_counts = per_class
        parts = [("train", "training"), ("val", "validation"), ("test", "test")]
        texts = [f"{_fmt_int(len(split.get(k, [])))} {label}" for k, label in parts
                 if k != "test" or split.get("test")]
        self.split_counts_label.setText(" · ".join(texts))
        table = self.class_table
        table.setSortingEnabled(False)
        for row in range(table.rowCount()):
            ci = table.item(row, 0).data(Qt.ItemDataRole.UserRole)
            for col, key in ((3, "train"), (4, "val"), (5, "test")):
                n = per_class.get(key, [0] * (ci + 1))[ci] if key in per_class else 0
                table.setItem(row, col, NumItem(_fmt_int(n), n))
        table.setColumnHidden(5, not split.get("test"))
        table.setSortingEnabled(True)
        val_counts = per_class.get("val", [])
        warn = []
        if self.report is not None and len(val_counts) == len(self.report.classes):
            warn = [c for c, n in zip(self.report.classes, val_counts, strict=True) if n == 0]
        if warn:
            self.split_counts_label.setText(self.split_counts_label.text() + "<br>⚠ no validation image for "
                                            + ", ".join(f"'{c}'" for c in warn[:5]))

    # -- the project ---------------------------------------------------------------------------
    def _apply_to_project(self, report: Any, split: dict[str, list[str]], *, restoring: bool) -> None:
        project = self.state.project
        data = project.data
        changed = False
        had_split = data.split is not None
        keep_saved = (restoring and data.split is not None and os.path.normpath(data.root)
                      == os.path.normpath(report.root) and data.classes == list(report.classes)
                      and set().union(*map(set, data.split.values())) <= set(report.files))
        if keep_saved:
            # The opened project's frozen split still matches the folder: keep it exactly.
            if data.split != split:
                self._set_split(data.split, split_class_counts(report, data.split))
        else:
            new = {"root": report.root, "classes": list(report.classes), "split": split,
                   "val_split": round(self.val_spin.value() / 100, 4),
                   "test_split": round(self.test_spin.value() / 100, 4), "seed": int(self.seed_spin.value())}
            changed_keys = []
            for key, value in new.items():
                if getattr(data, key) != value:
                    setattr(data, key, value)
                    changed_keys.append(key)
            changed = bool(changed_keys)
            if restoring and changed and had_split:
                self.banner.show_message("The dataset folder changed since the project was saved, so it "
                                         "was split again.", "info")
            # Opening a project that never stored its split (the sample, a hand-written file): the
            # split is derived from the files and the seed, the same on every open, so filling it in
            # is not an edit to ask about on close. It is saved with the project's next save.
            derived_only = restoring and not had_split and set(changed_keys) <= {"split", "classes"}
            if derived_only:
                self.state.projectChanged.emit("data")
                changed = False
        if changed:
            self.state.mark_changed("data")
        self._update_head(len(report.classes))

    def _update_head(self, num_classes: int) -> None:
        """A head replaced for the old dataset must predict the new dataset's classes (``core.head``,
        imported by the scan's worker thread)."""
        change = import_core("head").match_head(self.state.project, num_classes, add=False)
        if change is not None:
            self.state.mark_changed("surgery")
            notice = (f"The model's new output layer now predicts {num_classes} classes (it had "
                      f"{int(change.previous or 0)}) to match this dataset.")
            if self.banner.level() == "info" and self.banner.text():
                notice = self.banner.text() + " " + notice
            self.banner.show_message(notice, "info")

    def _load_from_project(self) -> None:
        """Fill the widgets from ``state.project`` (new/open) and re-read the project's dataset."""
        self._split_timer.stop()
        if self._scan_task is not None:
            self._scan_task.cancel()
            self._scan_token += 1  # ignore whatever the old scan reports
            self.busy_indicator.stop()
            self._scan_task = None
        data = self.state.project.data
        self._loading = True
        try:
            self.val_spin.setValue(round(data.val_split * 100))
            self.test_spin.setValue(round(data.test_split * 100))
            self.seed_spin.setValue(int(data.seed))
        finally:
            self._loading = False
        self.banner.clear()
        self.folder_edit.setText(data.root)
        scan = self.state.scan
        if scan is not None and data.root and os.path.normpath(scan.root) == os.path.normpath(data.root):
            self._show_report(scan)
            split = data.split or {}
            self._set_split(split, split_class_counts(scan, split))
            return
        self.report = None
        self.split = None
        self.results.hide()
        self.empty.show()
        if data.root:
            if Path(data.root).is_dir():
                self._start_scan(data.root, verify=None, restoring=True)
            else:
                self.banner.show_message(f"The project's dataset folder {data.root} no longer exists. "
                                         "Choose its new location.", "error")

    def _on_project_changed(self, section: str) -> None:
        if section != "data" or self._loading:
            return
        data = self.state.project.data
        if (round(data.val_split * 100), round(data.test_split * 100), data.seed) != (
                self.val_spin.value(), self.test_spin.value(), self.seed_spin.value()):
            self._loading = True
            try:
                self.val_spin.setValue(round(data.val_split * 100))
                self.test_spin.setValue(round(data.test_split * 100))
                self.seed_spin.setValue(int(data.seed))
            finally:
                self._loading = False

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

