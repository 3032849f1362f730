"""Timed trials behind the advisor's time estimates: a few real steps, measured, not modelled.

Compute (cached on disk per model, surgery, image size, device, strategy, cut, batch size and
precision): the real network, with the strategy's layers frozen, runs a few training steps
(forward, backward, AdamW step) on batches of the real size; then a few evaluation batches and a few
feature-extraction batches (the head phase's cache). The first steps warm up (allocation, kernel
choice) and are not counted.

Loading (measured every time, on the folder itself, ~1 s): reading, decoding and augmenting a
sample of the training images with the run's own transforms, because a folder of 4000 x 3000 JPEG
photos and one of 64 px PNG icons differ by 100x there.

``estimate(...)`` combines both with the run's sizes into seconds, the way the trainer spends them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from transfer_studio.config import Project, atomic_write_text

TRIAL_VERSION = 9
WARMUP_STEPS = 1
TIMED_STEPS = 2
MIN_TIMED_SECONDS = 0.5  # keep timing (up to 3x TIMED_STEPS) until at least this long
# Large batches take seconds per step on a CPU. The trial times a small batch there first; when the
# run's own batch size then looks affordable (a step under CPU_DIRECT_STEP_S, judged from the small
# batch; at 1.5 s a busy machine sent full fine-tuning at 64 px to extrapolation, 2.6x high), it times
# that batch size itself, else the largest affordable one of CPU_TRIAL_BATCHES and
# extrapolates to the run's along time = fixed + per image x batch. Per image, a CPU step is far from
# linear in the batch: at 64 px, extrapolating from batches 4 and 12 to 32 overestimated partial's
# step 2.1x and full's 1.25x (bench_advisor: fine-tuning runs took 0.65-0.8x their estimates).
CPU_TRIAL_BATCHES = (4, 12, 24)
CPU_DIRECT_STEP_S = 4.0  # an upper bound from the small batch: the run's step was 2-4x faster
LOAD_SAMPLE = 24  # images decoded and augmented to time loading
# Per epoch besides the checkpoint's bytes: serialisation, events, bookkeeping. Measured with timers
# around the trainer's phases on bench_advisor's folders (64 px, one thread): an epoch on images
# 0.02-0.08 s; an epoch of the head phase on cached features 0.010-0.019 s.
EPOCH_OVERHEAD_S = 0.05
CACHED_EPOCH_OVERHEAD_S = 0.015
# A run's own start besides writing its frozen weights: split, run folder, project file, events
# (measured 0.04-0.1 s beyond the frozen weights file). Was 0.5 s: 10-per-class head runs then took
# 0.69-0.87x their estimates.
START_S = 0.08


@dataclass
class Compute:
    """Seconds per image on the device, for one strategy's configuration."""

    train_s: float  # a training step (forward + backward + optimiser) per image
    eval_s: float  # an evaluation forward per image
    feature_s: float  # a forward up to the head's input per image (feature extraction)
    build_s: float  # building the network with its weights
    warmup_s: float  # a fresh network's first passes (kernel selection, allocation) beyond steady steps
    state_bytes: int  # bytes of the variable state written per checkpoint
    spread: float  # slowest / fastest timed step (for the range shown)
    batch_size: int
    device: str
    measured_at: float = 0.0
    model_bytes: int = 0  # every parameter and buffer: the frozen file at the start, the best weights at the end


@dataclass
class Loading:
    train_s: float  # reading, decoding and augmenting one training image (one core)
    eval_s: float  # the same with the evaluation transform
    images: int


@dataclass
class Estimate:
    seconds: float
    low: float
    high: float
    parts: dict[str, float] = field(default_factory=dict)


def cache_file() -> Path:
    base = os.environ.get("TS_TRIAL_CACHE")
    if base:
        return Path(base).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "transfer-studio" / "trials.json"


def _key(project: Project, strategy: str, unfreeze_from: str | None, batch_size: int, device: torch.device,
         precision: str) -> str:
    from transfer_studio.core import network
    from transfer_studio.training.backbone import structural_ops
    from transfer_studio.training.device import describe

    parts = {"v": TRIAL_VERSION, "model": project.model.name, "surgery": structural_ops(project),
             "size": network.input_shape(project)[-1], "device": describe(device), "strategy": strategy,
             "cut": unfreeze_from if strategy == "partial" else None, "batch": int(batch_size),
             "precision": precision, "threads": torch.get_num_threads(), "torch": torch.__version__}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _load_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(key: str, value: Compute) -> None:
    data = _load_cache()
    data[key] = asdict(value)
    with contextlib.suppress(OSError):  # a read-only cache folder only costs a new trial next time
        atomic_write_text(cache_file(), json.dumps(data, indent=1))


