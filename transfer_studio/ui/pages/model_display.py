"""What the Model page shows, built off the GUI thread, and the undo command for project edits.

``build_display`` turns a project into its network (``core.network.build_network``: real weights,
or the meta device for random init), graph data, a first layout and status colours; ``try_structural`` validates one surgery op on a
copy of the shown network. Both run on ``ui.worker`` threads and import torch lazily.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from PySide6.QtGui import QUndoCommand

from transfer_studio.config import ModelSpec, Project, SurgeryOp
from transfer_studio.errors import Cancelled
from transfer_studio.ui.state import AppState

FREEZE_OPS = ("freeze", "unfreeze", "freeze_before")


@dataclass
class DisplayBuild:
    """Everything the graph needs, computed off the GUI thread."""

    model: Any  # nn.Module
    hierarchy: Any  # graph_layout.Hierarchy
    layout: Any  # graph_layout.Layout
    node_status: dict
    block_status: dict
    trainable: int
    total: int
    key: str
    ops: list[dict]
    model_spec: ModelSpec
    image_size: int | None
    input_shape: tuple[int, ...]
    units: list[str]  # freeze units in forward order (surgery.ordered_blocks)
    head: str


def project_key(project: Project) -> str:
    """What the displayed network depends on: model, weights, surgery, input size."""
    return json.dumps([project.model.name, project.model.weights, ops_json(project.surgery),
                       project.train.image_size], sort_keys=True)


def ops_json(ops: list[SurgeryOp]) -> list[dict]:
    return [{"op": o.op, "target": o.target, "params": o.params} for o in ops]


def status_from_model(model: Any, hierarchy: Any) -> tuple[dict, dict, int, int]:
    from transfer_studio.core import surgery
    from transfer_studio.core.freeze_status import compute_status, module_counts

    nodes, blocks = compute_status(hierarchy, module_counts(model.named_parameters()),
                                   surgery.modified_modules(model))
    trainable, total = surgery.param_counts(model)
    return nodes, blocks, trainable, total


def _describe(model: Any, project: Project, prefer_expanded: frozenset[str] | None,
              cancel: Any = None) -> DisplayBuild:
    from transfer_studio.core import graph, network, surgery
    from transfer_studio.core.graph_layout import Hierarchy, compute_layout

    shape = network.input_shape(project)
    g = graph.model_graph(model, shape, project.model.name)
    if cancel is not None and cancel():
        raise Cancelled()
    h = Hierarchy(g)
    expanded = h.default_expanded()
    if prefer_expanded is not None:
        kept = frozenset(b for b in prefer_expanded if b in h.blocks)
        if kept or not prefer_expanded:
            expanded = kept
    layout = compute_layout(h, expanded)
    nodes, blocks, trainable, total = status_from_model(model, h)
    try:
        head = surgery.find_head(model)
    except Exception:  # noqa: BLE001 - a model without a Linear head still displays
        head = ""
    return DisplayBuild(model, h, layout, nodes, blocks, trainable, total, project_key(project),
                        ops_json(project.surgery), copy.deepcopy(project.model), project.train.image_size,
                        tuple(shape), surgery.ordered_blocks(model), head)


def build_display(project: Project, prefer_expanded: frozenset[str] | None = None, *, progress=None,
                  cancel=None) -> DisplayBuild:
    """The project's network and its graph, layout and colours.

    Pretrained or file weights are really loaded (that is what tells the user a file is missing or
    does not fit). Random init is built on the meta device: the same layers, names and freeze map,
    without allocating or initialising anything (seconds of CPU for a large network, which would
    also starve the GUI thread of the machine's cores).
    """
    from transfer_studio.core import network

    if progress:
        progress(0, 0)
    if str(project.model.weights).strip().lower() == "none":
        model = network.build_network_meta(project)
    else:
        model = network.build_network(project)
    if cancel is not None and cancel():
        raise Cancelled()
    return _describe(model, project, prefer_expanded, cancel)


def try_structural(model: Any, project: Project, op: SurgeryOp, prefer_expanded: frozenset[str] | None, *,
                   progress=None, cancel=None) -> DisplayBuild:
    """Apply ``op`` to a copy of the page's network (core validation); the copy's new display.

    ``project`` already holds ``op`` at the end of its surgery. SurgeryError leaves nothing changed.
    """
    from transfer_studio.core import network, surgery

    candidate = copy.deepcopy(model)
    surgery.apply_op(candidate, op, network.input_shape(project))
    return _describe(candidate, project, prefer_expanded, cancel)


# -- undo ------------------------------------------------------------------------------------------
class ProjectEditCommand(QUndoCommand):
    """Swap parts of the project (model spec, surgery list, image size) between two snapshots."""

    def __init__(self, state: AppState, text: str, before: dict[str, Any], after: dict[str, Any]):
        super().__init__(text)
        self.state = state
        self.before = copy.deepcopy(before)
        self.after = copy.deepcopy(after)

    def redo(self) -> None:
        self._apply(self.after)

    def undo(self) -> None:
        self._apply(self.before)

    def _apply(self, snap: dict[str, Any]) -> None:
        p = self.state.project
        sections = []
        if "model" in snap:
            p.model = copy.deepcopy(snap["model"])
            sections.append("model")
        if "image_size" in snap:
            p.train.image_size = snap["image_size"]
            sections.append("train")
        if "surgery" in snap:
            p.surgery = copy.deepcopy(snap["surgery"])
            sections.append("surgery")
        if "user_set" in snap:  # which values the user chose (strategy Auto keeps them)
            p.train.user_set = list(snap["user_set"])
            if "train" not in sections:
                sections.append("train")
        for section in sections:
            self.state.mark_changed(section)
