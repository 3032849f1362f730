"""The host a page model works on: the open project and what the pages know about it.

``HostLogic`` is the behaviour the app's ``AppState`` (a QObject with Qt signals and a QUndoStack)
and ``Session`` (plain ``Event``s and an undo list, for models without Qt: tests, scripts) share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transfer_studio.config import Project
from transfer_studio.ui.models.base import Event, ProjectEdit

# Sections of the project a change can touch (the argument of projectChanged).
SECTIONS = ("name", "model", "surgery", "data", "augment", "train", "runs", "ui")


class HostLogic:
    """Project changes, view state, the scan and the training flag, announced through the host's
    signals (``projectChanged``, ``scanChanged``, ...), which the class using this provides."""

    project: Project
    path: Path | None
    modified: bool
    scan: Any
    training_active: bool
    _selected_run_seen: str | None = None  # the last selected_run announced (runSelected)
    runs_being_deleted: frozenset[str] = frozenset()  # run folders (norm_path) the Runs page is deleting

    def mark_changed(self, section: str) -> None:
        """Call after changing ``self.project`` in place."""
        if section not in SECTIONS:
            raise ValueError(f"unknown project section {section!r}")
        self._set_modified(True)
        self.projectChanged.emit(section)  # type: ignore[attr-defined]
        if section == "ui":
            self._announce_selected_run()

    def set_view_state(self, **values: Any) -> bool:
        """Remember page view state in ``project.ui`` (images on the Try page, top-k, ...; the names
        are ``config.UiState``'s fields).

        View state is saved with the project but is not an edit: it does not mark the project
        modified (looking at pictures must not lead to an unsaved-changes prompt) and emits no
        ``projectChanged``. Returns whether anything changed.
        """
        ui = self.project.ui
        changed = False
        for key, value in values.items():
            if getattr(ui, key) != value:  # AttributeError: not a UiState field
                ui[key] = value  # type-checked
                changed = True
        return changed

    def select_run(self, run_dir: str) -> None:
        """A run the Train page finished becomes the one the Evaluate, Try and Export pages follow
        (``runSelected``) unless the user chose another there."""
        self.project.ui.selected_run = run_dir
        self.mark_changed("ui")

    def request_evaluation(self, run_dir: str) -> None:
        """Show ``run_dir`` on the Evaluate page (the Runs page asks): remembered as that page's run
        (a page made later opens with it) and announced (``evaluateRequested``)."""
        self.project.ui.evaluate_run = run_dir
        self.mark_changed("ui")
        self.evaluateRequested.emit(run_dir)  # type: ignore[attr-defined]

    def _announce_selected_run(self) -> None:
        """``runSelected`` when ``project.ui.selected_run`` changed since last announced (by
        ``select_run``, an undo, or code that still writes ``ui["selected_run"]``)."""
        selected = self.project.ui.selected_run
        if selected != self._selected_run_seen:
            self._selected_run_seen = selected
            if selected:
                self.runSelected.emit(selected)  # type: ignore[attr-defined]

    def set_training_active(self, active: bool) -> None:
        """The Train page says a run is starting or running (True) or has ended (False)."""
        if active != self.training_active:
            self.training_active = active
            self.trainingActiveChanged.emit(active)  # type: ignore[attr-defined]

    def set_scan(self, report: Any) -> None:
        self.scan = report
        self.scanChanged.emit(report)  # type: ignore[attr-defined]

    def status(self, text: str, timeout_ms: int = 5000) -> None:
        self.statusMessage.emit(text, timeout_ms)  # type: ignore[attr-defined]

    @property
    def title(self) -> str:
        return self.project.name or (self.path.stem if self.path else "Untitled")

    def _set_modified(self, value: bool) -> None:
        if value != self.modified:
            self.modified = value
            self.modifiedChanged.emit(value)  # type: ignore[attr-defined]


class Session(HostLogic):
    """A host without Qt: the project, plain events and an undo history."""

    def __init__(self, project: Project | None = None, path: Path | None = None):
        self.project = project or Project()
        self.path = Path(path) if path else None
        self.modified = False
        self.scan: Any = None
        self.training_active = False
        self.done: list[ProjectEdit] = []
        self.undone: list[ProjectEdit] = []
        self._selected_run_seen = self.project.ui.selected_run
        for name in ("projectReplaced", "projectChanged", "modifiedChanged", "pathChanged", "scanChanged",
                     "statusMessage", "navigateRequested", "trainingPhaseChanged", "trainingActiveChanged",
                     "runSelected", "evaluateRequested"):
            setattr(self, name, Event())

    def new_project(self, project: Project | None = None, path: Path | None = None) -> None:
        self.project = project or Project()
        self.path = Path(path) if path else None
        self.scan = None
        self._selected_run_seen = self.project.ui.selected_run
        self.done.clear()
        self.undone.clear()
        self._set_modified(False)
        self.pathChanged.emit(str(self.path or ""))
        self.projectReplaced.emit()
        self.scanChanged.emit(None)

    def push_edit(self, edit: ProjectEdit) -> None:
        """As the Qt undo stack does: redo, then merge into the last edit where it may."""
        edit.redo(self)
        self.undone.clear()
        if self.done and self.done[-1].merge(edit):
            if self.done[-1].is_empty():
                self.done.pop()
            return
        self.done.append(edit)

    def undo(self) -> None:
        edit = self.done.pop()
        edit.undo(self)
        self.undone.append(edit)

    def redo(self) -> None:
        edit = self.undone.pop()
        edit.redo(self)
        self.done.append(edit)
