"""The Train page's model without Qt: settings, readiness checks, runs started, followed, stopped and
resumed (the engine's signals are played by a fake trainer)."""

from __future__ import annotations

import json
import types
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers.page_models import FakeTrainer, Jobs

from transfer_studio.config import RunRecord
from transfer_studio.core import run_folder, runs
from transfer_studio.core.devices import MachineDevices
from transfer_studio.ui.models import train_model, train_progress
from transfer_studio.ui.models.train_model import LAUNCH_KEY, TrainModel


def fit_start(**kw):
    base = dict(epochs=3, start_epoch=1, strategy="partial", model="resnet18", resumed=False, device="cpu",
                precision="fp32", num_train=8, num_val=2, classes=["a", "b"], batch_size=4, steps_per_epoch=2,
                trainable_params=10, total_params=20, cached_features=False, notes=[], run_dir="")
    return SimpleNamespace(**{**base, **kw})


def epoch_end(epoch, val_loss, is_best, **kw):
    base = dict(epoch=epoch, epochs=3, train_loss=1.0, train_accuracy=0.5, val_loss=val_loss, val_accuracy=0.75,
                lr=1e-3, seconds=1.5, is_best=is_best, eta_s=30.0)
    return SimpleNamespace(**{**base, **kw})


def outcome(status, result=None, failure=None):
    return SimpleNamespace(status=status, result=result, failure=failure, duration_s=2.0)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    return root


@pytest.fixture
def setup(session, data, tmp_path):
    session.project.data.root = str(data)
    trainer, jobs = FakeTrainer(), Jobs()
    model = TrainModel(session, trainer, jobs, lambda path: tmp_path / "runs")
    seen = {name: [] for name in ("problem", "log", "statusText", "rowAdded", "bestRow", "settingsChanged")}
    for name, items in seen.items():
        owner = model.run if hasattr(model.run, name) else model
        getattr(owner, name).connect(lambda *a, items=items: items.append(a[0] if len(a) == 1 else a))
    return model, trainer, jobs, seen


def test_typed_values_are_the_users_and_auto_gets_them_back(setup, session):
    model, _trainer, _jobs, seen = setup
    t = session.project.train
    t.strategy = "auto"
    changes = []
    session.projectChanged.connect(changes.append)
    model.edit_settings(strategy="auto", epochs=7, batch_size=t.batch_size, lr=t.lr, device="auto")
    assert t.epochs == 7 and t.user_set == ["epochs"] and changes == ["train"]
    assert seen["settingsChanged"] == [False]  # its own edit: the fields are not reloaded
    summary = model.summary()
    assert "Yours, kept:</b> epochs" in summary["auto"] and summary["auto_visible"]
    model.edit_augment("strong")
    assert session.project.augment.preset == "strong" and t.user_set == ["epochs", "augment"]
    model.give_back_to_auto()
    assert t.user_set == [] and "Yours" not in model.summary()["auto"]
    session.mark_changed("train")  # changed elsewhere (the Strategy page): the fields reload
    assert seen["settingsChanged"][-1] is True


def test_problems_before_a_start_come_with_the_button_that_fixes_them(setup, session, data):
    model, trainer, _jobs, seen = setup
    session.project.data.root = ""
    model.start()
    assert seen["problem"][-1].message == "No dataset chosen yet." and not trainer.started
    pages = []
    session.navigateRequested.connect(pages.append)
    seen["problem"][-1].action()
    assert pages == ["data"]
    session.project.data.root = str(data / "gone")
    model.start()
    assert "dataset folder is missing" in seen["problem"][-1].message
    session.project.data.root = str(data)
    session.project.train.device = "cuda"
    model.set_devices(MachineDevices(cpu=2, threads=2))
    model.start()
    problem = seen["problem"][-1]
    assert problem.message == "No CUDA GPU was found on this computer." and problem.action_text == "Use Auto"
    problem.action()
    assert session.project.train.device == "auto" and seen["settingsChanged"][-1] is True
    assert session.project.runs == [] and not trainer.started


