"""The head phase on cached features: the new head fitted to convergence (LP of LP-FT).

An epoch of the head phase is one full-batch L-BFGS call over every cached feature vector (the
clean pass and any augmented passes), warm-started from the head's current weights, with the
regularisation ``C`` chosen once, by k-fold cross-validation on the training images' features
(``probe.cross_validate``; never the validation split). For a plain linear head this *is*
multinomial logistic regression; a head with hidden layers gets the same objective over its
parameters (the penalty on its weight matrices).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from transfer_studio.training import probe

MAX_ITER = 300  # L-BFGS iterations over the whole head phase (converged fits stop earlier)
MIN_ITER_PER_EPOCH = 20


@dataclass
class HeadSetup:
    c: float  # chosen regularisation (scikit-learn's C on unit-RMS features)
    scale: float  # the features' RMS
    cv: dict  # probe.CrossValidation.to_dict()


def linear_of(head: nn.Module) -> nn.Linear | None:
    """The head's only parametrised layer when it is a Linear (``Linear`` or e.g. Dropout + Linear)."""
    if isinstance(head, nn.Linear):
        return head
    with_params = [m for m in head.modules() if any(True for _ in m.parameters(recurse=False))]
    if len(with_params) == 1 and isinstance(with_params[0], nn.Linear):
        return with_params[0]
    return None


def choose(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *, seed: int,
           class_weight: torch.Tensor | None, check: Callable[[], None] | None = None) -> HeadSetup:
    x = features.flatten(1).float().cpu()
    cv = probe.cross_validate(x, labels.cpu(), num_classes, seed=seed,
                              class_weight=class_weight.cpu() if class_weight is not None else None, check=check)
    return HeadSetup(cv.c, probe.feature_scale(x), cv.to_dict())


def iterations_per_epoch(head_epochs: int) -> int:
    return max(MIN_ITER_PER_EPOCH, math.ceil(MAX_ITER / max(1, head_epochs)))


def epoch(head: nn.Module, features: torch.Tensor, labels: torch.Tensor, setup: HeadSetup, *,
          max_iter: int, class_weight: torch.Tensor | None = None,
          check: Callable[[], None] | None = None) -> tuple[float, float]:
    """One head-phase epoch; returns (cross-entropy, accuracy) on ``features`` afterwards."""
    linear = linear_of(head)
    x = features.float()
    if linear is not None and x.dim() == 2 and x.shape[1] == linear.in_features:
        fit = probe.fit(x, labels, linear.out_features, setup.c, class_weight=class_weight,
                        init=(linear.weight.detach(), linear.bias.detach() if linear.bias is not None
                              else torch.zeros(linear.out_features, device=x.device)),
                        max_iter=max_iter, scale=setup.scale, check=check)
        with torch.no_grad():
            linear.weight.copy_(fit.weight.to(linear.weight.dtype))
            if linear.bias is not None:
                linear.bias.copy_(fit.bias.to(linear.bias.dtype))
    else:
        _generic(head, x, labels, setup, max_iter=max_iter, class_weight=class_weight, check=check)
    was = head.training
    head.eval()
    with torch.no_grad():
        out = head(x).float()
        loss = float(F.cross_entropy(out, labels, weight=class_weight))
        acc = float((out.argmax(1) == labels).float().mean())
    head.train(was)
    return loss, acc


def _generic(head: nn.Module, x: torch.Tensor, y: torch.Tensor, setup: HeadSetup, *, max_iter: int,
             class_weight: torch.Tensor | None, check: Callable[[], None] | None) -> None:
    params = [p for p in head.parameters() if p.requires_grad]
    matrices = [p for p in params if p.ndim >= 2]
    # The probe's penalty ||W_scaled||^2 / (2 C N) in the features' own units.
    coeff = setup.scale**2 / (setup.c * max(1, len(y)))
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, tolerance_grad=1e-6, tolerance_change=1e-10,
                            history_size=20, line_search_fn="strong_wolfe")
    was = head.training
    head.eval()  # deterministic (no dropout): a line search needs the same function every call

    def closure() -> torch.Tensor:
        if check is not None:
            check()
        opt.zero_grad()
        loss = F.cross_entropy(head(x).float(), y, weight=class_weight)
        loss = loss + 0.5 * coeff * sum((p * p).sum() for p in matrices)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    head.train(was)
