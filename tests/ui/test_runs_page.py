"""Runs page: the run table, overlaid curves from history.json, open a run's evaluation, delete runs."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import torch
from helpers.images import make_class_folder
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from transfer_studio.config import ModelSpec, Project, RunRecord
from transfer_studio.core import run_folder
from transfer_studio.ui import worker
from transfer_studio.ui.models import runs_model as rm
from transfer_studio.ui.pages.runs import RunsPage, format_created, format_duration, run_label
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets import format_bytes

SHOTS = Path(__file__).resolve().parents[2] / "shots"
B = QMessageBox.StandardButton


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real 3-epoch run (random-init resnet18, head strategy) of 2 classes x 6 images."""
    from transfer_studio.training import fit

    base = tmp_path_factory.mktemp("runs")
    data = make_class_folder(base / "data", {"cat": 6, "dog": 6}, size=32)
    project = Project(name="runs", model=ModelSpec("resnet18", weights="none"))
    project.data.root, project.data.val_split = str(data), 0.5
    project.augment.preset = "none"
    t = project.train
    t.strategy, t.epochs, t.batch_size, t.image_size, t.device, t.num_workers = "head", 3, 6, 32, "cpu", 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = fit(project, run_dir=base / "run_a")
    finally:
        torch.set_num_threads(threads)
    assert result.status == "finished" and len(result.history) == 3
    return result


def make_runs(tmp_path: Path, trained) -> tuple[Project, list[RunRecord]]:
    """Run A (the real one, copied), run B (a copy whose history differs) and C (its folder is gone)."""
    a = tmp_path / "run_a"
    shutil.copytree(trained.run_dir, a)
    b = tmp_path / "run_b"
    shutil.copytree(trained.run_dir, b)
    hist = json.loads((b / "history.json").read_text())
    for h in hist:
        h["val_accuracy"] = 1.0 - h["val_accuracy"] / 2
        h["val_loss"] = h["val_loss"] * 2
    (b / "history.json").write_text(json.dumps(hist[:2]))
    recs = [
        RunRecord(run_dir=str(a), created="2024-05-01T10:00:00", model="resnet18", strategy="head",
                  epochs_completed=3, best_epoch=trained.best_epoch, val_accuracy=trained.val_accuracy,
                  duration_s=75.0, status="finished"),
        RunRecord(run_dir=str(b), created="2024-05-02T09:30:00+00:00", model="resnet18", strategy="full",
                  epochs_completed=2, best_epoch=2, val_accuracy=0.75, duration_s=3725.0, status="stopped"),
        RunRecord(run_dir=str(tmp_path / "run_c"), created="2024-05-03T08:00:00", model="mobilenet_v3_small",
                  strategy="partial", epochs_completed=0, status="failed"),
    ]
    project = Project(name="runs", model=ModelSpec("resnet18", weights="none"), runs=list(recs))
    return project, recs


def make_page(qtbot, project: Project) -> RunsPage:
    from transfer_studio.ui.state import AppState

    page = RunsPage(AppState(project))
    qtbot.addWidget(page)
    page.resize(1100, 720)
    page.show()
    qtbot.waitUntil(page.charts_ready, timeout=60000)  # pyqtgraph loads on a worker thread the first time
    return page


def delete_and_wait(qtbot, page: RunsPage) -> object:
    """``delete_selected()``, then wait until the delete's jobs have ended (its records are removed then)."""
    job = page.delete_selected()
    qtbot.waitUntil(lambda: not page.busy(), timeout=60000)
    return job


def answer_questions(monkeypatch, answers: list) -> list[str]:
    """QMessageBox.question answers from ``answers`` (first first); returns the questions' texts as asked."""
    asked: list[str] = []

    def question(parent, title, text, *a, **k):
        asked.append(text)
        return answers.pop(0)

    monkeypatch.setattr(QMessageBox, "question", question)
    return asked