def test_a_run_is_recorded_followed_and_remembered(setup, session, tmp_path):
    model, trainer, jobs, seen = setup
    model.start()
    (project, run_dir, resume), = trainer.started
    assert not resume and project is not session.project and run_dir.parent == tmp_path / "runs"
    rec = session.project.runs[-1]
    assert rec.status == "running" and rec.run_dir == str(run_dir)
    assert datetime.fromisoformat(rec.created).utcoffset().total_seconds() == 0
    assert session.training_active and model.controls().stop and not model.controls().start
    assert session.project.ui[LAUNCH_KEY][str(run_dir)] == {"epochs": 10, "batch_size": 32, "device": "auto"}

    trainer.fitStarted.emit(fit_start())
    assert seen["statusText"][-1] == "Training" and "resnet18, strategy partial" in seen["log"][-1]
    trainer.epochEnded.emit(epoch_end(1, 0.9, True))
    trainer.epochEnded.emit(epoch_end(2, 0.8, True, lr=None))
    assert [r.epoch for r in seen["rowAdded"]] == [1, 2] and seen["bestRow"] == [0, 1]
    assert "head fitted by L-BFGS" in seen["log"][-1] and rec.best_epoch == 2
    model.pause()
    assert trainer.calls == ["pause"] and not model.controls().pause  # no second click while it pauses
    trainer.paused_now = True
    trainer.paused.emit()
    assert model.controls().resume and seen["statusText"][-1].startswith("Paused")
    result = SimpleNamespace(status="finished", epochs_completed=2, best_epoch=2, val_accuracy=0.75, val_loss=0.8,
                             strategy="partial", model="resnet18", duration_s=5.0, stopped_early=False)
    trainer.paused_now = False
    trainer.end(outcome("finished", result))
    assert rec.status == "finished" and rec.epochs_completed == 2 and rec.duration_s == 5.0
    assert session.project.ui["selected_run"] == rec.run_dir
    assert seen["statusText"][-1] == "Finished, best validation accuracy 75.0% (epoch 2)"
    assert not session.training_active and model.controls().start


def test_a_start_during_the_warm_up_waits_and_stop_forgets_it(session, data, tmp_path):
    session.project.data.root = str(data)
    trainer, jobs = FakeTrainer(), Jobs(sync=False)
    model = TrainModel(session, trainer, jobs, lambda path: tmp_path / "runs")
    model.probe()  # the engine's warm-up has not finished
    model.start()
    assert model.busy() and not trainer.started and model.run.status.startswith("Preparing")
    assert model.controls() == train_model.Controls(start=False, pause=False, resume=False, stop=True, running=True)
    model.stop()
    assert not model.busy() and session.project.runs == []
    model.start()
    jobs.started[0].fn = lambda *a, **k: MachineDevices()
    jobs.run(jobs.started[0])
    assert len(trainer.started) == 1 and model.run.status.startswith("Starting")


def test_a_failure_offers_to_resume_with_half_the_batch(setup, session):
    model, trainer, _jobs, seen = setup
    model.start()
    run_dir = trainer.started[0][1]
    run_dir.mkdir(parents=True)
    (run_dir / run_folder.CHECKPOINT).write_bytes(b"x")
    session.project.copy().save(run_dir / run_folder.PROJECT)
    trainer.fitStarted.emit(fit_start(batch_size=4))
    failure = SimpleNamespace(message="the GPU ran out of memory while training.",
                              suggestion="resume with: transfer-studio train --resume /r --batch-size 2", detail="")
    trainer.end(outcome("failed", failure=failure))
    problem = seen["problem"][-1]
    assert problem.message == "The GPU ran out of memory while training."
    assert problem.suggestion == "Set the batch size to 2 and press \u201cResume from checkpoint\u201d"
    assert problem.action_text == "Resume with batch size 2"
    assert model.resumable == [(f"{run_dir.name} \u2014 failed, 0 epoch(s)", str(run_dir))]
    problem.action()
    project, resumed_dir, resume = trainer.started[-1]
    assert resume and resumed_dir == run_dir and project.train.batch_size == 2
    assert "with batch size 2" in seen["log"][-1] and session.project.train.batch_size == 32


