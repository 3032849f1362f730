"""Augment page: choose how training images are varied, and see it on the user's own images.

The controls are generated from ``core.augment.preset_params`` (one group per transform: enable +
its strength/probability values). Choices land in ``project.augment`` as the preset plus only the
values that differ from it. The preview grid is rendered with ``core.augment.preview`` on a worker
thread, debounced while the user drags a slider, and converted to pixmaps on the GUI thread.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QImage, QPixmap, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.config import mark_user_set
from transfer_studio.errors import Cancelled, UserError
from transfer_studio.ui.runtime import import_core
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import BusyIndicator, EmptyState, MessageBanner
from transfer_studio.ui.widgets.heading import page_heading
from transfer_studio.ui.worker import TaskHandle, run_task, wait_for_tasks

PRESET_TEXT = {
    "none": "none — the images as they are",
    "light": "light — flips and random crops",
    "medium": "medium — + colour changes and small rotations",
    "strong": "strong — + automatic augmentation and erasing",
}
DEBOUNCE_MS = 150
DISPLAY_SIZE = 160  # rendered preview size, pixels (tiles are scaled to fit the width)
MAX_IMAGES = 4  # rows of the preview grid


@dataclass
class PreviewRow:
    path: str
    original: QImage | None  # what validation sees (resize + centre crop)
    samples: list[QImage] = field(default_factory=list)
    error: str | None = None


def _to_qimage(array: Any, size: int) -> QImage:
    h, w = array.shape[:2]
    image = QImage(array.tobytes(), w, h, 3 * w, QImage.Format.Format_RGB888)
    return image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation).copy()


def render_previews(project: Any, paths: list[str], n: int, seed: int, display: int = DISPLAY_SIZE,
                    progress: Any = None, cancel: Any = None) -> list[PreviewRow]:
    """For each image: the validation view and ``n`` augmented training versions (worker thread)."""
    augment, network = import_core("augment"), import_core("network")
    load_rgb = import_core("imageio").load_rgb
    preprocess = network.project_preprocess(project)
    augment.resolve_params(project.augment)  # a bad saved value: one clear UserError before any work
    evaluation = augment.build_transform(preprocess, None, train=False)
    rows: list[PreviewRow] = []
    for k, path in enumerate(paths):
        if cancel is not None and cancel():
            raise Cancelled()
        try:
            image = load_rgb(path)
        except UserError as exc:
            rows.append(PreviewRow(path, None, [], str(exc)))
            continue
        original = _to_qimage(augment.denormalize(evaluation(image), preprocess), display)
        samples = augment.preview(image, preprocess, project.augment, n=n, seed=seed + 7919 * k)
        rows.append(PreviewRow(path, original, [_to_qimage(a, display) for a in samples]))
        if progress is not None:
            progress(k + 1, len(paths))
    return rows


def _discard(widget: QWidget) -> None:
    """Remove a widget at once (hidden, detached) and delete it when control returns to the loop."""
    widget.hide()
    widget.setParent(None)
    widget.deleteLater()


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def augment_info(spec: Any) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Every preset's editable transforms (``preset_params``) and why ``spec`` is invalid, if it is.

    Runs on a worker thread: ``core.augment`` imports torch and torchvision.
    """
    augment = import_core("augment")
    schemas = {preset: augment.preset_params(preset) for preset in augment.PRESETS}
    try:
        augment.resolve_params(spec)
        problem = None
    except UserError as exc:
        problem = str(exc)
    return schemas, problem


