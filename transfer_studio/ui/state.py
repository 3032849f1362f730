"""The app's shared state: the open project and what the pages have learnt about it.

Pages never talk to each other directly: they read and change ``AppState`` and listen to its signals.
The project (``config.Project``) is the source of truth; networks are rebuilt from it off the GUI
thread by whichever page needs one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from transfer_studio.config import Project
from transfer_studio.ui.models.base import ProjectEdit
from transfer_studio.ui.models.session import SECTIONS, HostLogic

__all__ = ["SECTIONS", "AppState"]


class AppState(QObject, HostLogic):
    """The open project, its path and undo stack, and the Qt signals the pages listen to; the
    behaviour it shares with the Qt-free ``Session`` is ``HostLogic``'s."""

    projectReplaced = Signal()  # new / open: every page reloads from the project
    projectChanged = Signal(str)  # one section changed (see SECTIONS)
    modifiedChanged = Signal(bool)
    pathChanged = Signal(str)
    scanChanged = Signal(object)  # core.dataset.ScanReport | None
    statusMessage = Signal(str, int)  # text, timeout ms (0 = until replaced)
    navigateRequested = Signal(str)  # page key ("model", "data", ...)
    # Training changed what is trainable mid-run (training.events.PhaseChanged): the Model page's
    # graph recolours to follow.
    trainingPhaseChanged = Signal(object)
    # A training run started or ended (the Train page): pages that edit its settings lock them.
    trainingActiveChanged = Signal(bool)
    # The Train page's newest finished run (project.ui.selected_run): Evaluate, Try and Export follow it.
    runSelected = Signal(str)
    # Show this run on the Evaluate page (the Runs page asks; project.ui.evaluate_run remembers it).
    evaluateRequested = Signal(str)

    def __init__(self, project: Project | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.project: Project = project or Project()
        self.path: Path | None = None
        self.modified = False
        self.scan: Any = None  # core.dataset.ScanReport of project.data.root, once scanned
        self.training_active = False
        self._selected_run_seen = self.project.ui.selected_run
        self.undo_stack = QUndoStack(self)
        self.undo_stack.cleanChanged.connect(self._on_undo_clean)

    # -- project lifecycle ---------------------------------------------------------------------
    def new_project(self, project: Project | None = None, path: Path | None = None) -> None:
        self.project = project or Project()
        self.path = Path(path) if path else None
        self.scan = None
        self._selected_run_seen = self.project.ui.selected_run
        self.undo_stack.clear()
        self._set_modified(False)
        self.pathChanged.emit(str(self.path or ""))
        self.projectReplaced.emit()
        self.scanChanged.emit(None)

    def open_project(self, path: str | Path) -> None:
        """Load a project file; raises UserError (corrupt, newer version) and changes nothing then."""
        project = Project.load(path)
        self.new_project(project, Path(path))

    def save(self, path: str | Path | None = None) -> Path:
        target = Path(path) if path else self.path
        if target is None:
            raise ValueError("no path to save to")
        self.project.save(target)
        self.path = target
        self.undo_stack.setClean()
        self._set_modified(False)
        self.pathChanged.emit(str(target))
        return target

    # -- changes -------------------------------------------------------------------------------
    def push_edit(self, edit: ProjectEdit) -> None:
        """Put a page model's undoable edit on the undo stack (Edit > Undo); it is made now unless it
        was ``applied`` already."""
        self.undo_stack.push(_EditCommand(self, edit))

    def _on_undo_clean(self, clean: bool) -> None:
        if not clean:
            self._set_modified(True)


class _EditCommand(QUndoCommand):
    """A ``ProjectEdit`` on the Qt undo stack."""

    def __init__(self, state: AppState, edit: ProjectEdit):
        super().__init__(edit.text)
        self._state, self._edit = state, edit

    def id(self) -> int:  # Qt offers a pushed command to the previous one (mergeWith) when their ids match
        return 1 if self._edit.merge_key else -1

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt override
        if not (isinstance(other, _EditCommand) and self._edit.merge(other._edit)):
            return False
        self.setObsolete(self._edit.is_empty())  # dragged back to where it started: no undo step
        return True

    def redo(self) -> None:
        self._edit.redo(self._state)

    def undo(self) -> None:
        self._edit.undo(self._state)
