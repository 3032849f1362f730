"""The Evaluate page's model: which run or bundle is measured on which images, the evaluation job, the
reports kept per source, and the texts the page shows.

``core.metrics.evaluate`` runs through the job runner (``ui.worker.run_task`` in the app; progress,
cancel). Reports are kept per source, data folder and weights-file time (``key``), so switching back
and forth does not evaluate again, and a finished run is evaluated without a click when the page shows
it (``maybe_auto_evaluate``). The page's state lives in ``project.ui``: ``evaluate_run`` (the source)
and ``evaluate_data`` (another folder, or None for the run's own split). The page
(``ui.pages.evaluate``) keeps what needs Qt: the run chooser, the folder field, the matrix, tables and
galleries.

The model asks the page, through callables it is given, for the chosen source (``source``), the
folder of images (``data_folder``: None for the run's own split), whether "Another folder" is chosen
(``folder_chosen``) and whether the chooser lists any source (``has_sources``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer_studio.core import run_folder  # torch-free: the folders' file names
from transfer_studio.core.runs import find_record, norm_path
from transfer_studio.errors import UserError
from transfer_studio.ui.models.base import Event, Host, Job, JobRunner
from transfer_studio.ui.runtime import import_core

WORST = 24  # most confidently wrong images shown
SPLIT_TEXT = {"test": "the run's test split", "val": "the run's validation split",
              "train": "the training images", "all": "every image in the folder"}
OPTIMISTIC_NOTE = ("the validation split also chose the best epoch. A test split (Data page) or a "
                   "separate folder gives an unbiased estimate.")

Key = tuple[str, str, float]  # source, data folder ("" for the run's own split), weights-file time


# -- the job (worker thread) --------------------------------------------------------------------------
def run_evaluation(source: str, data_dir: str | None, progress: Any = None, cancel: Any = None) -> Any:
    """``core.metrics.evaluate`` with the GUI's wording for a run whose images are gone (worker thread)."""
    export, metrics = import_core("export"), import_core("metrics")

    src = Path(source)
    if not data_dir:
        kind = export.source_kind(src)
        if kind == "run":
            root = export.load_run_project(src).data.root
            if not root or not Path(root).is_dir():
                raise UserError(f"The images this run was trained on are no longer at {root or '(unknown)'}. "
                                "Choose “Another folder” of labelled images below to evaluate on, or "
                                "move the dataset back.")
        else:
            run_dir = (export.read_bundle_meta(src).get("source") or {}).get("run_dir")
            if not run_dir or not (Path(run_dir) / export.RUN_PROJECT).is_file():
                raise UserError("This bundle's training run is not available to pick its test images: "
                                "choose “Another folder” of labelled images below to evaluate on.")
    return metrics.evaluate(src, data_dir or None, progress=progress, cancel=cancel, worst=WORST)


# -- texts ------------------------------------------------------------------------------------------------
@dataclass
class ReportTexts:
    """What the page writes for a report (``core.metrics.EvalReport``)."""

    accuracy: str
    top5: str | None  # None: fewer than 5 classes
    images: str
    macro_f1: str
    split: str
    optimistic: bool  # the note is the warning about validation figures (the page colours its start)
    note: str
    wrong: str
    wrong_captions: list[str]
    wrong_tips: list[str]


