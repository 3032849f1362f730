"""Choosing a training run or an exported bundle: the pages that use one (Evaluate, Try, Export) share
these (``RunCombo``, ``default_run``, ``browse_start``, ``run_label``); the Runs page's table uses
``run_label``'s date format too."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QWidget

from transfer_studio.config import Project, RunRecord
from transfer_studio.core.runs import norm_path


def browse_start(project_path: str | Path | None, current: str | None = None) -> str:
    """Where a "choose a run or bundle folder" dialog opens: beside the run chosen now, else the
    project's runs folder (where the Train page puts them), else the project's folder, else home."""
    from transfer_studio.ui.train_worker import runs_root

    candidates = [Path(current).parent] if current else []
    candidates.append(runs_root(project_path))
    if project_path:
        candidates.append(Path(project_path).parent)
    for folder in candidates:
        if folder.is_dir():
            return str(folder)
    return str(Path.home())


def format_created(created: str) -> str:
    """ISO timestamp (local, or UTC with an offset as the CLI writes) -> "2024-05-01 14:03" local."""
    if not created:
        return "–"
    try:
        dt = datetime.fromisoformat(created)
    except ValueError:
        return created
    if dt.tzinfo is not None:
        dt = dt.astimezone()  # the user's local time
    return dt.strftime("%Y-%m-%d %H:%M")


def run_label(rec: RunRecord) -> str:
    """One line naming a run: when, which model, how it trained, how well."""
    parts = [format_created(rec.created), rec.model or "?"]
    if rec.strategy:
        parts.append(rec.strategy)
    if rec.val_accuracy is not None:
        parts.append(f"val. {rec.val_accuracy:.1%}")
    if rec.status and rec.status != "finished":
        parts.append(rec.status)
    return " · ".join(parts)


def default_run(project: Project, key: str | None = None) -> str | None:
    """The run a page starts with: its own saved choice (``project.ui``'s field ``key``, e.g.
    ``"try_run"``), else the Train page's latest finished run (``ui.selected_run``), else the newest run
    of the project."""
    ui = project.ui
    for candidate in (getattr(ui, key) if key else None, ui.selected_run):
        if isinstance(candidate, str) and candidate:
            return candidate
    return project.runs[-1].run_dir if project.runs else None


class RunCombo(QComboBox):
    """The project's runs (newest first) plus any other run or bundle folder the user opened."""

    def __init__(self, parent: QWidget | None = None, *, object_name: str = "run_combo"):
        super().__init__(parent)
        self.setObjectName(object_name)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(34)

    def fill(self, project: Project, current: str | None, extra: Sequence[str] = ()) -> None:
        """Refill without emitting ``currentIndexChanged``; ``current`` is selected (added if new)."""
        blocked = self.blockSignals(True)
        try:
            self.clear()
            seen: set[str] = set()
            for rec in reversed(project.runs):
                key = norm_path(rec.run_dir)
                if key in seen:
                    continue
                seen.add(key)
                self.addItem(run_label(rec), rec.run_dir)
                self.setItemData(self.count() - 1, rec.run_dir, Qt.ItemDataRole.ToolTipRole)
            for path in [*extra, current]:
                if path and norm_path(path) not in seen:
                    seen.add(norm_path(path))
                    self.addItem(f"{Path(path).name}  —  {Path(path).parent}", path)
                    self.setItemData(self.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
            self.select_path(current)
        finally:
            self.blockSignals(blocked)

    def select_path(self, path: str | None) -> bool:
        if not path:
            return False
        key = norm_path(path)
        for i in range(self.count()):
            if norm_path(self.itemData(i)) == key:
                self.setCurrentIndex(i)
                return True
        return False

    def current_path(self) -> str | None:
        data = self.currentData()
        return str(data) if data else None
