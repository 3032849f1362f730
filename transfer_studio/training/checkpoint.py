"""Run-directory files: the resumable checkpoint, the best weights, RNG state as tensors.

``checkpoint_last.pt`` holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)`` (never unpickling code). Every file is written to a temp file and
then renamed: a full disk or a crash mid-write leaves the previous file intact.

Integrity: ``checkpoint_last.pt`` carries a SHA-256 of its own content in the zip archive's comment
(``seal``): still a plain ``torch.save`` file, yet a flipped bit or a cut-off tail is detected on load
(torch itself checks neither). When a new checkpoint replaces it, the one it replaced becomes
``checkpoint_prev.pt`` (a hard link: no copy); a damaged latest checkpoint is set aside and the
previous one is used, with a note saying so. ``run_lock`` (core.run_folder) keeps one process at a time writing a run
folder, and tells a live run from one whose process was killed.

Weights that no phase of the run ever trains (the frozen backbone of a head-only run) are written
once, to ``frozen.safetensors``; the per-epoch checkpoint holds the rest. A head-only epoch on cached
features takes milliseconds, and re-writing an unchanged backbone every epoch would cost far more.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import random
import shutil
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_save

from transfer_studio import config

# The run folder's file names, its lock and has_checkpoint live in core.run_folder (torch-free, so the
# GUI can look at run folders before torch is loaded); re-exported here for the engine.
from transfer_studio.core.run_folder import (  # noqa: F401
    BEST,
    CHECKPOINT,
    DAMAGED_SUFFIX,
    FROZEN,
    HISTORY,
    LOCK,
    PREVIOUS,
    PROJECT,
    RUN,
    RunLocked,
    has_checkpoint,
    is_locked,
    remove_stale_temp_files,
    run_lock,
)
from transfer_studio.errors import UserError

FORMAT = 1

log = logging.getLogger("transfer_studio.training")


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states as tensors and numbers."""
    py_version, py_internal, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python_version": int(py_version),
        "python": torch.tensor(py_internal, dtype=torch.int64),
        "python_gauss": py_gauss,
        "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()),
                     state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_bytes(state: dict[str, Any]) -> bytes:
    """The checkpoint file's content: a snapshot, safe to write later while training goes on."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    return buf.getvalue()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    write_checkpoint(Path(path), checkpoint_bytes(state))


# -- integrity: a checksum in the zip comment, and the previous checkpoint kept --------------------
_EOCD = b"PK\x05\x06"  # zip end-of-central-directory record: the last 22 bytes of torch.save's file
_SEAL = b"transfer-studio sha256="
_SEAL_LEN = len(_SEAL) + 64


class CheckpointDamaged(UserError):
    """A checkpoint file that is missing, truncated, corrupt or not ours; ``reason`` says which."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"checkpoint {path} cannot be read: {reason}")
        self.path, self.reason = path, reason


def seal(payload: bytes) -> bytes:
    """``payload`` (a torch.save zip) with its SHA-256 as the archive comment: a valid zip that
    torch.load reads as before, and whose every byte ``verify_seal`` can check."""
    if len(payload) < 22 or payload[-22:-18] != _EOCD or payload[-2:] != b"\0\0":
        raise ValueError("not a torch.save archive without a comment")
    body = payload[:-2]
    comment = _SEAL + hashlib.sha256(body).hexdigest().encode("ascii")
    return body + struct.pack("<H", len(comment)) + comment


def verify_seal(data: bytes) -> str | None:
    """None when ``data`` is intact (or carries no seal: an older checkpoint); else the reason."""
    tail = data[-_SEAL_LEN:]
    if not tail.startswith(_SEAL):
        if _SEAL[:8] in data[-2 * _SEAL_LEN:]:
            return "its checksum record is cut off (the file is truncated or was modified)"
        if len(data) < 22 or _EOCD not in data[-65536 - 22:]:
            return "it is truncated (no end of archive)"
        return None  # written before checksums: torch.load still checks its structure
    body = data[:-_SEAL_LEN - 2]
    if data[-_SEAL_LEN - 2:-_SEAL_LEN] != struct.pack("<H", _SEAL_LEN) or body[-20:-16] != _EOCD:
        return "its checksum record is damaged"
    if hashlib.sha256(body).hexdigest().encode("ascii") != tail[len(_SEAL):]:
        return "its checksum does not match its content (the file is corrupt)"
    return None


def write_checkpoint(path: Path, payload: bytes) -> None:
    """Seal ``payload`` and write it atomically as ``path``; once the new file is in place, the one it
    replaced becomes ``checkpoint_prev.pt`` (at every moment both names hold complete files, and a
    failed write leaves the folder as it was)."""
    path = Path(path)
    data = seal(payload)
    prev = path.with_name(PREVIOUS)
    held = _link_aside(path, prev) if path.is_file() else None  # the current file, under a temp name
    try:
        config.atomic_write_bytes(path, data)
    except BaseException:
        if held is not None:  # a failed write leaves the folder as it was
            with contextlib.suppress(OSError):
                os.unlink(held)
        raise
    if held is not None:
        os.replace(held, prev)
        config.fsync_dir(path.parent)


