"""The graph's per-unit items: a box for a node or a collapsed block, a frame for an expanded block.

Items know nothing of the view: they read colours and the hierarchy and send requests (freeze
toggle, expand / collapse, select, context menu) through an ``ItemHost``. Text is prepared once per
item (QStaticText) on its first paint, and dropped below ``LOD_TEXT``.
"""

from __future__ import annotations

import math
from typing import Protocol

from PySide6.QtCore import QPoint, QPointF, QRectF, Qt
from PySide6.QtGui import QFontMetricsF, QPainter, QPainterPath, QPen, QStaticText
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsSceneContextMenuEvent,
    QGraphicsSceneMouseEvent,
    QStyleOptionGraphicsItem,
    QWidget,
)

from transfer_studio.core.freeze_status import FROZEN, MIXED, NONE, TRAINABLE, UnitStatus
from transfer_studio.core.graph_layout import FRAME_TITLE, Hierarchy, block_unit
from transfer_studio.ui.graph_view.style import (
    BADGE,
    LOD_TEXT,
    Colors,
    elide_left,
    elide_right,
    font,
    static_text,
)
from transfer_studio.ui.widgets.formatting import format_count, format_shape


class ItemHost(Protocol):
    """What a box or frame needs from whoever shows it (units are "n:<node>" / "b:<block>")."""

    @property
    def colors(self) -> Colors:
        """The palette's colours, refreshed in place on theme change."""

    @property
    def hierarchy(self) -> Hierarchy | None:
        """The graph shown (never None while items are shown)."""

    def toggle_freeze(self, unit: str) -> None:
        """The freeze badge was clicked: ask for the unit to be frozen or unfrozen."""

    def expand(self, block: str) -> None: ...

    def collapse(self, block: str) -> None: ...

    def select(self, unit: str) -> None:
        """Make ``unit`` the one selected unit."""

    def request_menu(self, unit: str, screen_pos: QPoint) -> None:
        """Open the context menu of ``unit`` at a global position."""


