"""The "Review labels" page's model: no Qt here (tests drive it without a QApplication).

It holds the label check's result (``training.label_check``), the user's pending decisions per image
(accept the suggestion, keep the label, another class, set aside), and the label journal's batches
(``core.label_journal``) for undo, including batches made before the app restarted. Work runs
through the job runner it is given (``ui.worker.run_task`` in the app, a synchronous one in tests):
the check, applying corrections (journal first, then the moves), undo; each job rescans the folder
afterwards so the project and the other pages see the data as it is now.

The page (``ui.pages.review``) renders ``ReviewModel``'s state and forwards keys and clicks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer_studio.ui.models.base import Event

# Decisions; any other value names a class (the colon keeps them apart from class folder names).
KEEP, ACCEPT, ASIDE = ":keep", ":accept", ":aside"
REVIEW_MIN = 20  # at least this many of the most doubtful images are listed ...
REVIEW_SHARE = 0.1  # ... or this share of the folder, whichever is more (flagged ones always)
CHECKING = "Checking labels (one pass of the network over every image)…"


@dataclass
class Item:
    """One image in the review list."""

    file: str  # relpath under the data folder
    given: str
    suggested: str
    self_confidence: float
    suggested_probability: float
    rank: int
    flagged: bool
    outlier: bool
    part: str | None
    duplicate_of: list[str]  # near-duplicates in other classes or splits

    def reason(self) -> str:
        parts = []
        if self.flagged:
            parts.append(f"probably '{self.suggested}', not '{self.given}'")
        if self.outlier:
            parts.append("fits no class well")
        if self.duplicate_of:
            parts.append(f"near-duplicate of {self.duplicate_of[0]}"
                         + (f" and {len(self.duplicate_of) - 1} more" if len(self.duplicate_of) > 1 else ""))
        return "; ".join(parts) or f"{self.self_confidence:.0%} sure of its label"


def _check(project: Any, report: Any, *, progress: Callable[[int, int], None] | None = None,
           cancel: Callable[[], bool] | None = None) -> tuple[Any, Any]:
    """(the label check, the scan it used): the folder is scanned first when no page has yet."""
    from transfer_studio.core import dataset
    from transfer_studio.training.label_check import check_labels

    if report is None:
        report = dataset.scan(project.data.root, cancel=cancel)
    return check_labels(project, report, progress=progress, cancel=cancel), report


def _apply(root: str, corrections: list[Any], report: Any, *, progress: Callable[[int, int], None] | None = None,
           cancel: Callable[[], bool] | None = None) -> tuple[Any, Any]:
    """Journal and make the corrections, then rescan. Not cancellable: the moves are quick, and a
    batch, once begun, is completed (the journal's rule)."""
    from transfer_studio.core import dataset
    from transfer_studio.core.label_journal import Journal

    batch = Journal(root).apply(corrections, report)
    return batch, dataset.scan(root, progress=progress)


def _undo(root: str, batch_id: str, *, progress: Callable[[int, int], None] | None = None,
          cancel: Callable[[], bool] | None = None) -> tuple[Any, Any]:
    from transfer_studio.core import dataset
    from transfer_studio.core.label_journal import Journal

    batch = Journal(root).undo(batch_id)
    return batch, dataset.scan(root, progress=progress)


def _history(root: str, *, progress: Any = None, cancel: Any = None) -> tuple[list[Any], list[str]]:
    """The journal's batches, after completing any a crash interrupted (the app's start)."""
    from transfer_studio.core.label_journal import Journal

    journal = Journal(root)
    notes = journal.recover() if journal.pending() else []
    return journal.batches(), notes


class ReviewModel:
    """State and actions of the Review labels page (see the module docstring)."""

    def __init__(self, host: Any, run_job: Callable[..., Any]):
        self.host = host
        self.run_job = run_job
        self.changed = Event()  # the list, the current image, decisions or history changed
        self.busy = Event()  # (bool, text, cancellable)
        self.progress = Event()  # (done, total)
        self.message = Event()  # (text, kind: "info" | "warning" | "error")
        self.items: list[Item] = []
        self.current = -1
        self.decisions: dict[str, str] = {}
        self.history: list[Any] = []  # label_journal.Batch, oldest first
        self.history_root = ""  # the data folder whose journal ``history`` is
        self.result: Any = None  # label_issues.LabelCheck
        self._corrected: dict[str, Item] = {}  # relpath after a correction -> its item (undo lists it again)
        self._queued: Callable[[], None] | None = None  # started when the running job ends
        self.job: Any = None
        self.job_kind = ""
        self.root = ""

    # -- state ---------------------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        return list(self.result.classes) if self.result is not None else list(getattr(self.host.scan, "classes", []))

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.is_running()

    @property
    def working(self) -> bool:
        """A job runs, or the check waits for the one running to end."""
        return self.running or self._queued is not None

    def item(self) -> Item | None:
        return self.items[self.current] if 0 <= self.current < len(self.items) else None

    def path(self, item: Item) -> str:
        return str(Path(self.root) / item.file)

    def decision(self, item: Item) -> str | None:
        return self.decisions.get(item.file)

    def target(self, item: Item) -> str | None:
        """The class the image will have (``""`` set aside), or None when it keeps its label."""
        d = self.decisions.get(item.file)
        if d is None or d == KEEP:
            return None
        if d == ASIDE:
            return ""
        label = item.suggested if d == ACCEPT else d
        return None if label == item.given else label

    def corrections(self) -> list[Any]:
        from transfer_studio.core.label_journal import Correction

        out = []
        for item in self.items:
            label = self.target(item)
            if label is not None:
                out.append(Correction(item.file, label, item.part))
        return out

    def summary(self) -> str:
        """What applying would change: "2 to another class, 1 set aside, 3 kept (of 25 reviewed)"."""
        moves = sum(1 for i in self.items if self.target(i))
        aside = sum(1 for i in self.items if self.target(i) == "")
        kept = sum(1 for i in self.items if i.file in self.decisions and self.target(i) is None)
        if not self.decisions:
            return "No decisions yet." if self.items else ""
        parts = [f"{moves} to another class" if moves else "", f"{aside} set aside" if aside else "",
                 f"{kept} kept" if kept else ""]
        return f"{', '.join(p for p in parts if p)} (of {len(self.items)} listed)"

    def undoable(self) -> list[Any]:
        return [b for b in reversed(self.history) if b.undoable]

    def decision_text(self, item: Item) -> str:
        """What the list shows for an image's decision ("" for none yet)."""
        d = self.decisions.get(item.file)
        if d is None:
            return ""
        if d == KEEP:
            return f"keep '{item.given}'"
        if d == ASIDE:
            return "set aside"
        label = item.suggested if d == ACCEPT else d
        return f"keep '{item.given}'" if label == item.given else f"→ '{label}'"

    def history_rows(self) -> list[tuple[str, str, bool]]:
        """The journal's corrections, newest first: (batch id, "14:03  3 images to another class",
        undoable)."""
        import time as _time

        rows = []
        for b in reversed(self.history):
            if b.state != "done":
                continue
            when = _time.strftime("%Y-%m-%d %H:%M", _time.localtime(b.time))
            text = f"{when}  {b.summary()}"
            if b.undone_by:
                text += " (undone)"
            rows.append((b.id, text, b.undoable))
        return rows

    # -- the check -----------------------------------------------------------------------------
    def can_check(self) -> str:
        """Why the check cannot run now ('' when it can)."""
        if self.running and self.job_kind != "history":
            return "A job is running."
        if not self.host.project.data.root:
            return "Choose a data folder on the Data page first."
        if getattr(self.host, "training_active", False):
            return "A training run is using the data: wait for it to finish."
        return ""

    def start_check(self) -> None:
        why = self.can_check()
        if why:
            self.message.emit(why, "warning")
            return
        if self.running:  # reading the journal (a moment): the check follows
            self._queued = self.start_check
            self.busy.emit(True, CHECKING, True)
            self.changed.emit()
            return
        project = self.host.project.copy()
        scan = self.host.scan
        if scan is not None and str(Path(scan.root)) != str(Path(project.data.root).resolve()):
            scan = None  # the scan is of another folder (the project's changed since)
        self._start("check", CHECKING, _check, project,
                    scan, on_result=self._on_checked)

    def cancel(self) -> None:
        if self._queued is not None:
            self._queued = None
            self.busy.emit(False, "", False)
            self.message.emit("Label check cancelled: nothing was changed.", "info")
            self.changed.emit()
        elif self.running and self.job_kind == "check":
            self.job.cancel()

    def reset(self) -> None:
        """Forget the check and the decisions (another project or data folder)."""
        self.result = None
        self.items = []
        self.current = -1
        self.decisions.clear()
        self._corrected.clear()
        self.root = ""
        self.history = []
        self.history_root = ""
        self.changed.emit()

    def _on_checked(self, value: tuple[Any, Any]) -> None:
        result, report = value
        if self.host.scan is None or str(self.host.scan.root) != str(report.root):
            self.host.set_scan(report)
        self.result = result
        self.root = result.root
        self.decisions.clear()
        self._corrected.clear()
        dups: dict[str, list[str]] = {}
        for d in result.duplicates:
            dups.setdefault(d.a, []).append(d.b)
            dups.setdefault(d.b, []).append(d.a)
        limit = max(REVIEW_MIN, round(REVIEW_SHARE * len(result.images)))
        items = [i for k, i in enumerate(result.images)
                 if k < limit or i.flagged or i.outlier or i.file in dups]
        self.items = [Item(i.file, i.given, i.suggested, i.self_confidence, i.suggested_probability, i.rank, i.flagged,
                           i.outlier, i.part, dups.get(i.file, [])) for i in items]
        self.current = 0 if self.items else -1
        flagged = sum(1 for i in result.images if i.flagged)
        self.message.emit(f"{flagged} of {len(result.images)} images are probably mislabelled; "
                          f"{len(self.items)} listed, most doubtful first.", "info")
        self.changed.emit()

    # -- decisions -----------------------------------------------------------------------------
    def select(self, index: int) -> None:
        if 0 <= index < len(self.items) and index != self.current:
            self.current = index
            self.changed.emit()

    def step(self, delta: int) -> None:
        self.select(max(0, min(len(self.items) - 1, self.current + delta)))

    def decide(self, decision: str) -> None:
        """Record a decision for the current image (ACCEPT, KEEP, ASIDE or a class name) and move on."""
        item = self.item()
        if item is None or self.running:
            return
        if decision not in (KEEP, ACCEPT, ASIDE) and decision not in self.classes:
            raise ValueError(f"unknown class {decision!r}")
        self.decisions[item.file] = decision
        if self.current < len(self.items) - 1:
            self.current += 1
        self.changed.emit()

    def decide_class_number(self, number: int) -> None:
        """Keys 1-9: the class with that number (in the class list's order)."""
        if 1 <= number <= len(self.classes):
            self.decide(self.classes[number - 1])

    def clear_decision(self) -> None:
        item = self.item()
        if item is not None and self.decisions.pop(item.file, None) is not None:
            self.changed.emit()

    # -- corrections and undo --------------------------------------------------------------------
    def apply(self) -> None:
        corrections = self.corrections()
        if not corrections:
            self.message.emit("Nothing to change: every decision keeps the label.", "info")
            return
        if self.running:
            return
        self._start("apply", f"Correcting {len(corrections)} label(s)…", _apply, self.root, corrections,
                    self.host.scan, on_result=self._on_applied)

    def undo(self, batch_id: str | None = None) -> None:
        """Undo a batch from the journal (the latest undoable one by default)."""
        if self.running:
            return
        target = batch_id or next((b.id for b in self.undoable()), None)
        if target is None:
            self.message.emit("There is nothing to undo.", "info")
            return
        self._start("undo", "Undoing…", _undo, self.root or self.data_root(), target, on_result=self._on_undone)

    def load_history(self) -> None:
        """Read the journal (completing an interrupted batch first): on showing the page, after opening
        a project."""
        root = self.data_root()
        if not root or self.running or not Path(root).is_dir():
            return
        self._start("history", "", _history, root, on_result=lambda v: self._on_history(root, v), quiet=True,
                    needs_torch=False)

    def _on_history(self, root: str, value: tuple[list[Any], list[str]]) -> None:
        self.history, notes = value
        self.history_root = root
        for note in notes:
            self.message.emit(note[0].upper() + note[1:] + ".", "warning")
        self.changed.emit()

    def _on_applied(self, value: tuple[Any, Any]) -> None:
        batch, report = value
        self._after_batch(batch, report)
        done = {c.file: c for c in batch.changes}
        for item in self.items:
            if item.file in done:
                self._corrected[done[item.file].to_file] = item
        self.items = [i for i in self.items if i.file not in done]
        for f in done:
            self.decisions.pop(f, None)
        self.current = min(max(self.current, 0), len(self.items) - 1)
        self.message.emit(f"Done: {batch.summary()}. Undo puts them back.", "info")
        self.changed.emit()

    def _on_undone(self, value: tuple[Any, Any]) -> None:
        batch, report = value
        self._after_batch(batch, report)
        back = [self._corrected.pop(c.file) for c in batch.changes if c.file in self._corrected]
        if back:  # corrected in this session: listed again, where they were
            self.items = sorted([*self.items, *back], key=lambda i: i.rank)
            self.current = self.items.index(back[0])
        self.message.emit(f"Undone: {len(batch.changes)} image(s) back where they were.", "info")
        self.changed.emit()

    def _after_batch(self, batch: Any, report: Any) -> None:
        from transfer_studio.core.label_journal import remap_split

        self.history = [b for b in self.history if b.id != batch.id]
        for b in self.history:
            if b.id == batch.undo_of:
                b.undone_by = batch.id
        self.history.append(batch)
        self.history_root = self.root or self.data_root()
        project = self.host.project
        split = remap_split(project.data.split, batch)
        if split != project.data.split:
            project.data.split = split
            self.host.mark_changed("data")
        self.host.set_scan(report)

    # -- jobs ----------------------------------------------------------------------------------
    def data_root(self) -> str:
        scan = self.host.scan
        return str(scan.root) if scan is not None else str(self.host.project.data.root or "")

    def _start(self, kind: str, text: str, fn: Callable[..., Any], *args: Any,
               on_result: Callable[[Any], None], quiet: bool = False, needs_torch: bool = True) -> None:
        self.job_kind = kind
        ended = [False]
        if not quiet:
            self.busy.emit(True, text, kind == "check")

        def failed(message: str, _detail: str) -> None:
            self.message.emit(message, "error")

        def cancelled() -> None:
            self.message.emit("Label check cancelled: nothing was changed.", "info")

        def finished() -> None:
            ended[0] = True
            self.job = None
            if not quiet:
                self.busy.emit(False, "", False)
            self.changed.emit()
            queued, self._queued = self._queued, None
            if queued is not None:
                queued()

        job = self.run_job(fn, *args, name=f"review-{kind}", on_result=on_result, on_error=failed,
                           on_progress=lambda d, t: self.progress.emit(d, t), on_cancelled=cancelled,
                           on_finished=finished, needs_torch=needs_torch)
        if not ended[0]:  # a synchronous runner (tests) has finished already
            self.job = job
            self.changed.emit()

    def shutdown(self) -> None:
        if self.running:
            self.job.cancel()
