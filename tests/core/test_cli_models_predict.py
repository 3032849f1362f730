"""`transfer-studio models` and `transfer-studio predict`, in process: one JSON document, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from transfer_studio.cli import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_models_json(capsys):
    code, out, _err = _run(capsys, "models", "--json")
    assert code == 0
    models = json.loads(out)  # exactly one JSON document: json.loads rejects trailing data
    by_name = {m["name"]: m for m in models}
    for m in models:
        assert {"name", "family", "params", "gflops", "imagenet_top1", "weights_available_offline", "source"} <= set(m)
    torchvision = [m for m in models if m["source"] == "torchvision"]
    assert len(torchvision) > 70
    assert not any(m["weights_available_offline"] for m in torchvision)  # the tests' TORCH_HOME is empty
    lite = by_name["efficientnet_lite0"]
    assert lite["source"] == "bundled" and lite["weights_available_offline"] is True
    assert lite["family"] == "efficientnet_lite" and lite["preprocess"]["mean"] == [0.5, 0.5, 0.5]
    assert by_name["resnet50"]["params"] == 25_557_032 and by_name["resnet50"]["imagenet_top1"] == 80.858


def test_models_table(capsys):
    code, out, _err = _run(capsys, "models")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["MODEL", "FAMILY", "SOURCE", "PARAMS", "GFLOPS", "TOP-1", "INPUT", "OFFLINE"]
    lite = next(line for line in lines if line.startswith("efficientnet_lite0 "))
    assert lite.split() == ["efficientnet_lite0", "efficientnet_lite", "bundled", "4.7M", "0.39", "75.1", "224", "yes"]
    resnet = next(line for line in lines if line.startswith("resnet18 "))
    assert resnet.split()[-1] == "no"
    # Aligned: every row starts its SOURCE column at the same offset.
    offset = lines[0].index("SOURCE")
    assert lite[offset:].startswith("bundled") and resnet[offset:].startswith("torchvision")
    assert lines[-1].startswith("81 models, 1 with weights available offline")
    code, out, _ = _run(capsys, "models", "--offline", "--json")
    assert [m["name"] for m in json.loads(out)] == ["efficientnet_lite0"]


@pytest.fixture(scope="module")
def photo_paths(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("photos")
    data = load_sample_images()
    paths = []
    for name, img in zip(data.filenames, data.images, strict=True):
        path = root / Path(name).name
        Image.fromarray(img).save(path, quality=95)
        paths.append(str(path))
    return paths


def test_predict_json_on_the_sample_photos(capsys, photo_paths):
    code, out, _err = _run(capsys, "predict", "efficientnet_lite0", *photo_paths, "--top-k", "3", "--json")
    assert code == 0
    results = json.loads(out)
    assert [r["image"] for r in results] == photo_paths
    for r in results:
        assert len(r["top_k"]) == 3
        probs = [e["probability"] for e in r["top_k"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
        assert all(set(e) == {"label", "index", "probability"} for e in r["top_k"])
    flower = results[1]["top_k"][0]
    assert (flower["label"], flower["index"]) == ("daisy", 985)


def test_predict_human_output(capsys, photo_paths):
    code, out, _err = _run(capsys, "predict", "efficientnet_lite0", photo_paths[1], "--top-k", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == photo_paths[1] and len(lines) == 3
    assert lines[1].strip().endswith("daisy (985)") and lines[1].strip()[0].isdigit()


def test_predict_random_weights(capsys, photo_paths):
    code, out, _ = _run(capsys, "predict", "squeezenet1_1", photo_paths[0], "--weights", "none", "--json")
    assert code == 0
    assert len(json.loads(out)[0]["top_k"]) == 5


@pytest.mark.parametrize("argv, expected", [
    (["predict", "resnt18", "IMG"], "unknown model 'resnt18': did you mean resnet18"),
    (["predict", "efficientnet_lite0", "nope.jpg"], "image not found: nope.jpg"),
    (["predict", "efficientnet_lite0", "IMG", "--top-k", "0"], "--top-k must be 1 or more"),
    (["predict", "resnet18", "IMG"], "pretrained weights for resnet18 are not available offline: expected "),
    (["predict", "squeezenet1_1", "IMG", "--weights", "missing.pth"], "weights file not found: missing.pth"),
    (["predict", "efficientnet_lite0", "BAD"], "broken.png"),
    (["models", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, photo_paths, argv, expected):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    argv = [photo_paths[0] if a == "IMG" else str(bad) if a == "BAD" else a for a in argv]
    code, out, err = _run(capsys, *argv, "--json")
    assert code == 2 and out == ""
    if argv[0] == "models":  # argparse prints its usage line first
        err = err.strip().splitlines()[-1] + "\n"
    assert expected in _one_error_line(err)
