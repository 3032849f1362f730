"""Evaluation: the numbers against scikit-learn, the choice of images, and the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers.images import make_class_folder
from run_factory import make_run
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from transfer_studio.cli import main
from transfer_studio.config import Project
from transfer_studio.core import export
from transfer_studio.core.augment import build_transform
from transfer_studio.core.imageio import load_rgb
from transfer_studio.core.metrics import compute_metrics, evaluate
from transfer_studio.core.network import project_preprocess
from transfer_studio.errors import Cancelled, UserError

SIX = {c: 6 for c in ("ant", "bee", "cat", "dog", "eel", "fox")}


def _check_against_sklearn(labels, probs, classes, got):
    pred = probs.argmax(1)
    k = list(range(len(classes)))
    assert got["accuracy"] == pytest.approx(accuracy_score(labels, pred))
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=k, zero_division=0)
    for i, name in enumerate(classes):
        m = got["per_class"][name]
        assert (m.precision, m.recall, m.f1, m.support) == pytest.approx((p[i], r[i], f[i], s[i]))
    assert np.array_equal(np.asarray(got["confusion_matrix"]), confusion_matrix(labels, pred, labels=k))
    if len(classes) >= 5:
        assert got["top5"] == pytest.approx(top_k_accuracy_score(labels, probs, k=5, labels=k))
    else:
        assert got["top5"] is None


def test_compute_metrics_matches_sklearn_including_empty_classes():
    rng = np.random.default_rng(1)
    classes = [f"c{i}" for i in range(7)]
    labels = rng.integers(0, 6, 200)  # class c6 never occurs
    logits = rng.normal(size=(200, 7)) + 2.0 * np.eye(7)[labels]
    logits[:, 5] -= 10.0  # class c5 is never predicted: precision 0 by convention
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    got = compute_metrics(labels, probs, classes, [f"img{i}.png" for i in range(200)], worst=4)
    _check_against_sklearn(labels, probs, classes, got)
    assert got["per_class"]["c5"].precision == 0.0 and got["per_class"]["c6"].support == 0
    # The most confidently wrong images, most confident first, and only wrong ones.
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != labels)
    best = wrong[np.argsort(-probs[wrong, pred[wrong]])][:4]
    assert [w.path for w in got["worst"]] == [f"img{i}.png" for i in best]
    assert all(w.label != w.predicted for w in got["worst"])
    assert got["worst"][0].probability == pytest.approx(probs[best[0], pred[best[0]]])


def test_compute_metrics_three_classes_has_no_top5():
    labels = np.array([0, 1, 2, 2])
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3]])
    got = compute_metrics(labels, probs, ["a", "b", "c"], ["w", "x", "y", "z"])
    _check_against_sklearn(labels, probs, ["a", "b", "c"], got)
    assert got["accuracy"] == 0.5
    assert [(w.path, w.predicted) for w in got["worst"]] == [("x", "a"), ("z", "b")]


@pytest.fixture(scope="module")
def six_class_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("m6"), SIX, val=0.34, test=0.34, name="six")


def test_evaluate_run_defaults_to_test_split_and_matches_sklearn(six_class_run):
    calls = []
    report = evaluate(six_class_run, progress=lambda d, t: calls.append((d, t)))
    project = Project.load(six_class_run / "project.json")
    assert report.split == "test" and not report.optimistic and report.note == ""
    assert report.num_images == len(project.data.split["test"]) == len(report.paths)
    assert calls[-1] == (report.num_images, report.num_images)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    labels = report.labels
    # The labels are the images' folders; the probabilities are the model's on those very images.
    assert [project.data.classes[k] for k in labels] == [p.split("/")[-2] for p in report.paths]
    model, _ = export.load_run(six_class_run)
    tf = build_transform(project_preprocess(project), None, train=False)
    with torch.no_grad():
        x = torch.stack([tf(load_rgb(p)) for p in report.paths[:5]])
        expect = torch.softmax(model(x), 1).numpy()
    np.testing.assert_allclose(report.probabilities[:5], expect, atol=1e-5)
    assert len(set(report.predictions.tolist())) > 1, "fixture should give varied predictions"
    got = {"accuracy": report.accuracy, "top5": report.top5, "per_class": report.per_class,
           "confusion_matrix": report.confusion_matrix}
    _check_against_sklearn(labels, report.probabilities.astype(np.float64), report.classes, got)
    data = report.to_json()
    assert "probabilities" not in data and "paths" not in data
    json.dumps(data)


def test_evaluate_validation_split_is_flagged_optimistic(six_class_run):
    report = evaluate(six_class_run, split="val")
    assert report.split == "val" and report.optimistic and "optimistic" in report.note
    assert report.num_images == len(Project.load(six_class_run / "project.json").data.split["val"])


def test_evaluate_default_is_val_without_test_split(tmp_path):
    run = make_run(tmp_path, {"a": 5, "b": 5, "c": 5}, val=0.4)
    report = evaluate(run)
    assert report.split == "val" and report.optimistic and report.top5 is None
    with pytest.raises(UserError, match="no test images"):
        evaluate(run, split="test")


def test_evaluate_other_folder_checks_class_names(six_class_run, tmp_path):
    subset = make_class_folder(tmp_path / "subset", {"bee": 3, "fox": 4}, seed=5)
    report = evaluate(six_class_run, subset)
    assert report.split == "all" and report.num_images == 7 and not report.optimistic
    assert "4 of the model's 6 classes" in report.note
    assert [report.per_class[c].support for c in ("bee", "fox", "ant")] == [3, 4, 0]
    # The run's own data folder as DATA_DIR: training images included, and said so.
    own = evaluate(six_class_run, Project.load(six_class_run / "project.json").data.root)
    assert own.split == "all" and own.optimistic and "trained on" in own.note
    assert own.num_images == sum(SIX.values())
    wrong = make_class_folder(tmp_path / "wrong", {"bee": 2, "zebra": 2})
    with pytest.raises(UserError, match="does not know: zebra"):
        evaluate(six_class_run, wrong)
    with pytest.raises(UserError, match="without a split"):
        evaluate(six_class_run, subset, split="test")


def test_evaluate_split_layout_folder_and_unreadable_images(six_class_run, tmp_path):
    root = tmp_path / "pre"
    make_class_folder(root / "train", {"ant": 2, "cat": 2})
    make_class_folder(root / "val", {"ant": 3, "cat": 3}, seed=2)
    make_class_folder(root / "test", {"ant": 2, "cat": 2}, seed=3)
    assert evaluate(six_class_run, root).split == "test"
    report = evaluate(six_class_run, root, split="val")
    assert report.split == "val" and report.num_images == 6
    # An image that breaks after the scan is skipped and reported, never replaced by another.
    victim = sorted((root / "test" / "cat").iterdir())[0]
    report_before = evaluate(six_class_run, root)
    from transfer_studio.core import dataset

    real_scan = dataset.scan

    def scan_then_break(path, **kw):
        rep = real_scan(path, **kw)
        victim.write_bytes(b"not an image")
        return rep

    import unittest.mock as mock

    with mock.patch.object(dataset, "scan", scan_then_break):
        report = evaluate(six_class_run, root)
    assert report.num_images == report_before.num_images - 1
    assert [s.path for s in report.skipped] == [str(victim)]
    assert str(victim) not in report.paths


def test_evaluate_bundle_uses_its_source_run(six_class_run, tmp_path):
    run = tmp_path / "run_copy"
    shutil.copytree(six_class_run, run)
    bundle = tmp_path / "bundle"
    export.export_run(run, bundle, ("safetensors",))
    from_run, from_bundle = evaluate(run), evaluate(bundle)
    assert from_bundle.source_kind == "bundle" and from_bundle.split == "test"
    assert from_bundle.paths == from_run.paths
    np.testing.assert_allclose(from_bundle.probabilities, from_run.probabilities, atol=1e-6)
    # Once the run is gone the bundle needs a folder to evaluate on.
    shutil.rmtree(run)
    with pytest.raises(UserError, match="folder of labelled images instead"):
        evaluate(bundle)
    root = Project.load(six_class_run / "project.json").data.root
    assert evaluate(bundle, root).num_images == sum(SIX.values())


def test_evaluate_cancel_and_bad_sources(six_class_run, tmp_path):
    with pytest.raises(Cancelled):
        evaluate(six_class_run, cancel=lambda: True, batch_size=2)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="not available"):
            evaluate(six_class_run, device="cuda")
    with pytest.raises(UserError, match="neither a training run"):
        evaluate(tmp_path)
    with pytest.raises(UserError, match="not found"):
        evaluate(tmp_path / "nope")
    run = tmp_path / "half"
    run.mkdir()
    shutil.copy(six_class_run / "project.json", run / "project.json")
    with pytest.raises(UserError, match="no best.safetensors"):
        evaluate(run)


def test_cli_evaluate_json_and_table(six_class_run, capsys):
    assert main(["evaluate", str(six_class_run), "--split", "val", "--json", "--worst", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"split", "accuracy", "top5", "classes", "per_class", "confusion_matrix", "worst"}
    assert out["split"] == "val" and out["optimistic"] is True
    assert set(out["per_class"]["ant"]) == {"precision", "recall", "f1", "support"}
    assert len(out["worst"]) <= 3 and all(set(w) == {"path", "label", "predicted", "probability"}
                                          for w in out["worst"])
    assert sum(map(sum, out["confusion_matrix"])) == out["num_images"]

    assert main(["evaluate", str(six_class_run)]) == 0
    text = capsys.readouterr().out
    assert "test split" in text and "accuracy" in text and "precision" in text and "optimistic" not in text
    assert main(["evaluate", str(six_class_run), "--split", "val"]) == 0
    assert "optimistic" in capsys.readouterr().out

    assert main(["evaluate", str(six_class_run / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
