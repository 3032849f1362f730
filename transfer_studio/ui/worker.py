"""Run long work off the GUI thread: a worker QObject moved to a QThread.

Wiring: started -> work, finished -> quit. No ``deleteLater``: the GUI thread keeps the Python
wrappers until the thread has fully exited, then drops them (see ``release_thread_objects``). Cancellation is a ``threading.Event`` set directly from the GUI thread and polled
by the work function (a queued "stop" signal would never run while the worker's thread is busy).
Results, errors and progress come back as signals carrying plain data; widgets are only touched in
the GUI thread.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from transfer_studio.errors import Cancelled, UserError

_live: set[TaskHandle] = set()  # keeps handles (and their threads) alive until finished
_import_lock = threading.Lock()


def ensure_ml_imported() -> None:
    """Import torch, torchvision and its model zoo once, one thread at a time, quietly for the GUI.

    Two threads importing torch for the first time at once fail ("partially initialized module
    'torch.utils'"), so every background task takes this lock before its work. Never call it on the
    GUI thread: the first import takes seconds.

    Quietly: libtorch is preloaded without the GIL (``preload_torch_libraries``), and the collector
    is paused during the imports, whose several hundred thousand new objects would otherwise trigger
    full collections (0.3-1.2 s each, holding the GIL: the GUI froze meanwhile). Afterwards the
    modules are moved out of the collector's sight with ``gc.freeze()``, so later full collections
    only walk newer objects.
    """
    if all(name in sys.modules for name in _ML_MODULES):
        return
    import gc

    with _import_lock:
        if "torch" not in sys.modules:
            preload_torch_libraries()
        enabled = gc.isenabled()
        gc.disable()
        try:
            for name in _ML_MODULES:
                importlib.import_module(name)
        finally:
            if enabled:
                gc.enable()
        gc.freeze()


_ML_MODULES = ("torch", "torchvision", "torchvision.models")


def preload_torch_libraries() -> None:
    """Load libtorch's shared libraries before ``import torch``, without holding the GIL.

    ``import torch`` dlopens libtorch (hundreds of MB of relocations and static initialisers) from
    inside an extension-module import, which holds the GIL throughout: the GUI thread froze for
    0.35-0.47 s on this 2-core machine. ctypes releases the GIL around calls into foreign functions,
    so calling libc's ``dlopen`` directly loads the same libraries without the GIL; the import then
    finds them loaded. The load still blocks the GUI thread natively when that thread is busy at the
    same time (measured: ~0.5 s at a first model load), hence ``start_preload`` before the window
    exists. Only Python-independent libraries are preloaded (not libtorch_python). Linux only;
    anything unexpected leaves the normal import to do the work.
    """
    global _preloaded
    if _preloaded or not sys.platform.startswith("linux"):
        return
    _preloaded = True
    try:
        import ctypes
        import importlib.util

        spec = importlib.util.find_spec("torch")
        if spec is None or spec.origin is None:
            return
        lib_dir = os.path.join(os.path.dirname(spec.origin), "lib")
        libc = ctypes.CDLL(None)
        dlopen = libc.dlopen
        dlopen.restype = ctypes.c_void_p
        dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        for name in ("libtorch_global_deps.so", "libtorch.so"):
            path = os.path.join(lib_dir, name)
            if os.path.exists(path):
                dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_GLOBAL)  # handle kept: never unloaded
    except Exception:  # noqa: BLE001 - an optimisation only
        pass


_preloaded = False


def start_preload() -> None:
    """Preload libtorch on a background thread now (app start-up), ahead of the first task."""
    if _preloaded or "torch" in sys.modules:
        return

    def run() -> None:
        with _import_lock:
            preload_torch_libraries()

    threading.Thread(target=run, name="ts-preload", daemon=True).start()


class _Worker(QObject):
    progress = Signal(int, int)
    message = Signal(str)
    result = Signal(object)
    error = Signal(str, str)  # (message for the user, traceback text or "")
    cancelled = Signal()
    finished = Signal()

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict, cancel_event: threading.Event,
                 pass_control: bool, progress_interval: float):
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._cancel_event = cancel_event
        self._pass_control = pass_control
        self._interval = progress_interval
        self._last_emit = 0.0

    def _progress(self, done: int, total: int) -> None:
        # Throttle: a scan over 20,000 files must not flood the GUI thread's event queue.
        now = time.monotonic()
        if done >= total or now - self._last_emit >= self._interval:
            self._last_emit = now
            self.progress.emit(int(done), int(total))

    @Slot()
    def work(self) -> None:
        try:
            ensure_ml_imported()
            kwargs = dict(self._kwargs)
            if self._pass_control:
                kwargs.setdefault("progress", self._progress)
                kwargs.setdefault("cancel", self._cancel_event.is_set)
            value = self._fn(*self._args, **kwargs)
            if self._cancel_event.is_set():
                self.cancelled.emit()
            else:
                self.result.emit(value)
        except Cancelled:
            self.cancelled.emit()
        except UserError as exc:
            self.error.emit(str(exc), "")
        except MemoryError:
            self.error.emit("Out of memory. Close other programs or use smaller inputs.", traceback.format_exc())
        except Exception as exc:  # noqa: BLE001 - surfaced in the UI, never a dead thread
            self.error.emit(f"{type(exc).__name__}: {exc}", traceback.format_exc())
        finally:
            self.finished.emit()


class TaskHandle(QObject):
    """A running background task. Keep it to cancel it or to wait for it."""

    progress = Signal(int, int)
    result = Signal(object)
    error = Signal(str, str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, name: str = "task", parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self.cancel_event = threading.Event()
        self.thread: QThread | None = None
        self._done = False

    def cancel(self) -> None:
        self.cancel_event.set()

    def is_running(self) -> bool:
        return not self._done

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the thread ends (used on close/teardown, never in normal GUI flow)."""
        if self.thread is None or self._done:
            return True
        try:
            return self.thread.wait(msecs)
        except RuntimeError:  # already deleted
            return True

    def _on_finished(self) -> None:
        release_thread_objects(self.thread)
        self._worker = None  # deletes the worker here, on the GUI thread, now that its thread is gone
        self._done = True
        _live.discard(self)
        self.finished.emit()


def run_task(fn: Callable[..., Any], *args: Any, name: str = "task", pass_control: bool = True,
             on_result: Callable[[Any], None] | None = None,
             on_error: Callable[[str, str], None] | None = None,
             on_progress: Callable[[int, int], None] | None = None,
             on_cancelled: Callable[[], None] | None = None,
             on_finished: Callable[[], None] | None = None,
             progress_interval: float = 0.05, **kwargs: Any) -> TaskHandle:
    """Start ``fn(*args, progress=..., cancel=..., **kwargs)`` on a new QThread.

    With ``pass_control=False`` fn is called without the progress/cancel keywords. Callbacks run in
    the GUI thread (queued connections). Returns the handle; ``handle.cancel()`` requests a stop.
    """
    handle = TaskHandle(name)
    thread = QThread()
    thread.setObjectName(f"ts-{name}")
    worker = _Worker(fn, args, kwargs, handle.cancel_event, pass_control, progress_interval)
    worker.moveToThread(thread)
    handle.thread = thread
    handle._worker = worker  # type: ignore[attr-defined]

    worker.progress.connect(handle.progress)
    worker.result.connect(handle.result)
    worker.error.connect(handle.error)
    worker.cancelled.connect(handle.cancelled)
    if on_progress:
        handle.progress.connect(on_progress)
    if on_result:
        handle.result.connect(on_result)
    if on_error:
        handle.error.connect(on_error)
    if on_cancelled:
        handle.cancelled.connect(on_cancelled)
    if on_finished:
        handle.finished.connect(on_finished)

    thread.started.connect(worker.work)
    # Direct: QThread.quit is thread-safe, and a queued quit would never run while the GUI thread
    # is blocked in wait() (closing the window, test teardown).
    worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
    thread.finished.connect(handle._on_finished)
    _live.add(handle)
    thread.start()
    return handle


def release_thread_objects(thread: QThread | None) -> None:
    """Call on the GUI thread from ``thread.finished``, before dropping the worker's last reference.

    ``finished`` is emitted before the thread has exited; ``wait()`` returns once it has (at once in
    practice). Only then may the Python wrapper of the worker go away. The usual
    ``finished -> deleteLater`` wiring deletes the C++ worker on its own thread while the GUI thread
    may be freeing the Python wrapper: shiboken then reads a freed dict (a segfault every few
    hundred tasks). Here both the wrapper and the C++ object die on the GUI thread.
    """
    if thread is not None:
        with contextlib.suppress(RuntimeError):  # already deleted
            thread.wait()


def import_locked(module: str) -> Any:
    """Import ``module`` under one lock shared by the pages' worker threads: two threads importing
    modules that import each other can see one half-initialised. Call from worker threads."""
    with _module_import_lock:
        return importlib.import_module(module)


def import_core(name: str) -> Any:
    """``transfer_studio.core.<name>`` through ``import_locked``."""
    return import_locked(f"transfer_studio.core.{name}")


_module_import_lock = threading.RLock()


def wait_for_tasks(handles: Sequence[TaskHandle | None], msecs: int = 60000) -> bool:
    """Cancel these tasks and wait for their threads to end, delivering posted events meanwhile
    (window close, page shutdown); True when all ended.

    A worker thread's end reaches the GUI thread through queued signals, so a bare
    ``QThread.wait()`` here could block until the timeout.
    """
    from PySide6.QtCore import QCoreApplication, QEventLoop

    live = [h for h in handles if h is not None]
    for handle in live:
        handle.cancel()
    deadline = time.monotonic() + msecs / 1000
    while any(h.is_running() for h in live) and time.monotonic() < deadline:
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.002)
    return not any(h.is_running() for h in live)


def running_tasks() -> list[TaskHandle]:
    return [h for h in _live if h.is_running()]


def cancel_all(wait_ms: int = 30000) -> None:
    """Cancel every background task and wait for its thread (app shutdown, test teardown)."""
    for handle in list(_live):
        handle.cancel()
    for handle in list(_live):
        handle.wait(wait_ms)
