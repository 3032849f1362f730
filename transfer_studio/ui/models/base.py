"""What every page model is built from: events, the job runner it is handed, undoable project edits,
and the host (the open project and the app's shared state) it works on."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from transfer_studio.config import Project


class Event:
    """A Qt-free signal: ``connect(callback)``, ``emit(*args)``; callbacks run in the emitting thread
    (models only emit from the GUI thread: job callbacks arrive there)."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable[..., Any]) -> None:
        self._callbacks.remove(callback)

    def emit(self, *args: Any) -> None:
        for callback in list(self._callbacks):
            callback(*args)


class Job(Protocol):
    """A running background job (``ui.worker.TaskHandle`` in the app)."""

    def cancel(self) -> None: ...
    def is_running(self) -> bool: ...


class JobRunner(Protocol):
    """Runs ``fn(*args, progress=..., cancel=..., **kwargs)`` off the GUI thread and calls back on it:
    ``ui.worker.run_task``'s signature."""

    def __call__(self, fn: Callable[..., Any], *args: Any, name: str = ..., pass_control: bool = ...,
                 on_result: Callable[[Any], None] | None = ..., on_error: Callable[[str, str], None] | None = ...,
                 on_progress: Callable[[int, int], None] | None = ..., on_cancelled: Callable[[], None] | None = ...,
                 on_finished: Callable[[], None] | None = ..., needs_torch: bool = ..., **kwargs: Any) -> Job: ...


class ProjectEdit:
    """An undoable edit of the project: parts of it swapped between two snapshots (deep copies).

    Parts: ``model``, ``surgery``, ``train``, ``augment`` (whole sections), ``image_size`` and
    ``user_set`` (fields of ``train``). With ``applied`` the change is already made (and announced)
    when the edit is recorded, so the first ``redo`` does nothing. Edits with the same ``merge_key``
    made one after the other, each within ``MERGE_WINDOW_S`` of the last, become one undo step
    (``merge``: a slider dragged across values; a drag made later is a step of its own).

    ``user_set`` (the fields the user chose, which strategy Auto leaves alone) is applied as a
    difference: undo takes back only the names this edit added or removed, so choices made since on
    pages whose edits are not on the undo stack (the Train page) survive it.
    """

    MERGE_WINDOW_S = 1.0

    SECTION = {"model": "model", "surgery": "surgery", "train": "train", "augment": "augment",
               "image_size": "train", "user_set": "train"}

    def __init__(self, text: str, before: dict[str, Any], after: dict[str, Any], *, applied: bool = False,
                 merge_key: str | None = None):
        unknown = (set(before) | set(after)) - set(self.SECTION)
        if unknown:
            raise ValueError(f"unknown project parts {sorted(unknown)}")
        self.text = text
        self.before = copy.deepcopy(before)
        self.after = copy.deepcopy(after)
        self._skip_redo = applied
        self.merge_key = merge_key
        self._last = time.monotonic()

    @staticmethod
    def snapshot(project: Project, *parts: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for part in parts:
            if part in ("image_size", "user_set"):
                out[part] = copy.deepcopy(getattr(project.train, part))
            else:
                out[part] = copy.deepcopy(getattr(project, part))
        return out

    def merge(self, newer: ProjectEdit) -> bool:
        """Take in ``newer``, made right after this edit, when both have this edit's ``merge_key``."""
        if (self.merge_key is None or newer.merge_key != self.merge_key
                or newer._last - self._last > self.MERGE_WINDOW_S):
            return False
        self.after = copy.deepcopy(newer.after)
        self._last = newer._last
        return True

    def is_empty(self) -> bool:
        """Back where it started (a slider dragged away and back): nothing to undo."""
        return self.before == self.after

    def redo(self, host: Host) -> None:
        if self._skip_redo:
            self._skip_redo = False
            return
        self._apply(host, self.after, self.before)

    def undo(self, host: Host) -> None:
        self._apply(host, self.before, self.after)

    def _apply(self, host: Host, snap: dict[str, Any], other: dict[str, Any]) -> None:
        project = host.project
        sections: list[str] = []
        for part, value in snap.items():
            value = copy.deepcopy(value)
            if part == "user_set":
                gone = set(other.get(part, [])) - set(value)
                current = [name for name in project.train.user_set if name not in gone]
                project.train.user_set = current + [name for name in value if name not in current]
            elif part == "image_size":
                project.train.image_size = value
            else:
                setattr(project, part, value)
            if self.SECTION[part] not in sections:
                sections.append(self.SECTION[part])
        for section in sections:
            host.mark_changed(section)


class Host(Protocol):
    """The open project and the app's shared state, as a page model sees it (``ui.state.AppState``;
    ``ui.models.session.Session`` without Qt). Its signals are ``Event``-like (``connect``/``emit``)."""

    project: Project
    path: Path | None
    scan: Any
    modified: bool
    training_active: bool
    runs_being_deleted: frozenset[str]  # run folders (``core.runs.norm_path``) the Runs page is deleting
    projectReplaced: Any
    projectChanged: Any
    pathChanged: Any
    scanChanged: Any
    trainingPhaseChanged: Any
    trainingActiveChanged: Any
    navigateRequested: Any
    runSelected: Any  # (run_dir) the Train page's newest finished run, which other pages follow
    evaluateRequested: Any  # (run_dir) show this run on the Evaluate page

    def mark_changed(self, section: str) -> None: ...
    def set_view_state(self, **values: Any) -> bool: ...
    def select_run(self, run_dir: str) -> None: ...
    def request_evaluation(self, run_dir: str) -> None: ...
    def set_scan(self, report: Any) -> None: ...
    def set_training_active(self, active: bool) -> None: ...
    def status(self, text: str, timeout_ms: int = 5000) -> None: ...
    def push_edit(self, edit: ProjectEdit) -> None: ...


class OwnWrites:
    """Announces project sections a model changed itself; while it does, ``active`` is true, so the
    model's own ``projectChanged`` handler can tell its writes from other pages' edits."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.active = False

    def write(self, *sections: str) -> None:
        outer = self.active  # a write inside a write stays active until the outer one ends
        self.active = True
        try:
            for section in sections:
                self.host.mark_changed(section)
        finally:
            self.active = outer
