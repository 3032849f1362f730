"""Evaluate page: a tiny trained run evaluated off the GUI thread; what the page shows is the core's numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.images import make_class_folder
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QPushButton

from transfer_studio.config import ModelSpec, Project, RunRecord
from transfer_studio.core import metrics
from transfer_studio.ui import worker
from transfer_studio.ui.pages.evaluate import EvaluatePage
from transfer_studio.ui.state import AppState

SHOTS = Path(__file__).resolve().parents[2] / "shots"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real run: random-init resnet18 head trained 2 epochs on 3 classes x 9 images (test split)."""
    from transfer_studio.training import fit

    base = tmp_path_factory.mktemp("evaluate")
    data = make_class_folder(base / "data", {"cat": 9, "dog": 9, "fox": 9}, size=32)
    project = Project(name="eval", model=ModelSpec("resnet18", weights="none"))
    project.data.root, project.data.val_split, project.data.test_split = str(data), 0.34, 0.34
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
    record = RunRecord(run_dir=result.run_dir, created="2024-05-01T10:00:00", model="resnet18",
                       strategy=result.strategy, epochs_completed=result.epochs_completed,
                       best_epoch=result.best_epoch, val_accuracy=result.val_accuracy, status="finished")
    return {"base": base, "data": data, "run": Path(result.run_dir), "record": record,
            "report": metrics.evaluate(result.run_dir)}


def make_page(qtbot, trained, *, show: bool = True) -> EvaluatePage:
    project = Project(name="eval", model=ModelSpec("resnet18", weights="none"))
    project.runs.append(RunRecord(**vars(trained["record"])))
    page = EvaluatePage(AppState(project))
    qtbot.addWidget(page)
    page.resize(1180, 760)
    if show:
        page.show()
    return page


@pytest.fixture
def pages():
    made: list[EvaluatePage] = []
    yield made.append
    for page in made:
        page.shutdown()
        assert not page.busy()
    worker.cancel_all()


def wait_report(qtbot, page: EvaluatePage, timeout: int = 90000) -> None:
    qtbot.waitUntil(lambda: page.report is not None and not page.busy(), timeout=timeout)


def table_values(page: EvaluatePage) -> dict[str, tuple[float, float, float, int]]:
    t = page.class_table
    out = {}
    for row in range(t.rowCount()):
        vals = [t.item(row, c).data(Qt.ItemDataRole.UserRole) for c in range(1, 5)]
        out[t.item(row, 0).text()] = (vals[0], vals[1], vals[2], int(vals[3]))
    return out


def test_showing_the_page_evaluates_the_latest_run_with_the_cores_numbers(qtbot, trained, pages):
    core = trained["report"]
    page = make_page(qtbot, trained)
    pages(page)
    # Shown with a finished, never evaluated run: the evaluation starts by itself, off the GUI thread.
    assert page.busy() and page.busy_indicator.isVisible()
    assert not page.evaluate_button.isEnabled()
    wait_report(qtbot, page)
    assert not page.busy_indicator.isVisible() and page.evaluate_button.isEnabled()
    assert page.source_combo.current_path() == str(trained["run"])
    # the default choice is not written back: merely looking does not modify the project
    assert "evaluate_run" not in page.state.project.ui and not page.state.modified

    assert core.split == "test" and not core.optimistic
    assert page.accuracy_label.text() == f"{core.accuracy:.1%}"
    assert page.images_label.text() == str(core.num_images)
    assert page.top5_card.isHidden()  # 3 classes: no top-5
    assert "test split" in page.split_label.text() and str(core.num_images) in page.split_label.text()
    assert page.note_label.isHidden()
    assert page.matrix.matrix() == core.confusion_matrix
    assert page.matrix.classes() == core.classes == ["cat", "dog", "fox"]
    want = {name: (m.precision, m.recall, m.f1, m.support) for name, m in core.per_class.items()}
    got = table_values(page)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == pytest.approx(want[name])
    row = [page.class_table.item(r, 0).text() for r in range(3)].index("dog")
    assert page.class_table.item(row, 2).text() == f"{core.per_class['dog'].recall:.3f}"
    # most confidently wrong: the core's list, in its order, captioned true -> predicted
    assert page.gallery_paths("wrong") == [w.path for w in core.worst]
    if core.worst:
        first = core.worst[0]
        assert page._wrong_model.caption(0).startswith(f"{first.label} → {first.predicted}")
    else:
        assert "No mistakes" in page.wrong_label.text()


def test_clicking_a_matrix_cell_lists_its_images(qtbot, trained, pages):
    core = trained["report"]
    page = make_page(qtbot, trained)
    pages(page)
    wait_report(qtbot, page)
    cm = np.asarray(core.confusion_matrix)
    off = [(i, j) for i in range(3) for j in range(3) if i != j and cm[i, j] > 0]
    cells = off[:1] + [(0, 0)]
    preds = core.probabilities.argmax(1)
    for i, j in cells:
        rect = page.matrix.cell_rect(i, j)
        assert page.matrix.cell_at(rect.center()) == (i, j)
        assert f"{cm[i, j]} image" in page.matrix.tooltip_text(i, j)
        with qtbot.waitSignal(page.matrix.cellClicked, timeout=2000) as sig:
            qtbot.mouseClick(page.matrix, Qt.MouseButton.LeftButton, pos=rect.center())
        assert sig.args == [i, j]
        expected = [p for p, t, q in zip(core.paths, core.labels, preds, strict=True) if t == i and q == j]
        assert page.gallery_paths("cell") == expected and len(expected) == cm[i, j]
        assert page.matrix.selected_cell() == (i, j)
        assert f"{len(expected)} image" in page.cell_label.text()
    # the thumbnails decode on the loader's thread pool and arrive in the model
    loader = page._cell_model.loader
    first = page.gallery_paths("cell")[0]
    qtbot.waitUntil(lambda: loader.cached(first) is not None, timeout=10000)
    # outside the grid: no cell
    assert page.matrix.cell_at(QPoint(1, 1)) is None
    # keyboard: arrows move the selection and list that cell
    page.matrix.setFocus()
    qtbot.keyClick(page.matrix, Qt.Key.Key_Right)
    assert page.matrix.selected_cell() == (0, 1)
    assert len(page.gallery_paths("cell")) == cm[0, 1]

    SHOTS.mkdir(exist_ok=True)
    page.matrix.select_cell(*(off[0] if off else (0, 0)))
    qtbot.wait(200)
    assert page.grab().save(str(SHOTS / "evaluate_test.png"))