def _link_aside(path: Path, prev: Path) -> Path:
    """A second name for ``path``'s current file (a temp name next to ``prev``): a hard link where
    the file system has them, else a copy. A killed write leaves it as a stale temp file."""
    tmp = config.temp_name(prev)
    try:
        os.link(path, tmp)
    except OSError:
        try:
            shutil.copyfile(path, tmp)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return tmp


def _keep_previous(path: Path, prev: Path) -> None:
    """prev := path's current file, atomically."""
    os.replace(_link_aside(path, prev), prev)


def weights_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    return safetensors_save(cpu_copy(tensors), metadata)


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


class WriteFailed(Exception):
    """A background write failed; ``name`` is the file, ``error`` the OSError."""

    def __init__(self, name: str, error: OSError):
        super().__init__(f"{name}: {error}")
        self.name, self.error = name, error


class BackgroundWriter:
    """Writes a list of files, in order, on one background thread, one batch of files at a time.

    The content is serialised by the caller (a consistent snapshot); only the disk I/O (write and
    fsync) overlaps the next epoch. ``wait`` joins the pending batch and raises ``WriteFailed`` if a
    file of it could not be written (atomically: the previous version of that file is intact).
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: WriteFailed | None = None
        self.seconds: dict[str, float] = {}  # how long the last write of each file took
        self.sizes: dict[str, int] = {}

    def submit(self, files: list[tuple[Path, bytes]]) -> None:
        self.wait()

        def run() -> None:
            for path, data in files:
                t0 = time.perf_counter()
                try:
                    if path.name == CHECKPOINT:
                        write_checkpoint(path, data)  # sealed, the previous one kept
                    else:
                        config.atomic_write_bytes(path, data)
                except OSError as exc:
                    self._error = WriteFailed(path.name, exc)
                    return
                self.seconds[path.name] = time.perf_counter() - t0
                self.sizes[path.name] = len(data)

        # Not a daemon: interpreter exit waits for the file being written (the rename is atomic anyway).
        self._thread = threading.Thread(target=run, name="checkpoint-writer")
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending(self) -> bool:
        return self._thread is not None

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def load_checkpoint(path: Path, notes: list[str] | None = None) -> dict[str, Any]:
    """The state in ``path`` (checked against its checksum, loaded with weights_only=True).

    When it is missing or damaged and ``checkpoint_prev.pt`` beside it is intact, the damaged file
    is set aside (renamed ``*.damaged``, never deleted), the previous checkpoint takes its place,
    and a sentence saying so is logged and appended to ``notes``. UserError when neither is usable.
    """
    path = Path(path)
    prev = path.with_name(PREVIOUS)
    if not path.is_file() and not prev.is_file():
        raise UserError(f"no checkpoint to resume from: {path} does not exist (the run never "
                        "finished its first epoch)")
    try:
        return _read_checkpoint(path)
    except CheckpointDamaged as exc:
        if path.name != CHECKPOINT or not prev.is_file():
            raise
        damaged = exc
    try:
        state = _read_checkpoint(prev)
    except CheckpointDamaged as exc:
        raise UserError(f"the run's checkpoints are both damaged: {damaged.path.name}: {damaged.reason}; "
                        f"{prev.name}: {exc.reason}. Start a new run") from exc
    note = (f"{path.name} is damaged ({damaged.reason}): resumed from the previous checkpoint, "
            f"epoch {state.get('epoch')}; the epochs after it are trained again")
    try:
        if path.exists():
            os.replace(path, path.with_name(path.name + DAMAGED_SUFFIX))
        _keep_previous(prev, path)
    except OSError as exc:  # a read-only folder: resuming still works, the next write will fail clearly
        note += f" (could not set the damaged file aside: {exc.strerror or exc})"
    log.warning(note)
    if notes is not None:
        notes.append(note)
    return state


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CheckpointDamaged(path, "it is missing") from exc
    except OSError as exc:
        raise CheckpointDamaged(path, f"it cannot be read ({exc.strerror or exc})") from exc
    reason = verify_seal(data)
    if reason is not None:
        raise CheckpointDamaged(path, reason)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file is the user's to fix
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointDamaged(path, f"it cannot be read ({type(exc).__name__}: {first}); it is corrupt "
                                "or not a Transfer Studio checkpoint") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointDamaged(path, f"it is not a Transfer Studio checkpoint (format {FORMAT})")
    return state


def cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Standalone contiguous CPU copies (safetensors refuses shared or strided storage, and
    channels_last weights are strided)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> int:
    """Write tensors as safetensors; returns the number of bytes written."""
    data = safetensors_save(cpu_copy(tensors), metadata)
    config.atomic_write_bytes(Path(path), data)
    return len(data)


def save_weights(path: Path, model: torch.nn.Module, metadata: dict[str, str] | None = None) -> int:
    return save_tensors(path, model.state_dict(), metadata)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is missing: the run folder is incomplete and cannot be resumed")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - corrupt file: the user's to know
        raise UserError(f"{path} cannot be read ({exc}); the run folder is damaged") from exc


def tensor_names(path: Path) -> set[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return set(fh.keys())
    except Exception:  # noqa: BLE001 - missing or unreadable: treated as absent
        return set()


def write_json(path: Path, data: Any) -> None:
    config.atomic_write_text(Path(path), json.dumps(data, indent=2) + "\n")
