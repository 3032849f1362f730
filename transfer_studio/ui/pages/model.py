"""The Model page: the model browser (catalog) and the interactive graph, which is also the freeze map.

The page binds widgets (the browser in ``model_catalog``, the graph panel, its context menu and
dialogs in ``model_display``) to its model (``ui.models.model_model``), which keeps the catalog, the
project's graph and freeze status (computed in jobs from the project's operations on meta-device
networks: no network lives on the GUI thread) and records freeze and surgery edits as undoable
project edits.
"""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QAbstractItemView, QFileDialog, QMenu, QSplitter, QVBoxLayout, QWidget

from transfer_studio.config import SurgeryOp
from transfer_studio.ui import theme
from transfer_studio.ui.models.model_model import ModelModel
from transfer_studio.ui.models.model_network import DisplayData, project_key
from transfer_studio.ui.models.model_text import Formats
from transfer_studio.ui.pages.model_catalog import (
    CatalogFilter,
    CatalogModel,
    build_browser,
    details_html,
    make_rows,
)
from transfer_studio.ui.pages.model_display import (
    ReplaceHeadDialog,
    build_context_menu,
    build_graph_panel,
    paint_legend,
)
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import BusyIndicator, MessageBanner, format_count, format_shape, format_share
from transfer_studio.ui.worker import run_task

__all__ = ["ModelPage", "ReplaceHeadDialog", "project_key"]


