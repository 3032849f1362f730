"""The Model page's work off the GUI thread: the project's network on the meta device, its graph, and
the freeze status of every box, handed back as plain data (never an ``nn.Module``).

Every job builds (or borrows, see ``MetaNetworks``) a network from the project's operations on the
meta device: the same layers, names and trainable flags as ``core.network.build_network``, without
weights. A model with pretrained or file weights is really loaded once when it is first shown
(``validate``): that is what tells the user that a file is missing or does not fit.

Building a meta network takes ~130 ms (resnet50, efficientnet_lite0 on the shared test machine), too
long for a freeze click; replaying freeze ops on a kept one takes ~11 ms. So the networks are kept
here, on the worker side, keyed by the model and the surgery up to its last structural op; a job takes
one out of the pool and gives it back when done, so no two threads ever use the same network. A kept
network remembers the freeze ops it has applied: a job whose ops continue them applies only the new
ones (replaying all of them cost 25 ms after 51 clicks and 113 ms after 200 on resnet50).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from transfer_studio.config import ModelSpec, Project, SurgeryOp
from transfer_studio.core.freeze_status import UnitStatus, compute_status, module_counts
from transfer_studio.errors import Cancelled, UserError
from transfer_studio.ui.runtime import import_core

FREEZE_OPS = ("freeze", "unfreeze", "freeze_before")

Param = tuple[str, int, bool]  # a parameter's name, size and whether it trains
Applied = tuple[str, ...]  # freeze ops applied after a network's structural ops, each as JSON


# -- keys ---------------------------------------------------------------------------------------------
def ops_json(ops: list[SurgeryOp]) -> list[dict]:
    return [{"op": o.op, "target": o.target, "params": o.params} for o in ops]


def project_key(project: Project) -> str:
    """What the shown graph and its colours depend on: model, weights, surgery, input size."""
    return json.dumps([project.model.name, project.model.weights, ops_json(project.surgery),
                       project.train.image_size], sort_keys=True)


def structure_key(project: Project) -> str:
    """What the graph itself depends on: ``project_key`` without the freeze ops."""
    ops = [o for o in project.surgery if o.op not in FREEZE_OPS]
    return json.dumps([project.model.name, project.model.weights, ops_json(ops), project.train.image_size],
                      sort_keys=True)


def structural_prefix(ops: list[SurgeryOp]) -> int:
    """How many ops lead up to (and include) the last structural one."""
    return max((i + 1 for i, o in enumerate(ops) if o.op not in FREEZE_OPS), default=0)


# -- what comes back to the GUI thread ----------------------------------------------------------------
@dataclass(frozen=True)
class FreezeData:
    """The freeze status of a project's network: every box's, the counts, what surgery changed."""

    key: str  # project_key of the project it was computed for
    nodes: dict[str, UnitStatus]
    blocks: dict[str, UnitStatus]
    trainable: int
    total: int
    params: tuple[Param, ...]  # in the network's order (the training overlay recounts from them)
    modified: frozenset[str]  # modules added or replaced by surgery


@dataclass(frozen=True)
class DisplayData:
    """Everything the graph needs, computed off the GUI thread."""

    key: str  # project_key of the project it was built from
    structure: str  # its structure_key
    hierarchy: Any  # core.graph_layout.Hierarchy
    layout: Any  # core.graph_layout.Layout
    model_spec: ModelSpec
    image_size: int | None
    input_shape: tuple[int, ...]
    units: list[str]  # freeze units in forward order (surgery.ordered_blocks)
    head: str  # the final classifier's module name ("" when there is none)
    architecture: str  # the network's class name ("ResNet")
    ops: list[dict]
    status: FreezeData  # at build time


# -- networks kept between jobs (worker side) ---------------------------------------------------------
class MetaNetworks:
    """Meta-device networks by structure, each lent to one job at a time.

    ``take`` removes a network from the pool (waiting briefly while another job has it out or is
    building it; None: build it and ``give`` it, or ``release`` the key), ``give`` puts it back with
    the trainable flags it had after its structural ops and the freeze ops applied since (``applied``;
    None: unknown), so the borrower either continues them or restores the flags. Only worker threads
    call these; the GUI thread never sees a network.
    """

    def __init__(self, size: int = 4):
        self.size = size
        self._nets: OrderedDict[str, tuple[Any, dict[str, bool], Applied | None]] = OrderedDict()
        self._out: set[str] = set()
        self._cond = threading.Condition()

    def take(self, key: str, wait: float = 0.5) -> tuple[Any, dict[str, bool], Applied | None] | None:
        deadline = time.monotonic() + wait
        with self._cond:
            while key in self._out and key not in self._nets:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            got = self._nets.pop(key, None)
            self._out.add(key)  # lent, or being built by the caller: others wait for it
            return got

    def give(self, key: str, net: Any, snapshot: dict[str, bool], taken: str | None = None,
             applied: Applied | None = None) -> None:
        """Put ``net`` back under ``key`` (``taken``: the key it was lent under, if another)."""
        with self._cond:
            self._out.discard(taken if taken is not None else key)
            self._out.discard(key)
            self._nets[key] = (net, snapshot, applied)
            self._nets.move_to_end(key)
            while len(self._nets) > self.size:
                self._nets.popitem(last=False)
            self._cond.notify_all()

    def release(self, key: str) -> None:
        """A lent network that is not coming back."""
        with self._cond:
            self._out.discard(key)
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._nets.clear()

    def keys(self) -> list[str]:
        with self._cond:
            return list(self._nets)


NETWORKS = MetaNetworks()


@dataclass
class _Lent:
    net: Any
    key: str  # the pool key of its structure
    snapshot: dict[str, bool]  # trainable flags after the structural ops
    shape: tuple[int, ...]
    applied: Applied = ()  # the freeze ops applied after them (all of the project's)


def _pool_key(project: Project, shape: tuple[int, ...], ops: list[SurgeryOp]) -> str:
    return json.dumps([project.model.name, list(shape), ops_json(ops)], sort_keys=True)


def _flags(net: Any) -> dict[str, bool]:
    return {name: p.requires_grad for name, p in net.named_parameters()}


def _apply(net: Any, ops: list[SurgeryOp], start: int, stop: int, shape: tuple[int, ...]) -> None:
    """Ops ``start:stop`` of ``ops``, an error worded as ``surgery.apply_ops`` words it for the whole list."""
    surgery = import_core("surgery")
    for i in range(start, stop):
        try:
            surgery.apply_op(net, ops[i], shape)
        except surgery.SurgeryError as exc:
            prefix = f"surgery step {i + 1} of {len(ops)}: " if len(ops) > 1 else ""
            raise surgery.SurgeryError(prefix + str(exc)) from None


def borrow(project: Project, pool: MetaNetworks = NETWORKS) -> _Lent:
    """The project's network on the meta device, from the pool when its structure is there. The caller
    owns it until ``pool.give`` (or ``pool.release``)."""
    network = import_core("network")
    shape = tuple(network.input_shape(project))
    ops = list(project.surgery)
    k = structural_prefix(ops)
    key = _pool_key(project, shape, ops[:k])
    suffix = tuple(json.dumps(o, sort_keys=True) for o in ops_json(ops[k:]))
    start = k
    got = pool.take(key)
    if got is not None:
        net, snapshot, applied = got
        if applied is not None and suffix[:len(applied)] == applied:
            start = k + len(applied)  # the ops it has applied are where this project's begin: add the rest
        else:
            for name, p in net.named_parameters():
                if name in snapshot:
                    p.requires_grad_(snapshot[name])
    else:
        bare = project.copy()
        bare.surgery = []
        try:
            net = network.build_network_meta(bare)
            _apply(net, ops, 0, k, shape)
        except BaseException:
            pool.release(key)
            raise
        snapshot = _flags(net)
    lent = _Lent(net, key, snapshot, shape, suffix)
    try:
        _apply(net, ops, start, len(ops), shape)
    except BaseException:
        pool.give(key, net, snapshot)  # flags part-way through the ops: the next borrower restores them
        raise
    return lent


def freeze_data(net: Any, hierarchy: Any, key: str) -> FreezeData:
    """The freeze status of ``net``'s boxes in ``hierarchy`` (worker thread)."""
    surgery = import_core("surgery")
    named = list(net.named_parameters())
    modified = frozenset(surgery.modified_modules(net))
    nodes, blocks = compute_status(hierarchy, module_counts(named), modified)
    trainable, total = surgery.param_counts(net)
    params = tuple((name, int(p.numel()), bool(p.requires_grad)) for name, p in named)
    return FreezeData(key, nodes, blocks, trainable, total, params, modified)


