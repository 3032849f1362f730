"""What the Strategy page says: the approaches, the suggestion's card, the estimates and the counts.

Plain functions of the core's ``Suggestion`` (``core.strategy``) and numbers; no Qt, no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from transfer_studio import durations

APPROACHES = {
    1: ("head", "Train only a new output layer",
        "The whole pretrained network stays frozen; only a new output layer learns your classes."),
    2: ("partial", "Retrain the last blocks and a new output layer",
        "Early layers keep their general features; the last blocks adapt to your images."),
    3: ("full", "Fine-tune the whole network",
        "Every layer adapts, starting from the pretrained weights. Needs the most data and time."),
}
NAME_TO_APPROACH = {name: k for k, (name, _, _) in APPROACHES.items()}
CIRCLED = {1: "①", 2: "②", 3: "③"}
FACTS = (("evidence", "Measured"), ("frozen", "Stays frozen"), ("trainable", "Learns"), ("lr", "Learning rate"),
         ("epochs", "Epochs"), ("batch_size", "Batch size"), ("augment", "Augmentation"), ("time", "Estimated time"),
         ("probe", "Similarity check"))
_TRANSFORM_WORDS = {"hflip": "mirroring", "rotation": "rotation", "vflip": "vertical flips"}


def blocks_text(names: list[str], limit: int = 4) -> str:
    if not names:
        return "nothing"
    if len(names) <= limit:
        return ", ".join(names)
    return f"{names[0]}, {names[1]} … {names[-1]} ({len(names)} blocks)"


def range_text(seconds: list[float]) -> str:
    return durations.range_text(seconds[0], seconds[1], about="≈ ", dash="–")


def hours_text(hours: float) -> str:
    return durations.hours_text(hours, about="≈ ")


def lr_text(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-") if lr < 0.01 else f"{lr:g}"


@dataclass
class Card:
    """The suggestion's card: texts by ``FACTS`` key, the range test's curve, what is shown."""

    title: str
    reason: str = ""
    facts: dict[str, str] = field(default_factory=dict)
    tooltips: dict[str, str] = field(default_factory=dict)  # only the keys to set
    curve: tuple[list[float], list[float], float | None] = ([], [], None)
    curve_visible: bool | None = None  # None: leave as it is
    probe_visible: bool = False
    apply_enabled: bool = False


def card(s: Any) -> Card:
    """The card for suggestion ``s`` (None: no suggestion yet)."""
    if s is None:
        return Card("No suggestion yet", facts={key: "" for key, _ in FACTS})
    _, title, _ = APPROACHES[s.approach]
    facts: dict[str, str] = {}
    head = s.trainable[-1] if s.trainable else ""
    facts["frozen"] = blocks_text(s.frozen) if s.frozen else "nothing — every layer learns"
    trained = [b for b in s.trainable if b != head]
    facts["trainable"] = f"{blocks_text(trained)} and a new output layer" if trained else "a new output layer only"
    ev = s.evidence or {}
    if ev:
        facts["evidence"] = (
            f"A linear classifier on the frozen network's features gets {ev['cv_accuracy']:.0%} of your "
            f"{ev['train_images']:,} training images right ({ev['folds']}-fold cross-validation, "
            "validation images untouched).")
    else:
        facts["evidence"] = "Nothing measured yet: this suggestion follows the image counts."
    if s.approach == 1:
        facts["lr"] = "none needed: the new output layer is fitted to convergence (L-BFGS)"
    else:
        facts["lr"] = (f"{lr_text(s.lr)} for the new output layer (range test on your images), "
                       f"{lr_text(s.lr * s.body_lr_factor)} for the pretrained blocks")
    curve = ev.get("lr_curve") or {}
    epochs = str(s.epochs)
    if s.approach > 1 and s.head_epochs:
        epochs += (f" ({s.head_epochs} fitting the new output layer alone, then {s.epochs - s.head_epochs} "
                   f"fine-tuning with a {s.warmup_epochs:g}-epoch warm-up)")
    facts["epochs"] = epochs
    facts["batch_size"] = str(s.batch_size)
    off = [k for k, v in (s.augment_params or {}).items() if v.get("enabled") is False]
    augment = s.augment + (f" without {', '.join(_TRANSFORM_WORDS.get(k, k) for k in off)}" if off else "")
    facts["augment"] = augment + (f". {s.augment_reason}" if s.augment_reason else "")
    facts["time"] = _time_text(s)
    probe = s.probe
    if probe is not None:
        verdict = ("your images resemble the photos the network learnt from" if probe.get("similar")
                   else "your images look different from the photos the network learnt from, so more "
                        "of it should adapt")
        facts["probe"] = (f"{verdict} (on {probe.get('images', 0)} images it is {probe.get('mean_confidence', 0):.0%} "
                          f"sure of what it sees on average; {probe.get('threshold', 0):.0%} or more counts as similar).")
    return Card(f"Suggested: {CIRCLED[s.approach]}  {title}", s.reason, facts,
                {"frozen": "\n".join(s.frozen), "trainable": "\n".join(s.trainable)},
                (curve.get("lrs", []), curve.get("losses", []), ev.get("lr")), bool(curve.get("lrs")),
                probe is not None, True)


def _time_text(s: Any) -> str:
    where = {"cuda": "the GPU", "mps": "the Apple GPU"}.get(s.device, "the CPU")
    when = (range_text(s.estimate_range_s) + " (timed on a few real training steps)"
            if s.estimate_range_s and s.estimate_source == "trial" else hours_text(s.estimated_hours))
    text = f"{when} on {where}, within your {s.time_budget_hours:g} h budget"
    if s.estimated_hours > s.time_budget_hours:
        text = f"{when} on {where} — over your {s.time_budget_hours:g} h budget"
    if s.stepped_down:
        wanted = APPROACHES[s.data_choice][0] if s.data_choice in APPROACHES else "a bigger approach"
        took = s.estimates_hours.get(wanted)
        text += (f". Stepped down from {wanted} training"
                 + (f", which would take {hours_text(took).replace('≈ ', 'about ')}" if took else "") + ".")
    return text


def estimate_notes(s: Any) -> dict[int, str]:
    """Next to each approach: how long it would take."""
    notes = {}
    for k in APPROACHES:
        name = APPROACHES[k][0]
        hours = s.estimates_hours.get(name)
        span = (s.estimates_s or {}).get(name)
        notes[k] = (range_text(span[1:]) if span and s.estimate_source == "trial"
                    else hours_text(hours) if hours is not None else "")
    return notes


def count_notes(s: Any, counts: dict[str, tuple[int, int]], fmt: Callable[[int], str]) -> dict[int, str]:
    """Next to each approach once the parameters are counted: how many learn (``fmt``: the UI's compact
    number, ``ui.widgets.formatting.format_count``), and how long it takes."""
    notes = {}
    for k in APPROACHES:
        hours = s.estimates_hours.get(APPROACHES[k][0])
        parts = []
        if str(k) in counts:
            parts.append(f"{fmt(counts[str(k)][0])} parameters learn")
        if hours is not None:
            parts.append(hours_text(hours))
        notes[k] = " · ".join(parts)
    return notes


def trainable_text(trainable: int, total: int, previous: int | None, share: Callable[[int, int], str]) -> str:
    """What the project trains (``share``: ``ui.widgets.formatting.format_share``), and what it trained
    before the last change."""
    text = f"The project trains {trainable:,} of {total:,} parameters ({share(trainable, total)})"
    if previous is not None and previous != trainable:
        text += f" — was {previous:,}"
    return text
