"""The main window: start-up, navigation, page failures, project files, prompts, sample, settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from transfer_studio.config import Project
from transfer_studio.ui import main_window as mw
from transfer_studio.ui.main_window import MainWindow
from transfer_studio.ui.pages.model import project_key
from transfer_studio.ui.settings import Settings
from transfer_studio.ui.state import AppState

TIMEOUT = 120_000  # the shared test machine can be slow; real waits end far sooner
ROOT = Path(__file__).resolve().parents[2]


def test_window_appears_before_torch_is_imported(tmp_path):
    script = """
import json, os, sys
from transfer_studio.ui.app import create_window
seen = {}
def hook(win):
    win.firstShown.connect(lambda: seen.update(torch="torch" in sys.modules, visible=win.isVisible()))
app, win, _ = create_window(["--reset-settings"], before_show=hook)
print(json.dumps({**seen, "title": win.windowTitle(), "page": win.current_page_key(),
                  "torchvision": "torchvision" in sys.modules}), flush=True)
os._exit(0)  # skip joining the device probe, which is importing torch by now
"""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "TS_SETTINGS_FILE": str(tmp_path / "s.ini"),
           "TS_DATA_DIR": str(tmp_path / "data")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"torch": False, "visible": True, "title": "Untitled[*] — Transfer Studio",
                      "page": "welcome", "torchvision": False}


def test_sidebar_menus_and_shortcuts(qtbot, main_window):
    w = main_window
    titles = [w.sidebar.item(i).text() for i in range(w.sidebar.count())]
    assert titles == ["Welcome", "Model", "Data", "Review labels", "Strategy", "Augment", "Train", "Evaluate", "Try",
                      "Export", "Runs"]
    assert w.current_page_key() == "welcome"
    assert w.page_actions["model"].shortcut() == QKeySequence("Ctrl+1")
    assert w.page_actions["runs"].shortcut() == QKeySequence("Ctrl+9")
    assert w.page_actions["strategy"].shortcut() == QKeySequence("Ctrl+3")
    assert w.page_actions["review"].shortcut() == QKeySequence("Ctrl+Shift+L")
    assert w.act_save.shortcut() == QKeySequence(QKeySequence.StandardKey.Save)
    assert w.act_save_as.shortcut() == QKeySequence("Ctrl+Shift+S")
    assert w.act_undo.shortcut() == QKeySequence(QKeySequence.StandardKey.Undo)
    assert QKeySequence("Ctrl+Shift+Z") in w.act_redo.shortcuts()
    w.page_actions["model"].trigger()
    assert w.current_page_key() == "model" and w.sidebar.currentRow() == 1
    assert w.stack.currentWidget().findChild(type(w.page("model")), "page_model") is w.page("model")
    w.sidebar.setCurrentRow(0)
    assert w.current_page_key() == "welcome"
    for name in ("sidebar", "page_stack", "menu_bar", "status_bar", "device_label", "window_banner"):
        assert w.findChild(QObject, name) is not None, name
    # Undo/redo actions follow the shared undo stack.
    assert not w.act_undo.isEnabled()


def test_a_page_that_fails_to_import_shows_an_error(qtbot, main_window, tmp_path, monkeypatch):
    import transfer_studio.ui.pages as pages_pkg

    (tmp_path / "broken_page.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.setattr(pages_pkg, "__path__", [*pages_pkg.__path__, str(tmp_path)])
    specs = list(mw.PAGES)
    specs[mw.PAGE_KEYS.index("runs")] = mw.PageSpec("runs", "broken_page", "RunsPage", "Runs", "runs", "Past runs")
    specs[mw.PAGE_KEYS.index("export")] = mw.PageSpec("export", "not_written_yet", "ExportPage", "Export", "export",
                                                      "Save the model")
    monkeypatch.setattr(mw, "PAGES", specs)
    main_window.show_page("runs")
    page = main_window.page("runs")
    assert page.objectName() == "page_runs_error"
    banner = page.findChild(mw.MessageBanner, "page_runs_error_banner")
    assert "boom at import" in banner.text() and "RuntimeError" in banner.details()
    main_window.show_page("export")
    assert main_window.page("export").objectName() == "page_export_unavailable"
    main_window.show_page("welcome")  # the app carries on
    assert main_window.isVisible()


def test_title_shows_name_and_modified_marker(qtbot, main_window, app_state):
    assert main_window.windowTitle() == "Test project[*] — Transfer Studio"
    assert not main_window.isWindowModified()
    app_state.project.name = "Birds"
    app_state.mark_changed("name")
    assert main_window.windowTitle() == "Birds[*] — Transfer Studio"
    assert main_window.isWindowModified()


def _wait_display(qtbot, window):
    page = window.page("model")
    qtbot.waitUntil(lambda: page.display is not None and page.display.key == project_key(window.state.project),
                    timeout=TIMEOUT)
    return page


def test_save_close_open_restores_model_freeze_and_surgery(qtbot, main_window, app_state, tmp_path, monkeypatch):
    w = main_window
    w.show_page("model")
    page = _wait_display(qtbot, w)
    assert page.set_frozen("b:layer1", True)
    with qtbot.waitSignal(page.displayChanged, timeout=TIMEOUT):
        page.replace_head({"num_classes": 5})
    assert w.isWindowModified()
    target = tmp_path / "birds"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    w.act_save_as.trigger()
    saved = tmp_path / "birds.tsproj"
    assert saved.is_file() and not w.isWindowModified()
    assert app_state.path == saved and app_state.project.name == "Test project"
    assert str(saved) in Settings().recent_projects()
    w.close()
    assert not w.isVisible()

    # A new window (as after a restart) opens the file: same model, freeze map and surgery.
    state2 = AppState()
    from transfer_studio.core import network

    w2 = MainWindow(state2, Settings())
    qtbot.addWidget(w2, before_close_func=lambda w: w.shutdown())
    w2.show()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(saved), ""))
    try:
        w2.act_open.trigger()
        assert w2.current_page_key() == "model"
        page2 = _wait_display(qtbot, w2)
        assert state2.project.model.name == "resnet18" and state2.project.model.weights == "none"
        assert [(o.op, o.target, o.params) for o in state2.project.surgery] == [
            ("freeze", "layer1", {}), ("replace_head", "", {"num_classes": 5})]
        net = network.build_network(state2.project)  # what the page shows and training starts from
        assert net.fc.out_features == 5
        assert all(not p.requires_grad for p in net.layer1.parameters())
        assert page2.view.status_of("b:layer1").freeze == "frozen"
        assert page2.view.status_of("n:fc").modified
        assert w2.windowTitle() == "Test project[*] — Transfer Studio" and not w2.isWindowModified()
    finally:
        w2.shutdown()


@pytest.mark.parametrize("answer", ["cancel", "discard", "save"])
def test_unsaved_changes_prompt_on_close(qtbot, main_window, app_state, tmp_path, monkeypatch, answer):
    B = QMessageBox.StandardButton
    asked = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: asked.append(a[2]) or
                        {"cancel": B.Cancel, "discard": B.Discard, "save": B.Save}[answer])
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "p.tsproj"), ""))
    app_state.project.data.root = "/data/cats"
    app_state.mark_changed("data")
    main_window.close()
    assert len(asked) == 1 and "unsaved changes" in asked[0]
    if answer == "cancel":
        assert main_window.isVisible() and app_state.modified
    else:
        assert not main_window.isVisible()
        assert (tmp_path / "p.tsproj").is_file() == (answer == "save")
    if answer == "save":
        assert Project.load(tmp_path / "p.tsproj").data.root == "/data/cats"


def test_unsaved_changes_prompt_on_new_and_open(qtbot, main_window, app_state, monkeypatch):
    B = QMessageBox.StandardButton
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: B.Cancel)
    opened = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: opened.append(1) or ("", ""))
    app_state.mark_changed("data")
    main_window.act_new.trigger()
    main_window.act_open.trigger()
    assert app_state.project.name == "Test project" and opened == []  # cancelled before the file dialog
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: B.Discard)
    main_window.act_new.trigger()
    assert app_state.project.name == "Untitled" and not app_state.modified
    assert main_window.current_page_key() == "model"


def test_opening_a_corrupt_project_shows_an_error(qtbot, main_window, app_state, tmp_path):
    bad = tmp_path / "bad.tsproj"
    bad.write_text("{ not json")
    assert not main_window.open_project(str(bad))
    assert main_window.banner.level() == "error" and "corrupt" in main_window.banner.text()
    assert app_state.project.name == "Test project"
    assert not main_window.open_project(str(tmp_path / "missing.tsproj"))
    assert "not found" in main_window.banner.text()


def test_sample_project_loads_the_bundled_model(qtbot, main_window, app_state, tmp_path):
    from transfer_studio.core import catalog, network

    welcome = main_window.page("welcome")
    qtbot.mouseClick(welcome.sample_button, Qt.MouseButton.LeftButton)
    assert main_window.busy_bar.is_busy()
    qtbot.waitUntil(lambda: app_state.project.model.name == "efficientnet_lite0", timeout=TIMEOUT)
    page = _wait_display(qtbot, main_window)
    assert main_window.current_page_key() == "model"
    assert app_state.project.model.weights == "DEFAULT"
    root = Path(app_state.project.data.root)
    assert root.is_relative_to(tmp_path / "appdata")
    assert sorted(p.name for p in root.iterdir()) == [str(d) for d in range(10)]
    assert all(len(list((root / str(d)).glob("*.png"))) == 40 for d in range(10))
    assert app_state.path is not None and app_state.path.is_file() and not app_state.modified
    # Real pretrained weights, exactly the bundled file's.
    info = catalog.get_info("efficientnet_lite0")
    bundled = catalog.load_state_dict_file(info.weights_file)
    net = network.build_network(app_state.project)  # the network the Model page shows
    assert (net._conv_stem.weight.detach() == bundled["_conv_stem.weight"]).all()
    assert page.current_label.text().startswith("efficientnet_lite0 · pretrained")
    assert "Head" in [page.view.hierarchy.blocks[b].label for b in page.view.hierarchy.top_blocks]


def test_looking_at_the_sample_leaves_it_unmodified(qtbot, main_window, app_state):
    """Visiting the pages of a just-opened project is not an edit: no "unsaved changes" prompt."""
    with qtbot.waitSignal(app_state.projectReplaced, timeout=TIMEOUT):
        qtbot.mouseClick(main_window.page("welcome").sample_button, Qt.MouseButton.LeftButton)
    _wait_display(qtbot, main_window)
    assert Project.load(app_state.path).data.split is None  # the sample file stores no split
    # its dataset is scanned in the background at once (the split filled in), no visit to Data needed
    qtbot.waitUntil(lambda: app_state.project.data.split is not None, timeout=TIMEOUT)
    assert not app_state.modified
    main_window.show_page("data")
    for key in ("strategy", "augment", "train", "evaluate", "export"):
        main_window.show_page(key)
        qtbot.wait(50)
    assert not app_state.modified
    assert not main_window.windowTitle().rstrip().endswith("*")


def _open_sample(qtbot, window, *, reset: bool = False) -> None:
    with qtbot.waitSignal(window.state.projectReplaced, timeout=TIMEOUT):
        assert (window.reset_sample() if reset else window.open_sample())
    qtbot.waitUntil(lambda: not window.busy_bar.is_busy() and not window.files.sample_busy(),
                    timeout=TIMEOUT)


def test_reopening_the_sample_keeps_what_was_saved_and_reset_asks_first(qtbot, main_window, app_state,
                                                                        monkeypatch):
    """Issue 12.1: a second --sample rewrote the saved sample (runs list and changes lost)."""
    from transfer_studio.config import RunRecord

    w = main_window
    _open_sample(qtbot, w)
    path = app_state.path
    assert path == mw.sample_dir() / "digits-sample.tsproj"
    app_state.project.train.epochs = 3
    run_dir = str(path.parent / "runs" / "run-1")
    app_state.project.runs.append(RunRecord(run_dir=run_dir, status="finished", epochs_completed=3))
    app_state.mark_changed("runs")
    assert w.save()
    saved = path.read_bytes()
    app_state.new_project(Project(name="Other"))

    _open_sample(qtbot, w)  # what `transfer-studio --sample` does the second time
    assert path.read_bytes() == saved
    assert app_state.path == path and not app_state.modified
    assert app_state.project.train.epochs == 3 and [r.run_dir for r in app_state.project.runs] == [run_dir]
    assert "Reset the Sample" in w.act_reset_sample.text()

    asked = []

    def answer(button):
        def question(*args, **_kwargs):
            asked.append(args[2])
            return button
        return question

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Cancel))
    assert not w.reset_sample()
    assert len(asked) == 1 and "runs" in asked[0] and path.read_bytes() == saved
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Reset))
    _open_sample(qtbot, w, reset=True)
    assert len(asked) == 2
    assert app_state.project.runs == [] and app_state.project.train.epochs == 10 and not app_state.modified
    assert Project.load(path).runs == []


def test_recent_projects_on_the_welcome_page(qtbot, main_window, app_state, tmp_path):
    a, b = tmp_path / "a.tsproj", tmp_path / "b.tsproj"
    Project(name="A").save(a)
    Project(name="B").save(b)
    settings = Settings()
    settings.add_recent_project(a)
    settings.add_recent_project(b)
    b.unlink()
    welcome = main_window.page("welcome")
    welcome.refresh_recent()
    lst = welcome.recent_list
    assert lst.count() == 2
    assert "(missing)" in lst.item(0).text() and not lst.item(0).flags() & Qt.ItemFlag.ItemIsEnabled
    lst.setCurrentRow(1)
    qtbot.mouseClick(welcome.open_recent_button, Qt.MouseButton.LeftButton)
    assert app_state.project.name == "A" and app_state.path == a
    qtbot.mouseClick(welcome.clear_recent_button, Qt.MouseButton.LeftButton)
    assert Settings().recent_projects() == [] and welcome.recent_empty.isVisibleTo(welcome)


def test_theme_choice_changes_the_palette_and_is_remembered(qtbot, main_window):
    from transfer_studio.ui import theme

    try:
        main_window.theme_actions["dark"].trigger()
        assert theme.is_dark() and Settings().theme() == "dark"
        main_window.theme_actions["light"].trigger()
        assert not theme.is_dark() and Settings().theme() == "light"
    finally:
        theme.apply_theme(QApplication.instance(), "light")


def test_status_bar_names_the_compute_device(qtbot, main_window):
    qtbot.waitUntil(lambda: not main_window.device_label.text().startswith("Detecting"), timeout=TIMEOUT)
    text = main_window.device_label.text()
    assert text.startswith(("CPU", "GPU"))


def test_geometry_is_remembered(qtbot, app_state, monkeypatch):
    w = MainWindow(app_state, Settings())
    qtbot.addWidget(w, before_close_func=lambda w: w.shutdown())
    w.show()
    w.resize(1111, 777)
    saved = w.saveGeometry()
    w.shutdown()
    assert Settings().geometry() == saved and Settings().window_state() is not None
    # The offscreen test screen is too small to show 1111 px: check what is handed back to Qt.
    restored = []
    monkeypatch.setattr(MainWindow, "restoreGeometry", lambda self, data: restored.append(data) or True)
    w2 = MainWindow(AppState(), Settings())
    qtbot.addWidget(w2, before_close_func=lambda w: w.shutdown())
    assert restored == [saved]


def test_command_line_arguments():
    from transfer_studio.ui.app import parse_args

    args = parse_args(["my.tsproj"])
    assert args.file == "my.tsproj" and not args.sample
    assert parse_args(["--sample", "--theme", "dark"]).theme == "dark"
    for bad in (["a.tsproj", "--project", "b.tsproj"], ["--sample", "a.tsproj"], ["--theme", "pink"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(bad)
        assert exc.value.code == 2


def test_settings_recent_list_and_folders(tmp_path):
    s = Settings()
    paths = []
    for i in range(12):
        p = tmp_path / f"p{i}.tsproj"
        p.write_text("{}")
        paths.append(p)
        s.add_recent_project(p)
    s.add_recent_project(paths[3])  # re-opened: moves to the front, no duplicate
    recent = s.recent_projects()
    assert len(recent) == 10 and recent[0] == str(paths[3]) and recent.count(str(paths[3])) == 1
    paths[11].unlink()
    assert str(paths[11]) not in s.recent_projects(existing_only=True)
    assert s.last_folder("project") == str(tmp_path)
    s.set_last_folder("data", tmp_path / "gone")
    assert s.last_folder("data") == str(Path.home())  # a vanished folder falls back to home
    with pytest.raises(ValueError):
        s.last_folder("nonsense")
    s.reset()
    assert s.recent_projects() == [] and s.theme() == "system"


def test_resources_are_found_and_complete():
    from transfer_studio.ui import theme

    root = theme.resources_dir()
    assert (root / "style.qss").is_file() and (root / "transfer-studio.desktop").is_file()
    assert not theme.app_icon().isNull()
    names = {spec.icon for spec in mw.PAGES} | {"zoom-in", "zoom-out", "fit", "expand", "collapse", "close",
                                                 "info", "warning", "error", "new", "open", "save", "sample"}
    for name in names:
        assert not theme.icon(name).isNull(), name
    assert "@" not in theme.stylesheet(dark=True)  # every variable filled in


def test_top_level_help_lists_the_desktop_apps_options(capsys):
    """Issue 12.10: `transfer-studio --help` did not list --sample, --project or --reset-settings."""
    import re

    from transfer_studio.__main__ import APP_HELP, main
    from transfer_studio.ui.app import parse_args

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "COMMAND" in out and "train" in out  # the CLI's commands are still there
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    app_options = set(re.findall(r"--[a-z][a-z-]+", capsys.readouterr().out)) - {"--help"}
    assert {"--sample", "--project", "--reset-settings", "--theme"} <= app_options
    for option in app_options:  # every option of the app's own parser
        assert option in APP_HELP and option in out


def test_an_opened_projects_dataset_is_scanned_without_visiting_the_data_page(qtbot, main_window, app_state,
                                                                              tmp_path):
    """Issue 12.10: the sample's dataset was not scanned until the user visited Data (Strategy said
    there was no dataset)."""
    from helpers.images import make_class_folder

    root = make_class_folder(tmp_path / "ds", {"a": 3, "b": 3}, size=16)
    project = Project(name="With data")
    project.data.root = str(root)
    path = tmp_path / "with-data.tsproj"
    project.save(path)
    assert main_window.open_project(str(path))
    assert main_window.current_page_key() == "model"
    qtbot.waitUntil(lambda: app_state.scan is not None, timeout=TIMEOUT)
    assert app_state.scan.num_images == 6 and main_window.current_page_key() == "model"
    main_window.show_page("strategy")
    strategy = main_window.page("strategy")
    assert strategy.content.isVisibleTo(strategy) and not strategy.empty.isVisibleTo(strategy)


def test_a_long_recent_project_path_is_shortened_not_scrolled(qtbot, tmp_path):
    """Issue 12.10: the Welcome page's recent-project path was cut with a horizontal scrollbar."""
    from transfer_studio.ui.pages.welcome import WelcomePage

    deep = tmp_path.joinpath(*[f"a-rather-long-folder-name-{i}" for i in range(6)])
    deep.mkdir(parents=True)
    Project(name="Deep").save(deep / "deep.tsproj")
    Settings().add_recent_project(deep / "deep.tsproj")
    page = WelcomePage(AppState())
    qtbot.addWidget(page)
    page.resize(1100, 700)
    page.show()
    qtbot.waitExposed(page)
    lst = page.recent_list
    assert lst.count() == 1 and str(deep) in lst.item(0).text()
    assert not lst.horizontalScrollBar().isVisible()
    assert lst.textElideMode() == Qt.TextElideMode.ElideMiddle and str(deep) in lst.item(0).toolTip()


