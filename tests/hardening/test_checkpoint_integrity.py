"""Checkpoints carry a checksum; a damaged latest checkpoint falls back to the previous good one."""

from __future__ import annotations

import io
import os
import threading

import pytest
import torch
from helpers.training import Recorder, make_project

from transfer_studio.errors import UserError
from transfer_studio.training import Control, fit
from transfer_studio.training import checkpoint as ckpt
from transfer_studio.training import events as ev


def _payload(epoch: int) -> bytes:
    return ckpt.checkpoint_bytes({"epoch": epoch, "w": torch.arange(256, dtype=torch.float32) * epoch})


def _flip(path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_sealed_checkpoint_is_still_a_plain_torch_file(tmp_path):
    path = tmp_path / ckpt.CHECKPOINT
    ckpt.write_checkpoint(path, _payload(1))
    state = torch.load(path, weights_only=True)  # external tools keep reading it
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.arange(256.0))
    assert torch.load(path, weights_only=True, mmap=True)["epoch"] == 1
    assert ckpt.verify_seal(path.read_bytes()) is None


@pytest.mark.parametrize("where", [0.02, 0.3, 0.5, 0.9, 0.999])
def test_every_flipped_bit_is_detected(where):
    data = bytearray(ckpt.seal(_payload(1)))
    data[int(len(data) * where)] ^= 0x10
    assert ckpt.verify_seal(bytes(data)) is not None


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.99])
def test_a_truncated_checkpoint_is_detected(tmp_path, keep):
    sealed = ckpt.seal(_payload(1))
    path = tmp_path / ckpt.CHECKPOINT
    path.write_bytes(sealed[: int(len(sealed) * keep)])
    with pytest.raises(UserError, match="cannot be read|never finished"):
        ckpt.load_checkpoint(path)


def test_torch_alone_does_not_notice_a_flipped_bit_in_tensor_data():
    """Why the seal exists: torch.load happily returns a corrupted tensor."""
    payload = _payload(1)
    data = bytearray(payload)
    i = bytes(data).index(torch.tensor([100.0]).numpy().tobytes())
    data[i + 1] ^= 0x01
    loaded = torch.load(io.BytesIO(bytes(data)), weights_only=True)
    assert not torch.equal(loaded["w"], torch.arange(256.0))  # silently wrong ...
    assert ckpt.verify_seal(ckpt.seal(payload)) is None
    bad = bytearray(ckpt.seal(payload))
    bad[i + 1] ^= 0x01
    assert "checksum" in ckpt.verify_seal(bytes(bad))  # ... the seal catches it


def test_the_previous_checkpoint_is_kept_and_used_when_the_latest_is_damaged(tmp_path):
    path = tmp_path / ckpt.CHECKPOINT
    for epoch in (1, 2, 3):
        ckpt.write_checkpoint(path, _payload(epoch))
    assert torch.load(tmp_path / ckpt.PREVIOUS, weights_only=True)["epoch"] == 2
    assert os.stat(path).st_ino != os.stat(tmp_path / ckpt.PREVIOUS).st_ino  # separate files
    _flip(path)
    notes: list[str] = []
    state = ckpt.load_checkpoint(path, notes)
    assert state["epoch"] == 2
    assert len(notes) == 1 and "damaged" in notes[0] and "epoch 2" in notes[0]
    # the damaged file is set aside (never deleted) and the good one takes its place
    assert (tmp_path / (ckpt.CHECKPOINT + ckpt.DAMAGED_SUFFIX)).is_file()
    assert ckpt.load_checkpoint(path)["epoch"] == 2
    # the next write keeps epoch 2 as the previous one: a good file, not the damaged one
    ckpt.write_checkpoint(path, _payload(3))
    assert ckpt.load_checkpoint(tmp_path / ckpt.PREVIOUS)["epoch"] == 2


def test_a_missing_latest_checkpoint_falls_back_too(tmp_path):
    path = tmp_path / ckpt.CHECKPOINT
    ckpt.write_checkpoint(path, _payload(1))
    ckpt.write_checkpoint(path, _payload(2))
    path.unlink()
    notes: list[str] = []
    assert ckpt.has_checkpoint(tmp_path)
    assert ckpt.load_checkpoint(path, notes)["epoch"] == 1 and "missing" in notes[0]


