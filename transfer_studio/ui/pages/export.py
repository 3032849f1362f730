"""Export page: write a trained run as files other programs load, and prove they match PyTorch.

The user picks a run (default: the latest), the formats (the safetensors bundle is always written;
ONNX and a ``torch.export`` .pt2 on request), a destination folder and a name. ``core.export.export_run``
runs on a worker thread with progress and cancel; it verifies every written file against the run's
own network on the run's validation images, and the page shows that verification (max absolute
difference of the logits, top-1 agreement) plus a short snippet that loads the bundle in plain
Python with onnxruntime, or with Transfer Studio / PyTorch. Writing into a folder that already
holds a bundle asks first.

Page state in the project: ``project.ui``'s ``export_run``, ``export_dir``, ``export_name`` and
``export_formats``; the run chooser follows the Train page's new run (``AppState.runSelected``) unless
a run was chosen here.
"""

from __future__ import annotations

import re
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

from transfer_studio.core import run_folder  # torch-free: the folders' file names
from transfer_studio.core.runs import norm_path
from transfer_studio.errors import UserError
from transfer_studio.ui import theme
from transfer_studio.ui.runtime import import_core
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import BusyIndicator, MessageBanner, format_bytes
from transfer_studio.ui.widgets.heading import page_heading
from transfer_studio.ui.widgets.run_chooser import RunCombo, default_run
from transfer_studio.ui.worker import TaskHandle, run_task, wait_for_tasks

FORMAT_LABELS = {
    "safetensors": ("Weights bundle (model.safetensors + model.json)",
                    "Always written: the weights and everything needed to rebuild and feed the network"),
    "onnx": ("ONNX (model.onnx)", "For onnxruntime, OpenCV, TensorRT, … — any language, no PyTorch needed"),
    "pt2": ("PyTorch program (model.pt2, torch.export)", "For PyTorch without the model's Python code"),
}
DEFAULT_FORMATS = ("safetensors", "onnx")
_open_url = QDesktopServices.openUrl  # indirection: tests replace it instead of opening a file manager


def export_steps(formats: list[str]) -> list[str]:
    """What each progress step of ``core.export.export_run`` does, in its order (3 + one per file
    format besides safetensors; a test checks the count against the core's reports)."""
    steps = ["loading the run and computing reference outputs", "writing and checking model.safetensors"]
    if "pt2" in formats:
        steps.append("exporting and checking model.pt2 (torch.export)")
    if "onnx" in formats:
        steps.append("exporting and checking model.onnx (onnxruntime)")
    return [*steps, "comparing the outputs", "writing model.json"]


# -- background work ---------------------------------------------------------------------------------
def run_export(run_dir: str, out_dir: str, formats: list[str], progress: Any = None,
               cancel: Any = None) -> tuple[Any, str]:
    """(ExportResult, "" or the verification failure) — a failed verification still shows its numbers.

    Runs on a worker thread (the core imports torch)."""
    export = import_core("export")

    try:
        return export.export_run(run_dir, out_dir, formats, progress=progress, cancel=cancel), ""
    except export.ExportVerificationError as exc:
        return exc.result, str(exc)


def safe_name(text: str) -> str:
    """A folder name from free text: letters, digits, '-', '_' and '.'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-.")
    return name or "model"


# -- loading snippets ------------------------------------------------------------------------------
def onnx_snippet(bundle_dir: str) -> str:
    """Plain Python (numpy, Pillow, onnxruntime) that classifies an image with the exported ONNX model.

    Preprocessing follows model.json exactly as the app does: RGB, shorter side resized (bilinear),
    centre crop, scale to [0, 1], normalise, NCHW.
    """
    return f'''# pip install onnxruntime pillow numpy
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

bundle = Path(r"{bundle_dir}")
meta = json.loads((bundle / "model.json").read_text())
pre = meta["preprocessing"]


def preprocess(path):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    short, long = min(w, h), max(w, h)
    size = (pre["resize"], int(pre["resize"] * long / short))
    img = img.resize(size if w <= h else size[::-1], Image.BILINEAR)
    w, h = img.size
    left, top = (w - pre["crop"]) // 2, (h - pre["crop"]) // 2
    img = img.crop((left, top, left + pre["crop"], top + pre["crop"]))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.array(pre["mean"], np.float32)) / np.array(pre["std"], np.float32)
    return x.transpose(2, 0, 1)[None]  # NCHW, a batch of one


session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
image = sys.argv[1] if len(sys.argv) > 1 else "image.jpg"
logits = session.run(None, {{"input": preprocess(image)}})[0][0]
probs = np.exp(logits - logits.max())
probs /= probs.sum()
for i in np.argsort(-probs)[:3]:  # the three most likely classes
    print(f"{{meta['classes'][i]}}: {{probs[i]:.1%}}")
'''


def python_snippet(bundle_dir: str) -> str:
    """Transfer Studio's own loader: rebuilds the network from model.json, reads the safetensors weights."""
    return f'''# pip install transfer-studio   (never unpickles: model.json + model.safetensors)
import sys

from transfer_studio.core.predict import Predictor

predictor = Predictor.from_bundle(r"{bundle_dir}")
image = sys.argv[1] if len(sys.argv) > 1 else "image.jpg"
for guess in predictor.predict_paths([image], top_k=3)[0]["top_k"]:
    print(f"{{guess['label']}}: {{guess['probability']:.1%}}")
'''


