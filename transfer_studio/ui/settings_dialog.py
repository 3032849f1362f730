"""Settings dialog (Edit → Settings…): this machine's defaults and the colour theme.

Device, data-loader workers, the weights, runs and feature-cache folders are machine defaults
(``transfer_studio.machine_settings``): a JSON file the CLI reads too, applied only where a project
says auto (``training.device.machine_default``). The theme is window comfort and stays in
QSettings (``ui.settings``), like the View → Theme menu. Nothing is stored until OK; "Reset to
Defaults" only fills the fields with the defaults.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from transfer_studio import machine_settings as ms
from transfer_studio.errors import UserError
from transfer_studio.ui.settings import Settings
from transfer_studio.ui.widgets import MessageBanner

DEVICE_CHOICES = [
    ("auto", "Auto (best available: CUDA GPU, then Apple MPS, then CPU)"),
    ("cpu", "CPU"),
    ("cuda", "CUDA GPU (the first one)"),
    ("mps", "Apple MPS (Apple silicon GPU)"),
]
THEME_CHOICES = [("system", "Follow the system"), ("light", "Light"), ("dark", "Dark")]


class SettingsDialog(QDialog):
    """Edit the machine defaults and the theme. ``values()`` / ``theme()`` hold what the fields say."""

    def __init__(self, settings: Settings, parent: QWidget | None = None, *, detected_device: str = "",
                 settings_file: Path | None = None):
        super().__init__(parent)
        self.setObjectName("settings_dialog")
        self.setWindowTitle("Settings")
        self._settings = settings
        self._file = settings_file or ms.settings_path()
        self.saved = False

        self.banner = MessageBanner(object_name="settings_banner")
        intro = QLabel("Defaults for this computer, shared with the command line. Device and workers "
                       "apply where a project says <i>auto</i>; a project's own choice always wins.")
        intro.setWordWrap(True)

        self.device = QComboBox()
        self.device.setObjectName("settings_device")
        self.device.setEditable(True)  # cuda:1 and the like can be typed
        self.device.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        for value, label in DEVICE_CHOICES:
            self.device.addItem(label, value)
        self.device.setToolTip("Type cuda:1 (or another index) for a specific GPU.")
        self.detected = QLabel(detected_device or "")
        self.detected.setObjectName("settings_detected")
        self.detected.setVisible(bool(detected_device))

        self.workers = QSpinBox()
        self.workers.setObjectName("settings_workers")
        self.workers.setRange(-1, ms.MAX_WORKERS)
        self.workers.setSpecialValueText("Auto (chosen for the device and core count)")
        self.workers.setToolTip("Processes that decode and augment images while the model trains. "
                                "0 = in the training process itself.")

        self.weights_dir, weights_row = self._folder_row(
            "settings_weights_dir", "Torch hub cache ($TORCH_HOME/hub/checkpoints)",
            "Where pretrained weights files are looked for and downloaded to.")
        self.runs_dir, runs_row = self._folder_row(
            "settings_runs_dir", "Beside the project file (a 'runs' folder)",
            "Where new training runs are written. Empty: next to the project file.")
        self.feature_cache_dir, cache_row = self._folder_row(
            "settings_feature_cache_dir", "~/.cache/transfer-studio/features",
            "Where backbone features are kept once computed, for the advisor and for training. "
            "A cache: deleting it only costs the time to compute them again.")

        self.theme_box = QComboBox()
        self.theme_box.setObjectName("settings_theme")
        for value, label in THEME_CHOICES:
            self.theme_box.addItem(label, value)

        self.overrides = QLabel()
        self.overrides.setObjectName("settings_overrides")
        self.overrides.setWordWrap(True)
        file_label = QLabel(f"Stored in {self._file}")
        file_label.setObjectName("settings_file")
        file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        file_label.setEnabled(False)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.addRow("Default &device:", self.device)
        form.addRow("", self.detected)
        form.addRow("Data-loader &workers:", self.workers)
        form.addRow("Weights folder:", weights_row)
        form.addRow("Runs folder:", runs_row)
        form.addRow("Feature cache folder:", cache_row)
        form.addRow("&Theme:", self.theme_box)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.setObjectName("settings_buttons")
        self.reset_button = buttons.addButton("&Reset to Defaults", QDialogButtonBox.ButtonRole.ResetRole)
        self.reset_button.setObjectName("settings_reset")
        self.reset_button.clicked.connect(self.reset_to_defaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)

        lay = QVBoxLayout(self)
        lay.addWidget(self.banner)
        lay.addWidget(intro)
        lay.addLayout(form)
        lay.addWidget(self.overrides)
        lay.addWidget(file_label)
        lay.addStretch(1)
        lay.addWidget(buttons)

        try:
            stored = ms.load_file(self._file)
        except UserError as exc:  # a broken file: show why, start from the defaults, OK rewrites it
            self.banner.show_message(str(exc), "warning")
            stored = ms.DEFAULTS
        self.set_values(stored, settings.theme())
        self._show_overrides()
        width = 680
        self.resize(width, lay.totalHeightForWidth(width))  # word-wrapped labels get their height

    # -- fields ----------------------------------------------------------------------------------
    def _folder_row(self, name: str, placeholder: str, tip: str) -> tuple[QLineEdit, QWidget]:
        edit = QLineEdit()
        edit.setObjectName(name)
        edit.setPlaceholderText(placeholder)
        edit.setToolTip(tip)
        edit.setClearButtonEnabled(True)
        browse = QPushButton("Browse…")
        browse.setObjectName(f"{name}_browse")
        browse.clicked.connect(lambda: self._browse(edit))
        row = QWidget()
        h = QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        h.addWidget(edit, 1)
        h.addWidget(browse)
        return edit, row

    def _browse(self, edit: QLineEdit) -> None:
        start = edit.text().strip() or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder", start)
        if folder:
            edit.setText(folder)

    def set_values(self, values: ms.MachineSettings, theme: str) -> None:
        idx = self.device.findData(values.device)
        if idx >= 0:
            self.device.setCurrentIndex(idx)
        else:
            self.device.setEditText(values.device)
        self.workers.setValue(-1 if values.num_workers is None else values.num_workers)
        self.weights_dir.setText(values.weights_dir)
        self.runs_dir.setText(values.runs_dir)
        self.feature_cache_dir.setText(values.feature_cache_dir)
        self.theme_box.setCurrentIndex(max(0, self.theme_box.findData(theme)))

    def _device_value(self) -> str:
        text = self.device.currentText()
        idx = self.device.currentIndex()
        if idx >= 0 and text == self.device.itemText(idx):
            return str(self.device.itemData(idx))
        return text.strip()  # typed by hand (cuda:1); validated on OK

    def values(self) -> ms.MachineSettings:
        """The fields as machine settings; a UserError names a field that is not valid."""
        workers = self.workers.value()
        raw = ms.MachineSettings(device=self._device_value(), num_workers=None if workers < 0 else workers,
                                 weights_dir=self.weights_dir.text(), runs_dir=self.runs_dir.text(),
                                 feature_cache_dir=self.feature_cache_dir.text())
        return ms.validated(raw, "Settings")

    def theme(self) -> str:
        return str(self.theme_box.currentData())

    def reset_to_defaults(self) -> None:
        self.set_values(ms.DEFAULTS, "system")
        self.banner.clear()

    def _show_overrides(self) -> None:
        try:
            found = ms.env_overrides()
        except UserError as exc:  # an invalid variable: training would refuse it too, so say so here
            self.overrides.setText(str(exc))
            self.overrides.setVisible(True)
            return
        active = [f"{ms.ENV_VARS[k]}={'auto' if v is None else v}" for k, v in found.items()]
        if active:
            self.overrides.setText("Set in this session's environment, and winning over these fields until it "
                                   f"is unset: {', '.join(active)}.")
        self.overrides.setVisible(bool(active))

    # -- OK ----------------------------------------------------------------------------------------
    def accept(self) -> None:
        try:
            values = self.values()
            ms.save(values, self._file)
            ms.apply_environment()
        except UserError as exc:
            self.banner.show_message(str(exc), "error")
            return
        except OSError as exc:
            self.banner.show_message(f"Could not save the settings to {self._file}: {exc.strerror or exc}",
                                     "error")
            return
        self.saved = True
        super().accept()


def edit_settings(window: QWidget, settings: Settings, detected_device: str = "") -> str | None:
    """Show the dialog; returns the chosen theme after OK (the caller applies it), None on Cancel."""
    dialog = SettingsDialog(settings, window, detected_device=detected_device)
    try:
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        return dialog.theme()
    finally:
        dialog.deleteLater()

