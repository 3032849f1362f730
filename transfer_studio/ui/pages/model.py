"""The Model page: the model browser (catalog) and the interactive graph, which is also the freeze map.

The project file is the source of truth. The page's network (``self.model``) is always
``network.build_network(project)`` (``build_network_meta`` for random init), built on a worker
thread; it is only shown and edited here, never handed to training. Every freeze or surgery action is recorded as ``SurgeryOp``s through an
undo command on ``state.undo_stack``; the page then brings its network in line with the project:

- freeze ops appended at the end are applied to the network on the spot (cheap: requires_grad);
- undoing freeze ops restores the requires_grad snapshot taken before them;
- anything else (structural surgery, another model, ops rewritten by the Strategy page) rebuilds
  the network from the project in the background.

Structural surgery (replace head, insert, remove) is tried on a copy of the network first, off the
GUI thread, and only recorded when the core's validation accepts it; otherwise the error is shown
and nothing changes.
"""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import (
    QPoint,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.config import ModelSpec, Project, SurgeryOp
from transfer_studio.ui import theme
from transfer_studio.ui.pages.model_catalog import (
    COLUMNS,
    CatalogFilter,
    CatalogModel,
    details_html,
    download_weights,
    list_catalog,
    missing_weights_text,
)
from transfer_studio.ui.pages.model_display import (
    FREEZE_OPS,
    DisplayBuild,
    ProjectEditCommand,
    build_display,
    ops_json,
    project_key,
    status_from_model,
    try_structural,
)
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import BusyIndicator, MessageBanner, format_count, format_share
from transfer_studio.ui.widgets.elided_label import ElidedLabel
from transfer_studio.ui.worker import TaskHandle, run_task

__all__ = ["ModelPage", "ProjectEditCommand", "ReplaceHeadDialog", "project_key"]



# -- dialogs -----------------------------------------------------------------------------------------
class ReplaceHeadDialog(QDialog):
    """Number of classes, dropout and an optional hidden layer for the new classification head."""

    def __init__(self, num_classes: int, source: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("replace_head_dialog")
        self.setWindowTitle("Replace head")
        self.classes = QSpinBox()
        self.classes.setObjectName("num_classes_spin")
        self.classes.setRange(2, 100_000)
        self.classes.setValue(max(2, num_classes))
        self.dropout = QDoubleSpinBox()
        self.dropout.setObjectName("dropout_spin")
        self.dropout.setRange(0.0, 0.9)
        self.dropout.setSingleStep(0.1)
        self.hidden = QSpinBox()
        self.hidden.setObjectName("hidden_spin")
        self.hidden.setRange(0, 65_536)
        self.hidden.setSpecialValueText("none")
        note = QLabel(source)
        note.setWordWrap(True)
        note.setProperty("role", "muted")
        form = QFormLayout(self)
        form.addRow("Classes:", self.classes)
        form.addRow("", note)
        form.addRow("Dropout before it:", self.dropout)
        form.addRow("Hidden layer width:", self.hidden)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"num_classes": self.classes.value()}
        if self.dropout.value() > 0:
            out["dropout"] = round(self.dropout.value(), 3)
        if self.hidden.value() > 0:
            out["hidden"] = self.hidden.value()
        return out

    @classmethod
    def ask(cls, parent: QWidget, num_classes: int, source: str) -> dict[str, Any] | None:
        dlg = cls(num_classes, source, parent)
        return dlg.params() if dlg.exec() == QDialog.DialogCode.Accepted else None


# -- the page ----------------------------------------------------------------------------------------
class ModelPage(QWidget):
    TITLE = "Model"

    displayChanged = Signal()  # a new network/graph is shown (tests, other widgets)
    catalogLoaded = Signal()

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_model")
        self.state = state
        self.model: Any = None  # the displayed nn.Module (built from the project)
        self.display: DisplayBuild | None = None
        self._shown_key: str | None = None
        self._status_key: str | None = None  # the project key the shown colours were computed for
        self._shown_ops: list[dict] = []
        self._snapshots: dict[int, dict[str, bool]] = {}
        self._build_task: TaskHandle | None = None
        self._build_key: str | None = None
        self._build_seq = 0
        self._edit_task: TaskHandle | None = None
        self._download_task: TaskHandle | None = None
        self._catalog_task: TaskHandle | None = None
        self._phase_overlay: Any = None
        self._closing = False
        self.context_menu: QMenu | None = None
        self._heap_settled = False
        self._build_ui()
        self._connect_state()
        self._load_catalog()
        QTimer.singleShot(0, self._reconcile)

    # -- UI ------------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.banner = MessageBanner(object_name="model_banner")
        self.busy_bar = BusyIndicator(object_name="model_busy")

        # browser
        self.search = QLineEdit()
        self.search.setObjectName("model_search")
        self.search.setPlaceholderText("Search models (name or family)…")
        self.search.setClearButtonEnabled(True)
        self.offline_only = QCheckBox("Offline only")
        self.offline_only.setObjectName("offline_only")
        self.offline_only.setToolTip("Show only models whose pretrained weights are on this computer")
        self.catalog = CatalogModel(self)
        self.proxy = CatalogFilter(self)
        self.proxy.setSourceModel(self.catalog)
        self.table = QTableView()
        self.table.setObjectName("model_table")
        self.table.setAccessibleName("Model catalog")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        hh = self.table.horizontalHeader()
        for col in range(len(COLUMNS)):
            hh.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)  # family: what is left
        hh.setMinimumSectionSize(36)
        self.table.doubleClicked.connect(lambda _i: self.load_selected())
        self.details = QTextBrowser()
        self.details.setObjectName("model_details")
        self.details.setOpenExternalLinks(True)
        self.details.setMinimumHeight(150)
        self.details.setPlaceholderText("Reading the model catalog…")
        self.random_init = QCheckBox("Random init")
        self.random_init.setObjectName("random_init")
        self.random_init.setToolTip("Start from random weights instead of pretrained ones (no weights file needed)")
        self.load_button = QPushButton("Load")
        self.load_button.setObjectName("load_button")
        self.load_button.setProperty("primary", True)
        self.load_button.setToolTip("Use the selected model in this project")
        self.download_button = QPushButton("Download weights")
        self.download_button.setObjectName("download_button")
        self.open_weights_button = QPushButton("Open weights file…")
        self.open_weights_button.setObjectName("open_weights_button")
        self.open_weights_button.setToolTip("Load your own .pth / .pt / .safetensors state dict into the selected architecture")
        buttons = QHBoxLayout()
        buttons.addWidget(self.random_init)
        buttons.addStretch(1)
        buttons.addWidget(self.open_weights_button)
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.load_button)
        head = QHBoxLayout()
        title = QLabel("Pretrained models")
        title.setProperty("role", "subheading")
        head.addWidget(title)
        head.addStretch(1)
        head.addWidget(self.offline_only)
        browser = QWidget()
        browser.setObjectName("model_browser")
        bl = QVBoxLayout(browser)
        bl.setContentsMargins(0, 0, 6, 0)
        bl.addLayout(head)
        bl.addWidget(self.search)
        vsplit = QSplitter(Qt.Orientation.Vertical)
        vsplit.setObjectName("browser_splitter")
        vsplit.addWidget(self.table)
        vsplit.addWidget(self.details)
        vsplit.setStretchFactor(0, 3)
        vsplit.setStretchFactor(1, 2)
        bl.addWidget(vsplit, 1)
        bl.addLayout(buttons)

        # graph panel
        from transfer_studio.ui.graph_view import GraphView

        self.view = GraphView()
        self.current_label = QLabel("No model loaded")
        self.current_label.setObjectName("current_model_label")
        self.current_label.setProperty("role", "subheading")
        self.count_label = QLabel("")
        self.count_label.setObjectName("param_count_label")
        self.count_label.setToolTip("Parameters that training will update, out of all parameters")
        self.graph_search = QLineEdit()
        self.graph_search.setObjectName("graph_search")
        self.graph_search.setPlaceholderText("Find layer by name or type (Ctrl+F)")
        self.graph_search.setClearButtonEnabled(True)
        self.graph_search.setMinimumWidth(180)
        self.graph_search.setMaximumWidth(280)
        self.match_label = QLabel("")
        self.match_label.setObjectName("match_label")
        self.match_label.setMinimumWidth(60)

        def tool(name: str, icon: str, tip: str, slot: Any) -> QToolButton:
            b = QToolButton()
            b.setObjectName(name)
            b.setToolTip(tip)
            b.setAccessibleName(tip)
            b.setAutoRaise(True)
            b.clicked.connect(slot)
            b.setProperty("icon_name", icon)
            return b

        self.prev_button = tool("match_prev", "", "Previous match (Shift+Enter)", lambda: self._step_match(-1))
        self.prev_button.setText("‹")
        self.next_button = tool("match_next", "", "Next match (Enter)", lambda: self._step_match(1))
        self.next_button.setText("›")
        self.zoom_out_button = tool("zoom_out", "zoom-out", "Zoom out (−)", self.view.zoom_out)
        self.zoom_in_button = tool("zoom_in", "zoom-in", "Zoom in (+)", self.view.zoom_in)
        self.fit_button = tool("fit_view", "fit", "Fit to view (0)", self.view.fit_all)
        self.expand_button = tool("expand_all", "expand", "Expand all blocks", self.view.expand_all)
        self.collapse_button = tool("collapse_all", "collapse", "Collapse all blocks", self.view.collapse_all)
        self.minimap_button = tool("toggle_minimap", "", "Show or hide the overview", self._toggle_minimap)
        self.minimap_button.setText("Overview")
        self.minimap_button.setCheckable(True)
        self.minimap_button.setChecked(True)
        self.head_button = QPushButton("Replace head…")
        self.head_button.setObjectName("replace_head_button")
        self.head_button.setToolTip("A new classification layer for your classes")
        self.head_button.clicked.connect(lambda: self.replace_head())
        bar = QHBoxLayout()
        bar.setSpacing(2)
        bar.addWidget(self.graph_search)
        bar.addWidget(self.prev_button)
        bar.addWidget(self.next_button)
        bar.addWidget(self.match_label)
        bar.addStretch(1)
        for b in (self.zoom_out_button, self.zoom_in_button, self.fit_button, self.expand_button,
                  self.collapse_button, self.minimap_button):
            bar.addWidget(b)
        bar.addSpacing(8)
        bar.addWidget(self.head_button)
        top = QHBoxLayout()
        top.addWidget(self.current_label)
        top.addStretch(1)
        top.addWidget(self.count_label)

        self.legend = QWidget()
        self.legend.setObjectName("graph_legend")
        self._legend_layout = QHBoxLayout(self.legend)
        self._legend_layout.setContentsMargins(0, 0, 0, 0)
        self._legend_labels: list[tuple[QLabel, str]] = []
        for key, text in (("frozen", "Frozen"), ("trainable", "Trainable"), ("modified", "New / modified"),
                          ("neutral", "No parameters")):
            sw = QLabel()
            lab = QLabel(text)
            self._legend_labels.append((sw, key))
            self._legend_layout.addWidget(sw)
            self._legend_layout.addWidget(lab)
            self._legend_layout.addSpacing(10)
        # One line, shortened to the room left: a long training message must not widen the graph
        # panel (it squeezed the catalog until its Top-1 and GFLOPs columns disappeared).
        self.phase_label = ElidedLabel("", min_chars=12,
                                       hint="The colours follow the running training; the project is unchanged.")
        self.phase_label.setObjectName("phase_label")
        self.phase_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.phase_label.setVisible(False)
        hint = QLabel("Click a layer's dot to freeze or unfreeze it · right-click for more · double-click a block to open it")
        hint.setProperty("role", "muted")
        hint.setObjectName("graph_hint")
        # The stretch keeps the legend together while the message is hidden; shown, the message
        # takes the room (its stretch is far larger).
        self._legend_layout.addStretch(1)
        self._legend_layout.addWidget(self.phase_label, 100)
        self.selection_label = QLabel("")
        self.selection_label.setObjectName("selection_label")
        self.selection_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        graph_panel = QWidget()
        graph_panel.setObjectName("graph_panel")
        gl = QVBoxLayout(graph_panel)
        gl.setContentsMargins(6, 0, 0, 0)
        gl.addLayout(top)
        gl.addLayout(bar)
        gl.addWidget(self.view, 1)
        gl.addWidget(self.legend)
        gl.addWidget(self.selection_label)
        gl.addWidget(hint)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("model_splitter")
        self.splitter.addWidget(browser)
        self.splitter.addWidget(graph_panel)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([470, 700])
        self.splitter.setChildrenCollapsible(True)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 8, 10, 6)
        lay.addWidget(self.banner)
        lay.addWidget(self.busy_bar)
        lay.addWidget(self.splitter, 1)

        # signals
        self.search.textChanged.connect(self.proxy.set_text)
        self.offline_only.toggled.connect(self.proxy.set_offline_only)
        self.table.selectionModel().currentRowChanged.connect(lambda _c, _p: self._on_selection())
        self.random_init.toggled.connect(lambda _on: self._update_buttons())
        self.load_button.clicked.connect(self.load_selected)
        self.download_button.clicked.connect(self.download_selected)
        self.open_weights_button.clicked.connect(self.open_weights_file)
        self.graph_search.textChanged.connect(self._on_graph_search)
        self.graph_search.returnPressed.connect(lambda: self._step_match(1))
        QShortcut(QKeySequence("Shift+Return"), self.graph_search, activated=lambda: self._step_match(-1))
        QShortcut(QKeySequence.StandardKey.Find, self, activated=self._focus_search)
        self.view.freezeToggleRequested.connect(self.toggle_freeze)
        self.view.contextMenuRequested.connect(self._context_menu)
        self.view.selectionChangedTo.connect(self._on_unit_selected)
        self.view.layoutPending.connect(self._on_layout_pending)
        theme.notifier().themeChanged.connect(self._refresh_icons)
        self._refresh_icons()
        self._update_buttons()
        self._restore_splitter()

    def _refresh_icons(self, _theme: str = "") -> None:
        for b in self.findChildren(QToolButton):
            name = b.property("icon_name")
            if name:
                b.setIcon(theme.icon(name))
        sem = theme.semantic_colors()
        colours = {"frozen": sem.frozen, "trainable": sem.trainable, "modified": sem.modified,
                   "neutral": sem.neutral}
        for sw, key in self._legend_labels:
            sw.setPixmap(theme.swatch(colours[key]))

    def _restore_splitter(self) -> None:
        from transfer_studio.ui.settings import Settings

        state = Settings().splitter_state("model")
        if state is not None:
            self.splitter.restoreState(state)

    def _connect_state(self) -> None:
        s = self.state
        s.projectReplaced.connect(self._on_project_replaced)
        s.projectChanged.connect(self._on_project_changed)
        s.trainingPhaseChanged.connect(self._on_phase_changed)
        s.trainingActiveChanged.connect(self._on_training_active)

    # -- catalog -------------------------------------------------------------------------------
    def _load_catalog(self) -> None:
        def done(result: tuple[list[Any], list[Any]]) -> None:
            if self._closing:
                return
            self.catalog.set_infos(*result)
            self.table.resizeColumnsToContents()
            self._select_in_table(self.state.project.model.name)
            self.catalogLoaded.emit()

        def failed(message: str, details: str) -> None:
            if not self._closing:
                self.banner.show_message(f"Could not read the model catalog: {message}", "error",
                                         details=details or None)

        self._catalog_task = run_task(list_catalog, theme.is_dark(), name="catalog", on_result=done,
                                      on_error=failed)

    def refresh_catalog(self) -> None:
        """Re-check which weights are on disk (after a download or a copied file)."""
        self._load_catalog()

    def _select_in_table(self, name: str) -> None:
        row = self.catalog.row_of(name)
        if row < 0:
            return
        idx = self.proxy.mapFromSource(self.catalog.index(row, 0))
        if idx.isValid():
            self.table.selectRow(idx.row())
            self.table.scrollTo(idx, QAbstractItemView.ScrollHint.PositionAtCenter)

    def select_model(self, name: str) -> bool:
        """Select ``name`` in the table (clearing the search if it hides it); False if unknown."""
        if self.catalog.row_of(name) < 0:
            return False
        idx = self.proxy.mapFromSource(self.catalog.index(self.catalog.row_of(name), 0))
        if not idx.isValid():
            self.search.clear()
            self.offline_only.setChecked(False)
        self._select_in_table(name)
        return True

    def selected_info(self) -> Any:
        idx = self.table.selectionModel().currentIndex()
        if not idx.isValid():
            rows = self.table.selectionModel().selectedRows()
            if not rows:
                return None
            idx = rows[0]
        src = self.proxy.mapToSource(idx)
        return self.catalog.infos[src.row()] if src.isValid() else None

    def _on_selection(self) -> None:
        info = self.selected_info()
        self.details.setHtml(details_html(info) if info is not None else "")
        self._update_buttons()

    def _update_buttons(self) -> None:
        info = self.selected_info()
        busy = self._download_task is not None
        available = info is not None and info.weights_available_offline
        self.load_button.setEnabled(info is not None and not busy and (available or self.random_init.isChecked()))
        can_download = info is not None and not available and info.weights_url is not None
        self.download_button.setVisible(can_download)
        self.download_button.setEnabled(can_download and not busy)
        if can_download and info.weights_size_mb:
            self.download_button.setText(f"Download weights ({info.weights_size_mb:.0f} MB)")
        else:
            self.download_button.setText("Download weights")
        self.open_weights_button.setEnabled(info is not None and not busy)
        self.head_button.setEnabled(self.model is not None)

    # -- loading -------------------------------------------------------------------------------
    def load_selected(self) -> None:
        info = self.selected_info()
        if info is None:
            self.banner.show_message("Select a model in the table first.", "info")
            return
        weights = "none" if self.random_init.isChecked() else "DEFAULT"
        if weights == "DEFAULT" and not info.weights_available_offline:
            self.banner.show_message(missing_weights_text(info), "warning")
            return
        self.load_model(info.name, weights)

    def load_model(self, name: str, weights: str = "DEFAULT") -> None:
        """Try ``name`` with ``weights`` in the background; record it in the project if it loads."""
        before = self.state.project
        candidate = before.copy()
        candidate.model = ModelSpec(name=name, weights=weights)
        candidate.surgery = []
        note = ""
        if candidate.train.image_size is not None:
            try:
                from transfer_studio.core import network

                network.input_shape(candidate)
            except Exception:  # noqa: BLE001 - an incompatible size falls back to the model's own
                candidate.train.image_size = None
                note = " (image size reset to the model's default)"
        what = "random weights" if weights == "none" else ("pretrained weights" if weights == "DEFAULT"
                                                           else os.path.basename(weights))
        self.banner.clear()

        def done(result: DisplayBuild) -> None:
            if self._closing:
                return
            self._edit_task = None
            self.busy_bar.stop()
            cmd = ProjectEditCommand(
                self.state, f"Load {name}",
                {"model": before.model, "surgery": before.surgery, "image_size": before.train.image_size},
                {"model": candidate.model, "surgery": [], "image_size": candidate.train.image_size})
            self._install(result)
            self.state.undo_stack.push(cmd)
            self.state.status(f"Loaded {name} with {what}{note}.")

        def failed(message: str, details: str) -> None:
            self._edit_task = None
            self.busy_bar.stop()
            if not self._closing:
                self.banner.show_message(f"Could not load {name}: {message}", "error", details=details or None)

        self._cancel_edit()
        self._edit_task = run_task(build_display, candidate, None, name="load-model", on_result=done,
                                   on_error=failed, on_cancelled=self._edit_cancelled)
        self.busy_bar.start(f"Loading {name} ({what})…", handle=self._edit_task)

    def open_weights_file(self) -> None:
        info = self.selected_info()
        if info is None:
            self.banner.show_message("Select the architecture the weights belong to, then open the file.", "info")
            return
        from transfer_studio.ui.settings import Settings

        settings = Settings()
        path, _ = QFileDialog.getOpenFileName(
            self, f"Open weights for {info.name}", settings.last_folder("weights"),
            "State dicts (*.safetensors *.pth *.pt *.bin);;All files (*)")
        if not path:
            return
        settings.set_last_folder("weights", os.path.dirname(path))
        self.load_model(info.name, path)

    def download_selected(self) -> None:
        info = self.selected_info()
        if info is None or self._download_task is not None:
            return
        name = info.name
        self.banner.clear()

        def done(_name: str) -> None:
            self._download_task = None
            self.busy_bar.stop()
            if self._closing:
                return
            self.state.status(f"Downloaded the weights of {name}.")
            self.refresh_catalog()
            self._update_buttons()
            self.load_model(name, "DEFAULT")

        def failed(message: str, details: str) -> None:
            self._download_task = None
            self.busy_bar.stop()
            self._update_buttons()
            if not self._closing:
                self.banner.show_message(f"Download failed: {message}", "error", details=details or None)

        def cancelled() -> None:
            self._download_task = None
            self.busy_bar.stop()
            self._update_buttons()
            if not self._closing:
                self.banner.show_message(f"Download of {name} cancelled; nothing was saved.", "info")

        self._download_task = run_task(download_weights, name, name="download", on_result=done,
                                       on_error=failed, on_cancelled=cancelled, progress_interval=0.1)
        size = f" ({info.weights_size_mb:.0f} MB)" if info.weights_size_mb else ""
        self.busy_bar.start(f"Downloading the weights of {name}{size}…", handle=self._download_task)
        self._update_buttons()

    # -- keeping the network in line with the project ------------------------------------------
    def _on_project_replaced(self) -> None:
        self._phase_overlay = None
        self.phase_label.setVisible(False)
        self.banner.clear()
        self._cancel_edit()
        self._select_in_table(self.state.project.model.name)
        self._reconcile()

    def _on_project_changed(self, section: str) -> None:
        if section in ("model", "surgery", "train"):
            self._reconcile()

    def _reconcile(self) -> None:
        """Bring ``self.model`` in line with the project: cheap paths for freeze ops, else rebuild."""
        if self._closing:
            return
        project = self.state.project
        key = project_key(project)
        if key == self._shown_key:
            if self._build_task is not None:  # an older rebuild is no longer needed
                self._build_seq += 1
                self._build_task.cancel()
                self._build_task = None
                self._build_key = None
                self.busy_bar.stop()
            if self._status_key != key:  # colours already match the network after _install
                self._refresh_status()
            return
        if key == self._build_key:
            return
        d = self.display
        if self.model is not None and d is not None and not self._task_running() and (
                d.model_spec == project.model and d.image_size == project.train.image_size):
            new_ops = ops_json(project.surgery)
            cur = self._shown_ops
            n = len(cur)
            if len(new_ops) > n and new_ops[:n] == cur and all(o["op"] in FREEZE_OPS for o in new_ops[n:]):
                try:
                    self._apply_freeze_ops(project.surgery[n:], n)
                    self._shown_ops, self._shown_key = new_ops, key
                    self._refresh_status()
                    return
                except Exception:  # noqa: BLE001 - the rebuild below reports the problem
                    pass
            elif len(new_ops) < n and cur[:len(new_ops)] == new_ops and len(new_ops) in self._snapshots \
                    and all(o["op"] in FREEZE_OPS for o in cur[len(new_ops):]):
                self._restore_snapshot(len(new_ops))
                self._shown_ops, self._shown_key = new_ops, key
                self._refresh_status()
                return
        self._rebuild()

    def _rebuild(self) -> None:
        project = self.state.project.copy()
        key = project_key(project)
        self._build_seq += 1
        seq = self._build_seq
        if self._build_task is not None:
            self._build_task.cancel()
        prefer = self.view.expanded() if (self.display is not None and self.display.model_spec == project.model) else None

        def done(result: DisplayBuild) -> None:
            if self._closing or seq != self._build_seq:
                return
            self._build_task, self._build_key = None, None
            self.busy_bar.stop()
            self._install(result)
            self._reconcile()  # the project may have moved on while this was building

        def failed(message: str, details: str) -> None:
            if self._closing or seq != self._build_seq:
                return
            self._build_task, self._build_key = None, None
            self.busy_bar.stop()
            self._show_build_error(project, message, details)

        def cancelled() -> None:
            if seq == self._build_seq:
                self._build_task, self._build_key = None, None
                self.busy_bar.stop()

        self._build_key = key
        self._build_task = run_task(build_display, project, prefer, name="model-display", on_result=done,
                                    on_error=failed, on_cancelled=cancelled)
        self.busy_bar.start(f"Building {project.model.name} from the project…", handle=self._build_task)

    def _show_build_error(self, project: Project, message: str, details: str) -> None:
        self.model = None
        self.display = None
        self._shown_key = None
        self._shown_ops = []
        self._snapshots = {}
        self.view.clear_graph(f"{project.model.name} could not be built:\n{message}")
        self.current_label.setText(f"{project.model.name} — not loaded")
        self.count_label.setText("")
        self.banner.show_message(f"Could not build {project.model.name}: {message}", "error",
                                 details=details or None)
        self._update_buttons()

    def _install(self, result: DisplayBuild) -> None:
        """Show a freshly built network (GUI thread: only item creation happens here)."""
        same_model = self.display is not None and self.display.model_spec == result.model_spec \
            and self.view.hierarchy is not None
        self.model = result.model
        self.display = result
        self._shown_key = result.key
        self._status_key = result.key  # the build computed the colours of exactly this network
        self._shown_ops = result.ops
        self._snapshots = {}
        if same_model:
            centre = self.view.mapToScene(self.view.viewport().rect().center())
            zoom = self.view.zoom()
            self.view.set_graph(result.hierarchy, result.layout)
            self.view._set_zoom(zoom)
            self.view.centerOn(centre)
        else:
            self.view.set_graph(result.hierarchy, result.layout)
        self.view.set_status(result.node_status, result.block_status)
        if self.graph_search.text().strip():
            self._on_graph_search(self.graph_search.text())
        self._update_labels(result.trainable, result.total)
        self.random_init.setChecked(result.model_spec.weights == "none")
        self._update_buttons()
        self.displayChanged.emit()
        if not self._heap_settled:  # the first network shown: torchvision and fx are loaded now
            self._heap_settled = True
            from transfer_studio.ui.runtime import settle_heap

            QTimer.singleShot(0, settle_heap)

    def _task_running(self) -> bool:
        return self._edit_task is not None

    def _cancel_edit(self) -> None:
        if self._edit_task is not None:
            self._edit_task.cancel()
            self._edit_task = None
            self.busy_bar.stop()

    def _edit_cancelled(self) -> None:
        self._edit_task = None
        self.busy_bar.stop()

    # -- freezing ------------------------------------------------------------------------------
    def _apply_freeze_ops(self, ops: list[SurgeryOp], at: int) -> None:
        """Apply freeze ops to the network now; the requires_grad state before them is kept for undo."""
        from transfer_studio.core import surgery

        snapshot = {name: p.requires_grad for name, p in self.model.named_parameters()}
        try:
            for op in ops:
                surgery.apply_op(self.model, op, self.display.input_shape)
        except Exception:
            self._restore(snapshot)
            raise
        self._snapshots = {k: v for k, v in self._snapshots.items() if k < at}
        self._snapshots[at] = snapshot

    def _restore_snapshot(self, at: int) -> None:
        self._restore(self._snapshots[at])
        self._snapshots = {k: v for k, v in self._snapshots.items() if k < at}

    def _restore(self, snapshot: dict[str, bool]) -> None:
        for name, p in self.model.named_parameters():
            if name in snapshot:
                p.requires_grad_(snapshot[name])

    def _ready_for_edit(self) -> bool:
        if self.model is None or self.display is None:
            self.banner.show_message("Load a model first.", "info")
            return False
        if self._task_running() or self._shown_key != project_key(self.state.project):
            self.state.status("Wait a moment: the graph is being updated.", 3000)
            return False
        return True

    def push_freeze_ops(self, ops: list[SurgeryOp], text: str) -> bool:
        """Apply freeze ops now and record them (undoable). False with a banner if they fail."""
        if not ops or not self._ready_for_edit():
            return False
        before = list(self.state.project.surgery)
        after = before + list(ops)
        try:
            self._apply_freeze_ops(list(ops), len(before))
        except Exception as exc:  # noqa: BLE001 - SurgeryError and friends: shown, nothing recorded
            self.banner.show_message(f"{text}: {exc}", "error")
            return False
        self._shown_ops = ops_json(after)
        tmp = self.state.project.copy()
        tmp.surgery = after
        self._shown_key = project_key(tmp)
        self.banner.clear()
        # Pushing runs the command, which marks the project changed: _reconcile then finds the
        # network already in line and recolours the graph.
        # A freeze edit is the user's freeze map: strategy Auto keeps it (train.user_set).
        user_before = list(self.state.project.train.user_set)
        user_after = user_before + ([] if "freeze" in user_before else ["freeze"])
        self.state.undo_stack.push(ProjectEditCommand(self.state, text, {"surgery": before, "user_set": user_before},
                                                      {"surgery": after, "user_set": user_after}))
        return True

    def toggle_freeze(self, unit: str) -> None:
        """Freeze a trainable (or mixed) node/block, unfreeze a frozen one."""
        st = self.view.status_of(unit)
        targets = self._targets(unit)
        if not targets:
            self.state.status("This layer has no parameters to freeze.", 3000)
            return
        name = unit[2:]
        if st.freeze == "frozen":
            self.push_freeze_ops([SurgeryOp("unfreeze", t) for t in targets], f"Unfreeze {name}")
        else:
            self.push_freeze_ops([SurgeryOp("freeze", t) for t in targets], f"Freeze {name}")

    def set_frozen(self, unit: str, frozen: bool) -> bool:
        targets = self._targets(unit)
        if not targets:
            return False
        op = "freeze" if frozen else "unfreeze"
        return self.push_freeze_ops([SurgeryOp(op, t) for t in targets], f"{op.title()} {unit[2:]}")

    def freeze_up_to(self, unit: str) -> bool:
        """Freeze everything up to and including this node/block (later layers keep their state)."""
        idx = self._unit_index(unit)
        if idx is None:
            self.banner.show_message(f"Cannot tell where {unit[2:]} sits in the network's order.", "warning")
            return False
        units = self.display.units
        if idx + 1 < len(units):
            ops = [SurgeryOp("freeze_before", units[idx + 1])]
        else:
            ops = [SurgeryOp("freeze", "*")]
        return self.push_freeze_ops(ops, f"Freeze up to {unit[2:]}")

    def train_from(self, unit: str) -> bool:
        """Train this node/block and everything after it; freeze everything before it."""
        idx = self._unit_index(unit, first=True)
        if idx is None:
            self.banner.show_message(f"Cannot tell where {unit[2:]} sits in the network's order.", "warning")
            return False
        ops = [SurgeryOp("unfreeze", "*")]
        if idx > 0:
            ops.append(SurgeryOp("freeze_before", self.display.units[idx]))
        return self.push_freeze_ops(ops, f"Train from {unit[2:]} on")

    def _targets(self, unit: str) -> list[str]:
        """Module or parameter names a freeze of this unit applies to (those holding parameters)."""
        if self.display is None:
            return []
        h = self.display.hierarchy
        ident = unit[2:]
        if unit.startswith("b:"):
            if ident.startswith("["):  # synthetic stem/head: its member layers
                names: list[str] = []
                for nid in h.members[ident]:
                    base = nid.split("@", 1)[0]
                    if self.display.node_status.get(nid) and self.view.status_of("n:" + nid).total and base not in names:
                        names.append(base)
                return names
            return [ident] if self.view.status_of(unit).total else []
        node = h.nodes.get(ident)
        if node is None or not self.view.status_of(unit).total:
            return []
        return [ident.split("@", 1)[0]]

    def _unit_index(self, unit: str, first: bool = False) -> int | None:
        """Index in the freeze-unit order of the last (or first) freeze unit inside this node/block."""
        d = self.display
        if d is None:
            return None
        names = self._targets(unit) or ([unit[2:]] if not unit[2:].startswith("[") else [])
        if unit.startswith("n:") and not names:
            node = d.hierarchy.nodes.get(unit[2:])
            if node is not None and node.block:
                names = [node.block] if not node.block.startswith("[") else []
        hits = []
        for i, u in enumerate(d.units):
            for n in names:
                if u == n or u.startswith(n + ".") or n.startswith(u + "."):
                    hits.append(i)
        if not hits:
            return None
        return min(hits) if first else max(hits)

    # -- structural surgery --------------------------------------------------------------------
    def push_structural(self, op: SurgeryOp, text: str) -> bool:
        """Validate ``op`` on a copy of the network in the background; record it if the core accepts it."""
        if not self._ready_for_edit():
            return False
        before = list(self.state.project.surgery)
        candidate = self.state.project.copy()
        candidate.surgery = before + [op]
        prefer = self.view.expanded()
        base_key = self._shown_key
        self.banner.clear()

        def done(result: DisplayBuild) -> None:
            self._edit_task = None
            self.busy_bar.stop()
            if self._closing:
                return
            if project_key(self.state.project) != base_key:  # the project moved on meanwhile
                self._reconcile()
                return
            self._install(result)
            self.state.undo_stack.push(ProjectEditCommand(self.state, text, {"surgery": before},
                                                          {"surgery": before + [op]}))
            self.state.status(f"{text}: done.", 4000)

        def failed(message: str, details: str) -> None:
            self._edit_task = None
            self.busy_bar.stop()
            if not self._closing:
                self.banner.show_message(f"{text} was not applied: {message}", "error", details=details or None)

        self._edit_task = run_task(try_structural, self.model, candidate, op, prefer, name="surgery",
                                   on_result=done, on_error=failed, on_cancelled=self._edit_cancelled)
        self.busy_bar.start(f"{text}…", handle=self._edit_task)
        return True

    def default_num_classes(self) -> tuple[int, str]:
        """The class count "Replace head" proposes (``core.head``), and where it comes from."""
        from transfer_studio.ui.runtime import import_core

        scan, project = self.state.scan, self.state.project
        n = import_core("head").class_count(project, scan)
        if n >= 2 and getattr(scan, "classes", None):
            return n, f"{n} classes found in the dataset ({getattr(scan, 'root', '')})."
        if n >= 2:
            return n, "From the project's dataset classes."
        return 2, "No dataset chosen yet: set the number of classes you will train on."

    def replace_head(self, params: dict[str, Any] | None = None) -> bool:
        if params is None:
            if not self._ready_for_edit():
                return False
            n, source = self.default_num_classes()
            params = ReplaceHeadDialog.ask(self, n, source)
            if params is None:
                return False
        return self.push_structural(SurgeryOp("replace_head", "", dict(params)),
                                    f"Replace head ({params.get('num_classes')} classes)")

    def insert_after(self, target: str, layer: dict[str, Any]) -> bool:
        return self.push_structural(SurgeryOp("insert_after", target, {"layer": dict(layer)}),
                                    f"Insert {layer.get('type')} after {target}")

    def remove_layer(self, target: str) -> bool:
        return self.push_structural(SurgeryOp("remove", target), f"Remove {target}")

    def _ask_insert(self, target: str, kind: str) -> None:
        if kind == "Dropout":
            p, ok = QInputDialog.getDouble(self, "Insert dropout", f"Drop probability after {target}:", 0.2,
                                           0.0, 0.95, 2)
            if ok:
                self.insert_after(target, {"type": "Dropout", "p": p})
        elif kind == "Linear+ReLU":
            width = self._features_of(target) or 256
            hidden, ok = QInputDialog.getInt(self, "Insert Linear + ReLU", f"Hidden width after {target}:",
                                             width, 1, 65_536)
            if ok:
                self.insert_after(target, {"type": "Linear+ReLU", "hidden": hidden})
        else:
            self.insert_after(target, {"type": "BatchNorm"})

    def _features_of(self, target: str) -> int | None:
        if self.display is None:
            return None
        node = self.display.hierarchy.nodes.get(target)
        shape = node.output_shape if node is not None else None
        return int(shape[-1]) if shape and len(shape) == 2 else None

    # -- context menu --------------------------------------------------------------------------
    def _context_menu(self, unit: str, pos: QPoint) -> None:
        menu = self.build_context_menu(unit)
        if menu is not None:
            # popup, not exec: no nested event loop; the page keeps the menu alive while it shows.
            if self.context_menu is not None:
                self.context_menu.deleteLater()
            self.context_menu = menu
            menu.popup(pos)

    def build_context_menu(self, unit: str) -> QMenu | None:
        """The graph's context menu for a node/block ("" = background). Public for tests."""
        menu = QMenu(self)
        menu.setObjectName("graph_context_menu")
        if self.display is None:
            return None
        if not unit:
            menu.addAction("Expand all", self.view.expand_all).setObjectName("ctx_expand_all")
            menu.addAction("Collapse all", self.view.collapse_all).setObjectName("ctx_collapse_all")
            menu.addAction("Fit to view", self.view.fit_all).setObjectName("ctx_fit")
            menu.addSeparator()
            menu.addAction("Freeze everything", lambda: self.push_freeze_ops([SurgeryOp("freeze", "*")], "Freeze everything")).setObjectName("ctx_freeze_all")
            menu.addAction("Unfreeze everything", lambda: self.push_freeze_ops([SurgeryOp("unfreeze", "*")], "Unfreeze everything")).setObjectName("ctx_unfreeze_all")
            menu.addAction("Replace head…", lambda: self.replace_head()).setObjectName("ctx_replace_head")
            return menu
        ident = unit[2:]
        st = self.view.status_of(unit)
        title = menu.addAction(ident)
        title.setEnabled(False)
        menu.addSeparator()
        has_params = bool(self._targets(unit))

        def add(text: str, slot: Any, name: str, enabled: bool = True) -> QAction:
            act = menu.addAction(text, slot)
            act.setObjectName(name)
            act.setEnabled(enabled)
            return act

        add("Freeze", lambda: self.set_frozen(unit, True), "ctx_freeze", has_params and st.freeze != "frozen")
        add("Unfreeze", lambda: self.set_frozen(unit, False), "ctx_unfreeze", has_params and st.freeze != "trainable")
        add("Freeze up to here", lambda: self.freeze_up_to(unit), "ctx_freeze_up_to", self._unit_index(unit) is not None)
        add("Train from here on", lambda: self.train_from(unit), "ctx_train_from",
            self._unit_index(unit, first=True) is not None)
        menu.addSeparator()
        is_module = not ident.startswith("[") and (unit.startswith("b:") or (
            self.display.hierarchy.nodes[ident].kind == "module" and "@" not in ident))
        head = self.display.head
        is_head = bool(head) and (ident == head or head.startswith(ident + ".") or ident.startswith(head + "."))
        add("Replace head…", lambda: self.replace_head(), "ctx_replace_head")
        sub = menu.addMenu("Insert after")
        sub.setObjectName("ctx_insert_menu")
        sub.setEnabled(is_module)
        for text, kind in (("Dropout…", "Dropout"), ("Linear + ReLU…", "Linear+ReLU"), ("BatchNorm", "BatchNorm")):
            act = sub.addAction(text, lambda k=kind: self._ask_insert(ident, k))
            act.setObjectName(f"ctx_insert_{kind.lower().replace('+', '_')}")
        add("Remove", lambda: self.remove_layer(ident), "ctx_remove", is_module and not is_head)
        menu.addSeparator()
        if unit.startswith("b:"):
            expanded = ident in self.view.expanded()
            add("Collapse" if expanded else "Expand", lambda: self.view.toggle(ident), "ctx_toggle")
        return menu

    # -- search / selection --------------------------------------------------------------------
    def _focus_search(self) -> None:
        self.graph_search.setFocus()
        self.graph_search.selectAll()

    def _on_graph_search(self, text: str) -> None:
        n = self.view.search(text)
        self._update_match_label(n)

    def _step_match(self, step: int) -> None:
        if self.view.matches():
            self.view.next_match(step)
        self._update_match_label(len(self.view.matches()))

    def _update_match_label(self, n: int) -> None:
        if not self.graph_search.text().strip():
            self.match_label.setText("")
        elif n == 0:
            self.match_label.setText("no match")
        else:
            i, total = self.view.match_position()
            self.match_label.setText(f"{i} of {total}")

    def _on_unit_selected(self, unit: str) -> None:
        if not unit or self.display is None:
            self.selection_label.setText("")
            return
        h = self.display.hierarchy
        st = self.view.status_of(unit)
        ident = unit[2:]
        state = {"frozen": "frozen", "trainable": "trainable", "mixed": "partly frozen", "none": "no parameters"}[st.freeze]
        if st.modified:
            state += ", new/modified"
        if unit.startswith("b:"):
            blk = h.blocks[ident]
            text = f"<b>{ident}</b> — {blk.label} ({blk.kind}), {len(h.members[ident])} nodes"
        else:
            n = h.nodes[ident]
            from transfer_studio.ui.widgets import format_shape

            shape = format_shape(n.output_shape)
            text = f"<b>{ident}</b> — {n.type}" + (f" → {shape}" if shape else "")
        if st.total:
            text += f" · {st.total:,} parameters ({state})"
        else:
            text += f" · {state}"
        self.selection_label.setText(text)

    def _on_layout_pending(self, pending: bool) -> None:
        if pending:
            self.state.status("Laying out the graph…", 0)
        else:
            self.state.status("", 1)

    def _toggle_minimap(self) -> None:
        self.view.minimap.setVisible(self.minimap_button.isChecked() and self.view.hierarchy is not None)

    # -- colours and counts --------------------------------------------------------------------
    def _refresh_status(self) -> None:
        if self.model is None or self.display is None:
            return
        if self._phase_overlay is not None:
            self._apply_overlay()
            return
        nodes, blocks, trainable, total = status_from_model(self.model, self.display.hierarchy)
        self._status_key = self._shown_key
        self.display.node_status, self.display.block_status = nodes, blocks
        self.view.set_status(nodes, blocks)
        self._update_labels(trainable, total)
        current = self.view.selected_unit()
        if current:
            self._on_unit_selected(current)

    def _update_labels(self, trainable: int, total: int) -> None:
        d = self.display
        if d is None:
            return
        spec = d.model_spec
        weights = {"DEFAULT": "pretrained", "none": "random init"}.get(spec.weights, os.path.basename(spec.weights))
        ops = len(d.ops)
        self.current_label.setText(f"{spec.name} · {weights}" + (f" · {ops} change{'s' if ops != 1 else ''}" if ops else ""))
        self.count_label.setText(f"Trainable: {format_count(trainable)} of {format_count(total)} parameters "
                                 f"({format_share(trainable, total)})")
        self.count_label.setAccessibleName(f"{trainable} of {total} parameters trainable")

    def trainable_counts(self) -> tuple[int, int]:
        from transfer_studio.core import surgery

        return surgery.param_counts(self.model) if self.model is not None else (0, 0)

    def _on_phase_changed(self, event: Any) -> None:
        """Training unfroze blocks: colour the graph as the running model is (the project is unchanged)."""
        if self.display is None:
            return
        self._phase_overlay = event
        self.phase_label.setText(f"Training, epoch {getattr(event, 'epoch', '?')}: "
                                 f"{getattr(event, 'description', '') or getattr(event, 'phase', '')}")
        self.phase_label.setVisible(True)
        self._apply_overlay()

    def _on_training_active(self, active: bool) -> None:
        """The run ended: the graph shows the project again, not the last phase of the run."""
        if active or self._phase_overlay is None:
            return
        self._phase_overlay = None
        self.phase_label.setVisible(False)
        self._refresh_status()

    def _apply_overlay(self) -> None:
        from transfer_studio.core.freeze_status import compute_status, module_counts

        event = self._phase_overlay
        phase = getattr(event, "phase", "")
        unfrozen = [u for u in getattr(event, "unfrozen", []) or [] if isinstance(u, str)]

        class _P:
            __slots__ = ("n", "requires_grad")

            def __init__(self, n: int, rg: bool):
                self.n, self.requires_grad = n, rg

            def numel(self) -> int:
                return self.n

        def trainable(name: str, p: Any) -> bool:
            if phase == "full":
                return True
            return p.requires_grad or any(u in ("", "*") or name == u or name.startswith(u + ".") for u in unfrozen)

        params = [(name, _P(p.numel(), trainable(name, p))) for name, p in self.model.named_parameters()]
        from transfer_studio.core import surgery

        nodes, blocks = compute_status(self.display.hierarchy, module_counts(params), surgery.modified_modules(self.model))
        self.view.set_status(nodes, blocks)
        t = sum(p.n for _, p in params if p.requires_grad)
        self._update_labels(t, sum(p.n for _, p in params))

    # -- lifecycle -----------------------------------------------------------------------------
    def busy(self) -> bool:
        return self._download_task is not None

    def shutdown(self) -> None:
        self._closing = True
        from transfer_studio.ui.settings import Settings

        Settings().set_splitter_state("model", self.splitter.saveState())
        for task in (self._build_task, self._edit_task, self._download_task, self._catalog_task):
            if task is not None:
                task.cancel()
        self.busy_bar.stop()