def pt2_snippet(bundle_dir: str) -> str:
    """PyTorch without the model's code: the ``torch.export`` program, fed like the ONNX snippet."""
    return f'''# pip install torch pillow numpy   (torch.export.load unpickles: load only files you made)
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

bundle = Path(r"{bundle_dir}")
meta = json.loads((bundle / "model.json").read_text())
pre = meta["preprocessing"]
model = torch.export.load(str(bundle / "model.pt2")).module()

img = Image.open(sys.argv[1] if len(sys.argv) > 1 else "image.jpg").convert("RGB")
w, h = img.size
size = (pre["resize"], int(pre["resize"] * max(w, h) / min(w, h)))
img = img.resize(size if w <= h else size[::-1], Image.BILINEAR)
w, h = img.size
left, top = (w - pre["crop"]) // 2, (h - pre["crop"]) // 2
x = np.asarray(img.crop((left, top, left + pre["crop"], top + pre["crop"])), np.float32) / 255.0
x = (x - np.array(pre["mean"], np.float32)) / np.array(pre["std"], np.float32)
with torch.no_grad():
    probs = model(torch.from_numpy(x.transpose(2, 0, 1)[None].copy())).softmax(1)[0]
for p, i in zip(*probs.topk(min(3, len(probs)))):
    print(f"{{meta['classes'][i]}}: {{p:.1%}}")
'''


