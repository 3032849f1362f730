"""The Model page's browser: the model zoo as a sortable, filterable Qt model, the panel with the
table, the details and the buttons, and the details panel's text."""

from __future__ import annotations

import re
from typing import Any

from PySide6.QtCore import QRegularExpression, QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.ui import theme
from transfer_studio.ui.models.model_text import missing_weights_text
from transfer_studio.ui.widgets import format_count

__all__ = ["COLUMNS", "CatalogFilter", "CatalogModel", "build_browser", "details_html", "make_rows",
           "missing_weights_text"]

COLUMNS = ("Name", "Offline", "Params", "Top-1", "GFLOPs", "Input", "Family")
OFFLINE_COL = 1


FILTER_ROLE = Qt.ItemDataRole.UserRole + 1  # column 0: "name family source offline|missing"


def make_rows(infos: list[Any], dark: bool) -> list[list[QStandardItem]]:
    """The table's items for ``infos``. Plain QStandardItems (not QObjects): safe to build on a
    worker thread and hand to the GUI thread, which then only appends them."""
    sem = theme.semantic_colors(dark)
    right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
    rows = []
    for info in infos:
        offline = info.weights_available_offline
        cells = [
            (info.name, info.name), ("✓" if offline else "✗", int(offline)),
            (format_count(info.params), info.params),
            ("–" if info.imagenet_top1 is None else f"{info.imagenet_top1:.1f}",
             info.imagenet_top1 if info.imagenet_top1 is not None else -1.0),
            ("–" if info.gflops is None else f"{info.gflops:.2f}", info.gflops if info.gflops is not None else -1.0),
            (str(info.input_size), info.input_size), (info.family, info.family),
        ]
        where = "bundled with the app" if info.source == "bundled" else "torchvision"
        tip = f"{info.name} ({where}) — weights {'available offline' if offline else 'not on this computer'}"
        row = []
        for col, (text, key) in enumerate(cells):
            item = QStandardItem(text)
            item.setEditable(False)
            item.setData(key, Qt.ItemDataRole.UserRole)
            item.setToolTip(tip)
            if col == OFFLINE_COL:
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            elif 2 <= col <= 5:
                item.setTextAlignment(right)
            row.append(item)
        row[OFFLINE_COL].setForeground(sem.success if offline else sem.error)
        row[OFFLINE_COL].setData("available offline" if offline else "not available offline",
                                 Qt.ItemDataRole.AccessibleTextRole)
        row[0].setData(f"{info.name} {info.family} {info.source} {'offline' if offline else 'missing'}".lower(),
                       FILTER_ROLE)
        rows.append(row)
    return rows


class CatalogModel(QStandardItemModel):
    """The catalog as plain Qt items, so the table never calls back into Python to paint, size or
    sort itself (each such call would wait for the GIL while a worker thread builds a model)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, len(COLUMNS), parent)
        self.infos: list[Any] = []
        self.setHorizontalHeaderLabels(list(COLUMNS))
        tips = ("Model name", "Pretrained weights on this computer", "Number of parameters",
                "ImageNet top-1 accuracy (%)", "Multiply-accumulates per 224 px image (billions)",
                "Default input size (px)", "Architecture family")
        for col, tip in enumerate(tips):
            self.horizontalHeaderItem(col).setToolTip(tip)

    def set_infos(self, infos: list[Any], rows: list[list[QStandardItem]] | None = None) -> None:
        """Fill the table; ``rows`` may come ready-made from ``make_rows`` on a worker thread."""
        self.infos = list(infos)
        self.removeRows(0, self.rowCount())
        for row in rows if rows is not None else make_rows(self.infos, theme.is_dark()):
            self.appendRow(row)

    def row_of(self, name: str) -> int:
        for i, info in enumerate(self.infos):
            if info.name == name:
                return i
        return -1


class CatalogFilter(QSortFilterProxyModel):
    """Every word of the search must appear in the name, family or source; optional offline filter.

    Done with a regular expression of look-aheads on a filter role, so filtering stays in C++.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.words: list[str] = []
        self.offline_only = False
        self.setSortRole(Qt.ItemDataRole.UserRole)
        self.setFilterRole(FILTER_ROLE)
        self.setFilterKeyColumn(0)

    def set_text(self, text: str) -> None:
        self.words = text.lower().split()
        self._apply()

    def set_offline_only(self, on: bool) -> None:
        self.offline_only = on
        self._apply()

    def _apply(self) -> None:
        parts = [f"(?=.*{re.escape(w)})" for w in self.words]
        if self.offline_only:
            parts.append(r"(?=.*\boffline\b)")
        self.setFilterRegularExpression(QRegularExpression("^" + "".join(parts),
                                                           QRegularExpression.PatternOption.DotMatchesEverythingOption))


