"""`transfer-studio train`: JSON contract, progress on stderr, projects, Ctrl-C and resume, errors."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from helpers.training import SMALL_MODEL

from transfer_studio.cli import main
from transfer_studio.config import Project
from transfer_studio.training import callbacks
from transfer_studio.training import events as ev

HISTORY_KEYS = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"}


def _args(data, out, *extra):
    return ["train", str(data), "--model", SMALL_MODEL, "--weights", "none", "--epochs", "2",
            "--batch-size", "8", "--image-size", "32", "--device", "cpu", "--val-split", "0.25",
            "--workers", "0", "--out", str(out), *extra]


def test_json_output_is_one_document_with_the_history(tiny_data, tmp_path, capsys):
    rc = main(_args(tiny_data, tmp_path / "run", "--strategy", "head", "--json"))
    out, err = capsys.readouterr()
    assert rc == 0, err
    doc = json.loads(out)  # stdout holds exactly one JSON document
    assert {"run_dir", "model", "strategy", "epochs_completed", "best_epoch", "val_accuracy", "val_loss",
            "history"} <= set(doc)
    assert doc["model"] == SMALL_MODEL and doc["strategy"] == "head" and doc["epochs_completed"] == 2
    assert [set(h) for h in doc["history"]] == [HISTORY_KEYS, HISTORY_KEYS]
    assert doc["val_loss"] == min(h["val_loss"] for h in doc["history"])
    assert "epoch 2/2" in err  # progress stays on stderr
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_human_mode_prints_a_line_per_epoch_and_a_summary(tiny_data, tmp_path, capsys):
    rc = main(_args(tiny_data, tmp_path / "run", "--strategy", "full"))
    out, err = capsys.readouterr()
    assert rc == 0, err
    epoch_lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and "val_acc" in epoch_lines[0]
    assert "Trained shufflenet_v2_x0_5 (full strategy) for 2 epoch(s)" in out
    assert f"run saved in {tmp_path / 'run'}" in out


def test_auto_strategy_asks_the_advisor_and_explicit_flags_win(tiny_data, tmp_path, capsys):
    rc = main(_args(tiny_data, tmp_path / "run", "--json"))
    out, err = capsys.readouterr()
    assert rc == 0, err
    doc = json.loads(out)
    assert "advisor:" in err
    assert doc["strategy"] in ("head", "partial", "full") and doc["epochs_completed"] == 2  # --epochs 2 won
    snap = Project.load(tmp_path / "run" / "project.json")
    assert snap.train.strategy == doc["strategy"] and snap.train.batch_size == 8


def test_project_mode_records_the_run_in_the_project(tiny_data, tmp_path, capsys):
    from helpers.training import make_project

    file = tmp_path / "p.tsproj"
    make_project(tiny_data, strategy="head", epochs=1).save(file)
    rc = main(["train", "--project", str(file), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["run_dir"].startswith(str(tmp_path / "runs"))  # next to the project file
    saved = Project.load(file)
    assert len(saved.runs) == 1
    record = saved.runs[0]
    assert record.status == "finished" and record.epochs_completed == 1 and record.model == SMALL_MODEL
    assert saved.data.split and saved.data.classes == ["a", "b", "c"]  # the split is kept for next time


def test_ctrl_c_stops_after_the_batch_and_resume_finishes_the_run(tiny_data, tmp_path, capsys, monkeypatch):
    original = callbacks.ProgressPrinter.__call__

    def press_ctrl_c_after_epoch_1(self, event):
        original(self, event)
        if isinstance(event, ev.EpochEnd) and event.epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)  # the CLI's handler turns it into a stop request

    monkeypatch.setattr(callbacks.ProgressPrinter, "__call__", press_ctrl_c_after_epoch_1)
    run = tmp_path / "run"
    rc = main(_args(tiny_data, run, "--strategy", "full", "--epochs", "3"))
    _, err = capsys.readouterr()
    assert rc == 130
    assert "stopping after the current batch" in err
    assert f"resume with: transfer-studio train --resume {run}" in err
    assert torch.load(run / "checkpoint_last.pt", weights_only=True)["epoch"] == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored

    monkeypatch.setattr(callbacks.ProgressPrinter, "__call__", original)
    rc = main(["train", "--resume", str(run), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["epochs_completed"] == 3 and [h["epoch"] for h in doc["history"]] == [1, 2, 3]


@pytest.mark.parametrize("argv, message", [
    (["train"], "give DATA_DIR"),
    (["train", "{data}"], "--model is required"),
    (["train", "{tmp}/missing", "--model", SMALL_MODEL], "data folder not found"),
    (["train", "--resume", "{tmp}"], "not a training run folder"),
    (["train", "--resume", "{tmp}", "--model", SMALL_MODEL], "cannot change a resumed run"),
    (["train", "{data}", "--model", SMALL_MODEL, "--epochs", "0"], "must be at least 1"),
    (["train", "{data}", "--model", SMALL_MODEL, "--val-split", "1.5"], "between 0 and 1"),
])
def test_bad_arguments_are_one_line_and_exit_2(tiny_data, tmp_path, capsys, argv, message):
    argv = [a.format(data=tiny_data, tmp=tmp_path) for a in argv]
    rc = main(argv)
    _, err = capsys.readouterr()
    assert rc == 2
    assert message in err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error:")


def test_unavailable_device_is_a_user_error(tiny_data, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    rc = main(_args(tiny_data, tmp_path / "run", "--strategy", "head") + ["--device", "cuda"])
    assert rc == 2 and "no CUDA GPU" in capsys.readouterr().err


def test_a_failed_run_exits_1_with_the_engine_message(tiny_data, tmp_path, capsys, monkeypatch):
    from transfer_studio.core import network

    real = network.build_network

    def oom_network(project, **kw):
        model = real(project, **kw)

        def hook(module, args):
            if args[0].shape[0] > 2:
                raise torch.OutOfMemoryError("CUDA out of memory")

        model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(network, "build_network", oom_network)
    rc = main(_args(tiny_data, tmp_path / "run", "--strategy", "full"))
    err = capsys.readouterr().err
    assert rc == 1
    assert "out of memory" in err and "smaller batch size" in err and "Traceback" not in err
    # the progress printer's one line, not a second one from the CLI's error handler
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [
        next(line for line in err.splitlines() if "out of memory" in line)], err
