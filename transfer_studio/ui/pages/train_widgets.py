"""The Train page's widgets, built and laid out (``TrainPage`` binds them to its model)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.ui.models.train_text import AUGMENT_PRESETS, DEVICES, STRATEGIES, TABLE_COLUMNS
from transfer_studio.ui.widgets import ElidedLabel
from transfer_studio.ui.widgets.lr_spin import LrSpinBox


def build_settings(page: Any) -> None:
    """The settings box: model and frozen summary (with links), strategy, epochs, batch, rate, augmentation,
    device, and what Auto decides."""
    box = QGroupBox("Settings")
    box.setObjectName("train_settings")
    grid = QGridLayout(box)
    grid.setHorizontalSpacing(10)
    grid.setVerticalSpacing(6)

    page.model_label = ElidedLabel(min_chars=16)
    page.model_label.setObjectName("train_model_label")
    page.strategy_combo = QComboBox()
    page.strategy_combo.setObjectName("train_strategy_combo")
    for key, text in STRATEGIES:
        page.strategy_combo.addItem(text, key)
    page.frozen_label = ElidedLabel(min_chars=20)
    page.frozen_label.setObjectName("train_frozen_label")
    page.strategy_link = link("train_strategy_link", "strategy", "Change\u2026",
                               "Open the Strategy page (what is frozen, the advisor's suggestion)")
    page.model_link = link("train_model_link", "model", "Change\u2026",
                            "Open the Model page (choose the network, freeze layers)")

    page.epochs_spin = QSpinBox()
    page.epochs_spin.setObjectName("train_epochs_spin")
    page.epochs_spin.setRange(1, 10000)
    page.epochs_spin.setKeyboardTracking(False)
    page.batch_spin = QSpinBox()
    page.batch_spin.setObjectName("train_batch_spin")
    page.batch_spin.setRange(1, 4096)
    page.batch_spin.setKeyboardTracking(False)
    page.lr_spin = LrSpinBox()  # as the Strategy page's
    page.lr_spin.setObjectName("train_lr_spin")
    page.lr_spin.setToolTip("Learning rate of the new head; the pretrained body uses it \u00d7 the "
                            "body factor (discriminative learning rates)")
    page.augment_combo = QComboBox()
    page.augment_combo.setObjectName("train_augment_combo")
    for preset in AUGMENT_PRESETS:
        page.augment_combo.addItem(preset.capitalize(), preset)
    page.device_combo = QComboBox()
    page.device_combo.setObjectName("train_device_combo")
    for key, text in DEVICES:
        page.device_combo.addItem(text, key)

    def add(row: int, col: int, text: str, widget: QWidget, span: int = 1) -> None:
        label = QLabel(text)
        label.setBuddy(widget)
        grid.addWidget(label, row, col * 2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        grid.addWidget(widget, row, col * 2 + 1, 1, span)

    model_row = QHBoxLayout()
    model_row.setSpacing(4)
    model_row.addWidget(page.model_label)
    model_row.addWidget(page.model_link)
    model_row.addStretch(1)
    model_box = QWidget()
    model_box.setLayout(model_row)
    model_row.setContentsMargins(0, 0, 0, 0)
    frozen_row = QHBoxLayout()
    frozen_row.setContentsMargins(0, 0, 0, 0)
    frozen_row.setSpacing(4)
    frozen_row.addWidget(page.frozen_label)
    frozen_row.addWidget(page.strategy_link)
    frozen_row.addStretch(1)
    frozen_box = QWidget()
    frozen_box.setLayout(frozen_row)

    # Model and Frozen get whole rows: in one row of five columns the model's name was cut
    # ("(pretrainec") and the frozen summary wrapped onto five cramped lines.
    add(0, 0, "&Model", model_box, span=5)
    add(0, 3, "S&trategy", page.strategy_combo)
    add(1, 0, "Frozen", frozen_box, span=9)
    add(2, 0, "&Epochs", page.epochs_spin)
    add(2, 1, "&Batch size", page.batch_spin)
    add(2, 2, "&Learning rate", page.lr_spin)
    add(2, 3, "&Augmentation", page.augment_combo)
    add(2, 4, "De&vice", page.device_combo)
    # With strategy Auto: which values the advisor decides when training starts, and which are the
    # user's (typed here or on the Strategy page, or freeze edits on the Model page).
    page.auto_label = QLabel()
    page.auto_label.setObjectName("train_auto_label")
    page.auto_label.setWordWrap(True)
    page.auto_label.setProperty("role", "muted")
    page.auto_label.setTextFormat(Qt.TextFormat.RichText)
    grid.addWidget(page.auto_label, 3, 1, 1, 9)
    for w in (page.epochs_spin, page.batch_spin, page.lr_spin):
        w.setMinimumWidth(90)
        w.setMaximumWidth(140)
    for col in (1, 3, 5, 7, 9):
        grid.setColumnStretch(col, 1)
    page.settings_box = box


def build_controls(page: Any) -> None:
    """Start / Pause / Resume / Stop, the status, the interrupted-runs list, the progress row."""
    def button(name: str, text: str, tip: str) -> QPushButton:
        b = QPushButton(text)
        b.setObjectName(name)
        b.setToolTip(tip)
        return b

    page.start_button = button("train_start_button", "\u25b6  Start", "Start a new training run")
    page.pause_button = button("train_pause_button", "\u275a\u275a  Pause",
                               "Pause after the current batch")
    page.resume_button = button("train_resume_button", "\u25b6  Resume", "Continue the paused run")
    page.stop_button = button("train_stop_button", "\u25a0  Stop",
                              "Stop after the current batch; the last epoch's checkpoint is kept")
    page.start_button.setDefault(True)
    page.resume_run_combo = QComboBox()
    page.resume_run_combo.setObjectName("train_resume_run_combo")
    page.resume_run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
    page.resume_run_combo.setMinimumContentsLength(22)
    page.resume_run_button = button("train_resume_run_button", "Resume from checkpoint",
                                    "Continue an interrupted run (stopped, failed or killed) "
                                    "from its last checkpoint")
    page.cluster_button = button("train_cluster_button", "Run on several GPUs / a cluster\u2026",
                                 "Write a job folder with this project: a torchrun script for the GPUs of "
                                 "one machine and a SLURM template for several (see docs/distributed.md)")
    page.status_label = QLabel()
    page.status_label.setObjectName("train_status_label")


    row = QHBoxLayout()
    row.setSpacing(6)
    for b in (page.start_button, page.pause_button, page.resume_button, page.stop_button):
        row.addWidget(b)
    row.addSpacing(12)
    row.addWidget(page.status_label, 1)
    interrupted = QLabel("Interrupted run:")
    interrupted.setObjectName("train_resume_run_label")
    row.addWidget(interrupted)
    row.addWidget(page.resume_run_combo)
    row.addWidget(page.resume_run_button)
    row.addWidget(page.cluster_button)
    page.resume_run_label = interrupted
    page.controls_layout = row

    page.epoch_progress = QProgressBar()
    page.epoch_progress.setObjectName("train_epoch_progress")
    page.epoch_progress.setFormat("Epoch \u2013")
    page.epoch_progress.setTextVisible(True)
    page.run_progress = QProgressBar()
    page.run_progress.setObjectName("train_run_progress")
    page.run_progress.setFormat("Run \u2013")
    page.run_progress.setTextVisible(True)
    for bar in (page.epoch_progress, page.run_progress):
        bar.setRange(0, 1000)
        bar.setValue(0)
    page.speed_label = QLabel("\u2013 images/s")
    page.speed_label.setObjectName("train_speed_label")
    page.eta_label = QLabel("ETA \u2013")
    page.eta_label.setObjectName("train_eta_label")
    page.device_label = QLabel("Device: detecting\u2026")
    page.device_label.setObjectName("train_device_label")
    page.device_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    prog = QHBoxLayout()
    prog.setSpacing(10)
    prog.addWidget(page.epoch_progress, 2)
    prog.addWidget(page.run_progress, 2)
    prog.addWidget(page.speed_label)
    prog.addWidget(page.eta_label)
    for label in (page.speed_label, page.eta_label):
        label.setMinimumWidth(label.fontMetrics().horizontalAdvance("0000.0 images/s "))
    page.progress_layout = prog

def build_table_and_log(page: Any) -> None:
    """The epoch table and the log."""
    table = QTableWidget(0, len(TABLE_COLUMNS))
    table.setObjectName("train_epoch_table")
    table.setHorizontalHeaderLabels(TABLE_COLUMNS)
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setAlternatingRowColors(True)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    table.horizontalHeader().setMinimumSectionSize(56)
    table.setMinimumHeight(120)
    table.setToolTip("\u2605 marks the best epoch (lowest validation loss): its weights are kept")
    page.table = table
    log = QPlainTextEdit()
    log.setObjectName("train_log")
    log.setReadOnly(True)
    log.setMaximumBlockCount(5000)
    log.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
    log.setPlaceholderText("Training log")
    mono = QFont("monospace")
    mono.setStyleHint(QFont.StyleHint.Monospace)
    mono.setPointSizeF(max(7.0, page.font().pointSizeF() * 0.9))
    log.setFont(mono)
    page.log_view = log


def build_layout(page: Any) -> None:
    """Header, settings, controls, progress, banner, and the charts over the table and the log."""
    header = QHBoxLayout()
    title = QLabel("Train")
    title.setObjectName("train_title")
    tfont = title.font()
    tfont.setPointSizeF(tfont.pointSizeF() * 1.4)
    tfont.setBold(True)
    title.setFont(tfont)
    header.addWidget(title)
    header.addStretch(1)
    header.addWidget(page.device_label)
    lower = QSplitter(Qt.Orientation.Horizontal)
    lower.setObjectName("train_lower_splitter")
    lower.addWidget(page.table)
    lower.addWidget(page.log_view)
    lower.setStretchFactor(0, 3)
    lower.setStretchFactor(1, 2)
    split = QSplitter(Qt.Orientation.Vertical)
    split.setObjectName("train_splitter")
    split.addWidget(page.charts)
    split.addWidget(lower)
    split.setStretchFactor(0, 3)
    split.setStretchFactor(1, 2)
    split.setSizes([480, 320])  # charts 60 %, table and log 40 % (until the user drags it)
    split.setChildrenCollapsible(False)
    layout = QVBoxLayout(page)
    layout.setContentsMargins(12, 10, 12, 10)
    layout.setSpacing(8)
    layout.addLayout(header)
    layout.addWidget(page.settings_box)
    layout.addLayout(page.controls_layout)
    layout.addLayout(page.progress_layout)
    layout.addWidget(page.banner)
    layout.addWidget(split, 1)


def link(name: str, target: str, text: str, tip: str) -> QLabel:
    """A hyperlink-style label; activating it emits the page key ``target``."""
    label = QLabel(f'<a href="{target}">{text}</a>')
    label.setObjectName(name)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse
                                  | Qt.TextInteractionFlag.LinksAccessibleByKeyboard)
    label.setToolTip(tip)
    return label


def set_links_active(page: Any, active: bool) -> None:
    """The "Change…" links are links only while the settings can change: a disabled label still drew
    them as live links."""
    for label, target in ((page.model_link, "model"), (page.strategy_link, "strategy")):
        label.setText(f'<a href="{target}">Change\u2026</a>' if active else "Change\u2026")
        label.setTextInteractionFlags(
            Qt.TextInteractionFlag.LinksAccessibleByMouse | Qt.TextInteractionFlag.LinksAccessibleByKeyboard
            if active else Qt.TextInteractionFlag.NoTextInteraction)
        label.setCursor(Qt.CursorShape.PointingHandCursor if active else Qt.CursorShape.ArrowCursor)


def select(combo: QComboBox, key: Any) -> None:
    idx = combo.findData(key)
    if idx < 0:  # a value this page does not list (edited by hand): show it rather than lose it
        combo.addItem(str(key), key)
        idx = combo.count() - 1
    combo.setCurrentIndex(idx)


class JobFolderDialog(QDialog):
    """Where to write the job folder, and how many GPUs per machine and machines it is for."""

    def __init__(self, parent: QWidget | None, *, start: str, gpus: int):
        super().__init__(parent)
        self.setObjectName("train_job_dialog")
        self.setWindowTitle("Run on several GPUs / a cluster")
        intro = QLabel("Writes a job folder: this project with its split, <b>run_local.sh</b> (torchrun on "
                       "one machine, one process per GPU) and <b>slurm.sbatch</b> (a SLURM template for "
                       "several machines). Copy it to the machine that trains, run a script there, then "
                       "copy its <b>runs/</b> folder back to evaluate and export it here.")
        intro.setWordWrap(True)
        self.folder_edit = QLineEdit(start)
        self.folder_edit.setObjectName("train_job_folder_edit")
        browse = QPushButton("Browse\u2026")
        browse.setObjectName("train_job_browse")
        browse.clicked.connect(self._browse)
        self.gpus_spin = QSpinBox()
        self.gpus_spin.setObjectName("train_job_gpus")
        self.gpus_spin.setRange(1, 64)
        self.gpus_spin.setValue(max(1, gpus))
        self.nodes_spin = QSpinBox()
        self.nodes_spin.setObjectName("train_job_nodes")
        self.nodes_spin.setRange(1, 1024)
        self.nodes_spin.setValue(2)
        where = QHBoxLayout()
        where.addWidget(self.folder_edit, 1)
        where.addWidget(browse)
        form = QFormLayout()
        form.addRow("Job folder (new or empty):", where)
        form.addRow("GPUs per machine:", self.gpus_spin)
        form.addRow("Machines (SLURM template):", self.nodes_spin)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Write Job Folder")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.resize(560, self.sizeHint().height())

    def _browse(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self, "Job folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)
