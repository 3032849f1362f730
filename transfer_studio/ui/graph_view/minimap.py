"""The minimap: the whole graph in miniature in a corner of the view, with the visible area outlined."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QFrame, QGraphicsView

from transfer_studio.ui.graph_view.layers import LayerHost


class Minimap(QFrame):
    """The whole graph in miniature with the visible area outlined; click or drag to navigate.

    A child of the view it navigates (``view``: only Qt's QGraphicsView API is used); what it draws
    comes from ``host``.
    """

    MAX_W, MAX_H = 150, 220

    def __init__(self, view: QGraphicsView, host: LayerHost):
        super().__init__(view)
        self.setObjectName("graph_minimap")
        self.view = view
        self.host = host
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Overview: click or drag to move around the graph")
        self._scale = 1.0
        self._offset = QPointF()
        self._pixmap: QPixmap | None = None

    def sizeHint(self) -> QSize:  # noqa: N802
        layout = self.host.current_layout()
        if layout is None or layout.width <= 0:
            return QSize(self.MAX_W, 80)
        s = min(self.MAX_W / layout.width, self.MAX_H / layout.height)
        return QSize(max(40, int(layout.width * s) + 4), max(40, int(layout.height * s) + 4))

    def relayout(self) -> None:
        """A new layout: take its proportions (the view places the minimap again afterwards)."""
        self.resize(self.sizeHint())
        self.invalidate()

    def invalidate(self) -> None:
        """The layout or the colours changed: redraw the miniature on the next paint."""
        self._pixmap = None
        self.update()

    def _render(self) -> QPixmap:
        """The boxes in miniature, drawn once per layout/colour change (paints reuse it)."""
        layout = self.host.current_layout()
        assert layout is not None
        c = self.host.colors
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
        status = self.host.status_of
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
        layout = self.host.current_layout()
        c = self.host.colors
        if layout is None or not layout.boxes:
            p = QPainter(self)
            p.fillRect(self.rect(), c.base)
            p.end()
            return
        if self._pixmap is None or self._pixmap.size() != self.size():
            self._pixmap = self._render()
        p = QPainter(self)
        p.drawPixmap(0, 0, self._pixmap)
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
