"""A training run's folder: its file names, the lock held while a process trains it, and checks that
need no torch (the GUI looks at run folders before torch has loaded).

    project.json          the run's project snapshot (split included)
    checkpoint_last.pt    the resumable state of the last completed epoch (sealed: see
                          training.checkpoint), checkpoint_prev.pt the one before it
    best.safetensors      the kept weights; frozen.safetensors weights no phase trains
    history.json, run.json  per-epoch metrics and the run's summary ("status": running while it trains)
    .run.lock             locked (an OS lock) by the process training the run

An exported bundle's folder (``core.export``):

    model.json            what it takes to rebuild and feed the network (``BUNDLE_META``)
    model.safetensors     the weights; model.onnx, model.pt2 on request (``BUNDLE_FILES``)

The one place these names are spelled: the CLI, the engine, the exporter and the app's pages use
the constants and readers below (``source_kind``, ``weights_path``, ``read_history``,
``read_summary``), which need neither torch nor Qt.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transfer_studio import config
from transfer_studio.errors import UserError

CHECKPOINT = "checkpoint_last.pt"
PREVIOUS = "checkpoint_prev.pt"  # the checkpoint before the latest: used when the latest is damaged
DAMAGED_SUFFIX = ".damaged"  # a damaged checkpoint is renamed to this, never deleted
BEST = "best.safetensors"
HISTORY = "history.json"
RUN = "run.json"
PROJECT = "project.json"
FROZEN = "frozen.safetensors"
LOCK = ".run.lock"
BUNDLE_META = "model.json"
BUNDLE_FILES = {"safetensors": "model.safetensors", "onnx": "model.onnx", "pt2": "model.pt2"}
BUNDLE_WEIGHTS = BUNDLE_FILES["safetensors"]


def has_checkpoint(run_dir: Path) -> bool:
    """True when the run folder holds a checkpoint to resume from (the latest or the previous)."""
    run_dir = Path(run_dir)
    return (run_dir / CHECKPOINT).is_file() or (run_dir / PREVIOUS).is_file()


# -- one process at a time per run folder -----------------------------------------------------------
class RunLocked(UserError):
    """Another process (or another thread of this one) is training this run folder."""


_LOCKED: set[str] = set()  # run folders locked by this process (POSIX locks are per process)
_LOCKED_GUARD = threading.Lock()


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock while training it; RunLocked if someone else holds it.

    An OS lock on ``.run.lock``: the kernel releases it when the process dies, however it dies,
    so a held lock means a live run, and a free one on a run whose run.json says "running" means
    an interrupted one. POSIX record locks are not inherited by forked DataLoader workers, so a
    killed run's orphaned workers do not keep it locked. Stale temp files of a killed write are
    removed once the lock is held (no one else writes the folder then).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = os.path.normcase(str(run_dir.resolve()))
    with _LOCKED_GUARD:
        if key in _LOCKED:
            raise RunLocked(f"the run in {run_dir} is already being trained by this app")
        _LOCKED.add(key)
    fd = None
    try:
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        if not _try_lock(fd):
            pid = _read_pid(fd)
            who = f" (process {pid})" if pid else ""
            raise RunLocked(f"the run in {run_dir} is being trained by another process{who}: wait for it "
                            "to finish or stop it first")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        remove_stale_temp_files(run_dir)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock
        with _LOCKED_GUARD:
            _LOCKED.discard(key)


def is_locked(run_dir: Path) -> bool:
    """True while a live process (this one included) trains the run in ``run_dir``."""
    run_dir = Path(run_dir)
    with _LOCKED_GUARD:
        if os.path.normcase(str(run_dir.resolve())) in _LOCKED:
            return True
    try:
        fd = os.open(run_dir / LOCK, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False  # no lock file: never trained by a version that locks, or not a run
    try:
        return not _try_lock(fd)
    finally:
        os.close(fd)  # closing releases a lock taken just now


def _try_lock(fd: int) -> bool:
    if os.name == "nt":  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return int(os.read(fd, 32).decode("ascii").strip() or 0) or None
    except (OSError, ValueError):
        return None


def remove_stale_temp_files(run_dir: Path) -> list[str]:
    """Delete the temp files a killed write left in a run folder (``.NAME.XXXXXXXX.tmp``)."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(run_dir):
            if config.is_temp_name(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(entry.name)
    return removed


def is_run_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder a training run wrote (its project.json plus run.json or a checkpoint), and
    nothing else: what the app may offer to delete as "a run's files". A project file edited to list
    the user's home folder as a run must never make it a candidate."""
    folder = Path(path)
    try:
        if folder.is_symlink() or not folder.is_dir() or not (folder / PROJECT).is_file():
            return False
        return (folder / RUN).is_file() or has_checkpoint(folder) or (folder / LOCK).is_file()
    except OSError:
        return False


# -- run and bundle folders, read without torch ------------------------------------------------------
def source_kind(path: str | os.PathLike[str]) -> str:
    """"bundle" (has model.json) or "run" (has project.json); UserError for anything else."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"not found: {path}")
    if not path.is_dir():
        raise UserError(f"{path} is a file: give a training run folder or an exported bundle folder")
    if (path / BUNDLE_META).is_file():
        return "bundle"
    if (path / PROJECT).is_file():
        return "run"
    raise UserError(f"{path} is neither a training run (no {PROJECT}) nor an exported bundle "
                    f"(no {BUNDLE_META})")


def bundle_exists(out_dir: str | os.PathLike[str]) -> bool:
    """True when out_dir already holds a bundle (or any of its files)."""
    out_dir = Path(out_dir)
    return any((out_dir / name).exists() for name in (BUNDLE_META, *BUNDLE_FILES.values()))


def weights_path(path: str | os.PathLike[str], kind: str | None = None) -> Path:
    """The weights file a run folder (best.safetensors) or a bundle (model.safetensors) holds."""
    path = Path(path)
    kind = kind or source_kind(path)
    return path / (BUNDLE_WEIGHTS if kind == "bundle" else BEST)


def weights_stamp(path: str | os.PathLike[str]) -> float:
    """Modification time of the weights a run or bundle holds (a resumed run changes them); 0 if none."""
    for name in (BEST, BUNDLE_WEIGHTS):
        try:
            return (Path(path) / name).stat().st_mtime
        except OSError:
            continue
    return 0.0


def read_json(path: str | os.PathLike[str]) -> Any:
    """A small JSON file of a run or bundle, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def read_history(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """history.json of a run: one dict per epoch (epoch, train/val loss and accuracy, lr, seconds),
    the epochs with a number only; [] when there is none yet."""
    data = read_json(Path(run_dir) / HISTORY)
    rows = data.get("history") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        return []
    return [h for h in rows if isinstance(h, dict) and isinstance(h.get("epoch"), (int, float))
            and not isinstance(h.get("epoch"), bool)]


def read_summary(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """run.json of a run (its RunResult: status, epochs, best epoch, ...), or None."""
    data = read_json(Path(run_dir) / RUN)
    return data if isinstance(data, dict) else None
