import threading
import time

from PySide6.QtCore import Qt

from transfer_studio.errors import Cancelled, UserError
from transfer_studio.ui.worker import run_task, running_tasks


def test_result_comes_back_on_gui_thread(qtbot):
    seen = {}

    def work(x, progress, cancel):
        seen["thread"] = threading.current_thread()
        for i in range(3):
            progress(i + 1, 3)
        return x * 2

    with qtbot.waitSignal(run_task(work, 21).result, timeout=60000) as blocker:
        pass
    assert blocker.args == [42]
    assert seen["thread"] is not threading.main_thread()


def test_cancel_is_seen_by_the_work_function(qtbot):
    started = threading.Event()

    def work(progress, cancel):
        started.set()
        while not cancel():
            time.sleep(0.01)
        raise Cancelled()

    handle = run_task(work)
    assert started.wait(5)
    with qtbot.waitSignal(handle.cancelled, timeout=60000):
        handle.cancel()
    qtbot.waitUntil(lambda: not handle.is_running(), timeout=60000)


def test_user_error_is_a_message_without_traceback(qtbot):
    def work(progress, cancel):
        raise UserError("folder missing: /nope")

    with qtbot.waitSignal(run_task(work).error, timeout=60000) as blocker:
        pass
    assert blocker.args == ["folder missing: /nope", ""]


def test_unexpected_error_carries_traceback(qtbot):
    def work(progress, cancel):
        raise RuntimeError("boom")

    with qtbot.waitSignal(run_task(work).error, timeout=60000) as blocker:
        pass
    assert blocker.args[0] == "RuntimeError: boom"
    assert "Traceback" in blocker.args[1]


def test_wait_from_a_blocked_gui_thread_returns_when_the_work_ends():
    """Closing the window cancels and waits without running the event loop: it must not hang."""
    started = threading.Event()

    def work(progress, cancel):
        started.set()
        while not cancel():
            time.sleep(0.01)
        raise Cancelled()

    handle = run_task(work)
    assert started.wait(5)
    handle.cancel()
    t0 = time.monotonic()
    assert handle.wait(10000)
    assert time.monotonic() - t0 < 5


def test_many_short_tasks_release_their_threads_safely(qtbot):
    """Regression: with ``finished -> deleteLater`` the worker was deleted on its own thread while
    the GUI thread freed its Python wrapper, a use-after-free that crashed the suite now and then.
    Bursts of short tasks whose handles nobody keeps make that race likely if it comes back."""
    import gc

    results = []
    for burst in range(6):
        for i in range(40):
            run_task(lambda x, progress, cancel: x, burst * 40 + i, on_result=results.append)
        qtbot.waitUntil(lambda: not running_tasks(), timeout=60000)
        gc.collect()
    assert sorted(results) == list(range(240))


def test_worker_is_released_on_the_gui_thread_after_its_thread_exited(qtbot):
    """The design behind the fix above: no deleteLater on the worker's thread; the handle drops the
    worker only once the thread has fully finished, so wrapper and C++ object die on the GUI thread."""
    handle = run_task(lambda progress, cancel: 1)
    worker = handle._worker
    destroyed_on = []
    worker.destroyed.connect(lambda: destroyed_on.append(threading.current_thread()),
                             Qt.ConnectionType.DirectConnection)
    del worker
    qtbot.waitUntil(lambda: not handle.is_running(), timeout=60000)
    assert handle.thread.isFinished()
    assert handle._worker is None
    assert destroyed_on == [threading.main_thread()]


def test_a_task_that_needs_no_torch_does_not_wait_for_it(qtbot, monkeypatch):
    """Decoding a picture or laying out the graph starts at once; a task that needs torch waits for
    its first import (``runtime.ensure_ml``), which is held back here."""
    from transfer_studio.ui import runtime

    torch_loading = threading.Event()
    release = threading.Event()

    def slow_ensure_ml():
        torch_loading.set()
        release.wait(30)

    monkeypatch.setattr(runtime, "ensure_ml", slow_ensure_ml)
    done = []
    needs = run_task(lambda: done.append("torch"), pass_control=False)
    assert torch_loading.wait(10)
    with qtbot.waitSignal(run_task(lambda: done.append("plain"), pass_control=False, needs_torch=False).finished,
                          timeout=10000):
        pass
    assert done == ["plain"] and needs.is_running()
    release.set()
    qtbot.waitUntil(lambda: not needs.is_running(), timeout=10000)
    assert done == ["plain", "torch"]


