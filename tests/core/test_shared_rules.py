"""Rules that live once (issue 13.2): the device rule, run records and resume rules, the new head's
class count, and the run and bundle folders' layout; the CLI, the engine and the app call them."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from types import SimpleNamespace

import pytest
import torch

from transfer_studio import machine_settings as ms
from transfer_studio.config import ModelSpec, Project, RunRecord, SurgeryOp
from transfer_studio.core import devices, head, run_folder, runs
from transfer_studio.errors import UserError


# -- devices ---------------------------------------------------------------------------------------
def test_every_resolver_follows_the_one_device_rule():
    """Training, prediction, evaluation and the advisor answer alike, machine default included
    (the advisor and prediction ignored it before; evaluation had its own messages)."""
    from transfer_studio.core import metrics, predict, strategy
    from transfer_studio.training import device as tdevice

    resolvers = (tdevice.select_device, predict.resolve_device, metrics.pick_device,
                 lambda name: torch.device(strategy.resolve_device(name)))
    ms.save(ms.MachineSettings(device="cpu"))
    assert {str(resolve("auto")) for resolve in resolvers} == {"cpu"}
    assert {str(resolve("cpu")) for resolve in resolvers} == {"cpu"}
    messages = set()
    for resolve in resolvers:
        with pytest.raises(UserError) as err:
            resolve("tpu")
        messages.add(str(err.value))
    assert messages == {"unknown device 'tpu': choose one of auto, cpu, cuda, mps"}
    if not torch.cuda.is_available():
        for resolve in resolvers:
            with pytest.raises(UserError, match="no CUDA GPU"):
                resolve("cuda")


def test_the_machine_is_described_in_one_line():
    gpus = [{"name": "NVIDIA H100", "memory": 80 * 2**30}, {"name": "NVIDIA H100", "memory": 80 * 2**30}]
    assert devices.describe_machine(devices.MachineDevices(cpu=32, threads=16, cuda=gpus)) == \
        "GPU: NVIDIA H100 \u00b7 80.0 GiB (+1 more)"
    assert devices.describe_machine(devices.MachineDevices(mps=True)) == "GPU: Apple MPS"
    cpu_only = devices.MachineDevices(cpu=2, threads=2)
    assert devices.describe_machine(cpu_only) == "CPU \u00b7 2 threads (no GPU found)"
    assert [cpu_only.has(d) for d in ("auto", "cpu", "cuda", "cuda:1", "mps")] == [True, True, False, False, False]
    found = devices.probe()
    assert found.cpu >= 1 and found.threads >= 1 and bool(found.cuda) == torch.cuda.is_available()
    assert devices.describe("cpu") == "cpu"


# -- run records and resume rules ------------------------------------------------------------------
def test_new_run_folders_are_numbered_and_named_alike(tmp_path):
    now = datetime(2025, 1, 2, 3, 4, 5)
    first = runs.new_run_dir(tmp_path, "resnet18", now)
    assert first == tmp_path / "resnet18-20250102-030405"
    first.mkdir()
    assert runs.new_run_dir(tmp_path, "resnet18", now) == tmp_path / "resnet18-20250102-030405-2"
    from transfer_studio.training import engine

    project = Project(model=ModelSpec("resnet18", "none"))
    assert engine.default_run_dir(project, tmp_path).name.startswith("resnet18-")
    assert engine.RESUMABLE_OVERRIDES is runs.RESUMABLE_OVERRIDES


def test_runs_root_takes_the_machine_setting_then_the_project_folder(tmp_path):
    assert runs.runs_root(tmp_path / "p" / "x.tsproj", tmp_path / "unsaved") == (tmp_path / "p" / "runs").resolve()
    assert runs.runs_root(None, tmp_path / "unsaved") == tmp_path / "unsaved"
    ms.save(ms.MachineSettings(runs_dir=str(tmp_path / "all")))
    assert runs.runs_root(tmp_path / "p" / "x.tsproj", tmp_path / "unsaved") == tmp_path / "all"


def test_records_are_stamped_in_utc_and_follow_the_result(tmp_path):
    project = Project(model=ModelSpec("resnet18", "none"))
    project.train.strategy = "auto"
    rec = runs.new_record(tmp_path / "r", project)
    assert rec.status == "running" and rec.strategy == "auto" and rec.model == "resnet18"
    assert datetime.fromisoformat(rec.created).utcoffset().total_seconds() == 0  # the CLI's stamp too
    result = SimpleNamespace(run_dir=str(tmp_path / "r"), model="resnet18", strategy="head", status="stopped",
                             epochs_completed=2, best_epoch=1, val_accuracy=0.5, val_loss=0.7, duration_s=0.0)
    runs.update_record(rec, result, duration_s=3.0)
    assert (rec.status, rec.strategy, rec.epochs_completed, rec.best_epoch, rec.duration_s) == \
        ("stopped", "head", 2, 1, 3.0)
    runs.update_record(rec, None, status="failed", duration_s=1.0)  # the run raised: no result
    assert rec.status == "failed" and rec.duration_s == 4.0 and rec.epochs_completed == 2
    assert runs.record_of(result).run_dir == str((tmp_path / "r").resolve())


def _run_folder(path, status="stopped", epochs=3):
    path.mkdir(parents=True)
    project = Project(model=ModelSpec("resnet18", "none"))
    project.train.epochs, project.train.batch_size = epochs, 8
    project.save(path / run_folder.PROJECT)
    (path / run_folder.CHECKPOINT).write_bytes(b"not read here")
    (path / run_folder.RUN).write_text(json.dumps({"status": status}))
    return path


def test_resume_overrides_are_applied_once_by_one_rule(tmp_path):
    run = _run_folder(tmp_path / "run")
    snapshot = runs.load_snapshot(run)
    assert runs.apply_overrides(snapshot, {"epochs": 5, "batch_size": 8}) == ["resume: epochs changed from 3 to 5"]
    with pytest.raises(UserError, match="cannot change lr"):
        runs.apply_overrides(snapshot, {"lr": 0.1})
    # the app: only what changed on the page since the run started, and a halved batch
    page = Project().train
    page.epochs, page.batch_size, page.device = 9, 16, "cpu"
    launched = {"epochs": 9, "batch_size": 32, "device": "cpu"}
    assert runs.changed_since_launch(page, launched) == {"batch_size": 16}
    assert runs.changed_since_launch(page, None) == {}
    assert runs.resume_project(run, {"batch_size": 4}).train.batch_size == 4
    # the CLI: its --epochs/--workers flags go through the same function
    from transfer_studio.cli import train as cli_train

    args = argparse.Namespace(epochs=7, batch_size=None, device=None, workers=2)
    assert cli_train._resume_overrides(args) == {"epochs": 7, "num_workers": 2}
    with pytest.raises(UserError, match="not a training run folder"):
        runs.load_snapshot(tmp_path)


def test_resumable_runs_come_from_the_records_and_the_runs_folder(tmp_path):
    root = tmp_path / "runs"
    stopped = _run_folder(root / "a")
    _run_folder(root / "b", status="finished")  # ended: nothing to resume
    found = _run_folder(root / "c", status="running")  # killed before the project was saved
    live = _run_folder(root / "d", status="running")
    (root / "e").mkdir()  # no checkpoint
    records = [RunRecord(str(stopped), status="stopped"), RunRecord(str(tmp_path / "gone"), status="failed")]
    got = runs.resumable_runs(records, root, exclude=str(live))
    assert [(r.run_dir, r.record is not None) for r in got] == [(str(stopped), True), (str(found), False)]
    assert runs.resumable_runs(records, None) == got[:1]


# -- the head's class count ------------------------------------------------------------------------
def test_the_new_head_predicts_the_datasets_classes():
    project = Project()
    project.data.classes = ["a", "b", "c"]
    assert head.class_count(project) == 3
    assert head.class_count(project, SimpleNamespace(classes=["x", "y"])) == 2  # a fresh scan wins
    assert head.match_head(project, 3, add=False) is None and project.surgery == []  # Data page: no head yet
    assert head.match_head(project, 3) == head.HeadChange(True, None)
    assert project.surgery == [SurgeryOp("replace_head", params={"num_classes": 3})]
    assert head.match_head(project, 3) is None
    project.surgery[0].params["dropout"] = 0.2
    assert head.match_head(project, 5, add=False) == head.HeadChange(False, 3)
    assert project.surgery[0].params == {"num_classes": 5, "dropout": 0.2}
    from transfer_studio.training.engine import ensure_head

    assert ensure_head(project, 2) == "the head was set up for 5 classes; the data has 2, so it has 2"


# -- the folders' layout ---------------------------------------------------------------------------
def test_run_and_bundle_folders_are_read_without_torch(tmp_path):
    run = _run_folder(tmp_path / "run")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / run_folder.BUNDLE_META).write_text("{}")
    assert run_folder.source_kind(run) == "run" and run_folder.source_kind(bundle) == "bundle"
    with pytest.raises(UserError, match="neither a training run"):
        run_folder.source_kind(tmp_path)
    assert run_folder.weights_path(run) == run / "best.safetensors"
    assert run_folder.weights_path(bundle) == bundle / "model.safetensors"
    assert run_folder.weights_stamp(bundle) == 0.0 and run_folder.bundle_exists(bundle)
    (bundle / "model.safetensors").write_bytes(b"x")
    assert run_folder.weights_stamp(bundle) > 0
    (run / run_folder.HISTORY).write_text(json.dumps([{"epoch": 1, "lr": 0.1}, {"epoch": "x"}, 3]))
    assert run_folder.read_history(run) == [{"epoch": 1, "lr": 0.1}]
    (run / run_folder.HISTORY).write_text(json.dumps({"history": [{"epoch": 2}]}))
    assert run_folder.read_history(run) == [{"epoch": 2}]
    (run / run_folder.HISTORY).write_text("{damaged")
    assert run_folder.read_history(run) == [] and run_folder.read_summary(run) == {"status": "stopped"}
    from transfer_studio.core import export

    assert export.source_kind is run_folder.source_kind and export.MODEL_JSON == run_folder.BUNDLE_META
