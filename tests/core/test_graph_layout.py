"""The layered graph layout (Qt-free): order, overlaps, frames, folding, routing, robustness."""

from __future__ import annotations

import itertools

import pytest
import torch

from transfer_studio.core.graph import GraphBlock, GraphNode, ModelGraph, model_graph
from transfer_studio.core.graph_layout import (
    FRAME_TITLE,
    Hierarchy,
    block_unit,
    compute_layout,
    node_unit,
)


def _node(nid, block=None, kind="module", typ="Conv2d"):
    return GraphNode(nid, typ, kind, [1, 8, 4, 4], 10, 10, block)


def _graph(nodes, edges, blocks):
    return ModelGraph("toy", [1, 3, 8, 8], "fx", nodes, edges, blocks, 0, 0)


def _residual_toy():
    """input -> stem -> [block a: conv1 -> conv2 -> add(+skip)] -> [block b: two branches -> cat] -> out."""
    nodes = [
        _node("input", kind="input", typ="input"),
        _node("stem"),
        _node("a.conv1", "a"), _node("a.conv2", "a"), _node("add", "a", kind="op", typ="add"),
        _node("b.left", "b"), _node("b.right1", "b"), _node("b.right2", "b"), _node("cat", "b", kind="op", typ="cat"),
        _node("output", kind="output", typ="output"),
    ]
    edges = [("input", "stem"), ("stem", "a.conv1"), ("a.conv1", "a.conv2"), ("a.conv2", "add"), ("stem", "add"),
             ("add", "b.left"), ("add", "b.right1"), ("b.right1", "b.right2"), ("b.left", "cat"),
             ("b.right2", "cat"), ("cat", "output")]
    blocks = [GraphBlock("a", "block", "BasicBlock", None, 20, 20), GraphBlock("b", "block", "Inception", None, 30, 30)]
    return _graph(nodes, edges, blocks)


@pytest.fixture(scope="module")
def resnet_graph():
    import torchvision

    with torch.device("meta"):
        model = torchvision.models.resnet18()
    return model_graph(model, (1, 3, 64, 64), "resnet18")


def _overlap(a, b, pad=0.0):
    return a.x < b.x + b.w + pad and b.x < a.x + a.w + pad and a.y < b.y + b.h + pad and b.y < a.y + a.h + pad


def _check_geometry(h, layout):
    boxes = list(layout.boxes.values())
    for a, b in itertools.combinations(boxes, 2):
        assert not _overlap(a, b), (a.unit, b.unit)
    # Data flows downwards: every forward edge's target box lies below its source box.
    for route in layout.edges:
        if route.back:
            continue
        src, dst = layout.boxes[route.src], layout.boxes[route.dst]
        assert dst.y > src.y + src.h, (route.src, route.dst)
        assert route.points[0] == (pytest.approx(src.cx), pytest.approx(src.y + src.h))
        assert route.points[-1] == (pytest.approx(dst.cx), pytest.approx(dst.y))
    # Each frame encloses its members (and the frames nested in it) with room for its title.
    for bid, frame in layout.frames.items():
        for nid in h.members[bid]:
            box = layout.boxes[layout.unit_of_node[nid]]
            assert frame.x <= box.x and box.x + box.w <= frame.x + frame.w
            assert frame.y + FRAME_TITLE <= box.y and box.y + box.h <= frame.y + frame.h
        for child in h.children.get(bid, []):
            if child in layout.frames:
                c = layout.frames[child]
                assert frame.x < c.x and c.x + c.w < frame.x + frame.w and frame.y < c.y and c.y + c.h < frame.y + frame.h
    # Frames of sibling blocks never overlap.
    for a, b in itertools.combinations(layout.frames.values(), 2):
        if h.parent.get(a.block) == h.parent.get(b.block):
            assert not _overlap(a, b), (a.block, b.block)
    assert all(b.x >= 0 and b.y >= 0 and b.x + b.w <= layout.width and b.y + b.h <= layout.height for b in boxes)


def test_expanded_toy_graph_is_layered_and_framed():
    h = Hierarchy(_residual_toy())
    layout = compute_layout(h, {"a", "b"})
    _check_geometry(h, layout)
    assert set(layout.frames) == {"a", "b"}
    # The skip connection stem -> add spans layers: it is routed through intermediate points.
    skip = next(r for r in layout.edges if (r.src, r.dst) == ("n:stem", "n:add"))
    assert len(skip.points) > 2
    # The two branches of block b sit side by side in one layer.
    left, right = layout.boxes["n:b.left"], layout.boxes["n:b.right1"]
    assert left.layer == right.layer and abs(left.cx - right.cx) >= left.w


