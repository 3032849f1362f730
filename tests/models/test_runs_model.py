"""The Runs page's model without Qt: the table's rows and texts, curves from history.json, runs followed
while they train (the files read in a job, not where the timer ticks), adding a run folder, opening a
run's evaluation and deleting runs with their guards. Run folders are small JSON files written here;
jobs run in the test's thread when the test says."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers.page_models import Jobs, record

from transfer_studio.config import RunRecord
from transfer_studio.core import run_folder
from transfer_studio.ui.models import runs_model as rm
from transfer_studio.ui.models.runs_model import RunsModel, format_duration, selection_text


def write_run(folder: Path, *, status: str = "running", epochs: int = 1, accuracy: float = 0.5) -> str:
    """A run folder as the engine leaves it: project.json, run.json and history.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / run_folder.PROJECT).write_text(json.dumps({"model": {"name": "resnet18"},
                                                         "train": {"strategy": "head"}}))
    (folder / run_folder.RUN).write_text(json.dumps({"status": status, "epochs_completed": epochs,
                                                     "best_epoch": epochs, "val_accuracy": accuracy,
                                                     "duration_s": 10.0 * epochs}))
    write_history(folder, epochs)
    return str(folder)


def write_history(folder: Path, epochs: int) -> None:
    path = folder / run_folder.HISTORY
    path.write_text(json.dumps([{"epoch": e, "val_accuracy": 0.1 * e, "val_loss": 1.0 / e, "train_loss": 2.0 / e}
                                for e in range(1, epochs + 1)]))
    stamp = 1_000_000 + epochs  # a new modification time each time it grows, however fast the test runs
    os.utime(path, (stamp, stamp))


class Page:
    def __init__(self) -> None:
        self.selected: list[str] = []
        self.shown = True


@pytest.fixture
def setup(session):
    jobs, page = Jobs(sync=False), Page()
    model = RunsModel(session, jobs, selected=lambda: page.selected, shown=lambda: page.shown,
                      label=lambda r: f"{r.model} {r.status}", created=lambda c: c or "–")
    changed: list[str] = []
    statuses: list[str] = []
    session.projectChanged.connect(changed.append)
    session.statusMessage.connect(lambda text, _ms: statuses.append(text))
    return SimpleNamespace(host=session, jobs=jobs, page=page, model=model, changed=changed, statuses=statuses,
                           seen=record(model, RunsModel.EVENTS))


def test_rows_newest_first_with_their_texts(setup, tmp_path):
    s = setup
    a = write_run(tmp_path / "a", status="finished")
    s.host.project.runs += [
        RunRecord(run_dir=a, created="2024-05-01", model="resnet18", strategy="head", epochs_completed=3,
                  best_epoch=2, val_accuracy=0.75, duration_s=3725.0, status="finished"),
        RunRecord(run_dir=str(tmp_path / "gone"), created="2024-05-02", status="failed")]
    rows = s.model.rows()
    assert [r.run_dir for r in rows] == [str(tmp_path / "gone"), a]
    assert [t for t, _ in rows[1].cells] == ["2024-05-01", "resnet18", "head", "3 (best 2)", "75.0%",
                                             "1 h 02 min", "finished"]
    assert rows[1].cells[4][1] == 0.75 and rows[1].exists
    assert not rows[0].exists and rows[0].cells[6][0] == "failed · folder missing"
    assert [t for t, _ in rows[0].cells[1:3]] == ["?", "–"] and rows[0].cells[4] == ("–", -1.0)
    assert format_duration(42) == "42 s" and format_duration(75) == "1 min 15 s" and format_duration(None) == "–"

    assert selection_text(0).startswith("Select a run") and selection_text(3) == "3 runs overlaid."
    assert RunsModel.can_open_evaluation([a]) and not RunsModel.can_open_evaluation([a, a])
    assert RunsModel.can_delete([a]) and not RunsModel.can_delete([])
    # nothing selected: the latest run, if its folder is there
    assert s.model.shown_runs([], a) == [a] and s.model.shown_runs([], str(tmp_path / "gone")) == []
    assert s.model.shown_runs([str(tmp_path / "gone")], a) == [str(tmp_path / "gone")]  # chosen: kept
    assert s.model.shown_runs(["x"], a) == [a]  # a run no longer listed (deleted): the latest instead


def test_curves_come_from_history_json(setup, tmp_path):
    s = setup
    a = write_run(tmp_path / "a", epochs=3)
    s.host.project.runs.append(RunRecord(run_dir=a, model="resnet18", status="finished"))
    one, missing = s.model.curves([a, str(tmp_path / "b")])
    assert one.series["val_accuracy"] == ([1.0, 2.0, 3.0], pytest.approx([10.0, 20.0, 30.0]))
    assert one.series["train_loss"][1] == pytest.approx([2.0, 1.0, 2 / 3]) and set(one.series) == set(rm.CURVE_KINDS)
    assert one.colour == rm.RUN_COLOURS[0] and missing.colour == rm.RUN_COLOURS[1]
    assert one.legend.endswith("resnet18 finished (3 epochs)") and missing.legend.endswith("b (no history)")
    assert missing.series == {}


