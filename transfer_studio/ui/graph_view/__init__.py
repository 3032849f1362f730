"""Interactive model graph: a QGraphicsView over the layered layout of ``core.graph_layout``.

What it draws comes from three inputs, all plain data:

- a ``Hierarchy`` (nodes, edges, blocks of a ``core.graph.ModelGraph``) and a ``Layout`` of it,
  both computed off the GUI thread by the page;
- per node / block *status* (``core.freeze_status``: frozen, trainable, mixed, no parameters;
  new-or-modified), set with ``set_status`` whenever the page's network changes;
- which blocks are expanded (``set_expanded``; double-click or the +/- toggle on a block).

The view never touches an ``nn.Module``: freezing and surgery are requests (signals) that the page
turns into project operations. Performance: one item per visible box (created lazily, reused across
layouts), one item painting every edge that intersects the exposed area, text prepared once per item
(QStaticText), and a level-of-detail switch that drops text when zoomed far out (and below
``LOD_OVERVIEW`` hides the items for one item drawing everything). Layouts of large expansions are
computed on a worker thread and cached.

The parts:

- ``view``: ``GraphView``, the widget and its public API; it wires the collaborators below;
- ``style``: colours of the palette, fonts, prepared text, shared sizes and zoom levels;
- ``items``: a box per node or collapsed block, a frame per expanded block; they talk back through
  the narrow ``ItemHost`` protocol;
- ``layers``: the edge layer and the far-out overview layer (whole-layout items);
- ``minimap``: ``Minimap``, the graph in miniature in a corner;
- ``pool``: ``ItemPool``, which creates the items lazily and reuses them across layouts;
- ``layouts``: ``LayoutCache``, layouts by expanded set (cached; large ones on a worker thread);
- ``search``: ``SearchMatches``, the matches of a search and the cursor stepping through them (no Qt);
- ``navigation``: geometry for centring, keeping the user's place and fitting (no widgets).
"""

from transfer_studio.ui import theme
from transfer_studio.ui.graph_view.layouts import SYNC_LAYOUT_UNITS
from transfer_studio.ui.graph_view.minimap import Minimap
from transfer_studio.ui.graph_view.style import LOD_OVERVIEW, LOD_TEXT, MAX_ZOOM, MIN_ZOOM
from transfer_studio.ui.graph_view.view import GraphView

__all__ = ["LOD_OVERVIEW", "LOD_TEXT", "MAX_ZOOM", "MIN_ZOOM", "SYNC_LAYOUT_UNITS", "GraphView", "Minimap",
           "theme"]
