"""The freezing-strategy advisor: choice by data size, time estimate and step-down, applying it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from transfer_studio.config import Project, SurgeryOp
from transfer_studio.core import strategy
from transfer_studio.core.dataset import ScanReport, scan
from transfer_studio.core.strategy import apply_suggestion, resolve_device, similarity_probe, suggest
from transfer_studio.core.surgery import apply_ops, ordered_blocks
from transfer_studio.errors import UserError

AMPLE = 1e9  # hours: never the limiting factor
RESNET18_BLOCKS = ["conv1", "bn1", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1",
                   "layer4.0", "layer4.1", "fc"]


def _report(per_class: int, classes: int = 10, size: int = 64) -> ScanReport:
    """A scan result held in memory (counts only): the advisor never opens the files."""
    names = [f"class_{i}" for i in range(classes)]
    return ScanReport(
        root="/nonexistent", layout="flat", classes=names, counts={c: per_class for c in names}, split_counts={},
        num_images=per_class * classes, skipped=[], duplicates=[], warnings=[],
        image_size_range={"min_width": size, "min_height": size, "max_width": size, "max_height": size},
        imbalance=1.0,
    )


@pytest.mark.parametrize(("per_class", "approach", "name"), [(20, 1, "head"), (200, 2, "partial"), (2000, 3, "full")])
def test_choice_by_data_size_with_real_block_names(per_class: int, approach: int, name: str) -> None:
    s = suggest(_report(per_class), "resnet18", device="cpu", time_budget_hours=AMPLE, throughput_gflops=50)
    assert (s.approach, s.name, s.stepped_down, s.data_choice) == (approach, name, False, approach)
    assert s.frozen + [b for b in s.trainable if b not in s.frozen] == RESNET18_BLOCKS
    assert set(s.frozen).isdisjoint(s.trainable)
    assert f"about {per_class:,} images per class" in s.reason
    assert s.time_budget_hours == AMPLE and s.estimated_hours == s.estimates_hours[name] > 0
    if name == "head":
        assert s.trainable == ["fc"] and s.unfreeze_from is None and s.augment == "none"
        assert "only a new output layer" in s.reason
    elif name == "partial":
        assert s.unfreeze_from == s.trainable[0] and s.unfreeze_from.startswith(("layer3", "layer4"))
        assert "conv1" in s.frozen and "layer1.0" in s.frozen and s.trainable[-1] == "fc"
        assert s.unfreeze_from in s.reason and s.body_lr_factor < 1
    else:
        assert s.frozen == [] and s.unfreeze_from is None and "whole network" in s.reason


def test_other_families_get_their_own_block_names() -> None:
    s = suggest(_report(200), "efficientnet_lite0", device="cpu", time_budget_hours=AMPLE, throughput_gflops=50)
    assert s.name == "partial" and s.unfreeze_from.startswith("_blocks.") and s.trainable[-1] == "_fc"
    assert s.frozen[:2] == ["_conv_stem", "_bn0"]
    vit = suggest(_report(20), "vit_b_16", device="cpu", time_budget_hours=AMPLE, throughput_gflops=50)
    assert vit.trainable == ["heads.head"] and "encoder.layers.encoder_layer_0" in vit.frozen


def test_more_data_trains_more_blocks() -> None:
    shares = [len(suggest(_report(n), "resnet18", device="cpu", time_budget_hours=AMPLE,
                          throughput_gflops=50).trainable) for n in (100, 300, 700)]
    assert shares == sorted(shares) and shares[0] < shares[-1]


def test_few_images_in_total_means_head_even_with_many_per_class() -> None:
    s = suggest(_report(150, classes=2), "resnet18", device="cpu", time_budget_hours=AMPLE, throughput_gflops=50)
    assert s.name == "head"


def test_time_estimate_scales_with_throughput_and_strategy() -> None:
    report = _report(2000, size=8)  # tiny images: decoding is negligible next to the network
    slow = suggest(report, "resnet18", device="cpu", time_budget_hours=AMPLE, throughput_gflops=10)
    fast = suggest(report, "resnet18", device="cpu", time_budget_hours=AMPLE, throughput_gflops=100)
    h = slow.estimates_hours
    assert h["head"] < h["partial"] < h["full"]
    assert fast.estimates_hours["full"] == pytest.approx(h["full"] / 10, rel=0.05)
    # full: epochs x (train images x forward x (1 + backward) + val images x forward)
    forward = 2 * 1.814e9 / 10e9
    expected = slow.epochs * (16000 * forward * (1 + strategy.BACKWARD_FACTOR) + 4000 * forward) / 3600
    assert h["full"] == pytest.approx(expected, rel=0.05)


def test_steps_down_when_over_the_time_budget() -> None:
    report = _report(2000)
    ample = suggest(report, "resnet18", device="cpu", time_budget_hours=AMPLE, throughput_gflops=50)
    est = ample.estimates_hours
    between = (est["partial"] + est["full"]) / 2
    one = suggest(report, "resnet18", device="cpu", time_budget_hours=between, throughput_gflops=50)
    assert (one.name, one.stepped_down, one.data_choice) == ("partial", True, 3)
    assert "steps down to partial" in one.reason and f"{between:g} h budget" in one.reason
    assert one.estimated_hours <= between and one.unfreeze_from is not None
    tight = suggest(report, "resnet18", device="cpu", time_budget_hours=est["head"] * 1.5, throughput_gflops=50)
    assert tight.name == "head" and tight.stepped_down and "steps down to head" in tight.reason
    hopeless = suggest(report, "resnet18", device="cpu", time_budget_hours=est["head"] / 10, throughput_gflops=50)
    assert hopeless.name == "head" and "over the" in hopeless.reason and "faster device" in hopeless.reason


def test_default_budget_is_shown() -> None:
    s = suggest(_report(20), "resnet18", device="cpu", throughput_gflops=50)
    assert s.time_budget_hours == strategy.DEFAULT_TIME_BUDGET_HOURS


def test_bad_arguments() -> None:
    with pytest.raises(UserError, match="time budget"):
        suggest(_report(20), "resnet18", device="cpu", time_budget_hours=0, throughput_gflops=50)
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(UserError):
        suggest(_report(20), "resnet_18_typo", device="cpu", throughput_gflops=50)


def test_the_similarity_probe_informs_but_does_not_change_the_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    """It moved the sample from head to partial: 19 min for 85.0% instead of 2 min for 86.3%. The
    cross-validated probe on the training images measures what it tried to guess (docs/strategy.md)."""
    def fake_probe(similar: bool):
        return lambda report, model: {"images": 64, "mean_confidence": 0.6 if similar else 0.05,
                                      "threshold": 0.15, "similar": similar}

    for n in (20, 50, 200):
        plain = suggest(_report(n), "resnet18", device="cpu", time_budget_hours=AMPLE, throughput_gflops=50)
        monkeypatch.setattr(strategy, "similarity_probe", fake_probe(False))
        other = suggest(_report(n), "resnet18", device="cpu", time_budget_hours=AMPLE, probe=True,
                        throughput_gflops=50)
        assert (other.name, other.unfreeze_from) == (plain.name, plain.unfreeze_from)
        assert other.probe["similar"] is False and "unlike the photos" in other.reason


def test_similarity_probe_tells_photos_from_digits(tmp_path, digits_folder) -> None:
    from sklearn.datasets import load_sample_images

    for name, img in zip(("china", "flower"), load_sample_images().images, strict=True):
        (tmp_path / "photos" / name).mkdir(parents=True)
        Image.fromarray(np.asarray(img)).save(tmp_path / "photos" / name / f"{name}.jpg")
    photos = similarity_probe(scan(tmp_path / "photos"), "efficientnet_lite0", n=2)
    digits = similarity_probe(scan(digits_folder), "efficientnet_lite0", n=4)
    assert photos["images"] == 2 and digits["images"] == 4
    assert digits["mean_confidence"] < strategy.PROBE_SIMILAR_CONFIDENCE <= photos["mean_confidence"]
    assert photos["similar"] and not digits["similar"]


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory: pytest.TempPathFactory):
    from helpers.images import make_digits_folder

    return make_digits_folder(tmp_path_factory.mktemp("digits"), per_class=4, size=32)


def _project(ops: list[SurgeryOp]) -> Project:
    p = Project()
    p.model.name = "resnet18"
    p.surgery = list(ops)
    return p


def test_apply_suggestion_writes_settings_and_replaces_freeze_ops() -> None:
    keep = [SurgeryOp("replace_head", params={"num_classes": 10}),
            SurgeryOp("insert_after", "layer4", {"layer": {"type": "Dropout", "p": 0.1}})]
    project = _project([SurgeryOp("freeze", "layer1"), keep[0], SurgeryOp("unfreeze", "layer1.0"), keep[1]])
    s = suggest(_report(200), "resnet18", device="cpu", time_budget_hours=AMPLE, throughput_gflops=50)
    apply_suggestion(project, s)
    t = project.train
    assert (t.strategy, t.unfreeze_from, t.lr, t.body_lr_factor, t.epochs, t.batch_size) == (
        "partial", s.unfreeze_from, s.lr, s.body_lr_factor, s.epochs, s.batch_size)
    assert project.augment.preset == s.augment
    assert project.surgery == [SurgeryOp("freeze_before", s.unfreeze_from), *keep]

    # The ops really freeze what the suggestion lists (on the real architecture).
    from torchvision.models import resnet18

    model = apply_ops(resnet18(), project.surgery, (1, 3, 64, 64))
    modules = dict(model.named_modules())
    for block in s.frozen:
        assert not any(p.requires_grad for p in modules[block].parameters()), block
    for block in s.trainable:
        assert all(p.requires_grad for p in modules[block].parameters()), block

    head = suggest(_report(20), "resnet18", device="cpu", time_budget_hours=AMPLE, throughput_gflops=50)
    apply_suggestion(project, head)
    assert project.surgery == [SurgeryOp("freeze", "*"), *keep] and project.train.unfreeze_from is None
    full = suggest(_report(2000), "resnet18", device="cpu", time_budget_hours=AMPLE, throughput_gflops=50)
    apply_suggestion(project, full)
    assert project.surgery == keep and project.train.strategy == "full"
    assert ordered_blocks(resnet18())[-1] == "fc"


def test_apply_suggestion_refuses_another_model() -> None:
    s = suggest(_report(20), "resnet18", device="cpu", time_budget_hours=AMPLE, throughput_gflops=50)
    project = Project()
    project.model.name = "efficientnet_lite0"
    with pytest.raises(UserError, match="for resnet18"):
        apply_suggestion(project, s)


def test_measured_forward_time_is_cached() -> None:
    seconds, source = strategy.forward_seconds("mobilenet_v3_small", "cpu", 0.057e9)
    assert seconds > 0 and source in ("measured", "estimated")
    assert strategy.forward_seconds("mobilenet_v3_small", "cpu", 0.057e9) == (seconds, source)
    peak, _ = strategy.device_peak_flops("cpu")
    assert peak > 1e8  # any CPU multiplies faster than 0.1 GFLOP/s


def _evidence(cv: float) -> strategy.Evidence:
    return strategy.Evidence(train_images=400, cv_accuracy=cv, cv_se=0.02, c=1.0, folds=5)


@pytest.mark.parametrize(("per_class", "cv", "approach"), [
    (10, 0.95, 1),  # too few images per class to fine-tune, however good the features
    (39, 0.99, 1),
    (40, 0.99, 2),  # good features and 40 per class: partial fine-tuning paid on the photo rows
    (40, 0.50, 1),  # features that barely separate the classes: fine-tuning lost on the glyph rows
    (40, 0.88, 1),  # the digits sample: 10 minutes of partial ended at the fitted head's accuracy
    (150, 0.40, 1),
    (150, 0.90, 2),
    (2000, 0.40, 3),  # beyond every benchmark row the count rule stands
])
def test_the_evidence_rules(per_class: int, cv: float, approach: int) -> None:
    """docs/strategy.md's rules: the probe's cross-validated accuracy and the images per class decide
    (the old rule sent every high-accuracy probe to head; partial beat it on photos at 40/class)."""
    assert strategy.choose_approach(per_class, per_class * 5, _evidence(cv)) == approach
    s = suggest(_report(per_class, classes=5), "resnet18", device="cpu", time_budget_hours=AMPLE,
                throughput_gflops=50, evidence=_evidence(cv))
    assert s.approach == approach and s.data_choice == strategy._data_choice(per_class, per_class * 5)
    assert f"gets {cv:.0%} of your training images right" in s.reason
    if per_class >= strategy.FT_MIN_PER_CLASS and cv < strategy.PROBE_WEAK and approach == 1:
        assert "do not tell your classes apart well enough" in s.reason


def test_the_fitted_head_fine_tunes_at_1_to_10x_the_body_rate() -> None:
    """A range test's 1e-6 left the head frozen while the body fine-tuned at 1e-4: collapse to chance;
    its 1.7e-2 on the sample threw the fitted head off (train loss 0.003 -> 2.9)."""
    ev = _evidence(0.9)
    ev.lr = 1e-6
    plans = strategy.plans_for(_report(100, classes=5), "resnet18", "cpu", ev)
    for a in (2, 3):
        assert plans[a].lr >= strategy.BODY_LR and plans[a].body_lr_factor <= 1
    ev.lr = 5e-4
    assert strategy.plans_for(_report(100, classes=5), "resnet18", "cpu", ev)[2].lr == pytest.approx(5e-4)
    ev.lr = 1.7e-2  # the sample's range test: a fresh layer's rate throws the fitted head off
    assert strategy.plans_for(_report(100, classes=5), "resnet18", "cpu", ev)[2].lr == strategy.FT_HEAD_LR_MAX
