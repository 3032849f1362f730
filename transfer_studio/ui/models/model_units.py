"""The Model page's boxes as freeze targets: which modules a click on a node or block freezes, where
a box sits in the network's order of freeze units, and what its context menu offers. Plain functions
of the graph (``model_network.DisplayData``) and the boxes' shown status (``status_of(unit)``); units
are "n:<node>" or "b:<block>"."""

from __future__ import annotations

from collections.abc import Callable

from transfer_studio.config import SurgeryOp
from transfer_studio.core.freeze_status import UnitStatus
from transfer_studio.ui.models.model_network import DisplayData
from transfer_studio.ui.models.model_text import MenuState

StatusOf = Callable[[str], UnitStatus]


def targets(d: DisplayData, status_of: StatusOf, unit: str) -> list[str]:
    """Module or parameter names a freeze of this unit applies to (those holding parameters)."""
    h, ident = d.hierarchy, unit[2:]
    if unit.startswith("b:"):
        if ident.startswith("["):  # synthetic stem/head: its member layers
            names: list[str] = []
            for nid in h.members.get(ident, []):
                base = nid.split("@", 1)[0]
                if status_of("n:" + nid).total and base not in names:
                    names.append(base)
            return names
        return [ident] if status_of(unit).total else []
    if ident not in h.nodes or not status_of(unit).total:
        return []
    return [ident.split("@", 1)[0]]


def unit_index(d: DisplayData, status_of: StatusOf, unit: str, first: bool = False) -> int | None:
    """Index in the freeze-unit order of the last (or first) freeze unit inside this node/block."""
    names = targets(d, status_of, unit) or ([unit[2:]] if not unit[2:].startswith("[") else [])
    if unit.startswith("n:") and not names:
        node = d.hierarchy.nodes.get(unit[2:])
        if node is not None and node.block:
            names = [node.block] if not node.block.startswith("[") else []
    hits = [i for i, u in enumerate(d.units) for n in names
            if u == n or u.startswith(n + ".") or n.startswith(u + ".")]
    if not hits:
        return None
    return min(hits) if first else max(hits)


def menu_state(d: DisplayData, status_of: StatusOf, unit: str, expanded: bool = False) -> MenuState:
    """What the context menu offers for ``unit`` (``expanded``: the block is open in the view)."""
    ident, st = unit[2:], status_of(unit)
    params = bool(targets(d, status_of, unit))
    node = d.hierarchy.nodes.get(ident)
    module = not ident.startswith("[") and (unit.startswith("b:") or (
        node is not None and node.kind == "module" and "@" not in ident))
    head = d.head
    is_head = bool(head) and (ident == head or head.startswith(ident + ".") or ident.startswith(head + "."))
    return MenuState(ident, params and st.freeze != "frozen", params and st.freeze != "trainable",
                     unit_index(d, status_of, unit) is not None,
                     unit_index(d, status_of, unit, first=True) is not None,
                     module, module and not is_head, unit.startswith("b:"), expanded)


def up_to_ops(d: DisplayData, status_of: StatusOf, unit: str) -> list[SurgeryOp] | None:
    """"Freeze up to here": everything up to and including ``unit`` (None: not in the order)."""
    idx = unit_index(d, status_of, unit)
    if idx is None:
        return None
    return [SurgeryOp("freeze_before", d.units[idx + 1])] if idx + 1 < len(d.units) else [SurgeryOp("freeze", "*")]


def from_ops(d: DisplayData, status_of: StatusOf, unit: str) -> list[SurgeryOp] | None:
    """"Train from here on": ``unit`` and everything after it train, everything before is frozen."""
    idx = unit_index(d, status_of, unit, first=True)
    if idx is None:
        return None
    return [SurgeryOp("unfreeze", "*")] + ([SurgeryOp("freeze_before", d.units[idx])] if idx > 0 else [])


def features_of(d: DisplayData, target: str) -> int | None:
    """The width of a layer's flat output (the default width of a Linear inserted after it)."""
    node = d.hierarchy.nodes.get(target)
    shape = node.output_shape if node is not None else None
    return int(shape[-1]) if shape and len(shape) == 2 else None
