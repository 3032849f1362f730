"""The Model page: browser, loading, graph folding/search, freezing, surgery, undo, downloads."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction

from transfer_studio.config import SurgeryOp
from transfer_studio.ui.pages.model import ModelPage, ReplaceHeadDialog

TIMEOUT = 60_000  # generous: the test machine is shared and slow


@pytest.fixture
def page(qtbot, app_state):
    p = ModelPage(app_state)
    qtbot.addWidget(p)
    p.resize(1300, 800)
    p.show()
    qtbot.waitUntil(lambda: p.display is not None and p.catalog.rowCount() > 0, timeout=TIMEOUT)
    yield p
    p.shutdown()


def _click(qtbot, view, item, local_point, button=Qt.MouseButton.LeftButton, double=False):
    view.centerOn(item)
    pos = view.mapFromScene(item.mapToScene(local_point))
    if double:
        qtbot.mouseDClick(view.viewport(), button, pos=pos)
    else:
        qtbot.mouseClick(view.viewport(), button, pos=pos)


def _layers(page, prefix):
    """The freeze state of every layer with parameters under ``prefix``, from the page model's status
    (the project's operations on a meta-device network: the page holds no network)."""
    nodes = page.model.status.nodes
    return {n: st.freeze for n, st in nodes.items() if (n == prefix or n.startswith(prefix + ".")) and st.total}


def _wait_status(qtbot, page):
    """The freeze status comes from a job: wait until it is the project's."""
    from transfer_studio.ui.models.model_network import project_key

    qtbot.waitUntil(lambda: page.model.status is not None
                    and page.model.status.key == project_key(page.state.project), timeout=TIMEOUT)


def test_the_page_holds_no_network(qtbot, page):
    """Issue #13: no nn.Module on the GUI thread; the graph, its colours and counts are plain data."""
    import torch

    seen, stack = set(), [page.model, page.display]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (str, int, float, bool, bytes)):
            continue
        seen.add(id(obj))
        assert not isinstance(obj, (torch.nn.Module, torch.Tensor)), obj
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("transfer_studio"):
            stack.extend(vars(obj).values())
    assert not hasattr(page, "_snapshots") and page.trainable_counts()[0] > 0


def test_select_a_model_in_the_browser_and_load_it(qtbot, page, app_state):
    page.search.setText("mobilenet v3 small")
    assert page.proxy.rowCount() == 1
    page.table.selectRow(0)
    assert page.selected_info().name == "mobilenet_v3_small"
    assert "mobilenet_v3_small" in page.details.toPlainText()
    # The project's random-init choice is reflected; without it, Load needs weights that are
    # not on this machine (empty TORCH_HOME).
    assert page.random_init.isChecked()
    page.random_init.setChecked(False)
    assert not page.load_button.isEnabled()
    page.random_init.setChecked(True)
    assert page.load_button.isEnabled()
    with qtbot.waitSignal(page.displayChanged, timeout=TIMEOUT):
        qtbot.mouseClick(page.load_button, Qt.MouseButton.LeftButton)
    assert app_state.project.model.name == "mobilenet_v3_small"
    assert app_state.project.model.weights == "none"
    assert page.display.architecture == "MobileNetV3"
    assert page.current_label.text().startswith("mobilenet_v3_small")
    assert app_state.modified and app_state.undo_stack.count() == 1
    # Undo goes back to the previous model, rebuilt from the project.
    with qtbot.waitSignal(page.displayChanged, timeout=TIMEOUT):
        app_state.undo_stack.undo()
    assert app_state.project.model.name == "resnet18"
    assert page.display.architecture == "ResNet"


def test_missing_weights_say_where_the_file_goes(qtbot, page):
    page.random_init.setChecked(False)
    assert page.select_model("resnet50")
    info = page.selected_info()
    assert not info.weights_available_offline
    assert page.download_button.isVisible() and not page.load_button.isEnabled()
    details = page.details.toPlainText()
    assert info.weights_file in details and "resnet50-" in details
    page.load_selected()
    assert page.banner.level() == "warning"
    assert info.weights_file in page.banner.text()


