"""Top-to-bottom layered layout of a model graph with collapsible blocks (Qt-free, pure Python).

A Sugiyama-style layout, small enough to run on the GUI thread for a few hundred visible nodes:

1. *Units*: every graph node is shown either as itself or, when one of its enclosing blocks is
   collapsed, as the outermost collapsed block (one box for the whole block).
2. *Layers*: longest path from the sources over the forward edges (edges that go forward in
   execution order); what the input does not reach (parameters, buffers, constants computed from
   them) is then pulled down next to its first consumer. Edges that span
   several layers get a chain of dummy points, so skip connections route around nodes.
3. *Order*: barycentre sweeps down and up. Units inside the same expanded block stay contiguous
   in every layer (sorted group by group), so block frames do not interleave.
4. *x*: alternating passes set each item towards the weighted mean of its neighbours; a weighted
   isotonic regression (pool-adjacent-violators) keeps the order and minimum gaps exactly.
5. *y*: layer by layer, with room for the title and padding of block frames that start or end.

The result is plain data (boxes, frames, edge polylines) that ``ui/graph_view/`` (a package) turns into items.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

NODE_W, NODE_H = 200.0, 50.0
BLOCK_W, BLOCK_H = 240.0, 56.0
IO_W, IO_H = 160.0, 30.0
H_GAP = 26.0  # between boxes in a layer
DUMMY_GAP = 12.0  # between an edge's dummy point and its neighbours
V_GAP = 32.0  # between layers
FRAME_PAD = 12.0
FRAME_TITLE = 24.0
MARGIN = 24.0
DUMMY_WEIGHT = 0.3  # dummies yield to real nodes when both want the same x
CONST_WEIGHT = 0.1  # edges from constants (not reached from the input) barely pull
PLACE_DUMMY = 0.02  # in a crowded layer, edges and constants give way ...
PLACE_CONST = 0.05  # ... so the data path stays straight instead of drifting block by block


@dataclass
class Box:
    unit: str  # "n:<node id>" or "b:<block id>"
    kind: str  # "node" | "block"
    id: str  # node id or block id
    x: float  # top-left
    y: float
    w: float
    h: float
    layer: int

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


@dataclass
class Frame:
    block: str
    x: float
    y: float
    w: float
    h: float
    depth: int  # nesting depth among expanded blocks (0 = outermost)


@dataclass
class EdgeRoute:
    src: str  # unit keys
    dst: str
    points: list[tuple[float, float]]
    back: bool = False  # goes against execution order (drawn differently)
    bounds: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x0, y0, x1, y1 of the points


@dataclass
class Layout:
    expanded: frozenset[str]
    boxes: dict[str, Box]
    frames: dict[str, Frame]
    edges: list[EdgeRoute]
    width: float
    height: float
    unit_of_node: dict[str, str] = field(default_factory=dict)

    def bounds_of(self, unit: str) -> tuple[float, float, float, float] | None:
        box = self.boxes.get(unit)
        if box is not None:
            return box.x, box.y, box.w, box.h
        return None


def node_unit(node_id: str) -> str:
    return "n:" + node_id


def block_unit(block_id: str) -> str:
    return "b:" + block_id


class Hierarchy:
    """Blocks, their members and the order of a ``core.graph.ModelGraph`` (any object with
    ``nodes``/``edges``/``blocks`` shaped like it), precomputed once per graph."""

    def __init__(self, graph: Any):
        self.graph = graph
        self.nodes = {n.id: n for n in graph.nodes}
        self.order = {n.id: i for i, n in enumerate(graph.nodes)}
        blocks = {b.id: b for b in graph.blocks}
        self.parent: dict[str, str | None] = {
            b.id: (b.parent if b.parent in blocks and b.parent != b.id else None) for b in graph.blocks
        }
        # Ancestor chain of each block, outermost first (guarding against malformed cycles).
        self._block_chain: dict[str, tuple[str, ...]] = {}
        for bid in blocks:
            chain: list[str] = []
            cur: str | None = bid
            seen: set[str] = set()
            while cur is not None and cur not in seen:
                seen.add(cur)
                chain.append(cur)
                cur = self.parent.get(cur)
            self._block_chain[bid] = tuple(reversed(chain))
        self.node_chain: dict[str, tuple[str, ...]] = {
            n.id: (self._block_chain[n.block] if n.block in blocks else ()) for n in graph.nodes
        }
        members: dict[str, list[str]] = defaultdict(list)
        for nid, chain in self.node_chain.items():
            for bid in chain:
                members[bid].append(nid)
        # Blocks without any node (e.g. an unused module) cannot be drawn; drop them.
        self.blocks = {bid: b for bid, b in blocks.items() if members.get(bid)}
        self.members: dict[str, list[str]] = {bid: sorted(m, key=self.order.__getitem__)
                                              for bid, m in members.items() if bid in self.blocks}
        self.first_order = {bid: self.order[m[0]] for bid, m in self.members.items()}
        children: dict[str | None, list[str]] = defaultdict(list)
        for bid in self.blocks:
            children[self.parent[bid]].append(bid)
        self.children: dict[str | None, list[str]] = {
            k: sorted(v, key=self.first_order.__getitem__) for k, v in children.items()
        }
        self.depth = {bid: len(self._block_chain[bid]) - 1 for bid in self.blocks}
        seen_edges: set[tuple[str, str]] = set()
        self.edges: list[tuple[str, str]] = []
        for src, dst in graph.edges:
            if src in self.nodes and dst in self.nodes and src != dst and (src, dst) not in seen_edges:
                seen_edges.add((src, dst))
                self.edges.append((src, dst))

    # -- queries -------------------------------------------------------------------------------
    @property
    def top_blocks(self) -> list[str]:
        return list(self.children.get(None, []))

    def block_chain(self, block_id: str) -> tuple[str, ...]:
        """The block and its ancestors, outermost first."""
        return self._block_chain[block_id]

    def descendants(self, block_id: str) -> list[str]:
        out: list[str] = []
        stack = list(self.children.get(block_id, []))
        while stack:
            b = stack.pop()
            out.append(b)
            stack.extend(self.children.get(b, []))
        return out

    def unit_of(self, node_id: str, expanded: frozenset[str] | set[str]) -> str:
        for bid in self.node_chain[node_id]:
            if bid in self.blocks and bid not in expanded:
                return block_unit(bid)
        return node_unit(node_id)

    def units(self, expanded: frozenset[str] | set[str]) -> dict[str, str]:
        return {nid: self.unit_of(nid, expanded) for nid in self.nodes}

    def count_units(self, expanded: frozenset[str] | set[str]) -> int:
        return len(set(self.units(expanded).values()))

    def expand_to_show(self, node_id: str, expanded: set[str]) -> set[str]:
        """``expanded`` plus every block needed for ``node_id`` to be visible on its own."""
        return set(expanded) | {b for b in self.node_chain[node_id] if b in self.blocks}

    def default_expanded(self, max_units: int = 48) -> frozenset[str]:
        """Open level after level of blocks while the number of boxes stays readable.

        Containers that are just wrappers (one level holding the model's stages) open even when
        the next level is large, so the first view shows stages rather than one box.
        """
        expanded: set[str] = set()
        level = self.top_blocks
        while level:
            trial = expanded | set(level)
            if self.count_units(trial) > max_units and self.count_units(expanded) > 3:
                break
            expanded = trial
            level = [c for b in level for c in self.children.get(b, [])]
        return frozenset(expanded)


# -- layout ------------------------------------------------------------------------------------
class _Item:
    __slots__ = ("key", "w", "h", "path", "dummy", "order", "layer", "x", "preds", "succs", "stiffness")

    def __init__(self, key: str, w: float, h: float, path: tuple[str, ...], dummy: bool, order: float,
                 layer: int):
        self.key = key
        self.w = w
        self.h = h
        self.path = path
        self.dummy = dummy
        self.order = order
        self.layer = layer
        self.x = 0.0  # centre
        # How hard it holds its desired x when neighbours in its layer compete for the spot.
        self.stiffness = PLACE_DUMMY if dummy else 1.0
        self.preds: list[tuple[_Item, float]] = []  # neighbours in the layer above, with weight
        self.succs: list[tuple[_Item, float]] = []


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def compute_layout(h: Hierarchy, expanded: frozenset[str] | set[str], *, max_dummies: int | None = None) -> Layout:
    expanded = frozenset(b for b in expanded if b in h.blocks)
    unit_of_node = h.units(expanded)

    # 1. units, their order (first member in execution order) and enclosing expanded blocks
    unit_order: dict[str, int] = {}
    for nid, unit in unit_of_node.items():
        o = h.order[nid]
        if unit not in unit_order or o < unit_order[unit]:
            unit_order[unit] = o
    units = sorted(unit_order, key=unit_order.__getitem__)

    def unit_path(unit: str) -> tuple[str, ...]:
        if unit.startswith("b:"):
            return h.block_chain(unit[2:])[:-1]
        return tuple(b for b in h.node_chain[unit[2:]] if b in h.blocks)

    paths = {u: unit_path(u) for u in units}

    # 2. edges between units
    unit_edges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for src, dst in h.edges:
        a, b = unit_of_node[src], unit_of_node[dst]
        if a != b and (a, b) not in seen:
            seen.add((a, b))
            unit_edges.append((a, b))
    forward = [(a, b) for a, b in unit_edges if unit_order[a] < unit_order[b]]
    back = [(a, b) for a, b in unit_edges if unit_order[a] > unit_order[b]]

    # 3. layering
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    for a, b in forward:
        preds[b].append(a)
        succs[a].append(b)
    # Constants (parameters, buffers and what is computed from them: ViT's class token, Swin and
    # MaxViT's relative position tables) are what the input does not flow into. They sit right
    # above their consumer, and the consumer moves down to make room for them below its data-path
    # predecessor, so a block's constants never reach up into the block before it.
    reached = {u for u in units if u.startswith("n:") and getattr(h.nodes[u[2:]], "kind", "") == "input"}
    if reached:
        stack = list(reached)
        while stack:
            for s in succs.get(stack.pop(), ()):
                if s not in reached:
                    reached.add(s)
                    stack.append(s)
    else:
        reached = {u for u in units if preds.get(u)}
    depth: dict[str, int] = {}  # longest chain of constants ending at this one
    layer: dict[str, int] = {}
    for u in units:
        ps = preds.get(u, ())
        if u not in reached:
            depth[u] = 1 + max((depth[p] for p in ps if p not in reached), default=0)
            layer[u] = 0
            continue
        base = max((layer[p] + 1 for p in ps if p in reached), default=0)
        layer[u] = base + max((depth[p] for p in ps if p not in reached), default=0)
    for u in reversed(units):
        if u not in reached and succs.get(u):
            layer[u] = max(0, min(layer[s] for s in succs[u]) - 1)
    n_layers = max(layer.values(), default=-1) + 1

    # 4. items (units + dummy points for long edges)
    items: dict[str, _Item] = {}
    for u in units:
        w, hh = _unit_size(h, u)
        items[u] = _Item(u, w, hh, paths[u], False, float(unit_order[u]), layer[u])
        if u not in reached:
            items[u].stiffness = PLACE_CONST
    chains: dict[tuple[str, str], list[_Item]] = {}
    budget = max_dummies if max_dummies is not None else max(4000, 4 * len(units))
    for a, b in sorted(forward, key=lambda e: layer[e[1]] - layer[e[0]]):
        span = layer[b] - layer[a]
        ia, ib = items[a], items[b]
        # Constants (parameters, position tables) pull their consumers sideways only a little:
        # the data path stays straight.
        strength = 1.0 if a in reached else CONST_WEIGHT
        if span <= 1 or span - 1 > budget:
            if span >= 1:
                _link(ia, ib, strength if span == 1 else 0.0)
            continue
        budget -= span - 1
        path = ia.path[: _common_prefix(ia.path, ib.path)]
        prev = ia
        chain: list[_Item] = []
        for k in range(1, span):
            d = _Item(f"d:{a}>{b}:{k}", 0.0, 0.0, path, True, ia.order + k / (span + 1.0), layer[a] + k)
            items[d.key] = d
            _link(prev, d, DUMMY_WEIGHT * strength)
            chain.append(d)
            prev = d
        _link(prev, ib, DUMMY_WEIGHT * strength)
        chains[(a, b)] = chain

    layers: list[list[_Item]] = [[] for _ in range(n_layers)]
    for it in items.values():
        layers[it.layer].append(it)

    # 5. ordering: initial by execution order, then barycentre sweeps (grouped by block)
    for lst in layers:
        lst[:] = _sort_grouped(lst, {it.key: it.order for it in lst})
    pos: dict[str, float] = {}
    _index(layers, pos)
    for _ in range(3):
        for li in range(1, n_layers):
            layers[li] = _sort_grouped(layers[li], _bary(layers[li], pos, up=True))
            _index([layers[li]], pos)
        for li in range(n_layers - 2, -1, -1):
            layers[li] = _sort_grouped(layers[li], _bary(layers[li], pos, up=False))
            _index([layers[li]], pos)

    # 6. x coordinates
    seps: list[list[float]] = []
    for lst in layers:
        s = []
        for a, b in zip(lst, lst[1:], strict=False):
            cp = _common_prefix(a.path, b.path)
            gap = DUMMY_GAP if (a.dummy or b.dummy) else H_GAP
            gap += FRAME_PAD * ((len(a.path) - cp) + (len(b.path) - cp))
            s.append((a.w + b.w) / 2 + gap)
        seps.append(s)
        x = 0.0
        for i, it in enumerate(lst):
            it.x = x
            if i < len(s):
                x += s[i]
    for li, lst in enumerate(layers):  # centre every layer on 0 to start
        if lst:
            shift = (lst[0].x + lst[-1].x) / 2
            for it in lst:
                it.x -= shift
        _ = li
    for _ in range(4):
        for li in range(1, n_layers):
            _place(layers[li], seps[li], up=True)
        for li in range(n_layers - 2, -1, -1):
            _place(layers[li], seps[li], up=False)
    for li in range(1, n_layers):
        _place(layers[li], seps[li], up=True)
    _place_constants(layers, items, units, reached, succs)

    # 7. y coordinates, leaving room for frame titles and padding
    first_layer: dict[str, int] = {}
    last_layer: dict[str, int] = {}
    for u in units:
        for bid in paths[u]:
            li = layer[u]
            first_layer[bid] = min(first_layer.get(bid, li), li)
            last_layer[bid] = max(last_layer.get(bid, li), li)
    top_extra = [0.0] * n_layers
    bottom_extra = [0.0] * n_layers
    for u in units:
        li = layer[u]
        starts = sum(1 for b in paths[u] if first_layer[b] == li)
        ends = sum(1 for b in paths[u] if last_layer[b] == li)
        top_extra[li] = max(top_extra[li], starts * (FRAME_PAD + FRAME_TITLE))
        bottom_extra[li] = max(bottom_extra[li], ends * FRAME_PAD)
    layer_h = [max((it.h for it in lst if not it.dummy), default=0.0) for lst in layers]
    layer_y = [0.0] * n_layers
    y = 0.0
    for li in range(n_layers):
        y += top_extra[li]
        layer_y[li] = y
        y += layer_h[li] + bottom_extra[li] + V_GAP

    boxes: dict[str, Box] = {}
    for u in units:
        it = items[u]
        top = layer_y[it.layer] + (layer_h[it.layer] - it.h) / 2
        kind, ident = ("block", u[2:]) if u.startswith("b:") else ("node", u[2:])
        boxes[u] = Box(u, kind, ident, it.x - it.w / 2, top, it.w, it.h, it.layer)

    # 8. frames around expanded blocks, innermost first so parents enclose children's padding
    rects: dict[str, list[float]] = {}
    for u in units:
        b = boxes[u]
        for bid in paths[u]:
            _grow(rects, bid, b.x, b.y, b.x + b.w, b.y + b.h)
    for chain in chains.values():
        for d in chain:
            cy = layer_y[d.layer] + layer_h[d.layer] / 2
            for bid in d.path:
                _grow(rects, bid, d.x, cy, d.x, cy)
    frames: dict[str, Frame] = {}
    for bid in sorted(rects, key=lambda b: -h.depth[b]):
        x0, y0, x1, y1 = rects[bid]
        x0, y0, x1, y1 = x0 - FRAME_PAD, y0 - FRAME_PAD - FRAME_TITLE, x1 + FRAME_PAD, y1 + FRAME_PAD
        parent = h.parent.get(bid)
        if parent is not None and parent in rects:
            _grow(rects, parent, x0, y0, x1, y1)
        depth = sum(1 for b in h.block_chain(bid)[:-1] if b in expanded)
        frames[bid] = Frame(bid, x0, y0, x1 - x0, y1 - y0, depth)

    # 9. edge routes
    routes: list[EdgeRoute] = []
    for a, b in unit_edges:
        ba, bb = boxes[a], boxes[b]
        if (a, b) in back:
            routes.append(EdgeRoute(a, b, [(ba.cx, ba.y + ba.h), (bb.cx, bb.y)], back=True))
            continue
        pts = [(ba.cx, ba.y + ba.h)]
        for d in chains.get((a, b), ()):
            pts.append((d.x, layer_y[d.layer]))
            pts.append((d.x, layer_y[d.layer] + layer_h[d.layer]))
        pts.append((bb.cx, bb.y))
        routes.append(EdgeRoute(a, b, pts))

    # 10. normalise: everything starts at (MARGIN, MARGIN)
    xs = [b.x for b in boxes.values()] + [f.x for f in frames.values()]
    ys = [b.y for b in boxes.values()] + [f.y for f in frames.values()]
    x_end = [b.x + b.w for b in boxes.values()] + [f.x + f.w for f in frames.values()]
    y_end = [b.y + b.h for b in boxes.values()] + [f.y + f.h for f in frames.values()]
    for r in routes:
        xs.extend(p[0] for p in r.points)
        x_end.extend(p[0] for p in r.points)
    if not xs:
        return Layout(expanded, {}, {}, [], 2 * MARGIN, 2 * MARGIN, unit_of_node)
    dx, dy = MARGIN - min(xs), MARGIN - min(ys)
    for b in boxes.values():
        b.x += dx
        b.y += dy
    for f in frames.values():
        f.x += dx
        f.y += dy
    for r in routes:
        r.points = [(px + dx, py + dy) for px, py in r.points]
        xs = [px for px, _ in r.points]
        ys = [py for _, py in r.points]
        r.bounds = (min(xs), min(ys), max(xs), max(ys))
    width = max(x_end) + dx + MARGIN
    height = max(y_end) + dy + MARGIN
    return Layout(expanded, boxes, frames, routes, width, height, unit_of_node)


def _unit_size(h: Hierarchy, unit: str) -> tuple[float, float]:
    if unit.startswith("b:"):
        return BLOCK_W, BLOCK_H
    node = h.nodes[unit[2:]]
    if getattr(node, "kind", "module") in ("input", "output"):
        return IO_W, IO_H
    return NODE_W, NODE_H


def _link(a: _Item, b: _Item, weight: float) -> None:
    if weight <= 0:
        return
    a.succs.append((b, weight))
    b.preds.append((a, weight))


def _index(layers: list[list[_Item]], pos: dict[str, float]) -> None:
    for lst in layers:
        for i, it in enumerate(lst):
            pos[it.key] = float(i)


def _bary(lst: list[_Item], pos: dict[str, float], up: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    for it in lst:
        nbrs = it.preds if up else it.succs
        if nbrs:
            tw = sum(w for _, w in nbrs)
            out[it.key] = sum(pos[n.key] * w for n, w in nbrs) / tw
        else:
            out[it.key] = pos[it.key]
    return out


def _sort_grouped(lst: list[_Item], key: dict[str, float], depth: int = 0) -> list[_Item]:
    """Sort by key, keeping items that share an expanded block (path[depth]) contiguous."""
    if len(lst) <= 1:
        return list(lst)
    groups: dict[str, list[_Item]] = {}
    for it in lst:
        g = it.path[depth] if len(it.path) > depth else "\0" + it.key
        groups.setdefault(g, []).append(it)
    if len(groups) == len(lst) and all(len(it.path) <= depth for it in lst):
        return sorted(lst, key=lambda it: key[it.key])
    ranked = sorted(groups.items(), key=lambda kv: sum(key[i.key] for i in kv[1]) / len(kv[1]))
    out: list[_Item] = []
    for g, members in ranked:
        if g.startswith("\0") or len(members) == 1:
            out.extend(members)
        else:
            out.extend(_sort_grouped(members, key, depth + 1))
    return out


def _place(lst: list[_Item], seps: list[float], up: bool) -> None:
    """Move items towards their neighbours' mean x, keeping order and gaps (weighted PAV)."""
    if not lst:
        return
    n = len(lst)
    if n == 1:  # most layers of a chain-like network: no constraints to keep
        it = lst[0]
        nbrs = _primary(it, it.preds if up else it.succs)
        if nbrs:
            it.x = sum(nb.x * w for nb, w in nbrs) / sum(w for _, w in nbrs)
        return
    targets: list[float] = []
    weights: list[float] = []
    offset = 0.0
    for i, it in enumerate(lst):
        nbrs = _primary(it, it.preds if up else it.succs)
        if nbrs:
            tw = sum(w for _, w in nbrs)
            desired = sum(nb.x * w for nb, w in nbrs) / tw
            weight = it.stiffness
        else:
            desired, weight = it.x, 0.05 * it.stiffness
        targets.append(desired - offset)
        weights.append(weight)
        if i < n - 1:
            offset += seps[i]
    # Pool adjacent violators: blocks of (weight sum, weighted value sum, count).
    stack: list[list[float]] = []
    for t, w in zip(targets, weights, strict=True):
        stack.append([w, w * t, 1])
        while len(stack) > 1 and stack[-2][1] / stack[-2][0] > stack[-1][1] / stack[-1][0]:
            w2, s2, c2 = stack.pop()
            stack[-1][0] += w2
            stack[-1][1] += s2
            stack[-1][2] += c2
    i = 0
    offset = 0.0
    for w, s, c in stack:
        value = s / w
        for _ in range(int(c)):
            lst[i].x = value + offset
            if i < n - 1:
                offset += seps[i]
            i += 1


def _place_constants(layers: list[list[_Item]], items: dict[str, _Item], units: list[str], reached: set[str],
                     succs: dict[str, list[str]]) -> None:
    """Constants go in a tidy column just right of the data path, level with their consumer.

    Left to the iterative placement they wander sideways (nothing anchors a chain that starts at
    a parameter), block after block; here each layer's constants are packed, in order, from the
    consumer's x or from just right of the layer's other boxes, whichever is further right.
    """
    anchor: dict[str, float] = {}
    for u in reversed(units):
        if u in reached:
            continue
        data = [items[s].x for s in succs.get(u, ()) if s in reached]
        chain = [anchor[s] for s in succs.get(u, ()) if s not in reached and s in anchor]
        if data or chain:
            anchor[u] = min(data) if data else min(chain)
    for lst in layers:
        consts = [it for it in lst if not it.dummy and it.key in anchor]
        if not consts:
            continue
        others = [it for it in lst if it.dummy or it.key not in anchor]
        right = max((it.x + it.w / 2 for it in others), default=float("-inf"))
        x = max(right + H_GAP + 2 * FRAME_PAD, anchor[consts[0].key] - consts[0].w / 2)
        for it in consts:
            it.x = x + it.w / 2
            x += it.w + H_GAP


def _primary(it: _Item, nbrs: list[tuple[_Item, float]]) -> list[tuple[_Item, float]]:
    """The neighbours a box aligns with: real data-path boxes when it has any, so a residual add
    stays under its main branch instead of drifting towards the skip edge (or a constant)."""
    if it.dummy:
        return nbrs
    main = [(nb, w) for nb, w in nbrs if not nb.dummy and nb.stiffness == 1.0]
    if main:
        return main
    data_edges = [(nb, w) for nb, w in nbrs if w >= DUMMY_WEIGHT]  # long edges of the data path
    return data_edges or nbrs


def _grow(rects: dict[str, list[float]], key: str, x0: float, y0: float, x1: float, y1: float) -> None:
    r = rects.get(key)
    if r is None:
        rects[key] = [x0, y0, x1, y1]
    else:
        r[0] = min(r[0], x0)
        r[1] = min(r[1], y0)
        r[2] = max(r[2], x1)
        r[3] = max(r[3], y1)
