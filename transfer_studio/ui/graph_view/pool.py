"""The box and frame items of a graph: created lazily, reused across layouts.

A fully expanded large network has over a thousand boxes: creating them all at once would stall the
GUI thread for longer than a frame. So a new layout moves the items it shares with the last one,
hides the rest, creates at once only the new items (nearly) in view, and the others in short timer
slices; an item asked for before its turn is created on demand.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject, QRectF, QTimer
from PySide6.QtWidgets import QGraphicsScene

from transfer_studio.core.freeze_status import UnitStatus
from transfer_studio.core.graph_layout import Frame, Layout, block_unit
from transfer_studio.ui.graph_view.items import BoxItem, FrameItem, ItemHost

SLICE_S = 0.006  # item creation per timer slice, then the event loop breathes


class ItemPool:
    """Items by unit ("n:<node>" / "b:<block>") for boxes and by block id for frames.

    ``status_of`` gives a unit's freeze status, ``visible_area`` the scene rectangle in view (asked
    only while items are waiting to be created). ``detail`` is False in the view's overview mode,
    where the items are hidden.
    """

    def __init__(self, scene: QGraphicsScene, host: ItemHost, status_of: Callable[[str], UnitStatus],
                 visible_area: Callable[[], QRectF], parent: QObject):
        self._scene = scene
        self._host = host
        self._status_of = status_of
        self._visible_area = visible_area
        self.boxes: dict[str, BoxItem] = {}
        self.frames: dict[str, FrameItem] = {}
        self.detail = True
        self._layout: Layout | None = None
        self._matches: set[str] = set()
        self._pending_boxes: list[str] = []
        self._pending_frames: list[str] = []
        self._timer = QTimer(parent)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._create_some)

    def clear(self) -> None:
        """Remove every item (another graph, or none)."""
        for item in [*self.boxes.values(), *self.frames.values()]:
            self._scene.removeItem(item)
        self.boxes.clear()
        self.frames.clear()
        self._pending_boxes, self._pending_frames = [], []
        self._timer.stop()
        self._layout = None

    def apply(self, layout: Layout, matches: set[str], detail: bool) -> None:
        """Move the items ``layout`` shares with the last one, hide the others; what is new waits for
        ``create_visible`` and ``fill_later``."""
        self._layout, self._matches, self.detail = layout, matches, detail
        for unit, item in self.boxes.items():
            box = layout.boxes.get(unit)
            if box is None:
                if item.isVisible():
                    item.setSelected(False)
                    item.setVisible(False)
                continue
            item.match = unit in matches
            item.setPos(box.x, box.y)
            item.setVisible(detail)
        for block, fitem in self.frames.items():
            frame = layout.frames.get(block)
            if frame is None:
                fitem.setVisible(False)
                continue
            self._place_frame(fitem, frame)
            fitem.setVisible(detail)
        self._pending_boxes = [u for u in layout.boxes if u not in self.boxes]
        self._pending_frames = [b for b in layout.frames if b not in self.frames]

    def show_detail(self, visible: bool) -> None:
        """Show the items of the layout (close up) or hide them (overview mode)."""
        self.detail = visible
        layout = self._layout
        if layout is None:
            return
        for unit in layout.boxes:
            item = self.boxes.get(unit)
            if item is not None:
                item.setVisible(visible)
        for block in layout.frames:
            fitem = self.frames.get(block)
            if fitem is not None:
                fitem.setVisible(visible)

    def refresh_status(self) -> None:
        """Repaint the items whose status changed."""
        for unit, item in self.boxes.items():
            st = self._status_of(unit)
            if st != item.status:
                item.status = st
                item.update()
        for block, fitem in self.frames.items():
            st = self._status_of(block_unit(block))
            if st != fitem.status:
                fitem.status = st
                fitem.update()

    def set_matches(self, matches: set[str]) -> None:
        """Highlight the boxes holding a search match (frames take theirs with the next layout)."""
        self._matches = matches
        for unit, item in self.boxes.items():
            m = unit in matches
            if m != item.match:
                item.match = m
                item.update()

    def forget_text(self) -> None:
        for item in self.boxes.values():
            item.forget_text()

    # -- creation ------------------------------------------------------------------------------
    def box(self, unit: str) -> BoxItem | None:
        """The box of ``unit`` in the current layout (created now if still waiting), or None."""
        item = self.boxes.get(unit)
        if item is None and self._layout is not None and unit in self._layout.boxes:
            item = self._make_box(unit)
        return item

    def frame(self, block: str) -> FrameItem:
        """The frame of ``block``, which the current layout shows expanded."""
        return self.frames.get(block) or self._make_frame(block)

    def create_visible(self) -> None:
        """Create the waiting items that are (nearly) in view right now."""
        layout = self._layout
        if layout is None or not (self._pending_boxes or self._pending_frames):
            return
        seen = self._visible_area()
        area = seen.adjusted(-seen.width() / 2, -seen.height() / 2, seen.width() / 2, seen.height() / 2)
        self._pending_boxes = self._make_near(area, self._pending_boxes, self.boxes, layout.boxes, self._make_box)
        self._pending_frames = self._make_near(area, self._pending_frames, self.frames, layout.frames,
                                               self._make_frame)

    @staticmethod
    def _make_near(area: QRectF, pending: list[str], made: dict, rects: dict, make: Callable[[str], object]
                   ) -> list[str]:
        """Make the pending items whose rectangle meets ``area``; the rest stay pending."""
        keep: list[str] = []
        for unit in pending:
            if unit in made:
                continue
            r = rects.get(unit)
            if r is not None and area.intersects(QRectF(r.x, r.y, r.w, r.h)):
                make(unit)
            elif r is not None:
                keep.append(unit)
        return keep

    def fill_later(self) -> None:
        """Create the rest in timer slices."""
        if self._pending_boxes or self._pending_frames:
            self._timer.start()

    def _create_some(self) -> None:
        """Timer slice: create waiting items for about 6 ms, then let the event loop breathe."""
        deadline = time.perf_counter() + SLICE_S
        while self._pending_frames and time.perf_counter() < deadline:
            block = self._pending_frames.pop()
            if block not in self.frames and self._layout is not None and block in self._layout.frames:
                self._make_frame(block)
        while self._pending_boxes and time.perf_counter() < deadline:
            unit = self._pending_boxes.pop()
            if unit not in self.boxes and self._layout is not None and unit in self._layout.boxes:
                self._make_box(unit)
        if not (self._pending_boxes or self._pending_frames):
            self._timer.stop()

    def _make_box(self, unit: str) -> BoxItem:
        box = self._layout.boxes[unit]  # type: ignore[union-attr]
        item = BoxItem(self._host, unit, box.w, box.h)
        item.status = self._status_of(unit)
        item.match = unit in self._matches
        item.setPos(box.x, box.y)
        item.setVisible(self.detail)
        self._scene.addItem(item)
        self.boxes[unit] = item
        return item

    def _make_frame(self, block: str) -> FrameItem:
        fitem = FrameItem(self._host, block)
        fitem.status = self._status_of(block_unit(block))
        self._place_frame(fitem, self._layout.frames[block])  # type: ignore[union-attr]
        fitem.setVisible(self.detail)
        self._scene.addItem(fitem)
        self.frames[block] = fitem
        return fitem

    def _place_frame(self, fitem: FrameItem, frame: Frame) -> None:
        fitem.match = block_unit(fitem.block) in self._matches
        fitem.set_size(frame.w, frame.h)
        fitem.setPos(frame.x, frame.y)
        fitem.setZValue(-10 + frame.depth)
