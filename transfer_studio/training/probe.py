"""Linear probes on cached backbone features: the converged head, its regularisation by
cross-validation, a learning-rate range test, and invariance checks for augmentation advice.

All of it runs on feature matrices (N x D), so it costs milliseconds to seconds once the backbone's
features exist (``training.feature_store``). Nothing here looks at the validation split: choices are
made by k-fold cross-validation on the training split.

The probe is multinomial logistic regression, fitted to convergence with full-batch L-BFGS, the
method of Kumar et al. (2022, LP-FT) and Kornblith et al. (2019) for linear probes, with
scikit-learn's objective and its ``C`` (on features scaled to unit RMS).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


@contextlib.contextmanager
def small_ops(x: torch.Tensor):
    """One intra-op thread for the small tensor ops of a probe on a CPU: waking OpenMP threads costs
    more than the work, and on a busy 2-core machine a probe's cross-validation took 43 s with two
    threads and under 2 s with one."""
    if x.device.type != "cpu" or x.numel() > 20_000_000:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _single_threaded(fn):
    @functools.wraps(fn)
    def wrapper(x, *args, **kwargs):
        with small_ops(x):
            return fn(x, *args, **kwargs)
    return wrapper


# Regularisation grid, as scikit-learn's C (inverse strength) on features scaled to unit RMS per
# dimension: from heavily shrunk to nearly unregularised. C = 1 is scikit-learn's default.
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
FOLDS = 5
MAX_ITER = 300
CV_MAX_ITER = 60  # per fit while cross-validating (warm starts along the grid make up the rest)


@dataclass
class ProbeFit:
    weight: torch.Tensor  # (K, D) in the original feature scale: a drop-in nn.Linear weight
    bias: torch.Tensor  # (K,)
    c: float
    iterations: int
    loss: float  # final training cross-entropy
    accuracy: float  # on the training features


@dataclass
class CrossValidation:
    c: float  # chosen
    grid: list[float]  # tried, ascending
    cv_loss: list[float]  # mean out-of-fold cross-entropy per grid value (nan: not tried)
    cv_accuracy: list[float]  # mean out-of-fold accuracy per grid value
    folds: int
    images: int
    seconds: float = 0.0

    @property
    def accuracy(self) -> float:
        return self.cv_accuracy[self.grid.index(self.c)]

    @property
    def accuracy_se(self) -> float:
        """Standard error of the out-of-fold accuracy (binomial, over the training images)."""
        a = self.accuracy
        return math.sqrt(max(a * (1 - a), 0.25 / max(self.images, 1)) / max(self.images, 1))

    def to_dict(self) -> dict[str, Any]:
        return {"c": self.c, "grid": self.grid, "cv_loss": self.cv_loss, "cv_accuracy": self.cv_accuracy,
                "folds": self.folds, "images": self.images, "accuracy": self.accuracy,
                "accuracy_se": self.accuracy_se, "seconds": round(self.seconds, 3)}


def feature_scale(x: torch.Tensor) -> float:
    """One scalar that brings features to unit RMS per dimension, so C means the same for every
    backbone (as after standardising, without moving the features)."""
    return float(x.float().pow(2).mean().clamp_min(1e-12).sqrt())


@_single_threaded
def fit(x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float, *, class_weight: torch.Tensor | None = None,
        init: tuple[torch.Tensor, torch.Tensor] | None = None, max_iter: int = MAX_ITER,
        scale: float | None = None, sample_weight: torch.Tensor | None = None,
        check: Callable[[], None] | None = None) -> ProbeFit:
    """Logistic regression on ``x`` (N x D), fitted with L-BFGS to convergence (gradient tolerance
    1e-6, or ``max_iter`` iterations). Objective: mean cross-entropy + ||W||^2 / (2 C N) on features
    scaled to unit RMS (scikit-learn's, divided by C N); the bias is not penalised."""
    x = x.float()
    y = y.long()
    s = scale if scale is not None else feature_scale(x)
    xs = x / s
    n, d = xs.shape
    l2 = 1.0 / (float(c) * max(n, 1))
    # (K, D) layout: F.linear with a contiguous weight is ~3x faster than x @ w on a CPU for K << D.
    w = torch.zeros(num_classes, d, dtype=torch.float32, device=x.device)
    b = torch.zeros(num_classes, dtype=torch.float32, device=x.device)
    if init is not None:  # warm start, given in the original scale
        w = (init[0].float() * s).to(x.device).contiguous().clone()
        b = init[1].float().to(x.device).clone()
    w.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-6, tolerance_change=1e-10,
                            history_size=20, line_search_fn="strong_wolfe")
    cw = class_weight.float().to(x.device) if class_weight is not None else None

    sw = sample_weight.float().to(x.device) if sample_weight is not None else None

    def closure() -> torch.Tensor:
        if check is not None:
            check()
        opt.zero_grad()
        if sw is None:
            ce = F.cross_entropy(F.linear(xs, w, b), y, weight=cw)
        else:
            per = F.cross_entropy(F.linear(xs, w, b), y, weight=cw, reduction="none")
            ce = (per * sw).sum() / sw.sum()
        loss = ce + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    state = opt.state[opt._params[0]]
    with torch.no_grad():
        out = F.linear(xs, w, b)
        ce = float(F.cross_entropy(out, y, weight=cw))
        acc = float((out.argmax(1) == y).float().mean())
    return ProbeFit((w.detach() / s).contiguous(), b.detach().clone(), float(c), int(state.get("n_iter", 0)),
                    ce, acc)


