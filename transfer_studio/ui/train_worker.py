"""Training on a background QThread: the same ``training.fit`` the CLI calls, events as Qt signals.

Wiring follows superqt's ``new_worker_qthread`` (and ../shared/DESIGN.md, Threading): a worker QObject
is moved to a QThread; started -> work, finished -> quit; both are released on the GUI thread once the
thread has exited (``worker.release_thread_objects``). The engine's
callback runs in the worker thread and only turns events into signals carrying plain data (the
engine's frozen event dataclasses, or ``BatchChunk`` with numpy arrays); widgets are touched only in
the GUI thread.

Stop and pause go through the engine's ``Control`` (threading.Events), set directly from the GUI
thread: a queued "stop" signal would never be delivered while the worker's thread sits inside fit().
Batch events are throttled: they are collected in the worker thread and sent as one chunk at most
every ``BATCH_EMIT_INTERVAL`` seconds (and at the end of every epoch), so a fast loop cannot flood the
GUI thread's event queue.
"""

from __future__ import annotations

import errno
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from transfer_studio.config import Project
from transfer_studio.errors import Cancelled, UserError
from transfer_studio.ui import runtime
from transfer_studio.ui.worker import release_thread_objects

BATCH_EMIT_INTERVAL = 0.1  # seconds between batch chunks sent to the GUI thread
GPU_MEMORY_INTERVAL = 1.0  # seconds between GPU memory readings


# -- plain data carried by the signals -----------------------------------------------------------
@dataclass(frozen=True)
class BatchChunk:
    """The batches finished since the previous chunk (arrays aligned), plus the latest figures."""

    epoch: int  # 1-based epoch of the latest batch
    batch: int  # batches done in that epoch
    num_batches: int
    x: np.ndarray  # position of each batch on the charts' epoch axis
    loss: np.ndarray
    lr: np.ndarray
    running_loss: float  # mean over the epoch so far
    running_accuracy: float | None
    images_per_s: float | None
    gpu_memory: tuple[int, int] | None = None  # (allocated, total) bytes on CUDA


@dataclass(frozen=True)
class TrainFailure:
    """An error explained for the user: what happened, what to do, and the technical detail."""

    message: str
    suggestion: str = ""
    detail: str = ""


@dataclass
class RunOutcome:
    """How a run ended: status is finished | stopped | failed."""

    status: str
    result: Any = None  # the engine's RunResult when fit returned
    failure: TrainFailure | None = None
    duration_s: float = 0.0


# -- errors --------------------------------------------------------------------------------------
def explain_error(exc: BaseException, *, batch_size: int | None = None, device: str | None = None,
                  run_dir: str | None = None) -> TrainFailure:
    """Turn an exception from the engine into a plain explanation and a suggested fix."""
    detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    text = str(exc)
    resume_hint = "then press \u201cResume from checkpoint\u201d: the last checkpoint is intact."
    if isinstance(exc, UserError):
        # The engine already phrased it for the user (e.g. its own out-of-memory advice).
        return TrainFailure(text, "", "")
    oom_type = _torch_oom_type()
    if (oom_type is not None and isinstance(exc, oom_type)) or (
            isinstance(exc, RuntimeError) and "out of memory" in text.lower()):
        where = "The GPU" if (device or "").startswith(("cuda", "mps")) or "CUDA" in text else "The device"
        smaller = f" (try {max(1, batch_size // 2)})" if batch_size and batch_size > 1 else ""
        return TrainFailure(
            f"{where} ran out of memory while training.",
            f"Lower the batch size{smaller} or the image size, or allow the automatic retry with half "
            f"the batch, {resume_hint}", detail)
    if isinstance(exc, MemoryError):
        return TrainFailure(
            "The computer ran out of memory while training.",
            f"Close other programs, lower the batch size or the number of data-loading workers, "
            f"{resume_hint}", detail)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" ({exc.filename})" if exc.filename else (f" ({run_dir})" if run_dir else "")
        return TrainFailure(
            f"The disk is full: a checkpoint could not be written{where}.",
            f"Free some space on that disk, {resume_hint}", detail)
    if _is_unreadable_file(exc):
        name = getattr(exc, "filename", None) or _filename_in(text)
        what = f": {name}" if name else f" ({text})"
        return TrainFailure(
            f"A file could not be read{what}.",
            "Check that the data folder is still available (external drive, network share) and "
            f"unchanged; rescan it on the Data page, {resume_hint}", detail)
    return TrainFailure(
        f"Training stopped with an unexpected error: {type(exc).__name__}: {text}",
        "Details are in the log. Once the cause is fixed, press \u201cResume from checkpoint\u201d: "
        "the last checkpoint is intact.", detail)


