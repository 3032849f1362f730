"""Train page: start, live charts and table, pause/resume, stop + resume from checkpoint, errors, close."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.images import make_class_folder
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QPushButton

from transfer_studio import config
from transfer_studio.config import ModelSpec, Project, RunRecord
from transfer_studio.ui import worker
from transfer_studio.ui.models.train_text import frozen_summary
from transfer_studio.ui.models.train_text import gui_advice as _gui_advice
from transfer_studio.ui.pages.train import TrainPage
from transfer_studio.ui.state import AppState
from transfer_studio.ui.widgets.lr_spin import step_125 as _step_125

SHOTS = Path(__file__).resolve().parents[2] / "shots"



@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tiny models gain nothing from a second intra-op thread, and on a busy 2-core machine
    OpenMP's spinning threads made each step 5-10x slower: train with one, then restore."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def tiny_project(root: Path, *, epochs: int = 3, batch_size: int = 4, strategy: str = "full",
                 per_class: int = 10) -> Project:
    data = root / "data"
    if not data.exists():
        make_class_folder(data, {"cat": per_class, "dog": per_class}, size=32)
    p = Project(name="tiny", model=ModelSpec("mobilenet_v3_small", weights="none"))
    p.data.root = str(data)
    p.data.val_split = 0.25
    p.augment.preset = "none"
    t = p.train
    t.strategy, t.epochs, t.batch_size, t.image_size = strategy, epochs, batch_size, 32
    t.device, t.num_workers, t.cache_features, t.head_epochs = "cpu", 0, False, 1
    return p


def make_page(qtbot, tmp_path: Path, project: Project) -> TrainPage:
    state = AppState(project)
    state.path = tmp_path / "tiny.tsproj"  # saved project: runs go to tmp_path/runs
    page = TrainPage(state)
    qtbot.addWidget(page)
    page.resize(1200, 760)
    page.show()
    return page


@pytest.fixture
def cleanup():
    pages: list[TrainPage] = []
    yield pages.append
    for page in pages:
        page.shutdown()
        assert not page.busy()
    worker.cancel_all()


def buttons(page: TrainPage) -> dict[str, bool]:
    return {name: getattr(page, f"{name}_button").isEnabled() for name in ("start", "pause", "resume", "stop")}


IDLE = {"start": True, "pause": False, "resume": False, "stop": False}
RUNNING = {"start": False, "pause": True, "resume": False, "stop": True}
PAUSED = {"start": False, "pause": False, "resume": True, "stop": True}


def test_a_run_fills_charts_table_and_run_record(qtbot, tmp_path, cleanup):
    """Partial strategy, 3 epochs: head epoch, then unfreeze; everything the page shows follows."""
    page = make_page(qtbot, tmp_path, tiny_project(tmp_path, epochs=3, strategy="partial"))
    cleanup(page)
    c, state = page._controller, page.state
    phases = []
    state.trainingPhaseChanged.connect(phases.append)
    changes = []
    state.projectChanged.connect(changes.append)
    epochs_seen = []
    threads = set()

    def after_epoch(ev):
        epochs_seen.append(ev.epoch)
        threads.add(threading.current_thread())
        page.charts.flush()
        assert page.charts.point_count("val_loss") == ev.epoch
        assert page.charts.point_count("train_acc") == ev.epoch
        assert page.table.rowCount() == ev.epoch

    c.epochEnded.connect(after_epoch)  # connected after the page's own slot: sees its result
    assert buttons(page) == IDLE
    qtbot.waitUntil(lambda: not page.model.device_job.is_running(), timeout=60000)  # engine warmed up
    with qtbot.waitSignals([c.fitStarted, c.epochEnded, c.epochEnded, c.epochEnded, c.outcome, c.finished],
                           order="strict", timeout=120000):
        qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
        assert buttons(page) == RUNNING
        assert not page.settings_box.isEnabled()
        # Issue 12.6: the "Change…" links are plain text while the settings are locked, and the
        # other pages are told a run trains (they lock their settings too)
        assert state.training_active and "<a" not in page.model_link.text() + page.strategy_link.text()
    assert epochs_seen == [1, 2, 3]
    assert threads == {threading.main_thread()}  # the worker's signals reach the page in the GUI thread
    assert buttons(page) == IDLE and page.settings_box.isEnabled()
    assert not state.training_active and '<a href="strategy">' in page.strategy_link.text()

    rec = state.project.runs[-1]
    assert rec.status == "finished" and rec.epochs_completed == 3
    assert Path(rec.run_dir).parent == (tmp_path / "runs").resolve()
    assert (Path(rec.run_dir) / "checkpoint_last.pt").is_file()
    assert rec.strategy == "partial" and rec.model == "mobilenet_v3_small"
    assert state.project.ui["selected_run"] == rec.run_dir
    assert "runs" in changes and state.modified

    # the unfreeze step is marked on the charts and announced to the Model page
    assert [p.phase for p in phases] == ["head", "unfrozen"]
    assert page.charts.phases == [(1.0, "unfreeze")]
    # the best epoch (lowest validation loss) is starred, and agrees with the run record
    val_losses = [float(page.table.item(r, 3).text()) for r in range(3)]
    assert page.best_epoch() == rec.best_epoch == 1 + val_losses.index(min(val_losses))
    assert page.table.item(rec.best_epoch - 1, 0).text().startswith("\u2605")
    assert page.run_progress.value() == 1000
    assert "images/s" in page.speed_label.text() and page.speed_label.text()[0].isdigit()
    page.charts.flush()
    assert page.charts.point_count("smooth_loss") >= 3  # at least the end of every epoch
    assert page.charts.point_count("lr") == page.charts.point_count("batch_loss")
    assert "Epoch 3/3" in page.log_view.toPlainText()


def test_start_during_the_engine_warm_up_waits_for_it(qtbot, tmp_path, cleanup, monkeypatch):
    """Start pressed while the engine is still being imported: the run waits (Stop cancels it)."""
    import threading

    from transfer_studio.ui.models import train_model

    release = threading.Event()
    real_probe = train_model.probe_devices

    def slow_probe(*args, **kwargs):
        release.wait(30)
        return real_probe(*args, **kwargs)

    monkeypatch.setattr(train_model, "probe_devices", slow_probe)
    page = make_page(qtbot, tmp_path, tiny_project(tmp_path, epochs=1))
    cleanup(page)
    page.start_button.click()
    assert page.busy() and not page._controller.is_running()
    assert buttons(page) == {"start": False, "pause": False, "resume": False, "stop": True}
    assert "Preparing" in page.status_label.text()
    page.stop_button.click()  # cancel before anything ran: nothing to remember
    assert not page.busy() and page.state.project.runs == [] and buttons(page) == IDLE
    page.start_button.click()
    with qtbot.waitSignal(page._controller.finished, timeout=90000):
        release.set()
    assert [r.status for r in page.state.project.runs] == ["finished"]


def test_pause_stops_progress_and_resume_continues(qtbot, tmp_path, cleanup):
    page = make_page(qtbot, tmp_path, tiny_project(tmp_path, epochs=30, batch_size=2))
    cleanup(page)
    c = page._controller
    with qtbot.waitSignal(c.batches, timeout=90000):
        page.start_button.click()
    with qtbot.waitSignal(c.paused, timeout=30000):
        page.pause_button.click()
        assert not page.pause_button.isEnabled()  # a pause is pending: no double click
    assert buttons(page) == PAUSED
    assert "Paused" in page.status_label.text()
    page.charts.flush()
    points = page.charts.point_count("batch_loss")
    progress = page.run_progress.value()
    qtbot.wait(600)
    page.charts.flush()
    assert page.charts.point_count("batch_loss") == points and page.run_progress.value() == progress
    with qtbot.waitSignal(c.resumed, timeout=10000):
        page.resume_button.click()
    assert buttons(page) == RUNNING
    qtbot.waitUntil(lambda: page.charts.series("batch_loss").n > points, timeout=30000)
    with qtbot.waitSignal(c.finished, timeout=30000):
        page.stop_button.click()
        assert not page.stop_button.isEnabled() and not page.pause_button.isEnabled()
    assert buttons(page) == IDLE


def test_stop_then_resume_from_checkpoint(qtbot, tmp_path, cleanup):
    page = make_page(qtbot, tmp_path, tiny_project(tmp_path, epochs=30, batch_size=2, strategy="partial"))
    cleanup(page)
    c, state = page._controller, page.state
    with qtbot.waitSignal(c.epochEnded, timeout=90000):
        page.start_button.click()
    with qtbot.waitSignal(c.finished, timeout=30000):
        page.stop_button.click()
    rec = state.project.runs[-1]
    assert rec.status == "stopped" and rec.epochs_completed >= 1
    done = rec.epochs_completed
    ckpt = torch.load(Path(rec.run_dir) / "checkpoint_last.pt", weights_only=True)
    assert ckpt["epoch"] == done
    assert buttons(page) == IDLE
    # the stopped run is offered for resuming
    assert page.resume_run_button.isVisible() and page.resume_run_button.isEnabled()
    assert page.resume_run_combo.currentData() == rec.run_dir

    page.charts.flush()
    before_x = page.charts.series("batch_loss").x.copy()
    assert before_x.size and before_x[0] < 1.0

    # continue it to done + 1 epochs (the page's epoch count applies to the resumed run)
    page.epochs_spin.setValue(done + 1)
    starts = []
    c.fitStarted.connect(starts.append)
    with qtbot.waitSignal(c.finished, timeout=90000):
        page.resume_run_button.click()
        assert buttons(page) == RUNNING
    assert starts[0].resumed and starts[0].start_epoch == done + 1
    assert f"with epochs {done + 1}" in page.log_view.toPlainText()  # the change made on the page
    assert len(state.project.runs) == 1  # the same record, updated
    assert rec.status == "finished" and rec.epochs_completed == done + 1
    # the table shows the earlier epochs (from history.json) and the new one
    assert [page.table.item(r, 0).text().lstrip("\u2605 ") for r in range(page.table.rowCount())] == \
        [str(e) for e in range(1, done + 2)]
    assert page.resume_run_combo.count() == 0 and not page.resume_run_button.isVisible()
    # the unfreeze after the head epoch is marked once, whether it happened before or after the stop
    assert page.charts.phases == [(1.0, "unfreeze")]
    assert len(page.charts.loss_chart.markers) == 1
    # Issue 12.7: the per-batch curves before the stop are still drawn after the resume (the run's
    # history.json has none): the same points, up to the checkpoint's epoch.
    page.charts.flush()
    after = page.charts.series("batch_loss")
    kept = before_x[before_x <= done]
    assert len(kept) and np.array_equal(after.x[:len(kept)], kept)
    assert np.all(np.diff(after.x) > 0) and after.x[-1] > done  # then the new epoch, nothing twice
    assert page.charts.point_count("smooth_loss") == after.n and page.charts.series("lr").n == after.n


def test_interrupted_run_found_on_disk_can_be_resumed(qtbot, tmp_path, cleanup):
    """The app was killed: the project file never saw the run, but its folder has a checkpoint."""
    page = make_page(qtbot, tmp_path, tiny_project(tmp_path, epochs=30, batch_size=2))
    cleanup(page)
    c = page._controller
    with qtbot.waitSignal(c.epochEnded, timeout=90000):
        page.start_button.click()
    with qtbot.waitSignal(c.finished, timeout=30000):
        page.stop_button.click()
    run_dir = page.state.project.runs[-1].run_dir
    # simulate a project saved before the run started (or an app killed mid-run)
    project = tiny_project(tmp_path, epochs=2, batch_size=2)
    page.state.new_project(project, tmp_path / "tiny.tsproj")
    assert page.resume_run_combo.count() == 1
    assert page.resume_run_combo.currentData() == str(Path(run_dir))
    assert "found on disk" in page.resume_run_combo.currentText()
    assert page.table.rowCount() == 0  # a replaced project clears the old run's display


def test_engine_error_surfaces_in_the_page(qtbot, tmp_path, cleanup, monkeypatch):
    """Disk full while writing epoch 2's checkpoint: banner with advice, idle buttons, epoch 1 intact."""
    real_write = config.atomic_write_bytes
    calls = {"n": 0}

    def write(path, data):
        if Path(path).name == "checkpoint_last.pt":
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_write(path, data)

    monkeypatch.setattr(config, "atomic_write_bytes", write)
    page = make_page(qtbot, tmp_path, tiny_project(tmp_path, epochs=3))
    cleanup(page)
    with qtbot.waitSignal(page._controller.finished, timeout=90000):
        page.start_button.click()
    assert page.banner.isVisible()
    assert "disk is full" in page.banner.text()
    assert "free some disk space" in page.banner.text().lower()
    assert "transfer-studio" not in page.banner.text()  # in the app, the advice names the button
    assert buttons(page) == IDLE
    rec = page.state.project.runs[-1]
    assert rec.status == "failed" and rec.epochs_completed == 1
    assert torch.load(Path(rec.run_dir) / "checkpoint_last.pt", weights_only=True)["epoch"] == 1
    assert page.resume_run_combo.currentData() == rec.run_dir  # and it can be resumed
    action = page.banner.findChild(QPushButton, "train_banner_action")
    assert action.isVisible() and action.text() == "Resume from checkpoint"
    SHOTS.mkdir(exist_ok=True)
    page.grab().save(str(SHOTS / "train_error.png"))


