"""Run records and resume rules, the same for the CLI and the app (torch-free, Qt-free).

- Where new runs go (``runs_root``) and what a new run's folder is called (``new_run_dir``).
- The project's record of a run (``config.RunRecord``): created with a UTC time stamp
  (``new_record``) and brought up to date from the engine's result (``update_record``).
- Resuming: the settings a resumed run may change (``RESUMABLE_OVERRIDES``), applied to the run's
  own project snapshot in one place (``apply_overrides``: the engine's resume calls it, the CLI's
  ``--epochs``/``--batch-size``/... and the app's "Resume from checkpoint" hand it their changes
  through ``resume_project``), and which runs can be resumed (``resumable_runs``).

The engine (``training.engine``) imports torch; this module does not, so the app can decide what
to offer before torch has loaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from transfer_studio.config import Project, RunRecord, TrainSpec
from transfer_studio.core import run_folder
from transfer_studio.errors import UserError

# Settings a resumed run may change; everything else comes from the run's own project.json.
RESUMABLE_OVERRIDES = ("epochs", "batch_size", "device", "num_workers", "allow_oom_retry",
                       "early_stopping_patience", "amp", "sync_batchnorm")
# Of those, what the app's Train page edits: a resumed run takes the ones changed since it started.
PAGE_SETTINGS = ("epochs", "batch_size", "device")
RESUMABLE_STATUSES = ("stopped", "failed", "running")  # "running" and not locked = interrupted


# -- where runs go -------------------------------------------------------------------------------
def runs_root(project_file: str | os.PathLike[str] | None, unsaved: str | os.PathLike[str]) -> Path:
    """Where new runs go: this machine's runs folder if one is set (Settings, ``TS_RUNS_DIR``), else
    ``runs/`` beside the project file, else ``unsaved`` (the CLI: ./runs; the app: its data folder)."""
    from transfer_studio.machine_settings import runs_root as machine_runs_root

    default = Path(project_file).resolve().parent / "runs" if project_file else Path(unsaved)
    return machine_runs_root(default)


def new_run_dir(root: str | os.PathLike[str], prefix: str = "", now: datetime | None = None) -> Path:
    """A fresh, not yet existing ``root/[prefix-]YYYYmmdd-HHMMSS[-N]`` (local time); the engine creates
    it. The CLI names its runs after the model (``prefix``), the app by time alone."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    stem = f"{prefix}-{stamp}" if prefix else stamp
    candidate, n = Path(root) / stem, 1
    while candidate.exists():
        n += 1
        candidate = Path(root) / f"{stem}-{n}"
    return candidate


# -- the project's records -----------------------------------------------------------------------
def now_stamp() -> str:
    """A record's time: UTC with its offset (shown in the viewer's local time by the app)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_record(run_dir: str | os.PathLike[str], project: Project, status: str = "running") -> RunRecord:
    return RunRecord(run_dir=os.fspath(run_dir), created=now_stamp(), model=project.model.name,
                     strategy=project.train.strategy, status=status)


def update_record(record: RunRecord, result: Any, *, status: str | None = None, duration_s: float = 0.0) -> None:
    """Bring the record up to date with the engine's ``RunResult`` (None when the run raised before
    it could return one). ``status`` overrides the result's; ``duration_s`` is this session's time,
    added to what the record had when the result reports none."""
    record.status = status or str(getattr(result, "status", "") or record.status)
    record.duration_s = float(getattr(result, "duration_s", 0.0) or 0.0) or (record.duration_s + duration_s)
    if result is None:
        return
    record.epochs_completed = int(result.epochs_completed)
    record.best_epoch = result.best_epoch
    record.val_accuracy = result.val_accuracy
    record.val_loss = result.val_loss
    record.model = str(getattr(result, "model", "") or record.model)
    record.strategy = str(result.strategy or record.strategy)


def record_of(result: Any) -> RunRecord:
    """A finished CLI run as the project's record."""
    record = RunRecord(run_dir=str(Path(result.run_dir).resolve()), created=now_stamp())
    update_record(record, result)
    return record


