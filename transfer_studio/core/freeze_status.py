"""Freeze status of a model graph's boxes, from parameter counts: Qt-free and torch-free.

The Model page's worker computes these for the graph view (``ui.graph_view``) from the project's
network; the view only paints them. A box is frozen, trainable, mixed (part of its parameters
train) or has no parameters, and is *modified* when surgery added or replaced it (or a module
inside it).
"""

from __future__ import annotations

from collections.abc import Iterable

from transfer_studio.core.graph_layout import Hierarchy

# Freeze states of a node or block, and the extra "modified" flag (added or replaced by surgery).
FROZEN, TRAINABLE, MIXED, NONE = "frozen", "trainable", "mixed", "none"


class UnitStatus:
    """How one box is coloured: its freeze state, whether surgery added/changed it, counts."""

    __slots__ = ("freeze", "modified", "trainable", "total")

    def __init__(self, freeze: str = NONE, modified: bool = False, trainable: int = 0, total: int = 0):
        self.freeze = freeze
        self.modified = modified
        self.trainable = trainable
        self.total = total

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnitStatus) and (self.freeze, self.modified, self.trainable, self.total) == (
            other.freeze, other.modified, other.trainable, other.total)

    def __repr__(self) -> str:
        return f"UnitStatus({self.freeze!r}, modified={self.modified}, {self.trainable}/{self.total})"


def freeze_of(trainable: int, total: int) -> str:
    if total <= 0:
        return NONE
    if trainable <= 0:
        return FROZEN
    if trainable >= total:
        return TRAINABLE
    return MIXED


def compute_status(hierarchy: Hierarchy, counts: dict[str, tuple[int, int]],
                   modified: Iterable[str]) -> tuple[dict[str, UnitStatus], dict[str, UnitStatus]]:
    """Statuses of every node and block from per-module (trainable, total) counts.

    ``counts`` maps qualified module names (and "" for the model) to parameter counts of the whole
    subtree (see ``module_counts``); ``modified`` holds modules added or replaced by surgery.
    Synthetic blocks ("[stem]", "[head]") sum their members.
    """
    mods = set(modified)

    def is_modified(name: str) -> bool:
        while name:
            if name in mods:
                return True
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return False

    nodes: dict[str, UnitStatus] = {}
    for nid, n in hierarchy.nodes.items():
        if n.kind == "module":
            name = nid.split("@", 1)[0]
            tr, tot = counts.get(name, (0, 0))
            nodes[nid] = UnitStatus(freeze_of(tr, tot), is_modified(name), tr, tot)
        elif n.kind == "op" and n.type == "parameter":
            tr, tot = counts.get("param:" + nid, (0, 0))
            nodes[nid] = UnitStatus(freeze_of(tr, tot), is_modified(nid.rsplit(".", 1)[0]), tr, tot)
        else:
            nodes[nid] = UnitStatus()
    blocks: dict[str, UnitStatus] = {}
    for bid in hierarchy.blocks:
        if bid.startswith("["):
            tr = tot = 0
            seen: set[str] = set()
            modified_any = False
            for nid in hierarchy.members[bid]:
                st = nodes[nid]
                base = nid.split("@", 1)[0]
                if base not in seen:
                    seen.add(base)
                    tr += st.trainable
                    tot += st.total
                modified_any = modified_any or st.modified
            blocks[bid] = UnitStatus(freeze_of(tr, tot), modified_any, tr, tot)
        else:
            tr, tot = counts.get(bid, (0, 0))
            modified_any = is_modified(bid) or any(nodes[n].modified for n in hierarchy.members[bid])
            blocks[bid] = UnitStatus(freeze_of(tr, tot), modified_any, tr, tot)
    return nodes, blocks


def module_counts(named_parameters: Iterable[tuple[str, object]]) -> dict[str, tuple[int, int]]:
    """(trainable, total) parameter counts of every module subtree, from ``model.named_parameters()``.

    Keys are module names ("" = whole model); parameters are also keyed as "param:<name>" so
    graph nodes for bare parameters (ViT's class token) get a status.
    """
    trainable: dict[str, int] = {}
    total: dict[str, int] = {}
    for name, p in named_parameters:
        n = int(p.numel())  # type: ignore[attr-defined]
        t = n if p.requires_grad else 0  # type: ignore[attr-defined]
        parts = name.split(".")
        keys = [""] + [".".join(parts[:i]) for i in range(1, len(parts))] + ["param:" + name]
        for k in keys:
            total[k] = total.get(k, 0) + n
            trainable[k] = trainable.get(k, 0) + t
    return {k: (trainable[k], total[k]) for k in total}