def test_out_of_memory_offers_a_resume_with_half_the_batch(qtbot, tmp_path, cleanup, monkeypatch):
    from transfer_studio.training import loop

    real = loop.Trainer._train_epoch

    def train_epoch(self, e):
        if e == 2 and self.batch_size == 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real(self, e)

    monkeypatch.setattr(loop.Trainer, "_train_epoch", train_epoch)
    page = make_page(qtbot, tmp_path, tiny_project(tmp_path, epochs=2, batch_size=4))
    cleanup(page)
    with qtbot.waitSignal(page._controller.finished, timeout=90000):
        page.start_button.click()
    assert "out of memory" in page.banner.text().lower()
    action = page.banner.findChild(QPushButton, "train_banner_action")
    assert action.text() == "Resume with batch size 2"
    starts = []
    page._controller.fitStarted.connect(starts.append)
    with qtbot.waitSignal(page._controller.finished, timeout=90000):
        action.click()
    assert starts[0].resumed and starts[0].start_epoch == 2 and starts[0].batch_size == 2
    rec = page.state.project.runs[-1]
    assert rec.status == "finished" and rec.epochs_completed == 2
    assert "with batch size 2" in page.log_view.toPlainText()
    assert page.state.project.train.batch_size == 4  # the project's own setting is left alone


