"""GraphView: the QGraphicsView that puts the package's parts together (see ``__init__``)."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QPainter, QPalette, QTransform
from PySide6.QtWidgets import QGraphicsItem, QGraphicsScene, QGraphicsView, QLabel, QToolTip, QWidget

from transfer_studio.core.freeze_status import UnitStatus
from transfer_studio.core.graph_layout import Hierarchy, Layout, block_unit, compute_layout, node_unit
from transfer_studio.ui import theme
from transfer_studio.ui.graph_view.items import unit_tooltip
from transfer_studio.ui.graph_view.layers import EdgeLayer, OverviewLayer
from transfer_studio.ui.graph_view.layouts import LayoutCache
from transfer_studio.ui.graph_view.minimap import Minimap
from transfer_studio.ui.graph_view.navigation import anchor_at, anchor_centre, start_zoom, unit_rect
from transfer_studio.ui.graph_view.pool import ItemPool
from transfer_studio.ui.graph_view.search import SearchMatches
from transfer_studio.ui.graph_view.style import LOD_OVERVIEW, MAX_ZOOM, MIN_ZOOM, Colors


class _Host:
    """The narrow face of a GraphView that its items (``ItemHost``), its overview layer and its
    minimap (``LayerHost``) see."""

    def __init__(self, view: GraphView):
        self._view = view
        self.colors = view.colors  # refreshed in place: a plain attribute keeps paints cheap

    @property
    def hierarchy(self) -> Hierarchy | None:
        return self._view.hierarchy

    def current_layout(self) -> Layout | None:
        return self._view.current_layout()

    def status_of(self, unit: str) -> UnitStatus:
        return self._view.status_of(unit)

    def is_match(self, unit: str) -> bool:
        return unit in self._view._search.units

    def toggle_freeze(self, unit: str) -> None:
        self._view.freezeToggleRequested.emit(unit)

    def expand(self, block: str) -> None:
        self._view.expand(block)

    def collapse(self, block: str) -> None:
        self._view.collapse(block)

    def select(self, unit: str) -> None:
        self._view.select(unit)

    def request_menu(self, unit: str, screen_pos: QPoint) -> None:
        self._view.contextMenuRequested.emit(unit, screen_pos)


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
        self.colors = Colors()
        self.hierarchy: Hierarchy | None = None
        self._layout: Layout | None = None
        self._status_nodes: dict[str, UnitStatus] = {}
        self._status_blocks: dict[str, UnitStatus] = {}
        self._search = SearchMatches()
        self._selected = ""
        host = _Host(self)
        self._layouts = LayoutCache(self._apply_layout, self.layoutPending.emit)
        self._pool = ItemPool(self.scene(), host, self.status_of, self._visible_rect, self)
        self._edges = EdgeLayer(self.colors)
        self.scene().addItem(self._edges)
        self._overview = OverviewLayer(host)
        self._overview.setVisible(False)
        self.scene().addItem(self._overview)
        self._overview_mode = False
        self.minimap = Minimap(self, host)
        self.empty_message = QLabel(self)
        self.empty_message.setObjectName("graph_empty_message")
        self.empty_message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_message.setWordWrap(True)
        self.empty_message.setText("No model loaded yet.")
        self.minimap.setVisible(False)
        self.horizontalScrollBar().valueChanged.connect(self.minimap.update)
        self.verticalScrollBar().valueChanged.connect(self.minimap.update)
        self.scene().selectionChanged.connect(self._on_scene_selection)
        theme.notifier().themeChanged.connect(self._on_theme)

    # -- graph and layout ----------------------------------------------------------------------
    def set_graph(self, hierarchy: Hierarchy, layout: Layout | None = None,
                  expanded: Iterable[str] | None = None) -> None:
        """Show a new graph; ``layout`` (computed off-thread) must match ``expanded``."""
        self._layouts.reset(hierarchy)
        self.scene().clearSelection()
        self._pool.clear()
        self._search.clear()
        self.hierarchy = hierarchy
        if layout is None:
            exp = frozenset(expanded) if expanded is not None else hierarchy.default_expanded()
            layout = compute_layout(hierarchy, exp)
        self._layouts.remember(layout)
        self._apply_layout(layout)
        self.empty_message.setVisible(False)
        self.minimap.setVisible(True)
        self.fit()

    def clear_graph(self, message: str = "No model loaded yet.") -> None:
        self._layouts.reset(None)
        self._pool.clear()
        self.hierarchy = None
        self._layout = None
        self._edges.set_layout(Layout(frozenset(), {}, {}, [], 0, 0))
        self.empty_message.setText(message)
        self.empty_message.setVisible(True)
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
        if self._layout is not None and key == self._layout.expanded and not self._layouts.is_pending():
            if centre_on:
                self.centre_on(centre_on)
            return
        self._layouts.request(key, centre_on)

    def is_layout_pending(self) -> bool:
        return self._layouts.is_pending()

    def _remember(self, layout: Layout) -> None:
        """Cache a layout computed elsewhere (bench/bench_graph.py hands one over like the worker)."""
        self._layouts.remember(layout)

    def _apply_layout(self, layout: Layout, centre_on: str | None = None) -> None:
        """Show ``layout``: the items move or appear (``ItemPool``), the layers and the minimap follow,
        and the view keeps the user's place (or centres on ``centre_on``)."""
        anchor = anchor_at(self._layout, self._view_centre()) if self._layout is not None else None
        self._layout = layout
        detail = not self._overview_mode
        self._pool.apply(layout, self._search.locate(layout), detail)
        self._edges.set_layout(layout)
        self._edges.setVisible(detail)
        self._overview.set_layout(layout)
        self._overview.setVisible(not detail)
        self.scene().setSceneRect(QRectF(0, 0, layout.width, layout.height))
        self.minimap.relayout()
        self._place_overlays()
        if centre_on:
            self.centre_on(centre_on)
        elif anchor is not None and self.hierarchy is not None:
            target = anchor_centre(layout, self.hierarchy, anchor)
            if target is not None:
                self.centerOn(target)
        self._pool.create_visible()
        self._pool.fill_later()
        self.viewport().update()
        self.layoutApplied.emit()

    def _view_centre(self) -> QPointF:
        return self.mapToScene(self.viewport().rect().center())

    def _visible_rect(self) -> QRectF:
        return self.mapToScene(self.viewport().rect()).boundingRect()

    def scrollContentsBy(self, dx: int, dy: int) -> None:  # noqa: N802
        super().scrollContentsBy(dx, dy)
        self._pool.create_visible()

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
        self._pool.refresh_status()
        self._overview.invalidate()
        self.minimap.invalidate()

    def status_of(self, unit: str) -> UnitStatus:
        table = self._status_blocks if unit.startswith("b:") else self._status_nodes
        return table.get(unit[2:], UnitStatus())

    # -- search --------------------------------------------------------------------------------
    def search(self, text: str) -> int:
        """Highlight nodes whose name or type contains ``text``; centre on the first one.

        Matches hidden inside collapsed blocks light up the block; stepping to one (``next_match``)
        expands just the blocks around it. Returns the number of matching nodes.
        """
        self._search.find(self.hierarchy, text)
        self._pool.set_matches(self._search.locate(self._layout))
        self._overview.invalidate()
        self.minimap.update()
        if self._search.nodes:
            self.next_match()
        return len(self._search.nodes)

    def matches(self) -> list[str]:
        return list(self._search.nodes)

    def match_position(self) -> tuple[int, int]:
        return self._search.position()

    def next_match(self, step: int = 1) -> str | None:
        if self.hierarchy is None:
            return None
        nid = self._search.step(step)
        if nid is None:
            return None
        expanded = self.hierarchy.expand_to_show(nid, set(self.expanded()))
        unit = node_unit(nid)
        if expanded != set(self.expanded()):
            self.set_expanded(expanded, centre_on=unit)
        else:
            self.centre_on(unit)
        self.select(unit)
        return nid

    # -- selection -----------------------------------------------------------------------------
    def centre_on(self, unit: str) -> None:
        if self._layout is None or self.hierarchy is None:
            return
        rect = unit_rect(self._layout, self.hierarchy, unit)
        if rect is None:
            return
        if self.transform().m11() < 0.6:  # too far out to read the target: zoom to a readable level
            self._set_zoom(0.9)
        self.centerOn(rect.center())

    def select(self, unit: str) -> None:
        """Make ``unit`` the one selected unit (its box created if needed) and say so."""
        self.scene().blockSignals(True)
        self.scene().clearSelection()
        item = self._pool.box(unit)
        if item is not None:
            item.setSelected(True)
        self.scene().blockSignals(False)
        self._selected = unit
        self.viewport().update()
        self.selectionChangedTo.emit(unit)

    def selected_unit(self) -> str:
        return self._selected

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
            return self._pool.frame(unit[2:])
        return self._pool.box(unit)

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
        overview = self.zoom() < LOD_OVERVIEW and self._layout is not None
        if overview != self._overview_mode:  # far out, one item draws everything
            self._overview_mode = overview
            if self._layout is not None:
                self._pool.show_detail(not overview)
                self._edges.setVisible(not overview)
                self._overview.setVisible(overview)
        self._pool.create_visible()
        self.minimap.update()
        self.zoomChanged.emit(z)

    def in_overview_mode(self) -> bool:
        return self._overview_mode

    def zoom_by(self, factor: float) -> None:
        self._set_zoom(self.zoom() * factor)

    def zoom_in(self) -> None:
        self._zoom_about_centre(1.25)

    def zoom_out(self) -> None:
        self._zoom_about_centre(0.8)

    def _zoom_about_centre(self, factor: float) -> None:
        anchor = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.zoom_by(factor)
        self.setTransformationAnchor(anchor)

    def reset_zoom(self) -> None:
        self._set_zoom(1.0)

    def fit(self) -> None:
        """The starting view of a new graph: all of it when readable, else its width from the top
        (tall networks). "Fit to view" is ``fit_all``."""
        if self._layout is None:
            return
        vw, vh = max(1, self.viewport().width()), max(1, self.viewport().height())
        z, whole = start_zoom(self._layout, vw, vh)
        self._set_zoom(z)
        lw, lh = self._layout.width, self._layout.height
        self.centerOn(QPointF(lw / 2, lh / 2 if whole else vh / (2 * self.zoom())))

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
        if self.itemAt(event.pos()) is None:
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
        self.empty_message.setGeometry(vp.adjusted(20, 20, -20, -20))

    def _on_theme(self, _theme: str = "") -> None:
        self.colors.refresh()
        self._pool.forget_text()
        self.viewport().update()
        self.minimap.invalidate()

    def viewportEvent(self, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.ToolTip:  # built on demand, not stored on every item
            unit = getattr(self.itemAt(event.pos()), "unit", "")
            if unit:
                QToolTip.showText(event.globalPos(), unit_tooltip(self.hierarchy, unit), self.viewport())
            else:
                QToolTip.hideText()
            return True
        return super().viewportEvent(event)

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802
        painter.fillRect(rect, self.palette().color(QPalette.ColorRole.Base))

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        QTimer.singleShot(0, self._place_overlays)