def test_one_import_gate_and_loaded_modules_skip_it(tmp_path, monkeypatch):
    """Every gated import takes the same lock (torch's first import included); a module that is
    already imported comes back without it, so the GUI thread never waits behind a worker's import."""
    from transfer_studio.ui import runtime

    (tmp_path / "ts_gate_probe.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    holder_in, holder_out = threading.Event(), threading.Event()

    def hold():
        with runtime._gate:
            holder_in.set()
            holder_out.wait(10)

    threading.Thread(target=hold, daemon=True).start()
    assert holder_in.wait(5)
    t0 = time.monotonic()
    assert runtime.import_module("json").dumps(1) == "1"  # loaded: no wait
    assert time.monotonic() - t0 < 0.5
    got = []
    importer = threading.Thread(target=lambda: got.append(runtime.import_module("ts_gate_probe").VALUE))
    importer.start()
    importer.join(0.3)
    assert got == []  # a new import waits for the gate
    holder_out.set()
    importer.join(5)
    assert got == [42]


def test_the_collector_policy_freezes_only_after_heavy_imports(tmp_path, monkeypatch):
    import gc

    from transfer_studio.ui import runtime

    (tmp_path / "ts_light_probe.py").write_text("import gc\nENABLED = gc.isenabled()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    assert gc.isenabled()
    assert runtime.import_module("ts_light_probe").ENABLED is False  # paused while importing
    assert gc.isenabled() and frozen == []  # one small module: nothing frozen
    monkeypatch.setattr(runtime, "_tuned", False)
    runtime.settle_heap()
    assert frozen == []  # a test process or a library user keeps its collector as it is
    monkeypatch.setattr(runtime, "_tuned", True)
    runtime.settle_heap()
    assert frozen == [True]  # the app's process (tune_interpreter)


def test_an_import_that_leaves_many_objects_is_frozen_before_the_collector_runs_again(tmp_path, monkeypatch):
    """torchvision's import left 267,000 young objects; the first collection after the pause traversed
    them all on the worker thread, holding the GIL: a 90 ms GUI stall at the first model load."""
    import gc

    from transfer_studio.ui import runtime

    (tmp_path / "ts_bulky_probe.py").write_text("KEPT = [[i] for i in range(30_000)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    monkeypatch.setattr(gc, "freeze", lambda: seen.append(gc.isenabled()))
    monkeypatch.setattr(runtime, "_tuned", True)  # the app's process (tune_interpreter)
    assert len(runtime.import_module("ts_bulky_probe").KEPT) == 30_000
    assert seen == [False] and gc.isenabled()  # frozen while still paused, then enabled


def test_a_preload_waits_for_qt_classes_created_in_slices_on_the_gui_thread(qtbot, monkeypatch):
    """pyqtgraph's import on a worker read PySide6 classes the GUI thread was creating (a segfault); creating
    them all at once froze the window ~220 ms after start-up. A preload asked for early starts after the
    slices; one cancelled before then never starts."""
    import threading

    from transfer_studio.ui import worker as wk

    reads: list[bool] = []

    class Lazy:
        def __getattr__(self, name):
            reads.append(threading.current_thread() is threading.main_thread())
            return name

    monkeypatch.setattr(wk, "_qt_pending", [(Lazy(), f"Q{i}") for i in range(5)])
    monkeypatch.setattr(wk, "_warming", False)
    monkeypatch.setattr(wk, "_after_warm", [])
    monkeypatch.setattr(wk, "WARM_SLICE_S", 0.0)  # one class per slice
    done: list[str] = []
    task = wk.preload_module("json", on_finished=lambda: done.append("json"))
    dropped = wk.preload_module("json")
    dropped.cancel()
    assert isinstance(task, wk.DeferredTask) and task.is_running() and task.handle is None
    assert 1 <= len(reads) < 5  # the first slice only: the rest come from the event loop
    qtbot.waitUntil(lambda: done == ["json"], timeout=10000)
    assert reads == [True] * 5 and wk.qt_classes_ready() and dropped.handle is None and not dropped.is_running()
    assert isinstance(wk.preload_module("json"), wk.TaskHandle)  # ready: started at once
    assert wk.wait_for_tasks([task])
