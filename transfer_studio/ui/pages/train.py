"""Train page: settings, Start / Pause / Resume / Stop, live charts, epoch table, log, resume.

Training runs on its own QThread (ui/train_worker.py) with a copy of the project; this page only
reacts to the worker's signals. Heavy modules (torch, pyqtgraph, the engine) are imported when the
page is built or in background tasks, never when this module is imported.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import re
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.config import RunRecord, clear_user_set, mark_user_set
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets.lr_spin import LrSpinBox

STRATEGIES = (
    ("auto", "Auto (from data size)"),
    ("head", "Head only"),
    ("partial", "Partial (last blocks)"),
    ("full", "Full network"),
)
AUGMENT_PRESETS = ("none", "light", "medium", "strong")
DEVICES = (("auto", "Auto"), ("cpu", "CPU"), ("cuda", "CUDA GPU"), ("mps", "Apple MPS"))
TABLE_COLUMNS = ("Epoch", "Train loss", "Train acc", "Val loss", "Val acc", "LR", "Time")
LAUNCH_KEY = "train_launch_settings"  # project.ui: run dir -> core.runs.launch_settings at its start
_PHASE_LABELS = {"unfrozen": "unfreeze", "full": "full network"}


# -- the page --------------------------------------------------------------------------------------
class TrainPage(QWidget):
    TITLE = "Train"

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_train")
        self.state = state
        from transfer_studio.ui.plots import TrainingCharts  # pyqtgraph: only once the page is built
        from transfer_studio.ui.train_worker import TrainController

        self._controller = TrainController(self)
        self._record: RunRecord | None = None
        self._loading = False  # True while widgets are filled from the project (no write-back)
        self._stopping = False
        self._fit_start: Any = None
        self._phase: str | None = None  # the training phase last announced (head / unfrozen / full)
        self._epochs_total = 0
        self._start_epoch = 1
        self._session_t0 = 0.0
        self._session_fraction0 = 0.0
        self._paused_since: float | None = None  # monotonic time of the pause under way
        self._paused_s = 0.0  # this session's paused time: not training, so not in the ETA's pace
        self._best_row = -1
        self._failure: tuple[str, str, str] | None = None  # shown when the thread has ended
        self.checkpoint_path: str | None = None  # the latest checkpoint the running run wrote
        self._shown_run: str | None = None  # the run whose curves the charts hold
        self._devices: Any = None  # core.devices.MachineDevices, once probed
        self._device_task: Any = None  # device probe + engine warm-up (ui.worker task)
        self._pending: tuple[RunRecord, Path, Any, bool] | None = None  # Start during the warm-up

        self._build_settings()
        self._build_controls()
        from transfer_studio.ui.widgets.banner import MessageBanner

        self.banner = MessageBanner(self, object_name="train_banner")
        self.charts = TrainingCharts(self)
        self.charts.setMinimumHeight(190)
        self._build_table_and_log()

        header = QHBoxLayout()
        title = QLabel("Train")
        title.setObjectName("train_title")
        tfont = title.font()
        tfont.setPointSizeF(tfont.pointSizeF() * 1.4)
        tfont.setBold(True)
        title.setFont(tfont)
        header.addWidget(title)
        header.addStretch(1)
        header.addWidget(self.device_label)

        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.setObjectName("train_lower_splitter")
        lower.addWidget(self.table)
        lower.addWidget(self.log_view)
        lower.setStretchFactor(0, 3)
        lower.setStretchFactor(1, 2)
        split = QSplitter(Qt.Orientation.Vertical)
        split.setObjectName("train_splitter")
        split.addWidget(self.charts)
        split.addWidget(lower)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([480, 320])  # charts 60 %, table and log 40 % (until the user drags it)
        split.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.setSpacing(8)
        layout.addLayout(header)
        layout.addWidget(self.settings_box)
        layout.addLayout(self._controls_layout)
        layout.addLayout(self._progress_layout)
        layout.addWidget(self.banner)
        layout.addWidget(split, 1)

        c = self._controller
        c.fitStarted.connect(self._on_fit_started)
        c.batches.connect(self._on_batches)
        c.epochEnded.connect(self._on_epoch_ended)
        c.phaseChanged.connect(self._on_phase_changed)
        c.checkpointWritten.connect(self._on_checkpoint)
        c.paused.connect(self._on_paused)
        c.resumed.connect(self._on_resumed)
        c.engineError.connect(self._on_engine_error)
        c.log.connect(self.log)
        c.outcome.connect(self._on_outcome)
        c.finished.connect(self._on_thread_finished)
        state.projectReplaced.connect(self._on_project_replaced)
        state.projectChanged.connect(self._on_project_changed)
        state.pathChanged.connect(lambda _p: self._refresh_resumable())

        self._load_settings()
        self._refresh_resumable()
        self._set_idle()
        self._probe_devices()

    # -- construction ----------------------------------------------------------------------------
    def _build_settings(self) -> None:
        box = QGroupBox("Settings")
        box.setObjectName("train_settings")
        grid = QGridLayout(box)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(6)

        from transfer_studio.ui.widgets import ElidedLabel

        self.model_label = ElidedLabel(min_chars=16)
        self.model_label.setObjectName("train_model_label")
        self.strategy_combo = QComboBox()
        self.strategy_combo.setObjectName("train_strategy_combo")
        for key, text in STRATEGIES:
            self.strategy_combo.addItem(text, key)
        self.frozen_label = ElidedLabel(min_chars=20)
        self.frozen_label.setObjectName("train_frozen_label")
        self.strategy_link = _link("train_strategy_link", "strategy", "Change\u2026",
                                   "Open the Strategy page (what is frozen, the advisor's suggestion)")
        self.strategy_link.linkActivated.connect(self.state.navigateRequested.emit)
        self.model_link = _link("train_model_link", "model", "Change\u2026",
                                "Open the Model page (choose the network, freeze layers)")
        self.model_link.linkActivated.connect(self.state.navigateRequested.emit)

        self.epochs_spin = QSpinBox()
        self.epochs_spin.setObjectName("train_epochs_spin")
        self.epochs_spin.setRange(1, 10000)
        self.epochs_spin.setKeyboardTracking(False)
        self.batch_spin = QSpinBox()
        self.batch_spin.setObjectName("train_batch_spin")
        self.batch_spin.setRange(1, 4096)
        self.batch_spin.setKeyboardTracking(False)
        self.lr_spin = LrSpinBox()  # ui/widgets/lr_spin.py, as the Strategy page's
        self.lr_spin.setObjectName("train_lr_spin")
        self.lr_spin.setToolTip("Learning rate of the new head; the pretrained body uses it \u00d7 the "
                                "body factor (discriminative learning rates)")
        self.augment_combo = QComboBox()
        self.augment_combo.setObjectName("train_augment_combo")
        for preset in AUGMENT_PRESETS:
            self.augment_combo.addItem(preset.capitalize(), preset)
        self.device_combo = QComboBox()
        self.device_combo.setObjectName("train_device_combo")
        for key, text in DEVICES:
            self.device_combo.addItem(text, key)

        def add(row: int, col: int, text: str, widget: QWidget, span: int = 1) -> None:
            label = QLabel(text)
            label.setBuddy(widget)
            grid.addWidget(label, row, col * 2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            grid.addWidget(widget, row, col * 2 + 1, 1, span)

        model_row = QHBoxLayout()
        model_row.setSpacing(4)
        model_row.addWidget(self.model_label)
        model_row.addWidget(self.model_link)
        model_row.addStretch(1)
        model_box = QWidget()
        model_box.setLayout(model_row)
        model_row.setContentsMargins(0, 0, 0, 0)
        frozen_row = QHBoxLayout()
        frozen_row.setContentsMargins(0, 0, 0, 0)
        frozen_row.setSpacing(4)
        frozen_row.addWidget(self.frozen_label)
        frozen_row.addWidget(self.strategy_link)
        frozen_row.addStretch(1)
        frozen_box = QWidget()
        frozen_box.setLayout(frozen_row)

        # Model and Frozen get whole rows: in one row of five columns the model's name was cut
        # ("(pretrainec") and the frozen summary wrapped onto five cramped lines.
        add(0, 0, "&Model", model_box, span=5)
        add(0, 3, "S&trategy", self.strategy_combo)
        add(1, 0, "Frozen", frozen_box, span=9)
        add(2, 0, "&Epochs", self.epochs_spin)
        add(2, 1, "&Batch size", self.batch_spin)
        add(2, 2, "&Learning rate", self.lr_spin)
        add(2, 3, "&Augmentation", self.augment_combo)
        add(2, 4, "De&vice", self.device_combo)
        # With strategy Auto: which values the advisor decides when training starts, and which are the
        # user's (typed here or on the Strategy page, or freeze edits on the Model page).
        self.auto_label = QLabel()
        self.auto_label.setObjectName("train_auto_label")
        self.auto_label.setWordWrap(True)
        self.auto_label.setProperty("role", "muted")
        self.auto_label.setTextFormat(Qt.TextFormat.RichText)
        self.auto_label.linkActivated.connect(self._on_auto_link)
        grid.addWidget(self.auto_label, 3, 1, 1, 9)
        for w in (self.epochs_spin, self.batch_spin, self.lr_spin):
            w.setMinimumWidth(90)
            w.setMaximumWidth(140)
        for col in (1, 3, 5, 7, 9):
            grid.setColumnStretch(col, 1)
        self.settings_box = box

        self.strategy_combo.currentIndexChanged.connect(self._on_settings_edited)
        self.epochs_spin.valueChanged.connect(self._on_settings_edited)
        self.batch_spin.valueChanged.connect(self._on_settings_edited)
        self.lr_spin.valueChanged.connect(self._on_settings_edited)
        self.device_combo.currentIndexChanged.connect(self._on_settings_edited)
        self.augment_combo.currentIndexChanged.connect(self._on_augment_edited)

    def _build_controls(self) -> None:
        def button(name: str, text: str, tip: str) -> QPushButton:
            b = QPushButton(text)
            b.setObjectName(name)
            b.setToolTip(tip)
            return b

        self.start_button = button("train_start_button", "\u25b6  Start", "Start a new training run")
        self.pause_button = button("train_pause_button", "\u275a\u275a  Pause",
                                   "Pause after the current batch")
        self.resume_button = button("train_resume_button", "\u25b6  Resume", "Continue the paused run")
        self.stop_button = button("train_stop_button", "\u25a0  Stop",
                                  "Stop after the current batch; the last epoch's checkpoint is kept")
        self.start_button.setDefault(True)
        self.resume_run_combo = QComboBox()
        self.resume_run_combo.setObjectName("train_resume_run_combo")
        self.resume_run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.resume_run_combo.setMinimumContentsLength(22)
        self.resume_run_button = button("train_resume_run_button", "Resume from checkpoint",
                                        "Continue an interrupted run (stopped, failed or killed) "
                                        "from its last checkpoint")
        self.status_label = QLabel()
        self.status_label.setObjectName("train_status_label")

        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.pause)
        self.resume_button.clicked.connect(self.resume)
        self.stop_button.clicked.connect(self.stop)
        self.resume_run_button.clicked.connect(lambda: self.resume_run())
        self.resume_run_combo.currentIndexChanged.connect(lambda _i: self._update_buttons())

        row = QHBoxLayout()
        row.setSpacing(6)
        for b in (self.start_button, self.pause_button, self.resume_button, self.stop_button):
            row.addWidget(b)
        row.addSpacing(12)
        row.addWidget(self.status_label, 1)
        interrupted = QLabel("Interrupted run:")
        interrupted.setObjectName("train_resume_run_label")
        row.addWidget(interrupted)
        row.addWidget(self.resume_run_combo)
        row.addWidget(self.resume_run_button)
        self._resume_run_label = interrupted
        self._controls_layout = row

        self.epoch_progress = QProgressBar()
        self.epoch_progress.setObjectName("train_epoch_progress")
        self.epoch_progress.setFormat("Epoch \u2013")
        self.epoch_progress.setTextVisible(True)
        self.run_progress = QProgressBar()
        self.run_progress.setObjectName("train_run_progress")
        self.run_progress.setFormat("Run \u2013")
        self.run_progress.setTextVisible(True)
        for bar in (self.epoch_progress, self.run_progress):
            bar.setRange(0, 1000)
            bar.setValue(0)
        self.speed_label = QLabel("\u2013 images/s")
        self.speed_label.setObjectName("train_speed_label")
        self.eta_label = QLabel("ETA \u2013")
        self.eta_label.setObjectName("train_eta_label")
        self.device_label = QLabel("Device: detecting\u2026")
        self.device_label.setObjectName("train_device_label")
        self.device_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        prog = QHBoxLayout()
        prog.setSpacing(10)
        prog.addWidget(self.epoch_progress, 2)
        prog.addWidget(self.run_progress, 2)
        prog.addWidget(self.speed_label)
        prog.addWidget(self.eta_label)
        for label in (self.speed_label, self.eta_label):
            label.setMinimumWidth(label.fontMetrics().horizontalAdvance("0000.0 images/s "))
        self._progress_layout = prog

    def _build_table_and_log(self) -> None:
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
        self.table = table
        log = QPlainTextEdit()
        log.setObjectName("train_log")
        log.setReadOnly(True)
        log.setMaximumBlockCount(5000)
        log.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        log.setPlaceholderText("Training log")
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        mono.setPointSizeF(max(7.0, self.font().pointSizeF() * 0.9))
        log.setFont(mono)
        self.log_view = log

    # -- settings <-> project --------------------------------------------------------------------
    def _load_settings(self) -> None:
        p = self.state.project
        self._loading = True
        try:
            weights = p.model.weights
            source = {"DEFAULT": "pretrained", "none": "random init"}.get(weights, Path(weights).name)
            self.model_label.setText(f"{p.model.name} \u00b7 {source}")
            _select(self.strategy_combo, p.train.strategy)
            self.epochs_spin.setValue(p.train.epochs)
            self.batch_spin.setValue(p.train.batch_size)
            self.lr_spin.setValue(p.train.lr)
            _select(self.augment_combo, p.augment.preset)
            _select(self.device_combo, p.train.device)
            self.frozen_label.setText(frozen_summary(p))
        finally:
            self._loading = False
        self._show_auto()

    def _on_settings_edited(self, *_: Any) -> None:
        if self._loading:
            return
        t = self.state.project.train
        t.strategy = self.strategy_combo.currentData()
        for name, value in (("epochs", self.epochs_spin.value()), ("batch_size", self.batch_spin.value()),
                            ("lr", float(self.lr_spin.value()))):
            if getattr(t, name) != value:
                setattr(t, name, value)
                mark_user_set(t, name)  # typed by the user: strategy Auto keeps it
        t.device = self.device_combo.currentData()
        self._show_auto()
        self.frozen_label.setText(frozen_summary(self.state.project))
        self._loading = True  # our own projectChanged must not reload the widgets mid-edit
        try:
            self.state.mark_changed("train")
        finally:
            self._loading = False

    def _on_augment_edited(self, *_: Any) -> None:
        if self._loading:
            return
        self.state.project.augment.preset = self.augment_combo.currentData()
        self.state.project.augment.params = {}
        mark_user_set(self.state.project.train, "augment")
        self._show_auto()
        self._loading = True
        try:
            self.state.mark_changed("augment")
        finally:
            self._loading = False

    def _show_auto(self) -> None:
        self.auto_label.setText(auto_summary(self.state.project))
        self.auto_label.setVisible(self.state.project.train.strategy == "auto")

    def _on_auto_link(self, _link: str) -> None:
        t = self.state.project.train
        if not t.user_set:
            return
        clear_user_set(t)
        self._loading = True
        try:
            self.state.mark_changed("train")
        finally:
            self._loading = False
        self._show_auto()
        self.state.status("Auto decides every training value again when training starts.")

    def _on_project_replaced(self) -> None:
        self._load_settings()
        self._refresh_resumable()
        if not self._controller.is_running():
            self._clear_run_display()
            self.banner.clear()
        self._update_buttons()

    def _on_project_changed(self, section: str) -> None:
        if self._loading:
            return
        if section in ("model", "surgery", "train", "augment"):
            self._load_settings()
        if section == "runs":
            self._refresh_resumable()
            self._update_buttons()

    # -- devices ---------------------------------------------------------------------------------
    def _probe_devices(self) -> None:
        from transfer_studio.ui.worker import run_task

        self._device_task = run_task(probe_devices, name="train-devices", pass_control=False,
                                     on_result=self._on_devices, on_error=self._on_device_error,
                                     on_finished=self._on_warm_up_finished)

    def _on_devices(self, info: Any) -> None:
        self._devices = info
        model = self.device_combo.model()
        for i in range(self.device_combo.count()):
            key = self.device_combo.itemData(i)
            available = info.has(key)
            item = model.item(i)
            if item is not None:
                item.setEnabled(available)
                item.setToolTip("" if available else "not available on this computer")
        if not self._controller.is_running():
            from transfer_studio.ui.runtime import import_core

            self.device_label.setText(f"Device: {import_core('devices').describe_machine(info)}")

    def _on_device_error(self, message: str, _detail: str) -> None:
        self.device_label.setText("Device: unknown")
        self.log(f"Could not detect devices: {message}")

    # -- actions ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start a new run with the current settings."""
        if self.busy():
            return
        from transfer_studio.core import runs
        from transfer_studio.ui.train_worker import runs_root

        problem = self._check_ready()
        if problem:
            message, suggestion, (action_text, action) = problem
            self._show_error(message, suggestion, action_text=action_text, action=action)
            return
        run_dir = runs.new_run_dir(runs_root(self.state.path))
        project = self.state.project
        record = runs.new_record(run_dir, project)
        project.runs.append(record)
        self._clear_run_display()
        self._shown_run = str(run_dir)
        self.log(f"New run in {run_dir}")
        self._remember_launch_settings(str(run_dir))
        self._launch(record, run_dir, project.copy(), resume=False)

    def resume_run(self, run_dir: str | None = None, *, batch_size: int | None = None) -> None:
        """Continue a run (default: the one selected in the interrupted-runs list) from its checkpoint.

        The run keeps its own settings (the engine reads them from the run folder), except the
        epochs, batch size and device changed on this page since the run was started, and an
        explicit ``batch_size`` (e.g. halved after running out of memory).
        """
        if self.busy():
            return
        run_dir = run_dir or self.resume_run_combo.currentData()
        if not run_dir:
            return
        from transfer_studio.core import run_folder, runs

        if not run_folder.has_checkpoint(Path(run_dir)):
            self._show_error(
                f"This run has no checkpoint to resume from: {run_dir}",
                "A run can be resumed once it has completed at least one epoch. Start a new run instead.")
            self._refresh_resumable()
            return
        record = runs.find_record(self.state.project, run_dir)
        if record is None:  # found on disk (e.g. the app was killed before the project was saved)
            info = run_folder.read_summary(run_dir) or {}
            record = RunRecord(run_dir=str(run_dir), created=runs.now_stamp(),
                               model=str(info.get("model", self.state.project.model.name)),
                               strategy=str(info.get("strategy", "")))
            self.state.project.runs.append(record)
        project, changes = self._resume_project(str(run_dir), batch_size)
        record.status = "running"
        # The charts already show this run (stopped or failed in this session): keep its per-batch
        # curves, which history.json does not hold; otherwise draw what the history has.
        same = self._shown_run is not None and runs.same_dir(self._shown_run, str(run_dir))
        self._clear_run_display(keep_batches=same)
        self._shown_run = str(run_dir)
        self._load_history(Path(run_dir), with_lr=not same)
        self.log(f"Resuming {run_dir} from its last checkpoint"
                 + (" with " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in changes.items())
                    if changes else " with its own settings"))
        self._remember_launch_settings(str(run_dir))
        self._launch(record, Path(run_dir), project, resume=True)

    def _remember_launch_settings(self, run_dir: str) -> None:
        """The page's resumable settings when a run starts: a later resume applies only changes."""
        from transfer_studio.core import runs

        self.state.project.ui.setdefault(LAUNCH_KEY, {})[run_dir] = runs.launch_settings(self.state.project.train)

    def _resume_project(self, run_dir: str, batch_size: int | None) -> tuple[Any, dict[str, Any]]:
        """The project handed to fit(resume=True): the run's own snapshot plus the user's changes
        (``core.runs``: the settings changed on this page since the run started, and ``batch_size``)."""
        from transfer_studio.core import runs
        from transfer_studio.errors import UserError

        launched = self.state.project.ui.get(LAUNCH_KEY, {}).get(run_dir)
        changes = runs.changed_since_launch(self.state.project.train, launched)
        if batch_size is not None:
            changes["batch_size"] = batch_size
        try:
            return runs.resume_project(run_dir, changes), changes
        except UserError:
            # Let the engine report the broken run folder in its own words.
            return self.state.project.copy(), {}

    def _launch(self, record: RunRecord, run_dir: Path, project: Any, resume: bool) -> None:
        self._record = record
        self._stopping = False
        self.banner.clear()
        self.state.mark_changed("runs")
        self._session_t0 = time.monotonic()
        self._session_fraction0 = 0.0  # set from FitStart (a resumed run starts part-way)
        if self._device_task is not None and self._device_task.is_running():
            # The engine is still being imported in the background: importing it here as well
            # would block the GUI thread (and two threads importing one package can fail).
            self._pending = (record, run_dir, project, resume)
            self.status_label.setText("Preparing the training engine\u2026")
            self._set_running()
            return
        self._start_worker(record, run_dir, project, resume)

    def _start_worker(self, record: RunRecord, run_dir: Path, project: Any, resume: bool) -> None:
        try:
            self._controller.start(project, run_dir, resume=resume)
        except Exception as exc:  # noqa: BLE001 - e.g. the engine is missing: say so in the page
            record.status = "failed"
            self._record = None
            self.state.mark_changed("runs")
            self._show_error(f"Training could not start: {exc}")
            self._set_idle()
            return
        self.status_label.setText("Starting\u2026 (building the network and loading the data)")
        self.state.status("Training started", 3000)
        self._set_running()

    def _on_warm_up_finished(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._start_worker(*pending)

    def pause(self) -> None:
        if self._controller.is_running() and not self._controller.is_paused():
            self._controller.pause()
            self.pause_button.setEnabled(False)
            self.status_label.setText("Pausing after the current batch\u2026")

    def resume(self) -> None:
        if self._controller.is_paused():
            self._controller.resume()
            self.resume_button.setEnabled(False)
            self.status_label.setText("Resuming\u2026")

    def stop(self) -> None:
        if self._pending is not None:  # not started yet: forget it
            record = self._pending[0]
            self._pending = None
            self._record = None
            if record in self.state.project.runs:
                self.state.project.runs.remove(record)
            self.state.mark_changed("runs")
            self.status_label.setText("")
            self._set_idle()
            return
        if self._controller.is_running():
            self._stopping = True
            self._controller.stop()
            self.status_label.setText("Stopping after the current batch\u2026")
            self._update_buttons()

    # -- page protocol ---------------------------------------------------------------------------
    def busy(self) -> bool:
        return self._controller.is_running() or self._pending is not None

    def shutdown(self) -> None:
        """Stop a running training and wait for its thread (the window is closing)."""
        if self._pending is not None:
            self.stop()
        if self._controller.is_running():
            self.log("Window closing: stopping training")
            self._stopping = True
            self._controller.shutdown()
            # Deliver the worker's last queued signals (outcome, thread finished) now, so the run
            # record says "stopped" before the project is saved or discarded.
            QCoreApplication.sendPostedEvents(self._controller)
        from transfer_studio.ui.worker import wait_for_tasks

        wait_for_tasks([self._device_task], 20000)

    # -- worker signals --------------------------------------------------------------------------
    def _on_fit_started(self, ev: Any) -> None:
        self._fit_start = ev
        self._epochs_total = int(ev.epochs)
        self.charts.set_epoch_range(self._epochs_total)
        self._start_epoch = int(ev.start_epoch)
        if self._record is not None:
            self._record.strategy = ev.strategy
            self._record.model = ev.model
        self.state.mark_changed("runs")
        self.status_label.setText("Training" + (" (resumed)" if ev.resumed else ""))
        self.device_label.setText(f"Device: {ev.device} \u00b7 {ev.precision}")
        self.log(
            f"{ev.model}, strategy {ev.strategy}, {ev.device} {ev.precision}: {ev.num_train} training / "
            f"{ev.num_val} validation images, {len(ev.classes)} classes, batch {ev.batch_size}, "
            f"{ev.steps_per_epoch} steps per epoch; {_count(ev.trainable_params)} of "
            f"{_count(ev.total_params)} parameters trainable"
            + (" (cached backbone features)" if ev.cached_features else ""))
        if ev.resumed:
            self.log(f"Resumed at epoch {ev.start_epoch} of {ev.epochs}")
            self.charts.truncate(ev.start_epoch - 1)  # an interrupted epoch is trained again
            self._mark_earlier_unfreeze(Path(ev.run_dir), ev.start_epoch)
        for note in ev.notes:
            self.log(note)
        self._session_t0 = time.monotonic()
        self._paused_since, self._paused_s = None, 0.0
        self._session_fraction0 = (self._start_epoch - 1) / max(1, self._epochs_total)
        self._set_progress(self._start_epoch, 0, max(1, ev.steps_per_epoch))

    def _mark_earlier_unfreeze(self, run_dir: Path, start_epoch: int) -> None:
        """A resumed partial run that unfroze before it was stopped: put the marker back."""
        from transfer_studio.core import run_folder

        snap = run_folder.read_json(run_dir / run_folder.PROJECT)
        train = snap.get("train", {}) if isinstance(snap, dict) else {}
        head_epochs = train.get("head_epochs")
        # the body unfreezes at epoch head_epochs + 1 (training.finetune.plan)
        if train.get("strategy") == "partial" and isinstance(head_epochs, int) and \
                0 < head_epochs < start_epoch:
            self.charts.mark_phase(head_epochs, _PHASE_LABELS["unfrozen"])
            self._phase = "unfrozen"

    def _on_batches(self, chunk: Any) -> None:
        self.charts.add_batches(chunk.x, chunk.loss, chunk.lr)
        self._set_progress(chunk.epoch, chunk.batch, chunk.num_batches)
        if chunk.images_per_s:
            self.speed_label.setText(f"{chunk.images_per_s:,.1f} images/s")
        if chunk.gpu_memory and self._fit_start is not None:
            used, total = chunk.gpu_memory
            self.device_label.setText(f"Device: {self._fit_start.device} \u00b7 {self._fit_start.precision}"
                                      f" \u00b7 GPU memory {used / 2**30:.1f} / {total / 2**30:.1f} GB")

    def _on_epoch_ended(self, ev: Any) -> None:
        self.charts.add_epoch(ev.epoch, ev.train_loss, ev.val_loss, ev.train_accuracy, ev.val_accuracy)
        self._add_table_row(ev.epoch, ev.train_loss, ev.train_accuracy, ev.val_loss, ev.val_accuracy,
                            ev.lr, ev.seconds, ev.is_best)
        self._epochs_total = int(ev.epochs)
        self._set_progress(ev.epoch + 1, 0, 1, epoch_done=ev.epoch)
        self.eta_label.setText(f"ETA {_duration(ev.eta_s)}")
        rec = self._record
        if rec is not None:
            rec.epochs_completed = int(ev.epoch)
            if ev.is_best:
                rec.best_epoch = int(ev.epoch)
                rec.val_accuracy = ev.val_accuracy
                rec.val_loss = ev.val_loss
            self.state.mark_changed("runs")
        val = "" if ev.val_loss is None else f", val loss {ev.val_loss:.4f} acc {_pct(ev.val_accuracy)}"
        self.log(f"Epoch {ev.epoch}/{ev.epochs}: train loss {ev.train_loss:.4f} acc "
                 f"{_pct(ev.train_accuracy)}{val}, "
                 + ("head fitted by L-BFGS" if ev.lr is None else f"lr {ev.lr:.3g}") + f", {ev.seconds:.1f} s"
                 + ("  \u2605 best" if ev.is_best else ""))

    def _on_phase_changed(self, ev: Any) -> None:
        # Mark transitions only: the phase a run starts in (or resumes in) is announced too.
        if self._phase is not None and ev.phase != self._phase:
            self.charts.mark_phase(ev.epoch - 1, _PHASE_LABELS.get(ev.phase, ev.phase))
        self._phase = ev.phase
        self.log(f"Epoch {ev.epoch}: {ev.description} ({_count(ev.trainable_params)} of "
                 f"{_count(ev.total_params)} parameters trainable)")
        self.state.trainingPhaseChanged.emit(ev)

    def _on_checkpoint(self, path: str) -> None:
        self.checkpoint_path = path

    def _on_paused(self) -> None:
        self._paused_since = time.monotonic()
        self.eta_label.setText("ETA \u2013 (paused)")
        self.status_label.setText("Paused \u2014 press Resume to continue or Stop to end the run")
        self.log("Paused")
        self._update_buttons()

    def _on_resumed(self) -> None:
        if self._paused_since is not None:
            self._paused_s += time.monotonic() - self._paused_since
            self._paused_since = None
        self.status_label.setText("Training")
        self.log("Resumed")
        self._update_buttons()

    def _on_engine_error(self, ev: Any) -> None:
        self.log(f"Error: {ev.message}" + (f" \u2014 {ev.suggestion}" if ev.suggestion else ""))

    def _on_outcome(self, outcome: Any) -> None:
        rec = self._record
        result = outcome.result
        if rec is not None:
            from transfer_studio.core import runs

            runs.update_record(rec, result, status=outcome.status, duration_s=outcome.duration_s)
            if outcome.status == "failed" and not Path(rec.run_dir).exists() \
                    and rec in self.state.project.runs:
                # It failed before writing anything (bad settings or data): nothing to remember.
                self.state.project.runs.remove(rec)
            self.state.mark_changed("runs")
        if outcome.status == "finished":
            acc = f", best validation accuracy {_pct(result.val_accuracy)} (epoch {result.best_epoch})" \
                if result is not None and result.val_accuracy is not None else ""
            self.status_label.setText("Finished" + acc)
            self.log("Training finished" + acc)
            if result is not None and result.stopped_early:
                self.log("Stopped early: the validation loss stopped improving")
            if rec is not None:
                self.state.project.ui["selected_run"] = rec.run_dir
                self._loading = True
                try:
                    self.state.mark_changed("ui")
                finally:
                    self._loading = False
            self.state.status("Training finished" + acc, 8000)
        elif outcome.status == "stopped":
            done = rec.epochs_completed if rec is not None else 0
            self.status_label.setText(f"Stopped after {done} epoch(s); resume it from its checkpoint")
            self.log("Training stopped" + (f" after epoch {done}; the last checkpoint is kept"
                                           if done else " before the first epoch ended"))
        else:
            failure = outcome.failure
            message = failure.message if failure else "Training failed."
            suggestion = failure.suggestion if failure else ""
            self.status_label.setText("Failed")
            self.log(f"Failed: {message}")
            if failure is not None and failure.detail:
                self.log(failure.detail.rstrip())
            self._failure = (_sentence(message), _sentence(_gui_advice(suggestion)),
                             failure.detail if failure else "")

    def _on_thread_finished(self) -> None:
        from transfer_studio.core.run_folder import has_checkpoint

        run_dir = self._record.run_dir if self._record is not None else None
        self._stopping = False
        self._record = None
        self._refresh_resumable()
        self._set_idle()
        if self._failure is not None:
            message, suggestion, detail = self._failure
            self._failure = None
            action_text, action = None, None
            if run_dir and has_checkpoint(Path(run_dir)):
                action_text, action = "Resume from checkpoint", lambda d=run_dir: self.resume_run(d)
                if "out of memory" in message.lower() and self._fit_start is not None \
                        and self._fit_start.batch_size > 1:
                    smaller = self._fit_start.batch_size // 2
                    action_text = f"Resume with batch size {smaller}"
                    action = lambda d=run_dir, b=smaller: self.resume_run(d, batch_size=b)  # noqa: E731
            self._show_error(message, suggestion, detail=detail, action_text=action_text, action=action)

    def _show_error(self, message: str, suggestion: str = "", *, detail: str = "",
                    action_text: str | None = None, action: Any = None) -> None:
        """The page's error banner: the problem in bold, then what to do about it."""
        text = f"<b>{html.escape(message)}</b>"
        if suggestion:
            text += f"<br>{html.escape(suggestion)}"
        self.banner.show_message(text, "error", details=html.escape(detail).replace("\n", "<br>") or None,
                                 action_text=action_text, action=action)

    # -- display helpers -------------------------------------------------------------------------
    def log(self, text: str) -> None:
        stamp = _dt.datetime.now().strftime("%H:%M:%S")
        self.log_view.appendPlainText(f"{stamp}  {text}")

    def _clear_run_display(self, *, keep_batches: bool = False) -> None:
        if not keep_batches:
            self._shown_run = None
        self.charts.clear(keep_batches=keep_batches)
        self.table.setRowCount(0)
        self._best_row = -1
        self._fit_start = None
        self._phase = None
        self._epochs_total = self.state.project.train.epochs
        self._start_epoch = 1
        for bar, text in ((self.epoch_progress, "Epoch \u2013"), (self.run_progress, "Run \u2013")):
            bar.setValue(0)
            bar.setFormat(text)
        self.speed_label.setText("\u2013 images/s")
        self.eta_label.setText("ETA \u2013")

    def _load_history(self, run_dir: Path, *, with_lr: bool = True) -> None:
        """Show the epochs a resumed run already has (its history.json) before it continues; with
        ``with_lr`` also their learning rates (per epoch: the history keeps no per-batch values)."""
        from transfer_studio.core import run_folder

        rows = run_folder.read_history(run_dir)
        if with_lr:
            lrs = [(float(r["epoch"]), float(r["lr"])) for r in rows if isinstance(r.get("lr"), int | float)]
            if lrs:
                self.charts.add_epoch_lr(*zip(*lrs, strict=True))
        for row in rows:
            try:
                epoch = int(row["epoch"])
                self.charts.add_epoch(epoch, row.get("train_loss"), row.get("val_loss"),
                                      row.get("train_accuracy"), row.get("val_accuracy"))
                self._add_table_row(epoch, row.get("train_loss"), row.get("train_accuracy"),
                                    row.get("val_loss"), row.get("val_accuracy"), row.get("lr"),
                                    row.get("seconds"), bool(row.get("is_best", False)))
            except (KeyError, TypeError, ValueError):
                continue
        if self.table.rowCount() and self._best_row < 0:
            self._mark_best_by_val_loss()

    def _add_table_row(self, epoch: int, train_loss: Any, train_acc: Any, val_loss: Any, val_acc: Any,
                       lr: Any, seconds: Any, is_best: bool) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        values = (str(epoch), _fmt(train_loss, "{:.4f}"), _pct(train_acc), _fmt(val_loss, "{:.4f}"),
                  _pct(val_acc), _fmt(lr, "{:.3g}"), _fmt(seconds, "{:.1f} s"))
        for col, text in enumerate(values):
            item = QTableWidgetItem(text)
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(row, col, item)
        if is_best:
            self._set_best_row(row)
        self.table.scrollToBottom()

    def _set_best_row(self, row: int) -> None:
        for r, best in ((self._best_row, False), (row, True)):
            if r < 0 or r >= self.table.rowCount():
                continue
            for col in range(self.table.columnCount()):
                item = self.table.item(r, col)
                font = item.font()
                font.setBold(best)
                item.setFont(font)
                if best:
                    item.setBackground(self.palette().color(QPalette.ColorRole.Highlight).lighter(190)
                                       if self.palette().color(QPalette.ColorRole.Base).lightness() > 127
                                       else self.palette().color(QPalette.ColorRole.Highlight).darker(160))
                else:
                    item.setData(Qt.ItemDataRole.BackgroundRole, None)
            epoch_item = self.table.item(r, 0)
            text = epoch_item.text().lstrip("\u2605 ")
            epoch_item.setText(f"\u2605 {text}" if best else text)
        self._best_row = row

    def _mark_best_by_val_loss(self) -> None:
        best, best_loss = -1, math.inf
        for r in range(self.table.rowCount()):
            try:
                loss = float(self.table.item(r, 3).text())
            except ValueError:
                continue
            if loss < best_loss:
                best, best_loss = r, loss
        if best >= 0:
            self._set_best_row(best)

    def best_epoch(self) -> int | None:
        """The epoch the table marks as best (tests, accessibility)."""
        if self._best_row < 0:
            return None
        return int(self.table.item(self._best_row, 0).text().lstrip("\u2605 "))

    def _set_progress(self, epoch: int, step: int, steps: int, epoch_done: int | None = None) -> None:
        total = max(1, self._epochs_total)
        if epoch_done is not None:  # an epoch just ended: the epoch bar is full
            self.epoch_progress.setValue(1000)
            self.epoch_progress.setFormat(f"Epoch {epoch_done}/{total} done")
            fraction = epoch_done / total
        else:
            frac_epoch = step / max(1, steps)
            self.epoch_progress.setValue(int(1000 * frac_epoch))
            self.epoch_progress.setFormat(f"Epoch {epoch}/{total}: batch {step}/{steps}")
            fraction = (epoch - 1 + frac_epoch) / total
        fraction = min(1.0, max(0.0, fraction))
        self.run_progress.setValue(int(1000 * fraction))
        self.run_progress.setFormat(f"Run {fraction * 100:.0f}%")
        if epoch_done is None and self._paused_since is None:
            # ETA from this session's pace (a resumed run's earlier epochs and paused time do not count).
            done = fraction - self._session_fraction0
            elapsed = time.monotonic() - self._session_t0 - self._paused_s
            if done > 0.002 and elapsed > 1.0:
                self.eta_label.setText(f"ETA {_duration(elapsed * (1.0 - fraction) / done)}")

    def _set_running(self) -> None:
        for w in (self.settings_box,):
            w.setEnabled(False)
        self._set_links_active(False)
        self.state.set_training_active(True)
        self._update_buttons()

    def _set_idle(self) -> None:
        self.settings_box.setEnabled(True)
        self._set_links_active(True)
        self.state.set_training_active(False)
        self.eta_label.setText("ETA \u2013")
        if self.status_label.text().startswith(("Starting", "Stopping", "Pausing", "Resuming", "Preparing")):
            self.status_label.setText("")
        self._update_buttons()

    def _set_links_active(self, active: bool) -> None:
        """The "Change…" links are links only while the settings can change: a disabled label
        still drew them as live links."""
        for link, target in ((self.model_link, "model"), (self.strategy_link, "strategy")):
            link.setText(f'<a href="{target}">Change\u2026</a>' if active else "Change\u2026")
            link.setTextInteractionFlags(
                Qt.TextInteractionFlag.LinksAccessibleByMouse | Qt.TextInteractionFlag.LinksAccessibleByKeyboard
                if active else Qt.TextInteractionFlag.NoTextInteraction)
            link.setCursor(Qt.CursorShape.PointingHandCursor if active else Qt.CursorShape.ArrowCursor)

    def _update_buttons(self) -> None:
        pending = self._pending is not None
        running = self._controller.is_running() or pending
        paused = self._controller.is_paused()
        stopping = self._stopping
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running and not pending and not paused and not stopping)
        self.resume_button.setEnabled(running and paused and not stopping)
        self.stop_button.setEnabled(running and not stopping)
        has_resumable = self.resume_run_combo.count() > 0
        self.resume_run_combo.setEnabled(not running and has_resumable)
        self.resume_run_button.setEnabled(not running and has_resumable)
        for w in (self._resume_run_label, self.resume_run_combo, self.resume_run_button):
            w.setVisible(has_resumable)

    def _refresh_resumable(self) -> None:
        """Fill the interrupted-runs list (``core.runs.resumable_runs``): runs the project knows + run
        folders found on disk."""
        from transfer_studio.core import runs
        from transfer_studio.ui.train_worker import runs_root

        current = self.resume_run_combo.currentData()
        running_dir = str(self._controller.run_dir) if self._controller.is_running() else None
        root = runs_root(self.state.path) if self.state.path is not None else None
        entries: list[tuple[str, str]] = []
        for run in runs.resumable_runs(self.state.project.runs, root, exclude=running_dir):
            rec = run.record
            if rec is None:  # a killed app may have left runs the project never saved
                entries.append((f"{Path(run.run_dir).name} \u2014 found on disk", run.run_dir))
                continue
            status = "interrupted" if rec.status == "running" else rec.status
            entries.append((f"{Path(rec.run_dir).name} \u2014 {status}, {rec.epochs_completed} epoch(s)",
                            rec.run_dir))
        self.resume_run_combo.blockSignals(True)
        self.resume_run_combo.clear()
        for text, data in entries:
            self.resume_run_combo.addItem(text, data)
        if current:
            idx = self.resume_run_combo.findData(current)
            if idx >= 0:
                self.resume_run_combo.setCurrentIndex(idx)
        self.resume_run_combo.blockSignals(False)

    def _check_ready(self) -> tuple[str, str, tuple[str, Any]] | None:
        """A problem that would make the run fail at once: (message, suggestion, (action, callback))."""
        root = self.state.project.data.root
        go_data = ("Open the Data page", lambda: self.state.navigateRequested.emit("data"))
        if not root:
            return ("No dataset chosen yet.",
                    "Choose a folder of images (one sub-folder per class) on the Data page.", go_data)
        if not Path(root).is_dir():
            return (f"The dataset folder is missing: {root}",
                    "Reconnect the drive that holds it or choose the folder again on the Data page.",
                    go_data)
        device = self.state.project.train.device
        if self._devices is not None and device in ("cuda", "mps") and not self._devices.has(device):
            name = {"cuda": "CUDA GPU", "mps": "Apple GPU (MPS)"}[device]
            return (f"No {name} was found on this computer.",
                    "Choose Auto or CPU as the device (Auto uses a GPU whenever there is one).",
                    ("Use Auto", lambda: self.device_combo.setCurrentIndex(self.device_combo.findData("auto"))))
        return None


