"""Run setup for ``fit``: resolve the project into a run snapshot, scan and split the data, build the
network, plan the freeze schedule; ``loop.Trainer`` then runs the epochs. Mistakes in the project or the
data raise ``UserError`` before anything trains. Problems while training (out of memory, a full disk)
end the run with status "failed", an ``Error`` event and a message in the result; a stop request ends
it with status "stopped". Either way the run directory keeps the last completed epoch's checkpoint,
and ``fit(..., run_dir=RUN, resume=True)`` continues from it exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from transfer_studio.config import Project
from transfer_studio.core import head, runs
from transfer_studio.errors import UserError
from transfer_studio.training import checkpoint as ckpt
from transfer_studio.training import data as tdata
from transfer_studio.training import device as tdevice
from transfer_studio.training import finetune
from transfer_studio.training.schedule import KINDS as SCHEDULERS

BALANCE = ("auto", "weighted_loss", "sampler", "none")
RESUMABLE_OVERRIDES = runs.RESUMABLE_OVERRIDES  # what a resumed run may change (core.runs: the one rule)


@dataclass
class RunSetup:
    project: Project  # the run's snapshot (strategy resolved, head op added, split recorded)
    run_dir: Path
    split: tdata.SplitData
    model: torch.nn.Module
    plan: finetune.FreezePlan
    device: torch.device
    precision: tdevice.Precision
    channels_last: bool
    loader: tdevice.LoaderSettings
    train_transform: Any
    eval_transform: Any
    input_shape: tuple[int, int, int, int]
    balance: str  # resolved: weighted_loss | sampler | none
    checkpoint: dict[str, Any] | None  # state to resume from
    pretrained: bool
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


def validate_train_spec(project: Project) -> None:
    """One clear message for the first bad training setting (hand-edited project files included)."""
    t = project.train

    def number(x: object) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    def whole(x: object) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    checks = [
        (lambda: t.strategy in ("auto", *finetune.STRATEGIES),
         f"train.strategy must be auto, head, partial or full (got {t.strategy!r})"),
        (lambda: whole(t.epochs) and t.epochs >= 1, f"epochs must be a whole number >= 1 (got {t.epochs!r})"),
        (lambda: whole(t.batch_size) and t.batch_size >= 1,
         f"batch size must be a whole number >= 1 (got {t.batch_size!r})"),
        (lambda: number(t.lr) and t.lr > 0, f"learning rate must be > 0 (got {t.lr!r})"),
        (lambda: number(t.body_lr_factor) and t.body_lr_factor >= 0,
         f"train.body_lr_factor must be >= 0 (got {t.body_lr_factor!r})"),
        (lambda: whole(t.head_epochs) and t.head_epochs >= 0,
         f"train.head_epochs must be a whole number >= 0 (got {t.head_epochs!r})"),
        (lambda: number(t.weight_decay) and t.weight_decay >= 0,
         f"train.weight_decay must be >= 0 (got {t.weight_decay!r})"),
        (lambda: t.scheduler in SCHEDULERS,
         f"train.scheduler must be one of {', '.join(SCHEDULERS)} (got {t.scheduler!r})"),
        (lambda: number(t.warmup_epochs) and t.warmup_epochs >= 0,
         f"train.warmup_epochs must be >= 0 (got {t.warmup_epochs!r})"),
        (lambda: number(t.label_smoothing) and 0 <= t.label_smoothing < 1,
         f"label smoothing must be in [0, 1) (got {t.label_smoothing!r})"),
        (lambda: t.balance in BALANCE, f"train.balance must be one of {', '.join(BALANCE)} (got {t.balance!r})"),
        (lambda: t.bn_stats in ("auto", "frozen", "train"),
         f"train.bn_stats must be auto, frozen or train (got {t.bn_stats!r})"),
        (lambda: whole(t.early_stopping_patience) and t.early_stopping_patience >= 0,
         "train.early_stopping_patience must be a whole number >= 0 (0 = off)"),
        (lambda: whole(t.cache_passes) and t.cache_passes >= 0,
         f"train.cache_passes must be a whole number >= 0 (got {t.cache_passes!r})"),
        (lambda: t.image_size is None or (whole(t.image_size) and t.image_size >= 8),
         f"image size must be at least 8 pixels (got {t.image_size!r})"),
        (lambda: t.num_workers is None or (whole(t.num_workers) and t.num_workers >= 0),
         f"train.num_workers must be a whole number >= 0 (got {t.num_workers!r})"),
        (lambda: whole(t.seed), f"train.seed must be a whole number (got {t.seed!r})"),
    ]
    for ok, message in checks:
        if not ok():
            raise UserError(message)


def default_run_dir(project: Project, base: Path | None = None) -> Path:
    """A new run's folder when none is given: ``base/MODEL-TIME`` (``core.runs.new_run_dir``)."""
    return runs.new_run_dir(Path(base) if base else Path("runs"), prefix=project.model.name)


