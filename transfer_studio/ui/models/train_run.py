"""A training run as the Train page shows it: the trainer's signals turned into progress, the epoch
table, the charts' data, the log and the run's record (``RunMonitor``); and how a problem is shown
(``Problem``)."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer_studio.core import run_folder, runs
from transfer_studio.ui.models import train_text as text
from transfer_studio.ui.models.base import Event, Host
from transfer_studio.ui.models.train_progress import IDLE_PROGRESS, EpochTable, RunClock


@dataclass(frozen=True)
class Problem:
    """Something to show in the page's banner: the problem in bold, what to do, and maybe a button."""

    message: str
    suggestion: str = ""
    detail: str = ""
    action_text: str | None = None
    action: Callable[[], Any] | None = None

    def rich_text(self) -> str:
        out = f"<b>{html.escape(self.message)}</b>"
        return out + (f"<br>{html.escape(self.suggestion)}" if self.suggestion else "")


class RunMonitor:
    """Follows ``trainer``'s signals (fitStarted, batches, epochEnded, ...) for the run in ``record``."""

    def __init__(self, host: Host, trainer: Any):
        self.host = host
        for name in ("statusText", "log", "deviceText", "progress", "speed", "eta", "displayCleared",
                     "chartRange", "chartBatches", "chartEpoch", "chartEpochLrs", "chartTruncate", "chartPhase",
                     "rowAdded", "bestRow", "changed"):
            setattr(self, name, Event())
        self.record: Any = None  # the RunRecord of the run under way
        self.fit_start: Any = None
        self.phase: str | None = None
        self.status = ""
        self.shown_run: str | None = None  # the run whose curves the charts hold
        self.checkpoint_path: str | None = None
        self.failure: Problem | None = None  # how the run failed, shown once its thread has ended
        self.clock = RunClock()
        self.table = EpochTable()
        for signal, slot in (("fitStarted", self._on_fit_started), ("batches", self._on_batches),
                             ("epochEnded", self._on_epoch_ended), ("phaseChanged", self._on_phase),
                             ("checkpointWritten", self._on_checkpoint), ("paused", self._on_paused),
                             ("resumed", self._on_resumed), ("engineError", self._on_engine_error),
                             ("log", self.log.emit), ("outcome", self._on_outcome)):
            getattr(trainer, signal).connect(slot)

    def set_status(self, value: str) -> None:
        self.status = value
        self.statusText.emit(value)

    def clear_display(self, *, keep_batches: bool = False) -> None:
        if not keep_batches:
            self.shown_run = None
        self.table.clear()
        self.fit_start, self.phase = None, None
        self.clock.reset(self.host.project.train.epochs)
        self.displayCleared.emit(keep_batches)
        self.progress.emit(IDLE_PROGRESS)
        self.eta.emit(f"ETA {text.DASH}")
        self.speed.emit(f"{text.DASH} images/s")

    def load_history(self, run_dir: Path, *, with_lr: bool = True) -> None:
        """Show the epochs a resumed run already has (its history.json) before it continues; with
        ``with_lr`` also their learning rates (per epoch: the history keeps no per-batch values)."""
        rows = run_folder.read_history(run_dir)
        lrs = [(float(r["epoch"]), float(r["lr"])) for r in rows if isinstance(r.get("lr"), int | float)]
        if with_lr and lrs:
            self.chartEpochLrs.emit(*zip(*lrs, strict=True))
        for row in rows:
            try:
                self._add_epoch(int(row["epoch"]), row.get("train_loss"), row.get("train_accuracy"),
                                row.get("val_loss"), row.get("val_accuracy"), row.get("lr"), row.get("seconds"),
                                bool(row.get("is_best", False)))
            except (KeyError, TypeError, ValueError):
                continue
        if self.table.best < 0 and self.table.mark_best_by_val_loss() >= 0:
            self.bestRow.emit(self.table.best)

    def _add_epoch(self, epoch: int, train_loss: Any, train_acc: Any, val_loss: Any, val_acc: Any, lr: Any,
                   seconds: Any, is_best: bool) -> None:
        self.chartEpoch.emit(epoch, train_loss, val_loss, train_acc, val_acc)
        self.rowAdded.emit(self.table.add(epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds, is_best))
        if is_best:
            self.bestRow.emit(self.table.best)

    # -- the trainer's signals ---------------------------------------------------------------------------
    def _on_fit_started(self, ev: Any) -> None:
        self.fit_start = ev
        self.chartRange.emit(int(ev.epochs))
        if self.record is not None:
            self.record.strategy, self.record.model = ev.strategy, ev.model
        self.host.mark_changed("runs")
        self.set_status("Training" + (" (resumed)" if ev.resumed else ""))
        self.deviceText.emit(f"Device: {ev.device} \u00b7 {ev.precision}")
        self.log.emit(text.fit_start_log(ev))
        if ev.resumed:
            self.log.emit(f"Resumed at epoch {ev.start_epoch} of {ev.epochs}")
            self.chartTruncate.emit(ev.start_epoch - 1)  # an interrupted epoch is trained again
            self._mark_earlier_unfreeze(Path(ev.run_dir), ev.start_epoch)
        for note in ev.notes:
            self.log.emit(note)
        self.clock.reset(ev.epochs, ev.start_epoch)
        self._show_progress(self.clock.at(self.clock.start_epoch, 0, max(1, ev.steps_per_epoch)))

    def _mark_earlier_unfreeze(self, run_dir: Path, start_epoch: int) -> None:
        """A resumed partial run that unfroze before it was stopped: put the marker back."""
        snap = run_folder.read_json(run_dir / run_folder.PROJECT)
        train = snap.get("train", {}) if isinstance(snap, dict) else {}
        head_epochs = train.get("head_epochs")
        # the body unfreezes at epoch head_epochs + 1 (training.finetune.plan)
        if train.get("strategy") == "partial" and isinstance(head_epochs, int) and 0 < head_epochs < start_epoch:
            self.chartPhase.emit(head_epochs, text.PHASE_LABELS["unfrozen"])
            self.phase = "unfrozen"

    def _on_batches(self, chunk: Any) -> None:
        self.chartBatches.emit(chunk)
        self._show_progress(self.clock.at(chunk.epoch, chunk.batch, chunk.num_batches))
        if chunk.images_per_s:
            self.speed.emit(f"{chunk.images_per_s:,.1f} images/s")
        if chunk.gpu_memory and self.fit_start is not None:
            used, total = chunk.gpu_memory
            self.deviceText.emit(f"Device: {self.fit_start.device} \u00b7 {self.fit_start.precision}"
                                 f" \u00b7 GPU memory {used / 2**30:.1f} / {total / 2**30:.1f} GB")

    def _show_progress(self, view: Any) -> None:
        self.progress.emit(view)
        if view.eta is not None:
            self.eta.emit(view.eta)

    def _on_epoch_ended(self, ev: Any) -> None:
        self._add_epoch(ev.epoch, ev.train_loss, ev.train_accuracy, ev.val_loss, ev.val_accuracy, ev.lr,
                        ev.seconds, ev.is_best)
        self.clock.epochs_total = max(1, int(ev.epochs))
        self.progress.emit(self.clock.at(ev.epoch + 1, 0, 1, epoch_done=ev.epoch))
        self.eta.emit(f"ETA {text.duration(ev.eta_s)}")
        rec = self.record
        if rec is not None:
            rec.epochs_completed = int(ev.epoch)
            if ev.is_best:
                rec.best_epoch, rec.val_accuracy, rec.val_loss = int(ev.epoch), ev.val_accuracy, ev.val_loss
            self.host.mark_changed("runs")
        self.log.emit(text.epoch_log(ev))

    def _on_phase(self, ev: Any) -> None:
        # Mark transitions only: the phase a run starts in (or resumes in) is announced too.
        if self.phase is not None and ev.phase != self.phase:
            self.chartPhase.emit(ev.epoch - 1, text.PHASE_LABELS.get(ev.phase, ev.phase))
        self.phase = ev.phase
        self.log.emit(f"Epoch {ev.epoch}: {ev.description} ({text.count(ev.trainable_params)} of "
                      f"{text.count(ev.total_params)} parameters trainable)")
        self.host.trainingPhaseChanged.emit(ev)

    def _on_checkpoint(self, path: str) -> None:
        self.checkpoint_path = path

    def _on_paused(self) -> None:
        self.clock.pause()
        self.eta.emit(f"ETA {text.DASH} (paused)")
        self.set_status("Paused \u2014 press Resume to continue or Stop to end the run")
        self.log.emit("Paused")
        self.changed.emit()

    def _on_resumed(self) -> None:
        self.clock.resume()
        self.set_status("Training")
        self.log.emit("Resumed")
        self.changed.emit()

    def _on_engine_error(self, ev: Any) -> None:
        self.log.emit(f"Error: {ev.message}" + (f" \u2014 {ev.suggestion}" if ev.suggestion else ""))

    def _on_outcome(self, outcome: Any) -> None:
        rec, result = self.record, outcome.result
        if rec is not None:
            runs.update_record(rec, result, status=outcome.status, duration_s=outcome.duration_s)
            if outcome.status == "failed" and not Path(rec.run_dir).exists() and rec in self.host.project.runs:
                self.host.project.runs.remove(rec)  # failed before writing anything: nothing to remember
            self.host.mark_changed("runs")
        if outcome.status == "finished":
            acc = (f", best validation accuracy {text.pct(result.val_accuracy)} (epoch {result.best_epoch})"
                   if result is not None and result.val_accuracy is not None else "")
            self.set_status("Finished" + acc)
            self.log.emit("Training finished" + acc)
            if result is not None and result.stopped_early:
                self.log.emit("Stopped early: the validation loss stopped improving")
            if rec is not None:
                self.host.project.ui["selected_run"] = rec.run_dir
                self.host.mark_changed("ui")
            self.host.status("Training finished" + acc, 8000)
        elif outcome.status == "stopped":
            done = rec.epochs_completed if rec is not None else 0
            self.set_status(f"Stopped after {done} epoch(s); resume it from its checkpoint")
            self.log.emit("Training stopped" + (f" after epoch {done}; the last checkpoint is kept"
                                                if done else " before the first epoch ended"))
        else:
            failure = outcome.failure
            message = failure.message if failure else "Training failed."
            self.set_status("Failed")
            self.log.emit(f"Failed: {message}")
            if failure is not None and failure.detail:
                self.log.emit(failure.detail.rstrip())
            self.failure = Problem(text.sentence(message),
                                    text.sentence(text.gui_advice(failure.suggestion if failure else "")),
                                    failure.detail if failure else "")
