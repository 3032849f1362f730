"""The freezing-strategy advisor: how much of the pretrained network to retrain, given the data and compute.

Three approaches (docs/strategy.md gives the thresholds and their sources):
  1 head     freeze the whole pretrained network; train a new output layer only
  2 partial  freeze the early blocks; train the last blocks and the new output layer
  3 full     fine-tune everything from the pretrained weights

``suggest`` first picks from images per class and in total, then estimates the training time of
that choice on the device (images x epochs x the model's forward time per image, measured on the
device when affordable, else its multiply-accumulates over the device's measured matmul rate;
backward ~2.5x the forward of the trained blocks; image decoding on top) and, while the estimate
exceeds the time budget, steps down one approach and says so. Block names come from the real network,
built on the meta device (no memory, no weights).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn

from transfer_studio.config import EXPLICIT_FIELDS, Project, SurgeryOp, clear_user_set
from transfer_studio.core import devices
from transfer_studio.core.dataset import ScanReport
from transfer_studio.durations import hours_text, range_text
from transfer_studio.errors import UserError

NAMES = {1: "head", 2: "partial", 3: "full"}

# Data thresholds (docs/strategy.md): median images per class and total images.
HEAD_MAX_PER_CLASS = 80  # fewer per class: head only
HEAD_MAX_TOTAL = 400  # fewer in total: head only, whatever the per-class count
FULL_MIN_PER_CLASS = 800  # at least this many per class ...
FULL_MIN_TOTAL = 5_000  # ... and this many in total: fine-tune everything
# Share of the body's blocks trained by "partial": grows from 20% at HEAD_MAX_PER_CLASS images per
# class to 50% at FULL_MIN_PER_CLASS (log scale); a different domain (probe) moves the cut earlier.
PARTIAL_SHARE = (0.2, 0.5)
# With evidence (docs/strategy.md, "The rules"; each traced to bench_advisor rows):
FT_MIN_PER_CLASS = 40  # fewer images per class: fine-tuning never beat the fitted head (10/class rows)
# The cross-validated probe's accuracy below this: the frozen features do not separate the classes
# well, and fine-tuning on so few images of them did not pay (glyph rows, probe 34-60%: partial and
# full below the head; the digits sample, 88%: 10 minutes of partial ended at the fitted head's
# accuracy). Where partial paid (photo 40/class) and tied (texture), the probe measured 97-99%.
PROBE_WEAK = 0.9
# Recipes (docs/strategy.md): the head is fitted to convergence (L-BFGS) on cached features; partial
# and full start from that head (LP) and fine-tune (FT) with discriminative rates and a warm-up.
HEAD_EPOCHS = 5  # L-BFGS epochs of the head strategy (converged fits stop early)
HEAD_AUGMENT = "none"
HEAD_AUGMENT_REASON = ("The new output layer is fitted on the images as the network sees them: augmented "
                       "copies did not improve the head on the benchmark (docs/strategy.md).")
LP_EPOCHS = 1  # the head phase of partial and full: one L-BFGS epoch runs the fit to convergence
FT_STEPS = 150  # optimiser steps fine-tuning aims for ...
FT_EPOCHS = (4, 12)  # ... within these epochs
FT_WARMUP_EPOCHS = 1.0
FT_LABEL_SMOOTHING = 0.0  # the best epoch is chosen by validation cross-entropy: smoothing would penalise fine-tuned epochs against the probe
FT_AUGMENT = "medium"
DEFAULT_HEAD_LR = 1e-3  # without a learning-rate range test
BODY_LR = 1e-4  # AdamW rate of the pretrained blocks in fine-tuning (timm/torchvision fine-tuning range)
FT_HEAD_LR_MAX = 10 * BODY_LR  # the fitted head's rate in fine-tuning: the range test's, within 1-10x the body's
ROTATE_DEGREES = 15.0
DEFAULT_TIME_BUDGET_HOURS = 2.0
VAL_SHARE = 0.2  # assumed validation share for a flat folder (DataSpec.val_split's default)

# Similarity probe: mean top-1 ImageNet probability below this means "a different domain".
PROBE_IMAGES = 64
PROBE_SIMILAR_CONFIDENCE = 0.15  # digits ~0.08, sklearn sample photos ~0.3 (bundled model)

# Speed. Preferred: time a real forward of the model (random init) on the device. When that would
# be too slow or too big, divide its FLOPs by a matmul-measured peak times the share of peak
# convolutional networks reach (resnet18 reached ~0.5 on this project's 2-core CPU; depthwise-heavy
# MobileNets far less, which only the real forward captures). Nominal peaks if even the matmul fails.
_EFFICIENCY = {"cpu": 0.35, "cuda": 0.35, "mps": 0.3}
_NOMINAL_PEAK = {"cpu": 20e9, "cuda": 100e12, "mps": 5e12}  # FLOP/s; "cpu" is per thread
_MEASURE_MAX_PARAMS = 60_000_000  # building bigger models just to time them costs too long
_MEASURE_MAX_SECONDS = 3.0  # predicted time of the timed forward passes
_MEASURE_BATCH = {"cpu": 2, "cuda": 32, "mps": 8}
BACKWARD_FACTOR = 2.5  # backward + optimiser step of a trained block vs its forward (measured 2.5-3.3)
_DECODE_S = (2e-3, 5e-9)  # image decode + augmentation per core: fixed + per source pixel (seconds)
_CACHE_PASSES = 2  # TrainSpec.cache_passes' default: augmented feature passes of the head strategy
_peak_cache: dict[str, tuple[float, str]] = {}
_forward_cache: dict[tuple[str, str], tuple[float, str]] = {}


@dataclass
class Suggestion:
    approach: int  # 1 | 2 | 3
    name: str  # "head" | "partial" | "full"
    frozen: list[str]  # qualified names of the blocks that stay frozen
    trainable: list[str]  # qualified names of the blocks that train (the head is replaced by a new one)
    unfreeze_from: str | None  # partial: the first trained block
    lr: float  # learning rate of the new head
    body_lr_factor: float  # pretrained blocks train at lr * body_lr_factor
    epochs: int
    batch_size: int
    augment: str  # augmentation preset
    estimated_hours: float
    time_budget_hours: float
    stepped_down: bool
    reason: str  # one or two plain sentences
    probe: dict[str, Any] | None = None  # similarity probe result, when run
    model: str = ""
    device: str = "cpu"
    images_per_class: float = 0.0  # median over classes
    data_choice: int = 0  # the approach the data alone pointed to (before the time check)
    estimates_hours: dict[str, float] = field(default_factory=dict)  # every approach, for comparison
    throughput_gflops: float = 0.0  # effective forward throughput assumed (GFLOP/s)
    throughput_source: str = ""  # "measured" (timed forward) | "estimated" (matmul peak) | "nominal" | "given"
    # -- from evidence (training.advice): None / empty when the suggestion was made from counts alone
    estimate_source: str = "flops"  # "trial" (timed steps on this device) | "flops" (a rough model)
    estimated_seconds: float = 0.0
    estimate_range_s: list[float] = field(default_factory=list)  # [low, high] of the chosen approach
    estimates_s: dict[str, list[float]] = field(default_factory=dict)  # approach -> [seconds, low, high]
    head_epochs: int = 1  # partial/full: epochs of the head fitted alone first (LP of LP-FT)
    warmup_epochs: float = 0.0  # fine-tuning's own warm-up
    label_smoothing: float = 0.0
    augment_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # overrides of the preset
    augment_reason: str = ""
    evidence: dict[str, Any] | None = None  # Evidence.to_dict(): cross-validation, lr test, invariances
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)  # every approach's plan (RECIPE_FIELDS)


@dataclass
class Evidence:
    """What the advisor measured on this project's training images and device (``training.advice``)."""

    train_images: int
    cv_accuracy: float  # out-of-fold accuracy of the cross-validated linear probe (the head strategy)
    cv_se: float
    c: float  # the probe's regularisation chosen by cross-validation
    folds: int
    lr: float | None = None  # learning-rate range test on the cached features: the head's rate
    lr_curve: dict[str, list[float]] = field(default_factory=dict)  # {"lrs": [...], "losses": [...]}
    invariances: dict[str, dict[str, Any]] = field(default_factory=dict)  # hflip / vflip / rotate checks
    imagenet_confidence: float | None = None  # mean top-1 probability of the pretrained classifier
    features_computed: int = 0  # images the backbone ran on (the rest came from the feature store)
    seconds: float = 0.0
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)  # approach name -> trial estimate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# -- public API ----------------------------------------------------------------------------------


