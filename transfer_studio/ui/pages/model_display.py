"""The Model page's graph panel: the graph view with its tool bar, labels and legend, the graph's
context menu and the dialogs it opens. Widgets only: what they show and do is the page model's
(``ui.models.model_model``)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from transfer_studio.ui import theme
from transfer_studio.ui.models.model_units import features_of
from transfer_studio.ui.widgets.elided_label import ElidedLabel

LEGEND = (("frozen", "Frozen"), ("trainable", "Trainable"), ("modified", "New / modified"), ("neutral", "No parameters"))


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


def build_graph_panel(page: Any) -> QWidget:
    """The graph panel; its widgets become the page's attributes (``view``, ``graph_search``, the
    labels and buttons), connected to the page's methods."""
    from transfer_studio.ui.graph_view import GraphView

    view = page.view = GraphView()
    page.current_label = QLabel("No model loaded")
    page.current_label.setObjectName("current_model_label")
    page.current_label.setProperty("role", "subheading")
    page.count_label = QLabel("")
    page.count_label.setObjectName("param_count_label")
    page.count_label.setToolTip("Parameters that training will update, out of all parameters")
    search = page.graph_search = QLineEdit()
    search.setObjectName("graph_search")
    search.setPlaceholderText("Find layer by name or type (Ctrl+F)")
    search.setClearButtonEnabled(True)
    search.setMinimumWidth(180)
    search.setMaximumWidth(280)
    page.match_label = QLabel("")
    page.match_label.setObjectName("match_label")
    page.match_label.setMinimumWidth(60)

    def tool(name: str, icon: str, tip: str, slot: Any, label: str = "") -> QToolButton:
        b = QToolButton()
        b.setObjectName(name)
        b.setToolTip(tip)
        b.setAccessibleName(tip)
        b.setAutoRaise(True)
        b.clicked.connect(slot)
        b.setProperty("icon_name", icon)
        if label:
            b.setText(label)
        return b

    page.prev_button = tool("match_prev", "", "Previous match (Shift+Enter)", lambda: page.step_match(-1), "‹")
    page.next_button = tool("match_next", "", "Next match (Enter)", lambda: page.step_match(1), "›")
    page.zoom_out_button = tool("zoom_out", "zoom-out", "Zoom out (−)", view.zoom_out)
    page.zoom_in_button = tool("zoom_in", "zoom-in", "Zoom in (+)", view.zoom_in)
    page.fit_button = tool("fit_view", "fit", "Fit to view (0)", view.fit_all)
    page.expand_button = tool("expand_all", "expand", "Expand all blocks", view.expand_all)
    page.collapse_button = tool("collapse_all", "collapse", "Collapse all blocks", view.collapse_all)
    page.minimap_button = tool("toggle_minimap", "", "Show or hide the overview", page.toggle_minimap, "Overview")
    page.minimap_button.setCheckable(True)
    page.minimap_button.setChecked(True)
    page.head_button = QPushButton("Replace head…")
    page.head_button.setObjectName("replace_head_button")
    page.head_button.setToolTip("A new classification layer for your classes")
    page.head_button.clicked.connect(lambda: page.replace_head())
    bar = QHBoxLayout()
    bar.setSpacing(2)
    for w in (search, page.prev_button, page.next_button, page.match_label):
        bar.addWidget(w)
    bar.addStretch(1)
    for b in (page.zoom_out_button, page.zoom_in_button, page.fit_button, page.expand_button,
              page.collapse_button, page.minimap_button):
        bar.addWidget(b)
    bar.addSpacing(8)
    bar.addWidget(page.head_button)
    top = QHBoxLayout()
    top.addWidget(page.current_label)
    top.addStretch(1)
    top.addWidget(page.count_label)

    page.legend = QWidget()
    page.legend.setObjectName("graph_legend")
    legend = QHBoxLayout(page.legend)
    legend.setContentsMargins(0, 0, 0, 0)
    page.legend_swatches = []
    for key, label in LEGEND:
        swatch = QLabel()
        page.legend_swatches.append((swatch, key))
        legend.addWidget(swatch)
        legend.addWidget(QLabel(label))
        legend.addSpacing(10)
    # One line, shortened to the room left: a long training message must not widen the graph
    # panel (it squeezed the catalog until its Top-1 and GFLOPs columns disappeared).
    page.phase_label = ElidedLabel("", min_chars=12,
                                   hint="The colours follow the running training; the project is unchanged.")
    page.phase_label.setObjectName("phase_label")
    page.phase_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    page.phase_label.setVisible(False)
    # The stretch keeps the legend together while the message is hidden; shown, the message
    # takes the room (its stretch is far larger).
    legend.addStretch(1)
    legend.addWidget(page.phase_label, 100)
    hint = QLabel("Click a layer's dot to freeze or unfreeze it · right-click for more · double-click a block to open it")
    hint.setProperty("role", "muted")
    hint.setObjectName("graph_hint")
    page.selection_label = QLabel("")
    page.selection_label.setObjectName("selection_label")
    page.selection_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    panel = QWidget()
    panel.setObjectName("graph_panel")
    gl = QVBoxLayout(panel)
    gl.setContentsMargins(6, 0, 0, 0)
    gl.addLayout(top)
    gl.addLayout(bar)
    gl.addWidget(view, 1)
    for w in (page.legend, page.selection_label, hint):
        gl.addWidget(w)
    return panel


