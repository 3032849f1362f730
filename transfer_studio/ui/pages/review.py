"""Review labels page: the images whose labels look wrong, most doubtful first, corrected by keyboard.

The page renders ``ReviewModel`` (``ui.models.review_model``: the state, the decisions, the jobs) and
forwards the user's keys and clicks to it. Left: the ranked list (given label, suggestion, how sure
the probes are of the given label, the decision). Right: a large preview of the current image (its
near-duplicate beside it when there is one), why it is listed, and the decision buttons. Below: what
applying would change, and the corrections made so far (from the label journal, so they can be
undone after a restart too).

Keys (while the page has focus): A accept the suggestion, K keep the label, S set aside, 1-9 another
class, Backspace clear, Up/Down or J/L move, Ctrl+Return apply.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.ui.models.review_model import ACCEPT, ASIDE, KEEP, ReviewModel
from transfer_studio.ui.state import AppState
from transfer_studio.ui.thumbnails import BROKEN, ThumbnailLoader
from transfer_studio.ui.widgets import BusyIndicator, EmptyState, MessageBanner
from transfer_studio.ui.widgets.heading import page_heading

COLUMNS = ("#", "Image", "Label", "Suggested", "Sure of label", "Decision")
PREVIEW = 360  # px: the large preview's box
KEYS_HINT = ("Keys: <b>A</b> accept the suggestion · <b>K</b> keep · <b>S</b> set aside · <b>1–9</b> another "
             "class · <b>Backspace</b> clear · <b>↑/↓</b> move · <b>Ctrl+Return</b> apply")


class _Picture(QLabel):
    """A picture scaled to fit the label's room, whatever the room (the pixmap never sizes the label)."""

    def __init__(self, name: str):
        super().__init__()
        self.setObjectName(name)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.source = QPixmap()

    def show_pixmap(self, pix: QPixmap) -> None:
        self.source = pix
        self.setText("")
        self._fit()

    def show_text(self, text: str) -> None:
        self.source = QPixmap()
        self.setPixmap(QPixmap())
        self.setText(text)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        if not self.source.isNull() and self.width() > 0 and self.height() > 0:
            self.setPixmap(self.source.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                              Qt.TransformationMode.SmoothTransformation))