class Gate:
    """Wraps ``fn``: each call records its thread, says it started, and waits for ``open()`` (at most 30 s)."""

    def __init__(self, fn, closed: bool = True):
        self.fn, self.threads = fn, []
        self.started, self.opened = threading.Event(), threading.Event()
        if not closed:
            self.opened.set()

    def __call__(self, *args, **kwargs):
        self.threads.append(threading.current_thread())
        self.started.set()
        self.opened.wait(30)
        return self.fn(*args, **kwargs)

    def open(self) -> None:
        self.opened.set()


def row_texts(page: RunsPage) -> list[list[str]]:
    t = page.table
    return [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())]


def test_the_table_lists_runs_newest_first(qtbot, trained, tmp_path):
    project, recs = make_runs(tmp_path, trained)
    page = make_page(qtbot, project)
    rows = row_texts(page)
    assert len(rows) == 3 and page.empty.isHidden()
    assert rows[0][:4] == ["2024-05-03 08:00", "mobilenet_v3_small", "partial", "0"]
    assert rows[0][6] == "failed · folder missing"
    assert rows[1][1:] == ["resnet18", "full", "2 (best 2)", "75.0%", "1 h 02 min", "stopped"]
    assert rows[1][0] == format_created("2024-05-02T09:30:00+00:00")  # UTC shown in local time
    assert rows[2][0] == "2024-05-01 10:00"
    assert rows[2][4] == f"{trained.val_accuracy:.1%}" and rows[2][5] == "1 min 15 s"
    assert format_duration(42) == "42 s" and format_duration(None) == "–"
    assert "val. 75.0%" in run_label(recs[1]) and "stopped" in run_label(recs[1])
    # sorting by accuracy puts the best run first
    page.table.sortItems(4, Qt.SortOrder.DescendingOrder)
    assert page.table.item(0, 4).text() == max((rows[1][4], rows[2][4]), key=lambda s: float(s[:-1]))
    # a new run recorded by the Train page appears
    project.runs.append(RunRecord(run_dir=str(tmp_path / "run_d"), created="2024-06-01T00:00:00",
                                  model="resnet18", strategy="head", status="running"))
    page.state.mark_changed("runs")
    assert page.table.rowCount() == 4
    # an empty project shows the empty state
    page.state.new_project(Project())
    assert page.table.rowCount() == 0 and not page.empty.isHidden()


def test_selecting_two_runs_overlays_their_curves(qtbot, trained, tmp_path):
    project, recs = make_runs(tmp_path, trained)
    page = make_page(qtbot, project)
    assert page.curves() == {}
    page.select_runs([recs[0].run_dir])
    one = page.curves("val_accuracy")
    assert list(one) == [recs[0].run_dir]
    assert one[recs[0].run_dir] == ([1.0, 2.0, 3.0], pytest.approx([h["val_accuracy"] * 100 for h in trained.history]))
    assert not page.evaluate_button.isHidden() and page.evaluate_button.isEnabled()

    # Ctrl+click the second run: both are drawn, each from its own history.json
    row_b = next(r for r in range(page.table.rowCount()) if page.table.item(r, 0).data(RunsPage.RunRole) == recs[1].run_dir)
    rect = page.table.visualItemRect(page.table.item(row_b, 1))
    qtbot.mouseClick(page.table.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier,
                     rect.center())
    assert set(page.selected_runs()) == {recs[0].run_dir, recs[1].run_dir}
    acc = page.curves("val_accuracy")
    hist_b = json.loads((Path(recs[1].run_dir) / "history.json").read_text())
    assert acc[recs[1].run_dir] == ([1.0, 2.0], pytest.approx([h["val_accuracy"] * 100 for h in hist_b]))
    assert acc[recs[0].run_dir][0] == [1.0, 2.0, 3.0]
    loss = page.curves("val_loss")
    assert loss[recs[1].run_dir][1] == pytest.approx([h["val_loss"] for h in hist_b])
    assert set(page.curves("train_loss")) == set(acc)
    assert "2 runs overlaid" in page.selection_label.text()
    assert not page.evaluate_button.isEnabled()  # evaluation is for one run
    assert page.legend.text().count("■") == 2
    # the run whose folder is gone is listed in the legend without curves
    page.select_runs([r.run_dir for r in recs])
    assert "no history" in page.legend.text() and len(page.curves("val_accuracy")) == 2

    page.select_runs([recs[0].run_dir, recs[1].run_dir])
    SHOTS.mkdir(exist_ok=True)
    assert page.grab().save(str(SHOTS / "runs_test.png"))


