"""The app killed while training; relaunched, it offers to resume the run, and resumes it."""

from __future__ import annotations

import json

import pytest
from helpers.killer import run_function
from helpers.training import make_project

from transfer_studio.core import recovery as core_recovery
from transfer_studio.core import run_folder
from transfer_studio.training import checkpoint as ckpt

KILLED = -9


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    """The app's data folder and settings file, shared by the killed app and its relaunch."""
    monkeypatch.setenv("TS_DATA_DIR", str(tmp_path / "appdata"))
    monkeypatch.setenv("TS_SETTINGS_FILE", str(tmp_path / "settings.ini"))
    yield tmp_path
    from transfer_studio.ui.main_window import finish_tasks

    assert finish_tasks(60000)


def test_the_app_killed_while_training_offers_to_resume_and_resumes(qtbot, app_env, tiny_data, monkeypatch):
    from transfer_studio.config import Project
    from transfer_studio.ui import recovery
    from transfer_studio.ui.main_window import MainWindow
    from transfer_studio.ui.settings import Settings
    from transfer_studio.ui.state import AppState

    project_file = app_env / "p.tsproj"
    make_project(tiny_data, strategy="full", epochs=3, batch_size=4, head_epochs=0, num_workers=0,
                 cache_features=False).save(project_file)
    assert run_function("helpers.gui_driver.train_then_die", [project_file, 2]) == KILLED

    journal = core_recovery.RunJournal(app_env / "appdata" / core_recovery.JOURNAL)
    [entry] = journal.entries()
    run_dir = entry["run_dir"]
    assert entry["project"] == str(project_file)
    assert json.loads((app_env / "runs" / run_dir.split("/")[-1] / run_folder.RUN).read_text())["status"] == \
        "running"
    assert not run_folder.is_locked(run_dir)  # the kernel released the dead app's lock

    asked = []
    monkeypatch.setattr(recovery, "ask_to_resume", lambda parent, run: asked.append(run) or True)
    window = MainWindow(AppState(), Settings())
    qtbot.addWidget(window, before_close_func=lambda w: w.shutdown())
    page_built, started = [], []

    def built(key):
        page_built.append(key)
        if key == "train":  # before the resume starts: catch its FitStart
            window.page("train")._controller.fitStarted.connect(started.append)

    window.pageBuilt.connect(built)
    window.show()
    qtbot.waitUntil(lambda: "train" in page_built, timeout=60000)
    [run] = asked
    assert run.run_dir == run_dir and run.project_path == str(project_file)
    assert run.epochs_planned == 3 and run.epochs_done >= 1 and run.model == "shufflenet_v2_x0_5"
    page = window.page("train")
    assert window.state.path == project_file and window.current_page_key() == "train"
    qtbot.waitUntil(lambda: bool(started) and not page._controller.is_running(), timeout=120000)
    assert started[0].resumed and started[0].start_epoch == 2
    info = json.loads((app_env / "runs" / run_dir.split("/")[-1] / run_folder.RUN).read_text())
    assert info["status"] == "finished" and info["epochs_completed"] == 3
    assert ckpt.load_checkpoint(run_folder.Path(run_dir) / ckpt.CHECKPOINT)["epoch"] == 3
    record = next(r for r in window.state.project.runs if r.run_dir == run_dir)
    assert record.status == "finished"
    assert not journal.entries()  # the run ended: nothing to offer next time
    window.save()
    assert Project.load(project_file).runs[-1].status == "finished"


def test_a_run_that_is_still_training_or_ended_is_not_offered(tmp_path, tiny_data):
    from transfer_studio.training import Control, fit
    from transfer_studio.training import events as ev

    journal = core_recovery.RunJournal(tmp_path / "journal.json")
    control = Control()
    seen = {}

    def cb(e):
        if isinstance(e, ev.EpochEnd) and e.epoch == 1:
            journal.add(tmp_path / "run", tmp_path / "p.tsproj")
            seen["live"] = journal.interrupted()  # locked by this very process: alive
            control.request_stop()

    fit(make_project(tiny_data, strategy="full", epochs=2), [cb], control, run_dir=tmp_path / "run")
    assert seen["live"] == [] and journal.entries()
    assert journal.interrupted() == []  # it ended (stopped): dropped from the journal
    assert journal.entries() == []


def test_a_damaged_journal_is_ignored(tmp_path):
    path = tmp_path / "journal.json"
    for text in ("", "{", "[]", '{"runs": 5}', '{"runs": [1, {"run_dir": 3}]}'):
        path.write_text(text)
        journal = core_recovery.RunJournal(path)
        assert journal.entries() == [] and journal.interrupted() == []