def logits(p: ProbeFit, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x.float(), p.weight, p.bias)


def stratified_folds(y: np.ndarray | Sequence[int], k: int, seed: int = 0) -> list[np.ndarray]:
    """Fold index per sample: each class dealt round-robin over the folds in a seeded order."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    offset = 0
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        fold[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)  # classes start where the last one stopped: folds stay balanced in size
    return [np.flatnonzero(fold == i) for i in range(k)]


def effective_folds(y: np.ndarray | Sequence[int], k: int = FOLDS) -> int:
    """k (3 from 1,000 images: the estimate is stable and each fit costs more), but never more
    folds than the smallest class has images (at least 2)."""
    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y)
    counts = counts[counts > 0]
    if len(y) >= 1000:
        k = min(k, 3)
    return int(max(2, min(k, counts.min() if len(counts) else 2)))


def _span_basis(x: torch.Tensor) -> torch.Tensor | None:
    """With fewer images than feature dimensions, every L2-regularised linear solution lies in the
    span of the images (representer theorem): fitting on coordinates in an orthonormal basis of
    that span is the same problem in N instead of D dimensions. Returns the D x N basis, or None."""
    n, d = x.shape
    if n >= 0.7 * d:
        return None
    _, _, vh = torch.linalg.svd(x.double(), full_matrices=False)
    return vh.T.float().contiguous()  # (D, r); orthonormal columns


def _fit_folds(x: torch.Tensor, y: torch.Tensor, train_masks: torch.Tensor, num_classes: int, c: float,
               class_weight: torch.Tensor | None, init: tuple[torch.Tensor, torch.Tensor] | None, max_iter: int,
               check: Callable[[], None] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """All folds' probes as one L-BFGS problem (their objectives are independent, so the sum's
    minimum is each one's): one optimiser loop instead of k, which is what costs on small folders.
    ``x`` is already scaled to unit RMS; returns (W: k x K x D, b: k x K)."""
    k = train_masks.shape[0]
    n_train = train_masks.sum(1).float()  # (k,)
    l2 = 1.0 / (float(c) * n_train)  # per fold, as ``fit`` sets it
    if init is None:
        w = torch.zeros(k, num_classes, x.shape[1], dtype=torch.float32, device=x.device)
        b = torch.zeros(k, num_classes, dtype=torch.float32, device=x.device)
    else:
        w, b = init[0].clone(), init[1].clone()
    w.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-6, tolerance_change=1e-10,
                            history_size=20, line_search_fn="strong_wolfe")
    cw = class_weight.float().to(x.device)[y] if class_weight is not None else torch.ones(len(y), device=x.device)
    weights = train_masks.float() * cw  # (k, N): each fold's weighted training images
    norm = weights.sum(1).clamp_min(1e-12)
    yk = y.long().expand(k, -1)

    def closure() -> torch.Tensor:
        if check is not None:
            check()
        opt.zero_grad()
        out = torch.einsum("nd,fkd->fnk", x, w) + b[:, None, :]  # (k, N, K)
        ce = F.cross_entropy(out.reshape(-1, num_classes), yk.reshape(-1), reduction="none").view(k, -1)
        loss = ((ce * weights).sum(1) / norm).sum() + 0.5 * (l2 * (w * w).sum((1, 2))).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


@_single_threaded
def cross_validate(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, grid: Sequence[float] = C_GRID,
                   folds: int = FOLDS, seed: int = 0, class_weight: torch.Tensor | None = None,
                   check: Callable[[], None] | None = None) -> CrossValidation:
    """k-fold cross-validation of ``fit`` over ``grid``; the chosen C has the best out-of-fold
    accuracy, ties going to the lower out-of-fold cross-entropy. (Chosen by cross-entropy alone,
    heavily regularised probes won on small off-domain folders and lost 3 points of TEST accuracy
    there: bench/bench_advisor.py.) Runs from strong to weak regularisation, each fit
    warm-started from the previous one, and stops two grid steps past the best."""
    import time

    t0 = time.perf_counter()
    x = x.float()
    y = y.long()
    y_np = y.cpu().numpy()
    k = effective_folds(y_np, folds)
    parts = stratified_folds(y_np, k, seed)
    basis = _span_basis(x)
    xr = (x @ basis if basis is not None else x) / feature_scale(x)  # norms and inner products unchanged
    held = torch.zeros(k, len(y_np), dtype=torch.bool)
    for f, idx in enumerate(parts):
        held[f, torch.as_tensor(idx)] = True
    held = held.to(x.device)
    ordered = sorted(float(g) for g in grid)  # strong (small C) -> weak
    losses = np.full(len(ordered), np.nan)
    accs = np.full(len(ordered), np.nan)
    state: tuple[torch.Tensor, torch.Tensor] | None = None
    best = 0
    for g, c in enumerate(ordered):
        state = _fit_folds(xr, y, ~held, num_classes, c, class_weight, state, CV_MAX_ITER, check)
        with torch.no_grad():
            out = torch.einsum("nd,fkd->fnk", xr, state[0]) + state[1][:, None, :]
            ce = F.cross_entropy(out.reshape(-1, num_classes), y.expand(k, -1).reshape(-1),
                                 reduction="none").view(k, -1)
            right = (out.argmax(2) == y).float()
            hf = held.float()
            losses[g] = float(((ce * hf).sum(1) / hf.sum(1)).mean())
            accs[g] = float(((right * hf).sum(1) / hf.sum(1)).mean())
        if (round(accs[g], 4), -losses[g]) > (round(accs[best], 4), -losses[best]):
            best = g
        if g - best >= 2:
            break
    return CrossValidation(ordered[best], ordered, [float(v) for v in losses], [float(v) for v in accs], k,
                           len(y_np), time.perf_counter() - t0)


# -- learning-rate range test -----------------------------------------------------------------------


@dataclass
class LRRangeTest:
    lrs: list[float]
    losses: list[float]  # smoothed training loss after each step
    suggested: float  # where the loss falls fastest (``steepest``)
    steps: int
    notes: list[str] = field(default_factory=list)


@_single_threaded
def lr_range_test(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, start: float = 1e-6, end: float = 1.0,
                  steps: int = 100, batch_size: int = 32, weight_decay: float = 1e-4, seed: int = 0,
                  check: Callable[[], None] | None = None) -> LRRangeTest:
    """Train a fresh linear head with AdamW while the rate grows exponentially from ``start`` to
    ``end``; stop when the loss explodes. The suggested rate is where the smoothed loss falls
    fastest (the new head's rate in fine-tuning)."""
    g = torch.Generator().manual_seed(seed)
    x = x.float()
    head = torch.nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        head.weight.normal_(0, 0.01, generator=g)
        head.bias.zero_()
    opt = torch.optim.AdamW(head.parameters(), lr=start, weight_decay=weight_decay)
    n = len(y)
    ratio = (end / start) ** (1 / max(1, steps - 1))
    lrs, losses = [], []
    avg, best, beta = 0.0, math.inf, 0.9
    order = torch.randperm(n, generator=g)
    pos = 0
    for i in range(steps):
        if check is not None:
            check()
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=g), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        lr = start * ratio**i
        for group in opt.param_groups:
            group["lr"] = lr
        loss = F.cross_entropy(head(x[idx]), y[idx].long())
        opt.zero_grad()
        loss.backward()
        opt.step()
        avg = beta * avg + (1 - beta) * loss.item()
        smooth = avg / (1 - beta ** (i + 1))
        lrs.append(lr)
        losses.append(smooth)
        best = min(best, smooth)
        if not math.isfinite(smooth) or (i > 10 and smooth > 4 * best):
            break
    return LRRangeTest(lrs, losses, suggested=steepest(lrs, losses), steps=len(lrs))


