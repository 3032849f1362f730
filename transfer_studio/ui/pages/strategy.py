"""Strategy page: the advisor's suggestion of how much of the network to retrain, and the user's choice.

``training.advice`` runs on a worker thread, with progress and cancel: it measures on the training
images (cached backbone features, a cross-validated linear probe, a learning-rate range test, flip
and rotation checks) and times a few real training steps on the device. The evidence is kept for the
page's inputs it depends on; a new time budget only re-decides from it.
"Apply" writes the suggestion into the project (``apply_suggestion``: training settings, augmentation
preset, freeze map; plus a head for the dataset's classes when the project has none) as one undoable
step, so the Model page's graph shows the new freeze map at once. The user can pick another approach
or change any value; the trainable-parameter counts come from networks rebuilt from the project on
the meta device, off the GUI thread.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QShowEvent, QUndoCommand
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.config import Project, mark_user_set
from transfer_studio.ui.runtime import import_core, import_module
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import BusyIndicator, EmptyState, MessageBanner, format_count, format_share
from transfer_studio.ui.widgets.heading import page_heading
from transfer_studio.ui.widgets.lr_curve import LRCurve
from transfer_studio.ui.widgets.lr_spin import LrSpinBox
from transfer_studio.ui.worker import TaskHandle, run_task, wait_for_tasks

APPROACHES = {
    1: ("head", "Train only a new output layer",
        "The whole pretrained network stays frozen; only a new output layer learns your classes."),
    2: ("partial", "Retrain the last blocks and a new output layer",
        "Early layers keep their general features; the last blocks adapt to your images."),
    3: ("full", "Fine-tune the whole network",
        "Every layer adapts, starting from the pretrained weights. Needs the most data and time."),
}
NAME_TO_APPROACH = {name: k for k, (name, _, _) in APPROACHES.items()}
BUDGET_KEY = "strategy_time_budget_hours"  # project.ui
SUGGESTION_KEY = "strategy_suggestion"  # project.ui: the last applied suggestion (shown after open)
DEFAULT_BUDGET_HOURS = 2.0
DEVICES = ("auto", "cpu", "cuda", "mps")
_CIRCLED = {1: "①", 2: "②", 3: "③"}


ADVICE_STEPS = ("Computing features of your training images", "Cross-validating a linear classifier",
                "Learning-rate range test", "Checking whether flips and rotations keep the classes",
                "Timing a few training steps")
_STEP_ENDS = (0.5, 0.6, 0.62, 0.76, 1.01)  # training.advice's progress fractions where each step ends


# -- background jobs ---------------------------------------------------------------------------------
def run_suggest(project: Project, report: Any, budget: float, probe: bool, evidence: Any = None, *,
                progress: Any, cancel: Any) -> tuple[Any, Any]:
    """(suggestion, evidence): the evidence is gathered unless given (then only the decision is made)."""
    strategy, _ = import_core("strategy"), import_core("head")  # head: for the GUI thread's apply
    advice = import_module("transfer_studio.training.advice")
    from transfer_studio.errors import Cancelled

    def check() -> None:
        if cancel():
            raise Cancelled("the advisor was cancelled")

    def on_stage(_text: str, fraction: float) -> None:
        step = next(i for i, end in enumerate(_STEP_ENDS) if fraction < end or i == len(_STEP_ENDS) - 1)
        progress(step, len(ADVICE_STEPS))

    if evidence is None:
        evidence = advice.gather(project, report, progress=on_stage, check=check)
    suggestion = strategy.suggest(report, project.model.name, device=project.train.device,
                                  time_budget_hours=budget, probe=probe, evidence=evidence)
    return suggestion, evidence


def evidence_key(project: Project, report: Any) -> str:
    """What the evidence depends on: the data, model, weights, device, image size, split and surgery."""
    import json

    d, t = project.data, project.train
    structural = [dataclasses.asdict(op) for op in project.surgery
                  if op.op not in ("freeze", "unfreeze", "freeze_before", "replace_head")]
    return json.dumps([str(getattr(report, "root", "")), getattr(report, "num_images", 0), project.model.name,
                       project.model.weights, t.device, t.image_size, d.val_split, d.test_split, d.seed,
                       bool(d.split), structural], default=str)


def count_parameters(projects: list[Project]) -> list[tuple[int, int]]:
    """(trainable, total) parameters of each project's network, built on the meta device."""
    network, surgery = import_core("network"), import_core("surgery")
    return [surgery.param_counts(network.build_network_meta(project)) for project in projects]