def suggest(report: ScanReport, model_name: str, *, device: str = "auto", time_budget_hours: float | None = None,
            probe: bool = False, throughput_gflops: float | None = None,
            evidence: Evidence | None = None) -> Suggestion:
    """Suggest head / partial / full training for ``model_name`` on the scanned data.

    With ``evidence`` (``training.advice.gather``: cross-validated probe, learning-rate range test,
    invariance checks, timed trials) every number comes from a measurement on this data and device;
    without it the choice follows the image counts and the time is a rough FLOP-based model
    (``throughput_gflops``, effective forward GFLOP/s, skips the device measurement).
    """
    from transfer_studio.core import catalog

    catalog.get_info(model_name)  # an unknown model fails here, before anything is measured
    dev = resolve_device(device)
    budget = DEFAULT_TIME_BUDGET_HOURS if time_budget_hours is None else float(time_budget_hours)
    if not budget > 0:  # also rejects NaN
        raise UserError(f"the time budget must be a positive number of hours (got {time_budget_hours})")
    if report.num_images == 0 or not report.classes:
        raise UserError("the dataset has no readable images: scan a folder with images first")

    net = _network_facts(model_name)
    per_class = _median([report.counts[c] for c in report.classes])
    total = report.num_images
    n_train, n_val = _train_val_sizes(report)

    probe_result = similarity_probe(report, model_name) if probe else None
    data_choice = _data_choice(per_class, total)
    approach = choose_approach(per_class, total, evidence)
    plans = plans_for(report, model_name, dev, evidence)
    timings = (evidence.timings if evidence is not None else {}) or {}
    seconds: dict[int, list[float]] = {}
    sources: dict[int, str] = {}
    for a in (1, 2, 3):
        if NAMES[a] in timings:
            seconds[a] = [float(timings[NAMES[a]][k]) for k in ("seconds", "low", "high")]
            sources[a] = "trial"
    gflops, tsource = 0.0, "trial"
    if len(seconds) < 3:  # approaches without a timed trial: a rough model (the app times all three)
        if throughput_gflops is not None:
            if not throughput_gflops > 0:
                raise UserError(f"throughput must be positive (got {throughput_gflops})")
            forward, tsource = 2.0 * net.macs / (float(throughput_gflops) * 1e9), "given"
        else:
            forward, tsource = forward_seconds(model_name, dev, net.macs)
        for a in (1, 2, 3):
            if a not in seconds:
                v = 3600 * _estimate_hours(plans[a], n_train, n_val, report, forward, dev)
                seconds[a] = [v, v / 2, v * 2]  # "typically right within 2x"
                sources[a] = "flops"
        gflops = round(2.0 * net.macs / forward / 1e9, 1)
    estimates = {a: seconds[a][0] / 3600 for a in (1, 2, 3)}
    chosen = approach
    while chosen > 1 and estimates[chosen] > budget:
        chosen -= 1
    plan = plans[chosen]
    source = sources[chosen]
    reason = _reason(chosen, approach, plan, net, per_class, total, estimates, budget, dev, evidence,
                     probe_result, seconds if source == "trial" else None)
    return Suggestion(
        approach=chosen, name=NAMES[chosen], frozen=plan.frozen, trainable=plan.trainable,
        unfreeze_from=plan.unfreeze_from, lr=plan.lr, body_lr_factor=plan.body_lr_factor, epochs=plan.epochs,
        batch_size=plan.batch_size, augment=plan.augment, estimated_hours=_round_hours(estimates[chosen]),
        time_budget_hours=budget, stepped_down=chosen < approach, reason=reason, probe=probe_result,
        model=model_name, device=dev, images_per_class=per_class, data_choice=data_choice,
        estimates_hours={NAMES[a]: _round_hours(h) for a, h in estimates.items()},
        throughput_gflops=gflops, throughput_source=tsource, estimate_source=source,
        estimated_seconds=round(seconds[chosen][0], 1), estimate_range_s=[round(v, 1) for v in seconds[chosen][1:]],
        estimates_s={NAMES[a]: [round(v, 1) for v in seconds[a]] for a in (1, 2, 3)},
        head_epochs=plan.head_epochs, warmup_epochs=plan.warmup_epochs, label_smoothing=plan.label_smoothing,
        augment_params=plan.augment_params, augment_reason=plan.augment_reason,
        evidence=evidence.to_dict() if evidence is not None else None,
        recipes={NAMES[a]: {k: getattr(plans[a], k) for k in RECIPE_FIELDS} for a in (1, 2, 3)},
    )