def test_delete_asks_first_and_removes_the_folder_only_when_agreed(qtbot, trained, tmp_path, monkeypatch):
    project, recs = make_runs(tmp_path, trained)
    project.ui["evaluate_run"] = recs[1].run_dir
    page = make_page(qtbot, project)
    answers: list = []
    asked = answer_questions(monkeypatch, answers)

    page.select_runs([recs[1].run_dir])
    answers[:] = [B.No]
    assert page.delete_selected() is None and not page.busy()
    assert len(project.runs) == 3 and len(asked) == 1

    # remove the record, keep the files
    answers[:] = [B.Yes, B.No]
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.busy(), timeout=60000)
    assert recs[1] not in project.runs and Path(recs[1].run_dir).is_dir()
    assert "evaluate_run" not in project.ui  # no page points at a deleted run
    assert page.table.rowCount() == 2 and page.state.modified
    assert "from disk" in asked[-1] and "run_b" in asked[-1]

    # remove record and files
    page.select_runs([recs[0].run_dir])
    answers[:] = [B.Yes, B.Yes]
    assert delete_and_wait(qtbot, page) is not None
    assert not Path(recs[0].run_dir).exists() and recs[0] not in project.runs

    # a run whose folder is gone: only the record question
    page.select_runs([recs[2].run_dir])
    asked.clear()
    answers[:] = [B.Yes]
    delete_and_wait(qtbot, page)
    assert len(asked) == 1 and project.runs == []

    # a run still training is never deleted
    project.runs.append(RunRecord(run_dir=str(tmp_path / "live"), status="running"))
    page.state.mark_changed("runs")
    page.select_runs([str(tmp_path / "live")])
    asked.clear()
    assert page.delete_selected() is None and not asked and len(project.runs) == 1 and not page.busy()
    assert "still training" in page.banner.text()

    # a hand-edited record naming a folder no run wrote: the folder is not offered; the record goes, the folder stays
    project.runs.clear()
    home = tmp_path / "not_a_run"
    (home / "documents").mkdir(parents=True)
    project.runs.append(RunRecord(run_dir=str(home), status="finished"))
    page.state.mark_changed("runs")
    page.select_runs([str(home)])
    asked.clear()
    answers[:] = [B.Yes]
    delete_and_wait(qtbot, page)
    assert len(asked) == 1 and (home / "documents").is_dir() and project.runs == []


def test_delete_measures_and_removes_folders_off_the_gui_thread(qtbot, trained, tmp_path, monkeypatch):
    """Multi-GB run folders froze the window: their size and their removal are work for jobs."""
    project, recs = make_runs(tmp_path, trained)
    page = make_page(qtbot, project)
    a = Path(recs[0].run_dir)
    size = sum(f.stat().st_size for f in a.rglob("*") if f.is_file())
    asked = answer_questions(monkeypatch, [B.Yes, B.Yes])
    measure = Gate(rm.folder_size)
    remove = Gate(shutil.rmtree, closed=False)
    monkeypatch.setattr(rm, "folder_size", measure)
    monkeypatch.setattr(rm.shutil, "rmtree", remove)

    page.select_runs([str(a)])
    try:
        assert page.delete_selected() is not None
        qtbot.waitUntil(measure.started.is_set, timeout=60000)
        # measuring: the window stays responsive and says so; Delete waits
        qtbot.wait(20)
        assert page.busy() and page.busy_indicator.isVisible() and "Measuring" in page.busy_indicator.label.text()
        assert not page.delete_button.isEnabled() and page.cursor().shape() == Qt.CursorShape.BusyCursor
        assert len(asked) == 1  # the size question waits for the size
    finally:
        measure.open()
    qtbot.waitUntil(lambda: not page.busy(), timeout=60000)
    assert asked[1].startswith(f"Also delete {a} from disk ({format_bytes(size)})?")
    assert measure.threads and remove.threads and threading.main_thread() not in measure.threads + remove.threads
    assert not a.exists() and recs[0] not in project.runs and len(project.runs) == 2
    assert not page.busy_indicator.isVisible() and page.cursor().shape() != Qt.CursorShape.BusyCursor
    assert page.delete_button.isEnabled() == bool(page.selected_runs())


