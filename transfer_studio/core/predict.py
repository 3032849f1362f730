"""Predictions: a model plus its preprocessing and class names, in eval mode with no gradients.

A ``Predictor`` comes from a catalog model (ImageNet classes, the model's own preprocessing) or from
an exported bundle folder (``model.json`` + ``model.safetensors``, rebuilt by ``core.export``).
Preprocessing mirrors torchvision's ImageClassification preset: resize the shorter side, centre crop,
scale to [0, 1], normalise.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from transfer_studio.core import devices
from transfer_studio.core.catalog import Preprocess, build_model, get_info, imagenet_categories
from transfer_studio.errors import Cancelled, UserError

BATCH_SIZE = 16
BUNDLE_META = "model.json"


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """The device to predict on (``core.devices.resolve``, the one device rule)."""
    return devices.resolve(device)


def preprocess_image(image: Image.Image, preprocess: Preprocess) -> torch.Tensor:
    """RGB PIL image -> normalised float tensor (3, crop, crop).

    The same evaluation transform training, evaluation and export verification use, so a
    prediction scores exactly what the trained model was validated on.
    """
    return _eval_transform(preprocess)(image.convert("RGB") if image.mode != "RGB" else image)


@functools.lru_cache(maxsize=16)
def _eval_transform(preprocess: Preprocess):  # noqa: ANN202 - a torchvision v2 Compose
    from transfer_studio.core.augment import build_transform

    return build_transform(preprocess, None, train=False)


class Predictor:
    """Classifies images; ``predict_images`` returns probabilities, ``predict_paths`` the top k."""

    def __init__(self, model: nn.Module, preprocess: Preprocess, class_names: Sequence[str],
                 device: str | torch.device = "cpu") -> None:
        if not class_names:
            raise UserError("a predictor needs the class names of the model's outputs")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.preprocess = preprocess
        self.class_names = list(class_names)

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_catalog(cls, name: str, weights: str | os.PathLike[str] | None = "DEFAULT", *,
                     device: str | torch.device = "cpu", allow_download: bool = False,
                     progress: Callable[[int, int], None] | None = None,
                     cancel: Callable[[], bool] | None = None) -> Predictor:
        """A catalog model with its own preprocessing, classifying into the ImageNet categories."""
        info = get_info(name)
        model = build_model(info.name, weights, allow_download=allow_download, progress=progress,
                            cancel=cancel)
        return cls(model, info.preprocess, imagenet_categories(), device=device)

    @classmethod
    def from_bundle(cls, bundle_dir: str | os.PathLike[str], *,
                    device: str | torch.device = "cpu") -> Predictor:
        from transfer_studio.core import export  # imported lazily: the bundle format lives there

        model, meta = export.load_bundle(bundle_dir)
        names = meta.get("classes") or meta.get("class_names") or []
        return cls(model, export.bundle_preprocess(meta), names, device=device)

    @classmethod
    def from_source(cls, source: str, *, weights: str | os.PathLike[str] | None = "DEFAULT",
                    device: str | torch.device = "cpu", allow_download: bool = False,
                    progress: Callable[[int, int], None] | None = None,
                    cancel: Callable[[], bool] | None = None) -> Predictor:
        """A catalog model name, or an exported bundle folder (or its model.json)."""
        path = Path(str(source)).expanduser()
        if path.is_file() and path.name == BUNDLE_META:
            path = path.parent
        if path.is_dir():
            if not (path / BUNDLE_META).is_file():
                raise UserError(f"{source} is a folder without {BUNDLE_META}: not an exported bundle "
                                "(export a run with `transfer-studio export`, or give a catalog model name)")
            if weights is not None and str(weights).strip().upper() != "DEFAULT":
                raise UserError("--weights applies to catalog models; an exported bundle carries its own weights")
            return cls.from_bundle(path, device=device)
        if path.suffix or os.sep in str(source):
            raise UserError(f"no bundle folder or catalog model named {source}")
        return cls.from_catalog(str(source), weights, device=device, allow_download=allow_download,
                                progress=progress, cancel=cancel)

    # -- prediction --------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, C) softmax probabilities, float32, in the order of ``images``."""
        out = np.zeros((len(images), len(self.class_names)), np.float32)
        for start in range(0, len(images), BATCH_SIZE):
            chunk = images[start:start + BATCH_SIZE]
            batch = torch.stack([preprocess_image(im, self.preprocess) for im in chunk]).to(self.device)
            logits = self.model(batch)
            if logits.ndim != 2 or logits.shape[1] != len(self.class_names):
                raise UserError(f"the model outputs {list(logits.shape[1:])} scores but has "
                                f"{len(self.class_names)} class names")
            out[start:start + len(chunk)] = torch.softmax(logits.float(), dim=1).cpu().numpy()
        return out

    def predict_paths(self, paths: Sequence[str | os.PathLike[str]], top_k: int = 5, *,
                      progress: Callable[[int, int], None] | None = None,
                      cancel: Callable[[], bool] | None = None) -> list[dict[str, Any]]:
        """[{image, top_k: [{label, index, probability}]}] per path, in order.

        An unreadable image raises UserError naming it; top_k is capped at the number of classes.
        """
        from transfer_studio.core.imageio import load_rgb

        if not isinstance(top_k, int) or top_k < 1:
            raise UserError(f"top-k must be a positive whole number, got {top_k}")
        k = min(top_k, len(self.class_names))
        results: list[dict[str, Any]] = []
        for start in range(0, len(paths), BATCH_SIZE):
            if cancel is not None and cancel():
                raise Cancelled("prediction cancelled")
            chunk = [str(p) for p in paths[start:start + BATCH_SIZE]]
            probs = self.predict_images([load_rgb(p) for p in chunk])
            for path, row in zip(chunk, probs, strict=True):
                order = np.argsort(-row, kind="stable")[:k]
                results.append({"image": path, "top_k": [
                    {"label": self.class_names[i], "index": int(i), "probability": float(row[i])}
                    for i in order]})
            if progress is not None:
                progress(len(results), len(paths))
        return results