class ReviewPage(QWidget):
    TITLE = "Review labels"

    def __init__(self, state: AppState, parent: QWidget | None = None, *, run_job: Any = None):
        super().__init__(parent)
        self.setObjectName("page_review")
        self.state = state
        if run_job is None:
            from transfer_studio.ui.worker import run_task as run_job
        self.model = ReviewModel(state, run_job)
        self.loader = ThumbnailLoader(PREVIEW, cache_size=64, threads=1, parent=self)
        self.loader.thumbnailReady.connect(self._on_preview_ready)
        self._filling = False
        self._build()
        m = self.model
        m.changed.connect(self._render)
        m.busy.connect(self._on_busy)
        m.progress.connect(self.busy_bar.set_progress)
        m.message.connect(self._on_message)
        state.projectReplaced.connect(self._on_project_replaced)
        state.scanChanged.connect(self._on_scan_changed)
        self._render()

    # -- construction ----------------------------------------------------------------------------
    def _build(self) -> None:
        title, hint = page_heading(
            "Review labels",
            "Images whose labels look wrong, most doubtful first: each image is scored by linear probes "
            "on the network's features that never saw it. Decide for each one, then apply: files move "
            "into their new class folder (set aside: into _set_aside inside the data folder), and every "
            "correction can be undone, also after a restart.")
        self.check_button = QPushButton("Check labels")
        self.check_button.setObjectName("review_check")
        self.check_button.setToolTip("One pass of the network over every image, then out-of-fold probes")
        self.check_button.clicked.connect(self.model.start_check)
        self.busy_bar = BusyIndicator(object_name="review_busy")
        self.busy_bar.cancelRequested.connect(self.model.cancel)
        self.banner = MessageBanner(object_name="review_banner")
        top = QHBoxLayout()
        top.addWidget(self.check_button)
        top.addWidget(self.busy_bar, 1)
        top.addStretch(0)

        self.empty = EmptyState("search", "No label check yet",
                                "Check the labels of the project's data folder: the network looks at every "
                                "image once (features already computed for training are reused).",
                                object_name="review_empty")
        self.empty.add_action("Check labels", self.model.start_check, object_name="review_empty_check")

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("review_table")
        self.table.setAccessibleName("Images to review, most doubtful first")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.currentCellChanged.connect(lambda row, *_: self._on_row(row))

        # The current image: preview, its near-duplicate, why it is listed, the decisions.
        self.preview = _Picture("review_preview")
        self.preview.setMinimumSize(200, 200)
        self.twin = _Picture("review_twin")
        self.twin.setFixedSize(140, 140)
        self.twin_caption = QLabel()
        self.twin_caption.setProperty("role", "muted")
        self.twin_caption.setWordWrap(True)
        self.twin_caption.setMaximumWidth(140)
        twin_box = QVBoxLayout()
        twin_box.addWidget(self.twin)
        twin_box.addWidget(self.twin_caption)
        twin_box.addStretch(1)
        self.twin_widget = QWidget()
        self.twin_widget.setLayout(twin_box)
        pictures = QHBoxLayout()
        pictures.addWidget(self.preview, 1)
        pictures.addWidget(self.twin_widget)

        self.file_label = QLabel()
        self.file_label.setObjectName("review_file")
        self.file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.labels_label = QLabel()
        self.labels_label.setObjectName("review_labels")
        self.labels_label.setProperty("role", "subheading")
        self.reason_label = QLabel()
        self.reason_label.setObjectName("review_reason")
        self.reason_label.setWordWrap(True)
        self.reason_label.setProperty("role", "muted")

        self.accept_button = self._button("Accept suggestion (A)", "review_accept", lambda: self._decide(ACCEPT))
        self.keep_button = self._button("Keep label (K)", "review_keep", lambda: self._decide(KEEP))
        self.aside_button = self._button("Set aside (S)", "review_aside", lambda: self._decide(ASIDE))
        self.class_combo = QComboBox()
        self.class_combo.setObjectName("review_class")
        self.class_combo.setToolTip("Give the image another class (keys 1-9: the class with that number)")
        self.class_combo.activated.connect(self._on_class_chosen)
        decide = QGridLayout()
        decide.addWidget(self.accept_button, 0, 0)
        decide.addWidget(self.keep_button, 0, 1)
        decide.addWidget(self.aside_button, 1, 0)
        decide.addWidget(self.class_combo, 1, 1)
        detail = QVBoxLayout()
        detail.addLayout(pictures, 1)
        detail.addWidget(self.file_label)
        detail.addWidget(self.labels_label)
        detail.addWidget(self.reason_label)
        detail.addLayout(decide)
        self.keys_label = QLabel(KEYS_HINT)
        self.keys_label.setObjectName("review_keys")
        self.keys_label.setProperty("role", "muted")
        self.keys_label.setWordWrap(True)
        detail.addWidget(self.keys_label)
        detail_widget = QWidget()
        detail_widget.setObjectName("review_detail")
        detail_widget.setLayout(detail)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(detail_widget)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)

        # What applying would change, and the corrections made so far.
        self.summary_label = QLabel()
        self.summary_label.setObjectName("review_summary")
        self.summary_label.setWordWrap(True)
        self.apply_button = self._button("Apply changes", "review_apply", self.model.apply)
        self.apply_button.setToolTip("Move the files (journalled first: every change can be undone) (Ctrl+Return)")
        self.history = QListWidget()
        self.history.setObjectName("review_history")
        self.history.setAccessibleName("Corrections made, newest first")
        self.history.setMaximumHeight(64)
        self.undo_button = self._button("Undo selected", "review_undo", self._undo_selected)
        self.undo_button.setToolTip("Put the images of the selected correction back (a new journal entry)")
        self.changes = changes = QGroupBox("Changes")
        changes.setObjectName("review_changes")
        grid = QGridLayout(changes)
        grid.addWidget(self.summary_label, 0, 0)
        grid.addWidget(self.apply_button, 0, 1)
        grid.addWidget(self.history, 1, 0)
        grid.addWidget(self.undo_button, 1, 1, Qt.AlignmentFlag.AlignTop)
        grid.setColumnStretch(0, 1)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 12, 16, 12)
        lay.addWidget(title)
        lay.addWidget(hint)
        lay.addLayout(top)
        lay.addWidget(self.banner)
        lay.addWidget(self.empty, 1)
        lay.addWidget(self.splitter, 1)
        lay.addWidget(changes)
        self._shortcuts()

    def _button(self, text: str, name: str, slot: Any) -> QPushButton:
        button = QPushButton(text)
        button.setObjectName(name)
        button.clicked.connect(lambda _checked=False: slot())
        return button

    def _shortcuts(self) -> None:
        ctx = Qt.ShortcutContext.WidgetWithChildrenShortcut
        keys: list[tuple[str, Any]] = [
            ("A", lambda: self._decide(ACCEPT)), ("K", lambda: self._decide(KEEP)),
            ("S", lambda: self._decide(ASIDE)), ("Backspace", self.model.clear_decision),
            ("J", lambda: self.model.step(1)), ("L", lambda: self.model.step(-1)),
            ("Ctrl+Return", self.model.apply), ("Ctrl+Enter", self.model.apply)]
        keys += [(str(n), lambda n=n: self.model.decide_class_number(n)) for n in range(1, 10)]
        self.shortcuts = []
        for key, slot in keys:
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(ctx)
            sc.activated.connect(slot)
            self.shortcuts.append(sc)

    # -- actions ---------------------------------------------------------------------------------
    def _decide(self, decision: str) -> None:
        self.model.decide(decision)

    def _on_class_chosen(self, index: int) -> None:
        name = self.class_combo.itemData(index)
        if name:
            self.model.decide(name)
        self.table.setFocus()

    def _undo_selected(self) -> None:
        item = self.history.currentItem()
        batch = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        self.model.undo(batch)

    def _on_row(self, row: int) -> None:
        if not self._filling and row >= 0:
            self.model.select(row)

    # -- model -> widgets ------------------------------------------------------------------------
    def _render(self) -> None:
        m = self.model
        has = bool(m.items) or m.result is not None
        self.empty.setVisible(not has)
        self.splitter.setVisible(has)
        self.changes.setVisible(has or bool(m.history_rows()))
        self.check_button.setVisible(has)  # the empty state has its own
        no_folder = m.can_check().startswith("Choose")
        self.empty.set_actions_visible(not no_folder)
        self.empty.set_content("No label check yet", "Choose a data folder on the Data page first." if no_folder else
                               "Check the labels of the project's data folder: the network looks at every image "
                               "once (features already computed for training are reused).")
        self.keys_label.setVisible(has)
        self._fill_table()
        self._fill_detail()
        self._fill_changes()
        why = m.can_check()
        self.check_button.setEnabled(not m.working and not why.startswith("Choose"))
        self.check_button.setText("Check again" if m.result is not None else "Check labels")
        self.check_button.setToolTip(why or "One pass of the network over every image, then out-of-fold probes")

    def _fill_table(self) -> None:
        m = self.model
        self._filling = True
        try:
            if self.table.rowCount() != len(m.items):
                self.table.setRowCount(len(m.items))
            for row, item in enumerate(m.items):
                cells = (str(item.rank), item.file, item.given, f"{item.suggested} ({item.suggested_probability:.0%})",
                         f"{item.self_confidence:.0%}", m.decision_text(item))
                for col, text in enumerate(cells):
                    cell = self.table.item(row, col)
                    if cell is None:
                        cell = QTableWidgetItem()
                        self.table.setItem(row, col, cell)
                    if cell.text() != text:
                        cell.setText(text)
                    if col == 1:
                        cell.setToolTip(item.reason())
                flagged = self.table.item(row, 0)
                flagged.setForeground(QColor("#c0392b") if item.flagged else self.palette().text().color())
            if 0 <= m.current < len(m.items) and self.table.currentRow() != m.current:
                self.table.setCurrentCell(m.current, 1)
                self.table.scrollToItem(self.table.item(m.current, 1))
        finally:
            self._filling = False

    def _fill_detail(self) -> None:
        m = self.model
        item = m.item()
        for w in (self.accept_button, self.keep_button, self.aside_button, self.class_combo):
            w.setEnabled(item is not None and not m.working)
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItem("Another class…", "")
        for n, name in enumerate(m.classes, 1):
            self.class_combo.addItem(f"{n}  {name}" if n <= 9 else name, name)
        self.class_combo.blockSignals(False)
        if item is None:
            self.preview.show_text("All reviewed." if m.result is not None else "")
            for w in (self.file_label, self.labels_label, self.reason_label):
                w.setText("")
            self.twin_widget.setVisible(False)
            return
        self.file_label.setText(item.file + (f"  ·  {item.part}" if item.part else ""))
        self.labels_label.setText(f"Labelled '{item.given}' · suggested '{item.suggested}' "
                                  f"({item.suggested_probability:.0%})")
        decision = m.decision_text(item)
        self.reason_label.setText(item.reason().capitalize() + "." + (f"  Decision: {decision}." if decision else ""))
        self.accept_button.setText(f"Accept '{item.suggested}' (A)")
        self.keep_button.setText(f"Keep '{item.given}' (K)")
        self._show_picture(self.preview, m.path(item))
        self.twin_widget.setVisible(bool(item.duplicate_of))
        if item.duplicate_of:
            self.twin_caption.setText(f"Near-duplicate: {item.duplicate_of[0]}")
            self._show_picture(self.twin, str(m.root) + "/" + item.duplicate_of[0])
        nxt = m.current + 1  # decode the next one ahead: the keyboard moves on at once
        if nxt < len(m.items):
            self.loader.request(m.path(m.items[nxt]))

    def _show_picture(self, label: _Picture, path: str) -> None:
        label.setProperty("path", path)
        pix = self.loader.cached(path)
        if pix is None:
            label.show_text("Loading…")
            self.loader.request(path)
        elif pix is BROKEN:
            label.show_text("This file cannot be read.")
        elif label.source.cacheKey() != pix.cacheKey():
            label.show_pixmap(pix)

    def _on_preview_ready(self, path: str) -> None:
        for label in (self.preview, self.twin):
            if label.property("path") == path:
                self._show_picture(label, path)

    def _fill_changes(self) -> None:
        m = self.model
        summary = m.summary()
        pending = len(m.corrections()) if m.decisions else 0
        self.summary_label.setText(summary or "Decide for the listed images, then apply.")
        self.apply_button.setEnabled(pending > 0 and not m.working)
        self.apply_button.setText(f"Apply {pending} change{'s' if pending != 1 else ''}" if pending
                                  else "Apply changes")
        self.history.clear()
        for batch_id, text, undoable in m.history_rows():
            row = QListWidgetItem(text)
            row.setData(Qt.ItemDataRole.UserRole, batch_id if undoable else None)
            if not undoable:
                row.setForeground(self.palette().placeholderText().color())
            self.history.addItem(row)
        self.history.setVisible(self.history.count() > 0)  # its room goes to the preview until then
        self.undo_button.setVisible(self.history.count() > 0)
        first = next((r for r in range(self.history.count())
                      if self.history.item(r).data(Qt.ItemDataRole.UserRole)), -1)
        self.history.setCurrentRow(first)
        self.undo_button.setEnabled(first >= 0 and not m.working)

    def _on_busy(self, busy: bool, text: str, cancellable: bool) -> None:
        if busy:
            self.busy_bar.start(text, cancellable=cancellable)
        else:
            self.busy_bar.stop()

    def _on_message(self, text: str, kind: str) -> None:
        level = {"info": "success" if text.startswith(("Done", "Undone")) else "info"}.get(kind, kind)
        self.banner.show_message(text, level)
        if kind != "error":
            self.state.status(text)

    def busy(self) -> bool:
        """A job of this page runs (the check, applying, undo)."""
        return self.model.working

    # -- app state -------------------------------------------------------------------------------
    def _on_project_replaced(self) -> None:
        self.model.reset()
        if self.isVisible():
            self.model.load_history()

    def _on_scan_changed(self, report: Any) -> None:
        m = self.model
        root = str(report.root) if report is not None else ""
        if m.root and root and root != m.root and not m.working:
            m.reset()  # another data folder: the check was of the old one
        if root and root != m.history_root and self.isVisible():
            QTimer.singleShot(0, m.load_history)

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if self.model.history_root != self.model.data_root():
            self.model.load_history()
        self.table.setFocus()

    def shutdown(self) -> None:
        from transfer_studio.ui.worker import wait_for_tasks

        self.model.shutdown()
        job = self.model.job
        wait_for_tasks([job] if job is not None else [])
        self.loader.shutdown()
