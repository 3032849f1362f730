"""fit() end to end on tiny folders: run files, events, strategies, caching, BatchNorm, balance."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.training import Recorder, make_project
from safetensors.torch import load_file

from transfer_studio.config import Project, mark_user_set
from transfer_studio.errors import UserError
from transfer_studio.training import events as ev
from transfer_studio.training import fit
from transfer_studio.training import loop as tloop


@pytest.fixture(autouse=True)
def _every_batch_event(monkeypatch):
    monkeypatch.setattr(tloop, "BATCH_EVENT_INTERVAL", 0.0)  # exact BatchEnd counts in these tests


def _backbone_state(model_state: dict, head_prefix: str) -> dict:
    return {k: v.clone() for k, v in model_state.items() if not k.startswith(head_prefix)}


def test_head_only_run_writes_a_complete_run_folder(tiny_data, tmp_path):
    rec = Recorder()
    project = make_project(tiny_data, strategy="head", epochs=3, cache_features=True, cache_passes=2)
    result = fit(project, [rec], run_dir=tmp_path / "run")

    assert result.status == "finished" and result.epochs_completed == 3
    assert result.strategy == "head" and result.cached_features
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.best_epoch in (1, 2, 3)
    best = result.history[result.best_epoch - 1]
    assert result.val_loss == best["val_loss"] == min(h["val_loss"] for h in result.history)
    assert any("plus 2 augmented version(s)" in n for n in result.notes)
    assert all(h["phase"] == "probe" and h["lr"] is None for h in result.history)  # fitted by L-BFGS

    run = tmp_path / "run"
    for name in ("project.json", "checkpoint_last.pt", "best.safetensors", "history.json", "run.json"):
        assert (run / name).is_file(), name
    snap = Project.load(run / "project.json")
    assert snap.data.classes == ["a", "b", "c"]
    assert sorted(snap.data.split) == ["test", "train", "val"] and len(snap.data.split["val"]) == 6
    assert snap.surgery[-1].op == "replace_head" and snap.surgery[-1].params["num_classes"] == 3
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert json.loads((run / "history.json").read_text()) == result.history

    state = torch.load(run / "checkpoint_last.pt", weights_only=True)  # no code is unpickled
    assert state["epoch"] == 3 and state["phase"] == 0
    assert {"model", "optimizer", "scheduler", "rng", "history", "best", "project", "split"} <= set(state)
    # the frozen backbone is written once; the per-epoch checkpoint holds only what trains (the head)
    frozen = load_file(run / "frozen.safetensors")
    assert set(state["model"]) == {"fc.weight", "fc.bias"} and not set(frozen) & set(state["model"])
    weights = load_file(run / "best.safetensors")
    assert set(weights) == set(frozen) | set(state["model"])
    assert (run / "checkpoint_last.pt").stat().st_size < 100_000

    # events: FitStart first, FitEnd last, one EpochEnd + CheckpointWritten per epoch, batches in between
    kinds = [type(e).__name__ for e in rec.events]
    assert kinds[0] == "FitStart" and kinds[-1] == "FitEnd"
    assert rec.of(ev.FitEnd)[0].result is not None
    assert [e.epoch for e in rec.of(ev.EpochEnd)] == [1, 2, 3]
    assert [e.epoch for e in rec.of(ev.CheckpointWritten)] == [1, 2, 3]
    start = rec.of(ev.FitStart)[0]
    assert start.cached_features and not rec.of(ev.BatchEnd)  # full-batch L-BFGS epochs: no batches
    assert rec.of(ev.PhaseChanged)[0].phase == "head"
    assert "fitting the new head to convergence" in rec.of(ev.PhaseChanged)[0].description
    assert rec.of(ev.EpochEnd)[-1].eta_s == 0


def test_head_only_training_changes_nothing_but_the_head_and_skips_the_backbone(tiny_data, tmp_path,
                                                                                 monkeypatch):
    """Later epochs on cached features never run the backbone; the frozen weights do not move."""
    from transfer_studio.core import network

    calls = {"n": 0}
    built = {}
    real = network.build_network

    def counting_build(project, **kw):
        model = real(project, **kw)
        model.conv1.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
        built["model"] = model
        built["before"] = {k: v.clone() for k, v in model.state_dict().items()}
        return model

    monkeypatch.setattr(network, "build_network", counting_build)
    epochs_seen = []

    def on_event(e):
        if isinstance(e, ev.EpochEnd):
            epochs_seen.append(calls["n"])

    project = make_project(tiny_data, strategy="head", epochs=3, cache_features=True, cache_passes=2)
    result = fit(project, [on_event], run_dir=tmp_path / "run")
    assert result.cached_features
    # epoch 1 built the cache (dry runs + 2 train passes + 1 val pass); epochs 2 and 3 ran no backbone
    assert epochs_seen[0] > 0 and epochs_seen[1] == epochs_seen[0] == epochs_seen[2]
    after = built["model"].state_dict()
    changed = {k for k in after if not torch.equal(after[k].cpu(), built["before"][k])}
    assert changed and all(k.startswith("fc.") for k in changed)


def test_frozen_batchnorm_running_stats_are_bit_identical_after_an_epoch(tiny_data, tmp_path, monkeypatch):
    """Uncached head-only training runs the backbone in train mode; its frozen BN must not move."""
    from transfer_studio.core import network

    built = {}
    real = network.build_network

    def keep(project, **kw):
        built["model"] = real(project, **kw)
        built["before"] = {k: v.clone() for k, v in built["model"].state_dict().items()}
        return built["model"]

    monkeypatch.setattr(network, "build_network", keep)
    project = make_project(tiny_data, strategy="head", epochs=1, cache_features=False)
    result = fit(project, run_dir=tmp_path / "run")
    assert result.status == "finished" and not result.cached_features
    after = built["model"].state_dict()
    bn_stats = [k for k in after if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(bn_stats) > 20
    for k in bn_stats:
        assert torch.equal(after[k], built["before"][k]), k
    assert not torch.equal(after["fc.weight"], built["before"]["fc.weight"])


def test_partial_strategy_unfreezes_after_the_head_epochs(tiny_data, tmp_path):
    rec = Recorder()
    project = make_project(tiny_data, strategy="partial", epochs=2, head_epochs=1, body_lr_factor=0.1)
    result = fit(project, [rec], run_dir=tmp_path / "run")
    assert result.status == "finished"
    phases = rec.of(ev.PhaseChanged)
    assert [(p.epoch, p.phase) for p in phases] == [(1, "head"), (2, "unfrozen")]
    assert phases[1].unfrozen and phases[1].trainable_params > phases[0].trainable_params
    state = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)
    roles = [g["role"] for g in state["optimizer"]["param_groups"]]
    assert roles[0] == "head" and "body" in roles and state["phase"] == 1


def test_full_strategy_trains_everything(tiny_data, tmp_path):
    rec = Recorder()
    result = fit(make_project(tiny_data, strategy="full", epochs=1), [rec], run_dir=tmp_path / "run")
    start = rec.of(ev.FitStart)[0]
    assert result.status == "finished" and start.trainable_params == start.total_params


def test_cache_passes_zero_says_augmentation_is_off(tiny_data, tmp_path):
    result = fit(make_project(tiny_data, strategy="head", epochs=1, cache_passes=0), run_dir=tmp_path / "r")
    assert result.cached_features
    assert any("cache_passes = 0: no augmented copies" in n for n in result.notes)


def test_imbalanced_classes_get_a_weighted_loss_or_a_balanced_sampler(imbalanced_data, tmp_path):
    result = fit(make_project(imbalanced_data, epochs=1), run_dir=tmp_path / "a")
    assert any("class-weighted loss" in n for n in result.notes)
    result = fit(make_project(imbalanced_data, epochs=1, balance="sampler", cache_features=False),
                 run_dir=tmp_path / "b")
    assert result.status == "finished" and any("balanced by sampling" in n for n in result.notes)


def test_bad_settings_are_user_errors_before_anything_trains(tiny_data, tmp_path):
    with pytest.raises(UserError, match="epochs"):
        fit(make_project(tiny_data, epochs=0), run_dir=tmp_path / "a")
    with pytest.raises(UserError, match="unfreeze_from"):
        fit(make_project(tiny_data, strategy="partial", unfreeze_from="no.such.block"), run_dir=tmp_path / "b")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA"):
            fit(make_project(tiny_data, device="cuda"), run_dir=tmp_path / "c")
    assert not (tmp_path / "a").exists()
    # an existing run is never overwritten by a new one
    fit(make_project(tiny_data, epochs=1), run_dir=tmp_path / "d")
    with pytest.raises(UserError, match="already holds a training run"):
        fit(make_project(tiny_data, epochs=1), run_dir=tmp_path / "d")


def test_a_failing_callback_does_not_kill_training(tiny_data, tmp_path, caplog):
    def broken(event):
        if isinstance(event, ev.BatchEnd):
            raise RuntimeError("progress bar exploded")

    # uncached: batches (and their events) run through the network
    result = fit(make_project(tiny_data, epochs=1, cache_features=False), [broken], run_dir=tmp_path / "run")
    assert result.status == "finished"
    assert any("progress bar exploded" in n for n in result.notes)
    assert "progress bar exploded" in caplog.text


def test_auto_strategy_takes_the_advisors_suggestion(tiny_data, tmp_path, monkeypatch):
    from transfer_studio.core import strategy

    def fake_suggest(report, model_name, **kw):
        assert report.classes == ["a", "b", "c"] and model_name == "shufflenet_v2_x0_5"
        return strategy.Suggestion(
            approach=2, name="partial", frozen=[], trainable=[], unfreeze_from="stage4", lr=2e-3,
            body_lr_factor=0.5, epochs=2, batch_size=6, augment="none", estimated_hours=0.0,
            time_budget_hours=1.0, stepped_down=False, reason="a test suggestion", model=model_name)

    monkeypatch.setattr(strategy, "suggest", fake_suggest)
    rec = Recorder()
    project = make_project(tiny_data, strategy="auto", epochs=5)
    mark_user_set(project.train, "epochs")  # typed by the user: Auto decides the rest
    result = fit(project, [rec], run_dir=tmp_path / "run")
    assert result.status == "finished" and result.strategy == "partial" and result.epochs_completed == 5
    assert any("auto strategy: partial (a test suggestion)" in n and "kept your own epochs" in n
               for n in result.notes)
    snap = Project.load(tmp_path / "run" / "project.json")
    assert (snap.train.strategy, snap.train.batch_size, snap.train.unfreeze_from) == ("partial", 6, "stage4")
    assert snap.augment.preset == "none"
    unfrozen = rec.of(ev.PhaseChanged)[-1]
    assert unfrozen.phase == "unfrozen" and unfrozen.unfrozen[0].startswith("stage4")