def test_missing_dataset_is_explained_before_anything_starts(qtbot, tmp_path, cleanup):
    project = tiny_project(tmp_path)
    project.data.root = str(tmp_path / "gone")
    page = make_page(qtbot, tmp_path, project)
    cleanup(page)
    page.start_button.click()
    assert not page.busy() and page.state.project.runs == []
    assert "dataset folder is missing" in page.banner.text()
    with qtbot.waitSignal(page.state.navigateRequested) as nav:
        page.banner.findChild(QPushButton, "train_banner_action").click()
    assert nav.args == ["data"]


def test_a_gpu_that_is_not_there_is_explained(qtbot, tmp_path, cleanup):
    project = tiny_project(tmp_path)
    project.train.device = "cuda"
    page = make_page(qtbot, tmp_path, project)
    cleanup(page)
    qtbot.waitUntil(lambda: page.model.devices is not None, timeout=60000)  # the real probe has answered
    from transfer_studio.core.devices import MachineDevices

    page.model.set_devices(MachineDevices(cpu=2, threads=2))  # what it answers on a machine without a GPU
    cuda_item = page.device_combo.model().item(page.device_combo.findData("cuda"))
    assert not cuda_item.isEnabled()
    assert "no GPU found" in page.device_label.text()
    page.start_button.click()
    assert not page.busy() and "No CUDA GPU" in page.banner.text()
    with qtbot.waitSignal(page.state.projectChanged):
        page.banner.findChild(QPushButton, "train_banner_action").click()  # "Use Auto"
    assert page.state.project.train.device == "auto"