def test_a_folder_that_cannot_be_deleted_keeps_its_run(qtbot, trained, tmp_path, monkeypatch):
    project, recs = make_runs(tmp_path, trained)
    page = make_page(qtbot, project)
    a, b = recs[0].run_dir, recs[1].run_dir
    asked = answer_questions(monkeypatch, [B.Yes, B.Yes])
    real = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if Path(path) == Path(a):
            raise PermissionError(13, "Permission denied")
        real(path, *args, **kwargs)

    monkeypatch.setattr(rm.shutil, "rmtree", rmtree)
    page.select_runs([a, b])
    delete_and_wait(qtbot, page)
    assert "2 run folders" in asked[1]
    assert recs[0] in project.runs and recs[1] not in project.runs and recs[2] in project.runs
    assert Path(a).is_dir() and not Path(b).exists()
    text = page.banner.text()
    assert f"Could not delete {a} (Permission denied)." in text and "1 run kept in the project, 1 removed" in text
    assert page.banner.level() == "warning" and page.table.rowCount() == 2


def test_a_second_delete_while_one_runs_is_refused(qtbot, trained, tmp_path, monkeypatch):
    project, recs = make_runs(tmp_path, trained)
    page = make_page(qtbot, project)
    asked = answer_questions(monkeypatch, [B.Yes, B.Yes])
    remove = Gate(shutil.rmtree)
    monkeypatch.setattr(rm.shutil, "rmtree", remove)

    page.select_runs([recs[0].run_dir])
    try:
        page.delete_selected()
        qtbot.waitUntil(remove.started.is_set, timeout=60000)
        assert "Deleting" in page.busy_indicator.label.text() and not page.delete_button.isEnabled()
        page.select_runs([recs[1].run_dir])
        assert not page.delete_button.isEnabled()  # a new selection does not enable it
        assert page.delete_selected() is None and len(asked) == 2  # refused before any question
        assert "being deleted" in page.banner.text()
    finally:
        remove.open()
    qtbot.waitUntil(lambda: not page.busy(), timeout=60000)
    assert recs[0] not in project.runs and recs[1] in project.runs and Path(recs[1].run_dir).is_dir()
    assert page.delete_button.isEnabled()


def test_deleting_is_cancelled_between_folders_and_a_closed_page_drops_the_answer(qtbot, trained, tmp_path,
                                                                                  monkeypatch):
    project, recs = make_runs(tmp_path, trained)
    page = make_page(qtbot, project)
    answers = [B.Yes, B.Yes]
    answer_questions(monkeypatch, answers)
    remove = Gate(shutil.rmtree)
    monkeypatch.setattr(rm.shutil, "rmtree", remove)

    page.select_runs([recs[0].run_dir, recs[1].run_dir])
    try:
        page.delete_selected()
        qtbot.waitUntil(remove.started.is_set, timeout=60000)
        page.busy_indicator.cancel_button.click()  # the folder under way is finished, the next one is not begun
    finally:
        remove.open()
    qtbot.waitUntil(lambda: not page.busy(), timeout=60000)
    gone = [r for r in recs[:2] if not Path(r.run_dir).exists()]
    assert len(gone) == 1 and len(remove.threads) == 1
    assert [r for r in recs[:2] if r in project.runs] == [r for r in recs[:2] if r not in gone]
    assert "Delete cancelled before 1 run folder" in page.banner.text() and page.banner.level() == "info"

    # the page closes while a folder is being deleted: the late answer changes nothing
    left = next(r for r in recs[:2] if r not in gone)
    page.select_runs([left.run_dir])
    answers[:] = [B.Yes, B.Yes]
    remove.started.clear()
    remove.opened.clear()
    try:
        page.delete_selected()
        qtbot.waitUntil(remove.started.is_set, timeout=60000)
        job = page.model.delete_job
        page.model.close()
    finally:
        remove.open()
    assert worker.wait_for_tasks([job], 60000)
    assert not Path(left.run_dir).exists() and left in project.runs


