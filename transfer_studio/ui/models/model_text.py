"""What the Model page writes: the model line, the parameter counts, the selected box, the training
overlay's line, the catalog's buttons and missing-weights advice. Plain functions of plain data; the
page's number formats (``ui.widgets.formatting``) are handed in as ``Formats``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from transfer_studio.core.freeze_status import UnitStatus

FREEZE_WORDS = {"frozen": "frozen", "trainable": "trainable", "mixed": "partly frozen", "none": "no parameters"}


@dataclass(frozen=True)
class Formats:
    """Numbers as the UI writes them: ``count`` (11.7M), ``share`` (99.9%), ``shape`` (64×56×56)."""

    count: Callable[[int], str] = str
    share: Callable[[int, int], str] = lambda part, total: f"{100 * part / total:.0f}%" if total else "–"
    shape: Callable[[Sequence[int] | None], str] = lambda s: "×".join(map(str, s[1:])) if s else ""


def model_line(spec: Any, changes: int) -> str:
    """"resnet18 · pretrained · 2 changes" above the graph."""
    weights = {"DEFAULT": "pretrained", "none": "random init"}.get(spec.weights, os.path.basename(spec.weights))
    text = f"{spec.name} · {weights}"
    if changes:
        text += f" · {changes} change{'s' if changes != 1 else ''}"
    return text


def count_line(trainable: int, total: int, fmt: Formats) -> tuple[str, str]:
    """(the label's text, its accessible name)."""
    return (f"Trainable: {fmt.count(trainable)} of {fmt.count(total)} parameters ({fmt.share(trainable, total)})",
            f"{trainable} of {total} parameters trainable")


def selection_line(hierarchy: Any, unit: str, st: UnitStatus, fmt: Formats) -> str:
    """The line under the graph for the selected box (rich text)."""
    ident = unit[2:]
    state = FREEZE_WORDS[st.freeze]
    if st.modified:
        state += ", new/modified"
    if unit.startswith("b:"):
        blk = hierarchy.blocks[ident]
        text = f"<b>{ident}</b> — {blk.label} ({blk.kind}), {len(hierarchy.members[ident])} nodes"
    else:
        n = hierarchy.nodes[ident]
        shape = fmt.shape(n.output_shape)
        text = f"<b>{ident}</b> — {n.type}" + (f" → {shape}" if shape else "")
    return text + (f" · {st.total:,} parameters ({state})" if st.total else f" · {state}")


def phase_line(event: Any) -> str:
    """The training overlay's line (``training.events.PhaseChanged``)."""
    what = getattr(event, "description", "") or getattr(event, "phase", "")
    return f"Training, epoch {getattr(event, 'epoch', '?')}: {what}"


def loaded_weights(weights: str) -> str:
    return "random weights" if weights == "none" else ("pretrained weights" if weights == "DEFAULT"
                                                       else os.path.basename(weights))


def missing_weights_text(info: Any) -> str:
    if info.weights_file and info.weights_url:
        size = f" ({info.weights_size_mb:.0f} MB)" if info.weights_size_mb else ""
        return (f"The pretrained weights of {info.name} are not on this computer. Put the file "
                f"{os.path.basename(info.weights_file)}{size} at {info.weights_file} (download it from "
                f"{info.weights_url} on a connected machine), click Download weights, open a weights file "
                "of your own, or tick Random init.")
    return (f"The pretrained weights of {info.name} are missing; open a weights file of your own or tick "
            "Random init.")


def class_count_offer(n: int, scan: Any) -> tuple[int, str]:
    """The class count "Replace head" proposes (``n``: ``core.head.class_count``), and where it comes from."""
    if n >= 2 and getattr(scan, "classes", None):
        return n, f"{n} classes found in the dataset ({getattr(scan, 'root', '')})."
    if n >= 2:
        return n, "From the project's dataset classes."
    return 2, "No dataset chosen yet: set the number of classes you will train on."


def size_note(info: Any) -> str:
    return f" ({info.weights_size_mb:.0f} MB)" if getattr(info, "weights_size_mb", None) else ""


@dataclass(frozen=True)
class Buttons:
    """The browser's buttons: enabled, shown, and the download button's text."""

    load: bool
    download_visible: bool
    download: bool
    download_text: str
    open_weights: bool
    replace_head: bool


def buttons(info: Any, random_init: bool, downloading: bool, shown: bool) -> Buttons:
    available = info is not None and info.weights_available_offline
    can_download = info is not None and not available and info.weights_url is not None
    return Buttons(
        load=info is not None and not downloading and (available or random_init),
        download_visible=can_download,
        download=can_download and not downloading,
        download_text=f"Download weights{size_note(info)}" if can_download else "Download weights",
        open_weights=info is not None and not downloading,
        replace_head=shown,
    )


@dataclass(frozen=True)
class MenuState:
    """What the graph's context menu offers for one box."""

    title: str
    freeze: bool
    unfreeze: bool
    freeze_up_to: bool
    train_from: bool
    insert: bool  # a module: layers can go after it
    remove: bool  # a module, not the head
    block: bool
    expanded: bool