class BoxItem(QGraphicsItem):
    """A node or a collapsed block: rounded box, status stripe, text, freeze badge, +/- toggle."""

    def __init__(self, host: ItemHost, unit: str, w: float, h: float):
        super().__init__()
        self.host = host
        self.unit = unit
        self.is_block = unit.startswith("b:")
        self.ident = unit[2:]
        self.w, self.h = w, h
        self.status = UnitStatus()
        self.match = False
        self._texts: tuple | None = None
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable, True)
        self.setAcceptHoverEvents(False)
        self.setZValue(2)

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return QRectF(-3, -3, self.w + 6, self.h + 6)

    def badge_rect(self) -> QRectF:
        return QRectF(self.w - BADGE - 6, 6, BADGE, BADGE)

    def toggle_rect(self) -> QRectF:
        return QRectF(13, 7, BADGE, BADGE)

    def forget_text(self) -> None:
        """Lay the text out again on the next paint (the theme, hence the fonts' rendering, changed)."""
        self._texts = None

    def _prepare(self) -> tuple[QStaticText, QStaticText, QStaticText, float]:
        """Text, elided to fit, laid out once: (title, subtitle, shape, x of the title)."""
        h = self.host.hierarchy
        assert h is not None  # items exist only while a graph is shown
        small = QFontMetricsF(font("small"))
        if self.is_block:
            blk = h.blocks[self.ident]
            members = h.members[self.ident]
            shape = format_shape(h.nodes[members[-1]].output_shape)
            n_layers = sum(1 for n in members if h.nodes[n].kind == "module")
            name = blk.label if self.ident.startswith("[") else self.ident
            label = blk.kind if self.ident.startswith("[") else blk.label
            title_x = 13 + BADGE + 6
            count = f"{n_layers} layer{'s' if n_layers != 1 else ''}"
        else:
            node = h.nodes[self.ident]
            shape = format_shape(node.output_shape)
            if node.kind in ("input", "output"):
                text = f"{node.kind}  {shape}".strip()
                return (static_text(elide_right(text, font("title"), self.w - 20)), static_text(""),
                        static_text(""), 14.0)
            name, sub, title_x = node.type, self.ident, 14.0
        shape_w = small.horizontalAdvance(shape) + 10 if shape else 0
        title = elide_right(name, font("title"), self.w - title_x - BADGE - 56)
        if self.is_block:  # the type gives way before the layer count ("MBConv… · 5 layers")
            room = self.w - title_x - shape_w - 8
            tail = f" · {count}"
            label = elide_right(label, font("small"), room - small.horizontalAdvance(tail))
            sub = label + tail if label and label != "…" else count
        else:
            sub = elide_left(sub, font("small"), self.w - title_x - shape_w - 8)
        return (static_text(title), static_text(sub), static_text(shape), title_x)

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        c = self.host.colors
        st = self.status
        accent = c.modified if st.modified else c.state[st.freeze]
        lod = option.levelOfDetailFromTransform(p.worldTransform())
        rect = QRectF(0, 0, self.w, self.h)
        selected = self.isSelected()
        if lod < LOD_TEXT:  # far out: a flat box is all the eye can see
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(c.match if self.match else (c.selected if selected else c.tint(accent, 0.55)))
            p.drawRect(rect)
            return
        border = c.match if self.match else (c.selected if selected else c.tint(accent, 0.9))
        fill = c.tint(accent, 0.16 if st.freeze != NONE or st.modified else 0.06)
        if self.is_block:  # a stacked-card shadow says "there is more inside"
            p.setPen(QPen(c.tint(accent, 0.5), 1))
            p.setBrush(c.tint(accent, 0.08))
            p.drawRoundedRect(rect.translated(3, 3), 7, 7)
        p.setPen(QPen(border, 2.5 if (self.match or selected) else 1.2))
        p.setBrush(fill)
        p.drawRoundedRect(rect, 7, 7)
        # status stripe on the left
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(accent if st.freeze != NONE or st.modified else c.neutral)
        stripe = QPainterPath()
        stripe.addRoundedRect(QRectF(0.6, 0.6, 6, self.h - 1.2), 3, 3)
        p.drawPath(stripe)
        if self._texts is None:
            self._texts = self._prepare()
        title, sub, shape, tx = self._texts
        p.setPen(c.text)
        p.setFont(font("title"))
        if not sub.text():  # input / output: one centred line
            p.drawStaticText(QPointF(tx, (self.h - title.size().height()) / 2), title)
            return
        p.drawStaticText(QPointF(tx, 6), title)
        p.setFont(font("small"))
        p.setPen(c.muted)
        p.drawStaticText(QPointF(tx, self.h - 20), sub)
        fm = QFontMetricsF(font("small"))
        right = self.w - 8
        if shape.text():
            p.drawStaticText(QPointF(right - fm.horizontalAdvance(shape.text()), self.h - 20), shape)
        if st.total:
            params = format_count(st.total)
            p.setPen(c.text)
            p.drawText(QPointF(self.w - BADGE - 12 - fm.horizontalAdvance(params), 18), params)
            paint_badge(p, self.badge_rect(), st, c)
        if self.is_block:
            paint_toggle(p, self.toggle_rect(), expanded=False, c=c)

    # -- interaction ---------------------------------------------------------------------------
    def mousePressEvent(self, event: QGraphicsSceneMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            pos = event.pos()
            if self.status.total and self.badge_rect().adjusted(-3, -3, 3, 3).contains(pos):
                self.host.toggle_freeze(self.unit)
                event.accept()
                return
            if self.is_block and self.toggle_rect().adjusted(-3, -3, 3, 3).contains(pos):
                self.host.expand(self.ident)
                event.accept()
                return
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QGraphicsSceneMouseEvent) -> None:  # noqa: N802
        if self.is_block:
            self.host.expand(self.ident)
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def contextMenuEvent(self, event: QGraphicsSceneContextMenuEvent) -> None:  # noqa: N802
        # Through the scene's own selection (the view hears selectionChanged), like a click.
        self.scene().clearSelection()
        self.setSelected(True)
        self.host.request_menu(self.unit, event.screenPos())
        event.accept()