def test_settings_edit_the_project(qtbot, tmp_path, cleanup):
    page = make_page(qtbot, tmp_path, tiny_project(tmp_path))
    cleanup(page)
    state = page.state
    with qtbot.waitSignal(state.projectChanged) as changed:
        page.epochs_spin.setValue(7)
    assert changed.args == ["train"] and state.project.train.epochs == 7
    page.batch_spin.setValue(16)
    page.lr_spin.setValue(3e-4)
    page.strategy_combo.setCurrentIndex(page.strategy_combo.findData("head"))
    with qtbot.waitSignal(state.projectChanged) as changed:
        page.augment_combo.setCurrentIndex(page.augment_combo.findData("strong"))
    assert changed.args == ["augment"]
    t = state.project.train
    assert (t.batch_size, t.lr, t.strategy, state.project.augment.preset) == (16, 3e-4, "head", "strong")
    assert "only the new head trains" in page.frozen_label.text()
    # a change made elsewhere (e.g. the Strategy page) shows here
    state.project.train.epochs = 12
    state.mark_changed("train")
    assert page.epochs_spin.value() == 12
    # the learning-rate field steps along 1-2-5 and reads scientific notation
    page.lr_spin.setValue(1e-3)
    page.lr_spin.stepBy(1)
    assert state.project.train.lr == pytest.approx(2e-3)
    page.lr_spin.stepBy(-2)
    assert state.project.train.lr == pytest.approx(5e-4)
    assert page.lr_spin.valueFromText("1e-05") == pytest.approx(1e-5)
    assert [_step_125(v, True) for v in (1e-4, 2e-4, 5e-4)] == pytest.approx([2e-4, 5e-4, 1e-3])


