"""The Data page's widgets (``ui.pages.data``): built here, bound to its model there."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
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
    QTabWidget,
    QToolButton,
    QTreeWidget,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.ui.models.data_model import SEED_MAX, TEST_RANGE, VAL_RANGE
from transfer_studio.ui.widgets import BusyIndicator, EmptyState, MessageBanner
from transfer_studio.ui.widgets.heading import page_heading

if TYPE_CHECKING:
    from transfer_studio.ui.pages.data import DataPage


def build(page: DataPage) -> None:
    """The page's widgets, connected to the page's methods."""
    root = QVBoxLayout(page)
    root.setContentsMargins(16, 12, 16, 12)
    root.setSpacing(8)

    title, hint = page_heading(
        "Data",
        "Choose a folder with one sub-folder per class (or train/ and val/ sub-folders that "
        "each hold the class folders). You can also drop a folder onto this page.")
    root.addWidget(title)
    root.addWidget(hint)

    row = QHBoxLayout()
    page.folder_edit = QLineEdit()
    page.folder_edit.setObjectName("data_folder")
    page.folder_edit.setPlaceholderText("Folder of images…")
    page.folder_edit.setClearButtonEnabled(True)
    page.folder_edit.returnPressed.connect(lambda: page.choose_folder(page.folder_edit.text()))
    page.choose_button = QPushButton("Choose folder…")
    page.choose_button.setObjectName("data_choose")
    page.choose_button.clicked.connect(page._choose_dialog)
    page.recent_button = QToolButton()
    page.recent_button.setObjectName("data_recent")
    page.recent_button.setText("Recent")
    page.recent_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    page.recent_menu = QMenu(page.recent_button)
    page.recent_menu.aboutToShow.connect(page._fill_recent_menu)
    page.recent_button.setMenu(page.recent_menu)
    page.rescan_button = QPushButton("Scan again")
    page.rescan_button.setObjectName("data_rescan")
    page.rescan_button.setToolTip("Read the folder again (after you added, removed or fixed files)")
    page.rescan_button.clicked.connect(lambda: page.choose_folder(page.folder_edit.text()))
    page.verify_check = QCheckBox("Decode every image")
    page.verify_check.setObjectName("data_verify")
    page.verify_check.setToolTip("Slower, but also finds images whose pixel data is corrupt")
    page.verify_check.toggled.connect(lambda on: setattr(page.model, "verify", on))
    row.addWidget(page.folder_edit, 1)
    row.addWidget(page.choose_button)
    row.addWidget(page.recent_button)
    row.addWidget(page.rescan_button)
    row.addWidget(page.verify_check)
    root.addLayout(row)

    page.busy_indicator = BusyIndicator(object_name="data_busy")
    page.busy_indicator.cancelRequested.connect(page.cancel_scan)
    root.addWidget(page.busy_indicator)

    page.banner = MessageBanner(object_name="data_message")
    page.banner.closed.connect(page.model.message_dismissed)
    root.addWidget(page.banner)

    page.empty = EmptyState(
        "data", "No dataset yet",
        "Choose a folder of images — for example photos/cat/…, photos/dog/… — or drop one on this page.",
        object_name="data_empty")
    page.empty.add_action("Choose folder…", page._choose_dialog, object_name="data_empty_choose",
                          primary=True)
    root.addWidget(page.empty, 1)

    page.results = QWidget()
    page.results.setObjectName("data_results")
    res = QVBoxLayout(page.results)
    res.setContentsMargins(0, 0, 0, 0)
    page.summary_label = QLabel()
    page.summary_label.setObjectName("data_summary")
    page.summary_label.setWordWrap(True)
    page.warnings_frame = QFrame()
    page.warnings_frame.setProperty("banner", "warning")  # style.qss colours it (both themes)
    wl = QVBoxLayout(page.warnings_frame)
    wl.setContentsMargins(10, 6, 10, 6)
    page.warnings_label = QLabel()
    page.warnings_label.setObjectName("data_warnings")
    wl.addWidget(page.warnings_label)
    page.warnings_label.setWordWrap(True)
    page.warnings_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    res.addWidget(page.summary_label)
    res.addWidget(page.warnings_frame)

    page.tabs = QTabWidget()
    page.tabs.setObjectName("data_tabs")
    page.tabs.addTab(_build_classes_tab(page), "Classes")
    page.tabs.addTab(_build_gallery_tab(page), "Images")
    page.tabs.addTab(_build_problems_tab(page), "Problems")
    page.tabs.currentChanged.connect(page._on_tab_changed)
    res.addWidget(page.tabs, 1)
    page.results.hide()
    root.addWidget(page.results, 1)

def _build_classes_tab(page: DataPage) -> QWidget:
    tab = QWidget()
    lay = QVBoxLayout(tab)
    splitter = QSplitter(Qt.Orientation.Horizontal)
    splitter.setChildrenCollapsible(False)
    page.class_table = QTableWidget(0, 6)
    page.class_table.setObjectName("data_class_table")
    page.class_table.setHorizontalHeaderLabels(["Class", "Images", "Share", "Train", "Validation", "Test"])
    page.class_table.verticalHeader().hide()
    page.class_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    page.class_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    page.class_table.setAlternatingRowColors(True)
    header = page.class_table.horizontalHeader()
    header.setSortIndicator(0, Qt.SortOrder.AscendingOrder)  # class order until the user sorts
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for c in range(1, 6):
        header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
    page.class_table.cellDoubleClicked.connect(page._show_class_images)
    page.class_table.setToolTip("Double-click a class to see its images")
    page.class_table.setMinimumWidth(320)
    splitter.addWidget(page.class_table)

    right = QWidget()
    page.chart_layout = QVBoxLayout(right)
    page.chart_layout.setContentsMargins(0, 0, 0, 0)
    page.chart_legend = QLabel()
    page.chart_legend.setObjectName("data_chart_legend")
    page.chart_legend.setWordWrap(True)
    page.chart_layout.addWidget(page.chart_legend)
    right.setMinimumWidth(300)
    splitter.addWidget(right)
    splitter.setStretchFactor(0, 4)
    splitter.setStretchFactor(1, 5)
    splitter.setSizes([400, 500])
    lay.addWidget(splitter, 1)
    lay.addWidget(_build_split_box(page))
    return tab

def _build_split_box(page: DataPage) -> QGroupBox:
    box = QGroupBox("Split into training / validation / test")
    box.setObjectName("data_split_box")
    row = QHBoxLayout(box)
    page.val_spin = QDoubleSpinBox()
    page.val_spin.setObjectName("data_val_split")
    page.val_spin.setRange(*VAL_RANGE)
    page.val_spin.setDecimals(0)
    page.val_spin.setSuffix(" %")
    page.val_spin.setToolTip("Share of each class held out to measure how well the model generalises")
    page.test_spin = QDoubleSpinBox()
    page.test_spin.setObjectName("data_test_split")
    page.test_spin.setRange(*TEST_RANGE)
    page.test_spin.setDecimals(0)
    page.test_spin.setSuffix(" %")
    page.test_spin.setSpecialValueText("none")
    page.test_spin.setToolTip("Optional: a share kept aside for a final, untouched evaluation")
    page.seed_spin = QSpinBox()
    page.seed_spin.setObjectName("data_seed")
    page.seed_spin.setRange(0, SEED_MAX)
    page.seed_spin.setToolTip("The same seed always gives the same split")
    for w in (page.val_spin, page.test_spin, page.seed_spin):
        w.valueChanged.connect(page._on_split_settings_changed)
    page.split_counts_label = QLabel("—")
    page.split_counts_label.setObjectName("data_split_counts")
    page.split_counts_label.setWordWrap(True)
    page.presplit_label = QLabel("This folder is already split into train/ and val/ folders; that "
                                 "split is used as it is.")
    page.presplit_label.setWordWrap(True)
    page.presplit_label.hide()
    for label, widget in (("Validation", page.val_spin), ("Test", page.test_spin), ("Seed", page.seed_spin)):
        row.addWidget(QLabel(label))
        row.addWidget(widget)
        row.addSpacing(12)
    row.addWidget(QLabel("→"))
    row.addWidget(page.split_counts_label, 1)
    row.addWidget(page.presplit_label, 1)
    return box

def _build_gallery_tab(page: DataPage) -> QWidget:
    tab = QWidget()
    lay = QVBoxLayout(tab)
    row = QHBoxLayout()
    row.addWidget(QLabel("Class"))
    page.gallery_class = QComboBox()
    page.gallery_class.setObjectName("data_gallery_class")
    page.gallery_class.setMinimumContentsLength(16)
    page.gallery_class.currentIndexChanged.connect(page._fill_gallery)
    page.gallery_count = QLabel()
    page.gallery_count.setObjectName("data_gallery_count")
    row.addWidget(page.gallery_class)
    row.addWidget(page.gallery_count, 1)
    lay.addLayout(row)
    page.gallery_holder = QVBoxLayout()
    lay.addLayout(page.gallery_holder, 1)
    page.gallery = None  # QListView, created on first use
    return tab

def _build_problems_tab(page: DataPage) -> QWidget:
    tab = QWidget()
    lay = QVBoxLayout(tab)
    splitter = QSplitter(Qt.Orientation.Vertical)
    top = QWidget()
    tl = QVBoxLayout(top)
    tl.setContentsMargins(0, 0, 0, 0)
    page.skipped_title = QLabel()
    tl.addWidget(page.skipped_title)
    page.skipped_table = QTableWidget(0, 2)
    page.skipped_table.setObjectName("data_skipped")
    page.skipped_table.setHorizontalHeaderLabels(["File", "Why it is left out"])
    page.skipped_table.verticalHeader().hide()
    page.skipped_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    page.skipped_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    page.skipped_table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)
    page.skipped_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    page.skipped_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
    page.skipped_table.setToolTip("Double-click to open the file's folder")
    page.skipped_table.cellDoubleClicked.connect(
        lambda r, _c: page.reveal(page.skipped_table.item(r, 0).data(Qt.ItemDataRole.UserRole)))
    tl.addWidget(page.skipped_table)
    splitter.addWidget(top)
    bottom = QWidget()
    bl = QVBoxLayout(bottom)
    bl.setContentsMargins(0, 0, 0, 0)
    page.duplicates_title = QLabel()
    bl.addWidget(page.duplicates_title)
    page.duplicates_tree = QTreeWidget()
    page.duplicates_tree.setObjectName("data_duplicates")
    page.duplicates_tree.setHeaderLabels(["Identical files"])
    page.duplicates_tree.setToolTip("Double-click a file to open its folder")
    page.duplicates_tree.itemDoubleClicked.connect(page._on_duplicate_double_clicked)
    bl.addWidget(page.duplicates_tree)
    splitter.addWidget(bottom)
    lay.addWidget(splitter)
    return tab
