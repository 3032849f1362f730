"""What the Train page says, as plain functions: the choices it offers, its summaries of the project,
and the engine's numbers and advice in the page's words."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

STRATEGIES = (
    ("auto", "Auto (from data size)"),
    ("head", "Head only"),
    ("partial", "Partial (last blocks)"),
    ("full", "Full network"),
)
AUGMENT_PRESETS = ("none", "light", "medium", "strong")
DEVICES = (("auto", "Auto"), ("cpu", "CPU"), ("cuda", "CUDA GPU"), ("mps", "Apple MPS"))
TABLE_COLUMNS = ("Epoch", "Train loss", "Train acc", "Val loss", "Val acc", "LR", "Time")
PHASE_LABELS = {"unfrozen": "unfreeze", "full": "full network"}
DASH = "\u2013"

_AUTO_WORDS = {"epochs": "epochs", "batch_size": "batch size", "lr": "learning rate", "augment": "augmentation",
               "freeze": "what is frozen", "body_lr_factor": "body rate", "head_epochs": "head epochs",
               "warmup_epochs": "warm-up", "label_smoothing": "label smoothing"}
_AUTO_DECIDES = ("epochs", "batch_size", "lr", "augment", "freeze")


def auto_summary(project: Any) -> str:
    """With strategy Auto: which values the advisor decides and which ones it keeps (rich text)."""
    mine = [n for n in _AUTO_WORDS if n in project.train.user_set]
    decides = [w for n, w in _AUTO_WORDS.items() if n not in mine and n in _AUTO_DECIDES]
    text = ("<b>Auto decides</b> " + (", ".join(decides) if decides else "only the strategy")
            + " when training starts, from measurements on your images.")
    if mine:
        text += (" <b>Yours, kept:</b> " + ", ".join(_AUTO_WORDS[n] for n in mine)
                 + ' \u2014 <a href="auto">let Auto decide these too</a>')
    return text


def frozen_summary(project: Any) -> str:
    """What stays frozen, in words, from the strategy and the Model page's freeze edits."""
    t = project.train
    text = {
        "auto": "chosen from the dataset size when training starts",
        "head": "the whole pretrained network; only the new head trains",
        "full": "nothing: the whole network trains"
                + (" (from the pretrained weights)" if project.model.weights != "none" else ""),
    }.get(t.strategy)
    if text is None:  # partial
        where = f"blocks before {t.unfreeze_from}" if t.unfreeze_from else "the early blocks"
        text = (f"{where}; the head trains alone for {t.head_epochs} epoch(s), then the later blocks "
                f"unfreeze at lr \u00d7 {t.body_lr_factor:g}")
    edits = [op for op in project.surgery if op.op in ("freeze", "unfreeze", "freeze_before")]
    if edits:
        names = "; ".join(freeze_edit_text(op.op, op.target) for op in edits[:3])
        more = f"; {len(edits) - 3} more" if len(edits) > 3 else ""
        text += f" \u00b7 on the Model page: {names}{more}"
    return text


def freeze_edit_text(op: str, target: str) -> str:
    """A freeze edit in words (no internal op names such as "freeze_before")."""
    what = target.rstrip("*").rstrip(".") if target not in ("", "*") else ""
    if op == "freeze_before":
        return f"everything before {what} frozen"
    state = "frozen" if op == "freeze" else "trainable"
    return f"{what} {state}" if what else f"everything {state}"


def model_text(project: Any) -> str:
    """The network and where its weights come from: "resnet18 · pretrained"."""
    weights = project.model.weights
    source = {"DEFAULT": "pretrained", "none": "random init"}.get(weights, Path(weights).name)
    return f"{project.model.name} \u00b7 {source}"


def gui_advice(text: str) -> str:
    """The engine's advice names CLI commands (``transfer-studio train --resume RUN``); in the app the
    same step is a button on the page."""
    text = re.sub(r"resume with: transfer-studio train --resume \S+ --batch-size (\d+)",
                  "set the batch size to \\1 and press \u201cResume from checkpoint\u201d", text)
    text = re.sub(r"resume with: transfer-studio train --resume \S+",
                  "press \u201cResume from checkpoint\u201d", text)
    return re.sub(r"\s*\(train\.allow_oom_retry\)", "", text)


def sentence(text: str) -> str:
    """The engine's one-line messages start lower-case (CLI style); the page shows sentences."""
    text = text.strip()
    return text[:1].upper() + text[1:] if text else text


def fmt(value: Any, spec: str) -> str:
    if value is None:
        return DASH
    try:
        return spec.format(float(value))
    except (TypeError, ValueError):
        return DASH


def pct(value: Any) -> str:
    return DASH if value is None else f"{float(value) * 100:.1f}%"


def count(n: int) -> str:
    n = int(n)
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} M"
    if n >= 10_000:
        return f"{n / 1e3:.1f} k"
    return f"{n:,}"


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return DASH
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def epoch_log(ev: Any) -> str:
    """One log line for an ended epoch (an epoch without a learning rate: the head fitted by L-BFGS)."""
    val = "" if ev.val_loss is None else f", val loss {ev.val_loss:.4f} acc {pct(ev.val_accuracy)}"
    return (f"Epoch {ev.epoch}/{ev.epochs}: train loss {ev.train_loss:.4f} acc {pct(ev.train_accuracy)}{val}, "
            + ("head fitted by L-BFGS" if ev.lr is None else f"lr {ev.lr:.3g}") + f", {ev.seconds:.1f} s"
            + ("  \u2605 best" if ev.is_best else ""))


def fit_start_log(ev: Any) -> str:
    """One log line for the start of a run: what trains, on what, how much."""
    return (f"{ev.model}, strategy {ev.strategy}, {ev.device} {ev.precision}: {ev.num_train} training / "
            f"{ev.num_val} validation images, {len(ev.classes)} classes, batch {ev.batch_size}, "
            f"{ev.steps_per_epoch} steps per epoch; {count(ev.trainable_params)} of "
            f"{count(ev.total_params)} parameters trainable"
            + (" (cached backbone features)" if ev.cached_features else ""))
