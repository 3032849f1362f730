"""Export page: the chosen files are written off the GUI thread, verified, and load in plain Python."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.images import make_class_folder
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMessageBox

from transfer_studio.config import ModelSpec, Project, RunRecord
from transfer_studio.ui import worker
from transfer_studio.ui.pages import export as export_page
from transfer_studio.ui.pages.export import ExportPage, safe_name
from transfer_studio.ui.state import AppState

SHOTS = Path(__file__).resolve().parents[2] / "shots"
B = QMessageBox.StandardButton


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real run: random-init resnet18, head trained 2 epochs on 3 classes x 6 images of 32 px."""
    from transfer_studio.training import fit

    base = tmp_path_factory.mktemp("export")
    data = make_class_folder(base / "data", {"cat": 6, "dog": 6, "fox": 6}, size=32)
    project = Project(name="Pets & co", model=ModelSpec("resnet18", weights="none"))
    project.data.root, project.data.val_split = str(data), 0.5
    project.augment.preset = "none"
    t = project.train
    t.strategy, t.epochs, t.batch_size, t.image_size, t.device, t.num_workers = "head", 2, 8, 32, "cpu", 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = fit(project, run_dir=base / "run")
    finally:
        torch.set_num_threads(threads)
    assert result.status == "finished"
    return Path(result.run_dir)


@pytest.fixture
def make_page(qtbot, trained):
    made: list[ExportPage] = []

    def make(**ui) -> ExportPage:
        project = Project(name="Pets & co", model=ModelSpec("resnet18", weights="none"))
        project.runs.append(RunRecord(run_dir=str(trained), created="2024-05-01T10:00:00", model="resnet18",
                                      strategy="head", epochs_completed=2, status="finished"))
        project.ui.update(ui)
        page = ExportPage(AppState(project))
        qtbot.addWidget(page)
        page.resize(1150, 760)
        page.show()
        made.append(page)
        return page

    yield make
    for page in made:
        page.shutdown()
        assert not page.busy()
    worker.cancel_all()


def finish(qtbot, handle, timeout: int = 240000) -> None:
    with qtbot.waitSignal(handle.finished, timeout=timeout):
        pass


