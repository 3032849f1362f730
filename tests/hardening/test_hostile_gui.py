"""Hostile files through the app's own entry points: the Model page opening a weights file, the
Evaluate and Try pages on a run or a bundle. A clear message in the page, and no code ever runs.
Also: saving a project or exporting onto a full disk shows the reason and keeps the app usable."""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest
from helpers.hostile import evil_pickle

from transfer_studio import config
from transfer_studio.config import ModelSpec, Project, RunRecord
from transfer_studio.core import export

TIMEOUT = 120_000


@pytest.fixture(autouse=True)
def _app_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TS_SETTINGS_FILE", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("TS_DATA_DIR", str(tmp_path / "appdata"))
    yield
    from transfer_studio.ui import worker
    from transfer_studio.ui.main_window import finish_tasks

    assert finish_tasks(60000)
    worker.cancel_all()


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "MARKER_code_ran"
    yield m
    assert not m.exists(), "a pickle payload was executed"


@pytest.fixture
def hostile(tmp_path, trained_run, marker):
    """A run and a bundle whose weights files are pickles that would run code."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    bundle = tmp_path / "bundle"
    export.export_run(run, bundle, ["safetensors"])
    evil_pickle(run / "best.safetensors", marker, zip_format=True)
    evil_pickle(bundle / "model.safetensors", marker, zip_format=True)
    meta = json.loads((bundle / "model.json").read_text())
    meta.pop("checksums")
    (bundle / "model.json").write_text(json.dumps(meta))
    return {"run": run, "bundle": bundle}


def test_the_model_page_refuses_a_weights_file_with_code(qtbot, tmp_path, marker, monkeypatch):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QFileDialog

    from transfer_studio.ui.pages.model import ModelPage
    from transfer_studio.ui.state import AppState

    state = AppState(Project(name="x", model=ModelSpec("resnet18", weights="none")))
    page = ModelPage(state)
    qtbot.addWidget(page)
    page.show()
    try:
        qtbot.waitUntil(lambda: page.display is not None and page.catalog.rowCount() > 0, timeout=TIMEOUT)
        evil = evil_pickle(tmp_path / "resnet18_finetuned.pth", marker, zip_format=True)
        page.select_model("resnet18")
        monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(evil), ""))
        qtbot.mouseClick(page.open_weights_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: page.banner.text() != "", timeout=TIMEOUT)
        assert page.banner.level() == "error" and "refused to load" in page.banner.text()
        assert "Traceback" not in page.banner.text()
        assert state.project.model.weights == "none"
    finally:
        page.shutdown()


@pytest.mark.parametrize("which", ["run", "bundle"])
def test_the_evaluate_page_refuses_weights_that_are_a_pickle(qtbot, hostile, which):
    from transfer_studio.ui.pages.evaluate import EvaluatePage
    from transfer_studio.ui.state import AppState

    page = EvaluatePage(AppState(Project(name="x", model=ModelSpec("shufflenet_v2_x0_5", weights="none"))))
    qtbot.addWidget(page)
    try:
        page.set_source(str(hostile[which]))
        handle = page.evaluate()
        with qtbot.waitSignal(handle.finished, timeout=TIMEOUT):
            pass
        assert page.report is None
        assert page.banner.level() == "error" and "cannot be read as safetensors" in page.banner.text()
    finally:
        page.shutdown()


@pytest.mark.parametrize("which", ["run", "bundle"])
def test_the_try_page_refuses_weights_that_are_a_pickle(qtbot, hostile, tiny_data, which):
    from transfer_studio.ui.pages.try_page import TryPage
    from transfer_studio.ui.state import AppState

    project = Project(name="x", model=ModelSpec("shufflenet_v2_x0_5", weights="none"))
    project.runs.append(RunRecord(run_dir=str(hostile["run"]), model="shufflenet_v2_x0_5", status="finished"))
    page = TryPage(AppState(project))
    qtbot.addWidget(page)
    page.show()
    try:
        page.set_source(str(hostile[which]))
        page.add_paths([str(next((tiny_data / "a").iterdir()))])
        qtbot.waitUntil(lambda: not page.busy(), timeout=TIMEOUT)
        shown = page.banner.text() + " " + page.trained_col.note.text()
        assert "cannot be read as safetensors" in shown, shown
        assert page.trained_col.bars.rows() == []
    finally:
        page.shutdown()


# -- storage faults in the app -------------------------------------------------------------------------
def _full_disk(monkeypatch, name: str):
    real = config.atomic_write_bytes
    state = {"on": True}

    def write(path, data):
        if state["on"] and os.path.basename(path) == name:
            raise config.WriteError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(config, "atomic_write_bytes", write)
    return state


def test_saving_a_project_onto_a_full_disk_shows_why_and_keeps_the_file(qtbot, tmp_path, monkeypatch):
    from transfer_studio.ui.main_window import MainWindow
    from transfer_studio.ui.settings import Settings
    from transfer_studio.ui.state import AppState

    path = tmp_path / "p.tsproj"
    Project(name="saved").save(path)
    before = path.read_bytes()
    state = AppState()
    window = MainWindow(state, Settings())
    qtbot.addWidget(window, before_close_func=lambda w: w.shutdown())
    window.show()
    assert window.open_project(path, ask=False)
    state.project.name = "edited"
    state.mark_changed("name")
    fault = _full_disk(monkeypatch, "p.tsproj")
    assert not window.save()
    assert window.banner.level() == "error" and "No space left on device" in window.banner.text()
    assert path.read_bytes() == before and state.modified  # the file on disk and the edits are both kept
    fault["on"] = False  # space again: saving works, nothing else was disturbed
    assert window.save() and not state.modified
    assert Project.load(path).name == "edited"


def test_exporting_onto_a_full_disk_shows_why_and_keeps_the_bundle(qtbot, tmp_path, trained_run, monkeypatch):
    from transfer_studio.ui.pages.export import ExportPage
    from transfer_studio.ui.state import AppState

    out = tmp_path / "bundle"
    export.export_run(trained_run, out, ["safetensors"])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    from PySide6.QtWidgets import QMessageBox

    project = Project(name="x", model=ModelSpec("shufflenet_v2_x0_5", weights="none"))
    project.runs.append(RunRecord(run_dir=str(trained_run), model="shufflenet_v2_x0_5", status="finished"))
    project.ui.update(export_run=str(trained_run), export_dir=str(out.parent), export_name=out.name,
                      export_formats=["safetensors"])
    page = ExportPage(AppState(project))
    qtbot.addWidget(page)
    page.show()
    try:
        assert page.target() == out
        _full_disk(monkeypatch, "model.json")
        monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
        handle = page.export()
        with qtbot.waitSignal(handle.finished, timeout=TIMEOUT):
            pass
        text = page.banner.text()
        assert page.banner.level() == "error" and "the disk is full" in text and "unchanged" in text, text
        assert "Traceback" not in text and "BundleWriteError" not in text
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    finally:
        page.shutdown()
