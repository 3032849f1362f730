"""Try page: classify your own pictures with the trained model, next to the original pretrained one.

Drop images or folders onto the page (or open them). For each picture the page shows the top-k
classes of the trained model (a run's best weights, or an exported bundle) as horizontal bars and,
side by side, what the original pretrained network says in its ImageNet classes — the difference
is what fine-tuning taught it. With "Heat map" on, a Grad-CAM overlay (``core.gradcam``) shows where
the trained model looked for its top class.

Models load and predict on worker threads, one task at a time; loaded models are cached per source
(folder + weights-file time) in a ``ModelCache`` that the page's tasks share one after another, never
concurrently. Page state in the project: ``ui["try_run"]``, ``ui["try_images"]``, ``ui["try_top_k"]``
and ``ui["try_heatmap"]``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QFontMetrics, QImage, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.core.runs import norm_path
from transfer_studio.errors import Cancelled, UserError
from transfer_studio.ui import theme
from transfer_studio.ui.pages.runs import RunCombo, browse_start, default_run
from transfer_studio.ui.runtime import import_core
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import BusyIndicator, EmptyState, MessageBanner
from transfer_studio.ui.widgets.heading import page_heading
from transfer_studio.ui.worker import TaskHandle, run_task, wait_for_tasks

# What the Try page accepts (core.imageio.IMAGE_EXTENSIONS; repeated here: importing the core on the
# GUI thread would load torch).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif",
                              ".tiff", ".ppm", ".pgm", ".pbm"})
MAX_TOP_K = 10
MAX_IMAGES = 500  # per drop: a folder of 20,000 photos is not what this page is for
SAVED_IMAGES = 100  # image paths remembered in the project
PREVIEW = 360
BATCH = 16


# -- Qt-free work (worker threads) -------------------------------------------------------------------
@dataclass
class ModelInfo:
    """What a task needs to know about a trained source, found without loading it."""

    source: str  # "" for "pretrained": no trained model chosen
    kind: str  # "run" | "bundle" | "pretrained" (only the project's original model)
    key: tuple  # cache key of the trained model
    base_model: str  # catalog name of the network it was fine-tuned from
    base_weights: str  # "DEFAULT", "none" or a weights file


class ModelCache:
    """Loaded predictors by key. Tasks use it one at a time (``lock``); never shared with training."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._items: dict[tuple, Any] = {}

    def get(self, key: tuple, factory: Callable[[], Any]) -> Any:
        with self.lock:
            if key not in self._items:
                self._items[key] = factory()
            return self._items[key]

    def __contains__(self, key: tuple) -> bool:
        return key in self._items

    def clear(self) -> None:
        with self.lock:
            self._items.clear()


def describe_source(source: str) -> ModelInfo:
    """Kind, cache key and base model of a run or bundle folder (``core.run_folder.source_kind``).

    Reads only the folder's small JSON files, without torch: it runs on the GUI thread.
    """
    from transfer_studio.core import run_folder
    from transfer_studio.core.runs import load_snapshot

    path = Path(source)
    kind = run_folder.source_kind(path)
    if kind == "bundle":
        meta = run_folder.read_json(path / run_folder.BUNDLE_META)
        try:
            base, base_weights = str(meta["architecture"]["model"]), "DEFAULT"
        except (KeyError, TypeError) as exc:
            raise UserError(f"{path / run_folder.BUNDLE_META} is damaged ({exc!r}); export the run again") from exc
    else:
        project = load_snapshot(path)
        base, base_weights = project.model.name, project.model.weights
    try:
        stamp = run_folder.weights_path(path, kind).stat().st_mtime
    except OSError:
        stamp = 0.0
    return ModelInfo(str(path), kind, (kind, norm_path(path), stamp), base, base_weights or "DEFAULT")


def project_base_info(name: str, weights: str) -> ModelInfo:
    """No trained model yet: only the project's original pretrained network answers."""
    return ModelInfo("", "pretrained", ("pretrained-only",), name, weights or "DEFAULT")