def test_a_long_status_message_stops_short_of_the_project_path(qtbot, main_window, app_state, tmp_path):
    """Issue 12.6: transient status messages ran into the permanent project path."""
    w = main_window
    w.resize(1280, 720)
    qtbot.waitUntil(lambda: not w.device_label.text().startswith("Detecting"), timeout=TIMEOUT)
    deep = tmp_path.joinpath(*[f"folder-number-{i}" for i in range(8)])
    app_state.path = deep / "project.tsproj"
    w._update_title()
    text = f"Scanned {deep}/digits: 400 images in 10 classes"
    app_state.status(text, 0)
    qtbot.wait(50)
    bar = w.statusBar()
    shown = bar.currentMessage()
    assert shown != text and shown.endswith("…") and bar.toolTip() == text
    end_of_message = 6 + bar.fontMetrics().horizontalAdvance(shown)
    assert end_of_message < w.path_label.geometry().left()
    assert w.path_label.text() == str(app_state.path) and w.path_label.is_elided()
    assert str(app_state.path) in w.path_label.toolTip()
    w.device_label.setText("GPU: a device with a much longer name than before · 80.0 GiB")
    w.status_line.relayout()  # what the device detection does when it ends
    qtbot.wait(50)
    assert 6 + bar.fontMetrics().horizontalAdvance(bar.currentMessage()) < w.path_label.geometry().left()
    app_state.status("Saved", 0)
    assert bar.currentMessage() == "Saved" and bar.toolTip() == ""


def test_strategy_and_augment_settings_lock_while_a_run_trains(qtbot, main_window, app_state):
    """Issue 12.6: the Strategy page stayed editable during training while the Train page locked its own."""
    strategy, augment = main_window.page("strategy"), main_window.page("augment")
    content = strategy.findChild(QObject, "strategy_content")
    preset_row = augment.findChild(QObject, "augment_preset_row")
    assert content.isEnabled() and preset_row.isEnabled()
    app_state.set_training_active(True)
    assert not content.isEnabled() and not strategy.lr_spin.isEnabled() and not strategy.apply_button.isEnabled()
    assert not preset_row.isEnabled() and not augment.preset_combo.isEnabled()
    assert "Locked while a training run" in content.toolTip()
    app_state.set_training_active(False)
    assert content.isEnabled() and preset_row.isEnabled() and content.toolTip() == ""
