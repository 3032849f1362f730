"""Augmentation presets built with torchvision.transforms.v2 around each model's own preprocessing.

A preset (none / light / medium / strong) is a set of values for a fixed list of transforms; every
value can be overridden per project (``AugmentSpec.params``, e.g. ``{"color_jitter": {"enabled":
true, "strength": 0.3}}``). ``preset_params`` describes each editable value (type, range, label) so
a form can be generated from it; ``resolve_params`` checks overrides and returns plain values.

Pipelines run the geometric and colour ops on the PIL image (Pillow's C code measured faster than
the same ops on uint8 tensors with one thread, as in DataLoader workers), then ToImage and the
model's own normalisation; random erasing runs last, on the normalised tensor, where 0 is the mean
colour. Evaluation (and the "none" preset) is the model's resize + centre crop.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from transfer_studio.config import AugmentSpec
from transfer_studio.errors import UserError

PRESETS = ("none", "light", "medium", "strong")

# torchvision's v2 transforms draw from torch's global generator (they take none of their own), and
# so do the training samples (``training.data.SeededDataset`` seeds it per sample). Whoever seeds it
# and then draws holds this lock, so a preview on one thread never changes a training sample's
# augmentation on another (or the other way round).
GLOBAL_RNG_LOCK = threading.RLock()

# Each transform: label, one-line help, and its fields. Field specs: type ("bool" | "float" | "int" |
# "choice"), label, min/max/step for numbers, choices for "choice". Values per preset below.
_SCHEMA: dict[str, dict[str, Any]] = {
    "random_resized_crop": {
        "label": "Random resized crop",
        "help": "Train on a random part of the image, resized to the model's input (else: centre crop).",
        "fields": {
            "enabled": {"type": "bool", "label": "Enabled"},
            "scale_min": {"type": "float", "label": "Smallest crop (share of the image)", "min": 0.05,
                          "max": 1.0, "step": 0.05},
            "ratio_max": {"type": "float", "label": "Largest aspect-ratio change", "min": 1.0, "max": 2.0,
                          "step": 0.05},
        },
    },
    "hflip": {
        "label": "Horizontal flip",
        "help": "Mirror left-right. Turn off when the side matters (text, digits, road signs).",
        "fields": {
            "enabled": {"type": "bool", "label": "Enabled"},
            "p": {"type": "float", "label": "Probability", "min": 0.0, "max": 1.0, "step": 0.05},
        },
    },
    "vflip": {
        "label": "Vertical flip",
        "help": "Mirror top-bottom: useful for microscopy, aerial or satellite images.",
        "fields": {
            "enabled": {"type": "bool", "label": "Enabled"},
            "p": {"type": "float", "label": "Probability", "min": 0.0, "max": 1.0, "step": 0.05},
        },
    },
    "rotation": {
        "label": "Rotation",
        "help": "Rotate by a random angle up to the limit (corners filled with the mean colour).",
        "fields": {
            "enabled": {"type": "bool", "label": "Enabled"},
            "degrees": {"type": "float", "label": "Largest angle (degrees)", "min": 0.0, "max": 180.0,
                        "step": 1.0},
        },
    },
    "color_jitter": {
        "label": "Colour jitter",
        "help": "Random brightness, contrast and saturation changes (and a quarter as much hue).",
        "fields": {
            "enabled": {"type": "bool", "label": "Enabled"},
            "strength": {"type": "float", "label": "Strength", "min": 0.0, "max": 1.0, "step": 0.05},
        },
    },
    "auto_augment": {
        "label": "Automatic augmentation",
        "help": "A random operation from a fixed list per image (TrivialAugmentWide, or RandAugment).",
        "fields": {
            "enabled": {"type": "bool", "label": "Enabled"},
            "policy": {"type": "choice", "label": "Policy", "choices": ["trivial_augment_wide", "rand_augment"]},
            "num_ops": {"type": "int", "label": "Operations per image (RandAugment)", "min": 1, "max": 5,
                        "step": 1},
            "magnitude": {"type": "int", "label": "Magnitude (RandAugment)", "min": 0, "max": 30, "step": 1},
        },
    },
    "random_erasing": {
        "label": "Random erasing",
        "help": "Blank out a random rectangle, so the model cannot rely on one small detail.",
        "fields": {
            "enabled": {"type": "bool", "label": "Enabled"},
            "p": {"type": "float", "label": "Probability", "min": 0.0, "max": 1.0, "step": 0.05},
            "max_area": {"type": "float", "label": "Largest area erased (share)", "min": 0.02, "max": 0.5,
                         "step": 0.01},
        },
    },
}

_OFF: dict[str, dict[str, Any]] = {
    "random_resized_crop": {"enabled": False, "scale_min": 0.5, "ratio_max": 4 / 3},
    "hflip": {"enabled": False, "p": 0.5},
    "vflip": {"enabled": False, "p": 0.5},
    "rotation": {"enabled": False, "degrees": 15.0},
    "color_jitter": {"enabled": False, "strength": 0.2},
    "auto_augment": {"enabled": False, "policy": "trivial_augment_wide", "num_ops": 2, "magnitude": 9},
    "random_erasing": {"enabled": False, "p": 0.25, "max_area": 0.2},
}


def _preset_values(preset: str) -> dict[str, dict[str, Any]]:
    values = copy.deepcopy(_OFF)
    level = PRESETS.index(preset)
    if level >= 1:  # light: flip + random resized crop
        values["random_resized_crop"].update(enabled=True, scale_min=0.5)
        values["hflip"]["enabled"] = True
    if level >= 2:  # medium: + colour jitter, small rotation
        values["random_resized_crop"]["scale_min"] = 0.35
        values["rotation"].update(enabled=True, degrees=15.0)
        values["color_jitter"].update(enabled=True, strength=0.2)
    if level >= 3:  # strong: + TrivialAugmentWide, random erasing
        values["random_resized_crop"]["scale_min"] = 0.08  # torchvision's ImageNet recipe
        values["color_jitter"]["strength"] = 0.3
        values["auto_augment"]["enabled"] = True
        values["random_erasing"]["enabled"] = True
    return values


def _check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise UserError(f"unknown augmentation preset '{preset}': choose one of {', '.join(PRESETS)}")
    return preset


def preset_params(preset: str) -> dict[str, dict[str, Any]]:
    """Every editable transform with its fields for ``preset``, ready to render as a form.

    ``{name: {"label", "help", "fields": {field: {"type", "label", "value", "min"?, "max"?, "step"?,
    "choices"?}}}}``, in pipeline order. Field names are the keys ``AugmentSpec.params`` overrides.
    """
    values = _preset_values(_check_preset(preset))
    out: dict[str, dict[str, Any]] = {}
    for name, schema in _SCHEMA.items():
        fields = {}
        for field_name, spec in schema["fields"].items():
            fields[field_name] = {**copy.deepcopy(spec), "value": values[name][field_name]}
        out[name] = {"label": schema["label"], "help": schema["help"], "fields": fields}
    return out


def resolve_params(augment: AugmentSpec | None) -> dict[str, dict[str, Any]]:
    """The preset's values with the spec's overrides applied and checked: {transform: {field: value}}."""
    augment = augment or AugmentSpec(preset="none")
    values = _preset_values(_check_preset(augment.preset))
    if not isinstance(augment.params, Mapping):
        raise UserError("augmentation parameters must be an object of {transform: {field: value}}")
    for name, overrides in augment.params.items():
        if name not in _SCHEMA:
            raise UserError(f"unknown augmentation '{name}': choose from {', '.join(_SCHEMA)}")
        if not isinstance(overrides, Mapping):
            raise UserError(f"augmentation '{name}' needs an object of field values, got {overrides!r}")
        for field_name, value in overrides.items():
            spec = _SCHEMA[name]["fields"].get(field_name)
            if spec is None:
                raise UserError(f"augmentation '{name}' has no setting '{field_name}': use one of "
                                f"{', '.join(_SCHEMA[name]['fields'])}")
            values[name][field_name] = _check_value(name, field_name, spec, value)
    return values


def _check_value(name: str, field_name: str, spec: dict[str, Any], value: Any) -> Any:
    where = f"augmentation setting {name}.{field_name}"
    kind = spec["type"]
    if kind == "bool":
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false, got {value!r}")
        return value
    if kind == "choice":
        if value not in spec["choices"]:
            raise UserError(f"{where} must be one of {', '.join(spec['choices'])}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind == "int" and value != int(value)):
        raise UserError(f"{where} must be {'an integer' if kind == 'int' else 'a number'}, got {value!r}")
    if not spec["min"] <= value <= spec["max"]:
        raise UserError(f"{where} must be between {spec['min']} and {spec['max']}, got {value}")
    return int(value) if kind == "int" else float(value)


def _sizes(preprocess: Any, image_size: int | None) -> tuple[int, int]:
    """(resize, crop): an image_size override keeps the model's resize/crop ratio (e.g. 256/224)."""
    if image_size is None:
        return int(preprocess.resize), int(preprocess.crop)
    if image_size < 8:
        raise UserError(f"image size {image_size} is too small (at least 8 pixels)")
    return round(image_size * preprocess.resize / preprocess.crop), int(image_size)