def report_texts(report: Any) -> ReportTexts:
    f1s = [m.f1 for m in report.per_class.values() if m.support > 0]
    where = SPLIT_TEXT.get(report.split, report.split)
    if report.split == "all":
        where = f"every image in {report.data_root}"
    elif report.split in ("test", "val") and report.source_kind == "bundle":
        where = where.replace("the run's", "its training run's")
    skipped = f" {len(report.skipped)} unreadable or missing images were skipped." if report.skipped else ""
    worst = list(report.worst)
    wrong_total = int((report.predictions != report.labels).sum()) if len(report.labels) else 0
    if not worst:
        wrong = "No mistakes on these images."
    else:
        wrong = (f"The {len(worst)} mistakes the model was most sure about (of {wrong_total}); caption: "
                 "true class → predicted class.")
    return ReportTexts(
        accuracy=f"{report.accuracy:.1%}",
        top5=None if report.top5 is None else f"{report.top5:.1%}",
        images=f"{report.num_images:,}",
        macro_f1=f"{sum(f1s) / len(f1s):.3f}" if f1s else "–",
        split=f"Evaluated on {where} ({report.num_images:,} images, {len(report.classes)} classes).{skipped}",
        optimistic=bool(report.optimistic),
        note=OPTIMISTIC_NOTE if report.optimistic else (sentence(report.note) if report.note else ""),
        wrong=wrong,
        wrong_captions=[f"{w.label} → {w.predicted}\n{w.probability:.0%} sure" for w in worst],
        wrong_tips=[f"{w.path}\ntrue: {w.label}\npredicted: {w.predicted} ({w.probability:.1%})" for w in worst],
    )


@dataclass
class Cell:
    """The images of one confusion-matrix cell, with their captions, tips and the line above them."""

    paths: list[str]
    captions: list[str]
    tips: list[str]
    text: str


def cell_paths(report: Any, true: int, predicted: int) -> list[str]:
    """The images of ``report`` with this true class and this predicted class."""
    return [p for p, t, q in zip(report.paths, report.labels, report.predictions, strict=True)
            if int(t) == true and int(q) == predicted]


def cell(report: Any, true: int, predicted: int) -> Cell:
    index = {p: k for k, p in enumerate(report.paths)}
    paths = cell_paths(report, true, predicted)
    probs = report.probabilities
    t, q = report.classes[true], report.classes[predicted]
    n = len(paths)
    noun = "image" if n == 1 else "images"
    text = (f"<b>{t}</b> recognised correctly: {n} {noun}." if true == predicted
            else f"<b>{t}</b> mistaken for <b>{q}</b>: {n} {noun}.")
    return Cell(paths, [f"{Path(p).name}\n{probs[index[p], predicted]:.0%}" for p in paths],
                [f"{p}\ntrue: {t}\npredicted: {q} ({probs[index[p], predicted]:.1%})" for p in paths], text)


def sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