def test_graph_shows_top_level_blocks_and_folds(qtbot, page):
    view = page.view
    h = view.hierarchy
    assert h.top_blocks == ["[stem]", "layer1", "layer2", "layer3", "layer4", "[head]"]
    view.collapse_all()
    blocks_shown = sorted(u for u in view.visible_units() if u.startswith("b:"))
    assert blocks_shown == sorted("b:" + b for b in h.top_blocks)
    assert set(view.visible_units()) == {"n:input", "n:output", *blocks_shown}
    # Double-click on layer1 expands it: its two blocks appear inside a frame.
    item = view.item_for("b:layer1")
    _click(qtbot, view, item, item.boundingRect().center(), double=True)
    qtbot.waitUntil(lambda: "layer1" in view.expanded())
    assert {"b:layer1.0", "b:layer1.1"} <= set(view.visible_units())
    assert "layer1" in view.visible_frames()
    # The frame's "−" toggle collapses it again.
    frame = view.item_for("b:layer1")
    _click(qtbot, view, frame, frame.toggle_rect().center())
    qtbot.waitUntil(lambda: "layer1" not in view.expanded())
    assert "b:layer1" in view.visible_units() and "b:layer1.0" not in view.visible_units()
    view.expand_all()
    assert len(view.visible_units()) == len(h.nodes)


def test_search_finds_and_centres_a_layer(qtbot, page):
    view = page.view
    view.collapse_all()
    qtbot.keyClicks(page.graph_search, "layer3.1.conv2")
    assert view.matches() == ["layer3.1.conv2"]
    assert page.match_label.text() == "1 of 1"
    # The match was inside collapsed blocks: they opened and the node is selected and centred.
    assert "n:layer3.1.conv2" in view.visible_units()
    assert view.selected_unit() == "n:layer3.1.conv2"
    item = view.item_for("n:layer3.1.conv2")
    assert item.match and item.isSelected()
    centre = view.mapToScene(view.viewport().rect().center())
    assert item.sceneBoundingRect().adjusted(-40, -40, 40, 40).contains(centre)
    # Searching by type finds every BatchNorm; Enter steps through them.
    page.graph_search.setText("batchnorm")
    n = len(view.matches())
    assert n == 20
    qtbot.keyClick(page.graph_search, Qt.Key.Key_Return)
    assert page.match_label.text() == f"2 of {n}"
    page.graph_search.setText("no-such-layer")
    assert page.match_label.text() == "no match"


def test_freezing_a_block_updates_colours_count_and_requires_grad(qtbot, page, app_state):
    view = page.view
    view.collapse_all()
    trainable_before, total = page.trainable_counts()
    assert trainable_before == total
    label_before = page.count_label.text()
    item = view.item_for("b:layer1")
    assert item.status.freeze == "trainable"
    _click(qtbot, view, item, item.badge_rect().center())
    qtbot.waitUntil(lambda: view.status_of("b:layer1").freeze == "frozen", timeout=TIMEOUT)
    assert item.status.freeze == "frozen"  # the drawn item itself changed colour
    assert set(_layers(page, "layer1").values()) == {"frozen"}
    assert set(_layers(page, "layer2").values()) == {"trainable"}
    n_layer1 = page.model.status.blocks["layer1"].total
    assert n_layer1 == 147_968
    assert page.trainable_counts() == (total - n_layer1, total)
    assert page.count_label.text() != label_before
    assert [(o.op, o.target) for o in app_state.project.surgery] == [("freeze", "layer1")]
    assert app_state.modified
    assert app_state.project.train.user_set == ["freeze"]  # the user's freeze map: strategy Auto keeps it
    # Inside the block, every layer with parameters is frozen too.
    view.expand("layer1.0")
    assert view.status_of("n:layer1.0.conv1").freeze == "frozen"
    # Undo restores the trainable flags, colours and the project; redo applies it again.
    app_state.undo_stack.undo()
    assert app_state.project.surgery == [] and app_state.project.train.user_set == []
    _wait_status(qtbot, page)
    assert set(_layers(page, "layer1").values()) == {"trainable"}
    assert view.status_of("b:layer1").freeze == "trainable"
    assert page.count_label.text() == label_before
    app_state.undo_stack.redo()
    _wait_status(qtbot, page)
    assert set(_layers(page, "layer1").values()) == {"frozen"}
    # Clicking the badge of a frozen block unfreezes it.
    view.collapse_all()
    item = view.item_for("b:layer1")
    _click(qtbot, view, item, item.badge_rect().center())
    qtbot.waitUntil(lambda: view.status_of("b:layer1").freeze == "trainable", timeout=TIMEOUT)
    assert [o.op for o in app_state.project.surgery] == ["freeze", "unfreeze"]