def _torch_oom_type() -> type | None:
    import sys

    torch = sys.modules.get("torch")  # never import torch just to classify an error
    return getattr(torch, "OutOfMemoryError", None) if torch is not None else None


def _is_unreadable_file(exc: BaseException) -> bool:
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return True
    if type(exc).__name__ in ("UnidentifiedImageError", "DecompressionBombError"):
        return True
    return isinstance(exc, OSError) and ("truncated" in str(exc) or "cannot identify image" in str(exc))


def _filename_in(text: str) -> str | None:
    for token in text.replace("'", " ").replace('"', " ").split():
        if "/" in token or "\\" in token:
            return token.rstrip(".,:;")
    return None


# -- run folders ---------------------------------------------------------------------------------
def runs_root(project_path: str | Path | None) -> Path:
    """Where the app's new runs go (``core.runs.runs_root``): this machine's runs folder if one is set,
    else ``<project dir>/runs`` for a saved project, else the app's data folder."""
    from transfer_studio.core.runs import runs_root as core_runs_root
    from transfer_studio.ui.settings import data_dir

    return core_runs_root(project_path, data_dir() / "runs")


# -- the worker (lives in the training thread) ---------------------------------------------------
class TrainWorker(QObject):
    fitStarted = Signal(object)  # training.events.FitStart
    batches = Signal(object)  # BatchChunk
    epochEnded = Signal(object)  # training.events.EpochEnd
    phaseChanged = Signal(object)  # training.events.PhaseChanged
    checkpointWritten = Signal(str)  # path
    paused = Signal()
    resumed = Signal()
    engineError = Signal(object)  # training.events.Error (the run may still end on its own)
    log = Signal(str)
    outcome = Signal(object)  # RunOutcome, exactly once, before finished
    finished = Signal()

    def __init__(self, project: Project, control: Any, run_dir: Path, resume: bool,
                 extra_callbacks: tuple = ()):
        super().__init__()
        self._project = project
        self._control = control
        self._run_dir = run_dir
        self._resume = resume
        self._extra = tuple(extra_callbacks)
        self._pending: list[tuple[float, float, float]] = []
        self._last_batch: Any = None
        self._prev_batch: tuple[int, int, float] = (0, 0, 0.0)
        self._last_emit = 0.0
        self._last_mem = 0.0
        self._gpu_memory: tuple[int, int] | None = None
        self._device = ""
        self._error_event: Any = None

    # The engine calls this in the worker thread for every event.
    def on_event(self, event: Any) -> None:
        kind = type(event).__name__
        if kind == "BatchEnd":
            self._on_batch(event)
            return
        self._flush_batches()  # keep order: batches of an epoch arrive before its EpochEnd
        if kind == "FitStart":
            self._device = str(event.device)
            self.fitStarted.emit(event)
        elif kind == "EpochEnd":
            self.epochEnded.emit(event)
        elif kind == "PhaseChanged":
            self.phaseChanged.emit(event)
        elif kind == "CheckpointWritten":
            self.checkpointWritten.emit(str(event.path))
        elif kind == "Paused":
            self.paused.emit()
        elif kind == "Resumed":
            self.resumed.emit()
        elif kind == "Error":
            self._error_event = event
            self.engineError.emit(event)
        elif kind == "Notice":
            self.log.emit(str(event.message))
        elif kind != "FitEnd":
            self.log.emit(f"{kind}: {event}")

    def _on_batch(self, event: Any) -> None:
        epoch, step = int(event.epoch), int(event.step)
        steps = max(1, int(event.steps))
        mean = float(event.loss)  # the engine reports the running mean over the epoch so far
        prev_epoch, prev_step, prev_mean = self._prev_batch
        if prev_epoch != epoch or step <= prev_step:
            prev_step, prev_mean = 0, 0.0
        # Mean loss of the batches since the previous event: what a per-batch curve should show.
        loss = (mean * step - prev_mean * prev_step) / (step - prev_step) if step > prev_step else mean
        self._prev_batch = (epoch, step, mean)
        self._pending.append((epoch - 1 + step / steps, loss, float(event.lr)))
        self._last_batch = event
        now = time.monotonic()
        if now - self._last_emit >= BATCH_EMIT_INTERVAL or step >= steps:
            self._flush_batches(now)

    def _flush_batches(self, now: float | None = None) -> None:
        if not self._pending:
            return
        now = time.monotonic() if now is None else now
        arr = np.asarray(self._pending, np.float64)
        self._pending = []
        ev = self._last_batch
        if self._device.startswith("cuda") and now - self._last_mem >= GPU_MEMORY_INTERVAL:
            self._last_mem = now
            self._gpu_memory = _cuda_memory(self._device)
        self._last_emit = now
        self.batches.emit(BatchChunk(
            epoch=int(ev.epoch), batch=int(ev.step), num_batches=int(ev.steps),
            x=arr[:, 0].copy(), loss=arr[:, 1].copy(), lr=arr[:, 2].copy(),
            running_loss=float(ev.loss), running_accuracy=_opt_float(ev.accuracy),
            images_per_s=_opt_float(ev.images_per_s),
            gpu_memory=self._gpu_memory,
        ))

    @Slot()
    def work(self) -> None:
        started = time.monotonic()
        outcome: RunOutcome
        try:
            # Usually already imported by the page's warm-up; if not, import without GUI stalls.
            runtime.ensure_ml()
            for name in runtime.TRAINING_MODULES:
                runtime.import_module(name)
            from transfer_studio.training.fit import fit

            result = fit(self._project, callbacks=(self.on_event, *self._extra), control=self._control,
                         run_dir=self._run_dir, resume=self._resume)
            self._flush_batches()
            outcome = RunOutcome(_status_of(result, self._control), result)
            if outcome.status == "failed":
                outcome.failure = self._failure_from_result(result)
        except Cancelled:
            outcome = RunOutcome("stopped")
        except BaseException as exc:  # noqa: BLE001 - shown in the page, never a dead thread
            failure = explain_error(exc, batch_size=self._project.train.batch_size, device=self._device,
                                    run_dir=str(self._run_dir))
            outcome = RunOutcome("failed", failure=failure)
        finally:
            self._flush_pending_quietly()
        outcome.duration_s = time.monotonic() - started
        self.outcome.emit(outcome)
        self.finished.emit()

    def _flush_pending_quietly(self) -> None:
        try:
            self._flush_batches()
        except Exception:  # noqa: BLE001 - a malformed last event must not hide the outcome
            self._pending = []

    def _failure_from_result(self, result: Any) -> TrainFailure:
        message = str(getattr(result, "message", "") or "")
        if message:
            return TrainFailure(message, str(getattr(result, "suggestion", "") or ""))
        ev = self._error_event
        if ev is None:
            return TrainFailure("Training failed.", "Details are in the log.")
        return TrainFailure(str(ev.message or "Training failed."), str(ev.suggestion or ""))