def test_engine_advice_points_to_the_page_not_the_cli():
    advice = ("use a smaller batch size, e.g. 16; resume with: transfer-studio train --resume /r/a "
              "--batch-size 16; or allow automatic retries with a halved batch (train.allow_oom_retry)")
    assert _gui_advice(advice) == ("use a smaller batch size, e.g. 16; set the batch size to 16 and press "
                                   "\u201cResume from checkpoint\u201d; or allow automatic retries with a "
                                   "halved batch")
    assert _gui_advice("free some disk space, then resume with: transfer-studio train --resume /r/a (the "
                       "checkpoint of epoch 2 is intact)") == (
        "free some disk space, then press \u201cResume from checkpoint\u201d (the checkpoint of epoch 2 "
        "is intact)")


def test_frozen_summary_names_strategy_and_model_page_edits():
    p = Project()
    p.train.strategy = "partial"
    p.train.unfreeze_from = "layer3"
    assert "blocks before layer3" in frozen_summary(p)
    p.surgery.append(config.SurgeryOp("freeze", target="layer1"))
    assert "on the Model page: layer1 frozen" in frozen_summary(p)


def test_the_settings_header_shows_the_model_and_what_is_frozen_in_full(qtbot, tmp_path, cleanup):
    """Issue 12.6: the header cut the model name ("(pretrainec") and showed "freeze_before _blocks.14"
    in a cramped five-line field."""
    p = tiny_project(tmp_path)
    p.model = ModelSpec("efficientnet_lite0", weights="DEFAULT")
    p.train.strategy = "auto"
    p.surgery = [config.SurgeryOp("freeze_before", target="_blocks.14"),
                 config.SurgeryOp("unfreeze", target="_blocks.3.*")]
    page = make_page(qtbot, tmp_path, p)
    cleanup(page)
    page.resize(1100, 650)  # the Train page in a 1280x720 window
    qtbot.wait(50)
    assert page.model_label.text() == "efficientnet_lite0 · pretrained" and not page.model_label.is_elided()
    frozen = page.frozen_label.text()
    assert "everything before _blocks.14 frozen; _blocks.3 trainable" in frozen
    assert "freeze_before" not in frozen and not page.frozen_label.is_elided()
    assert page.frozen_label.height() <= 2 * page.frozen_label.fontMetrics().lineSpacing()


def test_closing_the_window_mid_run_asks_then_stops_cleanly(qtbot, tmp_path, monkeypatch, qtlog):
    """The main window asks before closing a busy page; on Yes the run stops and its thread ends."""
    from transfer_studio.ui.main_window import MainWindow
    from transfer_studio.ui.settings import Settings

    state = AppState(tiny_project(tmp_path, epochs=30, batch_size=2))
    state.path = tmp_path / "tiny.tsproj"
    window = MainWindow(state, Settings())
    qtbot.addWidget(window)
    window.show()
    window.show_page("train")
    page = window.page("train")
    assert isinstance(page, TrainPage)
    with qtbot.waitSignal(page._controller.batches, timeout=90000):
        page.start_button.click()
    thread = page._controller._thread
    asked = []
    B = QMessageBox.StandardButton
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or B.No)
    window.close()
    assert asked and "Train" in asked[0]
    assert window.isVisible() and page.busy()  # "No": the run goes on
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: B.Yes)
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: B.Discard)
    window.close()
    assert not window.isVisible()
    assert not page.busy() and thread.isFinished()
    assert state.project.runs[-1].status == "stopped"
    assert (Path(state.project.runs[-1].run_dir) / "run.json").is_file()
    # the project remembers the run (and a later close has nothing left to ask about)
    state.save(state.path)
    assert Project.load(state.path).runs[-1].status == "stopped"
    qtbot.wait(50)
    assert not [r for r in qtlog.records if "QThread" in r.message]