def _interpolation(preprocess: Any) -> v2.InterpolationMode:
    name = str(getattr(preprocess, "interpolation", "bilinear")).lower()
    try:
        return v2.InterpolationMode(name)
    except ValueError:
        return v2.InterpolationMode.BILINEAR


def build_transform(preprocess: Any, augment: AugmentSpec | None, *, train: bool,
                    image_size: int | None = None) -> v2.Compose:
    """PIL image -> normalised float tensor (3, crop, crop), picklable for DataLoader workers.

    ``train=False`` gives the model's evaluation transform whatever ``augment`` says.
    """
    resize, crop = _sizes(preprocess, image_size)
    interp = _interpolation(preprocess)
    mean, std = [float(m) for m in preprocess.mean], [float(s) for s in preprocess.std]
    finish = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=mean, std=std)]
    centre = [v2.Resize(resize, interpolation=interp, antialias=True), v2.CenterCrop(crop)]
    if not train:
        return v2.Compose([*centre, *finish])

    p = resolve_params(augment)
    fill = tuple(round(255 * m) for m in mean)  # corners a rotation uncovers: the mean colour
    steps: list[Any] = []
    rrc = p["random_resized_crop"]
    if rrc["enabled"]:
        ratio = float(rrc["ratio_max"])
        steps.append(v2.RandomResizedCrop(crop, scale=(float(rrc["scale_min"]), 1.0), ratio=(1 / ratio, ratio),
                                          interpolation=interp, antialias=True))
    else:
        steps.extend(centre)
    if p["hflip"]["enabled"]:
        steps.append(v2.RandomHorizontalFlip(p=p["hflip"]["p"]))
    if p["vflip"]["enabled"]:
        steps.append(v2.RandomVerticalFlip(p=p["vflip"]["p"]))
    if p["rotation"]["enabled"] and p["rotation"]["degrees"] > 0:
        steps.append(v2.RandomRotation(p["rotation"]["degrees"], interpolation=v2.InterpolationMode.BILINEAR,
                                       fill=fill))
    cj = p["color_jitter"]
    if cj["enabled"] and cj["strength"] > 0:
        s = cj["strength"]
        steps.append(v2.ColorJitter(brightness=s, contrast=s, saturation=s, hue=min(0.5, s / 4)))
    aa = p["auto_augment"]
    if aa["enabled"]:
        if aa["policy"] == "rand_augment":
            steps.append(v2.RandAugment(num_ops=aa["num_ops"], magnitude=aa["magnitude"],
                                        interpolation=v2.InterpolationMode.BILINEAR, fill=fill))
        else:
            steps.append(v2.TrivialAugmentWide(interpolation=v2.InterpolationMode.BILINEAR, fill=fill))
    steps.extend(finish)
    er = p["random_erasing"]
    if er["enabled"] and er["p"] > 0:
        steps.append(v2.RandomErasing(p=er["p"], scale=(0.02, max(0.02, er["max_area"])), value=0.0))
    return v2.Compose(steps)