class ModelPage(QWidget):
    TITLE = "Model"

    displayChanged = Signal()  # a new graph is shown (tests, other widgets)
    catalogLoaded = Signal()

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page_model")
        self.state = state
        self.context_menu: QMenu | None = None
        self._heap_settled = False
        self._dark = theme.is_dark()  # read by the catalog job's thread, which makes the table's rows
        self.model = ModelModel(state, run_task, expanded=lambda: self.view.expanded(),
                                catalog_rows=lambda infos: make_rows(infos, self._dark),
                                formats=Formats(format_count, format_share, format_shape))
        self.banner = MessageBanner(object_name="model_banner")
        self.busy_bar = BusyIndicator(object_name="model_busy")
        self.catalog = CatalogModel(self)
        self.proxy = CatalogFilter(self)
        self.proxy.setSourceModel(self.catalog)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("model_splitter")
        self.splitter.addWidget(build_browser(self))
        self.splitter.addWidget(build_graph_panel(self))
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([470, 700])
        self.splitter.setChildrenCollapsible(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 8, 10, 6)
        lay.addWidget(self.banner)
        lay.addWidget(self.busy_bar)
        lay.addWidget(self.splitter, 1)
        self._connect_widgets()
        self._bind_model()
        self._restore_splitter()
        self._update_buttons()
        self.model.browser.load()
        QTimer.singleShot(0, self.model.reconcile)

    # -- binding -------------------------------------------------------------------------------
    def _connect_widgets(self) -> None:
        m = self.model
        self.search.textChanged.connect(self.proxy.set_text)
        self.offline_only.toggled.connect(self.proxy.set_offline_only)
        self.table.doubleClicked.connect(lambda _i: m.browser.load_selected())
        self.table.selectionModel().currentRowChanged.connect(lambda _c, _p: self._on_selection())
        self.random_init.toggled.connect(m.browser.set_random_init)
        self.load_button.clicked.connect(m.browser.load_selected)
        self.download_button.clicked.connect(m.browser.download_selected)
        self.open_weights_button.clicked.connect(self.open_weights_file)
        self.graph_search.textChanged.connect(self._on_graph_search)
        self.graph_search.returnPressed.connect(lambda: self.step_match(1))
        QShortcut(QKeySequence("Shift+Return"), self.graph_search, activated=lambda: self.step_match(-1))
        QShortcut(QKeySequence.StandardKey.Find, self, activated=self._focus_search)
        self.view.freezeToggleRequested.connect(m.toggle_freeze)
        self.view.contextMenuRequested.connect(self._context_menu)
        self.view.selectionChangedTo.connect(self._on_unit_selected)
        self.view.layoutPending.connect(
            lambda pending: self.state.status("Laying out the graph…", 0) if pending else self.state.status("", 1))
        theme.notifier().themeChanged.connect(self._on_theme)
        paint_legend(self)

    def _bind_model(self) -> None:
        m = self.model
        m.message.connect(lambda text, level, details: self.banner.show_message(text, level, details=details or None))
        m.messageCleared.connect(self.banner.clear)
        m.busyStarted.connect(lambda label, job: self.busy_bar.start(label, handle=job))
        m.busyStopped.connect(self.busy_bar.stop)
        m.catalogLoaded.connect(self._on_catalog)
        m.selectRequested.connect(self._select_in_table)
        m.selectionChanged.connect(lambda info: self.details.setHtml(details_html(info) if info is not None else ""))
        m.buttonsChanged.connect(self._update_buttons)
        m.displayChanged.connect(self._on_display)
        m.displayFailed.connect(self._on_display_failed)
        m.statusChanged.connect(self._on_status)
        m.overlayChanged.connect(self._on_overlay)

    def _on_theme(self, _theme: str = "") -> None:
        self._dark = theme.is_dark()
        paint_legend(self)

    def _restore_splitter(self) -> None:
        from transfer_studio.ui.settings import Settings

        state = Settings().splitter_state("model")
        if state is not None:
            self.splitter.restoreState(state)

    # -- what the model says -----------------------------------------------------------------------
    @property
    def display(self) -> DisplayData | None:
        """The graph shown (plain data; ``display.key`` is the project key it was built for)."""
        return self.model.display

    @property
    def _build_task(self) -> Any:
        """The running rebuild of the graph, if any (kept for tests written against the old page)."""
        return self.model.display_job

    def _on_catalog(self, infos: list[Any], rows: Any) -> None:
        self.catalog.set_infos(infos, rows)
        self.table.resizeColumnsToContents()
        self.catalogLoaded.emit()

    def _update_buttons(self) -> None:
        b = self.model.browser.buttons()
        self.load_button.setEnabled(b.load)
        self.download_button.setVisible(b.download_visible)
        self.download_button.setEnabled(b.download)
        self.download_button.setText(b.download_text)
        self.open_weights_button.setEnabled(b.open_weights)
        self.head_button.setEnabled(b.replace_head)

    def _on_display(self, display: DisplayData, same_model: bool) -> None:
        """A new graph (GUI thread: only item creation happens here)."""
        view = self.view
        if same_model and view.hierarchy is not None:  # keep the user's place
            centre = view.mapToScene(view.viewport().rect().center())
            zoom = view.zoom()
            view.set_graph(display.hierarchy, display.layout)
            view._set_zoom(zoom)
            view.centerOn(centre)
        else:
            view.set_graph(display.hierarchy, display.layout)
        if self.graph_search.text().strip():
            self._on_graph_search(self.graph_search.text())
        self.random_init.setChecked(display.model_spec.weights == "none")
        self._on_status()
        self.displayChanged.emit()
        if not self._heap_settled:  # the first network shown: torchvision and fx are loaded now
            self._heap_settled = True
            from transfer_studio.ui.runtime import settle_heap

            QTimer.singleShot(0, settle_heap)

    def _on_status(self) -> None:
        nodes, blocks, _, _ = self.model.shown
        self.view.set_status(nodes, blocks)
        self.current_label.setText(self.model.model_line())
        text, accessible = self.model.count_line()
        self.count_label.setText(text)
        self.count_label.setAccessibleName(accessible)
        self._on_unit_selected(self.view.selected_unit())

    def _on_display_failed(self, graph_text: str, label_text: str) -> None:
        self.view.clear_graph(graph_text)
        self.current_label.setText(label_text)
        self.count_label.setText("")

    def _on_overlay(self, line: str) -> None:
        self.phase_label.setText(line)
        self.phase_label.setVisible(bool(line))

    # -- the catalog -----------------------------------------------------------------------------
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
        if not self.proxy.mapFromSource(self.catalog.index(self.catalog.row_of(name), 0)).isValid():
            self.search.clear()
            self.offline_only.setChecked(False)
        self._select_in_table(name)
        return True

    def _on_selection(self) -> None:
        idx = self.table.selectionModel().currentIndex()
        if not idx.isValid():
            rows = self.table.selectionModel().selectedRows()
            idx = rows[0] if rows else idx
        src = self.proxy.mapToSource(idx) if idx.isValid() else None
        self.model.browser.select(self.catalog.infos[src.row()] if src is not None and src.isValid() else None)

    def selected_info(self) -> Any:
        return self.model.browser.selected

    # -- loading -------------------------------------------------------------------------------
    def load_selected(self) -> None:
        self.model.browser.load_selected()

    def load_model(self, name: str, weights: str = "DEFAULT") -> None:
        self.model.load_model(name, weights)

    def open_weights_file(self) -> None:
        info = self.model.browser.selected
        if info is None:
            self.model.browser.load_weights_file("")  # says what to do first
            return
        from transfer_studio.ui.settings import Settings

        settings = Settings()
        path, _ = QFileDialog.getOpenFileName(
            self, f"Open weights for {info.name}", settings.last_folder("weights"),
            "State dicts (*.safetensors *.pth *.pt *.bin);;All files (*)")
        if path:
            settings.set_last_folder("weights", os.path.dirname(path))
            self.model.browser.load_weights_file(path)

    # -- freezing and surgery (the model records them; kept on the page for tests) --
    def trainable_counts(self) -> tuple[int, int]:
        return self.model.trainable_counts()

    def push_freeze_ops(self, ops: list[SurgeryOp], text: str) -> bool:
        return self.model.push_freeze_ops(ops, text)

    def set_frozen(self, unit: str, frozen: bool) -> bool:
        return self.model.set_frozen(unit, frozen)

    def default_num_classes(self) -> tuple[int, str]:
        return self.model.default_num_classes()

    def replace_head(self, params: dict[str, Any] | None = None) -> bool:
        """Ask for the new head (unless ``params`` are given), then replace it."""
        if params is None:
            if not self.model.ready_for_edit():
                return False
            params = ReplaceHeadDialog.ask(self, *self.model.default_num_classes())
            if params is None:
                return False
        return self.model.replace_head(params)

    def insert_after(self, target: str, layer: dict[str, Any]) -> bool:
        return self.model.insert_after(target, layer)

    def remove_layer(self, target: str) -> bool:
        return self.model.remove_layer(target)

    # -- context menu, search, selection --------------------------------------------------------------
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
        return build_context_menu(self, unit)

    def _focus_search(self) -> None:
        self.graph_search.setFocus()
        self.graph_search.selectAll()

    def _on_graph_search(self, text: str) -> None:
        self._update_match_label(self.view.search(text))

    def step_match(self, step: int) -> None:
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
        self.selection_label.setText(self.model.selection_line(unit))

    def toggle_minimap(self) -> None:
        self.view.minimap.setVisible(self.minimap_button.isChecked() and self.view.hierarchy is not None)

    # -- lifecycle -----------------------------------------------------------------------------
    def busy(self) -> bool:
        """A download is running."""
        return self.model.browser.busy()

    def shutdown(self) -> None:
        from transfer_studio.ui.settings import Settings

        Settings().set_splitter_state("model", self.splitter.saveState())
        self.model.shutdown()
        self.busy_bar.stop()