def compute(project: Project, strategy: str, num_classes: int, *, unfreeze_from: str | None = None,
            batch_size: int | None = None, check: Callable[[], None] | None = None,
            use_cache: bool = True) -> Compute:
    """The device's speed for ``strategy`` on the project's network (cached)."""
    from transfer_studio.training import device as tdevice

    t = project.train
    device = tdevice.select_device(t.device)
    precision = tdevice.choose_precision(device, t.amp)
    bs = int(batch_size or t.batch_size)
    key = _key(project, strategy, unfreeze_from, bs, device, precision.name)
    if use_cache:
        hit = _load_cache().get(key)
        if isinstance(hit, dict):
            with contextlib.suppress(TypeError):
                return Compute(**hit)
    result = _measure(project, strategy, num_classes, unfreeze_from, bs, device, precision, check)
    _save_cache(key, result)
    return result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _measure(project: Project, strategy: str, num_classes: int, unfreeze_from: str | None, bs: int,
             device: torch.device, precision: Any, check: Callable[[], None] | None) -> Compute:
    from transfer_studio.core import network
    from transfer_studio.training import device as tdevice
    from transfer_studio.training import finetune

    t0 = time.perf_counter()
    pretrained = project.model.weights.strip().lower() != "none"
    model = network.build_network(project, weights=pretrained, num_classes=num_classes)
    build_s = time.perf_counter() - t0
    channels_last = tdevice.use_channels_last(device)
    fmt = torch.channels_last if channels_last else torch.preserve_format
    model = model.to(device, memory_format=fmt)
    plan = finetune.plan(model, strategy, epochs=2, head_epochs=0 if strategy != "head" else 1,
                         unfreeze_from=unfreeze_from)
    trainable = plan.phases[-1].trainable
    finetune.apply_trainable(model, trainable)
    frozen_bn = finetune.frozen_batchnorms(model, all_stats=pretrained and project.train.bn_stats != "train")
    size = network.input_shape(project)
    small = [b for b in CPU_TRIAL_BATCHES if b < bs] if device.type == "cpu" else []
    first_batch = small[0] if small else bs

    def batch(b: int) -> tuple[torch.Tensor, torch.Tensor]:
        if b not in data:
            data[b] = (torch.randn((b, *size[1:]), device=device).contiguous(memory_format=fmt),
                       torch.randint(0, num_classes, (b,), device=device))
        return data[b]

    data: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        opt = torch.optim.AdamW(params, lr=1e-6, fused=True)
    except (RuntimeError, ValueError):
        opt = torch.optim.AdamW(params, lr=1e-6)

    def autocast() -> contextlib.AbstractContextManager:
        if precision.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=precision.dtype)

    def train_step() -> None:
        x, y = current
        if check is not None:
            check()
        finetune.train_mode(model, frozen_bn)
        with autocast():
            out = model(x)
            if not isinstance(out, torch.Tensor):
                out = out[0]
            loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def eval_step() -> None:
        x, _ = current
        if check is not None:
            check()
        model.eval()
        with torch.no_grad(), autocast():
            model(x)

    # What the strategy spends its time on: the head strategy only extracts features (its head fits
    # on them); partial and full train and validate on images (and extract once, for the head phase).
    def timed(step: Callable[[], None]) -> tuple[float, float]:
        """Seconds per image at the run's batch size (see CPU_TRIAL_BATCHES)."""
        nonlocal current
        current = batch(first_batch)
        s1, r1 = _time(step, device, first_batch)
        if first_batch == bs:
            return s1, r1
        # s1 * b is an upper bound of a step at b (per image falls with the batch)
        affordable = [b for b in (*small[1:], bs) if s1 * b <= CPU_DIRECT_STEP_S]
        b2 = affordable[-1] if affordable else small[min(1, len(small) - 1)]
        if b2 == first_batch:
            return s1, r1
        current = batch(b2)
        s2, r2 = _time(step, device, b2)
        if b2 == bs:
            return s2, max(r1, r2)
        per_image = max(0.0, (s2 * b2 - s1 * first_batch) / (b2 - first_batch))
        fixed = max(0.0, s1 * first_batch - per_image * first_batch)
        return (fixed + per_image * bs) / bs, max(r1, r2)

    x, y = batch(first_batch)
    # The first forward of a fresh network at a new input size costs far more than later ones
    # (kernel and memory setup): a run pays it once for evaluation, once for training.
    current = (x[:2], y[:2])
    t1 = time.perf_counter()
    eval_step()
    _sync(device)
    warmup_s = time.perf_counter() - t1
    current = (x, y)
    train_s = spread = 0.0
    if strategy != "head":
        first = time.perf_counter()
        train_step()
        _sync(device)
        first = time.perf_counter() - first
        train_s, spread = timed(train_step)
        warmup_s += max(0.0, first - train_s * first_batch)
    eval_s, eval_spread = timed(eval_step)
    spread = max(spread, eval_spread)
    # Feature extraction is the same forward stopped at the head: the evaluation time stands for it.
    feature_s = eval_s
    variable = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if n in trainable)
    whole = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return Compute(train_s, eval_s, feature_s, build_s, warmup_s, int(variable * 3), spread, bs, str(device),
                   time.time(), int(whole))


