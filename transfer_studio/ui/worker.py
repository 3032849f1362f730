"""Run long work off the GUI thread: a worker QObject moved to a QThread.

Wiring: started -> work, finished -> quit. No ``deleteLater``: the GUI thread keeps the Python
wrappers until the thread has fully exited, then drops them (see ``release_thread_objects``).
Cancellation is a ``threading.Event`` set directly from the GUI thread and polled by the work
function (a queued "stop" signal would never run while the worker's thread is busy). Results,
errors and progress come back as signals carrying plain data; widgets are only touched in the GUI
thread. How tasks import torch and the core, and the garbage-collector policy: ``ui.runtime``.
``wait_for_tasks`` is the one way to wait for tasks (a page closing, the window closing, tests).
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from transfer_studio.errors import Cancelled, UserError
from transfer_studio.ui import runtime

_live: set[TaskHandle] = set()  # keeps handles (and their threads) alive until finished


class _Worker(QObject):
    progress = Signal(int, int)
    message = Signal(str)
    result = Signal(object)
    error = Signal(str, str)  # (message for the user, traceback text or "")
    cancelled = Signal()
    finished = Signal()

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict, cancel_event: threading.Event,
                 pass_control: bool, progress_interval: float, needs_torch: bool):
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._needs_torch = needs_torch
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
            if self._needs_torch:
                runtime.ensure_ml()
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
             progress_interval: float = 0.05, needs_torch: bool = True, **kwargs: Any) -> TaskHandle:
    """Start ``fn(*args, progress=..., cancel=..., **kwargs)`` on a new QThread.

    With ``pass_control=False`` fn is called without the progress/cancel keywords. Callbacks run in
    the GUI thread (queued connections). Returns the handle; ``handle.cancel()`` requests a stop.
    A task that does not need torch (``needs_torch=False``: decoding a picture, laying out the
    graph) starts at once instead of waiting behind torch's first import (``runtime.ensure_ml``).
    """
    handle = TaskHandle(name)
    thread = QThread()
    thread.setObjectName(f"ts-{name}")
    worker = _Worker(fn, args, kwargs, handle.cancel_event, pass_control, progress_interval, needs_torch)
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


# PySide6 creates its classes lazily, on first access, and that is not safe while the GUI thread does
# the same at the same moment: pyqtgraph's import (``ui.charts``, preloaded on a worker thread) reads
# every attribute of QtCore, QtGui and QtWidgets and imports QtSvg, QtOpenGLWidgets and QtTest, and it
# segfaulted in pyqtgraph's ``_copy_attrs`` while the Data page built its widgets. So the GUI thread
# does that first, in slices of a few milliseconds from the event loop (``warm_qt_classes``: ~220 ms
# in all, once per process; done at once it froze the window that long right after start-up), and a
# preload asked for before then starts when they are done.
QT_LAZY_MODULES = ("PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets")
QT_EXTRA_MODULES = ("PySide6.QtSvg", "PySide6.QtOpenGLWidgets", "PySide6.QtTest")
WARM_SLICE_S = 0.008
_qt_pending: list[tuple[Any, str]] | None = None
_warming = False
_after_warm: list[DeferredTask] = []


def resolve_qt_classes(budget_s: float | None = None) -> bool:
    """Create PySide6's classes now (GUI thread only), for up to ``budget_s`` seconds (None: all of
    them); True once every class exists."""
    global _qt_pending
    import importlib

    if _qt_pending is None:
        for name in QT_EXTRA_MODULES:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        modules = [importlib.import_module(name) for name in QT_LAZY_MODULES]
        _qt_pending = [(m, attr) for m in modules for attr in dir(m)]
    start = time.perf_counter()
    while _qt_pending:
        module, attr = _qt_pending.pop()
        getattr(module, attr, None)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return not _qt_pending


def qt_classes_ready() -> bool:
    return _qt_pending is not None and not _qt_pending


def warm_qt_classes() -> None:
    """Start creating PySide6's classes in slices from the event loop (GUI thread; once)."""
    if not _warming and not qt_classes_ready():
        _warm_slice()


def _warm_slice() -> None:
    from PySide6.QtCore import QTimer

    global _warming
    _warming = True
    if not resolve_qt_classes(WARM_SLICE_S):
        QTimer.singleShot(10, _warm_slice)
        return
    _warming = False
    waiting, _after_warm[:] = list(_after_warm), []
    for task in waiting:
        task.start()


class DeferredTask:
    """A task that starts once PySide6's classes exist; until then ``cancel`` keeps it from starting.
    Stands in for its ``TaskHandle`` (``cancel``, ``is_running``) for ``wait_for_tasks``."""

    def __init__(self, start: Callable[[], TaskHandle]):
        self._start, self.handle, self._cancelled = start, None, False

    def start(self) -> None:
        if not self._cancelled:
            self.handle = self._start()

    def cancel(self) -> None:
        self._cancelled = True
        if self.handle is not None:
            self.handle.cancel()

    def is_running(self) -> bool:
        if self.handle is None:
            return not self._cancelled
        return self.handle.is_running()


def preload_module(name: str, on_finished: Callable[[], None] | None = None) -> TaskHandle | DeferredTask:
    """Import ``name`` (e.g. pyqtgraph through ``ui.charts``) on a worker thread, through the import
    gate and without waiting for torch; ``on_finished`` runs in the GUI thread once it is loaded.
    Call on the GUI thread: the import starts once PySide6's classes exist (see ``warm_qt_classes``)."""

    def start() -> TaskHandle:
        return run_task(runtime.import_module, name, name=f"preload-{name.rsplit('.', 1)[-1]}",
                        pass_control=False, needs_torch=False, on_finished=on_finished)

    if qt_classes_ready():
        return start()
    task = DeferredTask(start)
    _after_warm.append(task)
    warm_qt_classes()
    return task


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


def wait_for_tasks(handles: Sequence[TaskHandle | DeferredTask | None] | None = None, msecs: int = 60000) -> bool:
    """Cancel these tasks (None: every running one, including any started meanwhile) and wait for
    their threads to end, delivering posted events meanwhile; True when all ended. The one way the
    app waits for background work: closing a page or the window, and test teardown.

    A worker thread's end reaches the GUI thread through queued signals, so a bare
    ``QThread.wait()`` here could block until the timeout.
    """
    from PySide6.QtCore import QCoreApplication, QEventLoop

    def live() -> list[TaskHandle]:
        if handles is None:
            return running_tasks()
        return [h for h in handles if h is not None and h.is_running()]

    for handle in live():
        handle.cancel()
    deadline = time.monotonic() + msecs / 1000
    while live() and time.monotonic() < deadline:
        for handle in live():  # a task started meanwhile (handles=None) is cancelled too
            handle.cancel()
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.002)
    return not live()


def running_tasks() -> list[TaskHandle]:
    return [h for h in _live if h.is_running()]


def cancel_all(wait_ms: int = 30000) -> bool:
    """Cancel every background task and wait for its thread (app shutdown, test teardown)."""
    return wait_for_tasks(None, wait_ms)