def test_following_reads_the_files_in_a_job_not_when_the_timer_ticks(setup, tmp_path, monkeypatch):
    s = setup
    run = tmp_path / "job" / "runs" / "run_1"
    write_run(run, epochs=1)
    assert s.model.add_run_folder(str(run))
    rec = s.host.project.runs[0]
    s.page.selected = [rec.run_dir]
    assert len(s.model.curves([rec.run_dir])[0].series["val_accuracy"][0]) == 1

    reads: list[str] = []
    for name in ("read_summary", "read_history"):
        real = getattr(run_folder, name)
        monkeypatch.setattr(run_folder, name, lambda d, real=real, n=name: reads.append(n) or real(d))
    write_run(run, status="finished", epochs=3)  # the job goes on and finishes
    s.changed.clear()
    job = s.model.follow()  # the timer's tick: a refresh is due
    assert job is not None and job.name == "follow runs" and reads == [] and rec.status == "running"
    assert s.model.follow() is None  # one follow job at a time
    s.jobs.run(job)
    assert sorted(set(reads)) == ["read_history", "read_summary"]
    assert (rec.status, rec.epochs_completed, rec.val_accuracy) == ("finished", 3, 0.5) and s.changed == ["runs"]
    reads.clear()
    assert len(s.model.curves([rec.run_dir])[0].series["val_accuracy"][0]) == 3 and reads == []  # the job's read

    # finished and nothing shown: nothing to follow; a hidden page follows nothing
    s.page.selected = []
    assert s.model.follow() is None
    s.page.selected, s.page.shown = [rec.run_dir], False
    assert s.model.follow() is None

    # the page is shut down while a follow job runs: its answer is dropped, nothing more is followed
    s.page.shown = True
    rec.status = "running"
    job = s.model.follow()
    s.model.close()
    assert job.cancelled and s.model.follow() is None
    s.changed.clear()
    s.model._on_followed(job.fn(*job.args))  # an answer already on its way
    assert s.changed == [] and rec.status == "running"


def test_a_history_that_grew_redraws_and_newer_values_stay(setup, tmp_path):
    s = setup
    s.model.add_run_folder(write_run(tmp_path / "a", epochs=1))
    a = s.host.project.runs[0].run_dir
    s.page.selected = [a]
    s.model.curves([a])  # drawn: history cached
    s.changed.clear()
    write_history(tmp_path / "a", 2)  # another epoch; run.json not rewritten yet
    s.jobs.run(s.model.follow())
    assert s.seen["curvesChanged"] == [()] and s.changed == []
    assert len(s.model.curves([a])[0].series["val_loss"][0]) == 2

    # the record changed here while the job read the file (the Train page ended the run): kept
    write_run(tmp_path / "a", status="stopped", epochs=2)
    job = s.model.follow()
    rec = s.host.project.runs[0]
    rec.status, rec.epochs_completed = "finished", 5
    s.jobs.run(job)
    assert (rec.status, rec.epochs_completed) == ("finished", 5) and s.changed == []

    # a record deleted meanwhile is not brought back
    rec.status = "running"
    job = s.model.follow()
    s.host.project.runs.clear()
    s.jobs.run(job)
    assert s.host.project.runs == [] and s.changed == []


def test_adding_a_run_folder(setup, tmp_path):
    s = setup
    assert not s.model.add_run_folder(str(tmp_path))
    text, level = s.seen["message"][-1]
    assert level == "error" and "not a training run folder" in text and s.host.project.runs == []
    assert s.model.add_folder_start() == str(tmp_path)  # beside the project file
    run = write_run(tmp_path / "elsewhere" / "run_1", epochs=2)
    assert s.model.add_run_folder(run) and s.model.add_run_folder(run)
    assert len(s.host.project.runs) == 1 and s.changed == ["runs"] and s.host.modified  # once only
    rec = s.host.project.runs[0]
    assert (rec.model, rec.strategy, rec.status, rec.epochs_completed) == ("resnet18", "head", "running", 2)
    assert s.seen["selectRequested"][-1] == [rec.run_dir] and s.seen["messageCleared"]
    assert s.statuses[-1] == "Added the run resnet18 running"
    assert s.model.add_folder_start() == str(tmp_path / "elsewhere")  # beside the newest run


def test_open_evaluation_needs_the_folder(setup, tmp_path):
    s = setup
    asked, navigated = [], []
    s.host.evaluateRequested.connect(asked.append)
    s.host.navigateRequested.connect(navigated.append)
    assert not s.model.open_evaluation(str(tmp_path / "gone"))
    assert "no longer exists" in s.seen["message"][-1][0] and s.seen["message"][-1][1] == "warning"
    a = write_run(tmp_path / "a")
    assert s.model.open_evaluation(a)
    assert asked == [a] and navigated == ["evaluate"] and s.host.project.ui.evaluate_run == a