RECIPE_FIELDS = ("frozen", "trainable", "unfreeze_from", "lr", "body_lr_factor", "epochs", "batch_size", "augment",
                 "augment_params", "head_epochs", "warmup_epochs", "label_smoothing")


def as_approach(suggestion: Suggestion, approach: int, unfreeze_from: str | None = None) -> Suggestion:
    """The suggestion switched to another approach with the advisor's recipe for it (partial: cut at
    ``unfreeze_from`` when given)."""
    import dataclasses

    recipe = dict(suggestion.recipes.get(NAMES[approach], {}))
    blocks = list(suggestion.frozen) + [b for b in suggestion.trainable if b not in suggestion.frozen]
    head, body = blocks[-1], blocks[:-1]
    if approach == 2 and unfreeze_from in body[1:]:
        cut = body.index(unfreeze_from)
        recipe.update(frozen=body[:cut], trainable=body[cut:] + [head], unfreeze_from=unfreeze_from)
    elif not recipe:  # a suggestion saved before recipes were kept
        recipe = {"frozen": body if approach == 1 else [], "unfreeze_from": None,
                  "trainable": [head] if approach == 1 else blocks}
    return dataclasses.replace(suggestion, approach=approach, name=NAMES[approach], **recipe)


def choose_approach(per_class: float, total: int, evidence: Evidence | None) -> int:
    """The approach the data calls for (before the time budget): docs/strategy.md gives each
    threshold and the benchmark rows behind it. Without evidence: the image counts alone."""
    data = _data_choice(per_class, total)
    if evidence is None or data == 3:
        return data  # no benchmark row has that much data: the count rule stands
    if per_class < FT_MIN_PER_CLASS or evidence.cv_accuracy < PROBE_WEAK:
        return 1
    return 2


