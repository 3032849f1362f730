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

Deleting runs never touches their folders on the GUI thread (they may hold gigabytes, on a shared
file system): after the first question a job (``measure_task``) finds the folders a run wrote and their
size for the second question, and another (``delete_task``) deletes them one after the other, with
progress, cancellable between folders; records are removed on the GUI thread when it ends, only those
whose folders are gone (or were to be kept).

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

from transfer_studio.config import Project, RunRecord
from transfer_studio.core import run_folder  # torch-free: the folders' file names and small JSON files
from transfer_studio.core.runs import find_record, norm_path, record_from_folder, refresh_record
from transfer_studio.errors import Cancelled, UserError
from transfer_studio.ui.models.base import Event, Host, Job, JobRunner

FOLLOW_MS = 3000  # how often runs still training are re-read (the page's timer)
COLUMNS = ("Date", "Model", "Strategy", "Epochs", "Best val. accuracy", "Duration", "Status")
NUMERIC_COLUMNS = (3, 4, 5)  # right-aligned
# Distinct, mid-saturation colours for overlaid runs: readable on light and dark backgrounds.
RUN_COLOURS = ("#1f77dc", "#e8780f", "#2ca05a", "#d6456b", "#9467bd", "#8c6d31", "#17a3b8", "#7f7f7f")
CURVE_KINDS = ("val_accuracy", "val_loss", "train_loss")
UI_RUN_FIELDS = ("selected_run", "evaluate_run", "export_run", "try_run")  # pages' runs in project.ui
STILL_TRAINING = "A run that is still training cannot be deleted: stop it on the Train page first."

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


def folder_size(path: Path, cancel: Callable[[], bool] | None = None) -> int:
    """The bytes of the files under ``path``; raises ``Cancelled`` once ``cancel()`` is true."""
    total = 0
    for f in path.rglob("*"):
        if cancel is not None and cancel():
            raise Cancelled
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
    """What "Delete…" would remove, and the first question (remove the records?). ``folders`` and ``size``
    are filled in by the measuring job: the run folders on disk that may go too (the second question)."""

    records: list[RunRecord]
    what: str  # "the run “…”" or "3 runs"
    question: str
    folders: list[Path] = field(default_factory=list)
    size: int = 0  # bytes under ``folders``


@dataclass
class DeleteOutcome:
    """What the deleting job did, filled in as it goes: a cancelled job's result never arrives, so the
    GUI thread reads this object once the job has ended."""

    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (folder, why)


@dataclass
class _Deleting:
    """A delete under way, from the first answer until its records are removed."""

    plan: DeletePlan
    ask_files: Callable[[DeletePlan], bool]
    project: Project  # the project the records are in (another may be opened meanwhile)
    job: Job | None = None
    error: str = ""


# -- the delete jobs (worker thread) -----------------------------------------------------------------------
def measure_task(run_dirs: Sequence[str], *, progress: Callable[[int, int], None],
                 cancel: Callable[[], bool]) -> tuple[list[Path], int]:
    """Of ``run_dirs``, the folders a run wrote, the only ones "Delete" may remove (a hand-edited project
    may list any folder, even home, as a run), and the bytes they hold."""
    folders = [Path(d) for d in run_dirs if run_folder.is_run_folder(d)]
    total = 0
    for k, folder in enumerate(folders):
        progress(k, len(folders))
        total += folder_size(folder, cancel)
    progress(len(folders), len(folders))
    return folders, total


