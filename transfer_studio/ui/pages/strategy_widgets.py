"""The Strategy page's widgets (``ui.pages.strategy``): built here, bound to its model there."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
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

from transfer_studio.ui.models.strategy_model import BUDGET_RANGE, DEVICES
from transfer_studio.ui.models.strategy_text import APPROACHES, CIRCLED, FACTS
from transfer_studio.ui.widgets import BusyIndicator, EmptyState, MessageBanner
from transfer_studio.ui.widgets.heading import page_heading
from transfer_studio.ui.widgets.lr_curve import LRCurve
from transfer_studio.ui.widgets.lr_spin import LrSpinBox

if TYPE_CHECKING:
    from transfer_studio.ui.pages.strategy import StrategyPage


def build(page: StrategyPage) -> None:
    """The page's widgets, connected to the page's methods."""
    outer = QVBoxLayout(page)
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

    page.banner = MessageBanner(object_name="strategy_message")
    root.addWidget(page.banner)
    page.empty = EmptyState("strategy", "Choose a dataset first",
                            "The advice depends on how many images you have. Choose a dataset on the "
                            "Data page.", object_name="strategy_empty")
    page.go_data_button = page.empty.add_action(
        "Go to the Data page", lambda: page.state.navigateRequested.emit("data"),
        object_name="strategy_go_data", primary=True)
    root.addWidget(page.empty, 1)

    page.content = QWidget()
    page.content.setObjectName("strategy_content")
    cl = QVBoxLayout(page.content)
    cl.setContentsMargins(0, 0, 0, 0)
    root.addWidget(page.content, 1)

    bar = QHBoxLayout()
    bar.addWidget(QLabel("Train on"))
    page.device_combo = QComboBox()
    page.device_combo.setObjectName("strategy_device")
    for d, text in zip(DEVICES, ("best available", "CPU", "NVIDIA GPU (CUDA)", "Apple GPU (MPS)"),
                       strict=True):
        page.device_combo.addItem(text, d)
    page.device_combo.currentIndexChanged.connect(page._on_device_changed)
    bar.addWidget(page.device_combo)
    bar.addSpacing(12)
    bar.addWidget(QLabel("Time budget"))
    page.budget_spin = QDoubleSpinBox()
    page.budget_spin.setObjectName("strategy_budget")
    page.budget_spin.setRange(*BUDGET_RANGE)
    page.budget_spin.setDecimals(2)
    page.budget_spin.setSingleStep(0.5)
    page.budget_spin.setSuffix(" h")
    page.budget_spin.setKeyboardTracking(False)
    page.budget_spin.setToolTip("The longest training you are willing to wait for; the advisor steps "
                                "down to a cheaper approach when its estimate is longer")
    page.budget_spin.valueChanged.connect(page._on_budget_changed)
    bar.addWidget(page.budget_spin)
    bar.addStretch(1)
    page.probe_button = QPushButton("Check how similar my images are…")
    page.probe_button.setObjectName("strategy_probe")
    page.probe_button.setToolTip("Runs the pretrained network on 64 of your images: if it is unsure what it "
                                 "sees, your images differ from its training photos and more layers "
                                 "should adapt")
    page.probe_button.clicked.connect(lambda: page.refresh(probe=True))
    page.refresh_button = QPushButton("Ask again")
    page.refresh_button.setObjectName("strategy_refresh")
    page.refresh_button.clicked.connect(lambda: page.refresh(probe=False))
    bar.addWidget(page.probe_button)
    bar.addWidget(page.refresh_button)
    cl.addLayout(bar)
    page.busy_indicator = BusyIndicator(object_name="strategy_busy")
    page.busy_indicator.cancelRequested.connect(page._cancel_suggest)
    cl.addWidget(page.busy_indicator)

    cl.addWidget(_build_card(page))
    cl.addWidget(_build_choice(page))
    cl.addStretch(1)


def _build_card(page: StrategyPage) -> QFrame:
    card = QFrame()
    card.setObjectName("strategy_card")
    card.setProperty("card", True)  # style.qss: base background, rounded border
    lay = QVBoxLayout(card)
    lay.setContentsMargins(16, 12, 16, 12)
    page.card_title = QLabel("Asking the advisor…")
    page.card_title.setObjectName("strategy_card_title")
    page.card_title.setProperty("role", "subheading")
    page.reason_label = QLabel()
    page.reason_label.setObjectName("strategy_reason")
    page.reason_label.setWordWrap(True)
    page.reason_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    lay.addWidget(page.card_title)
    lay.addWidget(page.reason_label)
    grid = QGridLayout()
    grid.setHorizontalSpacing(16)
    grid.setColumnStretch(1, 1)
    page.facts = {}
    for r, (key, label) in enumerate(FACTS):
        name = QLabel(label)
        name.setProperty("role", "muted")
        value = QLabel()
        value.setObjectName(f"strategy_{key}")
        value.setWordWrap(True)
        value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid.addWidget(name, r, 0, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(value, r, 1)
        page.facts[key] = value
        if key == "probe":
            page._probe_name = name
        if key == "lr":
            page.lr_curve = LRCurve(object_name="strategy_lr_curve")
            page.lr_curve.setMaximumWidth(420)
            grid.addWidget(page.lr_curve, r, 2, 3, 1, Qt.AlignmentFlag.AlignTop)
    lay.addLayout(grid)
    row = QHBoxLayout()
    page.apply_button = QPushButton("Apply this suggestion")
    page.apply_button.setObjectName("strategy_apply")
    page.apply_button.setProperty("primary", True)
    page.apply_button.setToolTip("Sets the freeze map (see the Model page) and fills the training settings")
    page.apply_button.clicked.connect(page.apply)
    page.applied_label = QLabel()
    page.applied_label.setObjectName("strategy_applied")
    page.applied_label.setProperty("role", "muted")
    row.addWidget(page.apply_button)
    row.addWidget(page.applied_label, 1)
    lay.addLayout(row)
    return card


def _build_choice(page: StrategyPage) -> QGroupBox:
    box = QGroupBox("Your choice")
    box.setObjectName("strategy_choice")
    lay = QVBoxLayout(box)
    page.approach_group = QButtonGroup(page)
    page.approach_buttons = {}
    page.approach_notes = {}
    grid = QGridLayout()
    grid.setColumnStretch(1, 1)
    for k, (_name, title, text) in APPROACHES.items():
        button = QRadioButton(f"{CIRCLED[k]}  {title}")
        button.setObjectName(f"strategy_approach_{k}")
        button.setToolTip(text)
        page.approach_group.addButton(button, k)
        note = QLabel()
        note.setObjectName(f"strategy_approach_{k}_note")
        note.setProperty("role", "muted")
        grid.addWidget(button, k, 0)
        grid.addWidget(note, k, 1)
        page.approach_buttons[k] = button
        page.approach_notes[k] = note
    page.approach_group.idClicked.connect(page._on_approach_clicked)
    lay.addLayout(grid)

    form = QFormLayout()
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
    page.unfreeze_combo = QComboBox()
    page.unfreeze_combo.setObjectName("strategy_unfreeze_from")
    page.unfreeze_combo.setToolTip("Approach ②: this block and every later one learn; earlier ones stay frozen")
    page.unfreeze_combo.currentIndexChanged.connect(page._on_unfreeze_changed)
    page.unfreeze_combo.setMinimumContentsLength(18)
    page.unfreeze_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    form.addRow("Learn from block", page.unfreeze_combo)
    page.lr_spin = LrSpinBox()
    page.lr_spin.setObjectName("strategy_lr")
    page.lr_spin.setToolTip("Learning rate of the new output layer")
    page.body_lr_spin = LrSpinBox(1e-4, 1.0)
    page.body_lr_spin.setObjectName("strategy_body_lr_factor")
    page.body_lr_spin.setToolTip("Pretrained blocks learn this many times slower than the new layer, "
                                 "so they keep what they know")
    page.epochs_spin = QSpinBox()
    page.epochs_spin.setObjectName("strategy_epochs")
    page.epochs_spin.setRange(1, 1000)
    page.batch_spin = QSpinBox()
    page.batch_spin.setObjectName("strategy_batch_size")
    page.batch_spin.setRange(1, 4096)
    for spin in (page.epochs_spin, page.batch_spin):
        spin.setKeyboardTracking(False)
    form.addRow("Learning rate (new layer)", page.lr_spin)
    form.addRow("Pretrained blocks' rate × ", page.body_lr_spin)
    form.addRow("Epochs", page.epochs_spin)
    form.addRow("Batch size", page.batch_spin)
    page.lr_spin.valueChanged.connect(lambda v: page._set_train("lr", float(v)))
    page.body_lr_spin.valueChanged.connect(lambda v: page._set_train("body_lr_factor", float(v)))
    page.epochs_spin.valueChanged.connect(lambda v: page._set_train("epochs", int(v)))
    page.batch_spin.valueChanged.connect(lambda v: page._set_train("batch_size", int(v)))
    for spin in (page.lr_spin, page.body_lr_spin, page.epochs_spin, page.batch_spin):
        spin.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.UpDownArrows)
        spin.setMaximumWidth(140)
    lay.addLayout(form)
    page.trainable_label = QLabel("—")
    page.trainable_label.setObjectName("strategy_trainable_count")
    page.trainable_label.setProperty("role", "subheading")
    lay.addWidget(page.trainable_label)
    return box