def plans_for(report: ScanReport, model_name: str, device: str, evidence: Evidence | None = None,
              ) -> dict[int, Plan]:
    """The recipe of each approach (1 head, 2 partial, 3 full) for this data, model and device."""
    from transfer_studio.core import catalog

    info = catalog.get_info(model_name)
    net = _network_facts(model_name)
    per_class = _median([report.counts[c] for c in report.classes])
    n_train, _ = _train_val_sizes(report)
    return {a: _plan(a, net, info, per_class, n_train, device, evidence) for a in (1, 2, 3)}


def apply_suggestion(project: Project, suggestion: Suggestion, *, override_user: bool = False) -> list[str]:
    """Write the suggestion into the project: training settings, augmentation, freeze op.

    One rule, for the CLI and the app: what the user set explicitly (``train.user_set``) wins, and
    stays; only the other values take the suggestion's. ``override_user`` (the Strategy page's
    "Apply this suggestion", an explicit choice) replaces them too and gives them back to the advisor.
    Earlier freeze/unfreeze ops are replaced (unless the user set the freeze map); other surgery
    (head replacement, inserted layers) is kept. The freeze op goes first, so layers that surgery
    adds or replaces stay trainable; for "head" everything is frozen and the trainer trains the
    (new) head. Returns the names of the values kept because the user set them.
    """
    if suggestion.model and project.model.name != suggestion.model:
        raise UserError(f"this suggestion is for {suggestion.model}, but the project uses "
                        f"{project.model.name}: ask for a new suggestion")
    if suggestion.name not in NAMES.values():
        raise UserError(f"unknown strategy '{suggestion.name}': choose head, partial or full")
    if suggestion.name == "partial" and not suggestion.unfreeze_from:
        raise UserError("a partial strategy needs the first block to train (unfreeze_from)")
    t = project.train
    if override_user:
        clear_user_set(t)
    mine = set(t.user_set)
    t.strategy = suggestion.name
    values = {"lr": suggestion.lr, "body_lr_factor": suggestion.body_lr_factor, "epochs": suggestion.epochs,
              "batch_size": suggestion.batch_size, "head_epochs": suggestion.head_epochs,
              "warmup_epochs": suggestion.warmup_epochs, "label_smoothing": suggestion.label_smoothing}
    for name, value in values.items():
        if name not in mine:
            setattr(t, name, value)
    if "augment" not in mine:
        project.augment.preset = suggestion.augment
        project.augment.params = {k: dict(v) for k, v in suggestion.augment_params.items()}
    if "freeze" in mine:
        # The user's freeze map decides what partial trains (finetune.plan reads it).
        t.unfreeze_from = None
    else:
        t.unfreeze_from = suggestion.unfreeze_from if suggestion.name == "partial" else None
        kept = [op for op in project.surgery if op.op not in ("freeze", "unfreeze", "freeze_before")]
        freeze: list[SurgeryOp] = []
        if suggestion.name == "partial":
            freeze.append(SurgeryOp("freeze_before", suggestion.unfreeze_from or ""))
        elif suggestion.name == "head":
            freeze.append(SurgeryOp("freeze", "*"))
        project.surgery = freeze + kept
    return [n for n in EXPLICIT_FIELDS if n in mine]


def resolve_device(device: str = "auto") -> str:
    """The type of the device the estimates are for (``core.devices.resolve``, the one device rule)."""
    return devices.resolve(device).type


def device_peak_flops(device: str) -> tuple[float, str]:
    """The device's matmul FLOP/s, "measured" (~0.2 s, cached per process) or "nominal"."""
    if device not in _peak_cache:
        try:
            _peak_cache[device] = (_matmul_flops(device), "measured")
        except (RuntimeError, ValueError):
            peak = _NOMINAL_PEAK.get(device, _NOMINAL_PEAK["cpu"])
            _peak_cache[device] = (peak * torch.get_num_threads() if device == "cpu" else peak, "nominal")
    return _peak_cache[device]