# -- the page --------------------------------------------------------------------------------------
class ExportPage(QWidget):
    TITLE = "Export"

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_export")
        self.state = state
        self.result: Any = None  # core.export.ExportResult of the last export
        self._task: TaskHandle | None = None
        self._loading = True  # building: widget signals must not write to the project yet
        self._build()
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

    # -- project state ---------------------------------------------------------------------------
    def _load_from_project(self) -> None:
        self._loading = True
        try:
            ui = self.state.project.ui
            self.source_combo.fill(self.state.project, default_run(self.state.project, "export_run"))
            formats = ui.export_formats if ui.export_formats is not None else list(DEFAULT_FORMATS)
            for fmt, box in self.format_boxes.items():
                box.setChecked(fmt == "safetensors" or fmt in formats)
            self.dir_edit.setText(ui.export_dir or "")
            self.name_edit.setText(ui.export_name or "")
        finally:
            self._loading = False
        self.result = None
        self.results.setVisible(False)
        self.banner.clear()
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
        ui = self.state.project.ui
        values = {"export_run": self.source_combo.current_path(), "export_formats": self.formats(),
                  "export_dir": self.dir_edit.text().strip(), "export_name": self.name_edit.text().strip()}
        changed = False
        for key, value in values.items():
            value = value or None  # empty: unset
            if getattr(ui, key) != value:
                setattr(ui, key, value)
                changed = True
        if changed:
            self._loading = True
            try:
                self.state.mark_changed("ui")
            finally:
                self._loading = False
        self._update_target()

    def _choose_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Where to save the exported model", self.destination())
        if folder:
            self.dir_edit.setText(folder)
            self._on_settings_edited()

    # -- settings --------------------------------------------------------------------------------
    def formats(self) -> list[str]:
        return [fmt for fmt, box in self.format_boxes.items() if box.isChecked()]

    def destination(self) -> str:
        """The folder the bundle folder goes into (default: ``exports`` beside the project file)."""
        text = self.dir_edit.text().strip()
        if text:
            return text
        if self.state.path is not None:
            return str(Path(self.state.path).resolve().parent / "exports")
        return str(Path.home() / "Transfer Studio exports")

    def bundle_name(self) -> str:
        text = self.name_edit.text().strip()
        if text:
            return safe_name(text)
        run = self.source_combo.current_path()
        stem = safe_name(self.state.project.name or "model")
        return f"{stem}-{safe_name(Path(run).name)}" if run else stem

    def target(self) -> Path:
        return Path(self.destination()).expanduser() / self.bundle_name()

    def _update_target(self) -> None:
        has_run = self.source_combo.count() > 0
        self.target_label.setText(f"Writes {self.target()}" if has_run else
                                  "Train a model first: there is no run to export yet.")
        self.name_edit.setPlaceholderText(self.bundle_name())
        running = self.busy()
        self.export_button.setEnabled(has_run and not running)
        for w in (self.source_combo, self.dir_edit, self.dir_button, self.name_edit,
                  self.format_boxes["onnx"], self.format_boxes["pt2"]):
            w.setEnabled(not running)

    # -- exporting -------------------------------------------------------------------------------
    def busy(self) -> bool:
        return self._task is not None and self._task.is_running()

    def export(self) -> TaskHandle | None:
        """Export the chosen run; asks before replacing an existing bundle. None when nothing started."""
        run = self.source_combo.current_path()
        if not run or self.busy():
            return None
        out = self.target()
        try:
            if norm_path(out) == norm_path(run) or norm_path(run) in {norm_path(p) for p in out.parents}:
                raise UserError("The destination is inside the run folder: choose another folder.")
            if out.exists() and not out.is_dir():
                raise UserError(f"{out} is a file: choose another name or destination.")
        except UserError as exc:
            self.banner.show_message(str(exc), "error")
            return None
        if run_folder.bundle_exists(out):
            B = QMessageBox.StandardButton
            answer = QMessageBox.question(
                self, "Replace the export?",
                f"{out} already holds an exported model. Replace its files?", B.Yes | B.No, B.No)
            if answer != B.Yes:
                self.state.status("Export cancelled: the existing files are kept", 4000)
                return None
        self.banner.clear()
        self.result = None
        self.results.setVisible(False)
        handle = run_task(run_export, run, str(out), self.formats(), name="export",
                          on_result=self._on_result, on_error=self._on_error,
                          on_cancelled=lambda: self.state.status("Export cancelled", 3000),
                          on_finished=self._on_finished)
        self._task = handle
        self.busy_indicator.start(f"Exporting {Path(run).name}", handle=handle,
                                  steps=export_steps(self.formats()))
        self._update_target()
        return handle

    def _on_result(self, value: tuple[Any, str]) -> None:
        result, failure = value
        self.show_result(result)
        if failure:
            self.banner.show_message(f"Verification failed: {failure}. The files were written but do not "
                                     "match PyTorch; do not use the failing formats.", "error")
        else:
            self.state.status(f"Exported to {result.out_dir}", 6000)

    def _on_error(self, message: str, details: str) -> None:
        self.banner.show_message(message, "error", details=details or None)

    def _on_finished(self) -> None:
        self.busy_indicator.stop()
        self._task = None
        self._update_target()

    def show_result(self, result: Any) -> None:
        self.result = result
        v = result.verification
        rows = [fmt for fmt in ("safetensors", "onnx", "pt2") if fmt in result.files]
        self.table.setRowCount(len(rows))
        colours = theme.semantic_colors(theme.is_dark(self.palette()))
        for r, fmt in enumerate(rows):
            path = Path(result.files[fmt])
            check = v.get(fmt, {})
            try:
                size = format_bytes(path.stat().st_size)
            except OSError:
                size = "–"
            items = [QTableWidgetItem(path.name), QTableWidgetItem(size),
                     QTableWidgetItem(f"{check.get('max_abs_diff', float('nan')):.2e}"),
                     QTableWidgetItem(f"{check.get('top1_agree', 0)} / {check.get('images', 0)}"),
                     QTableWidgetItem("✓ passed" if check.get("passed") else "✗ failed")]
            items[0].setToolTip(str(path))
            if fmt == "onnx" and check.get("exporter"):
                items[0].setToolTip(f"{path}\nexporter: {check['exporter']}, onnxruntime {check.get('onnxruntime', '')}")
            items[4].setForeground(colours.success if check.get("passed") else colours.error)
            for c, item in enumerate(items):
                if c in (1, 2, 3):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        n = v.get("images", 0)
        on = v.get("inputs", "images")
        if result.passed:
            self.summary_label.setText(
                f"<b>All {len(rows)} exported files match PyTorch</b> on {n} {on}: outputs within "
                f"{v.get('tolerance', 1e-4):g}, same top-1 class for every image. Saved in {result.out_dir}.")
        else:
            self.summary_label.setText(f"<b>Some exported files disagree with PyTorch</b> on {n} {on}. "
                                       f"Saved in {result.out_dir}.")
        bundle = str(result.out_dir)
        self.snippets["onnx"].setPlainText(onnx_snippet(bundle) if "onnx" in result.files else
                                           "# Export with the ONNX format checked to load the model with onnxruntime.")
        self.snippets["python"].setPlainText(python_snippet(bundle))
        self.snippets["pt2"].setPlainText(pt2_snippet(bundle) if "pt2" in result.files else
                                          "# Export with the .pt2 format checked to load the model with torch.export.")
        self.snippet_tabs.setCurrentIndex(0 if "onnx" in result.files else 1)
        self.results.setVisible(True)

    def current_snippet(self) -> str:
        key = ("onnx", "python", "pt2")[self.snippet_tabs.currentIndex()]
        return self.snippets[key].toPlainText()

    def copy_snippet(self) -> None:
        QGuiApplication.clipboard().setText(self.current_snippet())
        self.state.status("Snippet copied to the clipboard", 3000)

    def _open_folder(self) -> None:
        if self.result is not None:
            _open_url(QUrl.fromLocalFile(str(self.result.out_dir)))

    # -- page protocol ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        wait_for_tasks([self._task], 120000)
