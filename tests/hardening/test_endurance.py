"""Endurance: memory of a 10-epoch run with DataLoader workers stays flat; 50 start/stop cycles of
the GUI's training worker leave no thread, file handle or Qt warning behind.

bench/bench_endurance.py runs the same measurements longer and writes them to docs/benchmarks.md.
"""

from __future__ import annotations

import gc
import json
import threading
import time

import psutil
import pytest
from helpers.images import make_class_folder
from helpers.killer import run_function
from helpers.training import make_project

GROWTH_LIMIT = 1.05


def test_peak_memory_of_training_and_its_workers_is_flat_from_epoch_2_to_10(tmp_path):
    data = make_class_folder(tmp_path / "data", {"a": 20, "b": 20, "c": 20}, size=64)
    project = make_project(data, strategy="full", epochs=10, batch_size=8, image_size=64, num_workers=2,
                           head_epochs=0)
    project.save(tmp_path / "p.tsproj")
    code = run_function("helpers.endurance.train_and_measure", [tmp_path / "p.tsproj", tmp_path / "run",
                                                                tmp_path / "memory.json"])
    assert code == 0
    peaks = {int(k): v for k, v in json.loads((tmp_path / "memory.json").read_text())["peaks"].items()}
    assert peaks[2]["processes"] >= 3, "the DataLoader workers did not run"
    rss = {e: peaks[e]["rss"] for e in range(2, 11)}
    growth = rss[10] / rss[2]
    print(f"peak RSS (training process + workers): epoch 2 {rss[2]:.0f} MiB, epoch 10 {rss[10]:.0f} MiB, "
          f"growth {100 * (growth - 1):+.1f}%; max over epochs 2-10 {max(rss.values()):.0f} MiB")
    assert growth <= GROWTH_LIMIT, rss
    assert max(rss.values()) <= GROWTH_LIMIT * rss[2], rss


# -- the GUI's training worker --------------------------------------------------------------------
CYCLES = 50


def _counts() -> dict[str, int]:
    proc = psutil.Process()
    return {"os_threads": proc.num_threads(), "python_threads": threading.active_count(),
            "open_files": proc.num_fds(), "children": len(proc.children())}


def _settle(qtbot, baseline: dict[str, int] | None = None, timeout: float = 10.0) -> dict[str, int]:
    """Let finished threads exit and deleted objects go; the counts once stable (or at baseline)."""
    from PySide6.QtCore import QCoreApplication

    deadline = time.monotonic() + timeout
    counts = _counts()
    while time.monotonic() < deadline:
        QCoreApplication.processEvents()
        gc.collect()
        qtbot.wait(50)
        counts = _counts()
        if baseline is not None and all(counts[k] <= baseline[k] for k in baseline):
            break
    return counts


@pytest.mark.parametrize("cycles", [CYCLES])
def test_fifty_start_stop_cycles_of_the_training_worker_leak_nothing(qtbot, qtlog, tiny_data, tmp_path,
                                                                     monkeypatch, cycles):
    from transfer_studio.ui.train_worker import TrainController

    monkeypatch.setenv("TS_SETTINGS_FILE", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("TS_DATA_DIR", str(tmp_path / "appdata"))
    controller = TrainController()
    outcomes: list[str] = []
    controller.outcome.connect(lambda o: outcomes.append(o.status))

    def cycle(i: int) -> None:
        project = make_project(tiny_data, strategy="full", epochs=2, batch_size=4, head_epochs=0,
                               num_workers=0, cache_features=False)
        stop_on = ("start", "fit", "batch")[i % 3]
        if stop_on == "fit":
            controller.fitStarted.connect(controller.stop)
        elif stop_on == "batch":
            controller.batches.connect(controller.stop)
        try:
            with qtbot.waitSignal(controller.finished, timeout=60000):
                controller.start(project, tmp_path / f"run{i:02d}")
                if stop_on == "start":
                    controller.stop()  # before the engine has even prepared the run
        finally:
            if stop_on == "fit":
                controller.fitStarted.disconnect(controller.stop)
            elif stop_on == "batch":
                controller.batches.disconnect(controller.stop)

    cycle(0)  # warm-up: imports, torch's thread pools and Qt's thread bookkeeping are created once
    baseline = _settle(qtbot)
    t0 = time.perf_counter()
    for i in range(1, cycles + 1):
        cycle(i)
        assert not controller.is_running()
    seconds = time.perf_counter() - t0
    after = _settle(qtbot, baseline)
    print(f"{cycles} start/stop cycles in {seconds:.1f}s; baseline {baseline}, after {after}")
    assert len(outcomes) == cycles + 1 and set(outcomes) <= {"stopped", "finished"}, outcomes
    assert outcomes.count("stopped") >= cycles // 2
    for key in baseline:
        assert after[key] <= baseline[key], (key, baseline, after)
    warnings = [r.message for r in qtlog.records if r.type.name in ("QtWarningMsg", "QtCriticalMsg",
                                                                     "QtFatalMsg")]
    assert not warnings, warnings