class _FieldControl:
    """One editable value: a slider (numbers) or a combo box (choices), with its value label."""

    def __init__(self, name: str, key: str, spec: dict[str, Any], on_change: Any):
        self.key = key
        self.spec = spec
        self.kind = spec["type"]
        self.value_label = QLabel()
        self.value_label.setObjectName(f"augment_{name}_{key}_value")
        self.value_label.setMinimumWidth(44)
        self.value_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if self.kind == "choice":
            self.widget: QWidget = QComboBox()
            for choice in spec["choices"]:
                self.widget.addItem(choice.replace("_", " "), choice)
            self.widget.currentIndexChanged.connect(lambda _i: on_change(key, self.value()))
        else:
            slider = QSlider(Qt.Orientation.Horizontal)
            self.step = float(spec.get("step") or (1 if self.kind == "int" else 0.01))
            slider.setRange(0, round((spec["max"] - spec["min"]) / self.step))
            slider.valueChanged.connect(lambda _v: self._changed(on_change))
            self.widget = slider
        self.widget.setObjectName(f"augment_{name}_{key}")
        self.widget.setToolTip(spec["label"])

    def _changed(self, on_change: Any) -> None:
        self.value_label.setText(self.text())
        on_change(self.key, self.value())

    def value(self) -> Any:
        if self.kind == "choice":
            return self.widget.currentData()
        raw = self.spec["min"] + self.widget.value() * self.step
        raw = min(max(raw, self.spec["min"]), self.spec["max"])
        return int(round(raw)) if self.kind == "int" else round(raw, 6)

    def set_value(self, value: Any) -> None:
        if self.kind == "choice":
            self.widget.setCurrentIndex(max(0, self.widget.findData(value)))
        else:
            value = min(max(float(value), self.spec["min"]), self.spec["max"])
            self.widget.setValue(round((value - self.spec["min"]) / self.step))
            self.value_label.setText(self.text(value))

    def text(self, value: Any = None) -> str:
        value = self.value() if value is None else value
        if self.kind == "int":
            return str(int(value))
        if self.spec["max"] <= 1.0 and self.key in ("p", "strength", "scale_min", "max_area"):
            return f"{100 * float(value):.0f} %"
        return f"{float(value):.2f}".rstrip("0").rstrip(".") if self.step < 1 else f"{float(value):.0f}"


