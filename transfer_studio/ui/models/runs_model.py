"""The Runs page's model: the project's runs as table rows, their curves, runs followed while they
train, and the page's actions (add a run folder, open a run's evaluation, delete runs) with their
guards and texts.

The table lists ``project.runs`` (``config.RunRecord``: written by the Train page, ``transfer-studio
train --project`` and "Add run folder…", ``core.runs.record_from_folder``). Curves come from each run
folder's ``history.json`` (``core.run_folder.read_history``), cached by modification time.

Runs written by another process (a job folder's torchrun, a cluster on a shared file system, the CLI)
are followed: the page's timer says a refresh is due (``follow``) and a job (``follow_task``, worker
thread) re-reads run.json of the records still "running" and history.json of the runs shown; the GUI
thread only applies the answer (a record changed meanwhile on the GUI thread keeps its newer values).

The model asks the page, through callables it is given, for the runs selected (``selected``) and
whether the page is shown (``shown``); it names runs and dates as the run choosers do (``label``,
``created``: ``ui.widgets.run_chooser.run_label`` and ``format_created``, one rule for every page). The page (``ui.pages.runs``) keeps what needs Qt: the table,
the charts, the file dialog and the questions before deleting.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer_studio.config import RunRecord
from transfer_studio.core import run_folder  # torch-free: the folders' file names and small JSON files
from transfer_studio.core.runs import find_record, norm_path, record_from_folder, refresh_record
from transfer_studio.errors import UserError
from transfer_studio.ui.models.base import Event, Host, Job, JobRunner

FOLLOW_MS = 3000  # how often runs still training are re-read (the page's timer)
COLUMNS = ("Date", "Model", "Strategy", "Epochs", "Best val. accuracy", "Duration", "Status")
NUMERIC_COLUMNS = (3, 4, 5)  # right-aligned
# Distinct, mid-saturation colours for overlaid runs: readable on light and dark backgrounds.
RUN_COLOURS = ("#1f77dc", "#e8780f", "#2ca05a", "#d6456b", "#9467bd", "#8c6d31", "#17a3b8", "#7f7f7f")
CURVE_KINDS = ("val_accuracy", "val_loss", "train_loss")
UI_RUN_FIELDS = ("selected_run", "evaluate_run", "export_run", "try_run")  # pages' runs in project.ui

History = list[dict[str, Any]]


# -- texts ------------------------------------------------------------------------------------------------
def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds <= 0:
        return "–"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def format_accuracy(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def folder_size(path: Path) -> int:
    total = 0
    for f in path.rglob("*"):
        try:
            if f.is_file():
                total += f.stat().st_size
        except OSError:
            continue
    return total


@dataclass
class Row:
    """A table row: each cell's text and the key it sorts by; ``exists`` False greys it out."""

    run_dir: str
    exists: bool
    cells: list[tuple[str, Any]]


def row(rec: RunRecord, exists: bool, created: Callable[[str], str]) -> Row:
    """``created``: the date's text (``ui.widgets.run_chooser.format_created``, local time)."""
    epochs = str(rec.epochs_completed) + (f" (best {rec.best_epoch})" if rec.best_epoch else "")
    status = rec.status if exists else f"{rec.status} · folder missing"
    return Row(rec.run_dir, exists, [
        (created(rec.created), rec.created or ""),
        (rec.model or "?", rec.model or ""),
        (rec.strategy or "–", rec.strategy or ""),
        (epochs, rec.epochs_completed),
        (format_accuracy(rec.val_accuracy), -1.0 if rec.val_accuracy is None else rec.val_accuracy),
        (format_duration(rec.duration_s), float(rec.duration_s or 0.0)),
        (status, status),
    ])


def selection_text(n: int) -> str:
    if n == 0:
        return "Select a run to see its curves; select several to compare them."
    if n == 1:
        return "Select another run (Ctrl+click) to overlay its curves."
    return f"{n} runs overlaid."


@dataclass
class Curves:
    """One run's curves as the charts draw them: kind -> (epochs, values); accuracy in %."""

    run_dir: str
    colour: str
    legend: str  # rich text
    series: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)


def curves_of(run_dir: str, history: History, name: str, colour: str) -> Curves:
    swatch = f"<span style='color:{colour}'>■</span> {name}"
    if not history:
        return Curves(run_dir, colour, f"{swatch} (no history)")
    out = Curves(run_dir, colour, f"{swatch} ({len(history)} epochs)")
    for kind in CURVE_KINDS:
        scale = 100.0 if kind == "val_accuracy" else 1.0
        pts = [(float(h["epoch"]), float(h[kind]) * scale) for h in history if h.get(kind) is not None]
        if pts:
            out.series[kind] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


@dataclass
class DeletePlan:
    """What "Delete…" would remove, and the first question (remove the records?)."""

    records: list[RunRecord]
    what: str  # "the run “…”" or "3 runs"
    question: str
    folders: list[Path]  # the folders still on disk (a second question: delete them too?)


