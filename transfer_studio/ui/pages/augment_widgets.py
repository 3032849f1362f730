"""The Augment page's widgets (``ui.pages.augment``): built here, bound to its model there.

The value controls are generated from the core's description of a preset (``build_controls``): one
checkable group per transform, a slider (numbers) or a combo box (choices) per value. The preview
grid's tiles fit the available width.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
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

from transfer_studio.ui.models.augment_model import (
    DEFAULT_COUNT,
    EMPTY_TEXT,
    EMPTY_TITLE,
    PRESET_TEXT,
    PreviewRow,
    field_position,
    field_steps,
    field_text,
    field_value,
)
from transfer_studio.ui.widgets import BusyIndicator, EmptyState, MessageBanner
from transfer_studio.ui.widgets.heading import page_heading

if TYPE_CHECKING:
    from transfer_studio.ui.pages.augment import AugmentPage

DISPLAY_SIZE = 160  # rendered preview size, pixels (tiles are scaled to fit the width)


def to_qimage(array: Any, size: int = DISPLAY_SIZE) -> QImage:
    """An HxWx3 uint8 array as an image of at most ``size`` pixels (worker thread: no pixmaps)."""
    h, w = array.shape[:2]
    image = QImage(array.tobytes(), w, h, 3 * w, QImage.Format.Format_RGB888)
    return image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation).copy()


def discard(widget: QWidget) -> None:
    """Remove a widget at once (hidden, detached) and delete it when control returns to the loop."""
    widget.hide()
    widget.setParent(None)
    widget.deleteLater()


class FieldControl:
    """One editable value: a slider (numbers) or a combo box (choices), with its value label."""

    def __init__(self, name: str, key: str, spec: dict[str, Any], on_change: Callable[[str, Any], None]):
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
            slider.setRange(0, field_steps(spec))
            slider.valueChanged.connect(lambda _v: self._changed(on_change))
            self.widget = slider
        self.widget.setObjectName(f"augment_{name}_{key}")
        self.widget.setToolTip(spec["label"])

    def _changed(self, on_change: Callable[[str, Any], None]) -> None:
        self.value_label.setText(self.text())
        on_change(self.key, self.value())

    def value(self) -> Any:
        if self.kind == "choice":
            return self.widget.currentData()
        return field_value(self.spec, self.widget.value())

    def set_value(self, value: Any) -> None:
        if self.kind == "choice":
            self.widget.setCurrentIndex(max(0, self.widget.findData(value)))
        else:
            self.widget.setValue(field_position(self.spec, value))
            self.value_label.setText(self.text(min(max(float(value), self.spec["min"]), self.spec["max"])))

    def text(self, value: Any = None) -> str:
        return field_text(self.key, self.spec, self.value() if value is None else value)


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
                discard(item.widget())
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


def build(page: AugmentPage) -> None:
    """The page's widgets, connected to the page's methods (the value controls: ``build_controls``)."""
    root = QVBoxLayout(page)
    root.setContentsMargins(16, 12, 16, 12)
    title, hint = page_heading(
        "Augment",
        "Augmentation shows the model a slightly different version of each training image every "
        "time, so it learns what matters rather than memorising pixels. Validation images are "
        "never augmented.")
    root.addWidget(title)
    root.addWidget(hint)

    page.preset_row = QWidget()
    page.preset_row.setObjectName("augment_preset_row")
    row = QHBoxLayout(page.preset_row)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(QLabel("Preset"))
    page.preset_combo = QComboBox()
    page.preset_combo.setObjectName("augment_preset")
    for key, text in PRESET_TEXT.items():
        page.preset_combo.addItem(text, key)
    page.preset_combo.currentIndexChanged.connect(page._on_preset_changed)
    page.reset_button = QPushButton("Reset to preset")
    page.reset_button.setObjectName("augment_reset")
    page.reset_button.setToolTip("Forget the changes made below and use the preset's values")
    page.reset_button.clicked.connect(page.reset_to_preset)
    page.override_label = QLabel()
    page.override_label.setObjectName("augment_overrides")
    page.override_label.setProperty("role", "muted")
    row.addWidget(page.preset_combo)
    row.addWidget(page.reset_button)
    row.addWidget(page.override_label, 1)
    root.addWidget(page.preset_row)

    page.banner = MessageBanner(object_name="augment_message")
    root.addWidget(page.banner)

    splitter = QSplitter(Qt.Orientation.Horizontal)
    splitter.setChildrenCollapsible(False)
    page.controls = QWidget()
    page.controls.setObjectName("augment_controls")
    page.controls_layout = QVBoxLayout(page.controls)
    page.controls_layout.setContentsMargins(0, 0, 8, 0)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(page.controls)
    scroll.setMinimumWidth(340)
    scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    splitter.addWidget(scroll)

    right = QWidget()
    rl = QVBoxLayout(right)
    rl.setContentsMargins(8, 0, 0, 0)
    bar = QHBoxLayout()
    page.source_label = QLabel()
    page.source_label.setObjectName("augment_source")
    page.source_label.setWordWrap(True)
    page.choose_button = QPushButton("Choose images…")
    page.choose_button.setObjectName("augment_choose_images")
    page.choose_button.clicked.connect(page._choose_images)
    page.dataset_button = QPushButton("Use dataset images")
    page.dataset_button.setObjectName("augment_use_dataset")
    page.dataset_button.clicked.connect(lambda: page.set_images(None))
    page.count_spin = QSpinBox()
    page.count_spin.setObjectName("augment_count")
    page.count_spin.setRange(1, 12)
    page.count_spin.setValue(DEFAULT_COUNT)
    page.count_spin.setSuffix(" per image")
    page.count_spin.valueChanged.connect(page.model.set_count)
    page.reshuffle_button = QPushButton("Reshuffle")
    page.reshuffle_button.setObjectName("augment_reshuffle")
    page.reshuffle_button.setToolTip("Draw new random versions")
    page.reshuffle_button.clicked.connect(page.reshuffle)
    bar.addWidget(page.source_label, 1)
    bar.addWidget(page.choose_button)
    bar.addWidget(page.dataset_button)
    bar.addWidget(page.count_spin)
    bar.addWidget(page.reshuffle_button)
    rl.addLayout(bar)
    page.busy_indicator = BusyIndicator(object_name="augment_busy")
    page.busy_indicator.cancelRequested.connect(page.model.cancel_preview)
    rl.addWidget(page.busy_indicator)
    page.empty = EmptyState("augment", EMPTY_TITLE, EMPTY_TEXT, object_name="augment_empty")
    page.empty.add_action("Go to the Data page", page.model.go_to_data, object_name="augment_go_data")
    page.empty.add_action("Choose images…", page._choose_images, object_name="augment_empty_choose")
    rl.addWidget(page.empty, 1)
    page.grid = PreviewGrid()
    page.preview_scroll = QScrollArea()
    page.preview_scroll.setWidgetResizable(True)
    page.preview_scroll.setWidget(page.grid)
    page.preview_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    page.preview_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    page.preview_scroll.viewport().installEventFilter(page)
    rl.addWidget(page.preview_scroll, 1)
    splitter.addWidget(right)
    splitter.setStretchFactor(0, 0)
    splitter.setStretchFactor(1, 1)
    splitter.setSizes([360, 800])
    root.addWidget(splitter, 1)


def build_controls(page: AugmentPage, transforms: dict[str, dict[str, Any]]) -> None:
    """(Re)create one group per transform (``page._groups``) and a control per value (``page._fields``)."""
    layout = page.controls_layout
    while layout.count():
        item = layout.takeAt(0)
        if item.widget() is not None:
            discard(item.widget())
    page._groups.clear()
    page._fields.clear()
    for name, spec in transforms.items():
        group = QGroupBox(spec["label"])
        group.setObjectName(f"augment_{name}")
        group.setCheckable(True)
        group.setToolTip(spec["help"])
        group.toggled.connect(lambda on, n=name: page._on_field_changed(n, "enabled", bool(on)))
        lay = QGridLayout(group)
        help_label = QLabel(spec["help"])
        help_label.setWordWrap(True)
        help_label.setProperty("role", "muted")
        lay.addWidget(help_label, 0, 0, 1, 3)
        page._fields[name] = {}
        r = 1
        for key, fspec in spec["fields"].items():
            if key == "enabled":
                continue
            control = FieldControl(name, key, fspec, lambda k, v, n=name: page._on_field_changed(n, k, v))
            page._fields[name][key] = control
            lay.addWidget(QLabel(fspec["label"]), r, 0, 1, 3)
            lay.addWidget(control.widget, r + 1, 0, 1, 2)
            lay.addWidget(control.value_label, r + 1, 2)
            r += 2
        page._groups[name] = group
        layout.addWidget(group)
    layout.addStretch(1)