def forward_seconds(model_name: str, device: str, macs: float) -> tuple[float, str]:
    """Seconds per image of one forward pass of ``model_name`` at its input size on ``device``.

    "measured": a timed forward of the real architecture (random init) when that is affordable;
    "estimated": its FLOPs over the device's measured matmul peak times a typical efficiency;
    "nominal": the same with a nominal peak. Cached per process.
    """
    key = (model_name, device)
    if key in _forward_cache:
        return _forward_cache[key]
    from transfer_studio.core import catalog

    info = catalog.get_info(model_name)
    peak, peak_source = device_peak_flops(device)
    estimate = 2.0 * macs / (peak * _EFFICIENCY.get(device, 0.35))
    batch = _MEASURE_BATCH.get(device, 4)
    result = (estimate, "estimated" if peak_source == "measured" else "nominal")
    if info.params <= _MEASURE_MAX_PARAMS and 3 * batch * estimate <= _MEASURE_MAX_SECONDS:
        with contextlib.suppress(RuntimeError, ValueError, UserError):  # e.g. out of memory: keep the estimate
            result = (_timed_forward(model_name, device, info.input_size, batch), "measured")
    _forward_cache[key] = result
    return result


def _timed_forward(model_name: str, device: str, size: int, batch: int) -> float:
    from transfer_studio.core import catalog

    model = catalog.build_model(model_name, "none").to(device).eval()
    x = torch.randn(batch, 3, size, size, device=device)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
                if device == "cuda" else contextlib.nullcontext())
    with torch.inference_mode(), autocast:
        start = time.perf_counter()
        model(x)  # warm-up (allocations, kernel selection)
        _sync(device)
        warm = time.perf_counter() - start
        if warm > 1.0:  # slow (or a busy machine): the warm-up is measurement enough
            return warm / batch
        start = time.perf_counter()
        model(x)
        model(x)
        _sync(device)
    return (time.perf_counter() - start) / (2 * batch)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def similarity_probe(report: ScanReport, model_name: str, n: int = PROBE_IMAGES) -> dict[str, Any]:
    """Run the pretrained model on up to ``n`` images (spread over the classes): a low mean ImageNet
    top-1 probability means the images look unlike ImageNet, so more of the network should adapt."""
    from transfer_studio.core import catalog
    from transfer_studio.core.augment import build_transform
    from transfer_studio.core.imageio import ImageReadError, load_rgb

    info = catalog.get_info(model_name)
    try:
        model = catalog.build_model(model_name, "DEFAULT")
    except UserError as exc:
        raise UserError(f"the similarity probe needs the pretrained weights: {exc}") from exc
    model.eval()
    transform = build_transform(info.preprocess, None, train=False)
    picks = _spread_sample(report, n)
    tensors = []
    for rel in picks:
        try:
            tensors.append(transform(load_rgb(os.path.join(report.root, rel))))
        except ImageReadError:
            continue
    if not tensors:
        raise UserError("the similarity probe could not read any image of the dataset")
    confidences = []
    with torch.inference_mode():
        for start in range(0, len(tensors), 16):
            logits = model(torch.stack(tensors[start:start + 16]))
            confidences.append(logits.float().softmax(-1).max(-1).values)
    conf = torch.cat(confidences)
    mean = float(conf.mean())
    return {"images": len(tensors), "mean_confidence": round(mean, 4), "threshold": PROBE_SIMILAR_CONFIDENCE,
            "similar": mean >= PROBE_SIMILAR_CONFIDENCE}


# -- the network, as the advisor needs it ----------------------------------------------------------


@dataclass
class _NetworkFacts:
    blocks: list[str]  # freeze units in forward order, head last
    head: str
    params: dict[str, int]  # per block
    flop_share: dict[str, float]  # per block: share of the forward cost
    macs: float  # multiply-accumulates per image at the default input size

    @classmethod
    def of(cls, model_name: str, info: Any) -> _NetworkFacts:
        model = _meta_model(model_name)
        from transfer_studio.core.surgery import find_head, ordered_blocks

        blocks = ordered_blocks(model)
        head = find_head(model)
        if head not in blocks:  # the head sits inside a unit (e.g. a classifier container)
            blocks = [b for b in blocks if not head.startswith(b + ".")] + [head]
        modules = dict(model.named_modules())
        params = {b: sum(p.numel() for p in modules[b].parameters()) for b in blocks}
        counted, macs = _flops_per_block(model, blocks, info.input_size)
        if info.gflops:
            macs = float(info.gflops) * 1e9
        return cls(blocks, head, params, counted, macs)


