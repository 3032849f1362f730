"""Interrupting a run: stop, pause, exact resume, out of memory, a full disk."""

from __future__ import annotations

import errno
import os
import threading

import pytest
import torch
from helpers.training import Recorder, make_project

from transfer_studio import config
from transfer_studio.training import Control, fit
from transfer_studio.training import events as ev
from transfer_studio.training import loop as tloop


@pytest.fixture(autouse=True)
def _every_batch_event(monkeypatch):
    monkeypatch.setattr(tloop, "BATCH_EVENT_INTERVAL", 0.0)


def _weights(run_dir):
    return torch.load(run_dir / "checkpoint_last.pt", weights_only=True)["model"]


def _stop_after_epoch(control: Control, n: int):
    def cb(e):
        if isinstance(e, ev.EpochEnd) and e.epoch == n:
            control.request_stop()

    return cb


@pytest.mark.parametrize("head_epochs", [1, 2], ids=["unfrozen-before-stop", "unfreeze-after-resume"])
def test_stopped_and_resumed_run_ends_with_the_same_weights(tiny_data, tmp_path, head_epochs):
    """Partial strategy, 3 epochs: stopping after epoch 2 and resuming gives bit-identical weights,
    whether the unfreeze step (new optimizer groups) came before the stop or comes after the resume."""
    def project():
        return make_project(tiny_data, strategy="partial", epochs=3, head_epochs=head_epochs,
                            warmup_epochs=0.5, label_smoothing=0.1)

    straight = fit(project(), run_dir=tmp_path / "straight")
    assert straight.status == "finished"

    control = Control()
    first = fit(project(), [_stop_after_epoch(control, 2)], control, run_dir=tmp_path / "split")
    assert first.status == "stopped" and first.epochs_completed == 2
    rec = Recorder()
    resumed = fit(None, [rec], run_dir=tmp_path / "split", resume=True)
    assert resumed.status == "finished" and resumed.epochs_completed == 3
    assert rec.of(ev.FitStart)[0].resumed and rec.of(ev.FitStart)[0].start_epoch == 3

    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    assert resumed.best_epoch == straight.best_epoch


def test_cached_head_only_run_resumes_exactly(tiny_data, tmp_path):
    """The resumed run rebuilds the same feature cache and restores the head from the checkpoint,
    the frozen backbone from frozen.safetensors."""
    def project():
        return make_project(tiny_data, strategy="head", epochs=3, cache_passes=2)

    straight = fit(project(), run_dir=tmp_path / "straight")
    control = Control()
    fit(project(), [_stop_after_epoch(control, 2)], control, run_dir=tmp_path / "split")
    resumed = fit(None, run_dir=tmp_path / "split", resume=True)
    assert straight.cached_features and resumed.cached_features and resumed.epochs_completed == 3
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "straight" / "best.safetensors"), load_file(tmp_path / "split" / "best.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in straight.history]


def test_best_weights_deferred_for_fast_epochs_are_written_at_the_end(tiny_data, tmp_path, monkeypatch):
    from safetensors import safe_open

    def best_epoch_on_disk():
        with safe_open(str(tmp_path / "run" / "best.safetensors"), "pt") as fh:
            return int(fh.metadata()["epoch"])

    monkeypatch.setattr(tloop, "BEST_WRITE_BUDGET", 0.0)  # any write counts as too slow ...
    monkeypatch.setattr(tloop, "BEST_MAX_DELAY", 1e9)  # ... and is never forced by age
    on_disk = {}
    control = Control()

    def watch(e):
        if isinstance(e, ev.CheckpointWritten):
            on_disk[e.epoch] = best_epoch_on_disk()
            if e.epoch == 3:
                control.request_stop()

    # uncached AdamW epochs: the validation loss improves over several epochs
    result = fit(make_project(tiny_data, strategy="head", epochs=5, lr=0.05, cache_features=False), [watch],
                 control, run_dir=tmp_path / "run")
    assert result.status == "stopped" and result.epochs_completed >= 3 and result.best_epoch > 1
    assert on_disk[1] == 1 and on_disk[2] == 1  # the first best is written at once, later ones deferred
    state = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)
    assert state["best_dirty"]  # the checkpoint knows best.safetensors lags ...
    assert best_epoch_on_disk() == result.best_epoch  # ... and the end of the run wrote it


