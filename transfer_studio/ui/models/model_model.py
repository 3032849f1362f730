"""The Model page's model: the project's network as a graph, its freeze map and surgery as undoable
edits, the freeze status of every box, and (``browser``: ``model_browser.CatalogBrowser``) the catalog
and the model chosen in it.

The project is the source of truth and no network lives on the GUI thread. Jobs (``model_network``)
build the project's network on the meta device, turn it into graph data, a first layout and the status
of every box, and hand back plain data. A freeze click is an undoable ``ProjectEdit`` of the surgery
list (plus ``user_set``: strategy Auto keeps the user's freeze map); the changed project starts a
status job, whose answer recolours the graph. Structural surgery (replace head, insert, remove) is
tried in a job first and only recorded when the core's validation accepts it. Loading another model
or a weights file loads it for real in a job, then records it. Answers of a job that a newer one has
replaced are dropped (tokens). While training runs, the graph can show the run's phase (the
overlay) without touching the project.

The page builds the widgets, forwards what the user does and shows what the model announces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transfer_studio.config import ModelSpec, Project, SurgeryOp
from transfer_studio.core.freeze_status import UnitStatus
from transfer_studio.errors import UserError
from transfer_studio.ui.models import model_text as text
from transfer_studio.ui.models import model_units as units
from transfer_studio.ui.models.base import Event, Host, Job, JobRunner, ProjectEdit
from transfer_studio.ui.models.model_browser import CatalogBrowser
from transfer_studio.ui.models.model_network import (
    DisplayData,
    FreezeData,
    build_display,
    check_freeze_ops,
    compute_freeze,
    load_display,
    overlay_status,
    project_key,
    structure_key,
    try_structural,
)
from transfer_studio.ui.models.model_text import Formats, MenuState
from transfer_studio.ui.runtime import import_core

_NONE = UnitStatus()


class ModelModel:
    """See the module docstring. Events: ``message(text, level, details)``, ``messageCleared()``,
    ``busyStarted(label, job)``, ``busyStopped()``, ``catalogLoaded(infos, rows)``, ``selectRequested(name)``
    (show this model in the table), ``selectionChanged(info)``, ``buttonsChanged()``,
    ``displayChanged(display, same_model)``, ``displayFailed(graph_text, label_text)``, ``statusChanged()``
    (``shown``: the boxes' colours and the counts), ``overlayChanged(line)`` ("" when hidden)."""

    EVENTS = ("message", "messageCleared", "busyStarted", "busyStopped", "catalogLoaded", "selectRequested",
              "selectionChanged", "buttonsChanged", "displayChanged", "displayFailed", "statusChanged",
              "overlayChanged")

    def __init__(self, host: Host, jobs: JobRunner, *,
                 expanded: Callable[[], frozenset[str] | None] = lambda: None,
                 catalog_rows: Callable[[list[Any]], Any] | None = None, formats: Formats | None = None):
        """``expanded``: the blocks the page shows open (kept in a new graph of the same model);
        ``catalog_rows``: the page's table rows for the catalog, made on the catalog job's thread;
        ``formats``: the page's number formats."""
        self.host, self.jobs = host, jobs
        self.expanded = expanded
        self.formats = formats or Formats()
        for name in self.EVENTS:
            setattr(self, name, Event())
        self.browser = CatalogBrowser(self, jobs, catalog_rows)
        self.display: DisplayData | None = None
        self.status: FreezeData | None = None  # the project's freeze status
        self.overlay: Any = None  # training.events.PhaseChanged shown instead of the project's flags
        self.shown: tuple[dict[str, UnitStatus], dict[str, UnitStatus], int, int] = ({}, {}, 0, 0)
        self.display_job: Job | None = None
        self.edit_job: Job | None = None
        self.status_job: Job | None = None
        self._tokens = {"display": 0, "edit": 0, "status": 0}
        self._wanted: dict[str, str | None] = {"display": None, "status": None}  # the keys being computed
        self._validated: tuple[str, str] | None = None  # the model and weights really loaded once
        self.closing = False
        host.projectReplaced.connect(self._on_project_replaced)
        host.projectChanged.connect(self._on_project_changed)
        host.trainingPhaseChanged.connect(self.set_phase)
        host.trainingActiveChanged.connect(self._on_training_active)

    def _next(self, kind: str) -> int:
        self._tokens[kind] += 1
        return self._tokens[kind]

    def _current(self, kind: str, token: int) -> bool:
        return not self.closing and token == self._tokens[kind]

    def _start(self, label: str, job: Job) -> Job | None:
        """The job if it is still running (a synchronous runner has finished it), announced as busy."""
        if not job.is_running():
            return None
        self.busyStarted.emit(label, job)
        return job

    # -- loading a model (chosen in ``browser``) ---------------------------------------------------------
    def load_model(self, name: str, weights: str = "DEFAULT") -> None:
        """Try ``name`` with ``weights`` in the background; record it in the project if it loads."""
        before = ProjectEdit.snapshot(self.host.project, "model", "surgery", "image_size")
        candidate = self.host.project.copy()
        candidate.model = ModelSpec(name=name, weights=weights)
        candidate.surgery = []
        what = text.loaded_weights(weights)
        self.messageCleared.emit()
        self._cancel_edit()
        token = self._next("edit")

        def done(result: tuple[DisplayData, bool]) -> None:
            if not self._current("edit", token):
                return
            display, reset = result
            self._edit_over()
            self._validated = (name, weights)
            edit = ProjectEdit(f"Load {name}", before,
                               {"model": candidate.model, "surgery": [], "image_size": display.image_size})
            self._install(display)
            self.host.push_edit(edit)
            note = " (image size reset to the model's default)" if reset else ""
            self.host.status(f"Loaded {name} with {what}{note}.")

        def failed(message: str, details: str) -> None:
            if self._current("edit", token):
                self._edit_over()
                self.message.emit(f"Could not load {name}: {message}", "error", details)

        job = self.jobs(load_display, candidate.copy(), name="load-model", on_result=done, on_error=failed,
                        on_cancelled=lambda: self._current("edit", token) and self._edit_over())
        self.edit_job = self._start(f"Loading {name} ({what})…", job)

    # -- keeping the graph in line with the project --------------------------------------------------
    def _on_project_replaced(self) -> None:
        if self.closing:
            return
        self._validated = None  # an opened project's weights are checked again
        if self.overlay is not None:
            self.overlay = None
            self.overlayChanged.emit("")
        self.messageCleared.emit()
        self._cancel_edit()
        self.selectRequested.emit(self.host.project.model.name)
        self.reconcile()

    def _on_project_changed(self, section: str) -> None:
        if section in ("model", "surgery", "train"):
            self.reconcile()

    def reconcile(self) -> None:
        """Show the project: rebuild the graph when its structure changed, else recompute the colours."""
        if self.closing:
            return
        project = self.host.project
        structure = structure_key(project)
        if self.display is None or self.display.structure != structure:
            if self._wanted["display"] != structure:
                self._start_display(project)
            return
        if self._wanted["display"] is not None:  # an older rebuild is no longer needed
            self._next("display")
            self._wanted["display"] = None
            if self.display_job is not None:
                self.display_job.cancel()
                self.display_job = None
                self.busyStopped.emit()
        key = project_key(project)
        if self.status is not None and self.status.key == key:  # shown already (an undo of a pending edit)
            if self._wanted["status"] is not None:
                self._next("status")
                self._wanted["status"], self.status_job = None, None
        elif self._wanted["status"] != key:
            self._start_status(project)

    def _start_display(self, project: Project) -> None:
        project = project.copy()
        token = self._next("display")
        self._next("status")  # colours of the old graph are no longer wanted
        self._wanted["display"], self._wanted["status"] = structure_key(project), None
        if self.display_job is not None:
            self.display_job.cancel()
        same = self.display is not None and self.display.model_spec == project.model
        spec = (project.model.name, project.model.weights)
        validate = project.model.weights.strip().lower() != "none" and spec != self._validated

        def over() -> bool:
            if not self._current("display", token):
                return False
            self.display_job, self._wanted["display"] = None, None
            self.busyStopped.emit()
            return True

        def done(display: DisplayData) -> None:
            if over():
                if validate:
                    self._validated = spec
                self._install(display)
                self.reconcile()  # the project may have moved on while this was building

        def failed(message: str, details: str) -> None:
            if over():
                self._show_build_error(project, message, details)

        job = self.jobs(build_display, project, self.expanded() if same else None, validate, name="model-display",
                        on_result=done, on_error=failed, on_cancelled=over)
        self.display_job = self._start(f"Building {project.model.name} from the project…", job)

    def _start_status(self, project: Project) -> None:
        assert self.display is not None
        token = self._next("status")
        key = project_key(project)
        self._wanted["status"] = key

        def done(data: FreezeData) -> None:
            if self._current("status", token):
                self.status_job, self._wanted["status"] = None, None
                self.status = data
                self._show_status()

        def failed(message: str, details: str) -> None:
            if self._current("status", token):
                self.status_job, self._wanted["status"] = None, None
                self._show_build_error(project, message, details)

        job = self.jobs(compute_freeze, project.copy(), self.display.hierarchy, name="freeze-status",
                        pass_control=False, on_result=done, on_error=failed)
        self.status_job = job if job.is_running() else None

    def _show_build_error(self, project: Project, message: str, details: str) -> None:
        self.display = self.status = None
        self.shown = ({}, {}, 0, 0)
        self._next("status")
        self._wanted["status"] = None
        name = project.model.name
        self.displayFailed.emit(f"{name} could not be built:\n{message}", f"{name} — not loaded")
        self.message.emit(f"Could not build {name}: {message}", "error", details)
        self.buttonsChanged.emit()

    def _install(self, display: DisplayData) -> None:
        """Show a freshly built graph with the colours computed with it."""
        same = self.display is not None and self.display.model_spec == display.model_spec
        self._next("status")
        self._wanted["status"] = None
        self.display, self.status = display, display.status
        self.browser.random_init = display.model_spec.weights == "none"
        self._compute_shown()
        self.displayChanged.emit(display, same)  # the page shows the graph, then ``shown``
        self.buttonsChanged.emit()

    def _show_status(self) -> None:
        if self.display is not None and self.status is not None:
            self._compute_shown()
            self.statusChanged.emit()

    def _compute_shown(self) -> None:
        assert self.display is not None and self.status is not None
        if self.overlay is not None:
            self.shown = overlay_status(self.display.hierarchy, self.status, self.overlay)
        else:
            self.shown = (self.status.nodes, self.status.blocks, self.status.trainable, self.status.total)

    def _cancel_edit(self) -> None:
        if self.edit_job is not None:
            self._next("edit")
            self.edit_job.cancel()
            self._edit_over()

    def _edit_over(self) -> None:
        self.edit_job = None
        self.busyStopped.emit()

    # -- what is shown ---------------------------------------------------------------------------------
    def unit_status(self, unit: str) -> UnitStatus:
        """The colour of a box ("n:<node>" / "b:<block>") as shown (the overlay's while training)."""
        nodes, blocks = self.shown[0], self.shown[1]
        return (blocks if unit.startswith("b:") else nodes).get(unit[2:], _NONE)

    def trainable_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters of the project's network."""
        return (self.status.trainable, self.status.total) if self.status is not None else (0, 0)

    def model_line(self) -> str:
        """The model, its weights and how many changes the project makes to it."""
        d = self.display
        return text.model_line(d.model_spec, len(self.host.project.surgery)) if d is not None else "No model loaded"

    def count_line(self) -> tuple[str, str]:
        return text.count_line(self.shown[2], self.shown[3], self.formats)

    def selection_line(self, unit: str) -> str:
        if not unit or self.display is None:
            return ""
        return text.selection_line(self.display.hierarchy, unit, self.unit_status(unit), self.formats)

    def menu_state(self, unit: str, expanded: bool = False) -> MenuState | None:
        """What the context menu offers for ``unit`` (None without a graph)."""
        return units.menu_state(self.display, self.unit_status, unit, expanded) if self.display is not None else None

    def targets(self, unit: str) -> list[str]:
        """Module or parameter names a freeze of ``unit`` applies to."""
        return units.targets(self.display, self.unit_status, unit) if self.display is not None else []

    # -- the training overlay ----------------------------------------------------------------------------
    def set_phase(self, event: Any) -> None:
        """Training unfroze blocks: colour the graph as the running model is (the project is unchanged)."""
        if self.display is None or self.closing:
            return
        self.overlay = event
        self.overlayChanged.emit(text.phase_line(event))
        self._show_status()

    def _on_training_active(self, active: bool) -> None:
        """The run ended: the graph shows the project again, not the last phase of the run."""
        if active or self.overlay is None or self.closing:
            return
        self.overlay = None
        self.overlayChanged.emit("")
        self._show_status()

    # -- freezing ------------------------------------------------------------------------------------
    def ready_for_edit(self) -> bool:
        if self.display is None:
            self.message.emit("Load a model first.", "info", "")
            return False
        if self.edit_job is not None or self.display.structure != structure_key(self.host.project):
            self.host.status("Wait a moment: the graph is being updated.", 3000)
            return False
        return True

    def push_freeze_ops(self, ops: list[SurgeryOp], title: str) -> bool:
        """Record freeze ops (undoable); the colours follow from a status job. False with a message if
        they name nothing in the network."""
        if not ops or not self.ready_for_edit():
            return False
        if self._wanted["status"] is not None:  # the colours (what a click toggles) are a step behind
            self.host.status("Wait a moment: the freeze map is being updated.", 3000)
            return False
        assert self.display is not None and self.status is not None
        try:
            check_freeze_ops(list(ops), self.status.params, self.display.units)
        except UserError as exc:
            self.message.emit(f"{title}: {exc}", "error", "")
            return False
        project = self.host.project
        before = list(project.surgery)
        # A freeze edit is the user's freeze map: strategy Auto keeps it (train.user_set).
        user_before = list(project.train.user_set)
        user_after = user_before + ([] if "freeze" in user_before else ["freeze"])
        self.messageCleared.emit()
        self.host.push_edit(ProjectEdit(title, {"surgery": before, "user_set": user_before},
                                        {"surgery": before + list(ops), "user_set": user_after}))
        return True

    def toggle_freeze(self, unit: str) -> None:
        """Freeze a trainable (or mixed) node/block, unfreeze a frozen one."""
        if not self.targets(unit):
            self.host.status("This layer has no parameters to freeze.", 3000)
            return
        self.set_frozen(unit, self.unit_status(unit).freeze != "frozen")

    def set_frozen(self, unit: str, frozen: bool) -> bool:
        op = "freeze" if frozen else "unfreeze"
        ops = [SurgeryOp(op, t) for t in self.targets(unit)]
        return bool(ops) and self.push_freeze_ops(ops, f"{op.title()} {unit[2:]}")

    def freeze_all(self, frozen: bool) -> bool:
        what = "Freeze" if frozen else "Unfreeze"
        return self.push_freeze_ops([SurgeryOp(what.lower(), "*")], f"{what} everything")

    def freeze_up_to(self, unit: str) -> bool:
        """Freeze everything up to and including this node/block (later layers keep their state)."""
        return self._push_order_ops(unit, units.up_to_ops, "Freeze up to {}")

    def train_from(self, unit: str) -> bool:
        """Train this node/block and everything after it; freeze everything before it."""
        return self._push_order_ops(unit, units.from_ops, "Train from {} on")

    def _push_order_ops(self, unit: str, make: Callable[..., list[SurgeryOp] | None], title: str) -> bool:
        ops = make(self.display, self.unit_status, unit) if self.display is not None else None
        if ops is None:
            self.message.emit(f"Cannot tell where {unit[2:]} sits in the network's order.", "warning", "")
            return False
        return self.push_freeze_ops(ops, title.format(unit[2:]))

    # -- structural surgery --------------------------------------------------------------------------
    def push_structural(self, op: SurgeryOp, title: str) -> bool:
        """Validate ``op`` in the background; record it if the core accepts it."""
        if not self.ready_for_edit():
            return False
        project = self.host.project.copy()
        before, base_key = list(project.surgery), project_key(project)
        token = self._next("edit")
        self.messageCleared.emit()

        def done(display: DisplayData) -> None:
            if not self._current("edit", token):
                return
            self._edit_over()
            if project_key(self.host.project) != base_key:  # the project moved on meanwhile
                self.reconcile()
                return
            self._install(display)
            self.host.push_edit(ProjectEdit(title, {"surgery": before}, {"surgery": [*before, op]}))
            self.host.status(f"{title}: done.", 4000)

        def failed(message: str, details: str) -> None:
            if self._current("edit", token):
                self._edit_over()
                self.message.emit(f"{title} was not applied: {message}", "error", details)

        job = self.jobs(try_structural, project, op, self.expanded(), name="surgery", on_result=done,
                        on_error=failed, on_cancelled=lambda: self._current("edit", token) and self._edit_over())
        self.edit_job = self._start(f"{title}…", job)
        return True

    def default_num_classes(self) -> tuple[int, str]:
        """The class count "Replace head" proposes (``core.head``), and where it comes from."""
        scan = self.host.scan
        return text.class_count_offer(import_core("head").class_count(self.host.project, scan), scan)

    def replace_head(self, params: dict[str, Any]) -> bool:
        return self.push_structural(SurgeryOp("replace_head", "", dict(params)),
                                    f"Replace head ({params.get('num_classes')} classes)")

    def insert_after(self, target: str, layer: dict[str, Any]) -> bool:
        return self.push_structural(SurgeryOp("insert_after", target, {"layer": dict(layer)}),
                                    f"Insert {layer.get('type')} after {target}")

    def remove_layer(self, target: str) -> bool:
        return self.push_structural(SurgeryOp("remove", target), f"Remove {target}")

    # -- lifecycle -------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        self.closing = True
        for job in (self.display_job, self.edit_job, self.status_job):
            if job is not None:
                job.cancel()
        self.browser.shutdown()
        self.busyStopped.emit()
