"""The label-issue finder (issue 17.1): flipped labels are found, better than a plain baseline;
near-duplicates across classes and splits; the blockwise neighbour search equals brute force; the
command line; cancel."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.images import make_digits_folder
from helpers.labels import flip_labels, sklearn_baseline
from PIL import Image

from transfer_studio.cli import main
from transfer_studio.config import DataSpec, ModelSpec, Project, TrainSpec
from transfer_studio.core import dataset, label_issues
from transfer_studio.errors import Cancelled
from transfer_studio.training import label_check

MODEL = "efficientnet_lite0"  # the bundled pretrained network: real features, no download
SIZE = 64  # px: features of 200 images in under a second
FLIP_SHARE = 0.1
PRECISION_FLOOR = 0.7  # measured 0.75-0.85 over seeds on 200 digits (docs/labels.md)


def _project(root: Path, **data) -> Project:
    return Project(name="labels", model=ModelSpec(MODEL), data=DataSpec(root=str(root), **data),
                   train=TrainSpec(device="cpu", image_size=SIZE, num_workers=0))


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """200 digits (10 classes x 20), 10% of them moved into a wrong class folder on purpose:
    (the folder, {relpath now: true class})."""
    root = make_digits_folder(tmp_path_factory.mktemp("labels") / "digits", per_class=20, size=32)
    report = dataset.scan(root)
    labels = np.asarray(report.labels)
    wrong, flipped = flip_labels(labels, len(report.classes), FLIP_SHARE, seed=0)
    truth = {}
    for i in flipped:
        rel = report.files[i]
        new = f"{report.classes[wrong[i]]}/{Path(rel).name}"
        (root / rel).rename(root / new)
        truth[new] = report.classes[labels[i]]
    return root, truth


def test_flipped_labels_rank_first_and_beat_the_baseline(noisy) -> None:
    root, truth = noisy
    report = dataset.scan(root)
    result = label_check.check_labels(_project(root), report)
    m = len(truth)
    assert m == 20 and len(result.images) == 200
    assert [i.rank for i in result.images] == list(range(1, 201))
    top = result.images[:m]
    precision = sum(i.file in truth for i in top) / m
    assert precision >= PRECISION_FLOOR, [(i.file, i.given, i.suggested) for i in top]
    # ... and the suggestion is the true class for most of the flips it found
    found = [i for i in top if i.file in truth]
    assert sum(i.suggested == truth[i.file] for i in found) >= 0.8 * len(found)
    # confident learning's flags are mostly the flips too
    flagged = result.flagged
    assert flagged and sum(i.file in truth for i in flagged) >= 0.7 * len(flagged)

    # The plain baseline on the same features (read back from the feature store), ranked the same way.
    x, computed = label_check.image_features(_project(root), report.root, report.files, len(report.classes))
    assert computed == 0  # one pass of the backbone: the check stored them
    flipped = [k for k, f in enumerate(report.files) if f in truth]
    base = label_issues.precision_at(sklearn_baseline(x.numpy(), np.asarray(report.labels), 5, seed=0), flipped)
    assert precision > base, (precision, base)

    doc = result.to_json(limit=5)
    assert doc["num_images"] == 200 and len(doc["images"]) == 5 and doc["method"]["model"] == MODEL
    assert doc["method"]["features_computed"] == 200 and doc["method"]["folds"] == 5


@pytest.fixture(scope="module")
def with_duplicates(tmp_path_factory) -> Path:
    """3 digit classes x 10, plus an exact copy of a '0' filed under '1' and a larger JPEG copy
    of a '2' kept in '2'."""
    root = make_digits_folder(tmp_path_factory.mktemp("dups") / "d", per_class=30, size=32)
    for name in ("3", "4", "5", "6", "7", "8", "9"):
        shutil.rmtree(root / name)
    for name in ("0", "1", "2"):
        for extra in sorted((root / name).iterdir())[10:]:
            extra.unlink()
    shutil.copyfile(root / "0" / "0_000.png", root / "1" / "copy_of_0.png")
    with Image.open(root / "2" / "2_001.png") as img:  # the same picture, saved larger, as a JPEG
        img.resize((40, 40), Image.Resampling.BICUBIC).save(root / "2" / "2_001_larger.jpg", quality=90)
    return root


def test_near_duplicates_across_classes_and_across_the_split(with_duplicates) -> None:
    root = with_duplicates
    report = dataset.scan(root)
    train = [f for f in report.files if f != "2/2_001_larger.jpg"]
    project = _project(root, split={"train": train, "val": ["2/2_001_larger.jpg"]})
    result = label_check.check_labels(project, report)
    pairs = {(d.a, d.b): d for d in result.duplicates}
    assert set(pairs) == {("0/0_000.png", "1/copy_of_0.png"), ("2/2_001.png", "2/2_001_larger.jpg")}, pairs
    cross = pairs[("0/0_000.png", "1/copy_of_0.png")]
    assert cross.kind == "different classes" and cross.similarity > 0.999
    split = pairs[("2/2_001.png", "2/2_001_larger.jpg")]
    assert split.kind == "train and val" and split.label_a == split.label_b == "2"
    assert split.similarity >= label_issues.DUPLICATE_SIMILARITY
    # Two copies of one picture under different labels: one of them is wrong, and both look doubtful.
    ranked = [i.file for i in result.images]
    assert ranked.index("1/copy_of_0.png") < 5
    # Same-class pairs within one part are no finding.
    assert all(d.kind for d in result.duplicates)
    # A higher threshold than the resized copy's similarity keeps only the exact copy.
    strict = label_check.check_labels(project, report, duplicate_similarity=0.9999)
    assert [(d.a, d.b) for d in strict.duplicates] == [("0/0_000.png", "1/copy_of_0.png")]


def _brute_force(x: np.ndarray, k: int, threshold: float) -> tuple[np.ndarray, set[tuple[int, int]]]:
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    index = np.argsort(-s, axis=1, kind="stable")[:, :k]
    i, j = np.nonzero(np.triu(s >= threshold, 1))
    return index, set(zip(i.tolist(), j.tolist(), strict=True))


@pytest.mark.parametrize("block", [1, 7, 64, 10_000])
def test_blockwise_neighbour_search_equals_brute_force(block: int) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((230, 24)).astype(np.float32)
    x[100:110] = x[:10] + 0.05 * rng.standard_normal((10, 24)).astype(np.float32)  # near-duplicates
    x[200] = x[201]  # an exact one
    unit = label_issues.normalise(x)
    nb = label_issues.neighbours(unit, 6, threshold=0.95, block=block)
    index, pairs = _brute_force(unit, 6, 0.95)
    assert np.array_equal(nb.index, index)
    assert np.allclose(nb.similarity, np.take_along_axis(unit @ unit.T, index, 1), atol=1e-6)
    assert {tuple(p) for p in nb.pairs.tolist()} == pairs and len(nb.pairs) == len(pairs)
    assert {(k, 100 + k) for k in range(10)} | {(200, 201)} <= pairs
    assert all(i < j for i, j in nb.pairs.tolist())
    assert np.all(nb.pair_similarity >= 0.95)


def test_neighbour_search_checks_for_cancel_between_blocks() -> None:
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise Cancelled("stop")

    x = label_issues.normalise(np.random.default_rng(0).standard_normal((100, 8)))
    with pytest.raises(Cancelled):
        label_issues.neighbours(x, 3, block=10, check=check)
    assert len(calls) == 3


def test_check_labels_cli_json(noisy, capsys) -> None:
    root, truth = noisy
    code = main(["check-labels", str(root), "--model", MODEL, "--image-size", str(SIZE), "--device", "cpu",
                 "--json", "--top", "30"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)  # exactly one JSON document
    assert doc["num_images"] == 200 and len(doc["images"]) == 30 and doc["classes"] == [str(i) for i in range(10)]
    first = doc["images"][:20]
    assert sum(i["file"] in truth for i in first) >= PRECISION_FLOOR * 20
    assert {"file", "given", "suggested", "self_confidence", "rank", "flagged", "outlier"} <= set(first[0])
    assert doc["method"]["features_computed"] == 0  # the feature store had them


def test_check_labels_cli_human_output_and_bad_input(noisy, capsys) -> None:
    root, _ = noisy
    code = main(["check-labels", str(root), "--model", MODEL, "--image-size", str(SIZE), "--device", "cpu",
                 "--top", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "200 images, 10 classes" in out and "SUGGESTED" in out and "197 more, less doubtful" in out
    code = main(["check-labels", str(root), "--model", MODEL, "--similarity", "2"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "--similarity" in err and "Traceback" not in err


def test_cancel_stops_the_check(with_duplicates) -> None:
    root = with_duplicates
    report = dataset.scan(root)
    seen: list[int] = []
    with pytest.raises(Cancelled):
        # cancelled while the probes are fitted (after the features, at 80%)
        label_check.check_labels(_project(root), report, progress=lambda d, t: seen.append(d),
                                 cancel=lambda: bool(seen) and seen[-1] >= 800)
    assert seen and max(seen) < 1000
    with pytest.raises(Cancelled):
        label_check.check_labels(_project(root), report, cancel=lambda: True)
