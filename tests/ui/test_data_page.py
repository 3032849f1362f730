"""Data page: scan a generated folder, show what is in it, split it, and survive bad folders."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from helpers.images import make_class_folder
from PySide6.QtCore import QElapsedTimer, QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QListView

from transfer_studio.config import Project, SurgeryOp
from transfer_studio.ui.pages import data as data_mod
from transfer_studio.ui.pages.data import DataPage
from transfer_studio.ui.state import AppState


@pytest.fixture
def page(qtbot):
    state = AppState(Project())
    page = DataPage(state)
    qtbot.addWidget(page)
    page.resize(1100, 720)
    yield page
    page.shutdown()


def scan(qtbot, page: DataPage, folder: Path, timeout: int = 20000) -> None:
    """Choose ``folder`` and wait until the scan (successful or not) is over."""
    page.choose_folder(folder)
    qtbot.waitUntil(lambda: not page.busy(), timeout=timeout)


def table_counts(page: DataPage) -> dict[str, int]:
    t = page.class_table
    return {t.item(r, 0).text(): int(t.item(r, 1).data(Qt.ItemDataRole.UserRole)) for r in range(t.rowCount())}


@pytest.fixture
def messy(tmp_path) -> Path:
    """3 classes (one tiny), a zero-byte file, a text file named .jpg, a truncated PNG, a duplicate."""
    root = make_class_folder(tmp_path / "pets", {"cat": 12, "dog": 20, "fox": 3}, size=24)
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "dog" / "notes.jpg").write_text("not an image at all")
    good = (root / "dog" / "dog_0000.png").read_bytes()
    (root / "dog" / "cut.png").write_bytes(good[: len(good) // 2])
    shutil.copy(root / "dog" / "dog_0001.png", root / "dog" / "copy_of_1.png")
    return root


def test_scan_shows_counts_skipped_duplicates_and_fills_project(qtbot, page, messy, monkeypatch):
    state = page.state
    with qtbot.waitSignal(state.scanChanged, timeout=20000) as blocker:
        page.choose_folder(messy)
    qtbot.waitUntil(lambda: not page.busy(), timeout=10000)
    report = blocker.args[0]
    assert state.scan is report

    # Class table: readable images only (dog has 20 + the duplicate copy).
    assert table_counts(page) == {"cat": 12, "dog": 21, "fox": 3}
    # Skipped list: exactly the three broken files, each with a reason.
    t = page.skipped_table
    skipped = {t.item(r, 0).text(): t.item(r, 1).text() for r in range(t.rowCount())}
    assert set(skipped) == {"cat/empty.jpg", "dog/notes.jpg", "dog/cut.png"}
    assert "zero-byte" in skipped["cat/empty.jpg"]
    assert "truncated" in skipped["dog/cut.png"]
    assert "not an image" in skipped["dog/notes.jpg"]
    # Duplicates: one group with both copies.
    tree = page.duplicates_tree
    assert tree.topLevelItemCount() == 1
    group = tree.topLevelItem(0)
    assert sorted(group.child(i).text(0) for i in range(group.childCount())) == [
        "dog/copy_of_1.png", "dog/dog_0001.png"]
    assert page.tabs.tabText(2) == "Problems (4)"
    # The tiny class is highlighted in the chart (drawn once pyqtgraph, imported in the background,
    # is ready) and named in the warnings, in plain words.
    qtbot.waitUntil(lambda: page._chart is not None, timeout=20000)
    assert page._chart.highlighted == [False, False, True]
    assert page._chart.values == [12.0, 21.0, 3.0]
    assert "'fox' has only 3 image(s)" in page.warnings_label.text()
    assert "36" in page.summary_label.text() and "3 classes" in page.summary_label.text()

    # The project now points at the folder, with a stratified split of every readable image.
    data = state.project.data
    assert data.root == str(messy.resolve())
    assert data.classes == ["cat", "dog", "fox"]
    split_files = sorted(f for part in data.split.values() for f in part)
    assert split_files == sorted(report.files)
    assert len(data.split["val"]) == len(page.split["val"]) > 0
    assert state.modified
    val_col = [int(page.class_table.item(r, 4).data(Qt.ItemDataRole.UserRole)) for r in range(3)]
    assert sum(val_col) == len(data.split["val"])
    assert f"{len(data.split['train'])} training" in page.split_counts_label.text()

    # Double-clicking a skipped file opens its folder.
    opened = []
    monkeypatch.setattr(data_mod, "_open_url", lambda url: opened.append(url.toLocalFile()))
    row = next(r for r in range(t.rowCount()) if t.item(r, 0).text() == "dog/notes.jpg")
    page.skipped_table.cellDoubleClicked.emit(row, 0)
    child = group.child(0)
    page.duplicates_tree.itemDoubleClicked.emit(child, 0)
    assert opened == [str(messy.resolve() / "dog"), str(messy.resolve() / "dog")]
    # The folder is remembered for the Recent menu.
    page._fill_recent_menu()
    assert [a.text() for a in page.recent_menu.actions()] == [str(messy.resolve())]


def test_split_settings_change_the_split_and_are_reproducible(qtbot, page, tmp_path):
    folder = make_class_folder(tmp_path / "ds", {"a": 20, "b": 20}, size=16)
    scan(qtbot, page, folder)
    data = page.state.project.data
    first = {k: list(v) for k, v in data.split.items()}
    assert len(first["val"]) == 8  # 20 % of 20 per class

    page.val_spin.setValue(30)
    qtbot.waitUntil(lambda: len(data.split["val"]) == 12, timeout=5000)
    assert data.val_split == pytest.approx(0.3)
    assert page.class_table.isColumnHidden(5)

    page.test_spin.setValue(10)
    qtbot.waitUntil(lambda: len(data.split["test"]) == 4, timeout=5000)
    assert not page.class_table.isColumnHidden(5)
    assert "4 test" in page.split_counts_label.text()

    page.seed_spin.setValue(5)
    qtbot.waitUntil(lambda: not page.busy() and data.seed == 5 and page._split_timer.isActive() is False,
                    timeout=5000)
    qtbot.waitUntil(lambda: data.split == page.split, timeout=5000)
    seeded = {k: list(v) for k, v in data.split.items()}
    page.seed_spin.setValue(0)
    qtbot.waitUntil(lambda: data.split != seeded, timeout=5000)
    page.seed_spin.setValue(5)
    qtbot.waitUntil(lambda: data.split == seeded, timeout=5000)  # same seed, same split


def test_cancel_a_scan_keeps_the_previous_dataset(qtbot, page, tmp_path, monkeypatch):
    from transfer_studio.core import dataset

    first = make_class_folder(tmp_path / "first", {"a": 4, "b": 4}, size=16)
    scan(qtbot, page, first)
    before = page.state.project.data.root
    report = page.state.scan

    # Hold the real scan at its first progress report until the user presses Cancel.
    real_scan = dataset.scan

    def held_scan(root, *, verify=False, progress=None, cancel=None):
        def hold(done, total):
            deadline = time.monotonic() + 10
            while not cancel() and time.monotonic() < deadline:
                time.sleep(0.005)
            progress(done, total)
        return real_scan(root, verify=verify, progress=hold, cancel=cancel)

    monkeypatch.setattr(dataset, "scan", held_scan)
    second = make_class_folder(tmp_path / "second", {"x": 4, "y": 4, "z": 4}, size=16)
    page.choose_folder(second)
    assert page.busy() and page.busy_indicator.isVisibleTo(page)
    qtbot.mouseClick(page.busy_indicator.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.busy(), timeout=10000)
    assert "cancelled" in page.banner.text()
    assert not page.busy_indicator.isVisibleTo(page)
    assert page.state.scan is report
    assert page.state.project.data.root == before
    assert page.folder_edit.text() == before
    assert table_counts(page) == {"a": 4, "b": 4}

    monkeypatch.setattr(dataset, "scan", real_scan)
    scan(qtbot, page, second)  # the page keeps working
    assert table_counts(page) == {"x": 4, "y": 4, "z": 4}


def _no_class_folders(tmp_path: Path) -> Path:
    root = tmp_path / "loose"
    make_class_folder(tmp_path / "tmp", {"a": 2}, size=8)
    root.mkdir()
    for f in (tmp_path / "tmp" / "a").iterdir():
        shutil.move(str(f), root / f.name)
    return root


def _one_class(tmp_path: Path) -> Path:
    return make_class_folder(tmp_path / "single", {"only": 3}, size=8)


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "does-not-exist"


@pytest.mark.parametrize("make, expected", [
    (_no_class_folders, "has no class sub-folders"),
    (_one_class, "only one class ('only')"),
    (_missing, "data folder not found"),
])
def test_bad_folders_show_a_message_and_the_page_keeps_working(qtbot, page, tmp_path, make, expected):
    scan(qtbot, page, make(tmp_path))
    assert page.banner.level() == "error"
    assert expected in page.banner.text()
    assert page.state.scan is None and page.state.project.data.root == ""
    good = make_class_folder(tmp_path / "good", {"a": 3, "b": 3}, size=8)
    scan(qtbot, page, good)
    assert page.banner.text() == "" and table_counts(page) == {"a": 3, "b": 3}


def test_folder_deleted_while_scanning(qtbot, page, tmp_path, monkeypatch):
    from transfer_studio.core import dataset

    folder = make_class_folder(tmp_path / "vanishing", {"a": 5, "b": 5}, size=8)
    real_scan = dataset.scan

    def deleting_scan(root, *, verify=False, progress=None, cancel=None):
        def on_progress(done, total):
            if done == 0:  # files listed, not yet read: the folder goes away now
                shutil.rmtree(folder)
            progress(done, total)
        return real_scan(root, verify=verify, progress=on_progress, cancel=cancel)

    monkeypatch.setattr(dataset, "scan", deleting_scan)
    scan(qtbot, page, folder)
    assert page.banner.level() == "error"
    assert "disappeared" in page.banner.text()
    assert page.state.scan is None


def test_permission_denied_is_a_clear_message(qtbot, page, tmp_path, monkeypatch):
    folder = make_class_folder(tmp_path / "locked", {"a": 3, "b": 3}, size=8)
    real_scandir = os.scandir

    def scandir(path="."):  # the tests run as root, so chmod would not stop the scan
        if os.fspath(path) == str(folder.resolve()):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    scan(qtbot, page, folder)
    assert page.banner.level() == "error"
    assert "Permission denied" in page.banner.text() and str(folder.resolve()) in page.banner.text()
    monkeypatch.setattr(os, "scandir", real_scandir)
    scan(qtbot, page, folder)
    assert table_counts(page) == {"a": 3, "b": 3}


def test_new_dataset_updates_the_replaced_heads_class_count(qtbot, page, tmp_path):
    state = page.state
    state.project.surgery = [SurgeryOp("freeze", "*"), SurgeryOp("replace_head", params={"num_classes": 5})]
    changed: list[str] = []
    state.projectChanged.connect(changed.append)
    scan(qtbot, page, make_class_folder(tmp_path / "three", {"a": 3, "b": 3, "c": 3}, size=8))
    assert state.project.surgery[1].params["num_classes"] == 3
    assert "surgery" in changed and "data" in changed
    assert page.banner.level() == "info" and "predicts 3 classes (it had 5)" in page.banner.text()


def test_choices_survive_save_and_open(qtbot, page, tmp_path):
    state = page.state
    folder = make_class_folder(tmp_path / "ds", {"a": 10, "b": 10}, size=8)
    scan(qtbot, page, folder)
    page.val_spin.setValue(40)
    page.seed_spin.setValue(3)
    qtbot.waitUntil(lambda: len(state.project.data.split["val"]) == 8 and state.project.data.seed == 3
                    and not page.busy() and not page._split_timer.isActive(), timeout=5000)
    qtbot.waitUntil(lambda: state.project.data.split == page.split, timeout=5000)
    saved_split = state.project.data.split
    path = tmp_path / "p.tsproj"
    state.save(path)

    state.new_project()
    assert page.results.isHidden() and page.val_spin.value() == 20
    with qtbot.waitSignal(state.scanChanged, timeout=20000, check_params_cb=lambda r: r is not None):
        state.open_project(path)
    qtbot.waitUntil(lambda: not page.busy(), timeout=5000)
    assert (page.val_spin.value(), page.seed_spin.value()) == (40, 3)
    assert state.project.data.split == saved_split
    assert table_counts(page) == {"a": 10, "b": 10}
    assert not state.modified  # re-reading the folder of an opened project changes nothing


def test_drop_a_folder_onto_the_page(qtbot, page, tmp_path):
    folder = make_class_folder(tmp_path / "dropped", {"a": 2, "b": 2}, size=8)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    page.dropEvent(event)
    qtbot.waitUntil(lambda: not page.busy(), timeout=10000)
    assert page.state.project.data.root == str(folder.resolve())


def test_gallery_shows_thumbnails_of_the_chosen_class(qtbot, page, tmp_path):
    folder = make_class_folder(tmp_path / "g", {"a": 6, "b": 3}, size=40)
    scan(qtbot, page, folder)
    page.show()
    row_b = next(r for r in range(2) if page.class_table.item(r, 0).text() == "b")
    assert row_b == 1  # class order until the user sorts
    page.class_table.cellDoubleClicked.emit(row_b, 0)  # class 'b' -> its images
    assert page.tabs.currentIndex() == 1
    model = page._thumbs
    assert model.rowCount() == 3
    assert all("/b/" in model.path(r) for r in range(3))
    qtbot.waitUntil(lambda: model.loader.pending() == 0 and model.loader.decoded >= 3, timeout=10000)
    pixmap = model.data(model.index(0), Qt.ItemDataRole.DecorationRole)
    assert (pixmap.width(), pixmap.height()) == (96, 96)  # scaled to fill the tile
    image = pixmap.toImage()
    centre = image.pixelColor(20, 20)
    assert centre.green() > centre.red()  # class 'b' is the green one in make_class_folder


def test_twenty_thousand_images_load_only_what_is_visible(qtbot, tmp_path):
    from transfer_studio.ui.thumbnails import BROKEN, ThumbnailModel, make_gallery_view

    folder = make_class_folder(tmp_path / "few", {"a": 30}, size=32)
    real = sorted(str(p) for p in (folder / "a").iterdir())
    # 20,000 entries: the first 30 real files, the rest paths that do not exist (cheap to "decode").
    paths = real + [str(tmp_path / f"missing_{i}.png") for i in range(20000 - len(real))]
    model = ThumbnailModel()
    view = make_gallery_view(model)
    qtbot.addWidget(view)
    view.resize(640, 420)
    view.show()
    timer = QElapsedTimer()
    timer.start()
    model.set_items(paths)
    assert timer.elapsed() < 500
    qtbot.waitUntil(lambda: model.loader.decoded > 0 and model.loader.pending() == 0, timeout=10000)
    loaded_first = model.loader.decoded
    assert 0 < loaded_first < 200  # one screenful, not 20,000
    assert model.data(model.index(0), Qt.ItemDataRole.DecorationRole) is not BROKEN

    # The batched layout places the items over several event-loop turns; then scroll to the end
    # while measuring how long the event loop stalls.
    last = model.index(len(paths) - 1)
    qtbot.waitUntil(lambda: view.visualRect(last).isValid(), timeout=10000)
    gaps: list[int] = []
    tick = QElapsedTimer()
    tick.start()

    def beat():
        gaps.append(tick.restart())

    heartbeat = QTimer()
    heartbeat.timeout.connect(beat)
    heartbeat.start(10)
    for step in range(1, 11):
        view.verticalScrollBar().setValue(view.verticalScrollBar().maximum() * step // 10)
        qtbot.wait(30)
    # The end of the list, now on screen, gets loaded (as "unreadable": those files do not exist).
    qtbot.waitUntil(lambda: model.loader.cached(paths[-1]) is BROKEN, timeout=10000)
    heartbeat.stop()
    assert model.data(last, Qt.ItemDataRole.DecorationRole) is not None
    assert model.loader.decoded < 2000
    assert max(gaps) < 250, gaps
    model.loader.shutdown()
    assert isinstance(view, QListView)


_GUI_THREAD_SCRIPT = r"""
import importlib.abc, json, sys, threading, time
from pathlib import Path

