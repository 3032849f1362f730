"""Run ``transfer-studio`` and SIGKILL it at a chosen point (a test harness).

    python -m helpers.killer KILL -- ARGS...      (from tests/; a fresh interpreter)
    run_cli(ARGS, KILL, cwd)                      (a child forked from a server that has torch
                                                   imported already: the same CLI code, seconds
                                                   faster per process)

KILL is ``none``, ``check:E:N`` (at the N-th time epoch E polls for a stop request: before each
training batch, each validation batch and each batch of feature extraction), or ``write:NAME:K:F``
(while writing the K-th file called NAME: F of its bytes reach the temp file, then the process dies
before the rename). The process kills itself with SIGKILL: no cleanup, no atexit, no flushing, as
the OOM killer or a power-off button would. One intra-op thread, so runs compare bit for bit.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def record_checks(monkeypatch) -> list[tuple[int, int]]:
    """(epoch, step) of every stop check of the runs in this process (a test records a timeline)."""
    from transfer_studio.training import loop

    calls: list[tuple[int, int]] = []
    real = loop.Trainer._check_control

    def check(self, e, s):
        calls.append((e, s))
        return real(self, e, s)

    monkeypatch.setattr(loop.Trainer, "_check_control", check)
    return calls


def _die() -> None:
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(spec: str) -> None:
    kind, *args = spec.split(":")
    if kind == "none":
        return
    if kind == "check":
        from transfer_studio.training import loop

        epoch, nth = int(args[0]), int(args[1])
        real = loop.Trainer._check_control
        seen = {"n": 0}

        def check(self, e, s):
            if e == epoch:
                seen["n"] += 1
                if seen["n"] == nth:
                    print(f"killer: SIGKILL at stop check {nth} of epoch {e} (step {s})", file=sys.stderr)
                    _die()
            return real(self, e, s)

        loop.Trainer._check_control = check
        return
    if kind == "write":
        from transfer_studio import config

        name, nth, fraction = args[0], int(args[1]), float(args[2])
        real_write = config.atomic_write_bytes
        seen = {"n": 0}

        def write(path, data):
            if Path(path).name == name:
                seen["n"] += 1
                if seen["n"] == nth:
                    fd, _tmp = config.create_temp_file(Path(path))
                    os.write(fd, data[: int(len(data) * fraction)])
                    os.fsync(fd)
                    print(f"killer: SIGKILL while writing {name} (#{nth}, {fraction:.0%} written)",
                          file=sys.stderr)
                    _die()
            return real_write(path, data)

        config.atomic_write_bytes = write
        return
    raise SystemExit(f"unknown kill spec {spec!r}")


def _like_a_fresh_process(env: dict[str, str] | None) -> None:
    """What a process started from the caller now would have. A child of the fork server inherits
    the server's environment (from when it started, maybe tests ago: TS_DATA_DIR or TORCH_HOME of
    another test) and "forkserver" as its default start method; here it gets the caller's current
    environment and the platform's default start method (DataLoader workers use it)."""
    import multiprocessing as mp

    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    mp.set_start_method(None, force=True)


def child(spec: str, args: list[str], cwd: str | None = None, env: dict[str, str] | None = None) -> int:
    """Arm the kill, then run the CLI; exits the process with the CLI's exit code."""
    import torch

    _like_a_fresh_process(env)

    if cwd:
        os.chdir(cwd)
    torch.set_num_threads(1)
    _arm(spec)
    from transfer_studio.cli import main as cli_main

    code = cli_main(list(args))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # like a real process exit, without running the forking server's cleanup


# Modules the fork server imports once, so a child starts training in a fraction of a second.
PRELOAD = ["torch", "torchvision", "transfer_studio.cli", "transfer_studio.cli.train",
           "transfer_studio.cli.export", "transfer_studio.training.fit", "transfer_studio.core.network",
           "transfer_studio.core.augment", "transfer_studio.core.export", "helpers.killer"]


def run_cli(args: list[str], kill: str = "none", cwd: str | os.PathLike[str] | None = None,
            timeout: float = 300.0) -> int:
    """Run the CLI in a fresh process forked from a preloaded server; its exit code (-9: killed)."""
    import multiprocessing as mp

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    proc = ctx.Process(target=child, args=(kill, [str(a) for a in args], str(cwd) if cwd else None,
                                           dict(os.environ)))
    proc.start()
    proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        raise TimeoutError(f"transfer-studio {' '.join(map(str, args))} did not end in {timeout:.0f}s")
    return proc.exitcode


def _call(target: str, args: list[str], env: dict[str, str] | None = None) -> None:
    import importlib

    import torch

    _like_a_fresh_process(env)
    torch.set_num_threads(1)
    module, _, name = target.rpartition(".")
    code = getattr(importlib.import_module(module), name)(*args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code or 0))


def run_function(target: str, args: list[str], timeout: float = 600.0) -> int:
    """Call ``module.function(*args)`` in a fresh process forked from the preloaded server; its
    return value is the exit code."""
    import multiprocessing as mp

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    proc = ctx.Process(target=_call, args=(target, [str(a) for a in args], dict(os.environ)))
    proc.start()
    proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        raise TimeoutError(f"{target} did not end in {timeout:.0f}s")
    return proc.exitcode


def main() -> int:
    spec, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: python -m helpers.killer KILL -- ARGS..."
    return child(spec, args, env=None)


if __name__ == "__main__":
    sys.exit(main())
