"""Augment page: choose how training images are varied, and see it on the user's own images.

The page binds widgets (built in ``augment_widgets``: one group per transform, generated from
``core.augment.preset_params``) to its model (``ui.models.augment_model``), which keeps the project's
choices as the preset plus only the values that differ from it, records each change as an undoable
step, and renders the preview grid (``core.augment.preview``) on a worker thread. The page owns the
short delay before rendering while the user drags a slider, turns the rendered images into pixmaps on
the GUI thread, and asks for images of the user's own.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QFileDialog, QGroupBox, QWidget

from transfer_studio.ui.models.augment_model import AugmentModel, PreviewRow
from transfer_studio.ui.pages import augment_widgets as w
from transfer_studio.ui.state import AppState
from transfer_studio.ui.worker import run_task, wait_for_tasks

DEBOUNCE_MS = 150


class AugmentPage(QWidget):
    TITLE = "Augment"

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_augment")
        self.state = state
        self.model = AugmentModel(state, run_task, convert=partial(w.to_qimage, size=w.DISPLAY_SIZE))
        self._groups: dict[str, QGroupBox] = {}
        self._fields: dict[str, dict[str, w.FieldControl]] = {}
        self._loading = False  # filling widgets from the model: don't write back
        w.build(self)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.model.render)
        self._connect_model()
        self.model.load_from_project()

    @property
    def rows(self) -> list[PreviewRow]:
        """The preview's rows: the validation view and the augmented versions of each image."""
        return self.model.rows

    # -- public API ----------------------------------------------------------------------------
    def reshuffle(self) -> None:
        """New random versions of the same images."""
        self.model.reshuffle()

    def reset_to_preset(self) -> None:
        self.model.reset_to_preset()

    def set_images(self, paths: list[str] | None) -> None:
        """Preview these images (None: a few from the scanned dataset). Saved in the project."""
        self.model.set_images(paths)

    def preview_paths(self) -> list[str]:
        return self.model.preview_paths()

    def busy(self) -> bool:
        return self.model.busy()

    def shutdown(self) -> None:
        self._timer.stop()
        wait_for_tasks([self.model.preview_job, self.model.info_job])

    # -- user actions -> model -----------------------------------------------------------------
    def _on_preset_changed(self, _index: int) -> None:
        if not self._loading:
            self.model.set_preset(self.preset_combo.currentData())

    def _on_field_changed(self, name: str, key: str, value: Any) -> None:
        if not self._loading:
            self.model.set_field(name, key, value)

    def _choose_images(self) -> None:
        from transfer_studio.ui.settings import Settings

        settings = Settings()
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Choose images to preview", settings.last_folder("images"),
            "Images (*.jpg *.jpeg *.png *.bmp *.gif *.webp *.tif *.tiff);;All files (*)")
        if paths:
            settings.set_last_folder("images", str(Path(paths[0]).parent))
            self.model.set_images(paths)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.preview_scroll.viewport() and event.type() == QEvent.Type.Resize:
            self.grid.fit(self.preview_scroll.viewport().width())
        return super().eventFilter(watched, event)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self.model.stale:
            self._timer.start(0)

    # -- model -> widgets ----------------------------------------------------------------------
    def _connect_model(self) -> None:
        m = self.model
        m.message.connect(self.banner.show_message)
        m.messageCleared.connect(self.banner.clear)
        m.presetShown.connect(self._show_preset)
        m.controlsChanged.connect(self._build_controls)
        m.valuesChanged.connect(self._show_values)
        m.overridesChanged.connect(self._show_overrides)
        m.previewDue.connect(self._on_preview_due)
        m.sourceChanged.connect(self._show_source)
        m.emptied.connect(self._show_empty)
        m.contentShown.connect(self._show_content)
        m.rowsChanged.connect(self._show_rows)
        m.busyStarted.connect(lambda label, job: self.busy_indicator.start(label, handle=job))
        m.busyStopped.connect(self.busy_indicator.stop)

    def _show_preset(self, preset: str, enabled: bool) -> None:
        self._loading = True
        try:
            self.preset_combo.setCurrentIndex(self.preset_combo.findData(preset))
        finally:
            self._loading = False
        self.preset_combo.setEnabled(enabled)

    def _build_controls(self) -> None:
        self._loading = True
        try:
            w.build_controls(self, self.model.transforms())
        finally:
            self._loading = False

    def _show_values(self) -> None:
        """Controls show the preset's values with the project's overrides applied."""
        values = self.model.values()
        self._loading = True
        try:
            for name, group in self._groups.items():
                group.setChecked(bool(values[name]["enabled"]))
                for key, control in self._fields[name].items():
                    control.set_value(values[name][key])
        finally:
            self._loading = False
        self._show_overrides()

    def _show_overrides(self) -> None:
        self.override_label.setText(self.model.overrides_text())
        self.reset_button.setEnabled(self.model.override_count() > 0)

    def _on_preview_due(self, immediate: bool) -> None:
        if self.isVisible():  # else rendered when the page is shown
            self._timer.start(0 if immediate else DEBOUNCE_MS)

    def _show_source(self, text: str, dataset_enabled: bool) -> None:
        self.source_label.setText(text)
        self.dataset_button.setEnabled(dataset_enabled)

    def _show_empty(self) -> None:
        self.empty.show()
        self.preview_scroll.hide()
        self.grid.set_rows([])

    def _show_content(self) -> None:
        self.empty.hide()
        self.preview_scroll.show()

    def _show_rows(self) -> None:
        self.grid.fit(self.preview_scroll.viewport().width())
        self.grid.set_rows(self.model.rows)