def _time(step: Callable[[], None], device: torch.device, images: int) -> tuple[float, float]:
    """Seconds per image of ``step`` after warm-up, and the slowest / fastest step."""
    for _ in range(WARMUP_STEPS):
        step()
    _sync(device)
    times: list[float] = []
    while len(times) < TIMED_STEPS or (sum(times) < MIN_TIMED_SECONDS and len(times) < 3 * TIMED_STEPS):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    times.sort()
    # the lower median: a step that another process pre-empted is no measure of the device (with two
    # steps the upper one was, and trials timed on a busy machine overestimated runs 1.5-1.8x)
    median = times[(len(times) - 1) // 2]
    return median / images, times[-1] / max(times[0], 1e-9)


def loading(root: str, relpaths: list[str], train_transform: Any, eval_transform: Any,
            check: Callable[[], None] | None = None) -> Loading:
    """Seconds per image to read, decode and transform a spread sample of the folder's images."""
    from transfer_studio.core.imageio import ImageReadError, load_rgb

    if not relpaths:
        return Loading(0.0, 0.0, 0)
    step = max(1, len(relpaths) // LOAD_SAMPLE)
    sample = relpaths[::step][:LOAD_SAMPLE]
    torch.manual_seed(0)

    def timed(transform: Any) -> float:
        start = time.perf_counter()
        n = 0
        for rel in sample:
            if check is not None:
                check()
            try:
                transform(load_rgb(os.path.join(root, rel)))
                n += 1
            except (ImageReadError, OSError):
                continue
        return (time.perf_counter() - start) / max(n, 1)

    timed(eval_transform)  # warm the file cache: a run reads each file again every epoch
    # the faster of two passes each: a short pass pre-empted by another process measured 2-4x slower
    return Loading(min(timed(train_transform), timed(train_transform)),
                   min(timed(eval_transform), timed(eval_transform)), len(sample))


def _per_image(compute_s: float, load_s: float, workers: int, device: torch.device) -> float:
    """Loading runs in the main process (workers 0) and adds to compute; with workers it overlaps,
    limited by the slower of the two (on a CPU the workers also take cores from the network)."""
    if workers <= 0:
        return compute_s + load_s
    if device.type == "cpu":
        return compute_s + load_s / (workers + 1)
    return max(compute_s, load_s / workers)


def estimate(*, strategy: str, comp: Compute, load: Loading, n_train: int, n_val: int, epochs: int,
             head_epochs: int, cached_train: int, cached_val: int, augment_passes: int, cv_s: float,
             fit_s: float, workers: int, device: torch.device, write_rate: float = 150e6) -> Estimate:
    """Seconds a run takes, by the trainer's own accounting.

    ``cached_train`` / ``cached_val``: images whose features the store already holds (the advisor
    computed the training images'); ``augment_passes``: augmented passes the head strategy caches;
    ``cv_s``: the cross-validation that chooses the head's C and ``fit_s``: one converged L-BFGS fit
    at that C, both measured on the advice's features of the training images (the head phase fits
    over the clean pass and every augmented one: rows, and so time, grow with the passes).
    """
    frozen = max(0, comp.model_bytes - comp.state_bytes // 3)
    parts: dict[str, float] = {"setup": comp.build_s + comp.warmup_s + START_S
                               + (frozen + comp.model_bytes) / write_rate}
    feature = _per_image(comp.feature_s, load.eval_s, workers, device)
    head_phase = strategy == "head" or head_epochs > 0
    if head_phase:
        missing = max(0, n_train - cached_train) + max(0, n_val - cached_val)
        augmented = augment_passes * n_train if strategy == "head" else 0
        parts["features"] = missing * feature + augmented * _per_image(comp.feature_s, load.train_s, workers,
                                                                        device)
        fitted_rows = 1 + (augment_passes if strategy == "head" else 0)
        parts["head fit"] = cv_s + fit_s * fitted_rows
    cached_epochs = epochs if strategy == "head" else min(head_epochs, epochs)
    ft_epochs = epochs - cached_epochs
    if ft_epochs > 0:
        train = _per_image(comp.train_s, load.train_s, workers, device)
        val = _per_image(comp.eval_s, load.eval_s, workers, device)
        parts["fine-tuning"] = ft_epochs * (n_train * train + n_val * val)
    parts["checkpoints"] = (cached_epochs * CACHED_EPOCH_OVERHEAD_S + ft_epochs * EPOCH_OVERHEAD_S
                            + epochs * comp.state_bytes / write_rate)
    seconds = sum(parts.values())
    spread = max(1.15, min(2.0, math.sqrt(comp.spread)))
    return Estimate(seconds, seconds / spread, seconds * spread, {k: round(v, 2) for k, v in parts.items()})