def paint_legend(page: Any) -> None:
    """The legend's swatches and the tool buttons' icons in the current theme."""
    for b in page.findChildren(QToolButton):
        name = b.property("icon_name")
        if name:
            b.setIcon(theme.icon(name))
    sem = theme.semantic_colors()
    colours = {"frozen": sem.frozen, "trainable": sem.trainable, "modified": sem.modified, "neutral": sem.neutral}
    for swatch, key in page.legend_swatches:
        swatch.setPixmap(theme.swatch(colours[key]))


def build_context_menu(page: Any, unit: str) -> QMenu | None:
    """The graph's context menu for a node/block ("" = background), its actions calling the page."""
    view, model = page.view, page.model
    state = model.menu_state(unit, unit[2:] in view.expanded())
    if state is None:
        return None
    menu = QMenu(page)
    menu.setObjectName("graph_context_menu")

    def add(where: QMenu, label: str, slot: Any, name: str, enabled: bool = True) -> None:
        act = where.addAction(label, slot)
        act.setObjectName(name)
        act.setEnabled(enabled)

    if not unit:
        add(menu, "Expand all", view.expand_all, "ctx_expand_all")
        add(menu, "Collapse all", view.collapse_all, "ctx_collapse_all")
        add(menu, "Fit to view", view.fit_all, "ctx_fit")
        menu.addSeparator()
        add(menu, "Freeze everything", lambda: model.freeze_all(True), "ctx_freeze_all")
        add(menu, "Unfreeze everything", lambda: model.freeze_all(False), "ctx_unfreeze_all")
        add(menu, "Replace head…", lambda: page.replace_head(), "ctx_replace_head")
        return menu
    menu.addAction(state.title).setEnabled(False)
    menu.addSeparator()
    add(menu, "Freeze", lambda: model.set_frozen(unit, True), "ctx_freeze", state.freeze)
    add(menu, "Unfreeze", lambda: model.set_frozen(unit, False), "ctx_unfreeze", state.unfreeze)
    add(menu, "Freeze up to here", lambda: model.freeze_up_to(unit), "ctx_freeze_up_to", state.freeze_up_to)
    add(menu, "Train from here on", lambda: model.train_from(unit), "ctx_train_from", state.train_from)
    menu.addSeparator()
    add(menu, "Replace head…", lambda: page.replace_head(), "ctx_replace_head")
    sub = menu.addMenu("Insert after")
    sub.setObjectName("ctx_insert_menu")
    sub.setEnabled(state.insert)
    for label, kind in (("Dropout…", "Dropout"), ("Linear + ReLU…", "Linear+ReLU"), ("BatchNorm", "BatchNorm")):
        add(sub, label, lambda k=kind: ask_insert(page, state.title, k), f"ctx_insert_{kind.lower().replace('+', '_')}")
    add(menu, "Remove", lambda: model.remove_layer(state.title), "ctx_remove", state.remove)
    menu.addSeparator()
    if state.block:
        add(menu, "Collapse" if state.expanded else "Expand", lambda: view.toggle(state.title), "ctx_toggle")
    return menu


def ask_insert(page: Any, target: str, kind: str) -> None:
    """Ask for the new layer's setting, then insert it after ``target``."""
    model = page.model
    if kind == "Dropout":
        p, ok = QInputDialog.getDouble(page, "Insert dropout", f"Drop probability after {target}:", 0.2, 0.0, 0.95, 2)
        if ok:
            model.insert_after(target, {"type": "Dropout", "p": p})
    elif kind == "Linear+ReLU":
        hidden, ok = QInputDialog.getInt(page, "Insert Linear + ReLU", f"Hidden width after {target}:",
                                         features_of(model.display, target) or 256, 1, 65_536)
        if ok:
            model.insert_after(target, {"type": "Linear+ReLU", "hidden": hidden})
    else:
        model.insert_after(target, {"type": "BatchNorm"})