def _describe(net: Any, project: Project, shape: tuple[int, ...], prefer_expanded: frozenset[str] | None,
              cancel: Any) -> DisplayData:
    graph, surgery = import_core("graph"), import_core("surgery")
    from transfer_studio.core.graph_layout import Hierarchy, compute_layout

    g = graph.model_graph(net, shape, project.model.name)
    if cancel is not None and cancel():
        raise Cancelled()
    h = Hierarchy(g)
    expanded = h.default_expanded()
    if prefer_expanded is not None:
        kept = frozenset(b for b in prefer_expanded if b in h.blocks)
        if kept or not prefer_expanded:
            expanded = kept
    layout = compute_layout(h, expanded)
    try:
        head = surgery.find_head(net)
    except Exception:  # noqa: BLE001 - a model without a Linear head still displays
        head = ""
    key = project_key(project)
    return DisplayData(key, structure_key(project), h, layout, ModelSpec(project.model.name, project.model.weights),
                       project.train.image_size, tuple(shape), surgery.ordered_blocks(net), head,
                       type(net).__name__, ops_json(project.surgery), freeze_data(net, h, key))


# -- the jobs -------------------------------------------------------------------------------------------
def build_display(project: Project, prefer_expanded: frozenset[str] | None = None, validate: bool = False,
                  *, progress: Any = None, cancel: Any = None) -> DisplayData:
    """The project's graph, a first layout and its colours.

    ``validate``: load the pretrained or file weights for real first (a missing or unfitting file is
    the job's error); the network is dropped at once, the graph comes from the meta network.
    """
    if progress:
        progress(0, 0)
    if validate and str(project.model.weights).strip().lower() != "none":
        import_core("network").build_network(project)
        if cancel is not None and cancel():
            raise Cancelled()
    lent = borrow(project)
    try:
        return _describe(lent.net, project, lent.shape, prefer_expanded, cancel)
    finally:
        NETWORKS.give(lent.key, lent.net, lent.snapshot, applied=lent.applied)