NO_TRAINED_NOTE = ("<b>No trained model yet.</b> Train one on the <a href=\"train\">Train page</a>, or "
                   "choose a training run or an exported bundle with \u201cOther run or bundle\u2026\u201d. "
                   "Meanwhile the original pretrained model's answers are shown.")


def load_trained(info: ModelInfo) -> Any:
    """The trained model as a Predictor (worker thread: the core imports torch)."""
    Predictor = import_core("predict").Predictor
    if info.kind == "bundle":
        return Predictor.from_bundle(info.source)
    model, project = import_core("export").load_run(info.source)
    return Predictor(model, import_core("network").project_preprocess(project), project.data.classes)


def load_pretrained(info: ModelInfo) -> Any:
    return import_core("predict").Predictor.from_catalog(info.base_model, info.base_weights)


@dataclass
class Predictions:
    """Top classes per image: path -> [(label, probability)] (up to MAX_TOP_K), per model."""

    trained: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    pretrained: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    trained_error: str = ""
    pretrained_note: str = ""  # why there is no pretrained column (random init, weights missing)
    trained_key: tuple = ()
    pretrained_key: tuple = ()


def _top(probs: Any, names: Sequence[str]) -> list[tuple[str, float]]:
    import numpy as np

    order = np.argsort(-probs, kind="stable")[:MAX_TOP_K]
    return [(names[i], float(probs[i])) for i in order]


def predict_task(cache: ModelCache, info: ModelInfo, paths: list[str], want_trained: bool,
                 want_pretrained: bool, progress: Any = None, cancel: Any = None) -> Predictions:
    """Both models' top classes for ``paths`` (each model only if asked); a model that cannot load
    is reported in the result, not raised, so the other column still fills."""
    load_rgb = import_core("imageio").load_rgb

    out = Predictions(trained_key=info.key, pretrained_key=("catalog", info.base_model, info.base_weights))
    models: list[tuple[str, Any]] = []
    with cache.lock:
        if want_trained:
            try:
                models.append(("trained", cache.get(info.key, lambda: load_trained(info))))
            except UserError as exc:
                out.trained_error = str(exc)
        if want_pretrained:
            if info.base_weights.strip().lower() == "none":
                out.pretrained_note = (f"This project's {info.base_model} starts from random weights: there is no "
                                       "pretrained model to compare with.")
            else:
                try:
                    models.append(("pretrained", cache.get(out.pretrained_key, lambda: load_pretrained(info))))
                except UserError as exc:
                    out.pretrained_note = f"The original {info.base_model} is not available: {exc}"
        if progress:
            progress(0, len(paths))
        for start in range(0, len(paths), BATCH):
            if cancel is not None and cancel():
                raise Cancelled("prediction cancelled")
            images, kept = [], []
            for p in paths[start:start + BATCH]:
                try:
                    images.append(load_rgb(p))
                    kept.append(p)
                except (UserError, OSError) as exc:
                    out.unreadable[p] = str(exc)
            for which, predictor in models:
                if not images:
                    break
                probs = predictor.predict_images(images)
                target = out.trained if which == "trained" else out.pretrained
                for p, row in zip(kept, probs, strict=True):
                    target[p] = _top(row, predictor.class_names)
            if progress:
                progress(min(start + BATCH, len(paths)), len(paths))
    return out


@dataclass
class HeatMap:
    path: str
    key: tuple
    overlay: Any  # (H, W, 3) uint8
    label: str
    score: float
    layer: str


def heatmap_task(cache: ModelCache, info: ModelInfo, path: str, progress: Any = None,
                 cancel: Any = None) -> HeatMap:
    gradcam, load_rgb = import_core("gradcam"), import_core("imageio").load_rgb

    with cache.lock:
        predictor = cache.get(info.key, lambda: load_trained(info))
        if cancel is not None and cancel():
            raise Cancelled("heat map cancelled")
        result = gradcam.explain(predictor.model, predictor.preprocess, load_rgb(path))
    return HeatMap(path, info.key, gradcam.overlay(result.image, result.heat),
                   predictor.class_names[result.class_index], result.score, result.layer)


