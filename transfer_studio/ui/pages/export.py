"""Export page: write a trained run as files other programs load, and prove they match PyTorch.

The page binds widgets to ``ui.models.export_model.ExportModel``. The user picks a run (default: the
latest), the formats (the safetensors bundle is always written; ONNX and a ``torch.export`` .pt2 on
request), a destination folder and a name; the model runs ``core.export.export_run`` as a job with
progress and cancel, which verifies every written file against the run's own network on the run's
validation images, and the page shows that verification (max absolute difference of the logits,
top-1 agreement) plus a short snippet that loads the bundle in plain Python with onnxruntime, or with
Transfer Studio / PyTorch. Writing into a folder that already holds a bundle asks first.

Page state in the project: ``project.ui``'s ``export_run``, ``export_dir``, ``export_name`` and
``export_formats``; the run chooser follows the Train page's new run (``AppState.runSelected``) unless
a run was chosen here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.ui import theme
from transfer_studio.ui.models.export_model import (  # noqa: F401 - the snippets and helpers: importable from the page
    FORMAT_LABELS,
    SNIPPETS,
    ExportModel,
    check_rows,
    export_steps,
    onnx_snippet,
    pt2_snippet,
    python_snippet,
    run_export,
    safe_name,
    snippets,
    summary_text,
)
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import BusyIndicator, MessageBanner, format_bytes
from transfer_studio.ui.widgets.heading import page_heading
from transfer_studio.ui.widgets.run_chooser import RunCombo, default_run
from transfer_studio.ui.worker import TaskHandle, run_task, wait_for_tasks

_open_url = QDesktopServices.openUrl  # indirection: tests replace it instead of opening a file manager


# -- the page --------------------------------------------------------------------------------------
class ExportPage(QWidget):
    TITLE = "Export"

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_export")
        self.state = state
        self.model = ExportModel(state, run_task, source=lambda: self.source_combo.current_path(),
                                 has_sources=lambda: self.source_combo.count() > 0,
                                 confirm_replace=self._confirm_replace)
        self._loading = True  # building: widget signals must not write to the project yet
        self._build()
        self._bind_model()
        self._loading = False
        state.projectReplaced.connect(self._load_from_project)
        state.projectChanged.connect(self._on_project_changed)
        state.runSelected.connect(self._refill_sources)  # the Train page's new run, unless one was chosen
        state.pathChanged.connect(lambda _p: self._update_target())
        self._load_from_project()

    # -- construction ----------------------------------------------------------------------------
    def _build(self) -> None:
        title, hint = page_heading(
            "Export",
            "Save a trained model as files other programs load. Every export is checked: the "
            "exported files must give the same outputs as the model in PyTorch.")

        self.source_combo = RunCombo(object_name="export_source")
        self.source_combo.setAccessibleName("Run to export")
        self.source_combo.currentIndexChanged.connect(self._on_settings_edited)
        self.format_boxes: dict[str, QCheckBox] = {}
        formats = QVBoxLayout()
        formats.setSpacing(2)
        for fmt, (label, tip) in FORMAT_LABELS.items():
            box = QCheckBox(label)
            box.setObjectName(f"export_format_{fmt}")
            box.setToolTip(tip)
            box.toggled.connect(self._on_settings_edited)
            formats.addWidget(box)
            self.format_boxes[fmt] = box
        self.format_boxes["safetensors"].setChecked(True)
        self.format_boxes["safetensors"].setEnabled(False)  # the bundle itself: always written

        self.dir_edit = QLineEdit()
        self.dir_edit.setObjectName("export_dir")
        self.dir_edit.setPlaceholderText("Destination folder…")
        self.dir_edit.editingFinished.connect(self._on_settings_edited)
        self.dir_button = QPushButton("Choose…")
        self.dir_button.setObjectName("export_choose_dir")
        self.dir_button.clicked.connect(self._choose_dir)
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("export_name")
        self.name_edit.setPlaceholderText("Name of the bundle folder")
        self.name_edit.editingFinished.connect(self._on_settings_edited)
        self.target_label = QLabel()
        self.target_label.setObjectName("export_target")
        self.target_label.setProperty("role", "muted")
        self.target_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.export_button = QPushButton("Export")
        self.export_button.setObjectName("export_start")
        self.export_button.setProperty("primary", True)
        self.export_button.setIcon(theme.icon("export"))
        self.export_button.clicked.connect(lambda: self.export())

        box = QGroupBox("What to export")
        grid = QGridLayout(box)
        grid.setHorizontalSpacing(8)
        grid.addWidget(QLabel("Run:"), 0, 0)
        grid.addWidget(self.source_combo, 0, 1, 1, 2)
        grid.addWidget(QLabel("Formats:"), 1, 0, Qt.AlignmentFlag.AlignTop)
        grid.addLayout(formats, 1, 1, 1, 2)
        grid.addWidget(QLabel("Destination:"), 2, 0)
        grid.addWidget(self.dir_edit, 2, 1)
        grid.addWidget(self.dir_button, 2, 2)
        grid.addWidget(QLabel("Name:"), 3, 0)
        grid.addWidget(self.name_edit, 3, 1, 1, 2)
        grid.addWidget(self.target_label, 4, 1, 1, 2)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        grid.addLayout(buttons, 5, 0, 1, 3)
        grid.setColumnStretch(1, 1)

        self.busy_indicator = BusyIndicator(object_name="export_busy")
        self.banner = MessageBanner(object_name="export_banner")

        # Results: verification table + loading snippets.
        self.summary_label = QLabel()
        self.summary_label.setObjectName("export_summary")
        self.summary_label.setWordWrap(True)
        self.table = QTableWidget(0, 5)
        self.table.setObjectName("export_verification")
        self.table.setAccessibleName("Export verification")
        self.table.setHorizontalHeaderLabels(["File", "Size", "Max. difference", "Same top-1", "Check"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = self.table.horizontalHeader()
        for col in range(5):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setToolTip("Each exported file is run on the same images as the model in PyTorch: the "
                              "largest difference between their outputs (logits), and how many images get "
                              "the same top-1 class.")
        self.open_button = QPushButton("Open folder")
        self.open_button.setObjectName("export_open_folder")
        self.open_button.clicked.connect(self._open_folder)
        result_box = QGroupBox("Verification")
        rl = QVBoxLayout(result_box)
        rl.addWidget(self.summary_label)
        rl.addWidget(self.table, 1)
        orow = QHBoxLayout()
        orow.addStretch(1)
        orow.addWidget(self.open_button)
        rl.addLayout(orow)

        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.snippet_tabs = QTabWidget()
        self.snippet_tabs.setObjectName("export_snippets")
        self.snippets: dict[str, QPlainTextEdit] = {}
        for key, label in (("onnx", "onnxruntime"), ("python", "Transfer Studio"), ("pt2", "PyTorch .pt2")):
            edit = QPlainTextEdit()
            edit.setObjectName(f"export_snippet_{key}")
            edit.setReadOnly(True)
            edit.setFont(mono)
            edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
            self.snippets[key] = edit
            self.snippet_tabs.addTab(edit, label)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setObjectName("export_copy")
        self.copy_button.setToolTip("Copy the snippet shown to the clipboard")
        self.copy_button.clicked.connect(self.copy_snippet)
        snippet_box = QGroupBox("Load it in Python")
        sl = QVBoxLayout(snippet_box)
        sl.addWidget(self.snippet_tabs, 1)
        crow = QHBoxLayout()
        self.snippet_hint = QLabel("Run it with an image path: python classify.py photo.jpg")
        self.snippet_hint.setProperty("role", "muted")
        crow.addWidget(self.snippet_hint, 1)
        crow.addWidget(self.copy_button)
        sl.addLayout(crow)

        self.results = QWidget()
        self.results.setObjectName("export_results")
        res = QHBoxLayout(self.results)
        res.setContentsMargins(0, 0, 0, 0)
        res.addWidget(result_box, 1)
        res.addWidget(snippet_box, 1)
        self.results.setVisible(False)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 12, 16, 12)
        lay.setSpacing(8)
        lay.addWidget(title)
        lay.addWidget(hint)
        lay.addWidget(box)
        lay.addWidget(self.busy_indicator)
        lay.addWidget(self.banner)
        lay.addWidget(self.results, 1)
        lay.addStretch(0)

    def _bind_model(self) -> None:
        m = self.model
        m.message.connect(lambda text, level, details: self.banner.show_message(text, level, details=details or None))
        m.messageCleared.connect(lambda: self.banner.clear())
        m.busyStarted.connect(lambda label, job, steps: self.busy_indicator.start(label, handle=job, steps=steps))
        m.busyStopped.connect(lambda: self.busy_indicator.stop())
        m.enabledChanged.connect(self._update_target)
        m.resultShown.connect(self.show_result)
        m.resultCleared.connect(lambda: self.results.setVisible(False))

    # -- project state ---------------------------------------------------------------------------
    def _load_from_project(self) -> None:
        self._loading = True
        try:
            self.source_combo.fill(self.state.project, default_run(self.state.project, "export_run"))
            self.model.load()
            for fmt, box in self.format_boxes.items():
                box.setChecked(fmt in self.model.formats)
            self.dir_edit.setText(self.model.folder)
            self.name_edit.setText(self.model.name)
        finally:
            self._loading = False
        self._update_target()

    def _on_project_changed(self, section: str) -> None:
        if section == "runs":
            self._refill_sources()

    def _refill_sources(self, *_: Any) -> None:
        """The project's runs changed or the Train page selected a run (``runSelected``): an explicit
        choice stays; otherwise follow the newest finished run."""
        if not self._loading:
            current = default_run(self.state.project, "export_run")
            self._loading = True
            try:
                self.source_combo.fill(self.state.project, current)
            finally:
                self._loading = False
            self._update_target()

    def _on_settings_edited(self, *_: Any) -> None:
        if self._loading:
            return
        self._loading = True  # the project's "ui" change must not refill the chooser
        try:
            self.model.edit(formats=[f for f, box in self.format_boxes.items() if box.isChecked()],
                            folder=self.dir_edit.text(), name=self.name_edit.text())
        finally:
            self._loading = False
        self._update_target()

    def _choose_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Where to save the exported model", self.destination())
        if folder:
            self.dir_edit.setText(folder)
            self._on_settings_edited()

    def _confirm_replace(self, out: Path) -> bool:
        B = QMessageBox.StandardButton
        return QMessageBox.question(self, "Replace the export?", f"{out} already holds an exported model. "
                                    "Replace its files?", B.Yes | B.No, B.No) == B.Yes

    # -- settings (the model's) --------------------------------------------------------------------
    def formats(self) -> list[str]:
        return list(self.model.formats)

    def destination(self) -> str:
        return self.model.destination()

    def bundle_name(self) -> str:
        return self.model.bundle_name()

    def target(self) -> Path:
        return self.model.target()

    def _update_target(self) -> None:
        self.target_label.setText(self.model.target_text())
        self.name_edit.setPlaceholderText(self.model.bundle_name())
        running = self.model.busy()
        self.export_button.setEnabled(self.model.can_export())
        for w in (self.source_combo, self.dir_edit, self.dir_button, self.name_edit,
                  self.format_boxes["onnx"], self.format_boxes["pt2"]):
            w.setEnabled(not running)

    # -- exporting -------------------------------------------------------------------------------
    @property
    def result(self) -> Any:
        """``core.export.ExportResult`` of the last export (None: none shown)."""
        return self.model.result

    def busy(self) -> bool:
        return self.model.busy()

    def export(self) -> TaskHandle | None:
        """Export the chosen run; asks before replacing an existing bundle. None when nothing started."""
        return self.model.export()  # type: ignore[return-value]

    def show_result(self, result: Any) -> None:
        rows = check_rows(result, format_bytes)
        self.table.setRowCount(len(rows))
        colours = theme.semantic_colors(theme.is_dark(self.palette()))
        for r, row in enumerate(rows):
            items = [QTableWidgetItem(text) for text in (row.file, row.size, row.difference, row.agreement, row.check)]
            items[0].setToolTip(row.tip)
            items[4].setForeground(colours.success if row.passed else colours.error)
            for c, item in enumerate(items):
                if c in (1, 2, 3):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        self.summary_label.setText(summary_text(result))
        texts, shown = snippets(result)
        for key, text in texts.items():
            self.snippets[key].setPlainText(text)
        self.snippet_tabs.setCurrentIndex(shown)
        self.results.setVisible(True)

    def current_snippet(self) -> str:
        return self.snippets[SNIPPETS[self.snippet_tabs.currentIndex()]].toPlainText()

    def copy_snippet(self) -> None:
        QGuiApplication.clipboard().setText(self.current_snippet())
        self.state.status("Snippet copied to the clipboard", 3000)

    def _open_folder(self) -> None:
        if self.result is not None:
            _open_url(QUrl.fromLocalFile(str(self.result.out_dir)))

    # -- page protocol ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        wait_for_tasks([self.model.job], 120000)  # type: ignore[list-item]
