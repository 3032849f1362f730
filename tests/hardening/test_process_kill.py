"""SIGKILL mid-run: ``transfer-studio train --resume`` always completes, bit-identical to a run that
was never interrupted; a kill while writing a file never leaves a partial file under its name.

Kill points are drawn from a seeded generator (TS_KILL_SEED, default 1234; the drawn points are in
every failure message), before a training batch or in the middle of writing the checkpoint. Each
process is a real process killed with SIGKILL (no cleanup runs); it is forked from a server that has
torch imported already (helpers.killer), which saves seconds per process. bench/bench_kill.py runs
the same chain for many seeds.
"""

from __future__ import annotations

import io
import json
import os
import random

import pytest
import torch
from helpers.killer import record_checks, run_cli
from helpers.training import make_project
from safetensors.torch import load_file

from transfer_studio import config
from transfer_studio.cli import main as cli_main
from transfer_studio.training import checkpoint as ckpt

SEED = int(os.environ.get("TS_KILL_SEED", "1234"))
EPOCHS = 3
KILLED = -9


def timeline(checks: list[tuple[int, int]]) -> list[tuple]:
    """Every kill point of a run, in the order the run reaches them: each stop check it makes
    (before a training, validation or feature-extraction batch) and the writing of each
    epoch's checkpoint; ``checks`` are the (epoch, step) stop checks of an uninterrupted run."""
    points: list[tuple] = []
    for e in range(1, EPOCHS + 1):
        n = sum(1 for epoch, _ in checks if epoch == e)
        points += [("check", e, i) for i in range(1, n + 1)]
        points.append(("write", e, 0.5))
    return points


def draw_kills(rng: random.Random, points: list[tuple], n: int) -> list[tuple]:
    kills = [points[i] for i in sorted(rng.sample(range(len(points)), n))]
    # vary how much of the checkpoint reached the disk
    return [("write", k[1], round(rng.uniform(0.0, 0.99), 2)) if k[0] == "write" else k for k in kills]


def durable_epoch(run_dir) -> int:
    try:
        return int(ckpt.load_checkpoint(run_dir / ckpt.CHECKPOINT)["epoch"])
    except Exception:  # noqa: BLE001 - no checkpoint yet
        return 0


def spec_for(kill: tuple, run_dir) -> str:
    if kill[0] == "check":
        return f"check:{kill[1]}:{kill[2]}"
    nth = kill[1] - durable_epoch(run_dir)  # this process writes epochs durable+1, durable+2, ...
    return f"write:{ckpt.CHECKPOINT}:{nth}:{kill[2]}"


def assert_no_partial_files(run_dir, context: str) -> None:
    """Every file under a final name is complete; a killed write left at most a temp file."""
    for p in run_dir.iterdir():
        if config.is_temp_name(p.name) or p.name == ckpt.LOCK:
            continue
        if p.suffix == ".pt":  # checked as is: load_checkpoint's fallback must not hide a stump here
            data = p.read_bytes()
            assert ckpt.verify_seal(data) is None, f"{context}: {p.name} is incomplete"
            torch.load(io.BytesIO(data), weights_only=True)
        elif p.suffix == ".safetensors":
            load_file(p)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        else:
            raise AssertionError(f"{context}: unexpected file {p.name}")


def final_state(run_dir) -> tuple[dict, dict, list]:
    state = ckpt.load_checkpoint(run_dir / ckpt.CHECKPOINT)
    return state["model"], load_file(run_dir / ckpt.BEST), [h["train_loss"] for h in state["history"]]


@pytest.mark.parametrize("strategy", ["head", "full", "partial"])
def test_killed_runs_resume_to_the_same_weights(tiny_data, tmp_path, strategy, monkeypatch):
    project = tmp_path / "p.tsproj"
    make_project(tiny_data, strategy=strategy, epochs=EPOCHS, batch_size=4).save(project)
    checks = record_checks(monkeypatch)
    assert cli_main(["train", "--project", str(project), "--out", str(tmp_path / "straight")]) == 0
    monkeypatch.undo()
    rng = random.Random(f"{SEED}-{strategy}")
    kills = draw_kills(rng, timeline(checks), 2)
    context = f"strategy {strategy}, TS_KILL_SEED={SEED}, kills {kills}"

    run = tmp_path / "run"
    first = True
    for kill in kills:
        args = (["train", "--project", project, "--out", run] if first and not run.exists()
                else ["train", "--resume", run])
        code = run_cli(args, spec_for(kill, run))
        assert code == KILLED, f"{context}: the run did not reach kill point {kill} (exit {code})"
        first = False
        assert (run / "project.json").is_file(), context
        assert_no_partial_files(run, f"{context}, after kill {kill}")
    assert run_cli(["train", "--resume", run]) == 0, context
    assert not [p.name for p in run.iterdir() if config.is_temp_name(p.name)], context

    want, got = final_state(tmp_path / "straight"), final_state(run)
    for name, a, b in (("checkpoint", want[0], got[0]), ("best.safetensors", want[1], got[1])):
        assert a.keys() == b.keys(), context
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert not differ, f"{context}: {name} differs in {differ[:3]}"
    assert want[2] == got[2], f"{context}: loss history differs"
    assert json.loads((run / ckpt.RUN).read_text())["status"] == "finished"