def test_freeze_up_to_here_and_train_from_here(qtbot, page, app_state):
    menu = page.build_context_menu("b:layer2")
    menu.findChild(QAction, "ctx_freeze_up_to").trigger()
    assert app_state.project.surgery[-1].op == "freeze_before"
    assert app_state.project.surgery[-1].target == "layer3.0"
    _wait_status(qtbot, page)
    for prefix, frozen in (("conv1", True), ("layer1", True), ("layer2", True), ("layer3", False), ("fc", False)):
        assert set(_layers(page, prefix).values()) == {"frozen" if frozen else "trainable"}, prefix
    assert page.view.status_of("b:[stem]").freeze == "frozen"
    assert page.view.status_of("b:layer3").freeze == "trainable"
    page.build_context_menu("b:layer4").findChild(QAction, "ctx_train_from").trigger()
    assert [(o.op, o.target) for o in app_state.project.surgery[-2:]] == [("unfreeze", "*"),
                                                                         ("freeze_before", "layer4.0")]
    _wait_status(qtbot, page)
    assert page.view.status_of("b:layer3").freeze == "frozen"
    assert page.view.status_of("b:layer4").freeze == "trainable"


def test_replace_head_then_undo(qtbot, page, app_state, monkeypatch):
    asked = {}

    def fake_ask(parent, n, source):
        asked["n"], asked["source"] = n, source
        return {"num_classes": 7, "dropout": 0.2}

    monkeypatch.setattr(ReplaceHeadDialog, "ask", staticmethod(fake_ask))
    with qtbot.waitSignal(page.displayChanged, timeout=TIMEOUT):
        qtbot.mouseClick(page.head_button, Qt.MouseButton.LeftButton)
    assert asked["n"] == 2 and "No dataset" in asked["source"]
    assert page.display.hierarchy.nodes["fc.1"].output_shape[-1] == 7
    op = app_state.project.surgery[-1]
    assert (op.op, op.params) == ("replace_head", {"num_classes": 7, "dropout": 0.2})
    status = page.view.status_of("n:fc.1")
    assert status.modified and status.freeze == "trainable"
    assert page.view.status_of("b:fc").modified  # the new head is a block of its own
    with qtbot.waitSignal(page.displayChanged, timeout=TIMEOUT):
        app_state.undo_stack.undo()
    assert page.display.hierarchy.nodes["fc"].output_shape[-1] == 1000
    assert app_state.project.surgery == []
    assert not page.view.status_of("n:fc").modified


def test_replace_head_uses_the_scanned_class_count(qtbot, page, app_state, monkeypatch):
    class Scan:
        classes = ["a", "b", "c", "d", "e"]
        root = "/data/flowers"

    app_state.set_scan(Scan())
    assert page.default_num_classes()[0] == 5
    dlg = ReplaceHeadDialog(5, "from the scan")
    assert dlg.params() == {"num_classes": 5}
    dlg.hidden.setValue(64)
    assert dlg.params() == {"num_classes": 5, "hidden": 64}


def test_insert_after_marks_the_new_layer(qtbot, page, app_state):
    with qtbot.waitSignal(page.displayChanged, timeout=TIMEOUT):
        assert page.insert_after("layer4", {"type": "Dropout", "p": 0.3})
    assert page.display.hierarchy.nodes["layer4.1"].type == "Dropout"
    assert page.view.status_of("n:layer4.1").modified
    assert app_state.project.surgery[-1].target == "layer4"


def test_invalid_surgery_shows_error_and_changes_nothing(qtbot, page, app_state):
    display_before = page.display
    count = app_state.undo_stack.count()
    # Removing the stride-2 conv that widens 64 -> 128 channels breaks the shapes after it.
    page.remove_layer("layer2.0.conv1")
    qtbot.waitUntil(lambda: page.banner.text() != "", timeout=TIMEOUT)
    assert page.banner.level() == "error"
    assert "was not applied" in page.banner.text() and "layer2.0" in page.banner.text()
    assert page.display is display_before and "layer2.0.conv1" in page.display.hierarchy.nodes
    assert app_state.project.surgery == [] and app_state.undo_stack.count() == count
    # Removing the head is refused by the core with advice.
    page.banner.clear()
    page.remove_layer("fc")
    qtbot.waitUntil(lambda: page.banner.text() != "", timeout=TIMEOUT)
    assert "replace_head" in page.banner.text()
    assert app_state.project.surgery == []


