"""Unit tests of the engine's parts: control, events delivery, schedules, sampling, RNG and files."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import random
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from transfer_studio import config
from transfer_studio.errors import UserError
from transfer_studio.training import checkpoint as ckpt
from transfer_studio.training import data as tdata
from transfer_studio.training import device as tdevice
from transfer_studio.training import events as ev
from transfer_studio.training import features, finetune
from transfer_studio.training.callbacks import Dispatcher, ProgressPrinter
from transfer_studio.training.control import Control
from transfer_studio.training.schedule import LRSchedule

# -- control -----------------------------------------------------------------------------------


def test_pause_blocks_until_resume_and_stop_wakes_a_paused_loop():
    c = Control()
    c.wait_while_paused()  # not paused: returns at once
    c.request_pause()
    assert c.pause_requested
    done = threading.Event()

    def waiter():
        c.wait_while_paused()
        done.set()

    threading.Thread(target=waiter, daemon=True).start()
    assert not done.wait(0.3)  # blocked while paused
    c.resume()
    assert done.wait(2.0)

    c.request_pause()
    done.clear()
    threading.Thread(target=waiter, daemon=True).start()
    assert not done.wait(0.2)
    c.request_stop()
    assert done.wait(2.0)
    assert c.stop_requested and not c.pause_requested


# -- events and callbacks ----------------------------------------------------------------------


def test_events_are_frozen_plain_data():
    e = ev.EpochEnd(epoch=1, epochs=3, train_loss=0.5, train_accuracy=0.8, val_loss=None,
                    val_accuracy=None, lr=1e-3, seconds=1.0, eta_s=2.0, is_best=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.epoch = 2  # type: ignore[misc]
    for value in dataclasses.asdict(e).values():
        assert value is None or isinstance(value, (int, float, str, bool, list))


def test_a_failing_callback_is_logged_and_does_not_stop_the_others(caplog):
    seen = []

    def broken(event):
        raise ValueError("boom")

    d = Dispatcher([broken, seen.append])
    with caplog.at_level(logging.ERROR, logger="transfer_studio.training"):
        d(ev.Notice("one"))
        d(ev.Notice("two"))
    assert [e.message for e in seen] == ["one", "two"]
    assert "boom" in caplog.text and "broken" in caplog.text
    assert d.failures == ["callback broken failed: ValueError: boom"]  # noted once, not per event


def test_progress_printer_prints_one_line_per_epoch(capsys):
    import io

    out = io.StringIO()
    p = ProgressPrinter(out, batches=False)
    p(ev.BatchEnd(epoch=1, step=1, steps=2, loss=1.0, accuracy=0.5, lr=1e-3, images_per_s=10.0))
    p(ev.EpochEnd(epoch=1, epochs=2, train_loss=0.5, train_accuracy=0.75, val_loss=0.4, val_accuracy=0.9,
                  lr=1e-3, seconds=1.5, eta_s=1.5, is_best=True))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("epoch 1/2") and "val_acc 0.900" in lines[0] and lines[0].endswith("*")


# -- schedules ---------------------------------------------------------------------------------


def test_cosine_warms_up_then_decays_towards_zero():
    s = LRSchedule("cosine", 0, 4, warmup_epochs=1)
    steps = 10
    f = [s.factor(e, i, steps) for e in range(4) for i in range(steps)]
    assert f[0] == pytest.approx(0.1)  # warm-up starts low, not at zero
    assert all(a < b for a, b in zip(f[:9], f[1:10], strict=True))  # rising during warm-up
    assert f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:-1], f[11:], strict=True))  # then decaying
    assert 0 < f[-1] < 0.01


def test_onecycle_peaks_then_anneals_and_phases_restart():
    s = LRSchedule("onecycle", 2, 6)
    f = [s.factor(e, i, 5) for e in range(2, 6) for i in range(5)]
    peak = int(np.argmax(f))
    assert 0 < peak < len(f) - 1
    assert f[0] < 0.2 and f[-1] < 0.02 and max(f) == pytest.approx(1.0)
    # a phase's schedule depends only on progress: same numbers whatever the step counter history
    assert s.factor(3, 2, 5) == LRSchedule("onecycle", 2, 6).factor(3, 2, 5)
    assert LRSchedule("none", 0, 3).factor(2, 4, 5) == 1.0
    with pytest.raises(UserError):
        LRSchedule("linear", 0, 3)


# -- sampling and seeds ------------------------------------------------------------------------


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = tdata.EpochBatchSampler(10, 4, seed=3)
    b = tdata.EpochBatchSampler(10, 4, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)
    flat = [i for batch in a for i, _ in batch]
    assert sorted(flat) == list(range(10))  # a permutation
    seeds = [s for batch in a for _, s in batch]
    assert len(set(seeds)) == 10  # every sample its own augmentation seed


def test_single_sample_trailing_batch_is_dropped_for_training_only():
    train = tdata.EpochBatchSampler(9, 4, seed=0)
    assert [len(b) for b in train] == [4, 4] and len(train) == 2
    val = tdata.EpochBatchSampler(9, 4, seed=0, shuffle=False)
    assert [len(b) for b in val] == [4, 4, 1] and len(val) == 3
    assert [i for b in val for i, _ in b] == list(range(9))


def test_balanced_sampling_draws_classes_evenly():
    labels = [0] * 90 + [1] * 10
    s = tdata.EpochBatchSampler(100, 100, seed=0, weights=tdata.balanced_weights(labels, 2))
    drawn = [labels[i] for b in s for i, _ in b]
    assert 35 <= sum(drawn) <= 65  # ~50 of the minority class instead of ~10


def test_class_weights_are_inverse_frequency():
    w = tdata.class_weights([30, 10])
    assert w.tolist() == pytest.approx([40 / 60, 40 / 20])
    assert tdata.class_weights([5, 5]).tolist() == [1.0, 1.0]


def test_seeded_dataset_makes_augmentation_reproducible():
    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.rand(2) + random.random(), i

    ds = tdata.SeededDataset(Noisy())
    first = ds[(1, 123)][0]
    torch.rand(5)  # disturb the global generators
    random.random()
    assert torch.equal(ds[(1, 123)][0], first)
    assert not torch.equal(ds[(1, 124)][0], first)


def test_rng_state_roundtrip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    ckpt.save_checkpoint(tmp_path / "c.pt", {"rng": ckpt.rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    state = torch.load(tmp_path / "c.pt", weights_only=True)  # loads without unpickling code
    ckpt.set_rng_state(state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_corrupt_or_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="never finished its first epoch"):
        ckpt.load_checkpoint(tmp_path / "checkpoint_last.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot be read"):
        ckpt.load_checkpoint(bad)


def test_full_disk_while_checkpointing_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint_last.pt"
    ckpt.save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(config.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(OSError) as info:
        ckpt.save_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    state = ckpt.load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_last.pt"]  # no temp file left


def test_best_weights_are_plain_safetensors_even_for_channels_last_and_tied_weights(tmp_path):
    from safetensors.torch import load_file

    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    m(torch.zeros(1, 3, 5, 5))
    m = m.to(memory_format=torch.channels_last)
    tied = nn.Linear(2, 2)
    m.add_module("tied", tied)
    m.add_module("tied_again", tied)
    ckpt.save_weights(tmp_path / "best.safetensors", m, {"epoch": "3"})
    loaded = load_file(tmp_path / "best.safetensors")
    assert set(loaded) == set(m.state_dict())
    assert torch.equal(loaded["0.weight"], m.state_dict()["0.weight"])


# -- device ------------------------------------------------------------------------------------


def test_device_selection_and_precision_on_this_machine():
    assert tdevice.select_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            tdevice.select_device("cuda")
        assert tdevice.select_device("auto").type in ("cpu", "mps")
    with pytest.raises(UserError, match="unknown device"):
        tdevice.select_device("tpu")
    assert tdevice.choose_precision(torch.device("cpu")).name == "fp32"
    cuda = torch.device("cuda")
    assert not tdevice.loader_settings(torch.device("cpu"), cores=2).pin_memory
    s = tdevice.loader_settings(cuda, cores=16)
    assert s.num_workers == 8 and s.pin_memory and s.persistent_workers
    assert tdevice.loader_settings(torch.device("cpu"), cores=2).num_workers == 0
    assert tdevice.loader_settings(torch.device("cpu"), requested_workers=3).num_workers == 3


# -- BatchNorm and caching on hand-made networks -----------------------------------------------


class Tiny(nn.Module):
    def __init__(self, post: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.BatchNorm2d(4, affine=False))
        self.head = nn.Linear(4, 2)
        self.post = post

    def forward(self, x):
        x = self.body(x).mean((2, 3))
        x = self.head(x)
        return x * 2 if self.post else x


def test_frozen_batchnorm_stays_in_eval_after_train():
    m = Tiny()
    for p in m.body.parameters():
        p.requires_grad_(False)
    frozen = finetune.frozen_batchnorms(m)
    assert frozen == [m.body[1], m.body[3]]  # the affine-free BN follows its frozen parent
    before = {k: v.clone() for k, v in m.state_dict().items()}
    finetune.train_mode(m)
    assert m.training and m.head.training
    assert not m.body[1].training and not m.body[3].training
    m(torch.randn(4, 3, 6, 6)).sum().backward()
    for k in ("body.1.running_mean", "body.1.running_var", "body.3.running_mean", "body.1.num_batches_tracked"):
        assert torch.equal(m.state_dict()[k], before[k]), k
    # a trainable BN keeps learning its statistics
    m.body[1].weight.requires_grad_(True)
    assert m.body[1] not in finetune.frozen_batchnorms(m)


def test_cacheable_head_found_only_when_it_produces_the_output():
    m = Tiny()
    for p in m.body.parameters():
        p.requires_grad_(False)
    x = torch.zeros(2, 3, 6, 6)
    assert features.find_cacheable_head(m, x) == "head"
    feats, labels = features.extract(m, m.head, [(x, torch.tensor([0, 1]))], device=torch.device("cpu"),
                                     autocast=lambda: torch.autocast("cpu", enabled=False))
    assert feats.shape == (2, 4) and labels.tolist() == [0, 1]
    m.eval()
    assert torch.allclose(m.head(feats), m(x))  # the cached input reproduces the network's output
    assert features.find_cacheable_head(_post_model(), x) is None  # output is head(x) * 2


def _post_model():
    m = Tiny(post=True)
    for p in m.body.parameters():
        p.requires_grad_(False)
    return m


def test_param_groups_skip_decay_for_biases():
    m = Tiny()
    groups = finetune.param_groups(m, {"head.weight", "head.bias"}, lr=0.1, weight_decay=0.01, role="head")
    assert [(len(g["params"]), g["weight_decay"], g["role"]) for g in groups] == [(1, 0.01, "head"),
                                                                                   (1, 0.0, "head")]
    assert groups[0]["base_lr"] == 0.1


def test_derive_seed_is_stable_and_mixed():
    assert tdata.derive_seed(0, 1, 2) == tdata.derive_seed(0, 1, 2)
    assert len({tdata.derive_seed(0, e, 1) for e in range(50)}) == 50
    assert 0 <= tdata.derive_seed(2**40, -1) < 2**63


def test_pause_wait_does_not_spin(monkeypatch):
    c = Control()
    c.request_pause()
    threading.Timer(0.3, c.resume).start()
    t0 = time.perf_counter()
    c.wait_while_paused()
    assert 0.25 <= time.perf_counter() - t0 < 2.0


def test_auxiliary_classifier_outputs_add_down_weighted_losses():
    from transfer_studio.training.loop import AUX_LOSS_WEIGHT, _with_aux_loss

    crit = nn.CrossEntropyLoss()
    y = torch.tensor([0, 1])
    main, aux = torch.randn(2, 3), torch.randn(2, 3)
    logits, loss = _with_aux_loss((main, aux, None), y, crit)
    assert logits is main
    assert loss.item() == pytest.approx((crit(main, y) + AUX_LOSS_WEIGHT * crit(aux, y)).item())


@pytest.mark.parametrize("field, value, message", [
    ("lr", "fast", "learning rate"), ("epochs", 2.5, "epochs"), ("scheduler", "step", "scheduler"),
    ("balance", "oversample", "balance"), ("label_smoothing", 1.0, "label smoothing"),
    ("cache_passes", -1, "cache_passes"), ("batch_size", True, "batch size"),
])
def test_bad_training_settings_are_named_in_one_message(field, value, message):
    from transfer_studio.config import Project
    from transfer_studio.training.engine import validate_train_spec

    project = Project()
    validate_train_spec(project)  # the defaults are valid
    setattr(project.train, field, value)
    with pytest.raises(UserError, match=message):
        validate_train_spec(project)