def test_unsaved_project_runs_go_to_the_user_data_folder(qtbot, tmp_path, monkeypatch):
    from transfer_studio.ui import settings, train_worker

    assert train_worker.runs_root(None) == Path(os.environ["TS_DATA_DIR"]) / "runs"  # tests/ui/conftest.py
    monkeypatch.delenv("TS_DATA_DIR")
    monkeypatch.setattr(settings.QStandardPaths, "writableLocation", lambda _loc: str(tmp_path / "appdata"))
    assert train_worker.runs_root(None) == tmp_path / "appdata" / "runs"


def test_record_of_a_project_run_list_is_offered_only_with_checkpoint(qtbot, tmp_path, cleanup):
    project = tiny_project(tmp_path)
    with_ckpt = tmp_path / "runs" / "a"
    with_ckpt.mkdir(parents=True)
    (with_ckpt / "checkpoint_last.pt").write_bytes(b"not read here")
    no_ckpt = tmp_path / "runs" / "b"
    no_ckpt.mkdir()
    project.runs = [RunRecord(str(with_ckpt), status="running", epochs_completed=2),
                    RunRecord(str(no_ckpt), status="stopped"),
                    RunRecord(str(tmp_path / "runs" / "c"), status="finished")]
    page = make_page(qtbot, tmp_path, project)
    cleanup(page)
    assert page.resume_run_combo.count() == 1
    assert page.resume_run_combo.currentData() == str(with_ckpt)
    assert "interrupted, 2 epoch(s)" in page.resume_run_combo.currentText()


def test_the_eta_stands_still_while_paused_and_leaves_the_pause_out(qtbot, tmp_path, cleanup, monkeypatch):
    """Issue 12.9: the training ETA kept counting while the run was paused."""
    import types

    from transfer_studio.ui.models import train_progress

    now = [1000.0]
    monkeypatch.setattr(train_progress, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    page = make_page(qtbot, tmp_path, tiny_project(tmp_path))
    cleanup(page)
    run = page.model.run  # the page shows what its model's run monitor says
    run.clock.reset(10)
    now[0] += 10.0
    run._show_progress(run.clock.at(1, 5, 10))  # 5 % done in 10 s: 190 s to go
    assert page.eta_label.text() == "ETA 3:10"
    page._controller.paused.emit()
    now[0] += 300.0  # five minutes paused
    run._show_progress(run.clock.at(1, 5, 10))
    assert page.eta_label.text() == "ETA \u2013 (paused)"
    page._controller.resumed.emit()
    now[0] += 10.0
    run._show_progress(run.clock.at(1, 10, 10))  # 10 % in 20 s of training: 180 s to go, the pause left out
    assert page.eta_label.text() == "ETA 3:00"


def test_with_auto_the_page_says_what_auto_decides_and_typed_values_stay_the_users(qtbot, tmp_path, cleanup):
    """Issue 12.2: what the user sets explicitly wins over Auto, and the page shows which values Auto
    decides; the link gives them back to Auto."""
    project = tiny_project(tmp_path, strategy="auto")
    page = make_page(qtbot, tmp_path, project)
    cleanup(page)
    label = page.auto_label
    assert label.isVisible() and "Auto decides</b> epochs, batch size, learning rate, augmentation" in label.text()
    assert project.train.user_set == []

    page.epochs_spin.setValue(7)  # typed by the user
    assert project.train.epochs == 7 and project.train.user_set == ["epochs"]
    assert "Yours, kept:</b> epochs" in label.text() and "Auto decides</b> epochs" not in label.text()
    page.augment_combo.setCurrentIndex(page.augment_combo.findData("strong"))
    assert project.train.user_set == ["epochs", "augment"]

    label.linkActivated.emit("auto")
    assert project.train.user_set == [] and "Yours" not in label.text()
    page.strategy_combo.setCurrentIndex(page.strategy_combo.findData("head"))
    assert not label.isVisible()  # a fixed strategy: every value is the page's own