main_thread_imports = []


class Spy(importlib.abc.MetaPathFinder):
    # Records first imports of torch / the core made by the GUI thread (sys.modules hits don't come here).
    def find_spec(self, name, path, target=None):
        if threading.current_thread() is threading.main_thread() and (
                name == "torch" or name.startswith("transfer_studio.core")):
            main_thread_imports.append(name)
        return None


sys.meta_path.insert(0, Spy())
sys.path.insert(0, sys.argv[2])
from PySide6.QtCore import QCoreApplication, QEventLoop
from PySide6.QtWidgets import QApplication

app = QApplication([])
from helpers.images import make_class_folder
from transfer_studio.config import ModelSpec, Project
from transfer_studio.ui import worker
from transfer_studio.ui.pages.augment import AugmentPage
from transfer_studio.ui.pages.data import DataPage
from transfer_studio.ui.pages.strategy import StrategyPage
from transfer_studio.ui.state import AppState

project = Project(model=ModelSpec("resnet18", weights="none"))
project.train.image_size = 64
project.ui["strategy_suggestion"] = dict(
    model="resnet18", approach=1, name="head", frozen=["conv1", "layer1"], trainable=["fc"], unfreeze_from=None,
    lr=1e-3, body_lr_factor=0.1, epochs=3, batch_size=8, augment="light", estimated_hours=0.01,
    time_budget_hours=2.0, stepped_down=False, reason="saved")