def test_delete_guards_questions_and_what_goes(setup, tmp_path):
    s = setup
    a, b = write_run(tmp_path / "a", status="finished"), write_run(tmp_path / "b", status="stopped")
    home = tmp_path / "not_a_run"
    (home / "documents").mkdir(parents=True)
    ra, rb = RunRecord(run_dir=a, model="m", status="finished"), RunRecord(run_dir=b, model="m", status="stopped")
    live = RunRecord(run_dir=str(tmp_path / "live"), status="running")
    rh = RunRecord(run_dir=str(home), status="finished")
    s.host.project.runs += [ra, rb, live, rh]
    s.host.project.ui.evaluate_run, s.host.project.ui.export_run = b, a
    asked: list[str] = []

    def ask(answer):
        return lambda plan: asked.append(s.model.files_question(plan, lambda n: f"{n} bytes")) or answer

    assert s.model.plan_delete([]) is None
    assert s.model.plan_delete([live.run_dir, a]) is None  # a run still training is never deleted
    assert "still training" in s.seen["message"][-1][0]

    plan = s.model.plan_delete([b])
    assert plan.question == "Remove the run “m stopped” from this project?" and plan.folders == []
    job = s.model.start_delete(plan, ask(False))
    assert job.name == "measure runs" and s.model.deleting() and s.seen["busyStarted"][-1][1] is job
    assert s.host.runs_being_deleted == {rm.norm_path(b)}  # the Train page does not resume it meanwhile
    assert s.model.plan_delete([a]) is None and "being deleted" in s.seen["message"][-1][0]  # one at a time
    s.jobs.run(job)  # the size, measured off the GUI thread, then the question
    size = sum(f.stat().st_size for f in Path(b).iterdir())
    assert plan.folders == [Path(b)] and asked == [f"Also delete {b} from disk ({size} bytes)? Its checkpoints "
                                                   "and weights are lost for good; exported bundles elsewhere are kept."]
    assert not s.model.deleting() and len(s.jobs.started) == 1  # kept the files: no second job
    assert s.host.runs_being_deleted == frozenset()
    assert Path(b).is_dir() and rb not in s.host.project.runs and "evaluate_run" not in s.host.project.ui
    assert s.statuses[-1] == "Deleted the run “m stopped”" and s.changed[-2:] == ["runs", "ui"]

    plan = s.model.plan_delete([a, str(home)])
    s.jobs.run(s.model.start_delete(plan, ask(True)))
    assert plan.what == "2 runs" and plan.folders == [Path(a)]  # only a folder a run wrote is offered
    assert asked[-1].startswith(f"Also delete {a} from disk")
    assert Path(a).is_dir() and s.model.deleting()  # the folders go in a job of their own
    s.jobs.run(s.jobs.named("delete runs")[0])
    assert not Path(a).exists() and (home / "documents").is_dir()
    assert s.host.project.runs == [live] and s.host.project.ui.export_run is None
    assert s.statuses[-1] == "Deleted 2 runs and their files" and not s.model.deleting()
    assert s.seen["busyStopped"]


def test_a_folder_that_cannot_be_deleted_keeps_its_run(setup, tmp_path, monkeypatch):
    s = setup
    a, b = write_run(tmp_path / "a", status="finished"), write_run(tmp_path / "b", status="finished")
    ra, rb = RunRecord(run_dir=a, status="finished"), RunRecord(run_dir=b, status="finished")
    s.host.project.runs += [ra, rb]
    real = rm.shutil.rmtree

    def refuse(path):
        if Path(path) == Path(a):
            raise PermissionError(13, "Permission denied")
        real(path)

    monkeypatch.setattr(rm.shutil, "rmtree", refuse)
    s.jobs.sync = True
    s.model.start_delete(s.model.plan_delete([a, b]), lambda plan: True)
    text, level = s.seen["message"][-1]
    assert level == "warning"
    assert text == f"Could not delete {a} (Permission denied). 1 run kept in the project, 1 removed."
    assert s.host.project.runs == [ra] and Path(a).is_dir() and not Path(b).exists()


def test_a_cancelled_delete_keeps_the_runs_not_reached_and_close_drops_answers(setup, tmp_path, monkeypatch):
    s = setup
    a, b = write_run(tmp_path / "a", status="finished"), write_run(tmp_path / "b", status="finished")
    ra, rb = RunRecord(run_dir=a, status="finished"), RunRecord(run_dir=b, status="finished")
    s.host.project.runs += [ra, rb]
    s.jobs.run(s.model.start_delete(s.model.plan_delete([a, b]), lambda plan: True))
    job = s.jobs.named("delete runs")[0]
    real = rm.shutil.rmtree
    monkeypatch.setattr(rm.shutil, "rmtree", lambda path: (real(path), job.cancel()))  # cancelled during the first
    s.jobs.run(job)
    assert not Path(a).exists() and Path(b).is_dir() and s.host.project.runs == [rb]
    assert s.seen["message"][-1] == ("Delete cancelled before 1 run folder. 1 run kept in the project, 1 removed.",
                                     "info")
    s.jobs.run(s.model.start_delete(s.model.plan_delete([b]), lambda plan: True))
    s.model.close()
    s.jobs.run(s.jobs.named("delete runs")[1])  # it was cancelled before it began
    assert Path(b).is_dir() and s.host.project.runs == [rb] and not s.seen["message"][-1][0].startswith("Deleted")