def same_dir(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return norm_path(a) == norm_path(b)


def norm_path(path: str | os.PathLike[str]) -> str:
    """An absolute, resolved path for comparing run folders recorded in different ways."""
    try:
        return str(Path(path).expanduser().resolve())
    except (OSError, RuntimeError):
        return os.fspath(path)


def find_record(project: Project, run_dir: str | os.PathLike[str]) -> RunRecord | None:
    key = norm_path(run_dir)
    return next((r for r in project.runs if norm_path(r.run_dir) == key), None)


# -- resuming ------------------------------------------------------------------------------------
def apply_overrides(snapshot: Project, overrides: Mapping[str, Any]) -> list[str]:
    """Apply a resume's changed settings to the run's snapshot; one note per change. Only
    ``RESUMABLE_OVERRIDES`` may change (a UserError names any other)."""
    unknown = [k for k in overrides if k not in RESUMABLE_OVERRIDES]
    if unknown:
        raise UserError(f"a resumed run cannot change {', '.join(unknown)}; only "
                        f"{', '.join(RESUMABLE_OVERRIDES)} can")
    notes = []
    for name, new in overrides.items():
        old = getattr(snapshot.train, name)
        if new != old:
            setattr(snapshot.train, name, new)
            notes.append(f"resume: {name} changed from {old} to {new}")
    return notes


def overrides_from(train: TrainSpec) -> dict[str, Any]:
    """A project's values of every resumable setting (the engine's resume compares them)."""
    return {name: getattr(train, name) for name in RESUMABLE_OVERRIDES}


def load_snapshot(run_dir: str | os.PathLike[str]) -> Project:
    """The run's own project (project.json); UserError when the folder is not a run."""
    path = Path(run_dir) / run_folder.PROJECT
    if not path.is_file():
        raise UserError(f"{run_dir} is not a training run folder (no {run_folder.PROJECT})")
    return Project.load(path)


def resume_project(run_dir: str | os.PathLike[str], overrides: Mapping[str, Any]) -> Project:
    """The project to hand ``fit(..., resume=True)``: the run's snapshot with ``overrides`` applied."""
    project = load_snapshot(run_dir)
    apply_overrides(project, overrides)
    return project


def launch_settings(train: TrainSpec) -> dict[str, Any]:
    """The Train page's resumable settings when a run starts (a later resume applies only changes)."""
    return {name: getattr(train, name) for name in PAGE_SETTINGS}


def changed_since_launch(train: TrainSpec, launched: Mapping[str, Any] | None) -> dict[str, Any]:
    """The page's settings the user changed since the run started: what a resume should apply."""
    if not isinstance(launched, Mapping):
        return {}
    return {k: getattr(train, k) for k in PAGE_SETTINGS if k in launched and getattr(train, k) != launched[k]}


@dataclass(frozen=True)
class ResumableRun:
    run_dir: str
    record: RunRecord | None  # None: found on disk, the project never recorded it


def resumable_runs(records: Iterable[RunRecord], root: Path | None, exclude: str | None = None
                   ) -> list[ResumableRun]:
    """Runs that can continue from a checkpoint, newest first: the project's stopped, failed or
    interrupted runs, then run folders under ``root`` the project does not know (the app was killed
    before the project was saved) unless their run.json says they finished; never ``exclude``."""
    records = list(records)
    out: list[ResumableRun] = []
    seen: set[str] = set()
    skip = norm_path(exclude) if exclude else None
    for rec in reversed(records):
        key = norm_path(rec.run_dir)
        if key in seen or key == skip or rec.status not in RESUMABLE_STATUSES \
                or not run_folder.has_checkpoint(Path(rec.run_dir)):
            continue
        seen.add(key)
        out.append(ResumableRun(rec.run_dir, rec))
    if root is not None and root.is_dir():
        known = {norm_path(r.run_dir) for r in records}
        for folder in sorted(root.iterdir(), reverse=True):
            key = norm_path(folder)
            if key in seen or key in known or key == skip or not run_folder.has_checkpoint(folder):
                continue
            summary = run_folder.read_summary(folder)
            if summary is not None and summary.get("status") == "finished":
                continue
            seen.add(key)
            out.append(ResumableRun(str(folder), None))
    return out


# -- runs written elsewhere ------------------------------------------------------------------------
def record_from_folder(run_dir: str | os.PathLike[str]) -> RunRecord:
    """The record of a run folder written elsewhere (a job on several GPUs or a cluster, the CLI,
    another project): model and strategy from the run's project snapshot, its progress from run.json
    (which a run rewrites every epoch). UserError for a folder that is no run."""
    folder = Path(run_dir).expanduser()
    if not run_folder.is_run_folder(folder):
        raise UserError(f"{folder} is not a training run folder: a run writes {run_folder.PROJECT} and "
                        f"{run_folder.RUN} (or a checkpoint) into it")
    snapshot = run_folder.read_json(folder / run_folder.PROJECT)
    snapshot = snapshot if isinstance(snapshot, dict) else {}
    model, train = snapshot.get("model"), snapshot.get("train")
    try:
        created = datetime.fromtimestamp((folder / run_folder.PROJECT).stat().st_mtime, timezone.utc)
    except OSError:
        created = datetime.now(timezone.utc)
    record = RunRecord(run_dir=norm_path(folder), created=created.isoformat(timespec="seconds"),
                       model=str(model.get("name", "")) if isinstance(model, dict) else "",
                       strategy=str(train.get("strategy", "")) if isinstance(train, dict) else "",
                       status="running")
    refresh_record(record)
    return record


def refresh_record(record: RunRecord) -> bool:
    """Bring a record up to date with its folder's run.json; True when anything changed."""
    summary = run_folder.read_summary(record.run_dir)
    if not summary:
        return False
    before = (record.status, record.epochs_completed, record.best_epoch, record.val_accuracy, record.val_loss,
              record.duration_s, record.model, record.strategy)

    def number(key: str) -> float | None:
        value = summary.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    record.status = str(summary.get("status") or record.status)
    record.epochs_completed = int(number("epochs_completed") or 0)
    best = number("best_epoch")
    record.best_epoch = int(best) if best is not None else None
    record.val_accuracy, record.val_loss = number("val_accuracy"), number("val_loss")
    record.duration_s = number("duration_s") or record.duration_s
    record.model = str(summary.get("model") or record.model)
    record.strategy = str(summary.get("strategy") or record.strategy)
    return before != (record.status, record.epochs_completed, record.best_epoch, record.val_accuracy,
                      record.val_loss, record.duration_s, record.model, record.strategy)
