"""The project's pretrained backbone as a feature extractor, with features kept on disk.

One function for everyone who needs backbone features of images (the trainer's head phase, the
advisor's evidence, later label tools): ``BackboneFeatures.of(project, ...)`` builds the network
exactly as training does, finds the layer whose input is the head's feature vector, and
``features(relpaths, transform)`` returns them, from the feature store when it has them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import nn

from transfer_studio.config import Project
from transfer_studio.training import data as tdata
from transfer_studio.training import feature_store
from transfer_studio.training import features as tfeatures

# Operations applied to the image before the model's evaluation transform (invariance checks).
TRANSFORMS = ("eval", "hflip", "vflip", "rotate")
ROTATE_DEGREES = 15.0  # the medium and strong presets' rotation
_STRUCTURAL_FREE = ("freeze", "unfreeze", "freeze_before", "replace_head")

Progress = Callable[[int, int], None]


class PreOp:
    """A deterministic image operation before the evaluation transform (picklable for workers)."""

    def __init__(self, name: str, fill: tuple[int, int, int] = (128, 128, 128)):
        if name not in TRANSFORMS:
            raise ValueError(f"unknown transform {name!r}")
        self.name, self.fill = name, fill

    def __call__(self, image: Image.Image) -> Image.Image:
        if self.name == "hflip":
            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.name == "vflip":
            return image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        if self.name == "rotate":
            return image.rotate(ROTATE_DEGREES, resample=Image.Resampling.BILINEAR, fillcolor=self.fill)
        return image


class _Then:
    def __init__(self, first: PreOp, then: Any):
        self.first, self.then = first, then

    def __call__(self, image: Image.Image) -> Any:
        return self.then(self.first(image))


def weights_identity(project: Project) -> str:
    """What the pretrained weights are, for feature keys: the file's name and size (and time for a
    user's own file); 'none' for random init."""
    import os

    from transfer_studio.core import catalog

    choice = catalog.weights_choice(project.model.weights)
    if choice == "none":
        return "none"
    if choice == "DEFAULT":
        info = catalog.get_info(project.model.name)
        path = info.weights_file
        if path and os.path.isfile(path):
            return f"DEFAULT:{os.path.basename(path)}:{os.path.getsize(path)}"
        return "DEFAULT"
    st = os.stat(choice)
    return f"file:{os.path.realpath(choice)}:{st.st_size}:{st.st_mtime_ns}"


def structural_ops(project: Project) -> list[dict[str, Any]]:
    """Surgery that changes what the backbone computes (inserted, replaced or removed layers)."""
    return [{"op": op.op, "target": op.target, "params": op.params} for op in project.surgery
            if op.op not in _STRUCTURAL_FREE]


@dataclass
class BackboneFeatures:
    project: Project
    model: nn.Module
    capture: str  # the module whose input is the feature vector
    head: nn.Module
    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager]
    precision: str
    memory_format: Any
    loader: Any  # training.device.LoaderSettings
    preprocess: Any
    batch_size: int
    eval_transform: Any

    @classmethod
    def of(cls, project: Project, num_classes: int, *, model: nn.Module | None = None,
           device: torch.device | None = None, capture: str | None = None, batch_size: int | None = None,
           ) -> BackboneFeatures | None:
        """For the project's network (built here unless ``model`` is given, pretrained, on the
        project's device); None when the head's input cannot be captured (surgery made the trainable
        layers something other than a final head)."""
        from transfer_studio.core import augment, network
        from transfer_studio.training import device as tdevice
        from transfer_studio.training import finetune

        t = project.train
        device = device or tdevice.select_device(t.device)
        precision = tdevice.choose_precision(device, t.amp)
        channels_last = tdevice.use_channels_last(device)
        memory_format = torch.channels_last if channels_last else torch.preserve_format
        if model is None:
            model = network.build_network(project, weights=project.model.weights.strip().lower() != "none",
                                          num_classes=num_classes)
            model = model.to(device, memory_format=memory_format)
        model.eval()

        def autocast() -> contextlib.AbstractContextManager:
            if precision.dtype is None:
                return contextlib.nullcontext()
            return torch.autocast(device_type=device.type, dtype=precision.dtype)

        shape = network.input_shape(project)
        if capture is None:
            flags = {n: p.requires_grad for n, p in model.named_parameters()}
            finetune.apply_trainable(model, finetune.head_parameter_names(model))
            example = torch.zeros((2, *shape[1:]), device=device).contiguous(memory_format=memory_format)
            try:
                capture = tfeatures.find_cacheable_head(model, example)
            finally:
                for n, p in model.named_parameters():
                    p.requires_grad_(flags[n])
            if capture is None:
                return None
        preprocess = network.project_preprocess(project)
        eval_tf = augment.build_transform(preprocess, project.augment, train=False)
        loader = tdevice.loader_settings(device, t.num_workers)
        head = dict(model.named_modules())[capture]
        return cls(project, model, capture, head, device, autocast, precision.name, memory_format, loader,
                   preprocess, batch_size or max(8, int(t.batch_size)), eval_tf)

    def space(self, transform: str = "eval", root: Any = None) -> feature_store.FeatureSpace:
        pre = self.preprocess
        key = feature_store.space_key(
            model=self.project.model.name, weights=weights_identity(self.project),
            surgery=structural_ops(self.project),
            seed=self.project.train.seed if structural_ops(self.project) else None,
            preprocess={"resize": pre.resize, "crop": pre.crop, "mean": list(pre.mean), "std": list(pre.std),
                        "interpolation": str(getattr(pre, "interpolation", "bilinear"))},
            capture=self.capture, transform=transform, precision=self.precision, version=1)
        return feature_store.open_space(key, root)

    def transform(self, name: str) -> Any:
        if name == "eval":
            return self.eval_transform
        fill = tuple(round(255 * m) for m in self.preprocess.mean)
        return _Then(PreOp(name, fill), self.eval_transform)

    def features(self, root: str, relpaths: Sequence[str], transform: str = "eval", *,
                 progress: Progress | None = None, check: Callable[[], None] | None = None,
                 ) -> tuple[torch.Tensor, int]:
        """(N x D features of the images in order, how many were computed rather than read)."""
        import os

        from transfer_studio.core.dataset import ImageDataset

        paths = [os.path.join(root, r) for r in relpaths]
        space = self.space(transform)

        def compute(positions: list[int]) -> torch.Tensor:
            rels = [relpaths[i] for i in positions]
            ds = tdata.SeededDataset(ImageDataset(root, rels, [0] * len(rels), self.transform(transform)))
            sampler = tdata.EpochBatchSampler(len(rels), self.batch_size, 0, shuffle=False)
            done = [0]

            def step() -> None:
                if check is not None:
                    check()
                if progress is not None:
                    progress(min(done[0], len(rels)), len(rels))
                done[0] += self.batch_size

            feats, _ = tfeatures.extract(self.model, self.head, tdata.make_loader(ds, sampler, self.loader),
                                         device=self.device, autocast=self.autocast,
                                         memory_format=self.memory_format, check=step)
            if progress is not None:
                progress(len(rels), len(rels))
            return feats.flatten(1)

        return space.features(paths, compute, check=check)


def describe_key(space: feature_store.FeatureSpace) -> dict[str, Any]:
    return json.loads(space.key)
