"""The project file in the app, without Qt: new, open, save, save as, the sample project, and the
questions asked before unsaved edits would be lost or running work stopped.

``ProjectFiles`` is the main window's collaborator for the File menu, the Welcome page's buttons, crash
recovery and closing the window. It works on the host (``AppState``: ``new_project``, ``open_project``,
``save``), remembers recent projects and folders in the settings it is given (``ui.settings.Settings``),
asks the user through ``Dialogs`` (``ui.window_files.FileDialogs`` in the app; plain answers in tests),
shows the Model page after a project opens (``host.navigateRequested``) and prepares the sample project
with the job runner. What the window shows goes out as events: ``message(text, level, details,
action_text, action)`` and ``messageCleared()`` (its banner), ``busyStarted(text, job)`` and
``busyStopped()`` (its busy bar), ``opened()`` (a project file was opened: the window checks that its
dataset folder is still there).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from transfer_studio.config import PROJECT_SUFFIX, Project
from transfer_studio.errors import UserError
from transfer_studio.ui.models.base import Event, Host, Job, JobRunner

UNSAVED_TITLE = "Unsaved changes"
OPEN_FILTER = f"Transfer Studio projects (*{PROJECT_SUFFIX});;JSON files (*.json);;All files (*)"
SAVE_FILTER = f"Transfer Studio projects (*{PROJECT_SUFFIX})"
SAMPLE_WHAT = "handwritten digits with the bundled EfficientNet-Lite0"


class Dialogs(Protocol):
    """What the flow asks the user (message boxes and file dialogs in the app)."""

    def ask_unsaved(self, text: str) -> str: ...  # "save" | "discard" | "cancel"
    def ask_open_path(self, start: str) -> str: ...  # "" when cancelled
    def ask_save_path(self, start: str) -> str: ...  # "" when cancelled
    def confirm_overwrite(self, path: str) -> bool: ...
    def confirm_reset_sample(self, text: str) -> bool: ...
    def confirm_stop_work(self, text: str) -> bool: ...


class Remembered(Protocol):
    """The recent projects and last folders (``ui.settings.Settings``)."""

    def add_recent_project(self, path: str | os.PathLike[str]) -> None: ...
    def remove_recent_project(self, path: str | os.PathLike[str]) -> None: ...
    def last_folder(self, kind: str) -> str: ...


class FileHost(Host, Protocol):
    """The host with the project file's life cycle (``AppState``)."""

    title: str

    def new_project(self, project: Project | None = None, path: Path | None = None) -> None: ...
    def open_project(self, path: str | Path) -> None: ...
    def save(self, path: str | Path | None = None) -> Path: ...


# -- decisions and texts ----------------------------------------------------------------------------
def unsaved_text(title: str, action: str) -> str:
    return f"The project “{title}” has unsaved changes.\nSave them before {action}?"


def safe_name(name: str) -> str:
    """A file name made of the project's name (other characters become ``_``)."""
    keep = "".join(ch if ch.isalnum() or ch in "-_ " else "_" for ch in name).strip()
    return keep or "project"


def save_start(path: Path | None, last_folder: str, title: str) -> Path:
    """Where "Save As" starts: the project's file, else a file named after it in the last folder."""
    return path or Path(last_folder) / f"{safe_name(title)}{PROJECT_SUFFIX}"


def save_target(chosen: str | os.PathLike[str]) -> Path:
    """The file to write for the name the user typed: a project suffix is added unless it has one."""
    target = Path(chosen)
    if target.suffix.lower() not in (PROJECT_SUFFIX, ".json"):
        target = target.with_name(target.name + PROJECT_SUFFIX)
    return target


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def recent_entries(paths: list[str]) -> list[tuple[str, str]]:
    """(menu text, path) of each recent project: the first nine numbered (Alt+1…9), name then folder."""
    return [(f"&{i + 1}  {Path(p).name}  —  {Path(p).parent}" if i < 9 else p, p) for i, p in enumerate(paths)]


