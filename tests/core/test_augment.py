"""Augmentation presets, editable parameters, transforms around the model's preprocessing, preview."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from transfer_studio.config import AugmentSpec
from transfer_studio.core.augment import (
    PRESETS,
    build_transform,
    preset_params,
    preview,
    resolve_params,
)
from transfer_studio.core.catalog import Preprocess
from transfer_studio.errors import UserError

PP = Preprocess(resize=40, crop=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _photo(seed: int = 0, w: int = 60, h: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (200, 30, 30)  # a left/right structure, so flips are visible
    arr[:, w // 2:] = (30, 30, 200)
    arr[: h // 3] += rng.integers(0, 50, (h // 3, w, 3), dtype=np.uint8)
    return Image.fromarray(arr)


def _names(t) -> list[str]:
    return [type(s).__name__ for s in t.transforms]


def test_presets_build_up_as_documented() -> None:
    enabled = {p: {k for k, v in preset_params(p).items() if v["fields"]["enabled"]["value"]} for p in PRESETS}
    assert enabled["none"] == set()
    assert enabled["light"] == {"random_resized_crop", "hflip"}
    assert enabled["medium"] == enabled["light"] | {"color_jitter", "rotation"}
    assert enabled["strong"] == enabled["medium"] | {"auto_augment", "random_erasing"}
    assert _names(build_transform(PP, AugmentSpec("strong"), train=True)) == [
        "RandomResizedCrop", "RandomHorizontalFlip", "RandomRotation", "ColorJitter", "TrivialAugmentWide",
        "ToImage", "ToDtype", "Normalize", "RandomErasing"]
    assert _names(build_transform(PP, AugmentSpec("none"), train=True)) == [
        "Resize", "CenterCrop", "ToImage", "ToDtype", "Normalize"]


def test_preset_params_describe_a_form() -> None:
    params = preset_params("medium")
    assert list(params) == ["random_resized_crop", "hflip", "vflip", "rotation", "color_jitter",
                            "auto_augment", "random_erasing"]
    for name, entry in params.items():
        assert entry["label"] and entry["help"], name
        for field_name, spec in entry["fields"].items():
            assert spec["type"] in ("bool", "float", "int", "choice") and spec["label"], (name, field_name)
            if spec["type"] in ("float", "int"):
                assert spec["min"] <= spec["value"] <= spec["max"], (name, field_name)
            if spec["type"] == "choice":
                assert spec["value"] in spec["choices"]
    assert params["color_jitter"]["fields"]["strength"]["value"] == 0.2
    params["color_jitter"]["fields"]["strength"]["value"] = 0.9  # a copy: editing it changes nothing
    assert preset_params("medium")["color_jitter"]["fields"]["strength"]["value"] == 0.2


def test_overrides_apply_and_are_checked() -> None:
    spec = AugmentSpec("light", {"color_jitter": {"enabled": True, "strength": 0.3}, "hflip": {"enabled": False}})
    values = resolve_params(spec)
    assert values["color_jitter"] == {"enabled": True, "strength": 0.3}
    t = build_transform(PP, spec, train=True)
    assert "ColorJitter" in _names(t) and "RandomHorizontalFlip" not in _names(t)
    jitter = t.transforms[_names(t).index("ColorJitter")]
    assert jitter.brightness == pytest.approx((0.7, 1.3))
    rand = build_transform(PP, AugmentSpec("strong", {"auto_augment": {"policy": "rand_augment", "magnitude": 5}}),
                           train=True)
    assert "RandAugment" in _names(rand) and rand.transforms[_names(rand).index("RandAugment")].magnitude == 5
    bad = [
        (AugmentSpec("extreme"), "unknown augmentation preset 'extreme'"),
        (AugmentSpec("light", {"blur": {"enabled": True}}), "unknown augmentation 'blur'"),
        (AugmentSpec("light", {"hflip": {"prob": 0.3}}), "has no setting 'prob'"),
        (AugmentSpec("light", {"hflip": {"p": 1.5}}), "between 0.0 and 1.0"),
        (AugmentSpec("light", {"hflip": {"enabled": "yes"}}), "true or false"),
        (AugmentSpec("light", {"auto_augment": {"num_ops": 2.5}}), "an integer"),
        (AugmentSpec("light", {"auto_augment": {"policy": "cutmix"}}), "must be one of"),
        (AugmentSpec("light", {"hflip": 0.5}), "object of field values"),
    ]
    for spec, message in bad:
        with pytest.raises(UserError, match=message):
            resolve_params(spec)


def test_eval_transform_uses_the_models_preprocessing() -> None:
    img = Image.new("RGB", (50, 70), (255, 128, 0))
    x = build_transform(PP, AugmentSpec("strong"), train=False)(img)  # eval ignores augmentation
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    expected = (torch.tensor([255, 128, 0]) / 255 - torch.tensor(PP.mean)) / torch.tensor(PP.std)
    assert torch.allclose(x[:, 16, 16], expected, atol=1e-5)
    assert build_transform(PP, None, train=False, image_size=48)(img).shape == (3, 48, 48)
    assert build_transform(PP, AugmentSpec("medium"), train=True, image_size=24)(img).shape == (3, 24, 24)
    with pytest.raises(UserError, match="too small"):
        build_transform(PP, None, train=False, image_size=2)


def test_train_transforms_are_picklable() -> None:
    img = _photo()
    for preset in PRESETS:
        t = build_transform(PP, AugmentSpec(preset), train=True)
        clone = pickle.loads(pickle.dumps(t))
        torch.manual_seed(3)
        a = t(img)
        torch.manual_seed(3)
        assert torch.equal(a, clone(img)), preset


def test_preview_is_deterministic_and_denormalised() -> None:
    img = _photo()
    rng_state = torch.get_rng_state()
    a = preview(img, PP, AugmentSpec("strong"), n=6, seed=4)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global RNG is left alone
    assert len(a) == 6 and all(x.shape == (32, 32, 3) and x.dtype == np.uint8 for x in a)
    b = preview(img, PP, AugmentSpec("strong"), n=6, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = preview(img, PP, AugmentSpec("strong"), n=6, seed=5)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert len({x.tobytes() for x in a}) == 6  # six different augmentations
    first3 = preview(img, PP, AugmentSpec("strong"), n=3, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(first3, a[:3], strict=False))
    assert preview(np.asarray(img), PP, AugmentSpec("strong"), n=1, seed=4)[0].tobytes() == a[0].tobytes()


def test_preview_of_none_is_the_models_view_and_flip_mirrors_it() -> None:
    flat = Image.new("RGB", (40, 40), (10, 200, 90))
    shown = preview(flat, PP, AugmentSpec("none"), n=2)
    assert np.abs(shown[0].astype(int) - [10, 200, 90]).max() <= 1  # denormalised back to the colours
    img = _photo()
    plain = preview(img, PP, AugmentSpec("none"), n=1)[0]
    flipped = preview(img, PP, AugmentSpec("none", {"hflip": {"enabled": True, "p": 1.0}}), n=1)[0]
    assert np.array_equal(flipped, plain[:, ::-1])
    assert plain[16, 2, 0] > 150 and flipped[16, 2, 2] > 150  # red left before, blue left after


def test_preview_reads_files(tmp_path) -> None:
    _photo().save(tmp_path / "x.png")
    out = preview(tmp_path / "x.png", PP, AugmentSpec("light"), n=2, seed=1)
    assert len(out) == 2 and out[0].shape == (32, 32, 3)
    with pytest.raises(UserError):
        preview(tmp_path / "missing.png", PP, AugmentSpec("light"))


def test_preview_on_another_thread_does_not_change_what_training_draws() -> None:
    """The Augment page renders previews while a run trains in the same process. Both draw from
    torch's global generator (torchvision's v2 transforms take no generator): the training sample
    seeded with s must still get exactly the augmentation of s, and the preview its own."""
    import sys
    import threading

    from transfer_studio.core.augment import build_transform
    from transfer_studio.training.data import SeededDataset

    class Photos(torch.utils.data.Dataset):
        def __init__(self):
            self.tf = build_transform(PP, AugmentSpec("strong"), train=True)
            self.images = [_photo(i) for i in range(4)]

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return self.tf(self.images[i])

    ds = SeededDataset(Photos())
    items = [(i % 4, 1000 + i) for i in range(40)]
    expected = [ds[item] for item in items]
    img = _photo(9)
    expected_preview = preview(img, PP, AugmentSpec("strong"), n=4, seed=3)
    stop, wrong_previews = threading.Event(), []

    def previews():
        while not stop.is_set():
            got = preview(img, PP, AugmentSpec("strong"), n=4, seed=3)
            if not all(np.array_equal(x, y) for x, y in zip(got, expected_preview, strict=True)):
                wrong_previews.append(1)

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads as often as possible: interleave every draw
    thread = threading.Thread(target=previews)
    thread.start()
    try:
        mismatches = sum(not torch.equal(ds[item], exp) for _ in range(5) for item, exp in zip(items, expected,
                                                                                             strict=True))
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(before)
    assert mismatches == 0
    assert not wrong_previews