def test_both_checkpoints_damaged_is_a_clear_error(tmp_path):
    path = tmp_path / ckpt.CHECKPOINT
    ckpt.write_checkpoint(path, _payload(1))
    ckpt.write_checkpoint(path, _payload(2))
    _flip(path)
    _flip(tmp_path / ckpt.PREVIOUS, 0.7)
    with pytest.raises(UserError, match="both damaged.*Start a new run"):
        ckpt.load_checkpoint(path)


def test_an_older_unsealed_checkpoint_still_loads(tmp_path):
    path = tmp_path / ckpt.CHECKPOINT
    path.write_bytes(_payload(4))  # written by a version without checksums
    assert ckpt.load_checkpoint(path)["epoch"] == 4


def _weights(run_dir):
    return ckpt.load_checkpoint(run_dir / ckpt.CHECKPOINT)["model"]


def test_resume_from_a_corrupted_checkpoint_uses_the_previous_one_and_ends_identical(tiny_data, tmp_path):
    """A 3-epoch run stopped after epoch 2; a bit flips in its checkpoint_last.pt. The resumed run
    starts from epoch 1's checkpoint (with a note), trains 2 and 3, and ends bit-identical to an
    uninterrupted run."""
    straight = fit(make_project(tiny_data, strategy="full", epochs=3), run_dir=tmp_path / "straight")
    control = Control()

    def stop_after_2(e):
        if isinstance(e, ev.EpochEnd) and e.epoch == 2:
            control.request_stop()

    first = fit(make_project(tiny_data, strategy="full", epochs=3), [stop_after_2], control,
                run_dir=tmp_path / "run")
    assert straight.status == "finished" and first.status == "stopped" and first.epochs_completed == 2
    _flip(tmp_path / "run" / ckpt.CHECKPOINT, 0.4)
    rec = Recorder()
    resumed = fit(None, [rec], run_dir=tmp_path / "run", resume=True)
    assert resumed.status == "finished" and resumed.epochs_completed == 3
    start = rec.of(ev.FitStart)[0]
    assert start.resumed and start.start_epoch == 2
    assert any("damaged" in n and "epoch 1" in n for n in start.notes)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "run")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]


def test_one_process_at_a_time_trains_a_run_folder(tiny_data, tmp_path):
    control = Control()
    started = threading.Event()
    holder = {}

    def cb(e):
        if isinstance(e, ev.FitStart):
            started.set()
            control.request_pause()

    t = threading.Thread(target=lambda: holder.setdefault(
        "r", fit(make_project(tiny_data, strategy="full", epochs=2), [cb], control, run_dir=tmp_path / "run")))
    t.start()
    try:
        assert started.wait(60)
        assert ckpt.is_locked(tmp_path / "run")
        with pytest.raises(ckpt.RunLocked, match="already being trained"), ckpt.run_lock(tmp_path / "run"):
            pass
    finally:
        control.request_stop()
        control.resume()
        t.join(60)
    assert holder["r"].status == "stopped"
    assert not ckpt.is_locked(tmp_path / "run")


def test_stale_temp_files_of_a_killed_write_are_removed_when_the_run_resumes(tiny_data, tmp_path):
    control = Control()

    def stop(e):
        if isinstance(e, ev.EpochEnd):
            control.request_stop()

    fit(make_project(tiny_data, strategy="full", epochs=2), [stop], control, run_dir=tmp_path / "run")
    stale = tmp_path / "run" / ".checkpoint_last.pt.0123abcd.tmp"
    stale.write_bytes(b"half a checkpoint")
    keep = tmp_path / "run" / "notes.tmp"  # not a name the app makes: left alone
    keep.write_text("mine")
    resumed = fit(None, run_dir=tmp_path / "run", resume=True)
    assert resumed.status == "finished"
    assert not stale.exists() and keep.read_text() == "mine"