class FrameItem(QGraphicsItem):
    """An expanded block: a titled frame around its contents, with a collapse toggle."""

    def __init__(self, host: ItemHost, block: str):
        super().__init__()
        self.host = host
        self.block = block
        self.unit = block_unit(block)
        self.w = self.h = 0.0
        self.status = UnitStatus()
        self.match = False
        self._title: QStaticText | None = None
        self.setZValue(0)
        self.setAcceptedMouseButtons(Qt.MouseButton.LeftButton | Qt.MouseButton.RightButton)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    def set_size(self, w: float, h: float) -> None:
        if (w, h) != (self.w, self.h):
            self.prepareGeometryChange()
            self.w, self.h = w, h
            self._title = None

    def boundingRect(self) -> QRectF:  # noqa: N802
        return QRectF(-2, -2, self.w + 4, self.h + 4)

    def shape(self) -> QPainterPath:
        # Only the title bar takes clicks: the inside belongs to the boxes and to panning.
        path = QPainterPath()
        path.addRect(QRectF(0, 0, self.w, FRAME_TITLE + 4))
        return path

    def toggle_rect(self) -> QRectF:
        return QRectF(6, 5, BADGE, BADGE)

    def badge_rect(self) -> QRectF:
        return QRectF(self.w - BADGE - 6, 5, BADGE, BADGE)

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        c = self.host.colors
        st = self.status
        accent = c.modified if st.modified else c.state[st.freeze]
        lod = option.levelOfDetailFromTransform(p.worldTransform())
        rect = QRectF(0, 0, self.w, self.h)
        pen = QPen(c.match if self.match else c.tint(accent, 0.75), 2 if self.match else 1.2)
        exposed = option.exposedRect.intersected(rect)
        if rect.width() * lod < 2000 and rect.height() * lod < 2000:
            p.setPen(pen)
            p.setBrush(c.frame_fill)
            p.drawRoundedRect(rect, 9, 9)
        else:
            # A frame much larger than the screen: rasterising all of a huge antialiased rounded
            # shape costs hundreds of ms; fill and outline only the exposed part.
            p.fillRect(exposed, c.frame_fill)
            p.setPen(pen)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(rect)
        if lod < LOD_TEXT:
            return
        title_rect = QRectF(0.6, 0.6, self.w - 1.2, FRAME_TITLE)
        path = QPainterPath()
        path.addRoundedRect(title_rect, 8, 8)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(c.tint(accent, 0.14))
        p.drawPath(path)
        if self._title is None:
            self._prepare()
        p.setPen(c.text)
        p.setFont(font("title"))
        p.drawStaticText(QPointF(26, 4), self._title)
        if self._label.text():
            p.setPen(c.muted)
            p.setFont(font("small"))
            p.drawStaticText(QPointF(self._label_x, 6), self._label)
        if st.total:
            p.setFont(font("small"))
            p.setPen(c.muted)
            params = format_count(st.total)
            fm = QFontMetricsF(font("small"))
            p.drawText(QPointF(self.w - BADGE - 12 - fm.horizontalAdvance(params), 16), params)
            paint_badge(p, self.badge_rect(), st, c)
        paint_toggle(p, self.toggle_rect(), expanded=True, c=c)

    def _prepare(self) -> None:
        """The title (and the block's type label when it fits), elided and laid out once per size."""
        h = self.host.hierarchy
        assert h is not None  # items exist only while a graph is shown
        blk = h.blocks[self.block]
        name = blk.label if self.block.startswith("[") else self.block
        room = max(20.0, self.w - 26 - 70)
        self._title = static_text(elide_right(name, font("title"), room))
        used = QFontMetricsF(font("title")).horizontalAdvance(self._title.text()) + 8
        label = "" if self.block.startswith("[") else blk.label
        fits = label and QFontMetricsF(font("small")).horizontalAdvance(label) < room - used
        self._label = static_text(label if fits else "")
        self._label_x = 26 + used

    def mousePressEvent(self, event: QGraphicsSceneMouseEvent) -> None:  # noqa: N802
        pos = event.pos()
        if event.button() == Qt.MouseButton.LeftButton:
            if self.toggle_rect().adjusted(-3, -3, 3, 3).contains(pos):
                self.host.collapse(self.block)
                event.accept()
                return
            if self.status.total and self.badge_rect().adjusted(-3, -3, 3, 3).contains(pos):
                self.host.toggle_freeze(self.unit)
                event.accept()
                return
            self.host.select(self.unit)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QGraphicsSceneMouseEvent) -> None:  # noqa: N802
        self.host.collapse(self.block)
        event.accept()

    def contextMenuEvent(self, event: QGraphicsSceneContextMenuEvent) -> None:  # noqa: N802
        self.host.select(self.unit)
        self.host.request_menu(self.unit, event.screenPos())
        event.accept()