def suggestion_from_dict(data: dict[str, Any]) -> Any:
    """The core's Suggestion from its saved form (project.ui); unknown keys are ignored."""
    Suggestion = import_core("strategy").Suggestion  # noqa: N806 - a class
    import_core("head")  # for the GUI thread, which applies the suggestion

    names = {f.name for f in dataclasses.fields(Suggestion)}
    return Suggestion(**{k: v for k, v in data.items() if k in names})


def variant(suggestion: Any, approach: int, project: Project, unfreeze_from: str | None = None) -> Any:
    """``suggestion`` switched to another approach, with the advisor's recipe for it (applying it still
    keeps the values the user set explicitly, ``train.user_set``)."""
    import sys

    # Already imported: the suggestion came from it (a GUI-thread call must not take the import lock).
    strategy = sys.modules["transfer_studio.core.strategy"]
    if approach == 2 and not unfreeze_from:
        unfreeze_from = default_cut(suggestion)
    return strategy.as_approach(suggestion, approach, unfreeze_from)


def default_cut(suggestion: Any) -> str:
    """The advisor's own cut when it suggested partial, else the last quarter of the blocks."""
    if suggestion.unfreeze_from:
        return suggestion.unfreeze_from
    body = (list(suggestion.frozen) + list(suggestion.trainable))[:-1]
    return body[max(1, len(body) - max(1, len(body) // 4))]


def apply_to_project(project: Project, suggestion: Any, num_classes: int | None, *,
                     override_user: bool = False) -> None:
    """The core's apply_suggestion, plus a new head for the dataset's classes if there is none yet
    (``core.head``: the trainer adds the same one; adding it now lets the graph show what will train).
    The page's worker threads have imported both core modules."""
    import_core("strategy").apply_suggestion(project, suggestion, override_user=override_user)
    if num_classes:
        import_core("head").match_head(project, num_classes)


def _blocks_text(names: list[str], limit: int = 4) -> str:
    if not names:
        return "nothing"
    if len(names) <= limit:
        return ", ".join(names)
    return f"{names[0]}, {names[1]} … {names[-1]} ({len(names)} blocks)"


_TRANSFORM_WORDS = {"hflip": "mirroring", "rotation": "rotation", "vflip": "vertical flips"}


def _range_text(seconds: list[float]) -> str:
    lo, hi = seconds[0], seconds[1]
    if hi < 60:
        return "under a minute"
    if hi < 3600:
        a, b = max(1, round(lo / 60)), max(1, round(hi / 60))
        return f"≈ {a} min" if a == b else f"{a}–{b} min"
    return f"{lo / 3600:.1f}–{hi / 3600:.1f} h"


def _hours_text(hours: float) -> str:
    if hours < 1 / 60:
        return "under a minute"
    if hours < 1:
        return f"≈ {max(1, round(hours * 60))} min"
    return f"≈ {hours:.1f} h"


def _lr_text(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-") if lr < 0.01 else f"{lr:g}"


class _ProjectStep(QUndoCommand):
    """Undo/redo of one strategy change: the surgery list, training and augmentation settings."""

    SECTIONS = ("surgery", "train", "augment")

    def __init__(self, state: AppState, before: dict[str, Any], after: dict[str, Any], text: str):
        super().__init__(text)
        self._state, self._before, self._after = state, before, after
        self._first = True

    @staticmethod
    def snapshot(project: Project) -> dict[str, Any]:
        return {"surgery": copy.deepcopy(project.surgery), "train": copy.deepcopy(project.train),
                "augment": copy.deepcopy(project.augment)}

    def _restore(self, snap: dict[str, Any]) -> None:
        project = self._state.project
        for section in self.SECTIONS:
            setattr(project, section, copy.deepcopy(snap[section]))
        for section in self.SECTIONS:
            self._state.mark_changed(section)

    def redo(self) -> None:
        if self._first:  # pushed after the change was made and announced
            self._first = False
            return
        self._restore(self._after)

    def undo(self) -> None:
        self._restore(self._before)


class StrategyPage(QWidget):
    TITLE = "Strategy"

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_strategy")
        self.state = state
        self.suggestion: Any = None  # core.strategy.Suggestion shown in the card
        self.counts: dict[str, tuple[int, int]] = {}  # "current" and "1"/"2"/"3" -> (trainable, total)
        self._previous_trainable: int | None = None
        self._suggest_task: TaskHandle | None = None
        self._count_task: TaskHandle | None = None
        self._suggest_token = 0
        self._count_token = 0
        self._restore_task: TaskHandle | None = None
        self._restore_token = 0
        self._stale = True  # the suggestion no longer matches the data / model / device / budget
        self._evidence: Any = None  # core.strategy.Evidence of the last advice, for _evidence_key
        self._evidence_key: str | None = None
        self._loading = False
        self._writing = False
        self._build()
        self._suggest_timer = QTimer(self)
        self._suggest_timer.setSingleShot(True)
        self._suggest_timer.setInterval(300)
        self._suggest_timer.timeout.connect(lambda: self.refresh(probe=False))
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(150)
        self._count_timer.timeout.connect(self._start_count)
        state.projectReplaced.connect(self._load_from_project)
        state.projectChanged.connect(self._on_project_changed)
        state.scanChanged.connect(self._on_scan_changed)
        self._load_from_project()

    # -- construction --------------------------------------------------------------------------
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        body = QWidget()
        scroll.setWidget(body)
        outer.addWidget(scroll)
        root = QVBoxLayout(body)
        root.setContentsMargins(16, 12, 16, 12)
        title, hint = page_heading(
            "Strategy",
            "How much of the pretrained network should learn from your images? Little data: keep it "
            "frozen and train a new output layer. More data: let the last blocks adapt too. Lots of "
            "data and time: fine-tune everything.")
        root.addWidget(title)
        root.addWidget(hint)

        self.banner = MessageBanner(object_name="strategy_message")
        root.addWidget(self.banner)
        self.empty = EmptyState("strategy", "Choose a dataset first",
                                "The advice depends on how many images you have. Choose a dataset on the "
                                "Data page.", object_name="strategy_empty")
        self.go_data_button = self.empty.add_action(
            "Go to the Data page", lambda: self.state.navigateRequested.emit("data"),
            object_name="strategy_go_data", primary=True)
        root.addWidget(self.empty, 1)

        self.content = QWidget()
        self.content.setObjectName("strategy_content")
        cl = QVBoxLayout(self.content)
        cl.setContentsMargins(0, 0, 0, 0)
        root.addWidget(self.content, 1)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Train on"))
        self.device_combo = QComboBox()
        self.device_combo.setObjectName("strategy_device")
        for d, text in zip(DEVICES, ("best available", "CPU", "NVIDIA GPU (CUDA)", "Apple GPU (MPS)"),
                           strict=True):
            self.device_combo.addItem(text, d)
        self.device_combo.currentIndexChanged.connect(self._on_device_changed)
        bar.addWidget(self.device_combo)
        bar.addSpacing(12)
        bar.addWidget(QLabel("Time budget"))
        self.budget_spin = QDoubleSpinBox()
        self.budget_spin.setObjectName("strategy_budget")
        self.budget_spin.setRange(0.05, 240)
        self.budget_spin.setDecimals(2)
        self.budget_spin.setSingleStep(0.5)
        self.budget_spin.setSuffix(" h")
        self.budget_spin.setKeyboardTracking(False)
        self.budget_spin.setToolTip("The longest training you are willing to wait for; the advisor steps "
                                    "down to a cheaper approach when its estimate is longer")
        self.budget_spin.valueChanged.connect(self._on_budget_changed)
        bar.addWidget(self.budget_spin)
        bar.addStretch(1)
        self.probe_button = QPushButton("Check how similar my images are…")
        self.probe_button.setObjectName("strategy_probe")
        self.probe_button.setToolTip("Runs the pretrained network on 64 of your images: if it is unsure what it "
                                     "sees, your images differ from its training photos and more layers "
                                     "should adapt")
        self.probe_button.clicked.connect(lambda: self.refresh(probe=True))
        self.refresh_button = QPushButton("Ask again")
        self.refresh_button.setObjectName("strategy_refresh")
        self.refresh_button.clicked.connect(lambda: self.refresh(probe=False))
        bar.addWidget(self.probe_button)
        bar.addWidget(self.refresh_button)
        cl.addLayout(bar)
        self.busy_indicator = BusyIndicator(object_name="strategy_busy")
        self.busy_indicator.cancelRequested.connect(self._cancel_suggest)
        cl.addWidget(self.busy_indicator)

        cl.addWidget(self._build_card())
        cl.addWidget(self._build_choice())
        cl.addStretch(1)

    def _build_card(self) -> QFrame:
        card = QFrame()
        card.setObjectName("strategy_card")
        card.setProperty("card", True)  # style.qss: base background, rounded border
        lay = QVBoxLayout(card)
        lay.setContentsMargins(16, 12, 16, 12)
        self.card_title = QLabel("Asking the advisor…")
        self.card_title.setObjectName("strategy_card_title")
        self.card_title.setProperty("role", "subheading")
        self.reason_label = QLabel()
        self.reason_label.setObjectName("strategy_reason")
        self.reason_label.setWordWrap(True)
        self.reason_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.card_title)
        lay.addWidget(self.reason_label)
        grid = QGridLayout()
        grid.setHorizontalSpacing(16)
        grid.setColumnStretch(1, 1)
        self.facts: dict[str, QLabel] = {}
        for r, (key, label) in enumerate((
                ("evidence", "Measured"), ("frozen", "Stays frozen"), ("trainable", "Learns"),
                ("lr", "Learning rate"), ("epochs", "Epochs"), ("batch_size", "Batch size"),
                ("augment", "Augmentation"), ("time", "Estimated time"), ("probe", "Similarity check"))):
            name = QLabel(label)
            name.setProperty("role", "muted")
            value = QLabel()
            value.setObjectName(f"strategy_{key}")
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(name, r, 0, Qt.AlignmentFlag.AlignTop)
            grid.addWidget(value, r, 1)
            self.facts[key] = value
            if key == "probe":
                self._probe_name = name
            if key == "lr":
                self.lr_curve = LRCurve(object_name="strategy_lr_curve")
                self.lr_curve.setMaximumWidth(420)
                grid.addWidget(self.lr_curve, r, 2, 3, 1, Qt.AlignmentFlag.AlignTop)
        lay.addLayout(grid)
        row = QHBoxLayout()
        self.apply_button = QPushButton("Apply this suggestion")
        self.apply_button.setObjectName("strategy_apply")
        self.apply_button.setProperty("primary", True)
        self.apply_button.setToolTip("Sets the freeze map (see the Model page) and fills the training settings")
        self.apply_button.clicked.connect(self.apply)
        self.applied_label = QLabel()
        self.applied_label.setObjectName("strategy_applied")
        self.applied_label.setProperty("role", "muted")
        row.addWidget(self.apply_button)
        row.addWidget(self.applied_label, 1)
        lay.addLayout(row)
        return card

    def _build_choice(self) -> QGroupBox:
        box = QGroupBox("Your choice")
        box.setObjectName("strategy_choice")
        lay = QVBoxLayout(box)
        self.approach_group = QButtonGroup(self)
        self.approach_buttons: dict[int, QRadioButton] = {}
        self.approach_notes: dict[int, QLabel] = {}
        grid = QGridLayout()
        grid.setColumnStretch(1, 1)
        for k, (_name, title, text) in APPROACHES.items():
            button = QRadioButton(f"{_CIRCLED[k]}  {title}")
            button.setObjectName(f"strategy_approach_{k}")
            button.setToolTip(text)
            self.approach_group.addButton(button, k)
            note = QLabel()
            note.setObjectName(f"strategy_approach_{k}_note")
            note.setProperty("role", "muted")
            grid.addWidget(button, k, 0)
            grid.addWidget(note, k, 1)
            self.approach_buttons[k] = button
            self.approach_notes[k] = note
        self.approach_group.idClicked.connect(self._on_approach_clicked)
        lay.addLayout(grid)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        self.unfreeze_combo = QComboBox()
        self.unfreeze_combo.setObjectName("strategy_unfreeze_from")
        self.unfreeze_combo.setToolTip("Approach ②: this block and every later one learn; earlier ones stay frozen")
        self.unfreeze_combo.currentIndexChanged.connect(self._on_unfreeze_changed)
        self.unfreeze_combo.setMinimumContentsLength(18)
        self.unfreeze_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        form.addRow("Learn from block", self.unfreeze_combo)
        self.lr_spin = LrSpinBox()
        self.lr_spin.setObjectName("strategy_lr")
        self.lr_spin.setToolTip("Learning rate of the new output layer")
        self.body_lr_spin = LrSpinBox(1e-4, 1.0)
        self.body_lr_spin.setObjectName("strategy_body_lr_factor")
        self.body_lr_spin.setToolTip("Pretrained blocks learn this many times slower than the new layer, "
                                     "so they keep what they know")
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setObjectName("strategy_epochs")
        self.epochs_spin.setRange(1, 1000)
        self.batch_spin = QSpinBox()
        self.batch_spin.setObjectName("strategy_batch_size")
        self.batch_spin.setRange(1, 4096)
        for spin in (self.epochs_spin, self.batch_spin):
            spin.setKeyboardTracking(False)
        form.addRow("Learning rate (new layer)", self.lr_spin)
        form.addRow("Pretrained blocks' rate × ", self.body_lr_spin)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Batch size", self.batch_spin)
        self.lr_spin.valueChanged.connect(lambda v: self._set_train("lr", float(v)))
        self.body_lr_spin.valueChanged.connect(lambda v: self._set_train("body_lr_factor", float(v)))
        self.epochs_spin.valueChanged.connect(lambda v: self._set_train("epochs", int(v)))
        self.batch_spin.valueChanged.connect(lambda v: self._set_train("batch_size", int(v)))
        for spin in (self.lr_spin, self.body_lr_spin, self.epochs_spin, self.batch_spin):
            spin.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.UpDownArrows)
            spin.setMaximumWidth(140)
        lay.addLayout(form)
        self.trainable_label = QLabel("—")
        self.trainable_label.setObjectName("strategy_trainable_count")
        self.trainable_label.setProperty("role", "subheading")
        lay.addWidget(self.trainable_label)
        return box

    # -- public API ----------------------------------------------------------------------------
    def refresh(self, probe: bool = False) -> None:
        """Ask the advisor (in the background) for the current data, model, device and budget."""
        self._suggest_timer.stop()
        report = self.state.scan
        if report is None:
            self._show_empty()
            return
        if self._suggest_task is not None:
            self._suggest_task.cancel()
        self._suggest_token += 1
        token = self._suggest_token
        self._stale = False
        project = self.state.project
        key = evidence_key(project, report)
        evidence = self._evidence if key == self._evidence_key else None
        self._suggest_task = run_task(
            run_suggest, project.copy(), report, self.budget_spin.value(), probe, evidence,
            name="suggest", pass_control=True,
            on_result=lambda r: self._on_suggestion(token, r[0], r[1], key),
            on_error=lambda m, tb: self._on_suggest_error(token, m),
            on_cancelled=lambda: self._on_suggest_finished(token),
            on_finished=lambda: self._on_suggest_finished(token),
        )
        if evidence is not None:
            self.busy_indicator.start("Asking the advisor…", handle=self._suggest_task)
        else:
            self.busy_indicator.start("Asking the advisor", handle=self._suggest_task, steps=ADVICE_STEPS)

    def apply(self) -> None:
        """Apply the advisor's suggestion to the project (one undoable step)."""
        if self.suggestion is None:
            return
        self._apply(self.suggestion, f"Apply suggested strategy: {self.suggestion.name}", remember=True,
                    override_user=True)

    def choose(self, approach: int, unfreeze_from: str | None = None) -> None:
        """Switch the project to another approach, keeping the training values the user has."""
        if self.suggestion is None:
            return
        s = variant(self.suggestion, approach, self.state.project, unfreeze_from)
        self._apply(s, f"Choose strategy: {s.name}", remember=False)

    def busy(self) -> bool:
        return any(t is not None and t.is_running()
                   for t in (self._suggest_task, self._count_task, self._restore_task))

    def shutdown(self) -> None:
        self._suggest_timer.stop()
        self._count_timer.stop()
        wait_for_tasks([self._suggest_task, self._count_task, self._restore_task], 60000)

    # -- applying ------------------------------------------------------------------------------
    def _apply(self, suggestion: Any, text: str, *, remember: bool, override_user: bool = False) -> None:
        from transfer_studio.errors import UserError

        project = self.state.project
        before = _ProjectStep.snapshot(project)
        trial = project.copy()
        num_classes = import_core("head").class_count(project, self.state.scan)
        try:
            apply_to_project(trial, suggestion, num_classes, override_user=override_user)
        except UserError as exc:
            self.banner.show_message(str(exc), "error")
            return
        project.surgery, project.train, project.augment = trial.surgery, trial.train, trial.augment
        if remember:
            saved = dataclasses.asdict(suggestion)
            if saved.get("evidence"):  # the curve's hundred points are not worth keeping in the project
                saved["evidence"] = {k: v for k, v in saved["evidence"].items() if k != "lr_curve"}
            project.ui[SUGGESTION_KEY] = saved
        after = _ProjectStep.snapshot(project)
        self._writing = True
        try:
            for section in ("surgery", "train", "augment") + (("ui",) if remember else ()):
                self.state.mark_changed(section)
        finally:
            self._writing = False
        self.state.undo_stack.push(_ProjectStep(self.state, before, after, text))
        self.banner.clear()
        self._show_choice()
        self.state.status(f"Strategy set: {APPROACHES[suggestion.approach][1].lower()}. The Model page shows "
                          "the new freeze map.")

    def _on_approach_clicked(self, approach: int) -> None:
        if self._loading or self.suggestion is None:
            return
        cut = self.unfreeze_combo.currentData() if approach == 2 else None
        self.choose(approach, cut)

    def _on_unfreeze_changed(self, _index: int) -> None:
        if self._loading or self.suggestion is None:
            return
        block = self.unfreeze_combo.currentData()
        if block and self.state.project.train.strategy == "partial" and block != self.state.project.train.unfreeze_from:
            self.choose(2, block)

    def _set_train(self, key: str, value: Any) -> None:
        if self._loading:
            return
        t = self.state.project.train
        if getattr(t, key) == value:
            return
        setattr(t, key, value)
        mark_user_set(t, key)  # typed here: the advisor (strategy Auto) keeps it
        self._writing = True
        try:
            self.state.mark_changed("train")
        finally:
            self._writing = False
        self._update_applied_label()

    # -- suggestion results --------------------------------------------------------------------
    def _on_suggestion(self, token: int, suggestion: Any, evidence: Any = None, key: str | None = None) -> None:
        if token != self._suggest_token:
            return
        if evidence is not None:
            self._evidence, self._evidence_key = evidence, key
        probe = self.suggestion.probe if (self.suggestion is not None and suggestion.probe is None
                                          and self.suggestion.model == suggestion.model) else None
        if probe is not None:
            suggestion = dataclasses.replace(suggestion, probe=probe)  # keep the verdict already shown
        self.suggestion = suggestion
        self.banner.clear()
        self._show_card()
        self._show_choice()

    def _on_suggest_error(self, token: int, message: str) -> None:
        if token == self._suggest_token:
            self.banner.show_message(f"The advisor could not make a suggestion: {message}", "error")
            if self.suggestion is None:
                self.card_title.setText("No suggestion yet")

    def _on_suggest_finished(self, token: int) -> None:
        if token == self._suggest_token:
            self.busy_indicator.stop()

    def _cancel_suggest(self) -> None:
        if self._suggest_task is not None:
            self._suggest_task.cancel()
            self._stale = True

    def _show_card(self) -> None:
        s = self.suggestion
        if s is None:
            self.card_title.setText("No suggestion yet")
            self.reason_label.setText("")
            for value in self.facts.values():
                value.setText("")
            self._probe_name.hide()
            self.facts["probe"].hide()
            self.lr_curve.set_curve([], [], None)
            self.apply_button.setEnabled(False)
            return
        _, title, _ = APPROACHES[s.approach]
        self.card_title.setText(f"Suggested: {_CIRCLED[s.approach]}  {title}")
        self.reason_label.setText(s.reason)
        head = s.trainable[-1] if s.trainable else ""
        frozen_text = _blocks_text(s.frozen)
        if not s.frozen:
            frozen_text = "nothing — every layer learns"
        self.facts["frozen"].setText(frozen_text)
        self.facts["frozen"].setToolTip("\n".join(s.frozen))
        trained = [b for b in s.trainable if b != head]
        self.facts["trainable"].setText(
            f"{_blocks_text(trained)} and a new output layer" if trained else "a new output layer only")
        self.facts["trainable"].setToolTip("\n".join(s.trainable))
        ev = s.evidence or {}
        if ev:
            self.facts["evidence"].setText(
                f"A linear classifier on the frozen network's features gets {ev['cv_accuracy']:.0%} of your "
                f"{ev['train_images']:,} training images right ({ev['folds']}-fold cross-validation, "
                "validation images untouched).")
        else:
            self.facts["evidence"].setText("Nothing measured yet: this suggestion follows the image counts.")
        if s.approach == 1:
            lr = "none needed: the new output layer is fitted to convergence (L-BFGS)"
        else:
            lr = (f"{_lr_text(s.lr)} for the new output layer (range test on your images), "
                  f"{_lr_text(s.lr * s.body_lr_factor)} for the pretrained blocks")
        self.facts["lr"].setText(lr)
        curve = ev.get("lr_curve") or {}
        self.lr_curve.set_curve(curve.get("lrs", []), curve.get("losses", []), ev.get("lr"))
        self.lr_curve.setVisible(bool(curve.get("lrs")))
        epochs = str(s.epochs)
        if s.approach > 1 and s.head_epochs:
            epochs += (f" ({s.head_epochs} fitting the new output layer alone, then {s.epochs - s.head_epochs} "
                       f"fine-tuning with a {s.warmup_epochs:g}-epoch warm-up)")
        self.facts["epochs"].setText(epochs)
        self.facts["batch_size"].setText(str(s.batch_size))
        off = [k for k, v in (s.augment_params or {}).items() if v.get("enabled") is False]
        augment = s.augment + (f" without {', '.join(_TRANSFORM_WORDS.get(k, k) for k in off)}" if off else "")
        self.facts["augment"].setText(augment + (f". {s.augment_reason}" if s.augment_reason else ""))
        where = {"cuda": "the GPU", "mps": "the Apple GPU"}.get(s.device, "the CPU")
        when = (_range_text(s.estimate_range_s) + " (timed on a few real training steps)"
                if s.estimate_range_s and s.estimate_source == "trial" else _hours_text(s.estimated_hours))
        time_text = f"{when} on {where}, within your {s.time_budget_hours:g} h budget"
        if s.estimated_hours > s.time_budget_hours:
            time_text = f"{when} on {where} — over your {s.time_budget_hours:g} h budget"
        if s.stepped_down:
            wanted = APPROACHES[s.data_choice][0] if s.data_choice in APPROACHES else "a bigger approach"
            took = s.estimates_hours.get(wanted)
            time_text += (f". Stepped down from {wanted} training"
                          + (f", which would take {_hours_text(took).replace('≈ ', 'about ')}" if took else "")
                          + ".")
        self.facts["time"].setText(time_text)
        probe = s.probe
        self._probe_name.setVisible(probe is not None)
        self.facts["probe"].setVisible(probe is not None)
        if probe is not None:
            verdict = ("your images resemble the photos the network learnt from" if probe.get("similar")
                       else "your images look different from the photos the network learnt from, so more "
                            "of it should adapt")
            self.facts["probe"].setText(
                f"{verdict} (on {probe.get('images', 0)} images it is {probe.get('mean_confidence', 0):.0%} "
                f"sure of what it sees on average; {probe.get('threshold', 0):.0%} or more counts as similar).")
        self.apply_button.setEnabled(True)
        self._loading = True
        try:
            self.budget_spin.setValue(s.time_budget_hours)
        finally:
            self._loading = False
        self._update_applied_label()

    def _show_choice(self) -> None:
        """Radio buttons, block list and spin boxes from the project; then recount parameters."""
        project = self.state.project
        t = project.train
        s = self.suggestion
        self._loading = True
        try:
            current = NAME_TO_APPROACH.get(t.strategy)
            self.approach_group.setExclusive(False)
            for k, button in self.approach_buttons.items():
                button.setChecked(k == current)
                button.setEnabled(s is not None)
            self.approach_group.setExclusive(True)
            self.unfreeze_combo.clear()
            if s is not None:
                body = (list(s.frozen) + list(s.trainable))[:-1]
                for block in body[1:]:
                    self.unfreeze_combo.addItem(block, block)
                cut = t.unfreeze_from if t.strategy == "partial" and t.unfreeze_from else default_cut(s)
                self.unfreeze_combo.setCurrentIndex(max(0, self.unfreeze_combo.findData(cut)))
            self.unfreeze_combo.setEnabled(s is not None and current == 2)
            self.lr_spin.setValue(t.lr)
            self.body_lr_spin.setValue(t.body_lr_factor)
            self.epochs_spin.setValue(t.epochs)
            self.batch_spin.setValue(t.batch_size)
            self.body_lr_spin.setEnabled(current != 1)
            if s is not None:
                for k, note in self.approach_notes.items():
                    name = APPROACHES[k][0]
                    hours = s.estimates_hours.get(name)
                    span = (s.estimates_s or {}).get(name)
                    note.setText(_range_text(span[1:]) if span and s.estimate_source == "trial"
                                 else _hours_text(hours) if hours is not None else "")
        finally:
            self._loading = False
        self._update_applied_label()
        self._count_timer.start()

    def _update_applied_label(self) -> None:
        s, t = self.suggestion, self.state.project.train
        if s is None:
            self.applied_label.setText("")
            return
        same = (t.strategy == s.name and (t.unfreeze_from or None) == (s.unfreeze_from or None)
                and abs(t.lr - s.lr) < 1e-12 and t.epochs == s.epochs and t.batch_size == s.batch_size)
        self.applied_label.setText("✓ The project uses this suggestion." if same else
                                   "The project uses other settings (see below).")

    # -- parameter counts ----------------------------------------------------------------------
    def _start_count(self) -> None:
        project = self.state.project
        projects = [project.copy()]
        keys = ["current"]
        if self.suggestion is not None:
            num_classes = import_core("head").class_count(project, self.state.scan)
            cut = self.unfreeze_combo.currentData()
            for k in APPROACHES:
                p = project.copy()
                try:
                    apply_to_project(p, variant(self.suggestion, k, p, cut), num_classes)
                except Exception:  # noqa: BLE001 - a variant that cannot apply just shows no count
                    continue
                projects.append(p)
                keys.append(str(k))
        if self._count_task is not None:
            self._count_task.cancel()
        self._count_token += 1
        token = self._count_token
        self._count_task = run_task(
            count_parameters, projects, name="count-params", pass_control=False,
            on_result=lambda r: self._on_counts(token, keys, r),
            on_error=lambda m, tb: self._on_count_error(token, m),
        )

    def _on_counts(self, token: int, keys: list[str], result: list[tuple[int, int]]) -> None:
        if token != self._count_token:
            return
        self.counts = dict(zip(keys, result, strict=True))
        trainable, total = self.counts["current"]
        text = f"The project trains {trainable:,} of {total:,} parameters ({format_share(trainable, total)})"
        if self._previous_trainable is not None and self._previous_trainable != trainable:
            text += f" — was {self._previous_trainable:,}"
        self.trainable_label.setText(text)
        self._previous_trainable = trainable
        if self.suggestion is not None:
            for k, note in self.approach_notes.items():
                hours = self.suggestion.estimates_hours.get(APPROACHES[k][0])
                parts = []
                if str(k) in self.counts:
                    parts.append(f"{format_count(self.counts[str(k)][0])} parameters learn")
                if hours is not None:
                    parts.append(_hours_text(hours))
                note.setText(" · ".join(parts))

    def _on_count_error(self, token: int, message: str) -> None:
        if token == self._count_token:
            self.trainable_label.setText("—")
            self.banner.show_message(f"Could not count the trainable parameters: {message}", "warning")

    # -- reacting to the rest of the app -------------------------------------------------------
    def _show_empty(self) -> None:
        root = self.state.project.data.root
        text = ("The advice depends on how many images you have. Choose a dataset on the Data page."
                if not root else
                f"The project's dataset ({root}) has not been read yet: open the Data page to scan it.")
        self.empty.set_content("Choose a dataset first" if not root else "Scan the dataset first", text)
        self.empty.show()
        self.content.hide()

    def _load_from_project(self) -> None:
        project = self.state.project
        self._loading = True
        try:
            self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(project.train.device)))
            budget = project.ui.get(BUDGET_KEY, DEFAULT_BUDGET_HOURS)
            self.budget_spin.setValue(float(budget) if isinstance(budget, (int, float)) else DEFAULT_BUDGET_HOURS)
        finally:
            self._loading = False
        self.suggestion = None
        self._previous_trainable = None
        saved = project.ui.get(SUGGESTION_KEY)
        self._restore_token += 1
        if isinstance(saved, dict) and saved.get("model") == project.model.name:
            # Rebuilt as the core's Suggestion in the background: core.strategy imports torch.
            token = self._restore_token
            self._restore_task = run_task(
                suggestion_from_dict, dict(saved), name="restore-suggestion", pass_control=False,
                on_result=lambda s: self._on_restored(token, s))
        self.banner.clear()
        self._stale = True
        self._on_scan_changed(self.state.scan)

    def _on_restored(self, token: int, suggestion: Any) -> None:
        if token != self._restore_token or self.suggestion is not None:
            return  # another project was opened meanwhile, or the advisor answered first
        self.suggestion = suggestion
        if self.state.scan is not None:
            self._show_card()
            self._show_choice()

    def _on_scan_changed(self, report: Any) -> None:
        if report is None:
            self._show_empty()
            return
        self.empty.hide()
        self.content.show()
        self._show_card()
        self._show_choice()
        self._stale = True
        if self.isVisible():
            self._suggest_timer.start()

    def _on_project_changed(self, section: str) -> None:
        if self._writing:
            return
        if section in ("surgery", "train", "augment"):
            if section == "train":
                self._loading = True
                try:
                    self.device_combo.setCurrentIndex(
                        max(0, self.device_combo.findData(self.state.project.train.device)))
                finally:
                    self._loading = False
            if self.state.scan is not None:
                self._show_choice()
        elif section == "model":
            self.suggestion = None  # its block names belong to the previous model
            self._previous_trainable = None
            self._show_card()
            self._stale = True
            if self.state.scan is not None:
                self._show_choice()
                if self.isVisible():
                    self._suggest_timer.start()

    def _on_device_changed(self, _index: int) -> None:
        if self._loading:
            return
        self._set_train("device", self.device_combo.currentData())
        self._stale = True
        if self.state.scan is not None:
            self._suggest_timer.start()

    def _on_budget_changed(self, value: float) -> None:
        if self._loading:
            return
        self.state.project.ui[BUDGET_KEY] = float(value)
        self._writing = True
        try:
            self.state.mark_changed("ui")
        finally:
            self._writing = False
        self._stale = True
        if self.state.scan is not None:
            self._suggest_timer.start()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        asking = self._suggest_task is not None and self._suggest_task.is_running()
        if self._stale and self.state.scan is not None and not asking:
            self._suggest_timer.start(0)
