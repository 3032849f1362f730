"""The training worker: the real engine on a QThread, events as signals, stop/pause/resume, errors."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.images import make_class_folder

from transfer_studio.config import ModelSpec, Project
from transfer_studio.core.run_folder import has_checkpoint
from transfer_studio.core.runs import new_run_dir
from transfer_studio.errors import UserError
from transfer_studio.training.events import BatchEnd, EpochEnd
from transfer_studio.ui.train_worker import TrainController, TrainWorker, cuda_index, explain_error, runs_root


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tiny models gain nothing from a second intra-op thread, and on a busy 2-core machine
    OpenMP's spinning threads made each step 5-10x slower: train with one, then restore."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def tiny_project(root: Path, *, epochs: int = 2, per_class: int = 10, batch_size: int = 4,
                 strategy: str = "full") -> Project:
    """mobilenet_v3_small, random init, 32 px, 2 classes: a run takes about a second per epoch on CPU."""
    data = root / "data"
    if not data.exists():
        make_class_folder(data, {"cat": per_class, "dog": per_class}, size=32)
    p = Project(name="tiny", model=ModelSpec("mobilenet_v3_small", weights="none"))
    p.data.root = str(data)
    p.data.val_split = 0.25
    p.augment.preset = "none"
    t = p.train
    t.strategy, t.epochs, t.batch_size, t.image_size = strategy, epochs, batch_size, 32
    t.device, t.num_workers, t.cache_features = "cpu", 0, False
    return p


@pytest.fixture
def controller(qtbot):
    c = TrainController()
    yield c
    assert c.shutdown(60000), "the training thread did not end"


# -- plain functions -------------------------------------------------------------------------------
def test_explain_error_gives_plain_words_and_a_fix():
    oom = explain_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                        batch_size=64, device="cuda:0")
    assert oom.message == "The GPU ran out of memory while training."
    assert "try 32" in oom.suggestion and "Resume from checkpoint" in oom.suggestion
    assert "OutOfMemoryError" in oom.detail

    full = explain_error(OSError(errno.ENOSPC, "No space left on device", "/runs/a/checkpoint_last.pt"))
    assert full.message.startswith("The disk is full") and "/runs/a/checkpoint_last.pt" in full.message
    assert "Free some space" in full.suggestion

    gone = explain_error(FileNotFoundError(errno.ENOENT, "No such file", "/data/cat/1.png"))
    assert gone.message == "A file could not be read: /data/cat/1.png."
    assert "Data page" in gone.suggestion

    user = explain_error(UserError("dataset folder not found: /x"))
    assert (user.message, user.suggestion, user.detail) == ("dataset folder not found: /x", "", "")

    try:
        raise ValueError("boom")
    except ValueError as exc:
        other = explain_error(exc)
    assert other.message.endswith("ValueError: boom") and "Traceback" in other.detail


def test_cuda_index_from_the_engine_device_text():
    assert [cuda_index(d) for d in ("cuda:1 (NVIDIA H100 80GB HBM3)", "cuda:0 (X)", "cuda", "cpu")] == [1, 0, 0, 0]


def test_run_folders(tmp_path):
    assert runs_root(tmp_path / "proj" / "p.tsproj") == (tmp_path / "proj" / "runs").resolve()
    import datetime as dt

    now = dt.datetime(2025, 1, 2, 3, 4, 5)
    first = new_run_dir(tmp_path, now=now)
    assert first == tmp_path / "20250102-030405"
    first.mkdir()
    assert new_run_dir(tmp_path, now=now) == tmp_path / "20250102-030405-2"
    assert not has_checkpoint(first)
    (first / "checkpoint_last.pt").write_bytes(b"x")
    assert has_checkpoint(first)


def test_batch_events_are_throttled_and_per_batch_losses_recovered(qtbot, monkeypatch):
    """1,000 engine batch events become a few chunks, and the per-batch loss curve is exact."""
    monkeypatch.setattr("transfer_studio.ui.train_worker.BATCH_EMIT_INTERVAL", 0.05)
    worker = TrainWorker(Project(), None, Path("unused"), False)
    chunks = []
    epochs = []
    worker.batches.connect(chunks.append)
    worker.epochEnded.connect(lambda ev: epochs.append((len(chunks), ev.epoch)))
    rng = np.random.default_rng(0)
    steps = 500
    losses = rng.uniform(0.5, 2.0, size=(2, steps))
    t0 = time.monotonic()
    for e in (1, 2):
        total = 0.0
        for s in range(1, steps + 1):
            total += losses[e - 1, s - 1]
            worker.on_event(BatchEnd(epoch=e, step=s, steps=steps, loss=total / s, accuracy=0.5,
                                     lr=1e-3 * s / steps, images_per_s=100.0))
            time.sleep(0.0002)
        worker.on_event(EpochEnd(epoch=e, epochs=2, train_loss=total / steps, train_accuracy=0.5,
                                 val_loss=None, val_accuracy=None, lr=1e-3, seconds=1.0, eta_s=0.0,
                                 is_best=True))
    elapsed = time.monotonic() - t0
    assert 2 <= len(chunks) <= elapsed / 0.05 + 4  # at most one per interval, plus each epoch's end
    x = np.concatenate([c.x for c in chunks])
    loss = np.concatenate([c.loss for c in chunks])
    lr = np.concatenate([c.lr for c in chunks])
    assert len(x) == 2 * steps
    np.testing.assert_allclose(x, np.concatenate([np.arange(1, steps + 1) / steps,
                                                  1 + np.arange(1, steps + 1) / steps]))
    np.testing.assert_allclose(loss, losses.ravel(), rtol=1e-9)
    np.testing.assert_allclose(lr[:steps], 1e-3 * np.arange(1, steps + 1) / steps)
    # every epoch's batches are delivered before its EpochEnd
    assert epochs[0][0] >= 1 and chunks[epochs[0][0] - 1].batch == steps
    assert chunks[-1].epoch == 2 and chunks[-1].batch == steps


def test_throttled_engine_events_become_interval_means(qtbot):
    """The engine sends a running epoch mean every ~100 ms: each point is the mean since the last."""
    worker = TrainWorker(Project(), None, Path("unused"), False)
    chunks = []
    worker.batches.connect(chunks.append)
    per_batch = [4.0, 2.0, 2.0, 1.0, 1.0, 1.0]
    sent = {2: None, 5: None, 6: None}  # the engine reported after batches 2, 5 and 6
    total = 0.0
    for s, v in enumerate(per_batch, start=1):
        total += v
        if s in sent:
            worker.on_event(BatchEnd(epoch=1, step=s, steps=6, loss=total / s, accuracy=0.0, lr=0.1,
                                     images_per_s=1.0))
    worker._flush_batches()
    loss = np.concatenate([c.loss for c in chunks])
    np.testing.assert_allclose(loss, [3.0, 4.0 / 3.0, 1.0])


def test_qt_binding_keeps_references_to_none_and_true():
    """A training run emits signals and runs slots hundreds of thousands of times. PySide6 6.12.0 on
    Python 3.11 drops a reference to True on every Signal.emit and to None on every slot call or
    processEvents: after a few thousand the interpreter aborts ("bool_dealloc"/"none_dealloc") —
    the live charts crashed the app within minutes. 6.11.3 does not; pin a good release."""
    import sys

    from PySide6.QtCore import QCoreApplication, QObject, Signal

    class Emitter(QObject):
        sig = Signal(object)

    e = Emitter()
    e.sig.connect(lambda _v: None)
    none0, true0 = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(500):
        e.sig.emit(1)
        QCoreApplication.processEvents()
    assert sys.getrefcount(True) > true0 - 50
    assert sys.getrefcount(None) > none0 - 50


# -- the real engine on a thread (the page's tests cover start, pause, stop and resume) --------------
def test_shutdown_while_paused_ends_the_thread_with_the_gui_blocked(qtbot, tmp_path, monkeypatch):
    """Closing the window: stop + wait from the GUI thread must not need the event loop. And the run's
    network is garbage afterwards (the worker's garbage-collector tuning must not keep it alive)."""
    import gc
    import weakref

    from transfer_studio.training import loop

    models = []
    real_init = loop.Trainer.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        models.append(weakref.ref(self.model))

    monkeypatch.setattr(loop.Trainer, "__init__", init)
    controller = TrainController()
    outcomes = []
    controller.outcome.connect(outcomes.append)
    with qtbot.waitSignal(controller.batches, timeout=90000):
        controller.start(tiny_project(tmp_path, epochs=40, batch_size=2), tmp_path / "run")
    with qtbot.waitSignal(controller.paused, timeout=30000):
        controller.pause()
    assert controller.shutdown(30000)
    qtbot.waitUntil(lambda: not controller.is_running(), timeout=5000)
    assert outcomes and outcomes[-1].status == "stopped"
    gc.collect()
    assert len(models) == 1 and models[0]() is None


def test_engine_failure_is_explained(qtbot, tmp_path, controller, monkeypatch):
    """A CUDA-style out-of-memory in epoch 2 ends the run 'failed' with advice; epoch 1 stays valid."""
    from transfer_studio.training import loop

    real = loop.Trainer._train_epoch

    def train_epoch(self, e):
        if e == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real(self, e)

    monkeypatch.setattr(loop.Trainer, "_train_epoch", train_epoch)
    outcomes = []
    errors = []
    controller.outcome.connect(outcomes.append)
    controller.engineError.connect(errors.append)
    with qtbot.waitSignal(controller.finished, timeout=90000):
        controller.start(tiny_project(tmp_path, epochs=3), tmp_path / "run")
    out = outcomes[-1]
    assert out.status == "failed"
    assert "out of memory" in out.failure.message.lower()
    assert "batch size" in out.failure.suggestion
    assert errors and errors[0].message == out.failure.message
    assert torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)["epoch"] == 1