def ensure_head(project: Project, num_classes: int) -> str | None:
    """Give the snapshot a head for the dataset's classes (``core.head``); returns a note if it changed."""
    change = head.match_head(project, num_classes)
    if change is None:
        return None
    if change.added:
        return f"added a new {num_classes}-class head (the project had no replace_head step)"
    return (f"the head was set up for {change.previous} classes; the data has {num_classes}, so it has "
            f"{num_classes}")


def resolve_auto(project: Project, report: Any, *, progress: Any = None, check: Any = None) -> tuple[Any, str]:
    """Strategy "auto": the advisor's suggestion (measured on the project's training images, see
    ``training.advice``) applied to ``project``, except the values the user set explicitly. The
    CLI and the app both resolve Auto here. Returns (suggestion, a note for the run's log)."""
    from transfer_studio.core import strategy as core_strategy
    from transfer_studio.training import advice

    s = advice.advise(project, report, progress=progress, check=check, trials="needed")
    kept = core_strategy.apply_suggestion(project, s)
    note = f"auto strategy: {s.name}" + (f" ({s.reason})" if s.reason else "")
    if kept:
        note += f"; kept your own {', '.join(kept)}"
    return s, note


def _load_resume(project: Project | None, run_dir: Path) -> tuple[Project, dict[str, Any] | None, list[str]]:
    if not (run_dir / ckpt.PROJECT).is_file():
        raise UserError(f"{run_dir} is not a training run (no {ckpt.PROJECT}): pass the folder a "
                        "previous `train` wrote")
    snapshot = runs.load_snapshot(run_dir)
    # The resumable settings of the project handed in win over the run's own (core.runs).
    notes = runs.apply_overrides(snapshot, runs.overrides_from(project.train)) if project is not None else []
    state = None
    if ckpt.has_checkpoint(run_dir):  # the latest, or the previous one if the latest is damaged
        state = ckpt.load_checkpoint(run_dir / ckpt.CHECKPOINT, notes)
    else:
        notes.append("resume: the run had not finished an epoch; starting it from the beginning")
    return snapshot, state, notes


def prepare(project: Project | None, *, run_dir: str | Path | None = None, resume: bool = False) -> RunSetup:
    """Everything a run needs, checked; raises UserError for bad input."""
    from transfer_studio.core import augment, network

    notes: list[str] = []
    state = None
    if resume:
        if run_dir is None:
            raise UserError("resuming needs the run directory of the run to continue")
        run_dir = Path(run_dir)
        snapshot, state, notes = _load_resume(project, run_dir)
    else:
        if project is None:
            raise UserError("no project to train")
        snapshot = project.copy()
        run_dir = Path(run_dir) if run_dir else default_run_dir(snapshot)
        if (run_dir / ckpt.CHECKPOINT).exists() or (run_dir / ckpt.RUN).exists():
            raise UserError(f"{run_dir} already holds a training run: resume it (--resume {run_dir}) or "
                            "choose another output folder")
    validate_train_spec(snapshot)
    t = snapshot.train

    split = tdata.prepare_split(snapshot)
    snapshot.data.root = split.root  # absolute: evaluate/export may run from another folder
    snapshot.data.split = split.split
    snapshot.data.classes = list(split.classes)
    num_classes = len(split.classes)
    if t.strategy == "auto":
        notes.append(resolve_auto(snapshot, split.report)[1])
        validate_train_spec(snapshot)
    head_note = ensure_head(snapshot, num_classes)
    if head_note:
        notes.append(head_note)

    device = tdevice.select_device(t.device)
    precision = tdevice.choose_precision(device, t.amp)
    pretrained = snapshot.model.weights.strip().lower() != "none"

    tdata.seed_everything(tdata.derive_seed(t.seed, 0, tdata.GLOBAL))  # the new head's initialisation
    # A resumed run's weights all come from its checkpoint: skip loading the pretrained file.
    model = network.build_network(snapshot, weights=pretrained and state is None)
    plan = finetune.plan(model, t.strategy, epochs=t.epochs, head_epochs=t.head_epochs,
                         unfreeze_from=t.unfreeze_from)
    notes.extend(plan.notes)

    preprocess = network.project_preprocess(snapshot)
    train_tf = augment.build_transform(preprocess, snapshot.augment, train=True, image_size=t.image_size)
    eval_tf = augment.build_transform(preprocess, snapshot.augment, train=False, image_size=t.image_size)

    balance = t.balance
    if balance == "auto":
        balance = "weighted_loss" if split.imbalance > 1.5 else "none"
        if balance != "none":
            notes.append(f"classes are imbalanced (largest/smallest = {split.imbalance:.1f}): "
                         "using a class-weighted loss")
    if not split.split.get("val"):
        notes.append("no validation split: the last epoch's weights are kept and early stopping is off")

    return RunSetup(
        project=snapshot, run_dir=run_dir, split=split, model=model, plan=plan, device=device,
        precision=precision, channels_last=tdevice.use_channels_last(device),
        loader=tdevice.loader_settings(device, t.num_workers), train_transform=train_tf,
        eval_transform=eval_tf, input_shape=tuple(network.input_shape(snapshot)), balance=balance,
        checkpoint=state, pretrained=pretrained, notes=notes,
    )