def stop_work_text(busy_titles: list[str]) -> str:
    return (f"{', '.join(busy_titles)} still working. Stop and quit? (A training run keeps its last "
            "completed epoch and can be resumed.)")


def reset_sample_text(runs_folder: Path) -> str:
    return ("Reset the sample project to its defaults?\n\nIts settings, model changes and list of runs are "
            "replaced by the original ones, and its images are written again. Run folders stay on disk "
            f"({runs_folder}).")


def make_sample(dest: Path, reset: bool, progress: Any = None, cancel: Any = None) -> tuple[Project, str]:
    """The sample project as the user saved it, created first when there is none, or back to its
    defaults with ``reset`` (worker thread: it writes the images)."""
    from transfer_studio.sample import open_sample_project, reset_sample_project

    project, path = reset_sample_project(dest) if reset else open_sample_project(dest)
    return project, str(path)


# -- the flow ---------------------------------------------------------------------------------------
class ProjectFiles:
    """See the module docstring. Every action returns whether it went through (False: the user
    cancelled, or it failed and said why)."""

    EVENTS = ("message", "messageCleared", "busyStarted", "busyStopped", "opened")

    def __init__(self, host: FileHost, settings: Remembered, jobs: JobRunner, dialogs: Dialogs, *,
                 sample_dir: Callable[[], Path]):
        self.host, self.settings, self.jobs, self.dialogs = host, settings, jobs, dialogs
        self.sample_dir = sample_dir
        self.sample_job: Job | None = None
        # Why the open project may not be replaced now (None: it may); the window asks its pages: runs
        # being deleted would be removed from a project already saved or closed.
        self.holds: Callable[[], str | None] = lambda: None
        self._edited_meanwhile = False  # the project changed while the sample was being prepared
        for name in self.EVENTS:
            setattr(self, name, Event())
        host.projectChanged.connect(self._on_project_changed)

    def _on_project_changed(self, _section: str) -> None:
        if self.sample_busy():
            self._edited_meanwhile = True

    def maybe_save(self, action: str = "continuing") -> bool:
        """True when it is fine to discard the open project (saved, discarded, or unchanged)."""
        if not self.host.modified:
            return True
        answer = self.dialogs.ask_unsaved(unsaved_text(self.host.title, action))
        if answer == "save":
            return self.save()
        return answer == "discard"

    def _held(self) -> bool:
        reason = self.holds()
        if reason:
            self.message.emit(reason, "warning", None, None, None)
        return bool(reason)

    def new_project(self) -> bool:
        if self._held() or not self.maybe_save("starting a new project"):
            return False
        self.messageCleared.emit()
        self.host.new_project(Project())
        self.host.navigateRequested.emit("model")
        self.host.status("New project: choose a model to start.")
        return True

    def open_dialog(self) -> bool:
        if self._held() or not self.maybe_save("opening another project"):
            return False
        path = self.dialogs.ask_open_path(self.settings.last_folder("project"))
        return bool(path) and self.open(path, ask=False)

    def open(self, path: str | os.PathLike[str], ask: bool = True) -> bool:
        """Open a project file (``ask``: the unsaved-changes question first). A file that is gone
        leaves the recent list."""
        if self._held() or (ask and not self.maybe_save("opening another project")):
            return False
        try:
            self.host.open_project(path)
        except UserError as exc:
            self.message.emit(str(exc), "error", None, None, None)
            if not Path(path).exists():
                self.settings.remove_recent_project(path)
            return False
        except OSError as exc:
            self.message.emit(f"cannot read {path}: {exc.strerror or exc}", "error", None, None, None)
            return False
        self.messageCleared.emit()
        self.settings.add_recent_project(path)
        self.host.navigateRequested.emit("model")
        self.host.status(f"Opened {path}")
        self.opened.emit()
        return True

    def save(self) -> bool:
        if self.host.path is None:
            return self.save_as()
        return self._save_to(self.host.path)

    def save_as(self) -> bool:
        start = save_start(self.host.path, self.settings.last_folder("project"), self.host.title)
        chosen = self.dialogs.ask_save_path(str(start))
        if not chosen:
            return False
        target = save_target(chosen)
        # The dialog checked the name typed; the suffix added here can name another existing project.
        if target != Path(chosen) and target.exists() and not self.dialogs.confirm_overwrite(str(target)):
            return False
        if self.host.project.name in ("", "Untitled"):
            self.host.project.name = target.stem
        return self._save_to(target)

    def _save_to(self, path: Path) -> bool:
        try:
            self.host.save(path)
        except OSError as exc:
            self.message.emit(f"Could not save the project to {path}: {exc.strerror or exc}. Choose another "
                              "folder with File → Save As.", "error", None, None, None)
            return False
        self.settings.add_recent_project(path)
        self.host.status(f"Saved {path}", 4000)
        return True

    def may_close(self, busy_titles: list[str], settle: Callable[[], None] | None = None) -> bool:
        """Closing the window: stop the pages' work (asked when there is some), then the unsaved-changes
        question. ``settle``: called once the user agreed to stop, before that question, for work whose
        end changes the project (runs being deleted leave it when their folders are gone)."""
        if busy_titles and not self.dialogs.confirm_stop_work(stop_work_text(busy_titles)):
            return False
        if busy_titles and settle is not None:
            settle()
        return self.maybe_save("quitting")

    # -- the sample project ------------------------------------------------------------------------
    def open_sample(self) -> bool:
        """Open the digits sample on the Model page: as the user saved it, or created first.

        A saved sample is never rewritten here (``sample.open_sample_project``); going back to its
        defaults is ``reset_sample``, which asks first.
        """
        return self._sample(reset=False)

    def reset_sample(self) -> bool:
        """Put the sample project back to its defaults, after the user confirms; then open it."""
        from transfer_studio.sample import sample_project_path

        path = sample_project_path(self.sample_dir())
        is_open = self.host.path is not None and same_file(self.host.path, path)
        # The confirmation covers unsaved edits of the sample itself; another project's edits get the
        # usual question first.
        if not is_open and not self.maybe_save("resetting the sample project"):
            return False
        if not self.dialogs.confirm_reset_sample(reset_sample_text(path.parent / "runs")):
            return False
        return self._sample(reset=True)

    def sample_busy(self) -> bool:
        return self.sample_job is not None and self.sample_job.is_running()

    def _sample(self, *, reset: bool) -> bool:
        if self.sample_busy() or self._held():
            return False
        if not reset and not self.maybe_save("opening the sample project"):
            return False

        def done(result: tuple[Project, str]) -> None:
            project, path = result
            self.busyStopped.emit()
            # The window stayed usable while the images were written: edits made meanwhile get asked about.
            if self._edited_meanwhile and not self.maybe_save("opening the sample project"):
                return
            self.messageCleared.emit()
            self.host.new_project(project, Path(path))
            self.settings.add_recent_project(path)
            self.host.navigateRequested.emit("model")
            self.host.status(("Sample project reset to its defaults" if reset else "Sample project ready")
                             + f": {SAMPLE_WHAT}.")

        def failed(message: str, details: str) -> None:
            self.busyStopped.emit()
            self.message.emit(f"Could not {'reset' if reset else 'open'} the sample project: {message}", "error",
                              details or None, None if reset else "Reset the sample…",
                              None if reset else self.reset_sample)

        self._edited_meanwhile = False
        self.sample_job = job = self.jobs(make_sample, self.sample_dir(), reset, name="sample", on_result=done,
                                          on_error=failed, on_cancelled=self.busyStopped.emit)
        if job.is_running():  # (a synchronous runner has finished it)
            self.busyStarted.emit(("Resetting" if reset else "Preparing")
                                  + " the sample project (digits + EfficientNet-Lite0)…", job)
        return True
