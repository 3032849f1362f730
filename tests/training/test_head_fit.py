"""The head phase fits the new head to convergence on cached features (LP of LP-FT), with its
regularisation chosen by cross-validation on the training images only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.images import make_digits_folder
from helpers.training import Recorder, make_project
from sklearn.linear_model import LogisticRegression

from transfer_studio.training import events as ev
from transfer_studio.training import fit, probe
from transfer_studio.training.backbone import BackboneFeatures
from transfer_studio.training.data import prepare_split


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """10 classes x 16 handwritten digits: features of a random-init network separate them only
    partly, so an unconverged head shows."""
    return make_digits_folder(tmp_path_factory.mktemp("digits") / "d", per_class=16, size=32)


def _features(project, part):
    split = prepare_split(project)
    bb = BackboneFeatures.of(project, len(split.classes))
    x, _ = bb.features(split.root, split.split[part])
    return x, torch.as_tensor(split.labels[part])


def test_probe_fit_reaches_the_logistic_regression_optimum():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 40, generator=g) * 3 + 1
    y = (x[:, :3].sum(1) > 3).long() + (x[:, 3] > 1).long()
    p = probe.fit(x, y, 3, c=0.5)
    s = probe.feature_scale(x)
    sk = LogisticRegression(C=0.5, tol=1e-10, max_iter=100_000).fit((x / s).numpy(), y.numpy())
    # the same objective, so the same minimiser: weights in scaled units agree closely
    assert np.allclose(p.weight.numpy() * s, sk.coef_, atol=2e-3)
    assert np.allclose(p.bias.numpy(), sk.intercept_, atol=2e-3)


def test_cross_validation_chooses_from_the_grid_with_out_of_fold_scores():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(90, 16, generator=g)
    y = torch.arange(90) % 3
    x[:, 0] += y * 2.0
    cv = probe.cross_validate(x, y, 3)
    assert cv.c in probe.C_GRID and cv.folds == 5 and cv.images == 90
    assert 0.5 < cv.accuracy <= 1.0 and cv.accuracy_se > 0


def test_head_only_run_matches_a_converged_logistic_regression_probe(digits, tmp_path):
    project = make_project(digits, strategy="head", epochs=2, cache_features=True, cache_passes=0)
    project.augment.preset = "none"
    result = fit(project, run_dir=tmp_path / "run")
    assert result.status == "finished" and result.cached_features

    xtr, ytr = _features(project, "train")
    xva, yva = _features(project, "val")
    baseline = LogisticRegression(C=1.0, max_iter=10_000).fit(xtr.numpy(), ytr.numpy())
    base_acc = float((baseline.predict(xva.numpy()) == yva.numpy()).mean())
    ours = max(h["val_accuracy"] for h in result.history)
    assert ours >= base_acc - 0.02, (ours, base_acc)
    assert any("chosen by 5-fold cross-validation" in n for n in result.notes)


@pytest.mark.parametrize("strategy", ["partial", "full"])
def test_fine_tuning_starts_from_a_head_fitted_to_convergence(digits, tmp_path, strategy):
    rec = Recorder()
    project = make_project(digits, strategy=strategy, epochs=2, head_epochs=1, warmup_epochs=0.5)
    project.augment.preset = "none"
    result = fit(project, [rec], run_dir=tmp_path / "run")
    assert result.status == "finished"
    assert [h["phase"] for h in result.history] == ["probe", "unfrozen" if strategy == "partial" else "full"]
    phases = rec.of(ev.PhaseChanged)
    assert [p.phase for p in phases][:2] == ["head", "unfrozen" if strategy == "partial" else "full"]
    assert "fitting the new head to convergence" in phases[0].description

    # after the probe epoch the head is the cross-validated logistic regression on the cached features
    xtr, ytr = _features(project, "train")
    cv = probe.cross_validate(xtr, ytr, 10, seed=0)
    p = probe.fit(xtr, ytr, 10, cv.c)
    train_acc = float((probe.logits(p, xtr).argmax(1) == ytr).float().mean())
    assert result.history[0]["train_accuracy"] == pytest.approx(train_acc, abs=0.02)
    assert result.history[0]["lr"] is None and result.history[1]["lr"] > 0


def test_the_steepest_rate_is_not_picked_from_noise_at_the_start():
    """A glyph folder's range test: the first steps wobbled by as much as the real fall a decade later,
    and the point-wise gradient picked 1e-6 (the first rate), which left the head frozen while the
    body fine-tuned: the run collapsed to chance."""
    lrs = np.logspace(-6, -1, 100)
    fall = 1.8 - 0.35 / (1 + np.exp(-(np.log10(lrs) + 2.5) * 3))  # falls around 3e-3
    wobble = np.where(np.arange(100) < 6, [0.0, -0.05, 0.04, -0.03, 0.02, 0.0] + [0.0] * 94, 0.0)[:100]
    losses = list(fall + wobble)
    losses[-5:] = [2.0, 2.5, 3.0, 4.0, 6.0]  # diverging at the end
    rate = probe.steepest(list(lrs), losses)
    assert 1e-3 < rate < 1e-2