# -- helpers (plain functions: easy to test) -------------------------------------------------------
_AUTO_WORDS = {"epochs": "epochs", "batch_size": "batch size", "lr": "learning rate", "augment": "augmentation",
               "freeze": "what is frozen", "body_lr_factor": "body rate", "head_epochs": "head epochs",
               "warmup_epochs": "warm-up", "label_smoothing": "label smoothing"}


def auto_summary(project: Any) -> str:
    """With strategy Auto: which values the advisor decides and which ones it keeps (rich text)."""
    mine = [n for n in _AUTO_WORDS if n in project.train.user_set]
    decides = [w for n, w in _AUTO_WORDS.items() if n not in mine and n in ("epochs", "batch_size", "lr", "augment",
                                                                          "freeze")]
    text = ("<b>Auto decides</b> " + (", ".join(decides) if decides else "only the strategy")
            + " when training starts, from measurements on your images.")
    if mine:
        text += (" <b>Yours, kept:</b> " + ", ".join(_AUTO_WORDS[n] for n in mine)
                 + ' — <a href="auto">let Auto decide these too</a>')
    return text


def frozen_summary(project: Any) -> str:
    """What stays frozen, in words, from the strategy and the Model page's freeze edits."""
    t = project.train
    text = {
        "auto": "chosen from the dataset size when training starts",
        "head": "the whole pretrained network; only the new head trains",
        "full": "nothing: the whole network trains"
                + (" (from the pretrained weights)" if project.model.weights != "none" else ""),
    }.get(t.strategy)
    if text is None:  # partial
        where = f"blocks before {t.unfreeze_from}" if t.unfreeze_from else "the early blocks"
        text = (f"{where}; the head trains alone for {t.head_epochs} epoch(s), then the later blocks "
                f"unfreeze at lr \u00d7 {t.body_lr_factor:g}")
    edits = [op for op in project.surgery if op.op in ("freeze", "unfreeze", "freeze_before")]
    if edits:
        names = "; ".join(_freeze_edit_text(op.op, op.target) for op in edits[:3])
        more = f"; {len(edits) - 3} more" if len(edits) > 3 else ""
        text += f" \u00b7 on the Model page: {names}{more}"
    return text