def expand_paths(items: Iterable[str], limit: int = MAX_IMAGES,
                 rejected: list[str] | None = None) -> tuple[list[str], int]:
    """Image files from files and folders (folders recursively, sorted); (paths, number left out).

    Files without an image extension are not images: a folder's are skipped silently, files named
    one by one are appended to ``rejected`` (when given) so the page can say why they were not added.
    """

    out: list[str] = []
    skipped = 0
    for item in items:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                if rejected is not None:
                    rejected.append(str(p))
                continue
            files = [p]
        else:
            continue
        for f in files:
            if len(out) >= limit:
                skipped += 1
            else:
                out.append(str(f))
    return out, skipped


def _numpy_to_qimage(arr: Any) -> QImage:
    h, w = arr.shape[:2]
    data = arr.tobytes()
    return QImage(data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


# -- widgets ---------------------------------------------------------------------------------------
class TopKBars(QWidget):
    """Horizontal probability bars: label, bar, percentage. The top class is drawn in the highlight colour."""

    def __init__(self, parent: QWidget | None = None, *, object_name: str = "topk_bars"):
        super().__init__(parent)
        self.setObjectName(object_name)
        self._rows: list[tuple[str, float]] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)

    def set_predictions(self, rows: Sequence[tuple[str, float]]) -> None:
        self._rows = [(str(label), float(p)) for label, p in rows]
        self.setAccessibleDescription("; ".join(f"{label} {p:.1%}" for label, p in self._rows))
        self.setToolTip("\n".join(f"{label}: {p:.2%}" for label, p in self._rows))
        self.updateGeometry()
        self.update()

    def rows(self) -> list[tuple[str, float]]:
        return list(self._rows)

    def _row_height(self) -> int:
        return QFontMetrics(self.font()).height() + 10

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(320, max(1, len(self._rows)) * self._row_height() + 4)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(200, max(1, len(self._rows)) * self._row_height() + 4)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        fm = QFontMetrics(self.font())
        rh = self._row_height()
        label_w = min(int(self.width() * 0.42), max((fm.horizontalAdvance(r[0]) for r in self._rows), default=0) + 8)
        pct_w = fm.horizontalAdvance("100.0%") + 8
        bar_w = max(10, self.width() - label_w - pct_w - 8)
        track = QPalette.ColorRole.AlternateBase
        for i, (label, prob) in enumerate(self._rows):
            y = i * rh + 2
            p.setPen(pal.color(QPalette.ColorRole.WindowText))
            p.drawText(QRectF(0, y, label_w - 6, rh), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       fm.elidedText(label, Qt.TextElideMode.ElideRight, label_w - 6))
            bar = QRectF(label_w, y + 4, bar_w, rh - 8)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(pal.color(track))
            p.drawRoundedRect(bar, 3, 3)
            colour = pal.color(QPalette.ColorRole.Highlight) if i == 0 else pal.color(QPalette.ColorRole.Mid)
            p.setBrush(colour)
            p.drawRoundedRect(QRectF(bar.x(), bar.y(), max(2.0, bar_w * prob), bar.height()), 3, 3)
            p.setPen(pal.color(QPalette.ColorRole.WindowText))
            p.drawText(QRectF(label_w + bar_w + 6, y, pct_w, rh), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                       f"{prob:.1%}")
        p.end()


class _Column(QGroupBox):
    """One model's answer: a note (or error) and its bars."""

    def __init__(self, title: str, name: str):
        super().__init__(title)
        self.setObjectName(f"{name}_box")
        self.note = QLabel()
        self.note.setObjectName(f"{name}_note")
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse
                                          | Qt.TextInteractionFlag.LinksAccessibleByKeyboard)
        self.note.setProperty("role", "muted")
        self.bars = TopKBars(object_name=f"{name}_bars")
        lay = QVBoxLayout(self)
        lay.addWidget(self.note)
        lay.addWidget(self.bars)
        lay.addStretch(1)
        self.note.setVisible(False)

    def show_note(self, text: str, *, rich: bool = False) -> None:
        """A plain-text note (messages from files and the core), or ``rich`` text of our own (links)."""
        self.note.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
        self.note.setText(text)
        self.note.setVisible(bool(text))


