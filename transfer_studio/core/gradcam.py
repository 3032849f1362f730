"""Grad-CAM: which parts of an image made the network choose a class (Selvaraju et al., 2017).

The activations of the last convolutional stage (the last module, in execution order, whose output
is a feature map with more than one pixel) are weighted by the spatially averaged gradient of the
class score with respect to them; the positive part of that weighted sum, upsampled to the input
size, is the heat map. Works on any catalog network, frozen or not: gradients flow from an input
that requires grad, and no parameter gradient is kept. Qt-free; the Try page draws the overlay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from transfer_studio.errors import UserError

# Anchors of a perceptually ordered colour map (dark blue -> cyan -> yellow -> red), like "turbo".
_CMAP = np.array([[48, 18, 59], [40, 120, 230], [30, 200, 200], [120, 240, 90], [250, 200, 40],
                  [240, 90, 20], [122, 4, 3]], dtype=np.float32)


@dataclass
class GradCam:
    image: np.ndarray  # (H, W, 3) uint8: the crop the network saw
    heat: np.ndarray  # (H, W) float32 in [0, 1]
    class_index: int
    score: float  # the class's softmax probability
    layer: str  # the module whose activations were used


MIN_SIDE = 7  # a coarser last feature map (small inputs) is explained at an earlier, finer stage


def find_target_layer(model: nn.Module, example: torch.Tensor) -> str:
    """Qualified name of the module whose feature map the heat map uses.

    The last module (in execution order) that outputs a spatial feature map; when that map is
    smaller than ``MIN_SIDE`` pixels a side (a 96 px input to EfficientNet ends at 3x3), the last
    one that is at least that large (a block with weights, not a padding or activation layer), so
    the heat map still shows where in the image.
    """
    order: list[tuple[str, int, bool]] = []
    handles = []

    def hook(name: str):
        def fn(module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[2] * output.shape[3] > 1:
                weighted = any(True for _ in module.parameters())
                order.append((name, min(int(output.shape[2]), int(output.shape[3])), weighted))
        return fn

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise UserError("this network has no convolutional feature map to explain with a heat map")
    name, side, _ = order[-1]
    if side < MIN_SIDE:
        name = next((n for n, s, w in reversed(order) if s >= MIN_SIDE and w),
                    next((n for n, s, _ in reversed(order) if s >= MIN_SIDE), name))
    return name


def grad_cam(model: nn.Module, x: torch.Tensor, class_index: int | None = None,
             layer: str | None = None) -> tuple[np.ndarray, int, float, str]:
    """(heat (H, W) in [0, 1], class index, its probability, layer) for one input ``x`` (1, 3, H, W).

    ``class_index`` None explains the top-1 class. The model is used in eval mode; callers must not
    be inside ``torch.inference_mode``.
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError("grad_cam takes one image: a tensor of shape (1, 3, H, W)")
    model.eval()
    if layer is None:
        layer = find_target_layer(model, x)
    module = dict(model.named_modules()).get(layer)
    if module is None:
        raise UserError(f"the network has no layer named {layer}")
    saved: dict[str, torch.Tensor] = {}

    def keep(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        saved["act"] = output
        # Later in-place ops (ReLU(inplace=True)) must not overwrite the activations we differentiate.
        return output.clone()

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            inp = x.detach().clone().requires_grad_(True)
            logits = model(inp)
            if logits.ndim != 2:
                raise UserError(f"the network's output has shape {list(logits.shape)}, not (1, classes)")
            probs = torch.softmax(logits.detach().float(), dim=1)[0]
            index = int(probs.argmax()) if class_index is None else int(class_index)
            act = saved["act"]
            (grads,) = torch.autograd.grad(logits[0, index], act)
    finally:
        handle.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * act).sum(dim=1, keepdim=True)).detach().float()
    cam = torch.nn.functional.interpolate(cam, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)[0, 0]
    top = float(cam.max())
    heat = (cam / top).numpy() if top > 0 else np.zeros(tuple(x.shape[2:]), np.float32)
    return heat.astype(np.float32), index, float(probs[index]), layer


def explain(model: nn.Module, preprocess: Any, image: Image.Image, class_index: int | None = None,
            layer: str | None = None) -> GradCam:
    """Grad-CAM of ``image`` preprocessed like ``core.predict`` does (resize, centre crop, normalise)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    rgb = image.convert("RGB") if image.mode != "RGB" else image
    crop = TF.pil_to_tensor(rgb)
    crop = TF.resize(crop, [preprocess.resize], interpolation=InterpolationMode(preprocess.interpolation),
                     antialias=True)
    crop = TF.center_crop(crop, [preprocess.crop])
    x = TF.normalize(TF.to_dtype(crop, torch.float32, scale=True), list(preprocess.mean), list(preprocess.std))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    heat, index, score, used = grad_cam(model, x[None].to(device), class_index, layer)
    return GradCam(image=crop.permute(1, 2, 0).numpy().copy(), heat=heat, class_index=index, score=score,
                   layer=used)


def colorize(heat: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8 through the colour map."""
    h = np.clip(np.nan_to_num(heat), 0.0, 1.0) * (len(_CMAP) - 1)
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, len(_CMAP) - 1)
    t = (h - lo)[..., None]
    return (_CMAP[lo] * (1 - t) + _CMAP[hi] * t).round().astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """The heat map blended over the image; weak activations stay mostly transparent."""
    if image.shape[:2] != heat.shape:
        raise ValueError(f"image {image.shape[:2]} and heat map {heat.shape} differ in size")
    colours = colorize(heat).astype(np.float32)
    a = (alpha * np.clip(heat, 0, 1))[..., None]
    out = image.astype(np.float32) * (1 - a) + colours * a
    return out.round().clip(0, 255).astype(np.uint8)