state = AppState(project)
pages = [DataPage(state), StrategyPage(state), AugmentPage(state)]
for page in pages:
    page.show()
pages[0].choose_folder(make_class_folder(Path(sys.argv[1]), {"a": 6, "b": 6}, size=16))
deadline = time.monotonic() + 240
quiet_since = None
while time.monotonic() < deadline:
    QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
    time.sleep(0.01)
    busy = worker.running_tasks() or any(p._timer.isActive() for p in pages[2:]) or pages[1]._suggest_timer.isActive()
    if busy:
        quiet_since = None
    elif quiet_since is None:
        quiet_since = time.monotonic()
    elif time.monotonic() - quiet_since > 1.0:
        break
print(json.dumps({"main_thread_imports": main_thread_imports, "torch": "torch" in sys.modules,
                  "scanned": state.scan is not None, "suggestion": getattr(pages[1].suggestion, "reason", None),
                  "preview": len(pages[2].grid.images()), "banners": [p.banner.text() for p in pages]}))
for page in pages:
    page.shutdown()
"""


def test_pages_never_import_the_core_on_the_gui_thread(tmp_path):
    """Data -> Strategy -> Augment in a fresh process: torch and the core load only on worker threads
    (a first import on the GUI thread would freeze the window, and could race a worker's import)."""
    import json
    import subprocess
    import sys

    tests_dir = Path(__file__).resolve().parents[1]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "TS_SETTINGS_FILE": str(tmp_path / "s.ini")}
    proc = subprocess.run([sys.executable, "-c", _GUI_THREAD_SCRIPT, str(tmp_path / "ds"), str(tests_dir)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["torch"] and result["scanned"], result
    assert result["main_thread_imports"] == [], result
    assert result["suggestion"] and result["suggestion"] != "saved"  # the advisor answered for this data
    assert result["preview"] == 2 * 6 and result["banners"] == ["", "", ""], result