def test_export_writes_the_chosen_files_shows_verification_and_the_snippet_runs(qtbot, make_page, trained, tmp_path,
                                                                                 monkeypatch):
    page = make_page()
    assert page.source_combo.current_path() == str(trained)
    assert page.formats() == ["safetensors", "onnx"]  # the default choice
    assert not page.format_boxes["safetensors"].isEnabled()  # the bundle is always written
    page.dir_edit.setText(str(tmp_path / "out"))
    page.dir_edit.editingFinished.emit()
    page.name_edit.setText("my model")
    page.name_edit.editingFinished.emit()
    page.format_boxes["pt2"].setChecked(True)
    ui = page.state.project.ui
    assert ui["export_dir"] == str(tmp_path / "out") and ui["export_name"] == "my model"
    assert ui["export_formats"] == ["safetensors", "onnx", "pt2"] and ui["export_run"] == str(trained)
    target = tmp_path / "out" / "my-model"
    assert page.target() == target and str(target) in page.target_label.text()

    with qtbot.waitSignal(page.busy_indicator.progress.valueChanged, timeout=240000):
        qtbot.mouseClick(page.export_button, Qt.MouseButton.LeftButton)
        handle = page.model.job
        assert page.busy() and not page.export_button.isEnabled()
    finish(qtbot, handle)
    assert page.banner.text() == "", page.banner.text()
    assert sorted(p.name for p in target.iterdir()) == ["model.json", "model.onnx", "model.pt2",
                                                        "model.safetensors"]
    result = page.result
    assert result.passed and not page.results.isHidden()
    shown = {page.table.item(r, 0).text(): [page.table.item(r, c).text() for c in range(1, 5)]
             for r in range(page.table.rowCount())}
    assert set(shown) == {"model.safetensors", "model.onnx", "model.pt2"}
    for fmt, name in (("safetensors", "model.safetensors"), ("onnx", "model.onnx"), ("pt2", "model.pt2")):
        check = result.verification[fmt]
        assert shown[name][1] == f"{check['max_abs_diff']:.2e}"
        assert shown[name][2] == f"{check['images']} / {check['images']}" and check["images"] == 9
        assert shown[name][3] == "✓ passed"
    assert "All 3 exported files match PyTorch" in page.summary_label.text()
    assert json.loads((target / "model.json").read_text())["verification"]["passed"] is True

    # The onnxruntime snippet is plain Python: run it on an image and compare with the app's predictor.
    snippet = page.current_snippet()
    assert page.snippet_tabs.currentIndex() == 0 and str(target) in snippet
    assert "transfer_studio" not in snippet and "torch" not in snippet
    qtbot.mouseClick(page.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == snippet
    script = tmp_path / "classify.py"
    script.write_text(snippet)
    meta = json.loads((target / "model.json").read_text())
    size = meta["preprocessing"]["resize"]
    rng = np.random.default_rng(1)
    image = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (size, size + 7, 3), dtype=np.uint8)).save(image)
    out = subprocess.run([sys.executable, str(script), str(image)], capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip().splitlines()
    from transfer_studio.core.predict import Predictor

    top = Predictor.from_bundle(target).predict_paths([image], top_k=3)[0]["top_k"]
    assert out == [f"{g['label']}: {g['probability']:.1%}" for g in top]
    assert "Predictor.from_bundle" in page.snippets["python"].toPlainText()
    assert "model.pt2" in page.snippets["pt2"].toPlainText()

    opened = []
    monkeypatch.setattr(export_page, "_open_url", opened.append)  # no file manager in tests
    qtbot.mouseClick(page.open_button, Qt.MouseButton.LeftButton)
    assert opened and opened[0].toLocalFile() == str(target)
    SHOTS.mkdir(exist_ok=True)
    assert page.grab().save(str(SHOTS / "export_test.png"))


def test_overwriting_an_export_asks_first(qtbot, make_page, tmp_path, monkeypatch):
    target = tmp_path / "exports" / "bundle"
    target.mkdir(parents=True)
    (target / "model.json").write_text('{"old": true}')
    page = make_page(export_dir=str(tmp_path / "exports"), export_name="bundle", export_formats=["safetensors"])
    assert page.formats() == ["safetensors"] and page.target() == target
    asked = []

    def question(parent, title, text, *a, **k):
        asked.append(text)
        return answers.pop(0)

    monkeypatch.setattr(QMessageBox, "question", question)
    answers = [B.No]
    assert page.export() is None
    assert len(asked) == 1 and str(target) in asked[0]
    assert (target / "model.json").read_text() == '{"old": true}' and not page.busy()

    answers = [B.Yes]
    handle = page.export()
    assert handle is not None
    finish(qtbot, handle)
    assert page.result is not None and page.result.passed
    assert json.loads((target / "model.json").read_text())["format"] == "transfer-studio-bundle"
    assert sorted(p.name for p in target.iterdir()) == ["model.json", "model.safetensors"]
    assert page.snippets["onnx"].toPlainText().startswith("# Export with the ONNX format")
    assert page.snippet_tabs.currentIndex() == 1  # the Transfer Studio loader


def test_errors_cancel_and_state(qtbot, make_page, trained, tmp_path, monkeypatch):
    # Inside the run folder: refused before anything is written.
    page = make_page(export_dir=str(trained), export_name="inside")
    assert page.export() is None and "inside the run folder" in page.banner.text()
    assert not (trained / "inside").exists()

    # Cancel while exporting: nothing is shown as a result, the page is idle again.
    page.dir_edit.setText(str(tmp_path / "c"))
    page.dir_edit.editingFinished.emit()
    handle = page.export()
    cancelled = []
    handle.cancelled.connect(lambda: cancelled.append(True))
    page.busy_indicator.cancel_button.click()
    finish(qtbot, handle)
    assert cancelled and page.result is None and page.results.isHidden()
    assert page.export_button.isEnabled()

    # A failed verification still shows the numbers, and says so.
    from transfer_studio.core import export as core_export

    def fake_export(run_dir, out_dir, formats, progress=None, cancel=None):
        res = core_export.ExportResult(out_dir=str(out_dir), files={"safetensors": str(Path(out_dir) / "model.safetensors")},
                                       verification={"safetensors": {"max_abs_diff": 0.5, "top1_agree": 3, "images": 4,
                                                                     "passed": False}, "images": 4,
                                                     "inputs": "val images", "passed": False},
                                       passed=False, meta={"architecture": {"model": "resnet18"}, "classes": []})
        raise core_export.ExportVerificationError("export verification failed (safetensors: ...)", res)

    monkeypatch.setattr(core_export, "export_run", fake_export)
    finish(qtbot, page.export())
    assert page.banner.level() == "error" and "Verification failed" in page.banner.text()
    assert page.table.item(0, 4).text() == "✗ failed" and page.table.item(0, 3).text() == "3 / 4"
    assert "disagree" in page.summary_label.text()

    # The page state comes back from the project; the default name follows the project and run.
    assert safe_name("Pets & co") == "Pets-co"
    state = page.state
    state.project.ui.pop("export_name", None)
    state.new_project(state.project.copy())
    assert page.dir_edit.text() == str(tmp_path / "c") and page.name_edit.text() == ""
    assert page.bundle_name() == f"Pets-co-{trained.name}" and page.results.isHidden()


def test_export_progress_names_each_step_as_it_moves(qtbot, make_page, tmp_path):
    """Issue 12.9: the export bar sat at "0%" with no word about what was happening."""
    page = make_page(export_dir=str(tmp_path / "out"), export_formats=["safetensors", "onnx"])
    handle = page.export()
    seen: list[tuple[int, int, str, int]] = []
    busy = page.busy_indicator
    handle.progress.connect(lambda d, t: seen.append((d, t, busy.label.text(), busy.progress.value())))
    assert busy.label.text().startswith("Exporting run") and "step 1 of 5: loading the run" in busy.label.text()
    finish(qtbot, handle)
    assert page.result is not None and page.result.passed
    steps = export_page.export_steps(["safetensors", "onnx"])
    assert {t for _d, t, _l, _v in seen} == {len(steps)}  # the page's step names match the core's steps
    texts = [label for _d, _t, label, _v in seen]
    assert any("step 2 of 5: writing and checking model.safetensors" in t for t in texts)
    assert any("model.onnx" in t for t in texts)
    assert max(v for *_rest, v in seen) == len(steps) and not busy.isVisible()


def test_a_long_task_shows_how_long_it_has_run(qtbot):
    from transfer_studio.ui.widgets import BusyIndicator

    busy = BusyIndicator()
    qtbot.addWidget(busy)
    busy.start("Working", steps=["first", "second"])
    busy.show()
    busy._tick()
    assert busy.elapsed_text() == ""  # a short task shows no clock
    busy._t0 -= 65
    busy._tick()
    assert busy.elapsed_text() == "1:05" and busy.label.text() == "Working — step 1 of 2: first"
    busy.set_progress(1, 2)
    assert busy.label.text() == "Working — step 2 of 2: second"
    busy.stop()
    assert busy.elapsed_text() == "" and not busy._clock.isActive()