# -- the model ------------------------------------------------------------------------------------------
class EvaluateModel:
    """The Evaluate page's state and job. Events: ``message(text, level, details, offer_folder)``,
    ``messageCleared()``, ``busyStarted(label, job)``, ``busyStopped()``, ``enabledChanged()``,
    ``reportShown(report)``, ``emptyShown(title, text, actions_visible)``."""

    EVENTS = ("message", "messageCleared", "busyStarted", "busyStopped", "enabledChanged", "reportShown",
              "emptyShown")

    def __init__(self, host: Host, jobs: JobRunner, *, source: Callable[[], str | None],
                 data_folder: Callable[[], str | None], folder_chosen: Callable[[], bool],
                 has_sources: Callable[[], bool]):
        self.host, self.jobs = host, jobs
        self.source, self.data_folder = source, data_folder
        self.folder_chosen, self.has_sources = folder_chosen, has_sources
        for name in self.EVENTS:
            setattr(self, name, Event())
        self.reports: dict[Key, Any] = {}
        self.report: Any = None  # the core.metrics.EvalReport shown
        self.job: Job | None = None
        self.job_key: Key | None = None

    # -- the page's choices, remembered in the project ------------------------------------------------
    def remember_source(self) -> None:
        path = self.source()
        ui = self.host.project.ui
        if path and ui.evaluate_run != path:
            ui.evaluate_run = path
            self.host.mark_changed("ui")

    def remember_data_folder(self, folder: str) -> None:
        """``folder`` ("" for the run's own split) as ``ui.evaluate_data``."""
        ui = self.host.project.ui
        if (ui.evaluate_data or "") != folder:
            ui.evaluate_data = folder or None
            self.host.mark_changed("ui")

    # -- evaluation -------------------------------------------------------------------------------------
    def key(self) -> Key | None:
        source = self.source()
        if not source:
            return None
        folder = self.data_folder()
        if self.folder_chosen() and not folder:
            return None
        return norm_path(source), norm_path(folder) if folder else "", run_folder.weights_stamp(source)

    def busy(self) -> bool:
        return self.job is not None and self.job.is_running()

    def can_evaluate(self) -> bool:
        return self.has_sources() and not (self.folder_chosen() and not self.data_folder()) and not self.busy()

    def evaluate(self) -> Job | None:
        """Start evaluating the chosen source on the chosen images (cancels one in progress)."""
        key, source = self.key(), self.source()
        if key is None or source is None:
            self.message.emit("Choose a model to evaluate (a run of this project, or a run or bundle folder) "
                              "and, for “Another folder”, the folder of images.", "warning", "", False)
            return None
        if self.busy():
            self.job.cancel()  # type: ignore[union-attr]
        self.messageCleared.emit()
        folder = self.data_folder()
        self.job_key = key
        job = self.jobs(run_evaluation, source, folder, name="evaluate",
                        on_result=lambda rep, k=key: self._on_result(k, rep), on_error=self._on_error,
                        on_cancelled=self._on_cancelled, on_finished=self._on_finished)
        if job.is_running():  # a job the (synchronous test) runner finished already is over
            self.job = job
            what = "its own test/validation images" if folder is None else folder
            self.busyStarted.emit(f"Evaluating {Path(source).name} on {what}…", job)
        self.enabledChanged.emit()
        self.refresh()
        return job

    def maybe_auto_evaluate(self) -> None:
        """Evaluate without a click when the page shows a finished run not yet evaluated."""
        key = self.key()
        if key is None or key in self.reports or self.busy():
            return
        source = self.source() or ""
        rec = find_record(self.host.project, source)
        if rec is not None and rec.status == "running":
            return  # its weights are still changing
        if not run_folder.weights_stamp(source):
            return
        self.evaluate()

    def refresh(self) -> None:
        """Show the kept report of the current choice, else say why there is none."""
        key = self.key()
        report = self.reports.get(key) if key is not None else None
        if report is not None:
            self.report = report
            self.reportShown.emit(report)
            return
        self.report = None
        if self.busy() and key is not None and key == self.job_key:
            source = Path(self.source() or "").name
            folder = self.data_folder()
            what = "its own test (else validation) images" if folder is None else Path(folder).name
            self.emptyShown.emit("Evaluating\u2026", f"Measuring {source} on {what}. The results appear "
                                       "here when it is done.", False)
        elif not self.has_sources():
            self.emptyShown.emit("No trained model yet", "Train a model on the Train page, or choose a "
                                       "run or exported bundle folder above.", True)
        else:
            self.emptyShown.emit("Not evaluated yet", "Press Evaluate to measure this model on images "
                                       "it did not train on.", True)

    def cell(self, true: int, predicted: int) -> Cell | None:
        return None if self.report is None else cell(self.report, true, predicted)

    # -- the job's answers --------------------------------------------------------------------------------
    def _on_result(self, key: Key, report: Any) -> None:
        self.reports[key] = report
        if key == self.key():
            self.report = report
            self.reportShown.emit(report)

    def _on_error(self, message: str, details: str) -> None:
        self.message.emit(message, "error", details, not self.folder_chosen())

    def _on_cancelled(self) -> None:
        self.host.status("Evaluation cancelled", 3000)

    def _on_finished(self) -> None:
        self.busyStopped.emit()
        self.job = None
        self.enabledChanged.emit()
        if self.report is None:  # failed or cancelled: no longer "Evaluating…"
            self.refresh()
