"""`transfer-studio train --nproc N ...`: the same run through torchrun on this machine, reported as one.

The command is PyTorch's own launcher, ``python -m torch.distributed.run --nproc-per-node N -m
transfer_studio train ... --json`` (what docs/distributed.md tells users to type themselves); this
module only names the run folder (so every process uses the same one), picks a free port, forwards
rank 0's progress, keeps torchrun's own logging out of the way and returns rank 0's JSON document,
the same one a one-process `train --json` prints. A failure ends with one line (rank 0's, or one
made here when rank 0 itself died); Ctrl-C asks every process to stop after the current epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from transfer_studio.cli.train import TrainingFailed
from transfer_studio.core import run_folder, runs
from transfer_studio.errors import ExitQuietly, UserError

# train's options a worker gets again (dest, flag); --nproc and --json are the launcher's own.
WORKER_FLAGS = (("project", "--project"), ("resume", "--resume"), ("model", "--model"),
                ("weights", "--weights"), ("strategy", "--strategy"), ("epochs", "--epochs"),
                ("batch_size", "--batch-size"), ("lr", "--lr"), ("augment", "--augment"),
                ("image_size", "--image-size"), ("val_split", "--val-split"), ("device", "--device"),
                ("seed", "--seed"), ("workers", "--workers"), ("out", "--out"))
# torchrun's own log lines (glog style: "W1202 15:25:24.107000 15455 torch/...") and its failure report
_TORCHRUN_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ ")
_FAILURE = re.compile(r"rank\s*:\s*(\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)")


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_dir_for(args: argparse.Namespace) -> Path:
    """The run folder every process will use: named here, as a one-process `train` would name it."""
    if args.resume:
        return Path(args.resume)
    if args.out:
        return Path(args.out)
    from transfer_studio.config import Project

    if args.project:
        model = args.model or Project.load(args.project).model.name
        return runs.new_run_dir(runs.runs_root(Path(args.project), Path("runs")), prefix=model)
    return runs.new_run_dir(runs.runs_root(None, Path("runs")), prefix=args.model or "")


def worker_args(args: argparse.Namespace, run_dir: Path | None) -> list[str]:
    argv = [args.data_dir] if args.data_dir else []
    for dest, flag in WORKER_FLAGS:
        value = getattr(args, dest, None)
        if dest == "out" and run_dir is not None and not args.resume:
            value = run_dir
        if value is not None:
            argv += [flag, str(value)]
    if getattr(args, "sync_bn", None):
        argv.append("--sync-bn")
    return argv


def torchrun_command(nproc: int, train_args: list[str], *, port: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc-per-node={nproc}",
            "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "transfer_studio", "train",
            *train_args, "--json"]


def _worker_pids(parent: int) -> list[int]:
    """The processes torchrun started (its children), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(int(entry.name))
    return pids


def _failure_text(report: str, run_dir: Path, nproc: int) -> str:
    failed = _FAILURE.findall(report)
    who = ", ".join(f"process {rank} (exit code {code}"
                    + (f", {signal.Signals(-int(code)).name})" if int(code) < 0 else ")")
                    for rank, code in failed) or "a process"
    done = run_folder.read_summary(run_dir) if run_dir.is_dir() else None
    epochs = int(done.get("epochs_completed") or 0) if isinstance(done, dict) else 0
    hint = (f"the checkpoint of epoch {epochs} is intact: resume with: transfer-studio train --resume "
            f"{run_dir} --nproc {nproc}" if epochs else "start the run again")
    return f"the distributed run failed: {who} ended; {hint}"


def launch(args: argparse.Namespace) -> dict[str, Any]:
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # training.distributed.requested, without torch
        raise UserError("--nproc starts the processes itself: leave it out when torchrun starts them")
    n = int(args.nproc)
    run_dir = run_dir_for(args)
    cmd = torchrun_command(n, worker_args(args, run_dir), port=free_port())
    env = dict(os.environ)
    # torchrun would set 1 with a warning; share the cores instead.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)  # Ctrl-C reaches the workers through us, once
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()

    def on_sigint(signum, frame):  # noqa: ANN001
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:  # every worker stops after the current epoch (they agree on it)
            print("\nstopping after the current epoch (Ctrl-C again to abort at once)...", file=sys.stderr,
                  flush=True)
            for pid in _worker_pids(proc.pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGINT)
        else:
            proc.terminate()

    interrupts = 0
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    report: list[str] = []
    shown_error = cancelled = False
    debug = bool(os.environ.get("TS_DEBUG"))
    try:
        in_report = False
        for raw in proc.stderr:
            line = raw.decode("utf-8", errors="replace")
            if not debug and (in_report or _TORCHRUN_LOG.match(line)
                              or line.startswith("Traceback (most recent call last)")):
                in_report = in_report or line.startswith("Traceback")
                report.append(line)
                continue
            if line.startswith("error: "):
                shown_error = True
            cancelled = cancelled or line.startswith("cancelled")
            sys.stderr.write(line)
            sys.stderr.flush()
        rc = proc.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    if rc == 0:
        try:
            return json.loads(b"".join(out).decode("utf-8"))
        except ValueError as exc:
            raise TrainingFailed("the distributed run finished but rank 0 printed no result") from exc
    text = "".join(report)
    if cancelled or (interrupts and not shown_error):
        raise ExitQuietly(130)
    if shown_error:  # rank 0 (or a failing process) said why, in one line
        codes = [int(c) for rank, c in _FAILURE.findall(text) if rank == "0"]
        raise ExitQuietly(codes[0] if codes and codes[0] > 0 else 1)
    raise TrainingFailed(_failure_text(text, run_dir, n))
