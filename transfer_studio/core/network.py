"""Every network is built from the project file: catalog architecture + weights, then the surgery ops.

The graph view, the trainer and the exporter all call ``build_network`` (or ``build_network_meta``
for a shape-only copy), so they see exactly the same layers and names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from transfer_studio.config import Project, SurgeryOp
from transfer_studio.core import catalog, surgery
from transfer_studio.errors import UserError

__all__ = ["build_network", "build_network_meta", "build_on_meta", "input_shape", "project_preprocess"]

# Families whose networks are built for one input size (position embeddings, attention grids).
_FIXED_SIZE_FAMILIES = ("vision_transformer", "maxvit")


def project_preprocess(project: Project) -> catalog.Preprocess:
    """The model's own preprocessing, with ``train.image_size`` as crop (resize scaled alike)."""
    info = catalog.get_info(project.model.name)
    size = _image_size(project, info)
    pre = info.preprocess
    if size == pre.crop:
        return pre
    return dataclasses.replace(pre, crop=size, resize=round(size * pre.resize / pre.crop))


def input_shape(project: Project) -> tuple[int, int, int, int]:
    """(1, channels, size, size) the project's network takes."""
    info = catalog.get_info(project.model.name)
    size = _image_size(project, info)
    channels = 3
    if any(op.op == "replace" and isinstance(op.params.get("layer"), dict) and "in_channels" in op.params["layer"]
           for op in project.surgery):
        # A replaced input convolution may take other than RGB: ask the (shape-only) network itself.
        model = _meta_architecture(project.model.name)
        surgery.apply_ops(model, project.surgery, (1, 3, size, size))
        channels = _input_channels(model)
    return (1, channels, size, size)


def build_network(project: Project, *, weights: bool = True, num_classes: int | None = None,
                  allow_download: bool = False) -> nn.Module:
    """catalog.build_model(project.model ...) then surgery.apply_ops(project.surgery).

    weights: False builds with random init ("none"), e.g. before loading trained weights.
    num_classes: the dataset's class count; it overrides the replace_head ops' count, or adds a
    replace_head at the end when the surgery has none and the pretrained head has another size.
    """
    shape = input_shape(project)
    model = catalog.build_model(project.model.name, project.model.weights if weights else "none",
                                allow_download=allow_download)
    surgery.apply_ops(model, _ops(project, model, num_classes), shape)
    return model


def build_network_meta(project: Project, *, num_classes: int | None = None) -> nn.Module:
    """The project's network on the meta device: all names, shapes and flags, no weights, no memory.

    For the graph view and the strategy advisor; building it takes a fraction of ``build_network``.
    """
    shape = input_shape(project)
    model = _meta_architecture(project.model.name)
    surgery.apply_ops(model, _ops(project, model, num_classes), shape)
    return model


def _ops(project: Project, model: nn.Module, num_classes: int | None) -> list[SurgeryOp]:
    ops = [SurgeryOp(op.op, op.target, dict(op.params)) for op in project.surgery]
    if num_classes is None:
        return ops
    heads = [op for op in ops if op.op == "replace_head"]
    for op in heads:
        op.params["num_classes"] = num_classes
    if not heads and _head_outputs(model) != num_classes:
        ops.append(SurgeryOp("replace_head", "", {"num_classes": num_classes}))
    return ops


def _head_outputs(model: nn.Module) -> int | None:
    head = model.get_submodule(surgery.find_head(model))
    if isinstance(head, nn.Linear):
        return head.out_features
    if isinstance(head, nn.Conv2d):
        return head.out_channels
    return None


def _input_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3


def _image_size(project: Project, info: catalog.ModelInfo) -> int:
    size = project.train.image_size
    if size is None:
        return info.input_size
    if isinstance(size, bool) or not isinstance(size, int):
        raise UserError(f"train.image_size must be a whole number of pixels, got {size!r}")
    if size < info.min_size:
        raise UserError(f"image size {size} is too small for {info.name}: it needs at least "
                        f"{info.min_size}x{info.min_size} pixels (its default is {info.input_size})")
    if info.family in _FIXED_SIZE_FAMILIES and size != info.min_size:
        raise UserError(f"{info.name} only takes {info.min_size}x{info.min_size} images (its position "
                        f"embeddings are built for that size); use image size {info.min_size}")
    return size


def _meta_architecture(name: str) -> nn.Module:
    return build_on_meta(lambda: catalog.build_model(name, "none"))


# -- construction on the meta device ---------------------------------------------------------------------
def build_on_meta(factory: Callable[[], nn.Module]) -> nn.Module:
    """Run a model constructor so that every parameter and buffer lives on the meta device.

    ``torch.device("meta")`` covers most models. Constructors that compute with real tensor values
    (RegNet derives its widths with torch ops) fail there; for those, parameters and buffers are
    moved to meta as they are registered, so random initialisation never touches real memory.
    """
    try:
        with torch.device("meta"), _SkipInitOnMeta():
            return factory()
    except (NotImplementedError, RuntimeError):
        pass
    with _register_on_meta(), _SkipInitOnMeta():
        return factory()


class _SkipInitOnMeta(TorchFunctionMode):
    """Skip in-place value updates of meta tensors (random init, fills): they have no values anyway.

    Meta kernels are Python decompositions costing about a millisecond each, so initialising a
    large network on meta would otherwise take as long as building its graph. Modes are per thread.
    """

    _VALUE_OPS = frozenset(getattr(torch.Tensor, name) for name in (
        "normal_", "uniform_", "fill_", "zero_", "erfinv_", "mul_", "add_", "sub_", "div_", "clamp_",
        "clamp_min_", "clamp_max_", "copy_", "exponential_", "bernoulli_", "random_", "log_normal_",
        "geometric_", "cauchy_", "abs_", "neg_", "sqrt_", "exp_", "log_", "fmod_", "remainder_",
    ))

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if func in self._VALUE_OPS and args and isinstance(args[0], torch.Tensor) \
                and args[0].device.type == "meta":
            return args[0]
        return func(*args, **(kwargs or {}))


_patch_lock = threading.Lock()
_patch_users = 0
_local = threading.local()
_original_register_parameter = nn.Module.register_parameter
_original_register_buffer = nn.Module.register_buffer


def _meta_register_parameter(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
    _original_register_parameter(self, name, param)
    if param is not None and getattr(_local, "active", False) and param.device.type != "meta":
        self._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)


def _meta_register_buffer(self: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
    _original_register_buffer(self, name, tensor, persistent)
    if tensor is not None and getattr(_local, "active", False) and tensor.device.type != "meta":
        self._buffers[name] = tensor.to("meta")


@contextlib.contextmanager
def _register_on_meta() -> Iterator[None]:
    """Within this thread only, parameters/buffers registered on any module are moved to meta."""
    global _patch_users
    with _patch_lock:
        if _patch_users == 0:
            nn.Module.register_parameter = _meta_register_parameter  # type: ignore[method-assign]
            nn.Module.register_buffer = _meta_register_buffer  # type: ignore[method-assign]
        _patch_users += 1
    _local.active = True
    try:
        yield
    finally:
        _local.active = False
        with _patch_lock:
            _patch_users -= 1
            if _patch_users == 0:
                nn.Module.register_parameter = _original_register_parameter  # type: ignore[method-assign]
                nn.Module.register_buffer = _original_register_buffer  # type: ignore[method-assign]

