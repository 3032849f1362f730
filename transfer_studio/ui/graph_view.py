"""Interactive model graph: a QGraphicsView over the layered layout of ``core.graph_layout``.

What it draws comes from three inputs, all plain data:

- a ``Hierarchy`` (nodes, edges, blocks of a ``core.graph.ModelGraph``) and a ``Layout`` of it,
  both computed off the GUI thread by the page;
- per node / block *status* (frozen, trainable, mixed, no parameters; new-or-modified), set with
  ``set_status`` whenever the page's network changes;
- which blocks are expanded (``set_expanded``; double-click or the +/- toggle on a block).

The view never touches an ``nn.Module``: freezing and surgery are requests (signals) that the page
turns into project operations. Performance: one item per visible box (created lazily, reused across
layouts), one item painting every edge that intersects the exposed area, text prepared once per item
(QStaticText), and a level-of-detail switch that drops text when zoomed far out. Layouts of large
expansions are computed on a worker thread and cached.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Iterable

from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QKeySequence,
    QPainter,
    QPainterPath,
    QPalette,
    QPen,
    QPixmap,
    QPolygonF,
    QStaticText,
    QTransform,
)
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsItem,
    QGraphicsScene,
    QGraphicsSceneContextMenuEvent,
    QGraphicsSceneMouseEvent,
    QGraphicsView,
    QLabel,
    QStyleOptionGraphicsItem,
    QToolTip,
    QWidget,
)

from transfer_studio.core.freeze_status import FROZEN, MIXED, NONE, TRAINABLE, UnitStatus
from transfer_studio.core.graph_layout import (
    FRAME_TITLE,
    Hierarchy,
    Layout,
    block_unit,
    compute_layout,
    node_unit,
)
from transfer_studio.ui import theme
from transfer_studio.ui.widgets.formatting import format_count, format_shape

SYNC_LAYOUT_UNITS = 250  # larger expansions are laid out on a worker thread
LOD_TEXT = 0.45  # below this zoom, boxes are drawn without text
LOD_OVERVIEW = 0.3  # below this zoom, one item draws everything (no per-box Python calls)
MIN_ZOOM, MAX_ZOOM = 0.02, 4.0
BADGE = 14.0


class _Colors:
    """Colours for the current palette, refreshed on theme change."""

    def __init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        self._tints: dict[tuple[int, float], QColor] = {}
        dark = theme.is_dark()
        sem = theme.semantic_colors(dark)
        app_pal = QPalette() if not _app_palette() else _app_palette()
        self.base = app_pal.color(QPalette.ColorRole.Base)
        self.window = app_pal.color(QPalette.ColorRole.Window)
        self.text = app_pal.color(QPalette.ColorRole.Text)
        self.muted = app_pal.color(QPalette.ColorRole.PlaceholderText)
        self.mid = app_pal.color(QPalette.ColorRole.Mid)
        self.selected = app_pal.color(QPalette.ColorRole.Highlight)
        self.edge = QColor(self.text)
        self.edge.setAlphaF(0.45)
        self.state = {FROZEN: sem.frozen, TRAINABLE: sem.trainable, MIXED: sem.trainable, NONE: sem.neutral}
        self.frozen = sem.frozen
        self.trainable = sem.trainable
        self.modified = sem.modified
        self.neutral = sem.neutral
        self.match = sem.highlight
        self.dark = dark
        self.frame_fill = QColor(self.text)
        self.frame_fill.setAlphaF(0.035 if not dark else 0.05)

    def tint(self, c: QColor, amount: float) -> QColor:
        """``c`` mixed into the base colour: light fills that keep text readable in both themes."""
        key = (c.rgba(), amount)
        cached = self._tints.get(key)
        if cached is None:
            b = self.base
            cached = QColor(round(b.red() + (c.red() - b.red()) * amount),
                            round(b.green() + (c.green() - b.green()) * amount),
                            round(b.blue() + (c.blue() - b.blue()) * amount))
            self._tints[key] = cached
        return cached


def _app_palette() -> QPalette | None:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    return app.palette() if app is not None else None  # type: ignore[union-attr]


_FONT_CACHE: dict[str, QFont] = {}


def _font(kind: str) -> QFont:
    f = _FONT_CACHE.get(kind)
    if f is None:
        f = QFont()
        if kind == "title":
            f.setPointSizeF(9.5)
            f.setBold(True)
        elif kind == "small":
            f.setPointSizeF(8.0)
        else:
            f.setPointSizeF(9.0)
        _FONT_CACHE[kind] = f
    return f


def _static(text: str) -> QStaticText:
    st = QStaticText(text)
    st.setTextFormat(Qt.TextFormat.PlainText)
    st.setPerformanceHint(QStaticText.PerformanceHint.AggressiveCaching)
    return st


def _elide_left(text: str, font: QFont, width: float) -> str:
    fm = QFontMetricsF(font)
    if fm.horizontalAdvance(text) <= width:
        return text
    return fm.elidedText(text, Qt.TextElideMode.ElideLeft, width)


def _elide_right(text: str, font: QFont, width: float) -> str:
    return QFontMetricsF(font).elidedText(text, Qt.TextElideMode.ElideRight, width)


# -- items -------------------------------------------------------------------------------------
class _BoxItem(QGraphicsItem):
    """A node or a collapsed block: rounded box, status stripe, text, freeze badge, +/- toggle."""

    def __init__(self, view: GraphView, unit: str, w: float, h: float):
        super().__init__()
        self.view = view
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

    def _prepare(self) -> tuple[QStaticText, QStaticText, QStaticText, float]:
        """Text, elided to fit, laid out once: (title, subtitle, shape, x of the title)."""
        v = self.view
        h = v.hierarchy
        small = QFontMetricsF(_font("small"))
        if self.is_block:
            blk = h.blocks[self.ident]
            members = h.members[self.ident]
            shape = format_shape(h.nodes[members[-1]].output_shape)
            n_layers = sum(1 for n in members if h.nodes[n].kind == "module")
            name = blk.label if self.ident.startswith("[") else self.ident
            label = blk.kind if self.ident.startswith("[") else blk.label
            title_x = 13 + BADGE + 6
            sub = f"{label} · {n_layers} layer{'s' if n_layers != 1 else ''}"
        else:
            node = h.nodes[self.ident]
            shape = format_shape(node.output_shape)
            if node.kind in ("input", "output"):
                text = f"{node.kind}  {shape}".strip()
                return (_static(_elide_right(text, _font("title"), self.w - 20)), _static(""), _static(""), 14.0)
            name, sub, title_x = node.type, self.ident, 14.0
        shape_w = small.horizontalAdvance(shape) + 10 if shape else 0
        title = _elide_right(name, _font("title"), self.w - title_x - BADGE - 56)
        if self.is_block:
            sub = _elide_right(sub, _font("small"), self.w - title_x - shape_w - 8)
        else:
            sub = _elide_left(sub, _font("small"), self.w - title_x - shape_w - 8)
        return (_static(title), _static(sub), _static(shape), title_x)

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        c = self.view.colors
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
        p.setFont(_font("title"))
        if not sub.text():  # input / output: one centred line
            p.drawStaticText(QPointF(tx, (self.h - title.size().height()) / 2), title)
            return
        p.drawStaticText(QPointF(tx, 6), title)
        p.setFont(_font("small"))
        p.setPen(c.muted)
        p.drawStaticText(QPointF(tx, self.h - 20), sub)
        fm = QFontMetricsF(_font("small"))
        right = self.w - 8
        if shape.text():
            p.drawStaticText(QPointF(right - fm.horizontalAdvance(shape.text()), self.h - 20), shape)
        if st.total:
            params = format_count(st.total)
            p.setPen(c.text)
            p.drawText(QPointF(self.w - BADGE - 12 - fm.horizontalAdvance(params), 18), params)
            _paint_badge(p, self.badge_rect(), st, c)
        if self.is_block:
            _paint_toggle(p, self.toggle_rect(), expanded=False, c=c)

    # -- interaction ---------------------------------------------------------------------------
    def mousePressEvent(self, event: QGraphicsSceneMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            pos = event.pos()
            if self.status.total and self.badge_rect().adjusted(-3, -3, 3, 3).contains(pos):
                self.view.freezeToggleRequested.emit(self.unit)
                event.accept()
                return
            if self.is_block and self.toggle_rect().adjusted(-3, -3, 3, 3).contains(pos):
                self.view.expand(self.ident)
                event.accept()
                return
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QGraphicsSceneMouseEvent) -> None:  # noqa: N802
        if self.is_block:
            self.view.expand(self.ident)
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def contextMenuEvent(self, event: QGraphicsSceneContextMenuEvent) -> None:  # noqa: N802
        self.view.scene().clearSelection()
        self.setSelected(True)
        self.view.contextMenuRequested.emit(self.unit, event.screenPos())
        event.accept()


class _FrameItem(QGraphicsItem):
    """An expanded block: a titled frame around its contents, with a collapse toggle."""

    def __init__(self, view: GraphView, block: str):
        super().__init__()
        self.view = view
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
        c = self.view.colors
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
            blk = self.view.hierarchy.blocks[self.block]
            name = blk.label if self.block.startswith("[") else self.block
            room = max(20.0, self.w - 26 - 70)
            self._title = _static(_elide_right(name, _font("title"), room))
            used = QFontMetricsF(_font("title")).horizontalAdvance(self._title.text()) + 8
            label = "" if self.block.startswith("[") else blk.label
            fits = label and QFontMetricsF(_font("small")).horizontalAdvance(label) < room - used
            self._label = _static(label if fits else "")
            self._label_x = 26 + used
        p.setPen(c.text)
        p.setFont(_font("title"))
        p.drawStaticText(QPointF(26, 4), self._title)
        if self._label.text():
            p.setPen(c.muted)
            p.setFont(_font("small"))
            p.drawStaticText(QPointF(self._label_x, 6), self._label)
        if st.total:
            p.setFont(_font("small"))
            p.setPen(c.muted)
            params = format_count(st.total)
            fm = QFontMetricsF(_font("small"))
            p.drawText(QPointF(self.w - BADGE - 12 - fm.horizontalAdvance(params), 16), params)
            _paint_badge(p, self.badge_rect(), st, c)
        _paint_toggle(p, self.toggle_rect(), expanded=True, c=c)

    def mousePressEvent(self, event: QGraphicsSceneMouseEvent) -> None:  # noqa: N802
        pos = event.pos()
        if event.button() == Qt.MouseButton.LeftButton:
            if self.toggle_rect().adjusted(-3, -3, 3, 3).contains(pos):
                self.view.collapse(self.block)
                event.accept()
                return
            if self.status.total and self.badge_rect().adjusted(-3, -3, 3, 3).contains(pos):
                self.view.freezeToggleRequested.emit(self.unit)
                event.accept()
                return
            self.view._select_unit(self.unit)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QGraphicsSceneMouseEvent) -> None:  # noqa: N802
        self.view.collapse(self.block)
        event.accept()

    def contextMenuEvent(self, event: QGraphicsSceneContextMenuEvent) -> None:  # noqa: N802
        self.view._select_unit(self.unit)
        self.view.contextMenuRequested.emit(self.unit, event.screenPos())
        event.accept()


def _paint_badge(p: QPainter, r: QRectF, st: UnitStatus, c: _Colors) -> None:
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


def _paint_toggle(p: QPainter, r: QRectF, expanded: bool, c: _Colors) -> None:
    p.setPen(QPen(c.muted, 1.2))
    p.setBrush(c.base)
    p.drawRoundedRect(r, 3, 3)
    p.setPen(QPen(c.text, 1.6))
    cx, cy = r.center().x(), r.center().y()
    p.drawLine(QPointF(cx - 4, cy), QPointF(cx + 4, cy))
    if not expanded:
        p.drawLine(QPointF(cx, cy - 4), QPointF(cx, cy + 4))


class _EdgeLayer(QGraphicsItem):
    """Every edge of the layout in one item; paints only those crossing the exposed rectangle."""

    def __init__(self, view: GraphView):
        super().__init__()
        self.view = view
        self.setZValue(1)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        # (bounds, points, back); the QPainterPath of an edge is built the first time it is drawn.
        self._edges: list[tuple[QRectF, list[tuple[float, float]], bool]] = []
        self._paths: dict[int, tuple[QPainterPath, QPolygonF]] = {}
        self._rect = QRectF()

    def set_layout(self, layout: Layout) -> None:
        self.prepareGeometryChange()
        edges = []
        x0 = y0 = float("inf")
        x1 = y1 = float("-inf")
        for route in layout.edges:
            # S-curves stay within their points' box (computed with the layout), plus the arrow
            # head and the pen.
            bx0, by0, bx1, by1 = route.bounds
            edges.append((QRectF(bx0 - 8, by0 - 8, bx1 - bx0 + 16, by1 - by0 + 16), route.points, route.back))
            x0, y0, x1, y1 = min(x0, bx0 - 8), min(y0, by0 - 8), max(x1, bx1 + 8), max(y1, by1 + 8)
        self._edges = edges
        self._paths = {}
        self._rect = QRectF(x0, y0, x1 - x0, y1 - y0) if edges else QRectF()

    def boundingRect(self) -> QRectF:  # noqa: N802
        return self._rect

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        c = self.view.colors
        exposed = option.exposedRect
        lod = option.levelOfDetailFromTransform(p.worldTransform())
        pen = QPen(c.edge, 1.4)
        pen.setCosmetic(lod < LOD_TEXT)
        back_pen = QPen(c.edge, 1.2, Qt.PenStyle.DashLine)
        p.setBrush(Qt.BrushStyle.NoBrush)
        arrows: list[QPolygonF] = []
        paths = self._paths
        for i, (bounds, points, back) in enumerate(self._edges):
            if not bounds.intersects(exposed):
                continue
            drawn = paths.get(i)
            if drawn is None:
                drawn = paths[i] = (_edge_path(points), _arrow_head(points[-1]))
            p.setPen(back_pen if back else pen)
            p.drawPath(drawn[0])
            arrows.append(drawn[1])
        if lod >= LOD_TEXT and arrows:
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(c.edge)
            for a in arrows:
                p.drawPolygon(a)


def _edge_path(points: list[tuple[float, float]]) -> QPainterPath:
    """Smooth vertical S-curves between consecutive points (straight where they line up)."""
    path = QPainterPath(QPointF(*points[0]))
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if abs(x1 - x0) < 0.5:
            path.lineTo(x1, y1)
        else:
            dy = max(12.0, (y1 - y0) * 0.5)
            path.cubicTo(QPointF(x0, y0 + dy), QPointF(x1, y1 - dy), QPointF(x1, y1))
    return path


def _arrow_head(end: tuple[float, float]) -> QPolygonF:
    x, y = end
    return QPolygonF([QPointF(x, y), QPointF(x - 4, y - 7), QPointF(x + 4, y - 7)])


class _OverviewLayer(QGraphicsItem):
    """The whole graph as a handful of draw calls, for zoom levels where details are invisible.

    Far out, hundreds of per-item paint calls (each a trip into Python) dominate the frame time;
    this item draws frames, boxes (batched by colour) and edges (one polyline path) instead, while
    the detailed items are hidden.
    """

    def __init__(self, view: GraphView):
        super().__init__()
        self.view = view
        self.setZValue(3)
        self._rect = QRectF()
        self._cache: tuple | None = None

    def set_layout(self, layout: Layout) -> None:
        self.prepareGeometryChange()
        self._rect = QRectF(0, 0, layout.width, layout.height)
        self._cache = None

    def invalidate(self) -> None:
        self._cache = None
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802
        return self._rect

    def _build(self) -> tuple:
        layout = self.view.current_layout()
        c = self.view.colors
        by_colour: dict[int, tuple[QColor, list[QRectF]]] = {}
        matched: list[QRectF] = []
        for unit, box in layout.boxes.items():
            st = self.view._status_for_unit(unit)
            colour = c.tint(c.modified if st.modified else c.state[st.freeze], 0.55)
            rect = QRectF(box.x, box.y, box.w, box.h)
            by_colour.setdefault(colour.rgba(), (colour, []))[1].append(rect)
            if unit in self.view._match_set:
                matched.append(rect.adjusted(-6, -6, 6, 6))
        frames = [QRectF(f.x, f.y, f.w, f.h) for f in layout.frames.values()]
        edges = QPainterPath()
        for route in layout.edges:
            edges.moveTo(*route.points[0])
            for pt in route.points[1:]:
                edges.lineTo(*pt)
        return list(by_colour.values()), frames, edges, matched

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        if self.view.current_layout() is None:
            return
        if self._cache is None:
            self._cache = self._build()
        groups, frames, edges, matched = self._cache
        c = self.view.colors
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        p.setBrush(c.frame_fill)
        p.setPen(QPen(c.mid, 0))
        p.drawRects(frames)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(c.edge, 0))
        p.drawPath(edges)
        p.setPen(Qt.PenStyle.NoPen)
        for colour, rects in groups:
            p.setBrush(colour)
            p.drawRects(rects)
        if matched:
            p.setBrush(c.match)
            p.drawRects(matched)


# -- minimap -----------------------------------------------------------------------------------
class Minimap(QFrame):
    """The whole graph in miniature with the visible area outlined; click or drag to navigate."""

    MAX_W, MAX_H = 150, 220

    def __init__(self, view: GraphView):
        super().__init__(view)
        self.setObjectName("graph_minimap")
        self.view = view
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Overview: click or drag to move around the graph")
        self._scale = 1.0
        self._offset = QPointF()
        self._pixmap: QPixmap | None = None

    def sizeHint(self) -> QSize:  # noqa: N802
        layout = self.view.current_layout()
        if layout is None or layout.width <= 0:
            return QSize(self.MAX_W, 80)
        s = min(self.MAX_W / layout.width, self.MAX_H / layout.height)
        return QSize(max(40, int(layout.width * s) + 4), max(40, int(layout.height * s) + 4))

    def relayout(self) -> None:
        self.resize(self.sizeHint())
        self.view._place_overlays()
        self.invalidate()

    def invalidate(self) -> None:
        """The layout or the colours changed: redraw the miniature on the next paint."""
        self._pixmap = None
        self.update()

    def _render(self) -> QPixmap:
        """The boxes in miniature, drawn once per layout/colour change (paints reuse it)."""
        layout = self.view.current_layout()
        c = self.view.colors
        pm = QPixmap(self.size())
        bg = QColor(c.base)
        bg.setAlphaF(0.92)
        pm.fill(bg)
        p = QPainter(pm)
        p.setPen(QPen(c.mid, 1))
        p.drawRect(self.rect().adjusted(0, 0, -1, -1))
        w, h = self.width() - 4, self.height() - 4
        s = min(w / layout.width, h / layout.height)
        ox = 2 + (w - layout.width * s) / 2
        oy = 2 + (h - layout.height * s) / 2
        self._scale, self._offset = s, QPointF(ox, oy)
        p.setPen(Qt.PenStyle.NoPen)
        status = self.view._status_for_unit
        groups: dict[int, tuple[QColor, list[QRectF]]] = {}
        for unit, box in layout.boxes.items():
            st = status(unit)
            colour = c.tint(c.modified if st.modified else c.state[st.freeze], 0.7)
            rect = QRectF(ox + box.x * s, oy + box.y * s, max(1.0, box.w * s), max(1.0, box.h * s))
            groups.setdefault(colour.rgba(), (colour, []))[1].append(rect)
        for colour, rects in groups.values():  # one call per colour
            p.setBrush(colour)
            p.drawRects(rects)
        p.end()
        return pm

    def paintEvent(self, event) -> None:  # noqa: N802
        layout = self.view.current_layout()
        if layout is None or not layout.boxes:
            p = QPainter(self)
            p.fillRect(self.rect(), self.view.colors.base)
            p.end()
            return
        if self._pixmap is None or self._pixmap.size() != self.size():
            self._pixmap = self._render()
        p = QPainter(self)
        p.drawPixmap(0, 0, self._pixmap)
        c = self.view.colors
        s, ox, oy = self._scale, self._offset.x(), self._offset.y()
        visible = self.view.mapToScene(self.view.viewport().rect()).boundingRect()
        hl = QColor(c.selected)
        p.setPen(QPen(hl, 1.5))
        hl.setAlphaF(0.15)
        p.setBrush(hl)
        p.drawRect(QRectF(ox + visible.x() * s, oy + visible.y() * s, visible.width() * s, visible.height() * s)
                   .intersected(QRectF(0, 0, self.width() - 1, self.height() - 1)))
        p.end()

    def _navigate(self, pos: QPoint) -> None:
        if self._scale <= 0:
            return
        x = (pos.x() - self._offset.x()) / self._scale
        y = (pos.y() - self._offset.y()) / self._scale
        self.view.centerOn(QPointF(x, y))

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self._navigate(event.position().toPoint())

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._navigate(event.position().toPoint())


# -- the view ----------------------------------------------------------------------------------
class GraphView(QGraphicsView):
    """Zoom (wheel, +/-), pan (drag), fit, expand/collapse, search, status colours, minimap."""

    selectionChangedTo = Signal(str)  # unit key ("n:<node>" / "b:<block>") or "" when cleared
    freezeToggleRequested = Signal(str)  # unit key: the page decides freeze or unfreeze
    contextMenuRequested = Signal(str, QPoint)  # unit key, global position
    layoutApplied = Signal()  # after every new layout is shown
    layoutPending = Signal(bool)  # a large layout is being computed off the GUI thread
    zoomChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("graph_view")
        self.setScene(QGraphicsScene(self))
        self.scene().setItemIndexMethod(QGraphicsScene.ItemIndexMethod.BspTreeIndex)
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setOptimizationFlags(QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAccessibleName("Model graph")
        self.colors = _Colors()
        self.hierarchy: Hierarchy | None = None
        self._layout: Layout | None = None
        self._cache: OrderedDict[frozenset[str], Layout] = OrderedDict()
        self._boxes: dict[str, _BoxItem] = {}
        self._frames: dict[str, _FrameItem] = {}
        self._edges = _EdgeLayer(self)
        self.scene().addItem(self._edges)
        self._overview = _OverviewLayer(self)
        self._overview.setVisible(False)
        self.scene().addItem(self._overview)
        self._overview_mode = False
        self._pending_boxes: list[str] = []
        self._pending_frames: list[str] = []
        self._item_timer = QTimer(self)
        self._item_timer.setInterval(0)
        self._item_timer.timeout.connect(self._create_some)
        self._status_nodes: dict[str, UnitStatus] = {}
        self._status_blocks: dict[str, UnitStatus] = {}
        self._matches: list[str] = []  # node ids matching the search, in execution order
        self._match_index = -1
        self._match_set: set[str] = set()  # visible units holding a match
        self._pending: object | None = None
        self._pending_key: frozenset[str] | None = None
        self._pending_centre: str | None = None
        self.minimap = Minimap(self)
        self.placeholder = QLabel(self)
        self.placeholder.setObjectName("graph_placeholder")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setText("No model loaded yet.")
        self.minimap.setVisible(False)
        self.horizontalScrollBar().valueChanged.connect(self.minimap.update)
        self.verticalScrollBar().valueChanged.connect(self.minimap.update)
        self.scene().selectionChanged.connect(self._on_scene_selection)
        theme.notifier().themeChanged.connect(self._on_theme)
        self._fit_pending = False

    # -- graph and layout ----------------------------------------------------------------------
    def set_graph(self, hierarchy: Hierarchy, layout: Layout | None = None,
                  expanded: Iterable[str] | None = None) -> None:
        """Show a new graph; ``layout`` (computed off-thread) must match ``expanded``."""
        self._cancel_pending()
        self.scene().clearSelection()
        for item in [*self._boxes.values(), *self._frames.values()]:
            self.scene().removeItem(item)
        self._boxes.clear()
        self._frames.clear()
        self._pending_boxes, self._pending_frames = [], []
        self._item_timer.stop()
        self._cache.clear()
        self._matches, self._match_index = [], -1
        self.hierarchy = hierarchy
        if layout is None:
            exp = frozenset(expanded) if expanded is not None else hierarchy.default_expanded()
            layout = compute_layout(hierarchy, exp)
        self._cache[layout.expanded] = layout
        self._apply_layout(layout)
        self.placeholder.setVisible(False)
        self.minimap.setVisible(True)
        self.fit()

    def clear_graph(self, message: str = "No model loaded yet.") -> None:
        self._cancel_pending()
        for item in [*self._boxes.values(), *self._frames.values()]:
            self.scene().removeItem(item)
        self._boxes.clear()
        self._frames.clear()
        self._pending_boxes, self._pending_frames = [], []
        self._item_timer.stop()
        self._cache.clear()
        self.hierarchy = None
        self._layout = None
        self._edges.set_layout(Layout(frozenset(), {}, {}, [], 0, 0))
        self.placeholder.setText(message)
        self.placeholder.setVisible(True)
        self.minimap.setVisible(False)

    def current_layout(self) -> Layout | None:
        return self._layout

    def expanded(self) -> frozenset[str]:
        return self._layout.expanded if self._layout is not None else frozenset()

    def set_expanded(self, expanded: Iterable[str], centre_on: str | None = None) -> None:
        """Show the graph with exactly these blocks expanded (layout cached; big ones off-thread)."""
        if self.hierarchy is None:
            return
        key = frozenset(b for b in expanded if b in self.hierarchy.blocks)
        if self._layout is not None and key == self._layout.expanded and self._pending is None:
            if centre_on:
                self.centre_on(centre_on)
            return
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self._cancel_pending()
            self._apply_layout(cached, centre_on)
            return
        if self.hierarchy.count_units(key) <= SYNC_LAYOUT_UNITS:
            self._cancel_pending()
            layout = compute_layout(self.hierarchy, key)
            self._remember(layout)
            self._apply_layout(layout, centre_on)
            return
        self._start_async_layout(key, centre_on)

    def _start_async_layout(self, key: frozenset[str], centre_on: str | None) -> None:
        from transfer_studio.ui.worker import run_task

        self._cancel_pending()
        hierarchy = self.hierarchy
        self._pending_key, self._pending_centre = key, centre_on

        def done(layout: Layout) -> None:
            if self.hierarchy is hierarchy and self._pending_key == key:
                self._pending, self._pending_key = None, None
                self._remember(layout)
                self._apply_layout(layout, self._pending_centre)
                self.layoutPending.emit(False)

        def failed(message: str, _tb: str) -> None:
            self._pending, self._pending_key = None, None
            self.layoutPending.emit(False)

        self._pending = run_task(compute_layout, hierarchy, key, name="graph-layout", pass_control=False,
                                 needs_torch=False, on_result=done, on_error=failed)
        self.layoutPending.emit(True)

    def _cancel_pending(self) -> None:
        if self._pending is not None:
            self._pending.cancel()  # type: ignore[attr-defined]
            self._pending = None
            self._pending_key = None
            self.layoutPending.emit(False)

    def is_layout_pending(self) -> bool:
        return self._pending is not None

    def _remember(self, layout: Layout) -> None:
        self._cache[layout.expanded] = layout
        while len(self._cache) > 8:
            self._cache.popitem(last=False)

    def _apply_layout(self, layout: Layout, centre_on: str | None = None) -> None:
        """Show ``layout``: move the items it shares with the last one, hide the rest, and create
        new items for what is in view now and for everything else in short timer slices (a fully
        expanded large network has over a thousand boxes: creating them all at once would stall
        the GUI thread for longer than a frame)."""
        anchor = self._anchor()
        self._layout = layout
        self._match_set = self._match_units()
        detail = not self._overview_mode
        for unit, item in self._boxes.items():
            box = layout.boxes.get(unit)
            if box is None:
                if item.isVisible():
                    item.setSelected(False)
                    item.setVisible(False)
                continue
            item.match = unit in self._match_set
            item.setPos(box.x, box.y)
            item.setVisible(detail)
        for block, fitem in self._frames.items():
            frame = layout.frames.get(block)
            if frame is None:
                fitem.setVisible(False)
                continue
            self._place_frame(fitem, frame)
            fitem.setVisible(detail)
        self._pending_boxes = [u for u in layout.boxes if u not in self._boxes]
        self._pending_frames = [b for b in layout.frames if b not in self._frames]
        self._edges.set_layout(layout)
        self._edges.setVisible(detail)
        self._overview.set_layout(layout)
        self._overview.setVisible(not detail)
        self.scene().setSceneRect(QRectF(0, 0, layout.width, layout.height))
        self.minimap.relayout()
        if centre_on:
            self.centre_on(centre_on)
        elif anchor is not None:
            self._restore_anchor(anchor)
        self._create_visible()
        if self._pending_boxes or self._pending_frames:
            self._item_timer.start()
        self.viewport().update()
        self.layoutApplied.emit()

    # -- lazy item creation --------------------------------------------------------------------
    def _make_box(self, unit: str) -> _BoxItem:
        box = self._layout.boxes[unit]  # type: ignore[union-attr]
        item = _BoxItem(self, unit, box.w, box.h)
        item.status = self._status_for_unit(unit)
        item.match = unit in self._match_set
        item.setPos(box.x, box.y)
        item.setVisible(not self._overview_mode)
        self.scene().addItem(item)
        self._boxes[unit] = item
        return item

    def _make_frame(self, block: str) -> _FrameItem:
        fitem = _FrameItem(self, block)
        fitem.status = self._status_for_unit(block_unit(block))
        self._place_frame(fitem, self._layout.frames[block])  # type: ignore[union-attr]
        fitem.setVisible(not self._overview_mode)
        self.scene().addItem(fitem)
        self._frames[block] = fitem
        return fitem

    def _place_frame(self, fitem: _FrameItem, frame) -> None:
        fitem.match = block_unit(fitem.block) in self._match_set
        fitem.set_size(frame.w, frame.h)
        fitem.setPos(frame.x, frame.y)
        fitem.setZValue(-10 + frame.depth)

    def _create_visible(self) -> None:
        """Create the pending items that are (nearly) in view right now."""
        layout = self._layout
        if layout is None or not (self._pending_boxes or self._pending_frames):
            return
        vp = self.viewport().rect()
        seen = self.mapToScene(vp).boundingRect()
        area = seen.adjusted(-seen.width() / 2, -seen.height() / 2, seen.width() / 2, seen.height() / 2)
        keep: list[str] = []
        for unit in self._pending_boxes:
            if unit in self._boxes:
                continue
            b = layout.boxes.get(unit)
            if b is not None and area.intersects(QRectF(b.x, b.y, b.w, b.h)):
                self._make_box(unit)
            elif b is not None:
                keep.append(unit)
        self._pending_boxes = keep
        keep_f: list[str] = []
        for block in self._pending_frames:
            if block in self._frames:
                continue
            f = layout.frames.get(block)
            if f is not None and area.intersects(QRectF(f.x, f.y, f.w, f.h)):
                self._make_frame(block)
            elif f is not None:
                keep_f.append(block)
        self._pending_frames = keep_f

    def _create_some(self) -> None:
        """Timer slice: create pending items for about 6 ms, then let the event loop breathe."""
        deadline = time.perf_counter() + 0.006
        while self._pending_frames and time.perf_counter() < deadline:
            block = self._pending_frames.pop()
            if block not in self._frames and self._layout is not None and block in self._layout.frames:
                self._make_frame(block)
        while self._pending_boxes and time.perf_counter() < deadline:
            unit = self._pending_boxes.pop()
            if unit not in self._boxes and self._layout is not None and unit in self._layout.boxes:
                self._make_box(unit)
        if not (self._pending_boxes or self._pending_frames):
            self._item_timer.stop()

    def _ensure_box(self, unit: str) -> _BoxItem | None:
        item = self._boxes.get(unit)
        if item is None and self._layout is not None and unit in self._layout.boxes:
            item = self._make_box(unit)
        return item

    def scrollContentsBy(self, dx: int, dy: int) -> None:  # noqa: N802
        super().scrollContentsBy(dx, dy)
        self._create_visible()

    def _anchor(self) -> tuple[str, QPointF] | None:
        """The unit under the view's centre, so expanding keeps the user's place."""
        if self._layout is None:
            return None
        centre = self.mapToScene(self.viewport().rect().center())
        best, best_d = None, float("inf")
        for unit, box in self._layout.boxes.items():
            d = (box.cx - centre.x()) ** 2 + (box.y + box.h / 2 - centre.y()) ** 2
            if d < best_d:
                best, best_d = unit, d
        if best is None:
            return None
        box = self._layout.boxes[best]
        return best, QPointF(centre.x() - box.cx, centre.y() - (box.y + box.h / 2))

    def _restore_anchor(self, anchor: tuple[str, QPointF]) -> None:
        unit, offset = anchor
        layout = self._layout
        if layout is None or self.hierarchy is None:
            return
        box = layout.boxes.get(unit)
        if box is None:  # the anchor box disappeared (expanded/collapsed): use what replaced it
            target = self._unit_rect(unit)
            if target is None:
                return
            self.centerOn(target.center() + offset)
            return
        self.centerOn(QPointF(box.cx, box.y + box.h / 2) + offset)

    # -- expand / collapse ---------------------------------------------------------------------
    def expand(self, block: str) -> None:
        if self.hierarchy is None or block not in self.hierarchy.blocks:
            return
        chain = set(self.hierarchy.block_chain(block))
        self.set_expanded(self.expanded() | chain, centre_on=None)

    def collapse(self, block: str) -> None:
        if self.hierarchy is None:
            return
        gone = {block, *self.hierarchy.descendants(block)}
        self.set_expanded(self.expanded() - gone, centre_on=block_unit(block))

    def toggle(self, block: str) -> None:
        if block in self.expanded():
            self.collapse(block)
        else:
            self.expand(block)

    def expand_all(self) -> None:
        if self.hierarchy is not None:
            self.set_expanded(self.hierarchy.blocks)

    def collapse_all(self) -> None:
        self.set_expanded(())

    def reset_expansion(self) -> None:
        if self.hierarchy is not None:
            self.set_expanded(self.hierarchy.default_expanded())

    # -- status colours ------------------------------------------------------------------------
    def set_status(self, nodes: dict[str, UnitStatus], blocks: dict[str, UnitStatus]) -> None:
        """Freeze state and modified flag of every node id and block id; repaints what changed."""
        self._status_nodes, self._status_blocks = nodes, blocks
        for unit, item in self._boxes.items():
            st = self._status_for_unit(unit)
            if st != item.status:
                item.status = st
                item.update()
        for block, fitem in self._frames.items():
            st = self._status_for_unit(block_unit(block))
            if st != fitem.status:
                fitem.status = st
                fitem.update()
        self._overview.invalidate()
        self.minimap.invalidate()

    def _status_for_unit(self, unit: str) -> UnitStatus:
        if unit.startswith("b:"):
            return self._status_blocks.get(unit[2:], UnitStatus())
        return self._status_nodes.get(unit[2:], UnitStatus())

    def status_of(self, unit: str) -> UnitStatus:
        return self._status_for_unit(unit)

    # -- search --------------------------------------------------------------------------------
    def search(self, text: str) -> int:
        """Highlight nodes whose name or type contains ``text``; centre on the first one.

        Matches hidden inside collapsed blocks light up the block; stepping to one (``next_match``)
        expands just the blocks around it. Returns the number of matching nodes.
        """
        query = text.strip().lower()
        self._matches, self._match_index = [], -1
        if query and self.hierarchy is not None:
            h = self.hierarchy
            self._matches = [nid for nid, n in h.nodes.items()
                             if query in nid.lower() or query in str(n.type).lower()]
            self._matches.sort(key=h.order.__getitem__)
        self._refresh_matches()
        if self._matches:
            self.next_match()
        return len(self._matches)

    def matches(self) -> list[str]:
        return list(self._matches)

    def match_position(self) -> tuple[int, int]:
        return self._match_index + 1, len(self._matches)

    def next_match(self, step: int = 1) -> str | None:
        if not self._matches or self.hierarchy is None:
            return None
        self._match_index = (self._match_index + step) % len(self._matches)
        nid = self._matches[self._match_index]
        expanded = self.hierarchy.expand_to_show(nid, set(self.expanded()))
        unit = node_unit(nid)
        if expanded != set(self.expanded()):
            self.set_expanded(expanded, centre_on=unit)
        else:
            self.centre_on(unit)
        self._select_unit(unit)
        return nid

    def _match_units(self) -> set[str]:
        """Visible boxes holding a match (a collapsed block lights up for a match inside it)."""
        if not self._matches or self._layout is None:
            return set()
        unit_of = self._layout.unit_of_node
        return {unit_of[nid] for nid in self._matches if nid in unit_of}

    def _is_match(self, unit: str) -> bool:
        return unit in self._match_set

    def _refresh_matches(self) -> None:
        self._match_set = self._match_units()
        self._overview.invalidate()
        for unit, item in self._boxes.items():
            m = unit in self._match_set
            if m != item.match:
                item.match = m
                item.update()
        self.minimap.update()

    # -- navigation ----------------------------------------------------------------------------
    def _unit_rect(self, unit: str) -> QRectF | None:
        """Scene rectangle of a unit, or of the visible box/frame that contains it."""
        if self._layout is None or self.hierarchy is None:
            return None
        box = self._layout.boxes.get(unit)
        if box is not None:
            return QRectF(box.x, box.y, box.w, box.h)
        if unit.startswith("b:"):
            frame = self._layout.frames.get(unit[2:])
            if frame is not None:
                return QRectF(frame.x, frame.y, frame.w, min(frame.h, 300))
            members = self.hierarchy.members.get(unit[2:])
            if members:
                unit = node_unit(members[0])
        nid = unit[2:]
        shown = self._layout.unit_of_node.get(nid)
        if shown is not None and shown in self._layout.boxes:
            b = self._layout.boxes[shown]
            return QRectF(b.x, b.y, b.w, b.h)
        return None

    def centre_on(self, unit: str) -> None:
        rect = self._unit_rect(unit)
        if rect is None:
            return
        if self.transform().m11() < 0.6:  # too far out to read the target: zoom to a readable level
            self._set_zoom(0.9)
        self.centerOn(rect.center())

    def select(self, unit: str) -> None:
        self._select_unit(unit)

    def _select_unit(self, unit: str) -> None:
        self.scene().blockSignals(True)
        self.scene().clearSelection()
        item = self._ensure_box(unit)
        if item is not None:
            item.setSelected(True)
        self.scene().blockSignals(False)
        self._selected = unit
        self.viewport().update()
        self.selectionChangedTo.emit(unit)

    def selected_unit(self) -> str:
        return getattr(self, "_selected", "")

    def _on_scene_selection(self) -> None:
        items = self.scene().selectedItems()
        unit = items[0].unit if items and hasattr(items[0], "unit") else ""
        self._selected = unit
        self.selectionChangedTo.emit(unit)

    def item_for(self, unit: str) -> QGraphicsItem | None:
        """The item drawing ``unit`` in the current layout (hidden while in overview mode)."""
        if self._layout is None:
            return None
        if unit.startswith("b:") and unit[2:] in self._layout.frames:
            return self._frames.get(unit[2:]) or self._make_frame(unit[2:])
        return self._ensure_box(unit)

    def visible_units(self) -> list[str]:
        return list(self._layout.boxes) if self._layout is not None else []

    def visible_frames(self) -> list[str]:
        return list(self._layout.frames) if self._layout is not None else []

    # -- zoom ----------------------------------------------------------------------------------
    def zoom(self) -> float:
        return self.transform().m11()

    def _set_zoom(self, z: float) -> None:
        z = max(MIN_ZOOM, min(MAX_ZOOM, z))
        self.setTransform(QTransform.fromScale(z, z))
        self._update_overview_mode()
        self._create_visible()
        self.minimap.update()
        self.zoomChanged.emit(z)

    def _update_overview_mode(self) -> None:
        overview = self.zoom() < LOD_OVERVIEW and self._layout is not None
        if overview != self._overview_mode:
            self._overview_mode = overview
            self._set_detail_visible(not overview)

    def _set_detail_visible(self, visible: bool) -> None:
        """Show the per-box items (close up) or the single overview item (far out)."""
        layout = self._layout
        if layout is None:
            return
        for unit in layout.boxes:
            item = self._boxes.get(unit)
            if item is not None:
                item.setVisible(visible)
        for block in layout.frames:
            item = self._frames.get(block)
            if item is not None:
                item.setVisible(visible)
        self._edges.setVisible(visible)
        self._overview.setVisible(not visible)

    def in_overview_mode(self) -> bool:
        return self._overview_mode

    def zoom_by(self, factor: float) -> None:
        self._set_zoom(self.zoom() * factor)

    def zoom_in(self) -> None:
        anchor = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.zoom_by(1.25)
        self.setTransformationAnchor(anchor)

    def zoom_out(self) -> None:
        anchor = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.zoom_by(0.8)
        self.setTransformationAnchor(anchor)

    def reset_zoom(self) -> None:
        self._set_zoom(1.0)

    def fit(self) -> None:
        """The starting view of a new graph: all of it when readable, else its width from the top
        (tall networks). "Fit to view" is ``fit_all``."""
        if self._layout is None:
            return
        vw, vh = max(1, self.viewport().width()), max(1, self.viewport().height())
        lw, lh = self._layout.width, self._layout.height
        z_all = min(vw / lw, vh / lh)
        if z_all >= 0.5:
            self._set_zoom(min(1.0, z_all))
            self.centerOn(QPointF(lw / 2, lh / 2))
        else:
            # The whole thing would be unreadably small: fit the width, show the top.
            z = max(min(1.0, vw / lw), min(0.5, z_all * 4), MIN_ZOOM)
            self._set_zoom(min(z, 1.0))
            self.centerOn(QPointF(lw / 2, vh / (2 * self.zoom())))

    def fit_all(self) -> None:
        """Fit to view: the whole graph in the window, centred (never zoomed in past 100 %)."""
        if self._layout is None:
            return
        vw, vh = max(1, self.viewport().width()), max(1, self.viewport().height())
        lw, lh = self._layout.width, self._layout.height
        self._set_zoom(min(1.0, vw / lw, vh / lh))
        self.centerOn(QPointF(lw / 2, lh / 2))

    def wheelEvent(self, event) -> None:  # noqa: N802
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            super().wheelEvent(event)  # horizontal/vertical scrolling
            return
        delta = event.angleDelta().y()
        if delta:
            self.zoom_by(1.0015 ** delta)
        event.accept()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        key = event.key()
        if key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_in()
        elif key == Qt.Key.Key_Minus:
            self.zoom_out()
        elif key == Qt.Key.Key_0 or event.matches(QKeySequence.StandardKey.Refresh):
            self.fit_all()
        else:
            super().keyPressEvent(event)

    def contextMenuEvent(self, event) -> None:  # noqa: N802
        item = self.itemAt(event.pos())
        if item is None:
            self.contextMenuRequested.emit("", event.globalPos())
            event.accept()
            return
        super().contextMenuEvent(event)

    # -- overlays / theme ----------------------------------------------------------------------
    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._place_overlays()

    def _place_overlays(self) -> None:
        vp = self.viewport().geometry()
        mm = self.minimap
        mm.move(vp.right() - mm.width() - 8, vp.bottom() - mm.height() - 8)
        mm.raise_()
        self.placeholder.setGeometry(vp.adjusted(20, 20, -20, -20))

    def _on_theme(self, _theme: str = "") -> None:
        self.colors.refresh()
        for item in self._boxes.values():
            item._texts = None
        self.viewport().update()
        self.minimap.invalidate()

    def _tooltip(self, unit: str) -> str:
        h = self.hierarchy
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

    def viewportEvent(self, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.ToolTip:  # built on demand, not stored on every item
            item = self.itemAt(event.pos())
            unit = getattr(item, "unit", "")
            if unit:
                QToolTip.showText(event.globalPos(), self._tooltip(unit), self.viewport())
            else:
                QToolTip.hideText()
            return True
        return super().viewportEvent(event)

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802
        painter.fillRect(rect, self.palette().color(QPalette.ColorRole.Base))

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        QTimer.singleShot(0, self._place_overlays)