def test_open_evaluation_shows_the_run_on_the_evaluate_page(qtbot, trained, tmp_path, main_window, monkeypatch):
    # qtbot closes the window before the fixture's teardown: never block on the unsaved-changes prompt
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: B.Discard)
    project, recs = make_runs(tmp_path, trained)
    state = main_window.state
    state.new_project(project)
    main_window.show_page("runs")
    page = main_window.page("runs")
    page.select_runs([recs[0].run_dir])
    navigated = []
    state.navigateRequested.connect(navigated.append)
    qtbot.mouseClick(page.evaluate_button, Qt.MouseButton.LeftButton)
    assert navigated == ["evaluate"] and main_window.current_page_key() == "evaluate"
    assert state.project.ui["evaluate_run"] == recs[0].run_dir
    evaluate = main_window.page("evaluate")
    assert evaluate.source_combo.current_path() == recs[0].run_dir
    # shown with an unevaluated finished run: it evaluates by itself
    qtbot.waitUntil(lambda: evaluate.report is not None, timeout=90000)
    assert evaluate.report.source == recs[0].run_dir
    # a missing folder cannot be opened
    page.select_runs([recs[2].run_dir])
    assert not page.open_evaluation(recs[2].run_dir)
    assert "no longer exists" in page.banner.text()
    worker.cancel_all()


def test_run_choosers_open_in_the_projects_runs_folder(qtbot, tmp_path, monkeypatch):
    """Issue 12.10: "Other run or bundle…" opened in the home folder instead of the runs folder."""
    from PySide6.QtWidgets import QFileDialog

    from transfer_studio.ui.pages.evaluate import EvaluatePage
    from transfer_studio.ui.pages.try_page import TryPage

    monkeypatch.delenv("TS_RUNS_DIR", raising=False)
    (tmp_path / "runs").mkdir()
    opened: list[str] = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        lambda _parent, _caption, start="", *a, **k: opened.append(start) or "")
    for cls in (EvaluatePage, TryPage):
        state = AppState(Project(name="p"))
        state.path = tmp_path / "p.tsproj"
        page = cls(state)
        qtbot.addWidget(page)
        page.browse_button.click()
        page.shutdown()
    assert opened == [str(tmp_path / "runs")] * 2


def test_the_latest_run_is_shown_without_a_click(qtbot, trained, tmp_path):
    """Screenshots of issue 12: the page opened on two empty charts until a run was clicked."""
    project, recs = make_runs(tmp_path, trained)
    project.runs = recs[:2]
    page = make_page(qtbot, project)
    assert page.selected_runs() == [recs[1].run_dir]  # the newest
    assert set(page.curves()) == {recs[1].run_dir}
    qtbot.wait(50)
    for widget in (page.acc_plot, page.loss_plot):  # no "loss (x0.001)", whole epochs on x
        plot = widget.getPlotItem()
        assert "(x" not in plot.getAxis("left").labelString() and plot.getAxis("left").autoSIPrefixScale == 1.0
        (_spacing, ticks), *_ = plot.getAxis("bottom").tickValues(0.8, 2.2, 500)
        assert ticks and all(float(t).is_integer() for t in ticks)
    project.runs = [recs[2]]  # its folder is gone: nothing to draw, nothing selected
    page.reload()
    assert page.selected_runs() == []