def details_html(info: Any) -> str:
    from html import escape

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{v:.1f}%"

    pre = info.preprocess
    source = "bundled with Transfer Studio" if info.source == "bundled" else "torchvision"
    rows = [
        ("Family", escape(info.family)), ("Source", source),
        ("Parameters", f"{info.params:,} ({format_count(info.params)})"),
        ("GFLOPs", "–" if info.gflops is None else f"{info.gflops:.2f} per {info.input_size} px image"),
        ("ImageNet top-1 / top-5", f"{pct(info.imagenet_top1)} / {pct(info.imagenet_top5)}"),
        ("Input", f"{info.input_size} px (at least {info.min_size} px)"),
        ("Preprocessing", f"resize {pre.resize}, centre crop {pre.crop}, {pre.interpolation}; "
                          f"mean {tuple(round(m, 3) for m in pre.mean)}, std {tuple(round(s, 3) for s in pre.std)}"),
        ("Weights", escape(info.weights_name or "–")),
    ]
    table = "".join(f"<tr><td style='padding-right:10px'><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
    sem = theme.semantic_colors()
    if info.weights_available_offline:
        status = (f"<p style='color:{sem.success.name()}'>✓ Pretrained weights are on this computer"
                  + (f": <code>{escape(info.weights_file)}</code>" if info.weights_file else "") + "</p>")
    else:
        status = f"<p style='color:{sem.error.name()}'>✗ {escape(missing_weights_text(info))}</p>"
    return f"<h3 style='margin-bottom:4px'>{escape(info.name)}</h3><table>{table}</table>{status}"


def build_browser(page: Any) -> QWidget:
    """The browser panel; its widgets become the page's attributes (``search``, ``table``, ``details``,
    the buttons), the table showing ``page.proxy``."""
    page.search = QLineEdit()
    page.search.setObjectName("model_search")
    page.search.setPlaceholderText("Search models (name or family)…")
    page.search.setClearButtonEnabled(True)
    page.offline_only = QCheckBox("Offline only")
    page.offline_only.setObjectName("offline_only")
    page.offline_only.setToolTip("Show only models whose pretrained weights are on this computer")
    table = page.table = QTableView()
    table.setObjectName("model_table")
    table.setAccessibleName("Model catalog")
    table.setModel(page.proxy)
    table.setSortingEnabled(True)
    table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(22)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    hh = table.horizontalHeader()
    for col in range(len(COLUMNS)):
        hh.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
    hh.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)  # family: what is left
    hh.setMinimumSectionSize(36)
    page.details = QTextBrowser()
    page.details.setObjectName("model_details")
    page.details.setOpenExternalLinks(True)
    page.details.setMinimumHeight(150)
    page.details.setPlaceholderText("Reading the model catalog…")
    page.random_init = QCheckBox("Random init")
    page.random_init.setObjectName("random_init")
    page.random_init.setToolTip("Start from random weights instead of pretrained ones (no weights file needed)")
    page.load_button = QPushButton("Load")
    page.load_button.setObjectName("load_button")
    page.load_button.setProperty("primary", True)
    page.load_button.setToolTip("Use the selected model in this project")
    page.download_button = QPushButton("Download weights")
    page.download_button.setObjectName("download_button")
    page.open_weights_button = QPushButton("Open weights file…")
    page.open_weights_button.setObjectName("open_weights_button")
    page.open_weights_button.setToolTip("Load your own .pth / .pt / .safetensors state dict into the selected architecture")
    buttons = QHBoxLayout()
    buttons.addWidget(page.random_init)
    buttons.addStretch(1)
    for b in (page.open_weights_button, page.download_button, page.load_button):
        buttons.addWidget(b)
    head = QHBoxLayout()
    title = QLabel("Pretrained models")
    title.setProperty("role", "subheading")
    head.addWidget(title)
    head.addStretch(1)
    head.addWidget(page.offline_only)
    browser = QWidget()
    browser.setObjectName("model_browser")
    bl = QVBoxLayout(browser)
    bl.setContentsMargins(0, 0, 6, 0)
    bl.addLayout(head)
    bl.addWidget(page.search)
    vsplit = QSplitter(Qt.Orientation.Vertical)
    vsplit.setObjectName("browser_splitter")
    vsplit.addWidget(table)
    vsplit.addWidget(page.details)
    vsplit.setStretchFactor(0, 3)
    vsplit.setStretchFactor(1, 2)
    bl.addWidget(vsplit, 1)
    bl.addLayout(buttons)
    return browser
