"""For page-model tests without Qt: a job runner without threads and a fake training thread."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer_studio.config import Project
from transfer_studio.errors import Cancelled, UserError
from transfer_studio.ui.models.base import Event


@dataclass
class Job:
    """A job the test runs when it chooses (``Jobs.run``), or at once with ``Jobs(sync=True)``."""

    fn: Any
    args: tuple
    kwargs: dict
    callbacks: dict
    name: str
    cancelled: bool = False
    done: bool = False

    def cancel(self) -> None:
        self.cancelled = True

    def is_running(self) -> bool:
        return not self.done


@dataclass
class Jobs:
    """``ui.worker.run_task``'s signature, without threads."""

    sync: bool = True
    started: list[Job] = field(default_factory=list)

    def __call__(self, fn, *args, name="task", pass_control=True, needs_torch=True, progress_interval=0.05,
                 on_result=None, on_error=None, on_progress=None, on_cancelled=None, on_finished=None, **kwargs):
        job = Job(fn, args, dict(kwargs), {"result": on_result, "error": on_error, "progress": on_progress,
                                           "cancelled": on_cancelled, "finished": on_finished}, name)
        if pass_control:
            job.kwargs.setdefault("progress", lambda d, t: job.callbacks["progress"] and job.callbacks["progress"](d, t))
            job.kwargs.setdefault("cancel", lambda: job.cancelled)
        self.started.append(job)
        if self.sync:
            self.run(job)
        return job

    def run(self, job: Job | None = None) -> Job:
        job = job or next(j for j in self.started if not j.done)
        cb = job.callbacks

        def call(key: str, *args: Any) -> None:
            if cb[key] is not None:
                cb[key](*args)

        try:
            value = job.fn(*job.args, **job.kwargs)
            call("cancelled") if job.cancelled else call("result", value)
        except Cancelled:
            call("cancelled")
        except UserError as exc:
            call("error", str(exc), "")
        except Exception as exc:  # noqa: BLE001 - as the task runner does
            call("error", f"{type(exc).__name__}: {exc}", "traceback")
        finally:
            job.done = True
            call("finished")
        return job

    def named(self, name: str) -> list[Job]:
        return [j for j in self.started if j.name == name]


def record(model: Any, names: Iterable[str]) -> dict[str, list]:
    """What ``model`` announces on its events ``names``: name -> [the argument (the tuple of arguments
    when there are several or none), one per emit]."""
    seen: dict[str, list] = defaultdict(list)
    for name in names:
        getattr(model, name).connect(lambda *args, n=name: seen[n].append(args[0] if len(args) == 1 else args))
    return seen


class FakeTrainer:
    """``ui.train_worker.TrainController``'s interface; the test plays the engine's signals."""

    SIGNALS = ("fitStarted", "batches", "epochEnded", "phaseChanged", "checkpointWritten", "paused", "resumed",
               "engineError", "log", "outcome", "finished")

    def __init__(self) -> None:
        for name in self.SIGNALS:
            setattr(self, name, Event())
        self.running = False
        self.paused_now = False
        self.run_dir: Path | None = None
        self.started: list[tuple[Project, Path, bool]] = []
        self.calls: list[str] = []

    def start(self, project: Project, run_dir: Path, *, resume: bool = False) -> None:
        self.started.append((project, Path(run_dir), resume))
        self.running, self.run_dir = True, Path(run_dir)

    def is_running(self) -> bool:
        return self.running

    def is_paused(self) -> bool:
        return self.running and self.paused_now

    def pause(self) -> None:
        self.calls.append("pause")

    def resume(self) -> None:
        self.calls.append("resume")

    def stop(self) -> None:
        self.calls.append("stop")

    def shutdown(self, msecs: int = 60000) -> bool:
        self.calls.append("shutdown")
        return True

    def end(self, outcome: Any) -> None:
        """The run ends: its outcome, then the thread's end."""
        self.outcome.emit(outcome)
        self.running = False
        self.finished.emit()