def test_surgery_rewritten_by_another_page_is_followed(qtbot, page, app_state):
    """The Strategy page rewrites freeze ops directly in the project: the graph follows."""
    display = page.display
    rebuilt = []
    page.displayChanged.connect(lambda: rebuilt.append(1))
    app_state.project.surgery = [SurgeryOp("freeze", "*"), SurgeryOp("unfreeze", "layer4")]
    app_state.mark_changed("surgery")
    # Freeze ops only recolour the graph (a status job), it is not rebuilt.
    _wait_status(qtbot, page)
    assert page.display is display and rebuilt == []
    assert page.view.status_of("b:layer3").freeze == "frozen"
    assert page.view.status_of("b:layer4").freeze == "trainable"
    assert set(_layers(page, "layer1").values()) == {"frozen"}
    # Ops replaced, not appended: the colours follow just the same.
    app_state.project.surgery = [SurgeryOp("freeze_before", "layer2.0")]
    app_state.mark_changed("surgery")
    _wait_status(qtbot, page)
    assert page.display is display and rebuilt == []
    assert page.view.status_of("b:layer1").freeze == "frozen"
    assert page.view.status_of("b:layer4").freeze == "trainable"
    # A structural rewrite rebuilds the graph from the project.
    app_state.project.surgery = [SurgeryOp("freeze_before", "layer2.0"), SurgeryOp("replace_head", "", {"num_classes": 3})]
    with qtbot.waitSignal(page.displayChanged, timeout=TIMEOUT):
        app_state.mark_changed("surgery")
    assert page.display is not display and page.display.hierarchy.nodes["fc"].output_shape[-1] == 3
    assert page.view.status_of("b:layer1").freeze == "frozen" and page.view.status_of("n:fc").modified


def test_training_phase_recolours_without_touching_the_project(qtbot, page, app_state):
    from transfer_studio.training.events import PhaseChanged

    page.push_freeze_ops([SurgeryOp("freeze", "*")], "Freeze everything")
    _wait_status(qtbot, page)
    assert page.view.status_of("b:layer4").freeze == "frozen"
    app_state.trainingPhaseChanged.emit(PhaseChanged(epoch=3, phase="unfrozen", description="unfroze layer4",
                                                     unfrozen=["layer4.0", "layer4.1"], trainable_params=1,
                                                     total_params=2))
    assert page.view.status_of("b:layer4").freeze == "trainable"
    assert page.view.status_of("b:layer3").freeze == "frozen"
    assert page.phase_label.isVisibleTo(page) and "epoch 3" in page.phase_label.text()
    assert page.model.status.blocks["layer4"].freeze == "frozen"  # the project's status is unchanged
    assert [o.op for o in app_state.project.surgery] == ["freeze"]


def test_context_menu_from_a_right_click(qtbot, page):
    view = page.view
    view.collapse_all()
    item = view.item_for("b:layer2")
    view.centerOn(item)
    pos = view.mapFromScene(item.mapToScene(item.boundingRect().center()))
    from PySide6.QtGui import QContextMenuEvent
    from PySide6.QtWidgets import QApplication

    with qtbot.waitSignal(view.contextMenuRequested, timeout=5000) as blocker:
        QApplication.sendEvent(view.viewport(), QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos,
                                                                  view.viewport().mapToGlobal(pos)))
    assert blocker.args[0] == "b:layer2"
    assert page.context_menu is not None and page.context_menu.isVisible()
    assert page.context_menu.actions()[0].text() == "layer2"
    page.context_menu.close()
    menu = page.build_context_menu("b:layer2")
    names = {a.objectName() for a in menu.actions()}
    assert {"ctx_freeze", "ctx_unfreeze", "ctx_freeze_up_to", "ctx_replace_head", "ctx_remove"} <= names
    assert not menu.findChild(QAction, "ctx_unfreeze").isEnabled()  # nothing frozen yet
    head_menu = page.build_context_menu("n:fc") if "n:fc" in view.visible_units() else None
    if head_menu is not None:
        assert not head_menu.findChild(QAction, "ctx_remove").isEnabled()