def test_a_resume_takes_the_settings_changed_since_the_run_started(setup, session, tmp_path):
    model, trainer, _jobs, seen = setup
    run_dir = tmp_path / "runs" / "killed"
    run_dir.mkdir(parents=True)
    snapshot = session.project.copy()
    snapshot.train.epochs = 3
    snapshot.save(run_dir / run_folder.PROJECT)
    (run_dir / run_folder.CHECKPOINT).write_bytes(b"x")
    (run_dir / run_folder.RUN).write_text(json.dumps({"status": "running", "model": "resnet18"}))
    (run_dir / run_folder.HISTORY).write_text(json.dumps([{"epoch": 1, "val_loss": 0.5, "lr": 0.1},
                                                          {"epoch": 2, "val_loss": 0.4, "lr": 0.1}]))
    model.refresh_resumable()
    assert model.resumable == [("killed \u2014 found on disk", str(run_dir))]
    session.project.ui[LAUNCH_KEY] = {str(run_dir): {"epochs": 10, "batch_size": 32, "device": "auto"}}
    session.project.train.epochs = 12
    session.runs_being_deleted = frozenset({runs.norm_path(run_dir)})  # the Runs page deletes it right now
    model.resume_run(str(run_dir))
    assert trainer.started == [] and "being deleted" in seen["problem"][-1].message
    session.runs_being_deleted = frozenset()
    model.resume_run(str(run_dir))
    project, _dir, resume = trainer.started[-1]
    assert resume and project.train.epochs == 12 and project.train.batch_size == 32
    assert seen["log"][-1].endswith("with epochs 12")
    assert [r.epoch for r in seen["rowAdded"]] == [1, 2] and seen["bestRow"] == [1]  # from history.json
    rec = session.project.runs[-1]
    assert rec.status == "running" and rec.model == "resnet18"
    model.refresh_resumable()
    assert model.resumable == []  # the run under way is not offered
    missing = tmp_path / "runs" / "empty"
    missing.mkdir()
    trainer.running = False
    model.resume_run(str(missing))
    assert "no checkpoint to resume from" in seen["problem"][-1].message


def test_the_eta_leaves_paused_time_out(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(train_progress, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    clock = train_progress.RunClock()
    clock.reset(10)
    now[0] += 10.0
    assert clock.at(1, 5, 10).eta == "ETA 3:10"  # 5 % in 10 s: 190 s to go
    clock.pause()
    now[0] += 300.0
    assert clock.at(1, 5, 10).eta is None
    clock.resume()
    now[0] += 10.0
    assert clock.at(1, 10, 10).eta == "ETA 3:00"  # 10 % in 20 s of training


def test_records_of_the_project_are_offered_only_with_a_checkpoint(setup, session, tmp_path):
    model, _trainer, _jobs, _seen = setup
    with_ckpt = tmp_path / "runs" / "a"
    with_ckpt.mkdir(parents=True)
    (with_ckpt / run_folder.CHECKPOINT).write_bytes(b"not read here")
    (tmp_path / "runs" / "b").mkdir()
    session.project.runs = [RunRecord(str(with_ckpt), status="running", epochs_completed=2),
                            RunRecord(str(tmp_path / "runs" / "b"), status="stopped"),
                            RunRecord(str(tmp_path / "runs" / "c"), status="finished")]
    model.refresh_resumable()
    assert model.resumable == [("a \u2014 interrupted, 2 epoch(s)", str(with_ckpt))]
    assert Path(model.resumable[0][1]) == with_ckpt
