"""Runs the app was training when it was killed: a small journal, and which of its runs can resume.

The GUI records each run it starts (``RunJournal.add``) with the project it belongs to. After a
crash, a SIGKILL or a power cut, the next start of the app asks ``interrupted()``: a recorded run
whose folder is not locked by a live process (``checkpoint.is_locked``), whose run.json still
says "running" (a run that ended, however it ended, says otherwise) and which has a checkpoint
can continue exactly where its last completed epoch left off. Qt-free and torch-free (it runs
before the window shows); the dialog lives in ``ui/recovery.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from transfer_studio import config
from transfer_studio.core import run_folder as ckpt

JOURNAL = "active_runs.json"


@dataclass(frozen=True)
class InterruptedRun:
    run_dir: str
    project_path: str | None  # the project file the run belongs to (None: the project was never saved)
    model: str
    epochs_done: int  # completed epochs the run folder records (its checkpoint may be one further)
    epochs_planned: int
    started: str


def _norm(path: str | os.PathLike[str]) -> str:
    return os.path.normcase(os.path.abspath(os.fspath(path)))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


class RunJournal:
    """The runs the app has started and not yet seen end, in one JSON file (written atomically)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def entries(self) -> list[dict[str, Any]]:
        data = _read_json(self.path)
        runs = data.get("runs") if isinstance(data, dict) else None
        if not isinstance(runs, list):
            return []  # missing or damaged: nothing to offer, never an error at start-up
        return [r for r in runs if isinstance(r, dict) and isinstance(r.get("run_dir"), str)
                and (r.get("project") is None or isinstance(r.get("project"), str))]

    def _write(self, runs: list[dict[str, Any]]) -> None:
        # A read-only data folder: the app works, only crash recovery does not.
        with contextlib.suppress(OSError):
            config.atomic_write_text(self.path, json.dumps({"runs": runs}, indent=2) + "\n")

    def add(self, run_dir: str | os.PathLike[str], project_path: str | os.PathLike[str] | None) -> None:
        key = _norm(run_dir)
        runs = [r for r in self.entries() if _norm(r["run_dir"]) != key]
        runs.append({"run_dir": os.fspath(run_dir), "project": os.fspath(project_path) if project_path else None,
                     "started": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        self._write(runs)

    def remove(self, run_dir: str | os.PathLike[str]) -> None:
        key = _norm(run_dir)
        runs = self.entries()
        keep = [r for r in runs if _norm(r["run_dir"]) != key]
        if len(keep) != len(runs):
            self._write(keep)

    def has(self, run_dir: str | os.PathLike[str]) -> bool:
        key = _norm(run_dir)
        return any(_norm(r["run_dir"]) == key for r in self.entries())

    def interrupted(self) -> list[InterruptedRun]:
        """Recorded runs that were killed while training and can resume, newest first. Entries of
        runs that ended (or whose folder is gone) are dropped from the journal; runs a live process
        is training are kept and not offered."""
        found: list[InterruptedRun] = []
        keep: list[dict[str, Any]] = []
        entries = self.entries()
        for entry in entries:
            run = Path(entry["run_dir"])
            if ckpt.is_locked(run):
                keep.append(entry)  # still training (this app, or another instance)
                continue
            info = _read_json(run / ckpt.RUN)
            if not isinstance(info, dict) or info.get("status") != "running" or not ckpt.has_checkpoint(run):
                continue  # it ended, never started, or has nothing to resume from
            snapshot = _read_json(run / ckpt.PROJECT)
            train = snapshot.get("train", {}) if isinstance(snapshot, dict) else {}
            history = _read_json(run / ckpt.HISTORY)
            done = max(_int(info.get("epochs_completed")), len(history) if isinstance(history, list) else 0)
            keep.append(entry)
            found.append(InterruptedRun(
                run_dir=entry["run_dir"], project_path=entry.get("project"),
                model=str(info.get("model") or ""), epochs_done=done,
                epochs_planned=_int(info.get("epochs_planned")) or _int(train.get("epochs")),
                started=str(entry.get("started", ""))))
        if len(keep) != len(entries):
            self._write(keep)
        return sorted(found, key=lambda r: r.started, reverse=True)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
