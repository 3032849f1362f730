"""GraphView on its own: zoom, fit, minimap, colours, search highlighting, async layouts, reuse."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QImage

from transfer_studio.core.freeze_status import UnitStatus, compute_status, freeze_of, module_counts
from transfer_studio.core.graph import model_graph
from transfer_studio.core.graph_layout import Hierarchy
from transfer_studio.ui import graph_view as gv
from transfer_studio.ui.graph_view import GraphView, layouts


@pytest.fixture(scope="module")
def resnet():
    import torchvision

    with torch.device("meta"):
        model = torchvision.models.resnet18()
    return model, Hierarchy(model_graph(model, (1, 3, 64, 64), "resnet18"))


@pytest.fixture
def view(qtbot, resnet):
    v = GraphView()
    qtbot.addWidget(v)
    v.resize(900, 700)
    v.show()
    qtbot.waitExposed(v)
    v.set_graph(resnet[1])
    return v


def _statuses(model, h):
    return compute_status(h, module_counts(model.named_parameters()), set())


def test_zoom_keys_wheel_and_limits(qtbot, view):
    view.reset_zoom()
    z = view.zoom()
    qtbot.keyClick(view, Qt.Key.Key_Plus)
    assert view.zoom() == pytest.approx(z * 1.25)
    qtbot.keyClick(view, Qt.Key.Key_Minus)
    assert view.zoom() == pytest.approx(z)
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    centre = QPointF(view.viewport().rect().center())
    wheel = QWheelEvent(centre, view.viewport().mapToGlobal(centre), QPoint(), QPoint(0, 240),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view.viewport(), wheel)
    assert view.zoom() > z
    for _ in range(60):
        view.zoom_in()
    assert view.zoom() == pytest.approx(gv.MAX_ZOOM)
    for _ in range(200):
        view.zoom_out()
    assert view.zoom() == pytest.approx(gv.MIN_ZOOM)


def test_fit_shows_the_graph_width(qtbot, view):
    view.expand_all()
    view.reset_zoom()
    view.fit()
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    layout = view.current_layout()
    assert visible.width() >= layout.width * 0.99  # the whole width is in view
    assert visible.top() <= 40  # a tall graph starts at its top
    view.collapse_all()
    view.fit()
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    assert visible.height() >= view.current_layout().height * 0.99  # small enough: all of it


def test_minimap_click_moves_the_view(qtbot, view):
    view.expand_all()
    view.reset_zoom()
    view.centerOn(0, 0)
    mm = view.minimap
    assert mm.isVisible() and mm.width() <= mm.MAX_W + 4
    before = view.mapToScene(view.viewport().rect().center())
    qtbot.mouseClick(mm, Qt.MouseButton.LeftButton, pos=QPoint(mm.width() // 2, mm.height() - 5))
    after = view.mapToScene(view.viewport().rect().center())
    assert after.y() > before.y() + 500  # jumped towards the bottom of the graph


def _pixel_colours(view, item, point):
    view.centerOn(item)
    image: QImage = view.viewport().grab().toImage()
    pos = view.mapFromScene(item.mapToScene(point))
    return QColor(image.pixel(pos))


def test_status_colours_are_drawn(qtbot, view, resnet):
    model, h = resnet
    view.reset_zoom()
    view.set_expanded({"layer1", "layer1.0"})
    nodes, blocks = _statuses(model, h)
    view.set_status(nodes, blocks)
    item = view.item_for("n:layer1.0.conv1")
    stripe = QPointF(3, item.h / 2)
    trainable = _pixel_colours(view, item, stripe)
    for p in model.layer1.parameters():
        p.requires_grad_(False)
    view.set_status(*_statuses(model, h))
    assert view.status_of("n:layer1.0.conv1").freeze == "frozen"
    frozen = _pixel_colours(view, item, stripe)
    sem = gv.theme.semantic_colors()
    assert _close(trainable, sem.trainable) and _close(frozen, sem.frozen)
    for p in model.layer1.parameters():
        p.requires_grad_(True)


def _close(a: QColor, b: QColor, tol: int = 40) -> bool:
    return abs(a.red() - b.red()) + abs(a.green() - b.green()) + abs(a.blue() - b.blue()) <= tol


def test_compute_status_marks_modified_and_mixed(resnet):
    model, h = resnet
    model.layer2[0].conv1.weight.requires_grad_(False)
    try:
        nodes, blocks = compute_status(h, module_counts(model.named_parameters()), {"layer3.1"})
    finally:
        model.layer2[0].conv1.weight.requires_grad_(True)
    assert nodes["layer2.0.conv1"].freeze == "frozen"
    assert blocks["layer2.0"].freeze == "mixed" and blocks["layer2"].freeze == "mixed"
    assert nodes["layer3.1.bn2"].modified and blocks["layer3.1"].modified and blocks["layer3"].modified
    assert not blocks["layer2"].modified
    assert nodes["layer1.0.relu"].freeze == "none"
    assert blocks["[stem]"].total == sum(p.numel() for n, p in model.named_parameters() if n.startswith(("conv1", "bn1")))


def test_collapsed_block_lights_up_for_a_match_inside(qtbot, view):
    view.collapse_all()
    n = view.search("downsample")
    assert n == 6  # three downsample branches: conv + bn each
    # search() expanded the first match's blocks and selected it; fold everything again.
    view.collapse_all()
    lit = {u for u in view.visible_units() if view.item_for(u).match}
    assert lit == {"b:layer2", "b:layer3", "b:layer4"}
    assert view.next_match() == "layer2.0.downsample.1"
    assert "n:layer2.0.downsample.1" in view.visible_units()


def test_large_expansions_are_laid_out_off_the_gui_thread(qtbot, view, monkeypatch):
    monkeypatch.setattr(layouts, "SYNC_LAYOUT_UNITS", 10)  # read where the layouts are requested
    view.collapse_all()
    with qtbot.waitSignals([view.layoutPending, view.layoutApplied], timeout=20000, order="strict"):
        view.expand_all()
    assert not view.is_layout_pending()
    assert len(view.visible_units()) == len(view.hierarchy.nodes)
    # The result is cached: collapsing and expanding again needs no new layout.
    view.collapse_all()
    with qtbot.assertNotEmitted(view.layoutPending):
        view.expand_all()


def test_items_are_reused_across_layouts(qtbot, view):
    view.collapse_all()
    item = view.item_for("b:layer1")
    view.expand("layer1")
    assert view.item_for("b:layer1") is not item  # the frame stands for it now
    view.collapse("layer1")
    assert view.item_for("b:layer1") is item
    assert len(view.scene().items()) < 200


def test_empty_message_without_graph(qtbot):
    v = GraphView()
    qtbot.addWidget(v)
    v.show()
    assert v.empty_message.isVisible() and not v.minimap.isVisible()
    v.clear_graph("resnet18 could not be built: boom")
    assert "boom" in v.empty_message.text()
    v.fit()
    v.expand_all()
    assert v.visible_units() == [] and v.search("conv") == 0


def test_dark_theme_redraws(qtbot, view):
    from PySide6.QtWidgets import QApplication

    from transfer_studio.ui import theme

    try:
        theme.apply_theme(QApplication.instance(), "dark")
        assert view.colors.dark
        bg = QColor(view.viewport().grab().toImage().pixel(5, 5))
        assert bg.lightness() < 80
    finally:
        theme.apply_theme(QApplication.instance(), "light")
    assert not view.colors.dark


def test_unit_status_equality():
    assert UnitStatus("frozen", False, 0, 10) == UnitStatus("frozen", False, 0, 10)
    assert UnitStatus("frozen", True, 0, 10) != UnitStatus("frozen", False, 0, 10)
    assert freeze_of(0, 0) == "none" and freeze_of(0, 5) == "frozen"
    assert freeze_of(5, 5) == "trainable" and freeze_of(2, 5) == "mixed"


class _RecordingHost:
    """A stand-in ItemHost: the items need nothing else of a view."""

    def __init__(self, hierarchy):
        self.colors = gv.style.Colors()
        self.hierarchy = hierarchy
        self.calls: list[tuple] = []

    def toggle_freeze(self, unit):
        self.calls.append(("freeze", unit))

    def expand(self, block):
        self.calls.append(("expand", block))

    def collapse(self, block):
        self.calls.append(("collapse", block))

    def select(self, unit):
        self.calls.append(("select", unit))

    def request_menu(self, unit, screen_pos):
        self.calls.append(("menu", unit))


def test_items_talk_back_only_through_their_host(qtbot, resnet):
    from PySide6.QtWidgets import QGraphicsScene, QGraphicsView

    from transfer_studio.ui.graph_view.items import BoxItem, FrameItem

    host = _RecordingHost(resnet[1])
    scene = QGraphicsScene()
    view = QGraphicsView(scene)
    qtbot.addWidget(view)
    view.resize(600, 400)
    box = BoxItem(host, "b:layer2", 240, 52)
    box.status = UnitStatus("trainable", False, 10, 10)
    frame = FrameItem(host, "layer1")
    frame.set_size(300, 200)
    frame.setPos(0, 100)
    scene.addItem(box)
    scene.addItem(frame)
    view.show()
    qtbot.waitExposed(view)

    def click(item, point, double=False):
        view.centerOn(item)
        pos = view.mapFromScene(item.mapToScene(point))
        (qtbot.mouseDClick if double else qtbot.mouseClick)(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)

    click(frame, frame.toggle_rect().center())
    click(frame, QPointF(150, 12))
    click(box, box.badge_rect().center())
    click(box, box.toggle_rect().center())
    click(box, QPointF(120, 30), double=True)
    assert host.calls == [("collapse", "layer1"), ("select", "b:layer1"), ("freeze", "b:layer2"),
                          ("expand", "layer2"), ("expand", "layer2")]
    view.viewport().grab()  # painting (text prepared from the host's hierarchy) works on the host alone


def test_search_matches_step_and_locate_without_qt(resnet):
    from transfer_studio.core.graph_layout import compute_layout
    from transfer_studio.ui.graph_view.search import SearchMatches

    h = resnet[1]
    m = SearchMatches()
    m.find(h, "  DownSample ")
    assert len(m.nodes) == 6 and m.position() == (0, 6)
    assert m.nodes == sorted(m.nodes, key=h.order.__getitem__)  # execution order
    first = m.step()
    assert first == m.nodes[0] and m.position() == (1, 6)
    assert m.step(-1) == m.nodes[-1] and m.position() == (6, 6)  # wraps around
    assert m.locate(compute_layout(h, frozenset())) == {"b:layer2", "b:layer3", "b:layer4"}
    m.find(h, "")
    assert m.nodes == [] and m.step() is None and m.locate(compute_layout(h, frozenset())) == set()
