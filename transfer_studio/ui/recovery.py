"""Crash recovery in the app: remember the runs it trains; after it was killed, offer to resume.

``RunRecovery`` follows the project's run records (a record turns "running" when the Train page
starts a run, and changes when the run ends) and keeps ``core.recovery.RunJournal`` in the
app's data folder up to date. When the window first shows, it asks the journal for runs that were
training when the app died and offers to resume the latest: Resume opens its project (or, for a
project that was never saved, the run's own snapshot), goes to the Train page and continues the
run from its checkpoint, exactly as the page's "Resume from checkpoint" does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QMessageBox, QWidget

from transfer_studio.core.recovery import JOURNAL, InterruptedRun, RunJournal

__all__ = ["JOURNAL", "RunRecovery", "ask_to_resume"]


def ask_to_resume(parent: QWidget, run: InterruptedRun) -> bool:
    """The question, as a dialog; True for Resume (tests replace this function)."""
    name = Path(run.run_dir).name
    progress = (f"{run.epochs_done} of {run.epochs_planned} epochs" if run.epochs_planned
                else f"{run.epochs_done} epoch(s)")
    box = QMessageBox(parent)
    box.setObjectName("recovery_dialog")
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Resume training?")
    box.setText(f"Transfer Studio closed while it was training {run.model or 'a model'} "
                f"(run “{name}”, {progress} done).")
    box.setInformativeText("Resume it from its last checkpoint? It continues exactly where it left off. "
                           "You can also resume it later from the Train page.")
    resume = box.addButton("Resume", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Not now", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(resume)
    box.exec()
    return box.clickedButton() is resume


def _same(a: Any, b: Any) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, TypeError, ValueError):
        return False


class RunRecovery(QObject):
    """Installed once by the main window (``window.state``, ``open_project``, ``page("train")``)."""

    def __init__(self, window: Any, journal_path: str | Path):
        super().__init__(window)
        self.window = window
        self.journal = RunJournal(journal_path)
        self.offered: list[InterruptedRun] = []
        # Bound methods of this QObject (a child of the window): Qt drops the connections with it.
        window.state.projectChanged.connect(self._on_project_changed)
        window.state.pathChanged.connect(self._on_path_changed)
        window.firstShown.connect(self._on_first_shown)

    # -- journal -----------------------------------------------------------------------------
    def _on_project_changed(self, section: str) -> None:
        if section == "runs":
            self._sync()

    def _on_path_changed(self, _path: str) -> None:
        self._sync()

    def _on_first_shown(self) -> None:
        QTimer.singleShot(0, self.offer)  # after the first paint: the window is there behind the question

    def _sync(self) -> None:
        state = self.window.state
        project_path = str(state.path) if state.path else None
        for rec in state.project.runs:
            if rec.status == "running":
                self.journal.add(rec.run_dir, project_path)
            elif self.journal.has(rec.run_dir):
                self.journal.remove(rec.run_dir)

    # -- after a crash -----------------------------------------------------------------------
    def offer(self) -> bool:
        """Ask about the latest interrupted run; True when it was resumed."""
        if getattr(self.window, "_closing", False):
            return False
        runs = self.journal.interrupted()
        self.offered = runs
        if not runs:
            return False
        run = runs[0]
        if not ask_to_resume(self.window, run):
            for r in runs:  # not asked again at the next start; the Train page still lists them
                self.journal.remove(r.run_dir)
            return False
        return self.resume(run)

    def resume(self, run: InterruptedRun) -> bool:
        from transfer_studio.core.runs import load_snapshot
        from transfer_studio.errors import UserError

        window = self.window
        state = window.state
        if run.project_path and Path(run.project_path).is_file():
            opened = state.path is not None and _same(state.path, run.project_path)
            if not opened and not window.open_project(run.project_path):
                return False
        else:  # the project was never saved: continue with the run's own snapshot
            try:
                snapshot = load_snapshot(run.run_dir)
            except UserError as exc:
                window.banner.show_message(f"Could not resume {run.run_dir}: {exc}", "error")
                return False
            if not window.maybe_save("resuming the interrupted run"):
                return False
            state.new_project(snapshot)
        window.show_page("train")
        window.page("train").resume_run(run.run_dir)
        return True