def _freeze_edit_text(op: str, target: str) -> str:
    """A freeze edit in words (no internal op names such as "freeze_before")."""
    what = target.rstrip("*").rstrip(".") if target not in ("", "*") else ""
    if op == "freeze_before":
        return f"everything before {what} frozen"
    state = "frozen" if op == "freeze" else "trainable"
    return f"{what} {state}" if what else f"everything {state}"


def probe_devices(warm_up: bool = True) -> Any:
    """This machine's devices (``core.devices.probe``; a background task: it imports torch).

    With ``warm_up`` it also imports the training engine (torchvision and all), so that pressing
    Start does not wait for it — and its one-off import cost (loading C extensions holds the GIL
    for a few hundred ms) falls when the page opens rather than while a run starts.
    """
    from transfer_studio.ui import runtime

    runtime.ensure_ml()
    if warm_up:
        for name in runtime.TRAINING_MODULES:
            runtime.import_module(name)
    return runtime.import_core("devices").probe()


def _link(name: str, target: str, text: str, tip: str) -> QLabel:
    """A hyperlink-style label; activating it emits the page key ``target``."""
    label = QLabel(f'<a href="{target}">{text}</a>')
    label.setObjectName(name)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse
                                  | Qt.TextInteractionFlag.LinksAccessibleByKeyboard)
    label.setToolTip(tip)
    return label