def load_display(project: Project, *, progress: Any = None, cancel: Any = None) -> tuple[DisplayData, bool]:
    """``build_display`` of another model, its weights loaded for real; the image size is reset to the
    model's own when the project's does not suit it (then True)."""
    network = import_core("network")
    reset = False
    if project.train.image_size is not None:
        try:
            network.input_shape(project)
        except Exception:  # noqa: BLE001 - an incompatible size falls back to the model's own
            project.train.image_size = None
            reset = True
    return build_display(project, None, True, progress=progress, cancel=cancel), reset


def try_structural(project: Project, op: SurgeryOp, prefer_expanded: frozenset[str] | None, *,
                   progress: Any = None, cancel: Any = None) -> DisplayData:
    """``op`` applied after the project's surgery (the core validates it: a SurgeryError leaves nothing
    changed); the display of the project with it."""
    network, surgery = import_core("network"), import_core("surgery")
    if progress:
        progress(0, 0)
    candidate = project.copy()
    candidate.surgery = [*project.surgery, op]
    shape = tuple(network.input_shape(candidate))
    lent = borrow(project)
    try:
        surgery.apply_op(lent.net, op, shape)
    except BaseException:
        NETWORKS.give(lent.key, lent.net, lent.snapshot)
        raise
    key = _pool_key(candidate, shape, candidate.surgery)  # op is structural: the whole list is the prefix
    try:
        return _describe(lent.net, candidate, shape, prefer_expanded, cancel)
    finally:
        NETWORKS.give(key, lent.net, _flags(lent.net), taken=lent.key, applied=())


def compute_freeze(project: Project, hierarchy: Any) -> FreezeData:
    """The freeze status of every box and the counts, from the project's operations (a status job)."""
    lent = borrow(project)
    try:
        return freeze_data(lent.net, hierarchy, project_key(project))
    finally:
        NETWORKS.give(lent.key, lent.net, lent.snapshot, applied=lent.applied)


def read_catalog(rows: Any = None) -> tuple[list[Any], Any]:
    """Every catalog model with its offline availability, and ``rows(infos)`` (the page's table rows,
    made on this thread too)."""
    infos = import_core("catalog").list_models()
    return infos, rows(infos) if rows is not None else None


def download_weights(name: str, *, progress: Any = None, cancel: Any = None) -> str:
    import_core("catalog").build_model(name, "DEFAULT", allow_download=True, progress=progress, cancel=cancel)
    return name


# -- plain checks and counts (any thread) ---------------------------------------------------------------
def check_freeze_ops(ops: list[SurgeryOp], params: tuple[Param, ...], units: list[str]) -> None:
    """Refuse freeze ops that name nothing in the network, as ``core.surgery`` would (UserError)."""
    names = [p[0] for p in params]
    for op in ops:
        target = op.target.strip()
        if op.op == "freeze_before":
            if not any(u == target or u.startswith(target + ".") for u in units) or not target:
                raise UserError(f"{op.op} '{target}': not one of the model's blocks")
        elif op.op in ("freeze", "unfreeze"):
            if target in ("", "*"):
                continue
            prefix = target[:-1] if target.endswith("*") else None
            if prefix is not None:
                ok = any(n.startswith(prefix) for n in names)
            else:
                ok = any(n == target or n.startswith(target + ".") for n in names)
            if not ok:
                raise UserError(f"{op.op} '{target}': no parameters of the model are named so")
        else:
            raise UserError(f"{op.op} is not a freeze operation")


class _Counted:
    __slots__ = ("n", "requires_grad")

    def __init__(self, n: int, requires_grad: bool):
        self.n, self.requires_grad = n, requires_grad

    def numel(self) -> int:
        return self.n


def overlay_status(hierarchy: Any, status: FreezeData,
                   event: Any) -> tuple[dict[str, UnitStatus], dict[str, UnitStatus], int, int]:
    """The boxes as a running training has them (``event``: ``training.events.PhaseChanged``): the
    project's flags, plus what its phase unfroze."""
    phase = getattr(event, "phase", "")
    unfrozen = [u for u in getattr(event, "unfrozen", []) or [] if isinstance(u, str)]

    def trains(name: str, trainable: bool) -> bool:
        if phase == "full":
            return True
        return trainable or any(u in ("", "*") or name == u or name.startswith(u + ".") for u in unfrozen)

    params = [(name, _Counted(n, trains(name, t))) for name, n, t in status.params]
    nodes, blocks = compute_status(hierarchy, module_counts(params), status.modified)
    return nodes, blocks, sum(p.n for _, p in params if p.requires_grad), sum(p.n for _, p in params)
