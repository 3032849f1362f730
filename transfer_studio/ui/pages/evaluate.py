"""Evaluate page: how well a trained model does on images it did not train on.

The user picks a run of the project (default: the latest), or any run / exported bundle folder, and
the images: the run's own test split when it has one, else its validation split (flagged as
optimistic: that split also chose the best epoch), or another folder of labelled images.
``core.metrics.evaluate`` runs on a worker thread (progress, cancel); the page then shows overall
accuracy (top-5 with >= 5 classes), a per-class precision / recall / F1 / support table, an
interactive confusion matrix (hover: counts; click: that cell's images as thumbnails, decoded on a
thread pool) and the most confidently wrong images with their true and predicted labels.

Page state in the project: ``project.ui.evaluate_run`` (the source folder) and
``project.ui.evaluate_data`` (another folder, or None for the run's own split). The source follows
the Train page's new run (``AppState.runSelected``) and the Runs page's request
(``evaluateRequested``). Reports are kept per source, data folder and
weights-file time, so switching back and forth does not evaluate again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.core.runs import norm_path
from transfer_studio.ui import theme
from transfer_studio.ui.models.evaluate_model import EvaluateModel, report_texts, run_evaluation
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import BusyIndicator, EmptyState, MessageBanner
from transfer_studio.ui.widgets.gallery import caption_model_class, gallery_view
from transfer_studio.ui.widgets.heading import page_heading
from transfer_studio.ui.widgets.num_item import NumItem
from transfer_studio.ui.widgets.run_chooser import RunCombo, browse_start, default_run
from transfer_studio.ui.worker import TaskHandle, run_task, wait_for_tasks

THUMB = 84


# -- small widgets ---------------------------------------------------------------------------------
def _stat(title: str, name: str) -> tuple[QFrame, QLabel]:
    card = QFrame()
    card.setProperty("card", True)
    lay = QVBoxLayout(card)
    lay.setContentsMargins(12, 8, 12, 8)
    lay.setSpacing(0)
    value = QLabel("–")
    value.setObjectName(name)
    value.setProperty("role", "heading")
    caption = QLabel(title)
    caption.setProperty("role", "muted")
    lay.addWidget(value)
    lay.addWidget(caption)
    return card, value


# -- the page --------------------------------------------------------------------------------------
class EvaluatePage(QWidget):
    TITLE = "Evaluate"

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_evaluate")
        self.state = state
        self._extra_sources: list[str] = []
        self._loading = False
        self._cell_model: Any = None
        self._wrong_model: Any = None
        self.model = EvaluateModel(state, run_task, source=lambda: self.source_combo.current_path(),
                                   data_folder=self.data_folder, folder_chosen=lambda: self.folder_radio.isChecked(),
                                   has_sources=lambda: self.source_combo.count() > 0)
        self._build()
        self._bind_model()
        state.projectReplaced.connect(self._load_from_project)
        state.projectChanged.connect(self._on_project_changed)
        state.runSelected.connect(self._show_run)  # a run just finished on the Train page: follow it
        state.evaluateRequested.connect(self._show_run)  # the Runs page asks for one
        self._load_from_project()

    # -- construction ----------------------------------------------------------------------------
    def _build(self) -> None:
        title, hint = page_heading(
            "Evaluate",
            "How well does the trained model do on images it did not learn from? Hover the "
            "confusion matrix for counts; click a cell to see its images.")

        self.source_combo = RunCombo(object_name="evaluate_source")
        self.source_combo.setAccessibleName("Model to evaluate")
        self.source_combo.currentIndexChanged.connect(self._on_source_changed)
        self.browse_button = QPushButton("Other run or bundle…")
        self.browse_button.setObjectName("evaluate_browse")
        self.browse_button.setToolTip("Evaluate a training-run folder or an exported bundle folder")
        self.browse_button.clicked.connect(self._browse_source)

        self.own_split_radio = QRadioButton("The run's own test images (else its validation images)")
        self.own_split_radio.setObjectName("evaluate_own_split")
        self.folder_radio = QRadioButton("Another folder:")
        self.folder_radio.setObjectName("evaluate_other_folder")
        group = QButtonGroup(self)
        group.addButton(self.own_split_radio)
        group.addButton(self.folder_radio)
        self.own_split_radio.setChecked(True)
        self.own_split_radio.toggled.connect(self._on_data_choice)
        self.folder_edit = QLineEdit()
        self.folder_edit.setObjectName("evaluate_folder")
        self.folder_edit.setPlaceholderText("Folder with one sub-folder per class…")
        self.folder_edit.editingFinished.connect(self._on_data_choice)
        self.folder_button = QPushButton("Choose…")
        self.folder_button.setObjectName("evaluate_choose_folder")
        self.folder_button.clicked.connect(self._choose_folder)
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setObjectName("evaluate_start")
        self.evaluate_button.setProperty("primary", True)
        self.evaluate_button.setIcon(theme.icon("evaluate"))
        self.evaluate_button.clicked.connect(lambda: self.evaluate())

        form = QGridLayout()
        form.setHorizontalSpacing(8)
        form.addWidget(QLabel("Model:"), 0, 0)
        form.addWidget(self.source_combo, 0, 1, 1, 3)
        form.addWidget(self.browse_button, 0, 4)
        form.addWidget(QLabel("Images:"), 1, 0)
        form.addWidget(self.own_split_radio, 1, 1, 1, 4)
        form.addWidget(self.folder_radio, 2, 1)
        form.addWidget(self.folder_edit, 2, 2, 1, 2)
        form.addWidget(self.folder_button, 2, 4)
        form.addWidget(self.evaluate_button, 0, 5, 3, 1, Qt.AlignmentFlag.AlignVCenter)
        form.setColumnStretch(2, 1)

        self.busy_indicator = BusyIndicator(object_name="evaluate_busy")
        self.banner = MessageBanner(object_name="evaluate_banner")

        # Summary.
        acc_card, self.accuracy_label = _stat("accuracy (top-1)", "evaluate_accuracy")
        self.top5_card, self.top5_label = _stat("top-5 accuracy", "evaluate_top5")
        img_card, self.images_label = _stat("images evaluated", "evaluate_images")
        f1_card, self.macro_f1_label = _stat("mean F1 over classes", "evaluate_macro_f1")
        self.split_label = QLabel()
        self.split_label.setObjectName("evaluate_split")
        self.split_label.setWordWrap(True)
        self.note_label = QLabel()
        self.note_label.setObjectName("evaluate_note")
        self.note_label.setWordWrap(True)
        summary = QHBoxLayout()
        for card in (acc_card, self.top5_card, f1_card, img_card):
            summary.addWidget(card)
        texts = QVBoxLayout()
        texts.addWidget(self.split_label)
        texts.addWidget(self.note_label)
        texts.addStretch(1)
        summary.addLayout(texts, 1)

        # Confusion matrix + the images of the clicked cell.
        from transfer_studio.ui.heatmap import ConfusionMatrixView
        from transfer_studio.ui.thumbnails import ThumbnailLoader

        self.matrix = ConfusionMatrixView(object_name="evaluate_matrix")
        self.matrix.cellClicked.connect(self.show_cell)
        self.cell_label = QLabel("Click a cell of the matrix to see its images.")
        self.cell_label.setObjectName("evaluate_cell_label")
        self.cell_label.setWordWrap(True)
        model_cls = caption_model_class()
        self._cell_model = model_cls(ThumbnailLoader(THUMB, threads=2, parent=self), self)
        self.cell_gallery = gallery_view(self._cell_model, "evaluate_cell_gallery", THUMB)
        self.cell_gallery.setMinimumHeight(THUMB + 56)
        left = QWidget()
        llay = QVBoxLayout(left)
        llay.setContentsMargins(0, 0, 0, 0)
        mtitle = QLabel("Confusion matrix")
        mtitle.setProperty("role", "subheading")
        llay.addWidget(mtitle)
        lsplit = QSplitter(Qt.Orientation.Vertical)
        lsplit.addWidget(self.matrix)
        cell_box = QWidget()
        cbl = QVBoxLayout(cell_box)
        cbl.setContentsMargins(0, 0, 0, 0)
        cbl.addWidget(self.cell_label)
        cbl.addWidget(self.cell_gallery, 1)
        lsplit.addWidget(cell_box)
        lsplit.setStretchFactor(0, 3)
        lsplit.setStretchFactor(1, 2)
        lsplit.setChildrenCollapsible(False)
        lsplit.setSizes([420, 200])  # the matrix first; its images below
        llay.addWidget(lsplit, 1)

        # Per-class table and the most confidently wrong images.
        self.class_table = QTableWidget(0, 5)
        self.class_table.setObjectName("evaluate_class_table")
        self.class_table.setAccessibleName("Per-class metrics")
        self.class_table.setHorizontalHeaderLabels(["Class", "Precision", "Recall", "F1", "Support"])
        self.class_table.verticalHeader().setVisible(False)
        self.class_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.class_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.class_table.setAlternatingRowColors(True)
        header = self.class_table.horizontalHeader()
        header.setSortIndicator(0, Qt.SortOrder.AscendingOrder)  # class order until the user sorts
        self.class_table.setSortingEnabled(True)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, 5):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.class_table.setToolTip("Precision: of the images predicted as this class, the share that are.\n"
                                    "Recall: of the images of this class, the share found.\n"
                                    "F1: their harmonic mean. Support: images of this class.")
        self._wrong_model = model_cls(ThumbnailLoader(THUMB, threads=2, parent=self), self)
        self.wrong_gallery = gallery_view(self._wrong_model, "evaluate_wrong_gallery", THUMB)
        wrong_box = QWidget()
        wl = QVBoxLayout(wrong_box)
        wl.setContentsMargins(4, 4, 4, 4)
        self.wrong_label = QLabel()
        self.wrong_label.setObjectName("evaluate_wrong_label")
        self.wrong_label.setWordWrap(True)
        wl.addWidget(self.wrong_label)
        wl.addWidget(self.wrong_gallery, 1)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("evaluate_tabs")
        self.tabs.addTab(self.class_table, "Per class")
        self.tabs.addTab(wrong_box, "Most confidently wrong")

        results_split = QSplitter(Qt.Orientation.Horizontal)
        results_split.setObjectName("evaluate_splitter")
        results_split.addWidget(left)
        results_split.addWidget(self.tabs)
        results_split.setStretchFactor(0, 3)
        results_split.setStretchFactor(1, 2)
        results_split.setChildrenCollapsible(False)
        results = QWidget()
        rl = QVBoxLayout(results)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addLayout(summary)
        rl.addWidget(results_split, 1)

        self.empty = EmptyState("evaluate", "", "", object_name="evaluate_empty")
        self.empty.add_action("Go to Train", lambda: self.state.navigateRequested.emit("train"),
                                    object_name="evaluate_go_train")
        self.results_stack = QStackedWidget()
        self.results_stack.addWidget(self.empty)
        self.results_stack.addWidget(results)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 12, 16, 12)
        lay.setSpacing(8)
        lay.addWidget(title)
        lay.addWidget(hint)
        lay.addLayout(form)
        lay.addWidget(self.busy_indicator)
        lay.addWidget(self.banner)
        lay.addWidget(self.results_stack, 1)

    # -- project state ---------------------------------------------------------------------------
    def _load_from_project(self) -> None:
        self._loading = True
        try:
            self._refill_sources(default_run(self.state.project, "evaluate_run"))
            data = self.state.project.ui.evaluate_data or ""
            self.folder_edit.setText(str(data))
            (self.folder_radio if data else self.own_split_radio).setChecked(True)
        finally:
            self._loading = False
        self.model.refresh()

    def _refill_sources(self, current: str | None) -> None:
        self.source_combo.fill(self.state.project, current, self._extra_sources)
        self._update_enabled()

    def _on_project_changed(self, section: str) -> None:
        if section == "runs":
            current = self.source_combo.current_path()
            known = {norm_path(r.run_dir) for r in self.state.project.runs}
            known |= {norm_path(p) for p in self._extra_sources}
            if not current or norm_path(current) not in known:  # e.g. deleted on the Runs page
                current = default_run(self.state.project, "evaluate_run")
            self._loading = True
            try:
                self._refill_sources(current)
            finally:
                self._loading = False
            self.model.refresh()

    def _show_run(self, wanted: str) -> None:
        """Show this run (``runSelected``, ``evaluateRequested``), evaluated at once when the page is shown."""
        current = self.source_combo.current_path()
        if wanted and (current is None or norm_path(wanted) != norm_path(current)):
            self._loading = True
            try:
                self._refill_sources(wanted)
            finally:
                self._loading = False
            self.model.remember_source()
            self.model.refresh()
            if self.isVisible():
                self.model.maybe_auto_evaluate()

    def _on_source_changed(self, _index: int) -> None:
        if self._loading:
            return
        self.model.remember_source()
        self.model.refresh()
        if self.isVisible():
            self.model.maybe_auto_evaluate()

    def _on_data_choice(self, *_: Any) -> None:
        if self._loading:
            return
        self.model.remember_data_folder(self.folder_edit.text().strip() if self.folder_radio.isChecked() else "")
        self._update_enabled()
        self.model.refresh()

    def _browse_source(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a training run or an exported bundle folder",
                                                browse_start(self.state.path, self.source_combo.current_path()))
        if path:
            self.set_source(path)

    def set_source(self, path: str) -> None:
        """Evaluate another run or bundle folder (added to the list)."""
        if norm_path(path) not in {norm_path(p) for p in self._extra_sources}:
            self._extra_sources.append(path)
        self._refill_sources(path)
        self._on_source_changed(self.source_combo.currentIndex())

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of labelled images (one sub-folder per class)",
                                                  self.folder_edit.text() or str(Path.home()))
        if folder:
            self.set_data_folder(folder)

    def set_data_folder(self, folder: str | None) -> None:
        """Evaluate on ``folder`` (None: the run's own split)."""
        self._loading = True
        try:
            self.folder_edit.setText(folder or "")
            (self.folder_radio if folder else self.own_split_radio).setChecked(True)
        finally:
            self._loading = False
        self._on_data_choice()

    def data_folder(self) -> str | None:
        if self.folder_radio.isChecked():
            return self.folder_edit.text().strip() or None
        return None

    def _update_enabled(self) -> None:
        running = self.model.busy()
        self.evaluate_button.setEnabled(self.model.can_evaluate())
        self.source_combo.setEnabled(not running)
        self.browse_button.setEnabled(not running)
        self.folder_edit.setEnabled(self.folder_radio.isChecked())
        self.folder_button.setEnabled(True)

    # -- evaluation (the model's) ------------------------------------------------------------------
    def _bind_model(self) -> None:
        m = self.model
        m.message.connect(self._show_message)
        m.messageCleared.connect(self.banner.clear)
        m.busyStarted.connect(lambda label, job: self.busy_indicator.start(label, handle=job))
        m.busyStopped.connect(self.busy_indicator.stop)
        m.enabledChanged.connect(self._update_enabled)
        m.reportShown.connect(self.show_report)
        m.emptyShown.connect(self._show_empty)

    @property
    def report(self) -> Any:
        """The ``core.metrics.EvalReport`` shown, or None."""
        return self.model.report

    def busy_now(self) -> bool:
        return self.model.busy()

    def busy(self) -> bool:
        return self.model.busy()

    def evaluate(self) -> TaskHandle | None:
        """Start evaluating the chosen source on the chosen images (cancels one in progress)."""
        return self.model.evaluate()  # type: ignore[return-value]

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.model.maybe_auto_evaluate()

    def _show_message(self, text: str, level: str, details: str, offer_folder: bool) -> None:
        self.banner.show_message(text, level, details=details or None,
                                 action_text="Choose a folder…" if offer_folder else None,
                                 action=self._choose_folder if offer_folder else None)

    def _show_empty(self, title: str, text: str, actions_visible: bool) -> None:
        self.empty.set_content(title, text, "evaluate")
        self.empty.set_actions_visible(actions_visible)
        self.results_stack.setCurrentIndex(0)

    # -- showing a report ------------------------------------------------------------------------
    def show_report(self, report: Any) -> None:
        texts = report_texts(report)
        self.results_stack.setCurrentIndex(1)
        self.accuracy_label.setText(texts.accuracy)
        self.top5_card.setVisible(texts.top5 is not None)
        self.top5_label.setText(texts.top5 or "–")
        self.images_label.setText(texts.images)
        self.macro_f1_label.setText(texts.macro_f1)
        self.split_label.setText(texts.split)
        self.split_label.setToolTip(report.data_root)
        if texts.optimistic:
            colour = theme.semantic_colors(theme.is_dark(self.palette())).warning.name()
            self.note_label.setText(f"<span style='color:{colour}'>⚠ Validation figures are optimistic:</span> "
                                    + texts.note)
        else:
            self.note_label.setText(texts.note)
        self.note_label.setVisible(bool(self.note_label.text()))
        self.matrix.set_matrix(report.confusion_matrix, report.classes)
        self._fill_class_table(report)
        self._wrong_model.set_captioned([w.path for w in report.worst], texts.wrong_captions, texts.wrong_tips)
        self.wrong_label.setText(texts.wrong)
        self._cell_model.set_captioned([], [], [])
        self.cell_label.setText("Click a cell of the matrix to see its images.")

    def _fill_class_table(self, report: Any) -> None:
        t = self.class_table
        t.setSortingEnabled(False)
        t.setRowCount(len(report.classes))
        for row, name in enumerate(report.classes):
            m = report.per_class[name]
            t.setItem(row, 0, QTableWidgetItem(name))
            t.setItem(row, 1, NumItem(f"{m.precision:.3f}", m.precision))
            t.setItem(row, 2, NumItem(f"{m.recall:.3f}", m.recall))
            t.setItem(row, 3, NumItem(f"{m.f1:.3f}", m.f1))
            t.setItem(row, 4, NumItem(f"{m.support:,}", m.support))
        t.setSortingEnabled(True)

    def show_cell(self, true: int, predicted: int) -> None:
        """List the images of one confusion-matrix cell (thumbnails decode off the GUI thread)."""
        cell = self.model.cell(true, predicted)
        if cell is None:
            return
        if self.matrix.selected_cell() != (true, predicted):
            self.matrix.select_cell(true, predicted, emit=False)
        self._cell_model.set_captioned(cell.paths, cell.captions, cell.tips)
        self.cell_label.setText(cell.text)

    def gallery_paths(self, which: str = "cell") -> list[str]:
        model = self._cell_model if which == "cell" else self._wrong_model
        return [model.path(r) for r in range(model.rowCount())]

    # -- page protocol ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        wait_for_tasks([self.model.job])  # type: ignore[list-item]
        for model in (self._cell_model, self._wrong_model):
            if model is not None:
                model.loader.shutdown()


__all__ = ["EvaluatePage", "run_evaluation"]