def _status_of(result: Any, control: Any) -> str:
    status = getattr(result, "status", None)
    if status in ("finished", "stopped", "failed"):
        return status
    return "stopped" if control.stop_requested else "finished"


def _opt_float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def cuda_index(device: str) -> int:
    """The CUDA device index in the engine's device text ("cuda:1 (NVIDIA H100)" -> 1; "cuda" -> 0)."""
    name = device.split()[0] if device.strip() else ""
    _, _, index = name.partition(":")
    return int(index) if index.isdigit() else 0


def _cuda_memory(device: str) -> tuple[int, int] | None:
    try:
        import torch

        free, total = torch.cuda.mem_get_info(cuda_index(device))
        return int(total - free), int(total)
    except Exception:  # noqa: BLE001 - memory readout is informative only
        return None


# -- the controller (lives in the GUI thread) ----------------------------------------------------
class TrainController(QObject):
    """Starts one training run at a time on its own QThread and relays the worker's signals."""

    fitStarted = Signal(object)
    batches = Signal(object)
    epochEnded = Signal(object)
    phaseChanged = Signal(object)
    checkpointWritten = Signal(str)
    paused = Signal()
    resumed = Signal()
    engineError = Signal(object)
    log = Signal(str)
    outcome = Signal(object)
    finished = Signal()  # the thread has ended; the controller is idle again

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.control: Any = None
        self._thread: QThread | None = None
        self._worker: TrainWorker | None = None
        self._running = False
        self._paused = False
        self.run_dir: Path | None = None

    def is_running(self) -> bool:
        return self._running

    def is_paused(self) -> bool:
        return self._running and self._paused

    def start(self, project: Project, run_dir: Path, *, resume: bool = False,
              extra_callbacks: tuple = ()) -> None:
        """Run ``fit(project, ..., run_dir=run_dir, resume=resume)`` on a new thread.

        ``project`` must be a copy owned by the run (never state.project itself): the user may edit
        the project while it trains.
        """
        if self._running:
            raise RuntimeError("a training run is already in progress")
        from transfer_studio.training.control import Control  # threading only: cheap to import

        self.control = Control()
        self.run_dir = Path(run_dir)
        self._paused = False
        thread = QThread()
        thread.setObjectName("ts-train")
        worker = TrainWorker(project, self.control, self.run_dir, resume, extra_callbacks)
        worker.moveToThread(thread)
        for name in ("fitStarted", "batches", "epochEnded", "phaseChanged", "checkpointWritten",
                     "engineError", "log", "outcome"):
            getattr(worker, name).connect(getattr(self, name))
        worker.paused.connect(self._on_paused)
        worker.resumed.connect(self._on_resumed)
        thread.started.connect(worker.work)
        # Direct: QThread.quit is thread-safe, and a queued quit would need the GUI event loop, so
        # shutdown()'s wait() (the GUI thread blocked) could never see the thread end.
        worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.finished.connect(self._on_thread_finished)
        self._thread, self._worker = thread, worker
        self._running = True
        thread.start()

    # Called from the GUI thread; the engine polls these flags every batch.
    def pause(self) -> None:
        if self._running and self.control is not None:
            self.control.request_pause()

    def resume(self) -> None:
        if self._running and self.control is not None:
            self.control.resume()

    def stop(self) -> None:
        if self._running and self.control is not None:
            self.control.request_stop()
            # A paused loop sleeps until resumed: wake it so it can see the stop request.
            self.control.resume()

    def wait(self, msecs: int = 60000) -> bool:
        """Block until the training thread has ended (window close / teardown only)."""
        thread = self._thread
        if thread is None:
            return True
        try:
            return thread.wait(msecs)
        except RuntimeError:  # the C++ thread is already deleted
            return True

    def shutdown(self, msecs: int = 60000) -> bool:
        """Stop the run and wait for its thread; True when the thread has ended. The worker's last
        queued signals (the outcome, the thread's end) are delivered before this returns, so the run's
        record says "stopped" before the project is saved or discarded (the window is closing)."""
        from PySide6.QtCore import QCoreApplication

        self.stop()
        ended = self.wait(msecs)
        QCoreApplication.sendPostedEvents(self)
        return ended

    def _on_paused(self) -> None:
        self._paused = True
        self.paused.emit()

    def _on_resumed(self) -> None:
        self._paused = False
        self.resumed.emit()

    def _on_thread_finished(self) -> None:
        release_thread_objects(self._thread)  # then dropping the references deletes both here
        self._running = False
        self._paused = False
        self._thread = None
        self._worker = None
        self.finished.emit()