def denormalize(tensor: torch.Tensor, preprocess: Any) -> np.ndarray:
    """A normalised (3, H, W) tensor back to an H x W x 3 uint8 array."""
    mean = torch.tensor(preprocess.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(preprocess.std, dtype=torch.float32).view(3, 1, 1)
    pixels = (tensor.detach().float().cpu() * std + mean).clamp(0.0, 1.0)
    return (pixels * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy().copy()


def preview(image: Image.Image | np.ndarray | str | os.PathLike[str], preprocess: Any,
            augment: AugmentSpec | None, n: int = 8, seed: int = 0,
            image_size: int | None = None) -> list[np.ndarray]:
    """``n`` augmented versions of ``image`` as H x W x 3 uint8 arrays, the same for the same seed.

    Sample i is drawn with its own seed derived from (seed, i), so a larger n extends the grid
    without changing the first images. The global torch RNG is restored afterwards, and held
    (``GLOBAL_RNG_LOCK``) meanwhile.
    """
    if n < 0:
        raise UserError(f"number of preview images must be at least 0, got {n}")
    if isinstance(image, (str, os.PathLike)):
        from transfer_studio.core.imageio import load_rgb

        image = load_rgb(image)
    elif isinstance(image, np.ndarray):
        image = Image.fromarray(image.astype(np.uint8))
    if image.mode != "RGB":
        from transfer_studio.core.imageio import to_rgb

        image = to_rgb(image)
    transform = build_transform(preprocess, augment, train=True, image_size=image_size)
    out = []
    with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        for i in range(n):
            torch.manual_seed((int(seed) * 1_000_003 + i) % (2**63))
            out.append(denormalize(transform(image), preprocess))
    return out
