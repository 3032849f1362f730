"""Strategy page: the advisor's suggestion of how much of the network to retrain, and the user's choice.

The page binds widgets (built in ``strategy_widgets``) to its model (``ui.models.strategy_model``),
which asks the advisor (``training.advice``, in named steps, cancellable) on a worker thread, keeps its
evidence for the inputs it depends on, writes "Apply" and another approach into the project as one
undoable step each (so the Model page's graph shows the new freeze map at once), and counts the
trainable parameters on networks rebuilt on the meta device, off the GUI thread. The page owns the
short delays before asking and before counting.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QWidget

from transfer_studio.ui.models import strategy_text as text
from transfer_studio.ui.models.strategy_model import StrategyModel
from transfer_studio.ui.pages import strategy_widgets as w
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import format_count, format_share
from transfer_studio.ui.worker import run_task, wait_for_tasks


class StrategyPage(QWidget):
    TITLE = "Strategy"

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_strategy")
        self.state = state
        self.model = StrategyModel(state, run_task)
        self._loading = False  # filling widgets from the model: don't write back
        w.build(self)
        self._suggest_timer = QTimer(self)
        self._suggest_timer.setSingleShot(True)
        self._suggest_timer.setInterval(300)
        self._suggest_timer.timeout.connect(lambda: self.refresh(probe=False))
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(150)
        self._count_timer.timeout.connect(self.model.start_count)
        self._connect_model()
        self.model.load_from_project()

    @property
    def suggestion(self) -> Any:
        """The core's Suggestion shown in the card."""
        return self.model.suggestion

    @property
    def counts(self) -> dict[str, tuple[int, int]]:
        """"current" and "1"/"2"/"3" -> (trainable, total) parameters."""
        return self.model.counts

    # -- public API ----------------------------------------------------------------------------
    def refresh(self, probe: bool = False) -> None:
        """Ask the advisor (in the background) for the current data, model, device and budget."""
        self._suggest_timer.stop()
        self.model.refresh(probe)

    def apply(self) -> None:
        """Apply the advisor's suggestion to the project (one undoable step)."""
        self.model.apply()

    def choose(self, approach: int, unfreeze_from: str | None = None) -> None:
        """Switch the project to another approach, keeping the training values the user has."""
        self.model.choose(approach, unfreeze_from)

    def busy(self) -> bool:
        return self.model.busy()

    def shutdown(self) -> None:
        self._suggest_timer.stop()
        self._count_timer.stop()
        m = self.model
        wait_for_tasks([m.suggest_job, m.count_job, m.restore_job], 60000)

    # -- user actions -> model -----------------------------------------------------------------
    def _cancel_suggest(self) -> None:
        self.model.cancel()

    def _on_approach_clicked(self, approach: int) -> None:
        if not self._loading and self.model.suggestion is not None:
            self.model.choose(approach, self.model.cut if approach == 2 else None)

    def _on_unfreeze_changed(self, _index: int) -> None:
        if not self._loading and self.model.suggestion is not None:
            self.model.choose_block(self.unfreeze_combo.currentData())

    def _set_train(self, key: str, value: Any) -> None:
        if not self._loading:
            self.model.set_train(key, value)

    def _on_device_changed(self, _index: int) -> None:
        if not self._loading:
            self.model.set_device(self.device_combo.currentData())

    def _on_budget_changed(self, value: float) -> None:
        if not self._loading:
            self.model.set_budget(value)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self.model.wants_advice():
            self._suggest_timer.start(0)

    # -- model -> widgets ----------------------------------------------------------------------
    def _connect_model(self) -> None:
        m = self.model
        m.message.connect(self.banner.show_message)
        m.messageCleared.connect(self.banner.clear)
        m.busyStarted.connect(lambda label, job, steps: self.busy_indicator.start(label, handle=job, steps=steps))
        m.busyStopped.connect(self.busy_indicator.stop)
        m.emptied.connect(self._show_empty)
        m.contentShown.connect(self._show_content)
        m.cardChanged.connect(self._show_card)
        m.choiceChanged.connect(self._show_choice)
        m.appliedChanged.connect(self._show_applied)
        m.countDue.connect(self._count_timer.start)
        m.countsChanged.connect(self._show_counts)
        m.countFailed.connect(lambda: self.trainable_label.setText("—"))
        m.suggestDue.connect(self._on_suggest_due)
        m.fieldsChanged.connect(self._load_fields)

    def _on_suggest_due(self, only_if_shown: bool) -> None:
        if not only_if_shown or self.isVisible():
            self._suggest_timer.start()

    def _load_fields(self) -> None:
        self._loading = True
        try:
            self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(self.state.project.train.device)))
            self.budget_spin.setValue(self.model.budget)
        finally:
            self._loading = False

    def _show_empty(self, title: str, body: str) -> None:
        self.empty.set_content(title, body)
        self.empty.show()
        self.content.hide()

    def _show_content(self) -> None:
        self.empty.hide()
        self.content.show()

    def _show_card(self) -> None:
        card = self.model.card()
        self.card_title.setText(card.title)
        self.reason_label.setText(card.reason)
        for key, value in card.facts.items():
            self.facts[key].setText(value)
        for key, tip in card.tooltips.items():
            self.facts[key].setToolTip(tip)
        self.lr_curve.set_curve(*card.curve)
        if card.curve_visible is not None:
            self.lr_curve.setVisible(card.curve_visible)
        self._probe_name.setVisible(card.probe_visible)
        self.facts["probe"].setVisible(card.probe_visible)
        self.apply_button.setEnabled(card.apply_enabled)
        if self.model.suggestion is None:
            return
        self._loading = True
        try:
            self.budget_spin.setValue(self.model.budget)
        finally:
            self._loading = False
        self._show_applied()

    def _show_choice(self) -> None:
        """Radio buttons, block list and spin boxes from the project (the counts follow)."""
        c = self.model.choice()
        self._loading = True
        try:
            self.approach_group.setExclusive(False)
            for k, button in self.approach_buttons.items():
                button.setChecked(k == c.current)
                button.setEnabled(c.enabled)
            self.approach_group.setExclusive(True)
            self.unfreeze_combo.clear()
            for block in c.blocks:
                self.unfreeze_combo.addItem(block, block)
            if c.cut is not None:
                self.unfreeze_combo.setCurrentIndex(c.blocks.index(c.cut))
            self.unfreeze_combo.setEnabled(c.enabled and c.current == 2)
            self.lr_spin.setValue(c.lr)
            self.body_lr_spin.setValue(c.body_lr_factor)
            self.epochs_spin.setValue(c.epochs)
            self.batch_spin.setValue(c.batch_size)
            self.body_lr_spin.setEnabled(c.current != 1)
            for k, note in (c.notes or {}).items():
                self.approach_notes[k].setText(note)
        finally:
            self._loading = False
        self._show_applied()

    def _show_applied(self) -> None:
        self.applied_label.setText(self.model.applied_text())

    def _show_counts(self, previous: int | None) -> None:
        m = self.model
        trainable, total = m.counts["current"]
        self.trainable_label.setText(text.trainable_text(trainable, total, previous, format_share))
        if m.suggestion is not None:
            for k, note in text.count_notes(m.suggestion, m.counts, format_count).items():
                self.approach_notes[k].setText(note)
