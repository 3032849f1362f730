"""The advisor's evidence: invariance checks that decide flips, timed trials behind the time
estimate (stubbed here: the benchmark checks the real ones), and explicit values that win over Auto."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers.training import make_project
from PIL import Image, ImageDraw

from transfer_studio.config import Project, mark_user_set
from transfer_studio.core import dataset
from transfer_studio.core import strategy as core_strategy
from transfer_studio.training import advice, trial


def _arrows(root, per_class=24, size=48, seed=0):
    """Arrows pointing left, right or up, in random colours and places: a horizontal flip turns a
    'left' into a 'right' (the class changes); 'up' survives it."""
    rng = np.random.default_rng(seed)
    for name in ("left", "right", "up"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            bg = tuple(int(v) for v in rng.integers(0, 100, 3))
            fg = tuple(int(v) for v in rng.integers(155, 256, 3))
            img = Image.new("RGB", (size, size), bg)
            d = ImageDraw.Draw(img)
            cx, cy = (size / 2 + rng.uniform(-6, 6) for _ in range(2))
            r = size * rng.uniform(0.25, 0.35)
            shapes = {"right": [(cx - r, cy - r), (cx + r, cy), (cx - r, cy + r)],
                      "left": [(cx + r, cy - r), (cx - r, cy), (cx + r, cy + r)],
                      "up": [(cx - r, cy + r), (cx, cy - r), (cx + r, cy + r)]}
            d.polygon(shapes[name], fill=fg)
            img.save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def arrows(tmp_path_factory):
    return _arrows(tmp_path_factory.mktemp("arrows") / "a")


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    from helpers.images import make_class_folder

    return make_class_folder(tmp_path_factory.mktemp("colours") / "c", {"red": 24, "green": 24, "blue": 24},
                             size=48)


def _project(root) -> Project:
    p = make_project(root, strategy="auto", epochs=3)
    p.model.weights = "DEFAULT"  # invariances need features that see shapes: pretrained
    p.model.name = "efficientnet_lite0"
    p.train.image_size = 64
    p.train.batch_size = 16
    return p


def test_a_flip_that_changes_the_class_is_left_out_of_the_augmentation(arrows):
    project = _project(arrows)
    evidence = advice.gather(project, dataset.scan(arrows), trials=False)
    hflip = evidence.invariances["hflip"]
    assert not hflip["preserves"] and hflip["drop"] > 0.03, hflip
    for approach in (2, 3):
        plan = core_strategy.plans_for(dataset.scan(arrows), "efficientnet_lite0", "cpu", evidence)[approach]
        assert plan.augment_params == {"hflip": {"enabled": False}}
        assert "mirroring left-right changes what the images show" in plan.augment_reason


def test_a_flip_that_keeps_the_classes_stays(colours):
    project = _project(colours)
    evidence = advice.gather(project, dataset.scan(colours), trials=False)
    assert evidence.invariances["hflip"]["preserves"] and evidence.invariances["rotate"]["preserves"]
    assert evidence.cv_accuracy > 0.9
    plan = core_strategy.plans_for(dataset.scan(colours), "efficientnet_lite0", "cpu", evidence)[2]
    assert plan.augment_params == {} and "Kept: mirroring left-right and rotating" in plan.augment_reason
    assert 1e-5 < evidence.lr < 1 and len(evidence.lr_curve["lrs"]) == len(evidence.lr_curve["losses"]) > 10


def _fake_compute(calls):
    def compute(project, strategy, num_classes, **kw):
        calls.append(strategy)
        per = {"head": 0.0, "partial": 0.01, "full": 0.03}[strategy]
        return trial.Compute(train_s=per, eval_s=0.004, feature_s=0.004, build_s=0.5, warmup_s=0.2, state_bytes=1000,
                             spread=1.2, batch_size=kw.get("batch_size") or 16, device="cpu")
    return compute


def test_time_estimates_come_from_the_timed_trial(colours, monkeypatch):
    calls = []
    monkeypatch.setattr(trial, "compute", _fake_compute(calls))
    # loading is timed for real otherwise: on a busy machine its noise moved the ratio below
    monkeypatch.setattr(trial, "loading", lambda *a, **k: trial.Loading(train_s=0.002, eval_s=0.001, images=24))
    s = advice.advise(_project(colours), dataset.scan(colours))
    assert sorted(calls) == ["full", "head", "partial"] and s.estimate_source == "trial"
    est = s.evidence["timings"]
    assert est["head"]["seconds"] < est["partial"]["seconds"] < est["full"]["seconds"]
    for name, e in est.items():
        assert sum(e["parts"].values()) == pytest.approx(e["seconds"], abs=0.05), name
    # fine-tuning costs the per-image step times the images and epochs: 3x the step, ~3x the part
    ratio = est["full"]["parts"]["fine-tuning"] / est["partial"]["parts"]["fine-tuning"]
    assert 1.5 < ratio < 3.0
    assert json.loads(json.dumps(s.__dict__, default=str))["estimated_seconds"] == s.estimated_seconds
    lo, hi = s.estimate_range_s
    assert lo < s.estimated_seconds < hi
    assert "timed on a few real training steps" in s.reason


def test_the_head_estimate_counts_the_converged_fit_per_fitted_pass_and_cheap_cached_epochs():
    """The head phase fits over the clean pass and every augmented one (rows, and time, grow with
    the passes), and its cached epochs cost milliseconds, not an image epoch's bookkeeping. With a
    0.5 s start constant and the fit left out, 10-per-class head runs took 0.69-0.87x and
    150-500-per-class ones up to 1.3x their estimates (bench_advisor)."""
    comp = trial.Compute(train_s=0.01, eval_s=0.004, feature_s=0.004, build_s=0.2, warmup_s=0.05,
                         state_bytes=3 * 1000, spread=1.2, batch_size=32, device="cpu", model_bytes=15_000_000)
    load = trial.Loading(train_s=0.002, eval_s=0.001, images=24)
    common = dict(comp=comp, load=load, n_train=400, n_val=100, epochs=5, cached_train=400, cached_val=100,
                  cv_s=2.0, fit_s=1.0, workers=0, device=torch.device("cpu"), write_rate=150e6)
    plain = trial.estimate(strategy="head", head_epochs=0, augment_passes=0, **common)
    augmented = trial.estimate(strategy="head", head_epochs=0, augment_passes=2, **common)
    assert plain.parts["head fit"] == pytest.approx(3.0, abs=0.01)
    assert augmented.parts["head fit"] == pytest.approx(2.0 + 3 * 1.0, abs=0.01)
    assert augmented.parts["features"] == pytest.approx(2 * 400 * (0.004 + 0.002), abs=0.01)
    # start: build, warm-up, the run's own files (frozen weights in, best weights out)
    assert plain.parts["setup"] == pytest.approx(0.2 + 0.05 + trial.START_S + (15e6 - 1000 + 15e6) / 150e6, abs=0.01)
    assert plain.parts["checkpoints"] < 0.1
    partial = trial.estimate(strategy="partial", head_epochs=2, augment_passes=2, **common)
    # partial's head phase fits the clean pass only; its 3 image epochs pay the full bookkeeping
    assert partial.parts["head fit"] == pytest.approx(3.0, abs=0.01)
    assert partial.parts["checkpoints"] == pytest.approx(
        2 * trial.CACHED_EPOCH_OVERHEAD_S + 3 * trial.EPOCH_OVERHEAD_S + 5 * 3000 / 150e6, abs=1e-3)
    assert partial.parts["fine-tuning"] == pytest.approx(3 * (400 * 0.012 + 100 * 0.005), rel=1e-3)


def test_trials_are_cached_on_disk(colours, monkeypatch):
    measured = []
    real = trial._measure

    def counting(*a, **kw):
        measured.append(a[1])
        return real(*a, **kw)

    monkeypatch.setattr(trial, "_measure", counting)
    p = _project(colours)
    first = trial.compute(p, "head", 3, batch_size=16)
    again = trial.compute(p, "head", 3, batch_size=16)
    assert measured == ["head"] and first == again and first.eval_s > 0
    assert json.loads(trial.cache_file().read_text())


def test_explicit_values_win_over_auto_and_older_projects_migrate(tmp_path):
    report = dataset.ScanReport(root="/x", layout="flat", classes=["a", "b"], counts={"a": 300, "b": 300},
                                split_counts={}, num_images=600, skipped=[], duplicates=[], warnings=[],
                                image_size_range={}, imbalance=1.0)
    s = core_strategy.suggest(report, "resnet18", device="cpu", time_budget_hours=1e9, throughput_gflops=50)
    p = Project()
    p.model.name = "resnet18"
    p.train.epochs, p.train.lr = 5, 0.05
    mark_user_set(p.train, "epochs", "lr")
    kept = core_strategy.apply_suggestion(p, s)
    assert kept == ["epochs", "lr"] and (p.train.epochs, p.train.lr) == (5, 0.05)
    assert p.train.batch_size == s.batch_size and p.train.strategy == s.name
    core_strategy.apply_suggestion(p, s, override_user=True)  # "Apply this suggestion": an explicit choice
    assert (p.train.epochs, p.train.lr, p.train.user_set) == (s.epochs, s.lr, [])

    # a schema-1 file: values that differ from the defaults were set by someone and stay
    old = Project().to_dict()
    old["schema_version"] = 1
    del old["train"]["user_set"]
    old["train"].update(epochs=5, batch_size=32)
    old["surgery"] = [{"op": "freeze", "target": "layer1", "params": {}}]
    path = tmp_path / "old.tsproj"
    path.write_text(json.dumps(old))
    loaded = Project.load(path)
    assert loaded.schema_version == 2 and loaded.train.user_set == ["epochs", "freeze"]


def test_train_project_runs_the_values_the_app_saved(tiny_data, tmp_path):
    """`train --project` with strategy auto: the saved (explicit) epochs run, not the advisor's."""
    p = make_project(tiny_data, strategy="auto", epochs=2, cache_features=False)
    mark_user_set(p.train, "epochs")
    path = tmp_path / "p.tsproj"
    p.save(path)
    out = subprocess.run([sys.executable, "-m", "transfer_studio", "train", "--project", str(path), "--json",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["epochs_completed"] == 2 and "kept your own epochs" in out.stderr
