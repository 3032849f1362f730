"""Feature cache for head-only training: run the frozen backbone once, train the head many times.

The head's input is captured with a forward pre-hook that then aborts the forward pass, so whatever
the network does before its head (pooling, flatten, dropout, functional code in ``forward``) is
reproduced exactly, for any architecture. Caching is only valid when the head's output *is* the
network's output and every trainable parameter lives in the head; ``find_cacheable_head`` checks
both with a dry forward pass and answers None otherwise (the run then trains uncached and says so).

Augmentation still counts: the training images are passed K times with K different augmentation
seeds; each epoch picks one of the K cached versions of every image. K = 0 caches un-augmented
images once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


class _Captured(Exception):
    """Raised by the pre-hook to skip the rest of the forward pass once the head's input is known."""


def _lowest_common_module(names: list[str]) -> str:
    parts = [n.split(".") for n in names]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if all(p == level[0] for p in level):
            common.append(level[0])
        else:
            break
    return ".".join(common)


def find_cacheable_head(model: nn.Module, example: torch.Tensor) -> str | None:
    """The module whose input can be cached, or None.

    It must hold every trainable parameter, be called exactly once with a single positional tensor,
    and return the network's output unchanged. Starts at the lowest module holding all trainable
    parameters and walks up through its parents.
    """
    owners = [n.rpartition(".")[0] for n, p in model.named_parameters() if p.requires_grad]
    if not owners:
        return None
    candidate = _lowest_common_module(owners)
    modules = dict(model.named_modules())
    was_training = model.training
    model.eval()
    try:
        while candidate:
            if _is_terminal(model, modules[candidate], example):
                return candidate
            candidate = candidate.rpartition(".")[0]
        return None
    finally:
        model.train(was_training)


def _is_terminal(model: nn.Module, module: nn.Module, example: torch.Tensor) -> bool:
    calls: list[tuple[int, int, torch.Tensor | None]] = []

    def pre(mod, args, kwargs):
        calls.append((len(args), len(kwargs), None))

    def post(mod, args, output):
        calls[-1] = (calls[-1][0], calls[-1][1], output)

    h1 = module.register_forward_pre_hook(pre, with_kwargs=True)
    h2 = module.register_forward_hook(post)
    try:
        with torch.no_grad():
            out = model(example)
    finally:
        h1.remove()
        h2.remove()
    return (len(calls) == 1 and calls[0][:2] == (1, 0) and isinstance(out, torch.Tensor)
            and calls[0][2] is out)


@dataclass
class FeatureCache:
    head_name: str
    train: torch.Tensor  # (passes, N, *feature_shape)
    train_labels: torch.Tensor  # (N,)
    val: torch.Tensor | None  # (M, *feature_shape)
    val_labels: torch.Tensor | None
    passes: int  # augmented passes cached (1 when augmentation is off)
    augmented: bool
    seconds: float

    @property
    def nbytes(self) -> int:
        return self.train.nelement() * self.train.element_size() + (
            self.val.nelement() * self.val.element_size() if self.val is not None else 0)


def extract(model: nn.Module, head: nn.Module, batches, *, device: torch.device,
            autocast: Callable[[], contextlib.AbstractContextManager], memory_format=None,
            check: Callable[[], None] | None = None, store_device: torch.device | None = None,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Head inputs and labels for every batch ``(x, y)`` of ``batches``, with the model in eval mode
    (BatchNorm running statistics must not move while features are extracted)."""
    captured: list[torch.Tensor] = []

    def pre(mod, args):
        captured.append(args[0])
        raise _Captured

    feats, labels = [], []
    store = store_device or torch.device("cpu")
    handle = head.register_forward_pre_hook(pre)
    was_training = model.training
    model.eval()
    try:
        # no_grad, not inference_mode: the cached tensors later feed a head that needs autograd.
        with torch.no_grad():
            for x, y in batches:
                if check is not None:
                    check()
                x = x.to(device, non_blocking=True)
                if memory_format is not None:
                    x = x.contiguous(memory_format=memory_format)
                captured.clear()
                with autocast(), contextlib.suppress(_Captured):
                    model(x)
                feats.append(captured[0].float().to(store))
                labels.append(y.to(store))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(feats), torch.cat(labels)