def delete_task(folders: Sequence[Path], outcome: DeleteOutcome, *, progress: Callable[[int, int], None],
                cancel: Callable[[], bool]) -> DeleteOutcome:
    """Delete ``folders`` one after the other into ``outcome``; a cancel stops between folders, so no run
    folder is left half deleted."""
    for k, folder in enumerate(folders):
        if cancel():
            return outcome
        progress(k, len(folders))
        if not folder.exists():  # gone meanwhile
            outcome.deleted.append(str(folder))
        elif not run_folder.is_run_folder(folder):  # changed since it was measured: the safety rule again
            outcome.failed.append((str(folder), "no longer a run folder"))
        else:
            try:
                shutil.rmtree(folder)
            except OSError as exc:
                outcome.failed.append((str(folder), exc.strerror or str(exc)))
            else:
                outcome.deleted.append(str(folder))
    progress(len(folders), len(folders))
    return outcome


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
    redraw; a changed record is announced as ``projectChanged("runs")`` instead), ``busyStarted(text,
    job, steps)`` and ``busyStopped()`` (a delete job runs: show it, with its cancel; ``deleting()`` says
    whether a delete is under way)."""

    EVENTS = ("message", "messageCleared", "selectRequested", "curvesChanged", "busyStarted", "busyStopped")

    def __init__(self, host: Host, jobs: JobRunner, *, selected: Callable[[], list[str]],
                 shown: Callable[[], bool], label: Callable[[RunRecord], str], created: Callable[[str], str]):
        self.host, self.jobs = host, jobs
        self.selected, self.shown = selected, shown
        self.label, self.created = label, created
        for name in self.EVENTS:
            setattr(self, name, Event())
        self._history: dict[str, tuple[float, History]] = {}
        self.follow_job: Job | None = None
        self._deleting: _Deleting | None = None
        self.closed = False  # the page is gone: follow nothing, apply no late answer

    # -- rows, selection and curves -----------------------------------------------------------------
    def rows(self) -> list[Row]:
        """The table's rows, newest first."""
        return [row(rec, Path(rec.run_dir).is_dir(), self.created) for rec in reversed(self.host.project.runs)]

    def shown_runs(self, selected: Sequence[str], latest: str | None) -> list[str]:
        """What to select after the table was refilled: the runs selected before, else the latest run
        (``latest``: ``run_chooser.default_run``) rather than two empty charts, if its folder exists."""
        listed = {r.run_dir for r in self.host.project.runs}  # the table's rows carry these very strings
        kept = [d for d in selected if d in listed]  # a deleted run's selection goes with it
        if kept or not self.host.project.runs:
            return kept
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
        """The page is shut down or destroyed: cancel the follow and delete jobs; answers on their way are
        dropped."""
        self.closed = True
        for job in (self.follow_job, self.delete_job):
            if job is not None:
                job.cancel()
        self.host.runs_being_deleted = frozenset()

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

    def deleting(self) -> bool:
        """A delete is under way (measuring, asking, deleting): another one is refused."""
        return self._deleting is not None

    @property
    def delete_job(self) -> Job | None:
        """The delete's job running now (measuring or deleting), if any."""
        return self._deleting.job if self._deleting is not None else None

    def plan_delete(self, runs: Sequence[str]) -> DeletePlan | None:
        """What deleting ``runs`` would remove; None (and a message for a run still training: it is never
        deleted, or while another delete is under way) when nothing can be. Touches no folder."""
        if self.deleting():
            self.message.emit("Runs are being deleted: wait until that ends, then delete more.", "warning")
            return None
        records = [r for r in (find_record(self.host.project, d) for d in runs) if r is not None]
        if not records:
            return None
        if any(r.status == "running" for r in records):
            self.message.emit(STILL_TRAINING, "warning")
            return None
        what = f"the run “{self.label(records[0])}”" if len(records) == 1 else f"{len(records)} runs"
        return DeletePlan(records, what, f"Remove {what} from this project?")

    @staticmethod
    def files_question(plan: DeletePlan, size_text: Callable[[int], str]) -> str:
        """The second question: delete the measured folders too? (``size_text``: ``ui.widgets.format_bytes``)."""
        where = str(plan.folders[0]) if len(plan.folders) == 1 else f"{len(plan.folders)} run folders"
        return (f"Also delete {where} from disk ({size_text(plan.size)})? Its checkpoints and weights are lost for "
                "good; exported bundles elsewhere are kept.")

    def start_delete(self, plan: DeletePlan, ask_files: Callable[[DeletePlan], bool]) -> Job | None:
        """The user agreed to remove ``plan``'s records. A job measures the run folders they wrote; when it
        answers, ``ask_files(plan)`` asks whether to delete those folders too (not asked when there are
        none), then the records are removed, after a second job deleted the folders if the answer was
        yes. Returns the measuring job (None: none started: another delete is under way)."""
        if self.closed or self.deleting():
            return None
        state = _Deleting(plan, ask_files, self.host.project)
        self._deleting = state
        # The Train page does not resume these meanwhile (it would write into a folder being deleted).
        self.host.runs_being_deleted = frozenset(norm_path(r.run_dir) for r in plan.records)
        job = self.jobs(measure_task, [r.run_dir for r in plan.records], name="measure runs", pass_control=True,
                        needs_torch=False, on_result=lambda answer: self._on_measured(state, answer),
                        on_error=lambda text, _details: self._end_delete(
                            state, f"Could not measure the run folders, so nothing was removed: {text}", "error"),
                        on_cancelled=lambda: self._end_delete(state, "Delete cancelled: nothing was removed.",
                                                              "info"))
        if self._deleting is state and job.is_running():  # a synchronous (test) runner has answered already
            state.job = job
            self.busyStarted.emit(f"Measuring {plan.what}…", job, [])
        return job

    def _on_measured(self, state: _Deleting, answer: tuple[list[Path], int]) -> None:
        if self.closed or self._deleting is not state:
            return
        plan = state.plan
        plan.folders, plan.size = answer
        state.job = None
        if any(r.status == "running" for r in plan.records):  # resumed on the Train page while measuring
            self._end_delete(state, STILL_TRAINING, "warning")
            return
        self.busyStopped.emit()
        try:
            delete_files = bool(plan.folders) and state.ask_files(plan)
        except BaseException:
            self._deleting = None  # nothing removed, and no later delete is refused
            self.host.runs_being_deleted = frozenset()
            raise
        if self.closed or self._deleting is not state:  # closed while the question was open
            return
        if not delete_files:
            self._finish_delete(state, DeleteOutcome(), delete_files=False)
            return
        outcome = DeleteOutcome()
        job = self.jobs(delete_task, list(plan.folders), outcome, name="delete runs", pass_control=True,
                        needs_torch=False,
                        on_error=lambda text, _details: setattr(state, "error", text),
                        on_finished=lambda: self._finish_delete(state, outcome, delete_files=True))
        if self._deleting is state and job.is_running():
            state.job = job
            self.busyStarted.emit(f"Deleting {plan.what}", job, [f.name for f in plan.folders])

    def _end_delete(self, state: _Deleting, text: str, level: str) -> None:
        """The measuring job failed or was cancelled: nothing is removed."""
        if self.closed or self._deleting is not state:
            return
        self._deleting = None
        self.host.runs_being_deleted = frozenset()
        self.message.emit(text, level)
        self.busyStopped.emit()

    def _finish_delete(self, state: _Deleting, outcome: DeleteOutcome, *, delete_files: bool) -> None:
        """Remove the records whose folders are gone (or stay by choice, or were none a run wrote); no page
        keeps pointing at a deleted run. Records whose folders could not be deleted stay, and are said."""
        if self.closed or self._deleting is not state:
            return
        self._deleting = None
        self.host.runs_being_deleted = frozenset()
        plan = state.plan
        deleted = set(outcome.deleted)
        kept = {str(f) for f in plan.folders if str(f) not in deleted} if delete_files else set()
        gone = [rec for rec in plan.records if str(Path(rec.run_dir)) not in kept]
        project = self.host.project
        if gone and project is state.project:
            for rec in gone:
                project.runs[:] = [r for r in project.runs if r is not rec]
                for key in UI_RUN_FIELDS:
                    value = getattr(project.ui, key)
                    if value and norm_path(value) == norm_path(rec.run_dir):
                        project.ui.reset(key)
                self._history.pop(rec.run_dir, None)
            self.host.mark_changed("runs")
            self.host.mark_changed("ui")
        failed = [f"{folder} ({why})" for folder, why in outcome.failed]
        left = len(kept) - len(failed)  # not reached: cancelled, or the job failed
        if kept:
            parts = [f"Could not delete {'; '.join(failed)}."] if failed else []
            if state.error:
                parts.append(f"Deleting stopped: {state.error}.")
            elif left:
                parts.append(f"Delete cancelled before {left} run folder{'s' if left > 1 else ''}.")
            n = len(plan.records) - len(gone)
            parts.append(f"{n} run{'s' if n > 1 else ''} kept in the project, {len(gone)} removed.")
            self.message.emit(" ".join(parts), "error" if state.error else "warning" if failed else "info")
        else:
            self.messageCleared.emit()
            files = (" and its files" if len(plan.records) == 1 else " and their files") if delete_files else ""
            self.host.status(f"Deleted {plan.what}{files}", 4000)
        self.busyStopped.emit()