def paint_badge(p: QPainter, r: QRectF, st: UnitStatus, c: Colors) -> None:
    """Freeze badge: a filled disc when frozen, a ring when trainable, half-filled when mixed."""
    colour = c.frozen if st.freeze == FROZEN else (c.trainable if st.freeze == TRAINABLE else c.frozen)
    p.setPen(QPen(colour, 1.6))
    if st.freeze == FROZEN:
        p.setBrush(colour)
        p.drawEllipse(r)
        # a small snowflake: three strokes
        p.setPen(QPen(c.base, 1.3))
        cx, cy, rad = r.center().x(), r.center().y(), r.width() * 0.28
        for k in range(3):
            a = math.pi * k / 3
            p.drawLine(QPointF(cx - rad * math.cos(a), cy - rad * math.sin(a)),
                       QPointF(cx + rad * math.cos(a), cy + rad * math.sin(a)))
    elif st.freeze == MIXED:
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawEllipse(r)
        p.setBrush(colour)
        p.drawChord(r, 90 * 16, 180 * 16)
    else:
        p.setPen(QPen(c.trainable, 1.8))
        p.setBrush(c.tint(c.trainable, 0.15))
        p.drawEllipse(r.adjusted(1, 1, -1, -1))


def paint_toggle(p: QPainter, r: QRectF, expanded: bool, c: Colors) -> None:
    """The expand (+) / collapse (-) toggle of a block."""
    p.setPen(QPen(c.muted, 1.2))
    p.setBrush(c.base)
    p.drawRoundedRect(r, 3, 3)
    p.setPen(QPen(c.text, 1.6))
    cx, cy = r.center().x(), r.center().y()
    p.drawLine(QPointF(cx - 4, cy), QPointF(cx + 4, cy))
    if not expanded:
        p.drawLine(QPointF(cx, cy - 4), QPointF(cx, cy + 4))


def unit_tooltip(h: Hierarchy | None, unit: str) -> str:
    """The tooltip of a unit, built on demand (not stored on every item)."""
    if h is None:
        return ""
    if unit.startswith("b:"):
        blk = h.blocks[unit[2:]]
        return (f"{unit[2:]} ({blk.label}, {blk.kind})\n{len(h.members[unit[2:]])} nodes · "
                f"{format_count(blk.params)} parameters\nDouble-click to expand")
    n = h.nodes[unit[2:]]
    shape = format_shape(n.output_shape)
    return f"{n.id}\n{n.type}" + (f" → {shape}" if shape else "") + (
        f"\n{n.params:,} parameters" if n.params else "")
