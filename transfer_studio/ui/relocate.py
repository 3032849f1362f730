"""A project whose dataset folder moved: ask the user to locate it, check the choice, update the project.

Call ``relocate_data_root(state, window)`` right after a project was opened (the main window's open
code). When ``project.data.root`` no longer exists it asks whether to locate the folder; the folder the
user picks must hold the project's images (the saved split's files, or at least its class folders), or
the user is told what is missing and may pick again. Only ``project.data.root`` changes; the saved
split and class names stay valid because they are relative to the root.

The checks (``find_problem``) are plain Python: a few ``stat`` calls, no scan, no torch.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from transfer_studio.config import Project
from transfer_studio.ui.state import AppState

SAMPLE_FILES = 25  # saved-split files checked in a candidate folder


def missing_root(project: Project) -> str | None:
    """The project's data folder when it is set but gone; None when it is fine (or not set)."""
    root = project.data.root
    if root and not Path(root).expanduser().is_dir():
        return root
    return None


def find_problem(folder: str | Path, project: Project) -> str | None:
    """Why ``folder`` is not this project's dataset, or None when it looks right."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is not a folder."
    split = project.data.split or {}
    files = [rel for part in ("train", "val", "test") for rel in (split.get(part) or [])]
    if files:
        step = max(1, len(files) // SAMPLE_FILES)
        sample = files[::step][:SAMPLE_FILES]
        missing = [rel for rel in sample if not (folder / rel).is_file()]
        if len(missing) > len(sample) // 5:  # a few deleted files are the Data page's business
            return (f"{folder} does not hold this project's images: {len(missing)} of {len(sample)} checked "
                    f"files are missing (e.g. {missing[0]}).")
        return None
    classes = list(project.data.classes)
    if classes:
        bases = [folder] + [folder / part for part in ("train", "val", "test") if (folder / part).is_dir()]
        found = {c for c in classes for base in bases if (base / c).is_dir()}
        absent = [c for c in classes if c not in found]
        if absent:
            return (f"{folder} has no class folder for {', '.join(absent[:5])}"
                    f"{' …' if len(absent) > 5 else ''} (this project's classes: {', '.join(classes[:8])}"
                    f"{' …' if len(classes) > 8 else ''}).")
    return None


def suggest_folder(project: Project, project_path: str | Path | None) -> str:
    """Where the dialog starts: a folder of the old name beside the project file if it is there."""
    name = Path(project.data.root).name
    if project_path is not None:
        here = Path(project_path).resolve().parent
        for candidate in (here / name, here.parent / name):
            if name and candidate.is_dir():
                return str(candidate)
        return str(here)
    return str(Path.home())


def relocate_data_root(state: AppState, parent: QWidget | None = None) -> bool:
    """Ask to locate a moved dataset folder; True when ``project.data.root`` exists afterwards.

    Returns True at once when there is nothing to do. Declining leaves the project untouched (the
    Data page then says the folder is missing).
    """
    project = state.project
    old = missing_root(project)
    if old is None:
        return True
    B = QMessageBox.StandardButton
    answer = QMessageBox.question(
        parent, "Dataset folder not found",
        f"The images of “{state.title}” were in\n{old}\nwhich no longer exists (moved, renamed, or on a drive "
        "that is not connected).\n\nLocate the folder now?", B.Yes | B.No, B.Yes)
    if answer != B.Yes:
        state.status("The dataset folder is missing: locate it on the Data page to train or evaluate.", 8000)
        return False
    start = suggest_folder(project, state.path)
    while True:
        folder = QFileDialog.getExistingDirectory(parent, f"Locate the dataset folder (was {Path(old).name})", start)
        if not folder:
            return False
        problem = find_problem(folder, project)
        if problem is None:
            break
        again = QMessageBox.warning(parent, "Not this project's dataset", f"{problem}\n\nChoose another folder?",
                                    B.Retry | B.Cancel, B.Retry)
        if again != B.Retry:
            return False
        start = folder
    project.data.root = str(Path(folder).resolve())
    state.mark_changed("data")
    state.status(f"Dataset folder updated: {project.data.root}", 6000)
    return True
