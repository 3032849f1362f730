"""Try page: classify your own pictures with the trained model, next to the original pretrained one.

Drop images or folders onto the page (or open them). For each picture the page shows the top-k
classes of the trained model (a run's best weights, or an exported bundle) as horizontal bars and,
side by side, what the original pretrained network says in its ImageNet classes — the difference
is what fine-tuning taught it. With "Heat map" on, a Grad-CAM overlay (``core.gradcam``) shows where
the trained model looked for its top class.

The page binds widgets to its model (``ui.models.try_model.TryModel``): the pictures, the answers,
the heat maps and the jobs that compute them (models load and predict on worker threads, one job at a
time, from a shared ``ModelCache``). The page keeps the run chooser, the thumbnails and the preview
(decoded off the GUI thread, scaled to its room). Page state in the project (view state):
``project.ui``'s ``try_run``, ``try_images``, ``try_top_k`` and ``try_heatmap``; the run chooser follows
the Train page's new run (``AppState.runSelected``) unless a run was chosen here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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

from transfer_studio.ui import theme
from transfer_studio.ui.models.try_model import (
    MAX_TOP_K,
    HeatMap,
    ModelCache,
    ModelInfo,
    TryModel,
    expand_paths,
    heatmap_task,
    predict_task,
)
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import BusyIndicator, EmptyState, MessageBanner
from transfer_studio.ui.widgets.gallery import caption_model_class, gallery_view
from transfer_studio.ui.widgets.heading import page_heading
from transfer_studio.ui.widgets.run_chooser import RunCombo, browse_start, default_run
from transfer_studio.ui.worker import TaskHandle, run_task, wait_for_tasks

PREVIEW = 360


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
        self.model = TryModel(state, run_task, source=lambda: self.source_combo.current_path(),
                              selected=self.current_path, shown=self.isVisible)
        self._preview_task: TaskHandle | None = None
        self._preview_for: tuple | None = None  # what the preview shows now
        self._loading = False
        self.setAcceptDrops(True)
        self._build()
        self._connect_model()
        state.projectReplaced.connect(self._load_from_project)
        state.projectChanged.connect(self._on_project_changed)
        state.runSelected.connect(self._refill_sources)  # the Train page's new run, unless one was chosen
        self._load_from_project()

    # The model's state, as tests and other code read it from the page.
    @property
    def paths(self) -> list[str]:
        return self.model.paths

    @property
    def info(self) -> ModelInfo | None:
        return self.model.info

    @property
    def cache(self) -> ModelCache:
        return self.model.cache

    @property
    def predictions(self) -> dict[tuple, dict[str, list[tuple[str, float]]]]:
        return self.model.predictions

    @property
    def unreadable(self) -> dict[str, str]:
        return self.model.unreadable

    @property
    def heatmaps(self) -> dict[tuple[tuple, str], HeatMap]:
        return self.model.heatmaps

    # -- construction ----------------------------------------------------------------------------
    def _build(self) -> None:
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
        model_cls = caption_model_class()
        self._thumbs = model_cls(ThumbnailLoader(72, threads=2, parent=self), self)
        self.image_list = gallery_view(self._thumbs, "try_images")
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

    def _connect_model(self) -> None:
        m = self.model
        m.message.connect(lambda text, level, details: self.banner.show_message(text, level, details=details))
        m.messageCleared.connect(self.banner.clear)
        m.busyStarted.connect(lambda label, job: self.busy_indicator.start(label, handle=job))
        m.busyStopped.connect(self.busy_indicator.stop)
        m.imagesChanged.connect(self._show_images)
        m.added.connect(self.imagesAdded.emit)
        m.currentChanged.connect(self._show_current)
        m.previewChanged.connect(self._show_preview)

    # -- project state ---------------------------------------------------------------------------
    def _load_from_project(self) -> None:
        self._loading = True
        try:
            ui = self.state.project.ui
            self.source_combo.fill(self.state.project, default_run(self.state.project, "try_run"))
            self.topk_spin.setValue(int(ui.try_top_k or 5))
            self.heatmap_box.setChecked(ui.try_heatmap)
        finally:
            self._loading = False
        self.model.top_k, self.model.heatmap_on = self.topk_spin.value(), self.heatmap_box.isChecked()
        self.model.load_from_project()

    def _on_project_changed(self, section: str) -> None:
        if self._loading:
            return
        if section == "model" and self.model.base_model_changed():
            return
        if section == "runs":
            self._refill_sources()

    def _refill_sources(self, *_: Any) -> None:
        if self._loading:
            return
        current = self.source_combo.current_path()
        self._loading = True
        try:
            self.source_combo.fill(self.state.project, default_run(self.state.project, "try_run"))
        finally:
            self._loading = False
        if current != self.source_combo.current_path():
            self._on_source_changed()

    # -- sources ---------------------------------------------------------------------------------
    def _on_source_changed(self, *_: Any) -> None:
        if self._loading:
            return
        path = self.source_combo.current_path()
        if path and self.state.project.ui.try_run != path and path != default_run(self.state.project):
            self.state.set_view_state(try_run=path)
        self.model.source_changed()

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
        self.state.set_view_state(try_run=path)
        self._on_source_changed()

    # -- images ----------------------------------------------------------------------------------
    def add_paths(self, items: Iterable[str]) -> int:
        """Add image files (and the images inside folders); returns how many were new."""
        return self.model.add_paths(items)

    def clear_images(self) -> None:
        self.model.clear_images()

    def _show_images(self, select: str | None) -> None:
        paths = self.model.paths
        self._thumbs.set_captioned(paths, [Path(p).name for p in paths], paths)
        self.stack.setCurrentIndex(1 if paths else 0)
        if select is not None:
            self.select_path(select)

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
        paths = self.model.paths
        if idx.isValid() and 0 <= idx.row() < len(paths):
            return paths[idx.row()]
        return None

    def select_path(self, path: str) -> None:
        self.image_list.setCurrentIndex(self._thumbs.index(self.model.paths.index(path)))

    # -- inference -------------------------------------------------------------------------------
    def busy(self) -> bool:
        return self.model.busy() or (self._preview_task is not None and self._preview_task.is_running())

    def refresh(self, *, retry: bool = False) -> TaskHandle | None:
        """Predict the images that have no answer yet (one task at a time; runs again when it ends).

        After a failed task nothing restarts by itself until ``retry`` (new images, another model).
        """
        return self.model.refresh(retry=retry)

    # -- showing the selected image ---------------------------------------------------------------
    def _show_current(self) -> None:
        path = self.current_path()
        if path is None:
            self._preview_for = None
            self._set_preview(None)
            self.preview_caption.setText("")
            for col in (self.trained_col, self.pretrained_col):
                col.bars.set_predictions([])
                col.show_note("")
            return
        for col, view in zip((self.trained_col, self.pretrained_col), self.model.columns(path), strict=True):
            if view.title is not None:
                col.setTitle(view.title)
            col.bars.set_predictions(view.rows)
            col.show_note(view.note, rich=view.rich)
        self._show_preview(path)

    def _show_preview(self, path: str) -> None:
        hm = self.model.heatmap_for(path)
        if hm is not None:
            if self._preview_for != ("heat", hm.key, path):
                self._preview_for = ("heat", hm.key, path)
                pix = QPixmap.fromImage(_numpy_to_qimage(hm.overlay))
                self._set_preview(pix.scaled(PREVIEW, PREVIEW, Qt.AspectRatioMode.KeepAspectRatio,
                                             Qt.TransformationMode.SmoothTransformation))
                self.preview_caption.setText(f"Where the model looked for “{hm.label}” ({hm.score:.0%}) — "
                                             f"Grad-CAM on {hm.layer}, on the crop the model sees")
            return
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

        if self.model.closing:
            return

        def done(image: Any, p: str = path) -> None:
            if p != self.current_path():
                return
            if image is None:
                self._set_preview(None)
                self.preview.setText("This file cannot be shown")
                return
            if not self.model.has_heatmap(p):
                self._set_preview(QPixmap.fromImage(image))

        self._preview_task = run_task(decode_thumbnail, path, PREVIEW, name="try-preview", pass_control=False,
                                      needs_torch=False, on_result=done)

    def _on_topk(self, value: int) -> None:
        self.model.set_top_k(value, remember=not self._loading)

    def _on_heatmap_toggled(self, on: bool) -> None:
        if not self._loading:
            self.model.set_heatmap(on)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.model.refresh()

    # -- page protocol ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        self.model.closing = True  # no task starts after this
        wait_for_tasks([self.model.job, self._preview_task])
        self._thumbs.loader.shutdown()
        self.model.cache.clear()


__all__ = ["ModelCache", "TopKBars", "TryPage", "expand_paths", "heatmap_task", "predict_task"]
