"""Where things are in a layout, for navigating the view: a unit's rectangle, the place to keep, fitting.

Plain geometry over ``core.graph_layout``'s data (Qt value types only, no widgets).
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF

from transfer_studio.core.graph_layout import Hierarchy, Layout, node_unit
from transfer_studio.ui.graph_view.style import MIN_ZOOM

Anchor = tuple[str, QPointF]  # a unit and the view centre's offset from the unit's centre


def unit_rect(layout: Layout, hierarchy: Hierarchy, unit: str) -> QRectF | None:
    """Scene rectangle of a unit, or of the visible box/frame that contains it."""
    box = layout.boxes.get(unit)
    if box is not None:
        return QRectF(box.x, box.y, box.w, box.h)
    if unit.startswith("b:"):
        frame = layout.frames.get(unit[2:])
        if frame is not None:
            return QRectF(frame.x, frame.y, frame.w, min(frame.h, 300))
        members = hierarchy.members.get(unit[2:])
        if members:
            unit = node_unit(members[0])
    nid = unit[2:]
    shown = layout.unit_of_node.get(nid)
    if shown is not None and shown in layout.boxes:
        b = layout.boxes[shown]
        return QRectF(b.x, b.y, b.w, b.h)
    return None


def anchor_at(layout: Layout, centre: QPointF) -> Anchor | None:
    """The unit nearest the view's centre, so that a new layout keeps the user's place."""
    best, best_d = None, float("inf")
    for unit, box in layout.boxes.items():
        d = (box.cx - centre.x()) ** 2 + (box.y + box.h / 2 - centre.y()) ** 2
        if d < best_d:
            best, best_d = unit, d
    if best is None:
        return None
    box = layout.boxes[best]
    return best, QPointF(centre.x() - box.cx, centre.y() - (box.y + box.h / 2))


def anchor_centre(layout: Layout, hierarchy: Hierarchy, anchor: Anchor) -> QPointF | None:
    """Where to centre the view on ``layout`` to keep ``anchor`` in place (None: nowhere to go)."""
    unit, offset = anchor
    box = layout.boxes.get(unit)
    if box is None:  # the anchor box disappeared (expanded/collapsed): use what replaced it
        target = unit_rect(layout, hierarchy, unit)
        return None if target is None else target.center() + offset
    return QPointF(box.cx, box.y + box.h / 2) + offset


def start_zoom(layout: Layout, vw: int, vh: int) -> tuple[float, bool]:
    """The starting zoom of a new graph in a ``vw`` x ``vh`` viewport, and whether all of it shows
    (else its width, from the top: tall networks would be unreadably small)."""
    lw, lh = layout.width, layout.height
    z_all = min(vw / lw, vh / lh)
    if z_all >= 0.5:
        return min(1.0, z_all), True
    z = max(min(1.0, vw / lw), min(0.5, z_all * 4), MIN_ZOOM)
    return min(z, 1.0), False