def test_a_validation_split_is_flagged_optimistic_and_page_state_is_in_the_project(qtbot, trained, pages, tmp_path):
    # The same run without a test split: it is evaluated on its validation images.
    run = tmp_path / "val_only_run"
    shutil.copytree(trained["run"], run)
    snap = json.loads((run / "project.json").read_text())
    snap["data"]["split"]["test"] = []
    (run / "project.json").write_text(json.dumps(snap))
    page = make_page(qtbot, trained, show=False)
    pages(page)
    page.set_source(str(run))
    assert page.state.project.ui["evaluate_run"] == str(run)
    page.evaluate()
    wait_report(qtbot, page)
    assert page.report.split == "val" and page.report.optimistic
    assert "validation split" in page.split_label.text()
    assert not page.note_label.isHidden() and "optimistic" in page.note_label.text()

    # Another folder of labelled images: every image in it; the choice is page state in the project.
    other = make_class_folder(tmp_path / "other", {"cat": 2, "dog": 2}, size=32, seed=3)
    page.set_data_folder(str(other))
    assert page.state.project.ui["evaluate_data"] == str(other)
    assert page.report is None and page.results_stack.currentIndex() == 0  # not evaluated yet
    page.evaluate()
    wait_report(qtbot, page)
    assert page.report.split == "all" and page.report.num_images == 4
    assert str(other) in page.split_label.text()
    assert "fox" in page.note_label.text()  # the folder lacks one of the model's classes

    # Reloading the project restores the choices (source and folder).
    state = page.state
    state.new_project(state.project.copy())
    assert page.source_combo.current_path() == str(run)
    assert page.folder_radio.isChecked() and page.folder_edit.text() == str(other)
    assert page.report is not None  # the report for this choice is kept for the session
    page.set_data_folder(None)
    assert "evaluate_data" not in state.project.ui and page.own_split_radio.isChecked()


def test_errors_show_in_the_page_and_cancel_stops(qtbot, trained, pages, tmp_path):
    # The run's dataset moved away: a clear message, an action to pick another folder.
    run = tmp_path / "moved_run"
    shutil.copytree(trained["run"], run)
    snap = json.loads((run / "project.json").read_text())
    snap["data"]["root"] = str(tmp_path / "gone")
    (run / "project.json").write_text(json.dumps(snap))
    page = make_page(qtbot, trained, show=False)
    pages(page)
    page.set_source(str(run))
    handle = page.evaluate()
    with qtbot.waitSignal(handle.finished, timeout=60000):
        pass
    assert page.report is None
    assert page.banner.level() == "error" and "no longer at" in page.banner.text()
    assert str(tmp_path / "gone") in page.banner.text()

    # A folder with a class the model does not know.
    strange = make_class_folder(tmp_path / "strange", {"cat": 1, "zebra": 1}, size=32)
    page.set_data_folder(str(strange))
    handle = page.evaluate()
    with qtbot.waitSignal(handle.finished, timeout=60000):
        pass
    assert "zebra" in page.banner.text() and page.report is None

    # Cancel: nothing is shown, the page is idle again.
    page.set_source(str(trained["run"]))
    page.set_data_folder(None)
    cancelled = []
    handle = page.evaluate()
    handle.cancelled.connect(lambda: cancelled.append(True))
    page.busy_indicator.cancel_button.click()
    with qtbot.waitSignal(handle.finished, timeout=60000):
        pass
    assert cancelled and page.report is None and not page.busy_indicator.isVisible()
    assert page.evaluate_button.isEnabled()


def test_the_empty_state_says_evaluating_while_an_evaluation_runs(qtbot, trained, pages):
    """Issue 12.4: "Not evaluated yet — Press Evaluate" showed while the evaluation ran (button disabled)."""
    page = make_page(qtbot, trained)
    pages(page)
    assert page.busy() and not page.evaluate_button.isEnabled()  # started by itself
    assert page.results_stack.currentIndex() == 0
    assert page.empty.title_label.text() == "Evaluating…"
    assert "Press Evaluate" not in page.empty.text_label.text()
    assert not any(b.isVisible() for b in page.empty.findChildren(QPushButton))  # no "Go to Train"
    wait_report(qtbot, page)
    assert page.results_stack.currentIndex() == 1
    page.set_data_folder(str(trained["data"]))  # not evaluated on that folder yet
    assert page.empty.title_label.text() == "Not evaluated yet"
    handle = page.evaluate()
    assert page.empty.title_label.text() == "Evaluating…"
    handle.cancel()
    with qtbot.waitSignal(handle.finished, timeout=60000):
        pass
    qtbot.waitUntil(lambda: not page.busy(), timeout=60000)
    assert page.empty.title_label.text() == "Not evaluated yet"  # cancelled: not "Evaluating…"