STEEP_WINDOW_DECADES = 0.5


def steepest(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The rate where the smoothed loss falls fastest (per decade), before its minimum: the "steep"
    point of Smith (2017) and fastai's finder. (A tenth of the minimum's rate, the older rule, gave
    0.1 for linear heads on every bench folder: far above what fine-tuning a head with AdamW wants.)"""
    lr = np.log10(np.asarray(lrs, dtype=np.float64))
    loss = np.asarray(losses, dtype=np.float64)
    end = int(np.argmin(loss)) + 1
    if end < 4:
        return float(lrs[max(0, end - 1)])
    # The slope over half a decade either side of each rate: step-to-step noise at the start of the
    # curve (on the glyph folders as large as the fall over a decade later) made a point-wise
    # gradient pick the very first rate, 1e-6, on 3 of 27 bench rows.
    best, best_slope = None, 0.0
    for i in range(end):
        lo = int(np.searchsorted(lr[:end], lr[i] - STEEP_WINDOW_DECADES))
        hi = int(np.searchsorted(lr[:end], lr[i] + STEEP_WINDOW_DECADES, side="right")) - 1
        if hi - lo < 2:
            continue
        slope = (loss[hi] - loss[lo]) / (lr[hi] - lr[lo])
        if slope < best_slope:
            best, best_slope = i, slope
    if best is None:  # the loss never fell: the rate a decade below its minimum
        return float(lrs[end - 1]) / 10
    return float(10 ** lr[best])


# -- invariance checks -----------------------------------------------------------------------------


@dataclass
class InvarianceCheck:
    name: str  # e.g. "hflip"
    accuracy: float  # out-of-fold accuracy of probes trained on the originals
    transformed_accuracy: float  # ... of probes trained on the originals plus transformed copies
    images: int  # transformed copies used
    drop: float  # accuracy - transformed_accuracy: what training with the transformation costs
    se: float  # standard error of the drop (paired, over the held-out images)
    preserves: bool  # the transformation keeps the classes


@_single_threaded
def invariance(x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, idx: np.ndarray, num_classes: int, *,
               name: str, c: float, max_drop: float, folds: int = FOLDS, seed: int = 0,
               check: Callable[[], None] | None = None) -> InvarianceCheck:
    """Does training with this transformation (augmentation) hurt? The question the advice answers.

    ``x``, ``y``: features and labels of the training images; ``xt``: features of transformed copies
    of the images ``idx`` (a sample), labelled as their originals. Per fold, one probe trains on the
    originals and one on the originals plus the transformed copies (weighted to count as much as the
    originals); both score the held-out originals. When the transformation turns one class into
    another (a mirrored 'b' is a 'd'), the copies contradict the labels and the second probe is
    worse; a transformation that only adds variety (a small rotation) costs nothing, even when
    probes trained without it misread transformed images (which a plain accuracy-on-copies check
    cannot tell apart: both dropped 35-39 points on rotated and mirrored arrows).
    """
    y_np = y.cpu().numpy()
    k = effective_folds(y_np, folds)
    parts = stratified_folds(y_np, k, seed)
    where = {int(i): j for j, i in enumerate(idx)}
    n = len(y_np)
    right = np.zeros(n)
    right_a = np.zeros(n)
    for held in parts:
        train = np.setdiff1d(np.arange(n), held)
        p = fit(x[train], y[train], num_classes, c, max_iter=CV_MAX_ITER, check=check)
        copies = [i for i in train if int(i) in where]
        if copies:
            rows = [where[int(i)] for i in copies]
            xa = torch.cat([x[train].float(), xt[rows].float()])
            ya = torch.cat([y[train], y[copies]])
            weight = torch.ones(len(ya))
            weight[len(train):] = len(train) / len(copies)  # the copies weigh as much as the originals
            pa = fit(xa, ya, num_classes, c, sample_weight=weight, init=(p.weight, p.bias), max_iter=CV_MAX_ITER,
                     check=check)
        else:
            pa = p
        with torch.no_grad():
            right[held] = (logits(p, x[held]).argmax(1).cpu().numpy() == y_np[held])
            right_a[held] = (logits(pa, x[held]).argmax(1).cpu().numpy() == y_np[held])
    diff = right - right_a
    drop = float(diff.mean())
    se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else 1.0
    # One standard error, not two: wrongly keeping a class-changing flip teaches contradictions,
    # wrongly dropping a harmless one costs a little variety.
    return InvarianceCheck(name, float(right.mean()), float(right_a.mean()), len(idx), drop, se,
                           preserves=not (drop > max_drop and drop > se))