def test_stop_is_honoured_within_one_batch_and_leaves_a_usable_checkpoint(tiny_data, tmp_path):
    control = Control()
    rec = Recorder()

    def stop_in_epoch_2(e):
        rec(e)
        if isinstance(e, ev.BatchEnd) and e.epoch == 2 and e.step == 1:
            control.request_stop()

    project = make_project(tiny_data, strategy="full", epochs=3, batch_size=4)  # 5 batches an epoch
    result = fit(project, [stop_in_epoch_2], control, run_dir=tmp_path / "run")
    assert result.status == "stopped" and result.epochs_completed == 1
    assert [b.step for b in rec.of(ev.BatchEnd) if b.epoch == 2] == [1]  # no batch after the request
    assert isinstance(rec.events[-1], ev.FitEnd)
    state = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]) == 1
    resumed = fit(None, run_dir=tmp_path / "run", resume=True)
    assert resumed.status == "finished" and [h["epoch"] for h in resumed.history] == [1, 2, 3]


def test_pause_blocks_the_loop_until_resumed(tiny_data, tmp_path):
    control = Control()
    rec = Recorder()

    def pause_once(e):
        rec(e)
        if isinstance(e, ev.BatchEnd) and e.epoch == 1 and e.step == 1:
            control.request_pause()
            threading.Timer(0.4, control.resume).start()

    result = fit(make_project(tiny_data, strategy="full", epochs=1, batch_size=4), [pause_once], control,
                 run_dir=tmp_path / "run")
    assert result.status == "finished"
    kinds = [type(e).__name__ for e in rec.events]
    i = kinds.index("Paused")
    assert kinds[i + 1] == "Resumed"
    assert (rec.events[i].epoch, rec.events[i].step) == (1, 2)  # paused before the second batch
    assert rec.of(ev.EpochEnd)[0].seconds < 5  # the pause is not counted as training time


def _oom_above(limit: int):
    """Make the network raise torch.OutOfMemoryError for batches larger than ``limit``."""
    from transfer_studio.core import network

    real = network.build_network

    def build(project, **kw):
        model = real(project, **kw)

        def hook(module, args):
            if args[0].shape[0] > limit:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        model.register_forward_pre_hook(hook)
        return model

    return network, build


def test_out_of_memory_ends_the_run_with_a_batch_size_suggestion(tiny_data, tmp_path, monkeypatch):
    network, build = _oom_above(4)
    monkeypatch.setattr(network, "build_network", build)
    rec = Recorder()
    result = fit(make_project(tiny_data, strategy="full", epochs=2, batch_size=8), [rec],
                 run_dir=tmp_path / "run")
    assert result.status == "failed"
    assert "out of memory" in result.message and "batch size 8" in result.message
    assert "smaller batch size, e.g. 4" in result.suggestion
    errors = rec.of(ev.Error)
    assert len(errors) == 1 and errors[0].message == result.message
    assert isinstance(rec.events[-1], ev.FitEnd)


def test_out_of_memory_retries_with_half_the_batch_when_allowed(tiny_data, tmp_path, monkeypatch):
    network, build = _oom_above(4)
    monkeypatch.setattr(network, "build_network", build)
    rec = Recorder()
    result = fit(make_project(tiny_data, strategy="full", epochs=2, batch_size=16, allow_oom_retry=True),
                 [rec], run_dir=tmp_path / "run")
    assert result.status == "finished" and result.batch_size == 4 and result.epochs_completed == 2
    assert [n.message for n in rec.of(ev.Notice) if "out of memory" in n.message] == [
        "out of memory at batch size 16: retrying with batch size 8",
        "out of memory at batch size 8: retrying with batch size 4"]
    assert config.Project.load(tmp_path / "run" / "project.json").train.batch_size == 4


def test_full_disk_at_a_checkpoint_keeps_the_previous_one_and_fails_clearly(tiny_data, tmp_path, monkeypatch):
    real_fdopen = os.fdopen
    armed = {"on": False}

    class FullDisk:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[: len(data) // 3])
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd, mode="r", *a, **k):
        fh = real_fdopen(fd, mode, *a, **k)
        return FullDisk(fh) if armed["on"] else fh

    monkeypatch.setattr(config.os, "fdopen", fdopen)
    rec = Recorder()

    def arm_in_epoch_2(e):
        rec(e)
        if isinstance(e, ev.BatchEnd) and e.epoch == 2:
            armed["on"] = True

    project = make_project(tiny_data, strategy="full", epochs=3)
    result = fit(project, [arm_in_epoch_2], run_dir=tmp_path / "run")
    armed["on"] = False
    assert result.status == "failed"
    assert "the disk is full" in result.message
    assert "resume" in result.suggestion and "epoch 1 is intact" in result.suggestion
    assert result.epochs_completed == 1  # the last durable epoch
    assert rec.of(ev.Error) and isinstance(rec.events[-1], ev.FitEnd)
    state = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)
    assert state["epoch"] == 1
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    # once there is space again the run resumes from epoch 1's checkpoint
    resumed = fit(None, run_dir=tmp_path / "run", resume=True)
    assert resumed.status == "finished" and resumed.epochs_completed == 3