# -- the page --------------------------------------------------------------------------------------
class TryPage(QWidget):
    TITLE = "Try"
    imagesAdded = Signal(int)

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_try")
        self.state = state
        self.cache = ModelCache()
        self.paths: list[str] = []
        self.info: ModelInfo | None = None
        self.predictions: dict[tuple, dict[str, list[tuple[str, float]]]] = {}  # model key -> path -> top
        self.unreadable: dict[str, str] = {}
        self.notes: dict[tuple, str] = {}  # model key -> why it has no predictions
        self.heatmaps: dict[tuple[tuple, str], HeatMap] = {}
        self._task: TaskHandle | None = None
        self._preview_task: TaskHandle | None = None
        self._pending_heatmap: str | None = None
        self._preview_for: tuple | None = None  # what the preview shows now
        self._closing = False
        self._halted = False  # a task failed: no automatic retry until the user changes something
        self._loading = False
        self.setAcceptDrops(True)
        self._build()
        state.projectReplaced.connect(self._load_from_project)
        state.projectChanged.connect(self._on_project_changed)
        self._load_from_project()

    # -- construction ----------------------------------------------------------------------------
    def _build(self) -> None:
        from transfer_studio.ui.pages.evaluate import _caption_model_class, _gallery
        from transfer_studio.ui.thumbnails import ThumbnailLoader

        title, hint = page_heading(
            "Try",
            "Drop pictures or folders onto this page, or open them: see what your trained model "
            "says, next to what the original pretrained model says.")

        self.source_combo = RunCombo(object_name="try_source")
        self.source_combo.setAccessibleName("Trained model")
        self.source_combo.currentIndexChanged.connect(self._on_source_changed)
        self.browse_button = QPushButton("Other run or bundle…")
        self.browse_button.setObjectName("try_browse")
        self.browse_button.clicked.connect(self._browse_source)
        self.open_button = QPushButton("Open images…")
        self.open_button.setObjectName("try_open_images")
        self.open_button.setIcon(theme.icon("open"))
        self.open_button.clicked.connect(self._open_images)
        self.folder_button = QPushButton("Open folder…")
        self.folder_button.setObjectName("try_open_folder")
        self.folder_button.clicked.connect(self._open_folder)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setObjectName("try_clear")
        self.clear_button.clicked.connect(self.clear_images)
        self.topk_spin = QSpinBox()
        self.topk_spin.setObjectName("try_top_k")
        self.topk_spin.setRange(1, MAX_TOP_K)
        self.topk_spin.setValue(5)
        self.topk_spin.setPrefix("top ")
        self.topk_spin.setToolTip("How many classes to show")
        self.topk_spin.valueChanged.connect(self._on_topk)
        self.heatmap_box = QCheckBox("Heat map")
        self.heatmap_box.setObjectName("try_heatmap")
        self.heatmap_box.setToolTip("Grad-CAM: colour where the trained model looked for its top class")
        self.heatmap_box.toggled.connect(self._on_heatmap_toggled)

        top = QHBoxLayout()
        top.addWidget(QLabel("Trained model:"))
        top.addWidget(self.source_combo, 1)
        top.addWidget(self.browse_button)
        tools = QHBoxLayout()
        tools.addWidget(self.open_button)
        tools.addWidget(self.folder_button)
        tools.addWidget(self.clear_button)
        tools.addStretch(1)
        tools.addWidget(self.topk_spin)
        tools.addWidget(self.heatmap_box)

        self.busy_indicator = BusyIndicator(object_name="try_busy")
        self.banner = MessageBanner(object_name="try_banner")

        # Images (left), the selected image and both models' answers (right).
        model_cls = _caption_model_class()
        self._thumbs = model_cls(ThumbnailLoader(72, threads=2, parent=self), self)
        self.image_list = _gallery(self._thumbs, "try_images")
        self.image_list.setGridSize(QSize(72 + 40, 72 + 40))
        self.image_list.setMinimumWidth(230)
        self.image_list.selectionModel().currentChanged.connect(lambda cur, _prev: self._show_current())
        self.preview = QLabel()
        self.preview.setObjectName("try_preview")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(220, 220)
        self.preview.setFrameShape(QFrame.Shape.StyledPanel)
        # The picture is scaled down to the room the label gets (it was drawn at full size and cut
        # off in a short window); the label does not ask for the picture's size.
        self.preview.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.preview.installEventFilter(self)
        self._preview_pixmap: QPixmap | None = None
        self.preview_caption = QLabel()
        self.preview_caption.setObjectName("try_preview_caption")
        self.preview_caption.setWordWrap(True)
        self.preview_caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.trained_col = _Column("Your trained model", "try_trained")
        self.trained_col.note.linkActivated.connect(self.state.navigateRequested.emit)
        self.pretrained_col = _Column("Original pretrained model (ImageNet classes)", "try_pretrained")
        answers = QHBoxLayout()
        answers.addWidget(self.trained_col, 1)
        answers.addWidget(self.pretrained_col, 1)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.preview, 3)
        rl.addWidget(self.preview_caption)
        rl.addLayout(answers, 2)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.setObjectName("try_splitter")
        split.addWidget(self.image_list)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        split.setChildrenCollapsible(False)

        self.empty = EmptyState("try", "Drop pictures here", "Drop image files or folders anywhere on this page, "
                                "or open them. Nothing is uploaded: everything runs on this computer.",
                                object_name="try_empty")
        self.empty.add_action("Open images…", self._open_images, object_name="try_empty_open", primary=True)
        self.empty.add_action("Open folder…", self._open_folder, object_name="try_empty_folder")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(split)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 12, 16, 12)
        lay.setSpacing(8)
        lay.addWidget(title)
        lay.addWidget(hint)
        lay.addLayout(top)
        lay.addLayout(tools)
        lay.addWidget(self.busy_indicator)
        lay.addWidget(self.banner)
        lay.addWidget(self.stack, 1)

    # -- project state ---------------------------------------------------------------------------
    def _load_from_project(self) -> None:
        self._loading = True
        try:
            ui = self.state.project.ui or {}
            self.source_combo.fill(self.state.project, default_run(self.state.project, "try_run"))
            self.topk_spin.setValue(int(ui.get("try_top_k") or 5))
            self.heatmap_box.setChecked(bool(ui.get("try_heatmap", False)))
            saved = ui.get("try_images")
            self.paths = [p for p in saved if isinstance(p, str)] if isinstance(saved, list) else []
        finally:
            self._loading = False
        self.info = None
        self._thumbs.set_captioned(self.paths, [Path(p).name for p in self.paths], self.paths)
        self.stack.setCurrentIndex(1 if self.paths else 0)
        self.banner.clear()
        if self.paths:
            self.image_list.setCurrentIndex(self._thumbs.index(0))
        self._show_current()
        if self.isVisible():
            self.refresh()

    def _on_project_changed(self, section: str) -> None:
        if self._loading:
            return
        if section == "model" and self.info is not None and self.info.kind == "pretrained":
            self.info = None  # the project's original network changed: it answers instead
            self._show_current()
            if self.isVisible():
                self.refresh(retry=True)
            return
        if section not in ("runs", "ui"):
            return
        current = self.source_combo.current_path()
        self._loading = True
        try:
            self.source_combo.fill(self.state.project, default_run(self.state.project, "try_run"))
        finally:
            self._loading = False
        if current != self.source_combo.current_path():
            self._on_source_changed()

    def _save_ui(self, **values: Any) -> None:
        # The page's view state (images, chosen model, top-k, heat map): kept with the project, but
        # trying pictures is not an edit of the project (no unsaved-changes prompt).
        self.state.set_view_state(**values)

    # -- sources ---------------------------------------------------------------------------------
    def _on_source_changed(self, *_: Any) -> None:
        if self._loading:
            return
        path = self.source_combo.current_path()
        if path and self.state.project.ui.get("try_run") != path and path != default_run(self.state.project):
            self._save_ui(try_run=path)
        self.info = None
        self._show_current()
        if self.isVisible():
            self.refresh(retry=True)

    def _browse_source(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a training run or an exported bundle folder",
                                                browse_start(self.state.path, self.source_combo.current_path()))
        if path:
            self.set_source(path)

    def set_source(self, path: str) -> None:
        self._loading = True
        try:
            self.source_combo.fill(self.state.project, path, [path])
        finally:
            self._loading = False
        self._save_ui(try_run=path)
        self._on_source_changed()

    def _model_info(self) -> ModelInfo | None:
        """The current source described (cheap: JSON files only); errors go to the banner.

        With no trained model to choose, the project's own pretrained network still answers.
        """
        source = self.source_combo.current_path()
        if not source:
            model = self.state.project.model
            if not model.name:
                self.info = None
                return None
            self.info = project_base_info(model.name, model.weights)
            return self.info
        if self.info is None or self.info.source != source:
            try:
                self.info = describe_source(source)
            except UserError as exc:
                self.info = None
                self.banner.show_message(str(exc), "error")
                return None
        return self.info

    # -- images ----------------------------------------------------------------------------------
    def add_paths(self, items: Iterable[str]) -> int:
        """Add image files (and the images inside folders); returns how many were new."""
        rejected: list[str] = []
        found, left_out = expand_paths(items, rejected=rejected)
        known = set(self.paths)
        new = [p for p in found if p not in known]
        not_images = ""
        if rejected:
            names = ", ".join(Path(p).name for p in rejected[:3]) + (" …" if len(rejected) > 3 else "")
            not_images = (f"Not image files, so not added: {names}. The Try page reads JPEG, PNG, BMP, GIF, "
                          "WebP and TIFF images.")
        if not found:
            self.banner.show_message(not_images or "No images there: drop image files (JPEG, PNG, …) or "
                                     "folders holding them.", "warning")
            return 0
        self.banner.clear()
        if not_images:
            self.banner.show_message(not_images, "warning")
        if left_out:
            self.banner.show_message(f"Added the first {MAX_IMAGES} images; {left_out} more were left out.", "info")
        self.paths.extend(new)
        self._thumbs.set_captioned(self.paths, [Path(p).name for p in self.paths], self.paths)
        self.stack.setCurrentIndex(1 if self.paths else 0)
        self._save_ui(try_images=self.paths[-SAVED_IMAGES:])
        if new:
            self.image_list.setCurrentIndex(self._thumbs.index(self.paths.index(new[0])))
        self._show_current()
        self.imagesAdded.emit(len(new))
        self.refresh(retry=True)
        return len(new)

    def clear_images(self) -> None:
        self.paths = []
        self._thumbs.set_captioned([], [], [])
        self.stack.setCurrentIndex(0)
        self._save_ui(try_images=[])
        self._show_current()

    def _open_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open images", str(Path.home()),
                                                "Images (*.jpg *.jpeg *.png *.bmp *.gif *.webp *.tif *.tiff);;"
                                                "All files (*)")
        if files:
            self.add_paths(files)

    def _open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images", str(Path.home()))
        if folder:
            self.add_paths([folder])

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        files = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.add_paths(files)
        else:
            event.ignore()

    def current_path(self) -> str | None:
        idx = self.image_list.currentIndex()
        if idx.isValid() and 0 <= idx.row() < len(self.paths):
            return self.paths[idx.row()]
        return None

    def select_path(self, path: str) -> None:
        self.image_list.setCurrentIndex(self._thumbs.index(self.paths.index(path)))

    # -- inference -------------------------------------------------------------------------------
    def busy(self) -> bool:
        return any(t is not None and t.is_running() for t in (self._task, self._preview_task))

    def refresh(self, *, retry: bool = False) -> TaskHandle | None:
        """Predict the images that have no answer yet (one task at a time; runs again when it ends).

        After a failed task nothing restarts by itself until ``retry`` (new images, another model).
        """
        if retry:
            self._halted = False
        if self._task is not None and self._task.is_running() or self._halted or self._closing:
            return None
        info = self._model_info()
        if info is None or not self.paths:
            if not self.paths:
                self._show_current()
            return None
        pre_key = ("catalog", info.base_model, info.base_weights)
        trained = self.predictions.get(info.key, {})
        pretrained = self.predictions.get(pre_key, {})
        want_trained = info.kind != "pretrained" and info.key not in self.notes
        want_pre = pre_key not in self.notes
        todo = [p for p in self.paths if p not in self.unreadable and
                ((want_trained and p not in trained) or (want_pre and p not in pretrained))]
        if not todo:
            self._maybe_heatmap()
            return None
        handle = run_task(predict_task, self.cache, info, todo, want_trained, want_pre, name="try-predict",
                          on_result=self._on_predictions, on_error=self._on_error,
                          on_finished=self._on_task_finished)
        self._task = handle
        loading = "" if info.key in self.cache else " (loading the model)"
        self.busy_indicator.start(f"Classifying {len(todo)} image{'s' if len(todo) != 1 else ''}{loading}…",
                                  handle=handle)
        self._show_current()
        return handle

    def _on_predictions(self, result: Predictions) -> None:
        self.predictions.setdefault(result.trained_key, {}).update(result.trained)
        self.predictions.setdefault(result.pretrained_key, {}).update(result.pretrained)
        self.unreadable.update(result.unreadable)
        if result.trained_error:
            self.notes[result.trained_key] = result.trained_error
        if result.pretrained_note:
            self.notes[result.pretrained_key] = result.pretrained_note
        if result.unreadable:
            names = ", ".join(Path(p).name for p in list(result.unreadable)[:3])
            self.banner.show_message(f"{len(result.unreadable)} file(s) could not be read as images: {names}", "warning")
        self._show_current()

    def _on_error(self, message: str, details: str) -> None:
        self._halted = True
        self.banner.show_message(message, "error", details=details or None)

    def _on_task_finished(self) -> None:
        self.busy_indicator.stop()
        self._task = None
        if self._loading or self._halted:
            return
        # Work that arrived meanwhile (more images, another model, a heat map).
        if self.isVisible() or self._pending_heatmap:
            self.refresh()

    # -- showing the selected image ---------------------------------------------------------------
    def _show_current(self) -> None:
        path = self.current_path()
        info = self.info
        k = self.topk_spin.value()
        if path is None:
            self._preview_for = None
            self._set_preview(None)
            self.preview_caption.setText("")
            self.trained_col.bars.set_predictions([])
            self.pretrained_col.bars.set_predictions([])
            self.trained_col.show_note("")
            self.pretrained_col.show_note("")
            return
        only_pretrained = info is not None and info.kind == "pretrained"
        self.trained_col.setTitle(f"Your trained model ({Path(info.source).name})"
                                  if info and not only_pretrained else "Your trained model")
        if info is not None:
            self.pretrained_col.setTitle(f"Original pretrained {info.base_model} (ImageNet classes)")
        predicting = self._task is not None and self._task.is_running()
        for col, key in ((self.trained_col, info.key if info else None),
                         (self.pretrained_col, ("catalog", info.base_model, info.base_weights) if info else None)):
            if col is self.trained_col and (info is None or only_pretrained):
                col.bars.set_predictions([])
                col.show_note(NO_TRAINED_NOTE, rich=True)
                continue
            rows = self.predictions.get(key, {}).get(path) if key else None
            col.bars.set_predictions(rows[:k] if rows else [])
            if path in self.unreadable:
                col.show_note(f"Not readable: {self.unreadable[path]}")
            elif key in self.notes:
                col.show_note(self.notes[key])
            else:
                col.show_note("" if rows else "Working…" if predicting else "")
        self._show_preview(path)

    def _show_preview(self, path: str) -> None:
        info = self.info
        if self.heatmap_box.isChecked() and info is not None:
            hm = self.heatmaps.get((info.key, path))
            if hm is not None:
                if self._preview_for != ("heat", info.key, path):
                    self._preview_for = ("heat", info.key, path)
                    pix = QPixmap.fromImage(_numpy_to_qimage(hm.overlay))
                    self._set_preview(pix.scaled(PREVIEW, PREVIEW, Qt.AspectRatioMode.KeepAspectRatio,
                                                 Qt.TransformationMode.SmoothTransformation))
                    self.preview_caption.setText(f"Where the model looked for “{hm.label}” ({hm.score:.0%}) — "
                                                 f"Grad-CAM on {hm.layer}, on the crop the model sees")
                return
            self._pending_heatmap = path
            self._maybe_heatmap()
        if self._preview_for != ("image", path):  # decoded once per selection, not on every refresh
            self._preview_for = ("image", path)
            self.preview_caption.setText(Path(path).name)
            self._load_preview(path)

    def _set_preview(self, pix: QPixmap | None) -> None:
        self._preview_pixmap = pix
        if pix is None:
            self.preview.clear()
        else:
            self._fit_preview()

    def _fit_preview(self) -> None:
        """Show the picture at its size, or smaller to fit the label (keeping its proportions)."""
        pix = self._preview_pixmap
        if pix is None or pix.isNull():
            return
        room = self.preview.contentsRect().size()
        if pix.width() > room.width() or pix.height() > room.height():
            pix = pix.scaled(room, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        self.preview.setPixmap(pix)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is self.preview and event.type() == QEvent.Type.Resize:
            self._fit_preview()
        return super().eventFilter(watched, event)

    def _load_preview(self, path: str) -> None:
        from transfer_studio.ui.thumbnails import decode_thumbnail

        if self._closing:
            return
        def done(image: Any, p: str = path) -> None:
            if p != self.current_path():
                return
            if image is None:
                self._set_preview(None)
                self.preview.setText("This file cannot be shown")
                return
            hm_wanted = self.heatmap_box.isChecked() and self.info is not None and \
                (self.info.key, p) in self.heatmaps
            if not hm_wanted:
                self._set_preview(QPixmap.fromImage(image))

        self._preview_task = run_task(decode_thumbnail, path, PREVIEW, name="try-preview", pass_control=False,
                                      needs_torch=False, on_result=done)

    def _maybe_heatmap(self) -> None:
        path = self._pending_heatmap
        info = self.info
        if path is None or info is None or not self.heatmap_box.isChecked() or self._closing:
            return
        if info.kind == "pretrained" or info.key in self.notes or path in self.unreadable:
            self._pending_heatmap = None  # Grad-CAM explains the trained model's answer
            return
        if self._task is not None and self._task.is_running():
            return  # after the running task (_on_task_finished -> refresh -> here)
        self._pending_heatmap = None
        handle = run_task(heatmap_task, self.cache, info, path, name="try-heatmap",
                          on_result=self._on_heatmap, on_error=self._on_heatmap_error,
                          on_finished=self._on_task_finished)
        self._task = handle
        self.busy_indicator.start("Computing the heat map…", handle=handle)

    def _on_heatmap(self, hm: HeatMap) -> None:
        self.heatmaps[(hm.key, hm.path)] = hm
        if hm.path == self.current_path():
            self._show_preview(hm.path)

    def _on_heatmap_error(self, message: str, details: str) -> None:
        self.banner.show_message(f"No heat map: {message}", "warning", details=details or None)

    def _on_topk(self, value: int) -> None:
        if not self._loading:
            self._save_ui(try_top_k=int(value))
        self._show_current()

    def _on_heatmap_toggled(self, on: bool) -> None:
        if self._loading:
            return
        self._save_ui(try_heatmap=bool(on))
        path = self.current_path()
        if path is not None:
            self._show_preview(path)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.refresh()

    # -- page protocol ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        self._closing = True  # no task starts after this
        wait_for_tasks([self._task, self._preview_task])
        self._thumbs.loader.shutdown()
        self.cache.clear()


__all__ = ["ModelCache", "TopKBars", "TryPage", "expand_paths", "heatmap_task", "predict_task"]
