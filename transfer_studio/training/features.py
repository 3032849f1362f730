"""Feature cache for the head phase: run the frozen backbone once, fit the head on its output.

The head's input is captured with a forward pre-hook that then aborts the forward pass, so whatever
the network does before its head (pooling, flatten, dropout, functional code in ``forward``) is
reproduced exactly, for any architecture. Caching is only valid when the head's output *is* the
network's output and every trainable parameter lives in the head; ``find_cacheable_head`` checks
both with a dry forward pass and answers None otherwise (the run then trains uncached and says so).

Every training image is cached as the model sees it at evaluation (the clean pass, which the
feature store keeps on disk for later runs and the advisor); head-only training with augmentation
adds K augmented passes (K different augmentation seeds per image), and the head is fitted on all
of them (``training.head_fit``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
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
    train: torch.Tensor  # (passes, N, *feature_shape): the clean pass first, then augmented ones
    train_labels: torch.Tensor  # (N,)
    val: torch.Tensor | None  # (M, *feature_shape)
    val_labels: torch.Tensor | None
    passes: int  # passes cached (the clean one + augmented ones)
    augmented: bool
    seconds: float

    @property
    def nbytes(self) -> int:
        return self.train.nelement() * self.train.element_size() + (
            self.val.nelement() * self.val.element_size() if self.val is not None else 0)

    def to(self, device: torch.device) -> None:
        self.train, self.train_labels = self.train.to(device), self.train_labels.to(device)
        if self.val is not None:
            self.val, self.val_labels = self.val.to(device), self.val_labels.to(device)

    def rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every cached training feature (all passes) with its label: the head phase's full batch."""
        return self.train.flatten(0, 1), self.train_labels.repeat(self.train.shape[0])

    def val_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self.val), batch_size):
            yield self.val[i:i + batch_size], self.val_labels[i:i + batch_size]


@dataclass
class CachePlan:
    head_name: str
    head: nn.Module
    passes: int  # augmented passes over the training images, on top of the clean pass
    augmented: bool  # passes use the training (augmenting) transform
    feature_shape: tuple[int, ...] = ()  # one image's head input


def cache_limit_bytes() -> int:
    """Half the free RAM (at most 16 GiB): a cache that would not fit trains uncached instead."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        free = 8 << 30
    return int(min(16 << 30, free // 2))


def plan_cache(model: nn.Module, example: torch.Tensor, *, cache_passes: int, augment_preset: str,
               n_train: int, n_val: int, autocast: Callable[[], contextlib.AbstractContextManager],
               head_only: bool = True) -> tuple[CachePlan | None, str]:
    """Whether (and how) the head phase can train on cached features, with a note for the user.

    Every training image is cached once as the model sees it at evaluation (the clean pass, kept in
    the feature store); the head-only strategy adds ``cache_passes`` augmented passes when
    augmentation is on. The head phase of partial and full (the LP of LP-FT) uses the clean pass.
    """
    name = find_cacheable_head(model, example)
    if name is None:
        return None, ("backbone features are not cached: the trainable layers are not a final head of the "
                      "network (every epoch runs the whole network)")
    head = dict(model.named_modules())[name]
    feats, _ = extract(model, head, [(example, torch.zeros(len(example), dtype=torch.long))],
                       device=example.device, autocast=autocast)
    augment_off = augment_preset == "none"
    passes = int(cache_passes) if head_only and not augment_off and cache_passes > 0 else 0
    need = feats[0].numel() * 4 * ((1 + passes) * n_train + n_val)
    limit = cache_limit_bytes()
    if need > limit:
        return None, (f"backbone features are not cached: they would take {need / 2**30:.1f} GiB "
                      f"(limit {limit / 2**30:.1f} GiB); every epoch runs the whole network")
    if not head_only:
        note = ("the new head is first fitted to convergence on cached backbone features (linear probe), "
                "then the network is fine-tuned")
    elif passes:
        note = (f"head-only training on cached backbone features: each training image as the model sees it "
                f"plus {passes} augmented version(s); epochs after the first skip the backbone")
    else:
        note = ("head-only training on cached backbone features of each training image as the model sees it"
                + (" (augmentation is off)" if augment_off else " (train.cache_passes = 0: no augmented copies)"))
    return CachePlan(name, head, passes, augmented=passes > 0, feature_shape=tuple(feats.shape[1:])), note


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