@functools.lru_cache(maxsize=16)
def _network_facts(model_name: str) -> _NetworkFacts:
    """Per architecture: blocks, parameters and cost never change, so they are worked out once."""
    from transfer_studio.core import catalog

    return _NetworkFacts.of(model_name, catalog.get_info(model_name))


def _meta_model(model_name: str) -> nn.Module:
    """The architecture on the meta device: every name and shape, no memory, no initialisation."""
    from transfer_studio.core import catalog
    from transfer_studio.core.network import build_on_meta

    return build_on_meta(lambda: catalog.build_model(model_name, "none"))


def _flops_per_block(model: nn.Module, blocks: list[str], size: int) -> tuple[dict[str, float], float]:
    """Each block's share of the forward FLOPs, and the MACs per image, from one meta forward."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model.eval()(torch.empty(1, 3, size, size, device="meta"))
        counts = counter.get_flop_counts()
        total = float(counter.get_total_flops())
        prefix = type(model).__name__ + "."
        per = {b: float(sum(counts.get(prefix + b, {}).values())) for b in blocks}
        if total > 0 and sum(per.values()) > 0:
            return {b: v / total for b, v in per.items()}, total / 2
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        pass
    return {b: 1.0 / len(blocks) for b in blocks}, 0.0  # no count: blocks weigh the same


# -- choosing ------------------------------------------------------------------------------------


@dataclass
class Plan:
    approach: int
    frozen: list[str]
    trainable: list[str]
    unfreeze_from: str | None
    trained_flop_share: float  # share of the forward cost that also runs backward
    lr: float
    body_lr_factor: float
    epochs: int  # all epochs, the head phase's included
    batch_size: int
    augment: str
    head_epochs: int = 0  # partial/full: the head fitted alone first
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    augment_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    augment_reason: str = ""


def _data_choice(per_class: float, total: int) -> int:
    if per_class < HEAD_MAX_PER_CLASS or total < HEAD_MAX_TOTAL:
        return 1
    if per_class >= FULL_MIN_PER_CLASS and total >= FULL_MIN_TOTAL:
        return 3
    return 2


def _partial_share(per_class: float) -> float:
    lo, hi = PARTIAL_SHARE
    span = math.log(FULL_MIN_PER_CLASS / HEAD_MAX_PER_CLASS)
    t = min(1.0, max(0.0, math.log(max(per_class, 1.0) / HEAD_MAX_PER_CLASS) / span))
    return lo + (hi - lo) * t


def _batch_size(approach: int, info: Any, n_train: int, device: str) -> int:
    bs = 32
    if device == "cuda" and info.params < 50_000_000 and info.input_size <= 256:
        bs = 64
    if approach > 1 and info.input_size > 300:
        bs = 16
    while bs > 8 and bs * 4 > n_train:  # keep at least ~4 steps per epoch
        bs //= 2
    return bs


def fine_tune_epochs(steps_per_epoch: int) -> int:
    """Fine-tuning epochs: about FT_STEPS optimiser steps, within FT_EPOCHS."""
    lo, hi = FT_EPOCHS
    return int(min(hi, max(lo, math.ceil(FT_STEPS / max(1, steps_per_epoch)))))


def augmentation(approach: int, evidence: Evidence | None) -> tuple[str, dict[str, dict[str, Any]], str]:
    """(preset, overrides, why): the head strategy fits on the images as the model sees them;
    fine-tuning uses the medium preset without the flips or rotations the classes do not survive
    (checked on the training images' features when evidence is given)."""
    if approach == 1:
        return HEAD_AUGMENT, {}, HEAD_AUGMENT_REASON
    overrides: dict[str, dict[str, Any]] = {}
    kept, dropped = [], []
    checks = evidence.invariances if evidence is not None else {}
    for name, transform in (("hflip", "hflip"), ("rotate", "rotation")):
        check = checks.get(name)
        if check is None:
            continue
        label = {"hflip": "mirroring left-right", "rotate": f"rotating by {ROTATE_DEGREES:g} degrees"}[name]
        if check.get("preserves", True):
            kept.append(label)
        else:
            overrides[transform] = {"enabled": False}
            dropped.append(f"{label} changes what the images show (a probe trained on the originals got "
                           f"{check['transformed_accuracy']:.0%} of the transformed copies right, "
                           f"{check['accuracy']:.0%} of the originals)")
    why = ""
    if dropped:
        why = "Off: " + "; ".join(dropped) + "."
    if kept:
        why += (" " if why else "") + "Kept: " + " and ".join(kept) + " leave the classes as they are."
    if evidence is None:
        why = "Flips and rotations were not checked on your images (no evidence gathered)."
    return FT_AUGMENT, overrides, why


def _plan(approach: int, net: _NetworkFacts, info: Any, per_class: float, n_train: int, device: str,
          evidence: Evidence | None) -> Plan:
    body = [b for b in net.blocks if b != net.head]
    bs = _batch_size(approach, info, n_train, device)
    steps = max(1, math.ceil(n_train / bs))
    preset, overrides, why = augmentation(approach, evidence)
    head_lr = evidence.lr if evidence is not None and evidence.lr else DEFAULT_HEAD_LR
    # The new layer never learns slower than the pretrained body: with the body moving and the
    # head nearly frozen (a range test's 1e-6), fine-tuning collapsed to chance on the glyph rows.
    # Nor much faster: the range test times a fresh layer, but fine-tuning starts from the fitted
    # one (LP-FT), which a fresh layer's rate throws off (the sample at 1.7e-2: train loss 0.003 -> 2.9).
    head_lr = min(max(head_lr, BODY_LR), FT_HEAD_LR_MAX)
    # The pretrained body learns at BODY_LR whatever the head's rate: its factor follows from both.
    factor = float(f"{BODY_LR / head_lr:.3g}")
    if approach == 1:
        return Plan(1, body, [net.head], None, 0.0, head_lr, factor, HEAD_EPOCHS, bs, preset,
                    augment_params=overrides, augment_reason=why)
    epochs = LP_EPOCHS + fine_tune_epochs(steps)
    common = dict(head_epochs=LP_EPOCHS, warmup_epochs=FT_WARMUP_EPOCHS, label_smoothing=FT_LABEL_SMOOTHING,
                  augment_params=overrides, augment_reason=why)
    if approach == 3:
        return Plan(3, [], list(net.blocks), None, 1.0, head_lr, factor, epochs, bs, preset, **common)
    # partial: cut at a "significant" block (norm layers and other tiny units are not cut points).
    sizes = sorted(net.params[b] for b in body)
    floor = 0.2 * sizes[len(sizes) // 2] if sizes else 0
    candidates = [i for i, b in enumerate(body) if net.params[b] >= floor and i > 0] or [len(body) - 1]
    k = max(1, round(_partial_share(per_class) * len(candidates)))
    cut = candidates[-k]
    trainable = body[cut:] + [net.head]
    share = sum(net.flop_share.get(b, 0.0) for b in trainable)
    return Plan(2, body[:cut], trainable, body[cut], share, head_lr, factor, epochs, bs, preset, **common)


# -- time ----------------------------------------------------------------------------------------


def _train_val_sizes(report: ScanReport) -> tuple[int, int]:
    if report.layout == "split" and report.split_counts:
        n_train = sum(report.split_counts.get("train", {}).values())
        n_val = sum(report.split_counts.get("val", {}).values())
        if n_val == 0:
            n_val = round(n_train * VAL_SHARE)
            n_train -= n_val
        return max(1, n_train), n_val
    n_val = round(report.num_images * VAL_SHARE)
    return max(1, report.num_images - n_val), n_val


def _decode_seconds(report: ScanReport) -> float:
    """Per image, per core: reading, decoding and augmenting a source image of the folder's size."""
    r = report.image_size_range or {}
    pixels = 0.5 * (r.get("min_width", 224) * r.get("min_height", 224) + r.get("max_width", 224) * r.get("max_height", 224))
    return _DECODE_S[0] + _DECODE_S[1] * pixels


def _estimate_hours(plan: Plan, n_train: int, n_val: int, report: ScanReport, forward: float,
                    device: str) -> float:
    """Hours of training for ``plan``; ``forward`` is seconds per image of one forward pass."""
    cores = max(1, os.cpu_count() or 1)
    decode = _decode_seconds(report) / min(cores, 8)  # images decode in parallel workers
    if plan.approach == 1:
        # Features computed once (+ validation once); the head then fits on cached features in a
        # fraction of a second per epoch.
        images = n_train * (1 + (_CACHE_PASSES if plan.augment != "none" else 0)) + n_val
        head_epochs = plan.epochs * (n_train + n_val) * 2e-6
        seconds = _combine(images * forward, images * decode, device) + head_epochs
    else:
        train_cost = forward * (1.0 + BACKWARD_FACTOR * plan.trained_flop_share)
        per_epoch = _combine(n_train * train_cost + n_val * forward, (n_train + n_val) * decode, device)
        seconds = plan.epochs * per_epoch
    return seconds / 3600.0


def _combine(compute: float, loading: float, device: str) -> float:
    # On a GPU, loader workers overlap with compute; on the CPU they compete for the same cores.
    return max(compute, loading) if device != "cpu" else compute + loading


def _matmul_flops(device: str) -> float:
    """Best rate over short windows of square matmuls (~0.25 s): the peak, robust to a busy machine."""
    n = 512 if device == "cpu" else 4096
    if device == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    _sync(device)
    best, deadline = 0.0, time.perf_counter() + 0.25
    while time.perf_counter() < deadline or best == 0.0:
        start = time.perf_counter()
        for _ in range(3):
            a @ b
        _sync(device)
        best = max(best, 3 * 2.0 * n**3 / (time.perf_counter() - start))
    return best


# -- words ---------------------------------------------------------------------------------------


def _median(values: list[int]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return float(s[mid]) if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _round_hours(hours: float) -> float:
    return float(f"{hours:.3g}") if hours > 0 else 0.0


def _count_text(x: float) -> str:
    return f"{round(x):,}"


def _blocks_text(names: list[str]) -> str:
    return f"the last block ({names[0]})" if len(names) == 1 else f"the last {len(names)} blocks (from {names[0]} on)"


def _reason(chosen: int, wanted: int, plan: Plan, net: _NetworkFacts, per_class: float, total: int,
            estimates: dict[int, float], budget: float, device: str, evidence: Evidence | None,
            probe: dict[str, Any] | None, ranges: dict[int, list[float]] | None = None) -> str:
    data = f"about {_count_text(per_class)} images per class ({_count_text(total)} in total)"
    domain = ""
    if probe is not None and not probe["similar"]:
        domain = (", and they look unlike the photos the network was trained on (it is only "
                  f"{probe['mean_confidence']:.0%} sure of what it sees)")
    elif probe is not None:
        domain = ", and they resemble the photos the network was trained on"
    fit = ""
    if evidence is not None:
        fit = (f" A linear classifier on the frozen network's features already gets {evidence.cv_accuracy:.0%} "
               f"of your training images right in {evidence.folds}-fold cross-validation.")
    if wanted == 1 and evidence is not None and per_class >= FT_MIN_PER_CLASS and evidence.cv_accuracy < PROBE_WEAK:
        first = (f"With {data}{domain}:{fit} The frozen features do not tell your classes apart well enough "
                 "for fine-tuning on this few images to pay (on our benchmark it did not), so the network stays "
                 "frozen and only a new output layer learns your classes. More images per class (or a network "
                 "trained on images like yours) would help more than training longer.")
    elif wanted == 1:
        first = (f"With {data}{domain}, retraining pretrained layers would mostly memorise your images, "
                 "so the network stays frozen and only a new output layer learns your classes." + fit)
    elif wanted == 2:
        trained = [b for b in plan.trainable if b != net.head] if chosen == 2 else None
        what = _blocks_text(trained) if trained else "the last blocks"
        first = (f"With {data}{domain}, there is enough to adapt {what} while the early layers keep "
                 "their general-purpose features; the new output layer is fitted first." + fit)
    else:
        first = (f"With {data}{domain}, there is enough data to fine-tune the whole network from its "
                 "pretrained weights, which usually gives the best accuracy." + fit)
    where = "the GPU" if device == "cuda" else "Apple MPS" if device == "mps" else "this computer's CPU"
    if chosen < wanted:
        second = (f"That would take {hours_text(estimates[wanted])} on {where}, over the "
                  f"{budget:g} h budget, so it steps down to {NAMES[chosen]} training")
        if estimates[chosen] > budget:
            second += (f", which still takes {hours_text(estimates[chosen])}: use fewer epochs, smaller "
                       "images or a faster device.")
        else:
            second += f" ({hours_text(estimates[chosen])})."
    elif estimates[chosen] > budget:
        second = (f"Even this takes {hours_text(estimates[chosen])} on {where}, over the {budget:g} h "
                  "budget: use fewer epochs, smaller images or a faster device.")
    elif ranges is not None:
        second = (f"Training should take {range_text(*ranges[chosen][1:])} on {where} (timed on a few real "
                  "training steps).")
    else:
        second = f"Training should take {hours_text(estimates[chosen])} on {where}."
    return f"{first} {second}"


def _spread_sample(report: ScanReport, n: int) -> list[str]:
    """Up to n relpaths taken round-robin over the classes, evenly spaced within each (deterministic)."""
    by_class: dict[int, list[str]] = {}
    for rel, label in zip(report.files, report.labels, strict=True):
        by_class.setdefault(label, []).append(rel)
    picks: list[str] = []
    per = max(1, math.ceil(n / max(1, len(by_class))))
    for label in sorted(by_class):
        files = by_class[label]
        step = max(1, len(files) // per)
        picks.extend(files[::step][:per])
    return picks[:n]