def test_a_run_folder_trained_elsewhere_is_added_and_followed_while_it_trains(qtbot, trained, tmp_path, monkeypatch):
    """Issue 15.3: a job folder's run (torchrun, a cluster) opens like a local run; its row and curves
    follow run.json and history.json as the job writes them."""
    job_run = tmp_path / "job" / "runs" / "run_1"
    shutil.copytree(trained.run_dir, job_run)
    full = json.loads((job_run / "history.json").read_text())
    summary = json.loads((job_run / "run.json").read_text())
    (job_run / "history.json").write_text(json.dumps(full[:1]))  # one epoch in, still training
    (job_run / "run.json").write_text(json.dumps({**summary, "status": "running", "epochs_completed": 1}))
    page = make_page(qtbot, Project(name="p", model=ModelSpec("resnet18", weights="none")))
    assert not page.empty.isHidden()

    assert not page.add_run_folder(str(tmp_path))  # not a run: said, nothing added
    assert "not a training run folder" in page.banner.text() and page.state.project.runs == []
    assert page.add_run_folder(str(job_run))
    rec = page.state.project.runs[0]
    assert (rec.status, rec.epochs_completed, rec.model) == ("running", 1, summary["model"])
    assert page.selected_runs() == [rec.run_dir] and page.state.modified
    assert [len(x) for x, _ in page.curves().values()] == [1]
    assert page.add_run_folder(str(job_run)) and len(page.state.project.runs) == 1  # once only

    # the job goes on and finishes: the page follows it. The timer only says a refresh is due; run.json
    # and history.json are read in a job, never on the GUI thread.
    (job_run / "history.json").write_text(json.dumps(full))
    (job_run / "run.json").write_text(json.dumps(summary))
    readers: list[threading.Thread] = []
    for name in ("read_summary", "read_history"):
        real = getattr(run_folder, name)
        monkeypatch.setattr(run_folder, name, lambda d, real=real: readers.append(threading.current_thread()) or real(d))
    with qtbot.waitSignal(page.state.projectChanged, timeout=60000):
        page._follow.timeout.emit()  # the timer's tick
    assert readers and threading.main_thread() not in readers
    assert rec.status == summary["status"] and rec.epochs_completed == len(full)
    assert row_texts(page)[0][6] == summary["status"]
    assert [len(x) for x, _ in page.curves().values()] == [len(full)]
    assert threading.main_thread() not in readers  # the redraw used what the job read


def test_no_other_project_opens_while_runs_are_being_deleted(qtbot, main_window, monkeypatch):
    """Their records would be removed from a project already saved or closed."""
    page = main_window._ensure_page("runs")
    monkeypatch.setattr(page, "busy", lambda: True)
    name = main_window.state.project.name
    assert not main_window.new_project() and main_window.state.project.name == name
    assert "being deleted" in main_window.banner.text()
    page.model.busyStopped.emit()  # between measuring and deleting: still busy, the warning stays
    assert "being deleted" in main_window.banner.text()
    monkeypatch.setattr(page, "busy", lambda: False)
    page.model.busyStopped.emit()  # the delete ended: its warning goes with it
    assert main_window.banner.text() == "" and main_window.files.holds() is None


def test_quitting_mid_delete_ends_it_before_the_save_question(qtbot, trained, tmp_path, monkeypatch):
    """The window's quit asks to save after ``stop_delete``: the saved project no longer lists the runs
    whose folders are gone, and keeps those not reached."""
    import threading

    project, recs = make_runs(tmp_path, trained)
    page = make_page(qtbot, project)
    answer_questions(monkeypatch, [B.Yes, B.Yes])
    remove = Gate(shutil.rmtree)
    monkeypatch.setattr(rm.shutil, "rmtree", remove)
    page.select_runs([recs[0].run_dir, recs[1].run_dir])
    opener = threading.Timer(0.3, remove.open)  # the first folder finishes while the page waits
    try:
        page.delete_selected()
        qtbot.waitUntil(remove.started.is_set, timeout=60000)
        opener.start()
        page.stop_delete()
    finally:
        opener.join()
        remove.open()
    assert not page.busy()
    gone = [r for r in recs[:2] if not Path(r.run_dir).exists()]
    assert len(gone) == 1 and gone[0] not in project.runs
    assert [r for r in recs[:2] if r in project.runs] == [r for r in recs[:2] if r not in gone]
