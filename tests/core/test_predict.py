"""Predictions: the bundled model on real photos, preprocessing, top-k results, sources and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images
from torch import nn

from transfer_studio.core import predict as predict_mod
from transfer_studio.core.catalog import Preprocess
from transfer_studio.core.predict import Predictor, preprocess_image
from transfer_studio.errors import UserError

# ImageNet classes a photo of a Chinese palace may fairly be called.
BUILDING_CLASSES = {"palace", "church", "castle", "monastery"}
DAISY = 985
IMAGENET_NORM = Preprocess(256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")


@pytest.fixture(scope="module")
def lite0() -> Predictor:
    return Predictor.from_catalog("efficientnet_lite0")


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    data = load_sample_images()
    return {name.rsplit("/", 1)[-1]: Image.fromarray(img) for name, img in zip(data.filenames, data.images,
                                                                                 strict=True)}


def test_bundled_model_recognises_the_sample_photos(lite0, photos, tmp_path):
    for name, image in photos.items():
        image.save(tmp_path / name, quality=95)
    results = lite0.predict_paths([str(tmp_path / "china.jpg"), str(tmp_path / "flower.jpg")], top_k=5)
    china, flower = results
    assert china["image"].endswith("china.jpg") and flower["image"].endswith("flower.jpg")
    assert BUILDING_CLASSES & {e["label"] for e in china["top_k"]}
    assert flower["top_k"][0]["index"] == DAISY and flower["top_k"][0]["label"] == "daisy"


def test_tf_lite_preprocessing_is_the_right_one(lite0, photos):
    # The weights expect mean = std = 0.5: with ImageNet statistics the daisy loses most of its certainty.
    ours = lite0.predict_images([photos["flower.jpg"]])[0, DAISY]
    imagenet = Predictor(lite0.model, IMAGENET_NORM, lite0.class_names).predict_images([photos["flower.jpg"]])
    assert ours > 1.5 * imagenet[0, DAISY]


def test_preprocess_resizes_shorter_side_crops_and_normalises():
    image = Image.new("RGB", (300, 150), (255, 0, 128))
    x = preprocess_image(image, Preprocess(resize=64, crop=48, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    assert x.shape == (3, 48, 48) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.ones(48, 48)) and torch.allclose(x[1], -torch.ones(48, 48))
    assert torch.allclose(x[2], torch.full((48, 48), 128 / 255 * 2 - 1), atol=1e-6)
    # Centre crop of a wide image keeps the middle: a left-half marker disappears, the centre stays.
    half = np.zeros((100, 400, 3), np.uint8)
    half[:, :100] = 255
    half[:, 180:220] = 200
    y = preprocess_image(Image.fromarray(half), Preprocess(100, 100, (0, 0, 0), (1, 1, 1)))
    assert y.max() < 0.9 and y[:, :, 50].mean() == pytest.approx(200 / 255, abs=0.02)


class _Fixed(nn.Module):
    """Scores from the image's mean red value: deterministic, so results can be checked exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([0.0, 1.0, 2.0, 3.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = x[:, 0].mean(dim=(1, 2))
        return red[:, None] * self.scale[None, :]


def test_predict_paths_top_k_order_and_caps(tmp_path):
    pre = Preprocess(8, 8, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    predictor = Predictor(_Fixed(), pre, ["a", "b", "c", "d"])
    paths = []
    for i, red in enumerate([255, 0] + [128] * 20):  # more images than one batch
        Image.new("RGB", (12, 10), (red, 0, 0)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    seen: list[tuple[int, int]] = []
    results = predictor.predict_paths(paths, top_k=9, progress=lambda d, t: seen.append((d, t)))
    assert [r["image"] for r in results] == [str(p) for p in paths]
    red = results[0]["top_k"]
    assert [e["label"] for e in red] == ["d", "c", "b", "a"]  # capped at 4 classes, most likely first
    expected = torch.softmax(torch.tensor([0.0, 1.0, 2.0, 3.0]), 0)
    assert [e["probability"] for e in red] == pytest.approx(expected.flip(0).tolist(), abs=1e-5)
    assert [e["index"] for e in red] == [3, 2, 1, 0]
    black = results[1]["top_k"]  # all scores equal: uniform, ties keep class order
    assert [e["index"] for e in black] == [0, 1, 2, 3] and black[0]["probability"] == pytest.approx(0.25)
    assert seen[-1] == (22, 22) and len(seen) == 2
    probs = predictor.predict_images([Image.new("RGB", (8, 8), (255, 0, 0))] * 3)
    assert probs.shape == (3, 4) and np.allclose(probs.sum(1), 1.0)
    with pytest.raises(UserError, match="top-k must be a positive"):
        predictor.predict_paths(paths, top_k=0)


def test_unreadable_image_is_named(tmp_path):
    predictor = Predictor(_Fixed(), Preprocess(8, 8, (0, 0, 0), (1, 1, 1)), list("abcd"))
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(UserError, match="broken.jpg"):
        predictor.predict_paths([good, bad])
    with pytest.raises(UserError, match="missing.png"):
        predictor.predict_paths([tmp_path / "missing.png"])


def test_class_names_must_match_the_outputs():
    predictor = Predictor(_Fixed(), Preprocess(8, 8, (0, 0, 0), (1, 1, 1)), ["a", "b"])
    with pytest.raises(UserError, match="outputs \\[4\\] scores but has 2 class names"):
        predictor.predict_images([Image.new("RGB", (8, 8))])


def test_from_source_dispatch(tmp_path, monkeypatch):
    from transfer_studio.core import export

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text("{}")
    loaded: list[str] = []

    def fake_load_bundle(path):
        loaded.append(str(path))
        return _Fixed(), {"classes": ["w", "x", "y", "z"]}

    monkeypatch.setattr(export, "load_bundle", fake_load_bundle)
    monkeypatch.setattr(export, "bundle_preprocess", lambda meta: Preprocess(8, 8, (0, 0, 0), (1, 1, 1)))
    for source in (str(bundle), str(bundle / "model.json")):
        predictor = Predictor.from_source(source)
        assert predictor.class_names == ["w", "x", "y", "z"] and not predictor.model.training
    assert loaded == [str(bundle), str(bundle)]
    with pytest.raises(UserError, match="--weights applies to catalog models"):
        Predictor.from_source(str(bundle), weights="none")
    with pytest.raises(UserError, match="folder without model.json"):
        Predictor.from_source(str(tmp_path))
    with pytest.raises(UserError, match="no bundle folder or catalog model named"):
        Predictor.from_source(str(tmp_path / "nothing" / "here"))
    with pytest.raises(UserError, match="unknown model 'resnet1000': did you mean"):
        Predictor.from_source("resnet1000")


def test_devices():
    assert predict_mod.resolve_device("cpu") == torch.device("cpu")
    assert predict_mod.resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(UserError, match="unknown device 'gpu0'"):
        predict_mod.resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            predict_mod.resolve_device("cuda")