def test_collapsed_blocks_are_single_boxes_with_mapped_edges():
    h = Hierarchy(_residual_toy())
    layout = compute_layout(h, set())
    assert set(layout.boxes) == {"n:input", "n:stem", "b:a", "b:b", "n:output"}
    assert layout.frames == {}
    pairs = {(r.src, r.dst) for r in layout.edges}
    assert pairs == {("n:input", "n:stem"), ("n:stem", "b:a"), ("b:a", "b:b"), ("b:b", "n:output")}
    _check_geometry(h, layout)
    assert layout.unit_of_node["a.conv2"] == block_unit("a")
    assert layout.unit_of_node["stem"] == node_unit("stem")


def test_real_network_layouts_hold_their_geometry(resnet_graph):
    h = Hierarchy(resnet_graph)
    for expanded in (set(), h.default_expanded(), set(h.blocks), {"layer2", "layer2.0", "layer2.0.downsample"}):
        layout = compute_layout(h, expanded)
        _check_geometry(h, layout)
        shown = {layout.unit_of_node[n] for n in h.nodes}
        assert shown == set(layout.boxes)
    # Fully expanded: one box per node; the main chain stays in one column.
    full = compute_layout(h, set(h.blocks))
    assert len(full.boxes) == len(h.nodes)
    chain = ["n:layer1.0.conv1", "n:layer1.0.bn1", "n:layer1.0.relu", "n:layer1.0.conv2"]
    xs = {round(full.boxes[u].cx) for u in chain}
    assert len(xs) == 1


def test_default_expansion_keeps_the_view_readable(resnet_graph):
    h = Hierarchy(resnet_graph)
    expanded = h.default_expanded(max_units=30)
    assert h.count_units(expanded) <= 30
    assert set(h.top_blocks) <= expanded  # stages open, their blocks stay folded
    assert "layer1.0" not in expanded
    assert h.default_expanded(max_units=1000) == frozenset(h.blocks)


def test_layout_is_deterministic(resnet_graph):
    h = Hierarchy(resnet_graph)
    a = compute_layout(h, set(h.blocks))
    b = compute_layout(h, set(h.blocks))
    assert [(u, x.x, x.y) for u, x in a.boxes.items()] == [(u, x.x, x.y) for u, x in b.boxes.items()]


def test_malformed_graphs_do_not_break_the_layout():
    nodes = [_node("x", kind="input", typ="input"), _node("p", "ghost"), _node("q", "loop"), _node("r"),
             _node("output", kind="output", typ="output")]
    # An edge against execution order (r -> q), a self loop, an edge to an unknown node, a block whose
    # parent does not exist, a block without members and two blocks that are each other's parent.
    edges = [("x", "p"), ("p", "q"), ("q", "r"), ("r", "q"), ("r", "r"), ("r", "nowhere"), ("r", "output")]
    blocks = [GraphBlock("ghost", "other", "G", "missing", 0, 0), GraphBlock("empty", "other", "E", None, 0, 0),
              GraphBlock("loop", "other", "L", "loop2", 0, 0), GraphBlock("loop2", "other", "L2", "loop", 0, 0)]
    h = Hierarchy(_graph(nodes, edges, blocks))
    assert "empty" not in h.blocks
    for expanded in (set(), set(h.blocks)):
        layout = compute_layout(h, expanded)
        back = [r for r in layout.edges if r.back]
        assert [(r.src, r.dst) for r in back] == [("n:r", layout.unit_of_node["q"])]
        assert all(r.src != r.dst for r in layout.edges)


def test_empty_graph():
    layout = compute_layout(Hierarchy(_graph([], [], [])), set())
    assert layout.boxes == {} and layout.width > 0


def test_constants_sit_beside_the_data_path_just_above_their_consumer():
    import torchvision

    with torch.device("meta"):
        model = torchvision.models.vit_b_16()
    h = Hierarchy(model_graph(model, (1, 3, 224, 224), "vit_b_16"))
    layout = compute_layout(h, set(h.blocks))
    _check_geometry(h, layout)
    box = {n: layout.boxes[layout.unit_of_node[n]] for n in ("permute", "class_token", "expand", "cat",
                                                             "encoder.pos_embedding", "add")}
    # class_token -> expand -> cat: the constant chain sits between the data path's permute and
    # its consumer cat, not at the top of the graph; cat moved down to make room.
    assert box["permute"].layer < box["class_token"].layer < box["expand"].layer == box["cat"].layer - 1
    assert box["encoder.pos_embedding"].layer == box["add"].layer - 1
    # ... and to the right of the data path, which stays in one straight column.
    assert box["class_token"].x > box["cat"].cx  # the edge from permute to cat passes on its left
    assert round(box["permute"].cx) == round(box["cat"].cx) == round(box["add"].cx)
