"""Whole-layout items: every edge in one item, and the far-out overview of the whole graph in one item.

Painting an edge per item (or a box per item far out) costs a trip into Python each; these layers
draw many shapes per paint call instead, and only what crosses the exposed area.
"""

from __future__ import annotations

from typing import Protocol

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen, QPolygonF, QRegion
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from transfer_studio.core.freeze_status import UnitStatus
from transfer_studio.core.graph_layout import FRAME_TITLE, Layout
from transfer_studio.ui.graph_view.style import LOD_TEXT, Colors


class LayerHost(Protocol):
    """What the overview layer and the minimap read: the layout shown, and each unit's colour inputs."""

    @property
    def colors(self) -> Colors:
        """The palette's colours, refreshed in place on theme change."""

    def current_layout(self) -> Layout | None: ...

    def status_of(self, unit: str) -> UnitStatus: ...

    def is_match(self, unit: str) -> bool:
        """Whether the visible unit holds a search match."""


class EdgeLayer(QGraphicsItem):
    """Every edge of the layout in one item; paints only those crossing the exposed rectangle."""

    def __init__(self, colors: Colors):
        super().__init__()
        self.colors = colors
        self.setZValue(1)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        # (bounds, points, back); the QPainterPath of an edge is built the first time it is drawn.
        self._edges: list[tuple[QRectF, list[tuple[float, float]], bool]] = []
        self._paths: dict[int, tuple[QPainterPath, QPolygonF]] = {}
        self._rect = QRectF()
        self._titles: list[QRectF] = []  # expanded blocks' title bands: edges pass under them

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
        self._titles = [QRectF(f.x, f.y, f.w, FRAME_TITLE) for f in layout.frames.values()]
        self._paths = {}
        self._rect = QRectF(x0, y0, x1 - x0, y1 - y0) if edges else QRectF()

    def boundingRect(self) -> QRectF:  # noqa: N802
        return self._rect

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        c = self.colors
        exposed = option.exposedRect
        lod = option.levelOfDetailFromTransform(p.worldTransform())
        pen = QPen(c.edge, 1.4)
        pen.setCosmetic(lod < LOD_TEXT)
        back_pen = QPen(c.edge, 1.2, Qt.PenStyle.DashLine)
        p.setBrush(Qt.BrushStyle.NoBrush)
        # Where block titles are drawn, an edge crossing one would strike through its text: those few
        # edges are drawn last, clipped around the titles (clipping every edge cost a third of a frame).
        titles = [t for t in self._titles if t.intersects(exposed)] if lod >= LOD_TEXT else []
        arrows: list[QPolygonF] = []
        crossing: list[tuple[QPainterPath, bool]] = []
        paths = self._paths
        for i, (bounds, points, back) in enumerate(self._edges):
            if not bounds.intersects(exposed):
                continue
            drawn = paths.get(i)
            if drawn is None:
                drawn = paths[i] = (edge_path(points), arrow_head(points[-1]))
            arrows.append(drawn[1])
            if titles and any(bounds.intersects(t) for t in titles):
                crossing.append((drawn[0], back))
                continue
            p.setPen(back_pen if back else pen)
            p.drawPath(drawn[0])
        if crossing:
            region = QRegion(exposed.toAlignedRect())
            for t in titles:
                region = region.subtracted(QRegion(t.toAlignedRect()))
            p.save()
            p.setClipRegion(region)
            for path, back in crossing:
                p.setPen(back_pen if back else pen)
                p.drawPath(path)
            p.restore()
        if lod >= LOD_TEXT and arrows:
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(c.edge)
            for a in arrows:
                p.drawPolygon(a)


def edge_path(points: list[tuple[float, float]]) -> QPainterPath:
    """Smooth vertical S-curves between consecutive points (straight where they line up)."""
    path = QPainterPath(QPointF(*points[0]))
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if abs(x1 - x0) < 0.5:
            path.lineTo(x1, y1)
        else:
            dy = max(12.0, (y1 - y0) * 0.5)
            path.cubicTo(QPointF(x0, y0 + dy), QPointF(x1, y1 - dy), QPointF(x1, y1))
    return path


def arrow_head(end: tuple[float, float]) -> QPolygonF:
    x, y = end
    return QPolygonF([QPointF(x, y), QPointF(x - 4, y - 7), QPointF(x + 4, y - 7)])


class OverviewLayer(QGraphicsItem):
    """The whole graph as a handful of draw calls, for zoom levels where details are invisible.

    Far out, hundreds of per-item paint calls (each a trip into Python) dominate the frame time;
    this item draws frames, boxes (batched by colour) and edges (one polyline path) instead, while
    the detailed items are hidden.
    """

    def __init__(self, host: LayerHost):
        super().__init__()
        self.host = host
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

    def _build(self, layout: Layout) -> tuple:
        host = self.host
        c = host.colors
        by_colour: dict[int, tuple[QColor, list[QRectF]]] = {}
        matched: list[QRectF] = []
        for unit, box in layout.boxes.items():
            st = host.status_of(unit)
            colour = c.tint(c.modified if st.modified else c.state[st.freeze], 0.55)
            rect = QRectF(box.x, box.y, box.w, box.h)
            by_colour.setdefault(colour.rgba(), (colour, []))[1].append(rect)
            if host.is_match(unit):
                matched.append(rect.adjusted(-6, -6, 6, 6))
        frames = [QRectF(f.x, f.y, f.w, f.h) for f in layout.frames.values()]
        edges = QPainterPath()
        for route in layout.edges:
            edges.moveTo(*route.points[0])
            for pt in route.points[1:]:
                edges.lineTo(*pt)
        return list(by_colour.values()), frames, edges, matched

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        layout = self.host.current_layout()
        if layout is None:
            return
        if self._cache is None:
            self._cache = self._build(layout)
        groups, frames, edges, matched = self._cache
        c = self.host.colors
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