class _SlowWeights(http.server.BaseHTTPRequestHandler):
    """Serves an endless trickle (or a 404), so a download can be watched and cancelled."""

    mode = "slow"

    def do_GET(self):  # noqa: N802
        if self.mode == "404":
            self.send_error(404, "not here")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(50 * 2**20))
        self.end_headers()
        try:
            for _ in range(10_000):
                self.wfile.write(b"\0" * 65536)
                self.wfile.flush()
                threading.Event().wait(0.01)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def weights_server(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowWeights)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("TS_WEIGHTS_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.delenv("TS_OFFLINE", raising=False)
    yield _SlowWeights
    _SlowWeights.mode = "slow"
    server.shutdown()
    server.server_close()


def test_download_shows_progress_and_can_be_cancelled(qtbot, page, weights_server):
    assert page.select_model("resnet34")
    info = page.selected_info()
    target = Path(info.weights_file)
    qtbot.mouseClick(page.download_button, Qt.MouseButton.LeftButton)
    assert page.busy_bar.is_busy() and page.busy() is True
    qtbot.waitUntil(lambda: page.busy_bar.progress.maximum() > 0 and page.busy_bar.progress.value() > 0, timeout=TIMEOUT)
    qtbot.mouseClick(page.busy_bar.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "cancelled" in page.banner.text(), timeout=TIMEOUT)
    assert not page.busy_bar.is_busy() and not page.busy()
    assert not target.exists()
    assert not list(target.parent.glob("*.part"))


def test_download_error_is_shown_in_the_page(qtbot, page, weights_server):
    weights_server.mode = "404"
    assert page.select_model("resnet34")
    qtbot.mouseClick(page.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.banner.text() != "", timeout=TIMEOUT)
    assert page.banner.level() == "error" and "Download failed" in page.banner.text()
    assert "404" in page.banner.text()
    assert page.download_button.isEnabled()


def test_load_reports_a_weights_file_that_does_not_fit(qtbot, page, app_state, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file

    bad = tmp_path / "wrong.safetensors"
    save_file({"fc.weight": torch.zeros(3, 3)}, str(bad))
    page.select_model("resnet18")
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    qtbot.mouseClick(page.open_weights_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.banner.text() != "", timeout=TIMEOUT)
    assert page.banner.level() == "error" and "Could not load resnet18" in page.banner.text()
    assert app_state.project.model.weights == "none"  # unchanged
    assert app_state.undo_stack.count() == 0



def test_fit_to_view_shows_the_whole_graph(qtbot, page):
    """Issue 12.8: "Fit to view" went back to the top at 100 % instead of fitting the graph."""
    from PySide6.QtCore import QRectF

    view = page.view
    view.expand_all()
    qtbot.waitUntil(lambda: not view.is_layout_pending(), timeout=TIMEOUT)
    view.reset_zoom()
    view.centerOn(0, 0)
    layout = view.current_layout()
    assert layout.height > 2 * view.viewport().height()  # a tall graph: this needs fitting
    for trigger in (lambda: qtbot.mouseClick(page.fit_button, Qt.MouseButton.LeftButton),
                    lambda: qtbot.keyClick(view, Qt.Key.Key_0)):
        view.reset_zoom()
        view.centerOn(0, 0)
        trigger()
        visible = view.mapToScene(view.viewport().rect()).boundingRect().adjusted(-1, -1, 1, 1)
        assert visible.contains(QRectF(0, 0, layout.width, layout.height))
        assert view.zoom() < 0.5


def test_the_trainable_share_never_rounds_up_to_100_percent(qtbot, page):
    """Issue 12.5: "Trainable … (100%)" while a block was frozen."""
    assert page.count_label.text().endswith("(100%)")  # all of it trains
    assert page.set_frozen("n:conv1", True)
    _wait_status(qtbot, page)
    trainable, total = page.trainable_counts()
    assert 0.999 < trainable / total < 1
    assert page.count_label.text().endswith("(99.9%)")


def test_a_long_training_message_does_not_squeeze_the_catalog(qtbot, page, app_state):
    """Issue 12.6: during training a long status line pushed the catalog aside (Top-1 and GFLOPs gone)."""
    import types

    from transfer_studio.ui.pages.model_catalog import COLUMNS

    page.resize(1280, 720)
    qtbot.wait(50)
    browser_width = page.splitter.sizes()[0]
    min_width = page.minimumSizeHint().width()
    event = types.SimpleNamespace(
        epoch=1, phase="head", unfrozen=[],
        description="fitting the new head to convergence on cached backbone features (L-BFGS; "
                    "regularisation chosen by cross-validation on the training images)")
    app_state.trainingPhaseChanged.emit(event)
    qtbot.wait(50)
    label = page.phase_label
    assert label.isVisible() and label.text().startswith("Training, epoch 1: fitting the new head")
    assert page.minimumSizeHint().width() <= min_width  # the message asks for no room of its own
    assert page.width() == 1280 and page.splitter.sizes()[0] >= browser_width - 2  # the browser kept its width
    header = page.table.horizontalHeader()
    for name in ("Top-1", "GFLOPs"):
        col = COLUMNS.index(name)
        assert not header.isSectionHidden(col) and header.sectionSize(col) > 20
        assert header.sectionViewportPosition(col) + header.sectionSize(col) <= page.table.viewport().width()
    assert label.is_elided() and label.text() in label.toolTip()  # shortened, the whole text on hover
    # When the run ends, the graph and the label show the project again, not the run's last phase.
    app_state.set_training_active(True)
    app_state.set_training_active(False)
    assert not label.isVisible() and page.model.overlay is None