def _gui_advice(text: str) -> str:
    """The engine's advice names CLI commands (``transfer-studio train --resume RUN``); in the app the
    same step is a button on this page."""
    text = re.sub(r"resume with: transfer-studio train --resume \S+ --batch-size (\d+)",
                  "set the batch size to \\1 and press \u201cResume from checkpoint\u201d", text)
    text = re.sub(r"resume with: transfer-studio train --resume \S+",
                  "press \u201cResume from checkpoint\u201d", text)
    return re.sub(r"\s*\(train\.allow_oom_retry\)", "", text)


def _select(combo: QComboBox, key: Any) -> None:
    idx = combo.findData(key)
    if idx < 0:  # a value this page does not list (edited by hand): show it rather than lose it
        combo.addItem(str(key), key)
        idx = combo.count() - 1
    combo.setCurrentIndex(idx)


def _sentence(text: str) -> str:
    """The engine's one-line messages start lower-case (CLI style); the page shows sentences."""
    text = text.strip()
    return text[:1].upper() + text[1:] if text else text


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "\u2013"
    try:
        return spec.format(float(value))
    except (TypeError, ValueError):
        return "\u2013"


def _pct(value: Any) -> str:
    return "\u2013" if value is None else f"{float(value) * 100:.1f}%"


def _count(n: int) -> str:
    n = int(n)
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} M"
    if n >= 10_000:
        return f"{n / 1e3:.1f} k"
    return f"{n:,}"


def _duration(seconds: float) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "\u2013"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"