# -- the follow job (worker thread) ----------------------------------------------------------------------
@dataclass
class FollowAnswer:
    """What a follow job found: records whose run.json changed (the copy handed to the job, and the
    updated copy), and histories that changed since the page cached them (run -> (mtime it had,
    new mtime, history))."""

    records: list[tuple[RunRecord, RunRecord]] = field(default_factory=list)
    histories: dict[str, tuple[float | None, float, History]] = field(default_factory=dict)


def follow_task(records: Sequence[RunRecord], known: dict[str, float | None]) -> FollowAnswer:
    """Re-read run.json of ``records`` (copies; running runs) and history.json of the runs in ``known``
    whose modification time differs from the one given (worker thread: the files may be on a slow or
    shared file system)."""
    answer = FollowAnswer()
    for before in records:
        after = copy.copy(before)
        if refresh_record(after):
            answer.records.append((before, after))
    for run_dir, mtime in known.items():
        try:
            now = (Path(run_dir) / run_folder.HISTORY).stat().st_mtime
        except OSError:
            continue
        if now != mtime:
            answer.histories[run_dir] = (mtime, now, run_folder.read_history(run_dir))
    return answer


# -- the model --------------------------------------------------------------------------------------------
class RunsModel:
    """The Runs page's state and actions. Events: ``message(text, level)``, ``messageCleared()``,
    ``selectRequested(run_dirs)`` (show these runs selected), ``curvesChanged()`` (a shown history grew:
    redraw; a changed record is announced as ``projectChanged("runs")`` instead)."""

    EVENTS = ("message", "messageCleared", "selectRequested", "curvesChanged")

    def __init__(self, host: Host, jobs: JobRunner, *, selected: Callable[[], list[str]],
                 shown: Callable[[], bool], label: Callable[[RunRecord], str], created: Callable[[str], str]):
        self.host, self.jobs = host, jobs
        self.selected, self.shown = selected, shown
        self.label, self.created = label, created
        for name in self.EVENTS:
            setattr(self, name, Event())
        self._history: dict[str, tuple[float, History]] = {}
        self.follow_job: Job | None = None
        self.closed = False  # the page is gone: follow nothing, apply no late answer

    # -- rows, selection and curves -----------------------------------------------------------------
    def rows(self) -> list[Row]:
        """The table's rows, newest first."""
        return [row(rec, Path(rec.run_dir).is_dir(), self.created) for rec in reversed(self.host.project.runs)]

    def shown_runs(self, selected: Sequence[str], latest: str | None) -> list[str]:
        """What to select after the table was refilled: the runs selected before, else the latest run
        (``latest``: ``run_chooser.default_run``) rather than two empty charts, if its folder exists."""
        if selected or not self.host.project.runs:
            return list(selected)
        return [latest] if latest and Path(latest).is_dir() else []

    @staticmethod
    def can_open_evaluation(selected: Sequence[str]) -> bool:
        return len(selected) == 1

    @staticmethod
    def can_delete(selected: Sequence[str]) -> bool:
        return len(selected) >= 1

    def history(self, run_dir: str) -> History:
        """history.json of a run, cached by modification time (a few KB)."""
        path = Path(run_dir) / run_folder.HISTORY
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return []
        cached = self._history.get(run_dir)
        if cached is None or cached[0] != mtime:
            cached = (mtime, run_folder.read_history(run_dir))
            self._history[run_dir] = cached
        return cached[1]

    def curves(self, runs: Sequence[str]) -> list[Curves]:
        """The selected runs' curves, each in its colour, with its legend entry."""
        out = []
        for k, run_dir in enumerate(runs):
            rec = find_record(self.host.project, run_dir)
            name = self.label(rec) if rec is not None else Path(run_dir).name
            out.append(curves_of(run_dir, self.history(run_dir), name, RUN_COLOURS[k % len(RUN_COLOURS)]))
        return out

    # -- following runs that train elsewhere ----------------------------------------------------------
    def follow(self) -> Job | None:
        """A refresh is due (the page's timer): re-read the running runs' run.json and the shown runs'
        history.json in a job, while the page is shown and no such job runs."""
        if self.closed or not self.shown() or (self.follow_job is not None and self.follow_job.is_running()):
            return None
        records = [copy.copy(rec) for rec in self.host.project.runs if rec.status == "running"]
        shown = self.selected()
        if not records and not shown:
            return None
        known = {d: (self._history[d][0] if d in self._history else None) for d in shown}
        job = self.jobs(follow_task, records, known, name="follow runs", pass_control=False, needs_torch=False,
                        on_result=self._on_followed, on_finished=self._on_follow_finished)
        self.follow_job = job if job.is_running() else None
        return job

    def close(self) -> None:
        """The page is shut down or destroyed: cancel the follow job; an answer on its way is dropped."""
        self.closed = True
        if self.follow_job is not None:
            self.follow_job.cancel()

    def _on_followed(self, answer: FollowAnswer) -> None:
        if self.closed:
            return
        changed = False
        for before, after in answer.records:
            live = find_record(self.host.project, before.run_dir)
            if live is None or dataclasses.asdict(live) != dataclasses.asdict(before):
                continue  # deleted, or brought up to date here meanwhile: the newer values stay
            for f in dataclasses.fields(RunRecord):
                setattr(live, f.name, getattr(after, f.name))
            changed = True
        grew = False
        for run_dir, (mtime, now, history) in answer.histories.items():
            cached = self._history.get(run_dir)
            if (cached[0] if cached else None) == mtime:  # not re-read here meanwhile
                self._history[run_dir] = (now, history)
                grew = True
        if changed:
            self.host.mark_changed("runs")  # the page refills the table and redraws the curves
        elif grew:
            self.curvesChanged.emit()

    def _on_follow_finished(self) -> None:
        self.follow_job = None

    # -- actions ------------------------------------------------------------------------------------------
    def add_folder_start(self) -> str:
        """Where "Add run folder…" opens: beside the newest run, else the project's folder, else home."""
        runs = self.host.project.runs
        if runs:
            return str(Path(runs[-1].run_dir).parent)
        return str(Path(self.host.path).parent) if self.host.path else str(Path.home())

    def add_run_folder(self, path: str) -> bool:
        """Add a run folder trained elsewhere to the project (once); a folder that is no run is refused."""
        try:
            record = record_from_folder(path)
        except UserError as exc:
            self.message.emit(str(exc), "error")
            return False
        if find_record(self.host.project, record.run_dir) is None:
            self.host.project.runs.append(record)
            self.host.mark_changed("runs")
        self.messageCleared.emit()
        self.selectRequested.emit([record.run_dir])
        self.host.status(f"Added the run {self.label(record)}", 4000)
        return True

    def open_evaluation(self, run_dir: str) -> bool:
        """Show ``run_dir`` on the Evaluate page (not when its folder is gone)."""
        if not Path(run_dir).is_dir():
            self.message.emit(f"The run folder {run_dir} no longer exists, so it cannot be evaluated.", "warning")
            return False
        self.host.request_evaluation(run_dir)
        self.host.navigateRequested.emit("evaluate")
        return True

    def plan_delete(self, runs: Sequence[str]) -> DeletePlan | None:
        """What deleting ``runs`` would remove; None (and a message for a run still training: it is never
        deleted) when nothing can be."""
        records = [r for r in (find_record(self.host.project, d) for d in runs) if r is not None]
        if not records:
            return None
        if any(r.status == "running" for r in records):
            self.message.emit("A run that is still training cannot be deleted: stop it on the Train page first.",
                              "warning")
            return None
        what = f"the run “{self.label(records[0])}”" if len(records) == 1 else f"{len(records)} runs"
        folders = [Path(r.run_dir) for r in records if Path(r.run_dir).is_dir()]
        return DeletePlan(records, what, f"Remove {what} from this project?", folders)

    @staticmethod
    def files_question(plan: DeletePlan, size_text: Callable[[int], str]) -> str:
        """The second question: delete the folders too? (``size_text``: ``ui.widgets.format_bytes``)."""
        size = sum(folder_size(f) for f in plan.folders)
        where = str(plan.folders[0]) if len(plan.folders) == 1 else f"{len(plan.folders)} run folders"
        return (f"Also delete {where} from disk ({size_text(size)})? Its checkpoints and weights are lost for "
                "good; exported bundles elsewhere are kept.")

    def delete(self, plan: DeletePlan, delete_files: bool) -> int:
        """Remove the records (and, with ``delete_files``, the folders runs wrote); no page keeps pointing
        at a deleted run. Returns the number of records removed."""
        project = self.host.project
        failed: list[str] = []
        for rec in plan.records:
            # Only a folder a run wrote: a hand-edited project may list any folder (even home) as a run.
            if delete_files and Path(rec.run_dir).is_dir() and run_folder.is_run_folder(rec.run_dir):
                try:
                    shutil.rmtree(rec.run_dir)
                except OSError as exc:
                    failed.append(f"{rec.run_dir} ({exc.strerror or exc})")
            if rec in project.runs:
                project.runs.remove(rec)
            for key in UI_RUN_FIELDS:
                value = getattr(project.ui, key)
                if value and norm_path(value) == norm_path(rec.run_dir):
                    project.ui.reset(key)
            self._history.pop(rec.run_dir, None)
        self.host.mark_changed("runs")
        self.host.mark_changed("ui")
        if failed:
            self.message.emit(f"Removed from the project, but could not delete {'; '.join(failed)}.", "warning")
        else:
            self.messageCleared.emit()
            self.host.status(f"Deleted {plan.what}" + (" and its files" if delete_files else ""), 4000)
        return len(plan.records)
