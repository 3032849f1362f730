"""Run-directory files: the resumable checkpoint, the best weights, RNG state as tensors.

``checkpoint_last.pt`` holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)`` (never unpickling code). Every file is written to a temp file and
then renamed: a full disk or a crash mid-write leaves the previous file intact.

Weights that no phase of the run ever trains (the frozen backbone of a head-only run) are written
once, to ``frozen.safetensors``; the per-epoch checkpoint holds the rest. A head-only epoch on cached
features takes milliseconds, and re-writing an unchanged backbone every epoch would cost far more.
"""

from __future__ import annotations

import io
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_save

from transfer_studio import config
from transfer_studio.errors import UserError

CHECKPOINT = "checkpoint_last.pt"
BEST = "best.safetensors"
HISTORY = "history.json"
RUN = "run.json"
PROJECT = "project.json"
FROZEN = "frozen.safetensors"
FORMAT = 1


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
    config.atomic_write_bytes(Path(path), checkpoint_bytes(state))


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


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint to resume from: {path} does not exist (the run never "
                        "finished its first epoch)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file is the user's to fix
        raise UserError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); "
                        "it is corrupt or not a Transfer Studio checkpoint") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a Transfer Studio checkpoint (format {FORMAT})")
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