class PreviewGrid(QWidget):
    """Rows of images: the validation view, then the augmented training versions.

    Tiles shrink or grow with the available width (``fit``) so a row never needs scrolling sideways.
    """

    MIN_TILE, MAX_TILE = 64, DISPLAY_SIZE

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("augment_preview")
        self.grid = QGridLayout(self)
        self.grid.setSpacing(6)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.rows: list[PreviewRow] = []
        self._tiles: list[tuple[QLabel, QPixmap]] = []
        self._width = 800
        self.tile = DISPLAY_SIZE

    def set_rows(self, rows: list[PreviewRow]) -> None:
        self.rows = rows
        self._tiles = []
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget() is not None:
                _discard(item.widget())
        if not rows:
            return
        head = QLabel("Validation sees")
        head.setProperty("role", "muted")
        self.grid.addWidget(head, 0, 0)
        n = max((len(r.samples) for r in rows), default=0)
        train_head = QLabel(f"{n} random training versions (a new draw every epoch)")
        train_head.setProperty("role", "muted")
        self.grid.addWidget(train_head, 0, 1, 1, max(1, n))
        for r, row in enumerate(rows, start=1):
            if row.error:
                err = QLabel(f"{Path(row.path).name}: {row.error}")
                err.setWordWrap(True)
                self.grid.addWidget(err, r, 0, 1, max(1, n + 1))
                continue
            self.grid.addWidget(self._tile(row.original, row.path, original=True), r, 0)
            for c, image in enumerate(row.samples, start=1):
                self.grid.addWidget(self._tile(image, row.path), r, c)
        self.fit(self._width)

    def fit(self, width: int) -> None:
        """Size the tiles so that the validation image and every version fit in ``width`` pixels."""
        self._width = max(1, width)
        columns = 1 + max((len(r.samples) for r in self.rows), default=0)
        spacing = self.grid.horizontalSpacing() * columns + 24
        self.tile = int(min(self.MAX_TILE, max(self.MIN_TILE, (self._width - spacing) // columns - 4)))
        for label, pixmap in self._tiles:
            label.setFixedSize(self.tile + 4, self.tile + 4)
            if not pixmap.isNull():
                label.setPixmap(pixmap.scaled(self.tile, self.tile, Qt.AspectRatioMode.KeepAspectRatio,
                                              Qt.TransformationMode.SmoothTransformation))

    def _tile(self, image: QImage | None, path: str, original: bool = False) -> QLabel:
        label = QLabel()
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setToolTip(path + ("\n(as validation sees it)" if original else ""))
        if original:
            label.setStyleSheet("QLabel { border: 2px solid palette(highlight); }")
        self._tiles.append((label, QPixmap.fromImage(image) if image is not None else QPixmap()))
        return label

    def images(self) -> list[QImage]:
        """Every augmented image shown (tests, screenshots)."""
        return [img for row in self.rows for img in row.samples]


class AugmentPage(QWidget):
    TITLE = "Augment"

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_augment")
        self.state = state
        self.seed = 0
        self.rows: list[PreviewRow] = []
        self._groups: dict[str, QGroupBox] = {}
        self._fields: dict[str, dict[str, _FieldControl]] = {}
        self._defaults: dict[str, dict[str, Any]] = {}  # the preset's values
        self._schemas: dict[str, dict[str, Any]] | None = None  # from augment_info, per preset
        self._info_task: TaskHandle | None = None
        self._info_token = 0
        self._loading = False
        self._writing = False
        self._stale = True
        self._task: TaskHandle | None = None
        self._token = 0
        self._build()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._render)
        state.projectReplaced.connect(self._load_from_project)
        state.projectChanged.connect(self._on_project_changed)
        state.scanChanged.connect(lambda _r: self._schedule_preview())
        self._load_from_project()

    # -- construction --------------------------------------------------------------------------
    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(16, 12, 16, 12)
        title, hint = page_heading(
            "Augment",
            "Augmentation shows the model a slightly different version of each training image every "
            "time, so it learns what matters rather than memorising pixels. Validation images are "
            "never augmented.")
        root.addWidget(title)
        root.addWidget(hint)

        self.preset_row = QWidget()
        self.preset_row.setObjectName("augment_preset_row")
        row = QHBoxLayout(self.preset_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Preset"))
        self.preset_combo = QComboBox()
        self.preset_combo.setObjectName("augment_preset")
        for key, text in PRESET_TEXT.items():
            self.preset_combo.addItem(text, key)
        self.preset_combo.currentIndexChanged.connect(self._on_preset_changed)
        self.reset_button = QPushButton("Reset to preset")
        self.reset_button.setObjectName("augment_reset")
        self.reset_button.setToolTip("Forget the changes made below and use the preset's values")
        self.reset_button.clicked.connect(self.reset_to_preset)
        self.override_label = QLabel()
        self.override_label.setObjectName("augment_overrides")
        self.override_label.setProperty("role", "muted")
        row.addWidget(self.preset_combo)
        row.addWidget(self.reset_button)
        row.addWidget(self.override_label, 1)
        root.addWidget(self.preset_row)

        self.banner = MessageBanner(object_name="augment_message")
        root.addWidget(self.banner)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        self.controls = QWidget()
        self.controls.setObjectName("augment_controls")
        self.controls_layout = QVBoxLayout(self.controls)
        self.controls_layout.setContentsMargins(0, 0, 8, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.controls)
        scroll.setMinimumWidth(340)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        splitter.addWidget(scroll)

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(8, 0, 0, 0)
        bar = QHBoxLayout()
        self.source_label = QLabel()
        self.source_label.setObjectName("augment_source")
        self.source_label.setWordWrap(True)
        self.choose_button = QPushButton("Choose images…")
        self.choose_button.setObjectName("augment_choose_images")
        self.choose_button.clicked.connect(self._choose_images)
        self.dataset_button = QPushButton("Use dataset images")
        self.dataset_button.setObjectName("augment_use_dataset")
        self.dataset_button.clicked.connect(lambda: self.set_images(None))
        self.count_spin = QSpinBox()
        self.count_spin.setObjectName("augment_count")
        self.count_spin.setRange(1, 12)
        self.count_spin.setValue(6)
        self.count_spin.setSuffix(" per image")
        self.count_spin.valueChanged.connect(lambda _v: self._schedule_preview())
        self.reshuffle_button = QPushButton("Reshuffle")
        self.reshuffle_button.setObjectName("augment_reshuffle")
        self.reshuffle_button.setToolTip("Draw new random versions")
        self.reshuffle_button.clicked.connect(self.reshuffle)
        bar.addWidget(self.source_label, 1)
        bar.addWidget(self.choose_button)
        bar.addWidget(self.dataset_button)
        bar.addWidget(self.count_spin)
        bar.addWidget(self.reshuffle_button)
        rl.addLayout(bar)
        self.busy_indicator = BusyIndicator(object_name="augment_busy")
        self.busy_indicator.cancelRequested.connect(self._cancel_render)
        rl.addWidget(self.busy_indicator)
        self.empty = EmptyState("augment", "No images to preview",
                                "Choose a dataset on the Data page, or pick a few images of your own.",
                                object_name="augment_empty")
        self.empty.add_action("Go to the Data page", lambda: self.state.navigateRequested.emit("data"),
                              object_name="augment_go_data")
        self.empty.add_action("Choose images…", self._choose_images, object_name="augment_empty_choose")
        rl.addWidget(self.empty, 1)
        self.grid = PreviewGrid()
        self.preview_scroll = QScrollArea()
        self.preview_scroll.setWidgetResizable(True)
        self.preview_scroll.setWidget(self.grid)
        self.preview_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.preview_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.preview_scroll.viewport().installEventFilter(self)
        rl.addWidget(self.preview_scroll, 1)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([360, 800])
        root.addWidget(splitter, 1)

    def _build_controls(self, preset: str) -> None:
        """(Re)create one group per transform from the core's description of ``preset``."""
        while self.controls_layout.count():
            item = self.controls_layout.takeAt(0)
            if item.widget() is not None:
                _discard(item.widget())
        self._groups.clear()
        self._fields.clear()
        described = self._schemas[preset] if self._schemas else {}
        self._defaults = {name: {k: f["value"] for k, f in spec["fields"].items()}
                          for name, spec in described.items()}
        for name, spec in described.items():
            group = QGroupBox(spec["label"])
            group.setObjectName(f"augment_{name}")
            group.setCheckable(True)
            group.setToolTip(spec["help"])
            group.toggled.connect(lambda on, n=name: self._on_field_changed(n, "enabled", bool(on)))
            lay = QGridLayout(group)
            help_label = QLabel(spec["help"])
            help_label.setWordWrap(True)
            help_label.setProperty("role", "muted")
            lay.addWidget(help_label, 0, 0, 1, 3)
            self._fields[name] = {}
            r = 1
            for key, fspec in spec["fields"].items():
                if key == "enabled":
                    continue
                control = _FieldControl(name, key, fspec, lambda k, v, n=name: self._on_field_changed(n, k, v))
                self._fields[name][key] = control
                lay.addWidget(QLabel(fspec["label"]), r, 0, 1, 3)
                lay.addWidget(control.widget, r + 1, 0, 1, 2)
                lay.addWidget(control.value_label, r + 1, 2)
                r += 2
            self._groups[name] = group
            self.controls_layout.addWidget(group)
        self.controls_layout.addStretch(1)

    # -- public API ----------------------------------------------------------------------------
    def reshuffle(self) -> None:
        """New random versions of the same images."""
        self.seed = random.randrange(1, 2**31 - 1)
        self._schedule_preview(immediate=True)

    def reset_to_preset(self) -> None:
        spec = self.state.project.augment
        if spec.params:
            spec.params = {}
            self._write("augment")
            self._schedule_preview(immediate=True)
        if self.banner.level() == "warning":
            self.banner.clear()
        self._show_values()

    def set_images(self, paths: list[str] | None) -> None:
        """Preview these images (None: a few from the scanned dataset). Saved in the project."""
        ui = self.state.project.ui
        if paths:
            ui.augment_images = [str(p) for p in paths][:MAX_IMAGES]
        elif ui.augment_images:
            ui.augment_images = []
        else:
            self._schedule_preview(immediate=True)
            return
        self._write("ui")
        self._schedule_preview(immediate=True)

    def preview_paths(self) -> list[str]:
        chosen = self.state.project.ui.augment_images
        if chosen:
            return [str(p) for p in chosen][:MAX_IMAGES]
        report = self.state.scan
        if report is None:
            return []
        # The first image of each of the first few classes: different subjects, stable choice.
        first: dict[int, str] = {}
        for rel, label in zip(report.files, report.labels, strict=True):
            if label not in first:
                first[label] = rel
                if len(first) == min(3, len(report.classes)):
                    break
        return [str(Path(report.root) / first[k]) for k in sorted(first)]

    def busy(self) -> bool:
        return self._task is not None and self._task.is_running()

    def shutdown(self) -> None:
        self._timer.stop()
        wait_for_tasks([self._task, self._info_task])

    # -- the project ---------------------------------------------------------------------------
    def _load_from_project(self) -> None:
        """Show the project's choices; the transforms' description and a check of the saved values
        come from a background task (the core imports torch)."""
        spec = self.state.project.augment
        preset = spec.preset if spec.preset in PRESET_TEXT else "light"
        self._loading = True
        try:
            self.preset_combo.setCurrentIndex(self.preset_combo.findData(preset))
        finally:
            self._loading = False
        self.banner.clear()
        if self._info_task is not None:
            self._info_task.cancel()
        self._info_token += 1
        token = self._info_token
        self.preset_combo.setEnabled(self._schemas is not None)
        self._info_task = run_task(
            augment_info, copy.deepcopy(spec), name="augment-info", pass_control=False,
            on_result=lambda r: self._on_info(token, r),
            on_error=lambda m, tb: self._on_info_error(token, m))
        if self._schemas is not None:
            self._rebuild(preset)
        self._schedule_preview()

    def _on_info(self, token: int, result: tuple[dict[str, Any], str | None]) -> None:
        if token != self._info_token:
            return
        first = self._schemas is None
        self._schemas, problem = result
        self.preset_combo.setEnabled(True)
        if first:
            self._rebuild(self.preset_combo.currentData())
        if problem:
            spec = self.state.project.augment
            self.banner.show_message(f"The project's augmentation settings are invalid ({problem}); the "
                                     f"controls show the '{spec.preset}' preset's values where they do not "
                                     "fit. Change them or press \"Reset to preset\".", "warning")

    def _on_info_error(self, token: int, message: str) -> None:
        if token == self._info_token:
            self.banner.show_message(f"Could not load the augmentation settings: {message}", "error")

    def _rebuild(self, preset: str) -> None:
        self._loading = True
        try:
            self._build_controls(preset)
        finally:
            self._loading = False
        self._show_values()

    def _show_values(self) -> None:
        """Controls show the preset's values with the project's overrides applied (values that do not
        fit a control are left at the preset's; the background check names them)."""
        spec = self.state.project.augment
        values = copy.deepcopy(self._defaults)
        overrides = spec.params if isinstance(spec.params, dict) else {}
        for name, fields in overrides.items():
            if name in values and isinstance(fields, dict):
                for key, value in fields.items():
                    if key in values[name] and _same_kind(value, values[name][key]):
                        values[name][key] = value
        self._loading = True
        try:
            for name, group in self._groups.items():
                group.setChecked(bool(values[name]["enabled"]))
                for key, control in self._fields[name].items():
                    control.set_value(values[name][key])
        finally:
            self._loading = False
        n = sum(len(v) for v in overrides.values() if isinstance(v, dict))
        self.override_label.setText(f"{n} setting{'s' if n != 1 else ''} changed from the preset" if n else "")
        self.reset_button.setEnabled(n > 0)

    def _on_preset_changed(self, _index: int) -> None:
        if self._loading:
            return
        preset = self.preset_combo.currentData()
        spec = self.state.project.augment
        spec.preset = preset
        spec.params = {}  # a new preset starts from its own values
        self._rebuild(preset)
        self.banner.clear()
        self._write("augment")
        self._schedule_preview()

    def _on_field_changed(self, name: str, key: str, value: Any) -> None:
        if self._loading:
            return
        params = self.state.project.augment.params
        overrides = dict(params.get(name, {}))
        default = self._defaults.get(name, {}).get(key)
        same = value == default or (isinstance(value, float) and isinstance(default, (int, float))
                                    and abs(value - float(default)) < 1e-9)
        if same:
            overrides.pop(key, None)
        else:
            overrides[key] = value
        if overrides:
            params[name] = overrides
        else:
            params.pop(name, None)
        n = sum(len(v) for v in params.values())
        self.override_label.setText(f"{n} setting{'s' if n != 1 else ''} changed from the preset" if n else "")
        self.reset_button.setEnabled(n > 0)
        self._write("augment")
        self._schedule_preview()

    def _write(self, section: str) -> None:
        if section == "augment":
            # Chosen by the user: strategy Auto keeps this augmentation (train.user_set).
            mark_user_set(self.state.project.train, "augment")
        self._writing = True
        try:
            self.state.mark_changed(section)
            if section == "augment":
                self.state.mark_changed("train")
        finally:
            self._writing = False

    def _on_project_changed(self, section: str) -> None:
        if self._writing:
            return
        if section == "augment":  # e.g. the Strategy page applied its suggested preset
            self._load_from_project()
        elif section in ("model", "train", "ui"):
            self._schedule_preview()  # the model's input size or the chosen images may have changed

    # -- preview -------------------------------------------------------------------------------
    def _choose_images(self) -> None:
        from transfer_studio.ui.settings import Settings

        settings = Settings()
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Choose images to preview", settings.last_folder("images"),
            "Images (*.jpg *.jpeg *.png *.bmp *.gif *.webp *.tif *.tiff);;All files (*)")
        if paths:
            settings.set_last_folder("images", str(Path(paths[0]).parent))
            self.set_images(paths)

    def _schedule_preview(self, immediate: bool = False) -> None:
        self._stale = True
        if not self.isVisible():
            return  # rendered when the page is shown
        self._timer.start(0 if immediate else DEBOUNCE_MS)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.preview_scroll.viewport() and event.type() == QEvent.Type.Resize:
            self.grid.fit(self.preview_scroll.viewport().width())
        return super().eventFilter(watched, event)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self._timer.start(0)

    def _cancel_render(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _render(self) -> None:
        paths = self.preview_paths()
        chosen = bool(self.state.project.ui.augment_images)
        self.dataset_button.setEnabled(chosen and self.state.scan is not None)
        if not paths:
            self.source_label.setText("")
            self.empty.show()
            self.preview_scroll.hide()
            self.rows = []
            self.grid.set_rows([])
            self._stale = False
            return
        self.empty.hide()
        self.preview_scroll.show()
        self.source_label.setText(
            f"{len(paths)} image{'s' if len(paths) != 1 else ''} you chose" if chosen
            else f"{len(paths)} images from the dataset (one per class)")
        if self._task is not None:
            self._task.cancel()
        self._token += 1
        token = self._token
        self._stale = False
        self._task = run_task(
            render_previews, self.state.project.copy(), paths, self.count_spin.value(), self.seed,
            name="augment-preview",
            on_result=lambda rows: self._on_rows(token, rows),
            on_error=lambda m, tb: self._on_error(token, m),
            on_finished=lambda: self._on_finished(token),
        )
        self.busy_indicator.start("Rendering preview…", handle=self._task)

    def _on_rows(self, token: int, rows: list[PreviewRow]) -> None:
        if token != self._token:
            return
        self.rows = rows
        self.grid.fit(self.preview_scroll.viewport().width())
        self.grid.set_rows(rows)
        if self.banner.level() == "error":
            self.banner.clear()

    def _on_error(self, token: int, message: str) -> None:
        if token == self._token:
            self.banner.show_message(f"Could not render the preview: {message}", "error")

    def _on_finished(self, token: int) -> None:
        if token == self._token:
            self.busy_indicator.stop()
