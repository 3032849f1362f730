"""The Train page's model: its settings in the project, the devices, and starting, pausing, stopping
and resuming runs; what a running run shows is its ``RunMonitor`` (``models/train_run.py``).

The training itself runs in ``trainer`` (``ui.train_worker.TrainController`` in the app: the same
``training.fit`` the CLI calls, on its own thread), whose signals this model follows. Run folders,
records and resume rules are ``core.runs``'s; devices are ``core.devices``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer_studio.config import clear_user_set, mark_user_set
from transfer_studio.core import run_folder, runs
from transfer_studio.errors import UserError
from transfer_studio.ui import runtime
from transfer_studio.ui.models import train_text as text
from transfer_studio.ui.models.base import Event, Host, JobRunner, OwnWrites
from transfer_studio.ui.models.train_run import Problem, RunMonitor

LAUNCH_KEY = "train_launch_settings"  # project.ui: run dir -> core.runs.launch_settings at its start
_TRANSIENT = ("Starting", "Stopping", "Pausing", "Resuming", "Preparing")  # cleared once idle
__all__ = ["LAUNCH_KEY", "Controls", "Problem", "TrainModel", "probe_devices"]


def probe_devices(warm_up: bool = True) -> Any:
    """This machine's devices (``core.devices.probe``; a background job: it imports torch).

    With ``warm_up`` it also imports the training engine (torchvision and all), so that pressing
    Start does not wait for it, and its one-off import cost (loading C extensions holds the GIL for
    a few hundred ms) falls when the page opens rather than while a run starts.
    """
    runtime.ensure_ml()
    if warm_up:
        for name in runtime.TRAINING_MODULES:
            runtime.import_module(name)
    return runtime.import_core("devices").probe()


@dataclass(frozen=True)
class Controls:
    start: bool
    pause: bool
    resume: bool
    stop: bool
    running: bool  # a run is starting or training: the settings are locked


class TrainModel:
    """See the module docstring. ``runs_root(project_path)`` says where new runs go."""

    def __init__(self, host: Host, trainer: Any, jobs: JobRunner, runs_root: Callable[[Path | None], Path]):
        self.host, self.trainer, self.jobs, self._runs_root = host, trainer, jobs, runs_root
        for name in ("settingsChanged", "devicesChanged", "controlsChanged", "problem", "problemCleared",
                     "jobWritten"):
            setattr(self, name, Event())
        self.run = RunMonitor(host, trainer)  # what the run under way shows
        self.devices: Any = None  # core.devices.MachineDevices, once probed
        self.device_job: Any = None
        self.pending: tuple[Any, Path, Any, bool] | None = None  # a start waiting for the warm-up
        self.stopping = False
        self.requested: str | None = None  # "pause" or "resume" asked for and not yet done
        self.resumable: list[tuple[str, str]] = []  # (label, run folder)
        self._own = OwnWrites(host)  # our own project edits: no reload of the settings
        trainer.finished.connect(self._on_thread_finished)
        self.run.changed.connect(self._on_run_changed)
        host.projectReplaced.connect(self._on_project_replaced)
        host.projectChanged.connect(self._on_project_changed)
        host.pathChanged.connect(lambda _path: self.refresh_resumable())

    # -- settings ----------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """What the settings box shows besides its fields."""
        p = self.host.project
        return {"model": text.model_text(p), "frozen": text.frozen_summary(p), "auto": text.auto_summary(p),
                "auto_visible": p.train.strategy == "auto"}

    def edit_settings(self, *, strategy: str, epochs: int, batch_size: int, lr: float, device: str) -> None:
        """The page's fields changed: values typed by the user are theirs (strategy Auto keeps them)."""
        t = self.host.project.train
        t.strategy = strategy
        for name, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", float(lr))):
            if getattr(t, name) != value:
                setattr(t, name, value)
                mark_user_set(t, name)
        t.device = device
        self._write("train")

    def edit_augment(self, preset: str) -> None:
        self.host.project.augment.preset = preset
        self.host.project.augment.params = {}
        mark_user_set(self.host.project.train, "augment")
        self._write("augment")

    def set_device(self, device: str) -> None:
        self.host.project.train.device = device
        self.host.mark_changed("train")  # the fields follow (settingsChanged with a reload)

    def give_back_to_auto(self) -> None:
        """"Let Auto decide these too": the values the user set are Auto's again."""
        if not self.host.project.train.user_set:
            return
        clear_user_set(self.host.project.train)
        self._write("train")
        self.host.status("Auto decides every training value again when training starts.")

    def _write(self, section: str) -> None:
        self._own.write(section)
        self.settingsChanged.emit(False)

    def _on_project_replaced(self) -> None:
        self.settingsChanged.emit(True)
        self.refresh_resumable()
        if not self.trainer.is_running():
            self.run.clear_display()
            self.problemCleared.emit()
        self.controlsChanged.emit()

    def _on_project_changed(self, section: str) -> None:
        if self._own.active:
            return
        if section in ("model", "surgery", "train", "augment"):
            self.settingsChanged.emit(True)
        if section == "runs":
            self.refresh_resumable()

    # -- devices -----------------------------------------------------------------------------------
    def probe(self) -> None:
        self.device_job = self.jobs(probe_devices, name="train-devices", pass_control=False,
                                    on_result=self.set_devices, on_error=self._on_device_error,
                                    on_finished=self._on_warm_up_finished)

    def set_devices(self, info: Any) -> None:
        self.devices = info
        self.devicesChanged.emit(info)
        if not self.trainer.is_running():
            self.run.deviceText.emit(f"Device: {runtime.import_core('devices').describe_machine(info)}")

    def _on_device_error(self, message: str, _detail: str) -> None:
        self.run.deviceText.emit("Device: unknown")
        self.run.log.emit(f"Could not detect devices: {message}")

    # -- several GPUs / a cluster -------------------------------------------------------------------
    def job_gpus(self) -> int:
        """GPUs per machine to suggest for a job folder: this machine's CUDA GPUs, else 2."""
        cuda = getattr(self.devices, "cuda", None) or []
        return len(cuda) if cuda else 2

    def write_job(self, folder: str, *, gpus_per_node: int, nodes: int) -> Any:
        """Write a job folder for torchrun / SLURM (``core.job_folder``) in the background: a data
        folder without a split yet is scanned. ``jobWritten(JobFolder)`` or ``problem`` follows."""
        from transfer_studio.core.job_folder import JobSpec, write_job_folder

        if not folder:
            self.problem.emit(Problem("Choose a folder for the job"))
            return None
        spec = JobSpec(gpus_per_node=int(gpus_per_node), nodes=int(nodes))

        def failed(message: str, detail: str) -> None:
            self.problem.emit(Problem(f"The job folder was not written: {message}", detail=detail))

        return self.jobs(write_job_folder, self.host.project.copy(), folder, spec, name="train-job-folder",
                         pass_control=False, on_result=self.jobWritten.emit, on_error=failed)  # scan: torch

    # -- actions -----------------------------------------------------------------------------------
    def busy(self) -> bool:
        return self.trainer.is_running() or self.pending is not None

    def controls(self) -> Controls:
        pending, paused, stopping = self.pending is not None, self.trainer.is_paused(), self.stopping
        running = self.trainer.is_running() or pending
        return Controls(start=not running,
                        pause=running and not pending and not paused and not stopping and self.requested != "pause",
                        resume=running and paused and not stopping and self.requested != "resume",
                        stop=running and not stopping, running=running)

    def start(self) -> None:
        """Start a new run with the project's settings."""
        if self.busy():
            return
        problem = self.check_ready()
        if problem is not None:
            self.problem.emit(problem)
            return
        project = self.host.project
        run_dir = runs.new_run_dir(self._runs_root(self.host.path))
        record = runs.new_record(run_dir, project)
        project.runs.append(record)
        self.run.clear_display()
        self.run.shown_run = str(run_dir)
        self.run.log.emit(f"New run in {run_dir}")
        self._remember_launch(str(run_dir))
        self._launch(record, run_dir, project.copy(), resume=False)

    def resume_run(self, run_dir: str | None, *, batch_size: int | None = None) -> None:
        """Continue a run from its checkpoint. It keeps its own settings (the engine reads them from the
        run folder), except the page's epochs, batch size and device changed since it started, and an
        explicit ``batch_size`` (e.g. halved after running out of memory)."""
        if self.busy() or not run_dir:
            return
        if runs.norm_path(run_dir) in self.host.runs_being_deleted:
            self.problem.emit(Problem(f"This run is being deleted on the Runs page: {run_dir}",
                                      "Wait until the delete ends, or cancel it there, then resume."))
            return
        if not run_folder.has_checkpoint(Path(run_dir)):
            self.problem.emit(Problem(
                f"This run has no checkpoint to resume from: {run_dir}",
                "A run can be resumed once it has completed at least one epoch. Start a new run instead."))
            self.refresh_resumable()
            return
        project = self.host.project
        record = runs.find_record(project, run_dir)
        if record is None:  # found on disk (e.g. the app was killed before the project was saved)
            info = run_folder.read_summary(run_dir) or {}
            record = runs.new_record(run_dir, project)
            record.model, record.strategy = str(info.get("model", project.model.name)), str(info.get("strategy", ""))
            project.runs.append(record)
        changes = runs.changed_since_launch(project.train, project.ui.get(LAUNCH_KEY, {}).get(run_dir))
        if batch_size is not None:
            changes["batch_size"] = batch_size
        try:
            snapshot = runs.resume_project(run_dir, changes)
        except UserError:  # let the engine report the broken run folder in its own words
            snapshot, changes = project.copy(), {}
        record.status = "running"
        # The charts already show this run (stopped or failed in this session): keep its per-batch
        # curves, which history.json does not hold; otherwise draw what the history has.
        same = self.run.shown_run is not None and runs.same_dir(self.run.shown_run, run_dir)
        self.run.clear_display(keep_batches=same)
        self.run.shown_run = str(run_dir)
        self.run.load_history(Path(run_dir), with_lr=not same)
        self.run.log.emit(f"Resuming {run_dir} from its last checkpoint" + (
            " with " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in changes.items())
            if changes else " with its own settings"))
        self._remember_launch(str(run_dir))
        self._launch(record, Path(run_dir), snapshot, resume=True)

    def _remember_launch(self, run_dir: str) -> None:
        """The page's resumable settings when a run starts: a later resume applies only changes."""
        self.host.project.ui.setdefault(LAUNCH_KEY, {})[run_dir] = runs.launch_settings(self.host.project.train)

    def _launch(self, record: Any, run_dir: Path, project: Any, resume: bool) -> None:
        self.run.record = record
        self.stopping = False
        self.problemCleared.emit()
        self.host.mark_changed("runs")
        self.run.clock.reset(project.train.epochs)  # set again from FitStart (a resumed run starts part-way)
        if self.device_job is not None and self.device_job.is_running():
            # The engine is still being imported in the background: importing it here as well
            # would block the GUI thread (and two threads importing one package can fail).
            self.pending = (record, run_dir, project, resume)
            self.run.set_status("Preparing the training engine\u2026")
            self._set_running()
            return
        self._start_worker(record, run_dir, project, resume)

    def _start_worker(self, record: Any, run_dir: Path, project: Any, resume: bool) -> None:
        try:
            self.trainer.start(project, run_dir, resume=resume)
        except Exception as exc:  # noqa: BLE001 - e.g. the engine is missing: say so in the page
            record.status = "failed"
            self.run.record = None
            self.host.mark_changed("runs")
            self.problem.emit(Problem(f"Training could not start: {exc}"))
            self._set_idle()
            return
        self.run.set_status("Starting\u2026 (building the network and loading the data)")
        self.host.status("Training started", 3000)
        self._set_running()

    def _on_warm_up_finished(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            self._start_worker(*pending)

    def pause(self) -> None:
        if self.trainer.is_running() and not self.trainer.is_paused():
            self.trainer.pause()
            self.requested = "pause"  # no second click while the pause is under way
            self.run.set_status("Pausing after the current batch\u2026")
            self.controlsChanged.emit()

    def resume(self) -> None:
        if self.trainer.is_paused():
            self.trainer.resume()
            self.requested = "resume"
            self.run.set_status("Resuming\u2026")
            self.controlsChanged.emit()

    def stop(self) -> None:
        if self.pending is not None:  # not started yet: forget it
            record = self.pending[0]
            self.pending, self.run.record = None, None
            if record in self.host.project.runs:
                self.host.project.runs.remove(record)
            self.host.mark_changed("runs")
            self.run.set_status("")
            self._set_idle()
            return
        if self.trainer.is_running():
            self.stopping = True
            self.trainer.stop()
            self.run.set_status("Stopping after the current batch\u2026")
            self.controlsChanged.emit()

    def shutdown(self) -> None:
        """Stop a running training and wait for its thread (the window is closing); the trainer
        delivers its last signals, so the run record says "stopped" before the project is saved."""
        if self.pending is not None:
            self.stop()
        if self.trainer.is_running():
            self.run.log.emit("Window closing: stopping training")
            self.stopping = True
            self.trainer.shutdown()

    def check_ready(self) -> Problem | None:
        """A problem that would make the run fail at once, with the button that fixes it."""
        root = self.host.project.data.root

        def go_data() -> None:
            self.host.navigateRequested.emit("data")

        if not root:
            return Problem("No dataset chosen yet.", "Choose a folder of images (one sub-folder per class) on the "
                           "Data page.", action_text="Open the Data page", action=go_data)
        if not Path(root).is_dir():
            return Problem(f"The dataset folder is missing: {root}", "Reconnect the drive that holds it or choose "
                           "the folder again on the Data page.", action_text="Open the Data page", action=go_data)
        device = self.host.project.train.device
        if self.devices is not None and device in ("cuda", "mps") and not self.devices.has(device):
            name = {"cuda": "CUDA GPU", "mps": "Apple GPU (MPS)"}[device]
            return Problem(f"No {name} was found on this computer.",
                           "Choose Auto or CPU as the device (Auto uses a GPU whenever there is one).",
                           action_text="Use Auto", action=lambda: self.set_device("auto"))
        return None

    def refresh_resumable(self) -> None:
        """The interrupted-runs list (``core.runs.resumable_runs``): runs the project knows + run folders
        found on disk."""
        running_dir = str(self.trainer.run_dir) if self.trainer.is_running() else None
        root = self._runs_root(self.host.path) if self.host.path is not None else None
        self.resumable = []
        for run in runs.resumable_runs(self.host.project.runs, root, exclude=running_dir):
            rec, name = run.record, Path(run.run_dir).name
            if rec is None:  # a killed app may have left runs the project never saved
                self.resumable.append((f"{name} \u2014 found on disk", run.run_dir))
            else:
                status = "interrupted" if rec.status == "running" else rec.status
                self.resumable.append((f"{name} \u2014 {status}, {rec.epochs_completed} epoch(s)", rec.run_dir))
        self.controlsChanged.emit()

    def _set_running(self) -> None:
        self.host.set_training_active(True)
        self.controlsChanged.emit()

    def _set_idle(self) -> None:
        self.host.set_training_active(False)
        self.run.eta.emit(f"ETA {text.DASH}")
        if self.run.status.startswith(_TRANSIENT):
            self.run.set_status("")
        self.controlsChanged.emit()

    def _on_run_changed(self) -> None:  # paused or resumed
        self.requested = None
        self.controlsChanged.emit()

    def _on_thread_finished(self) -> None:
        run_dir = self.run.record.run_dir if self.run.record is not None else None
        self.stopping, self.run.record, self.requested = False, None, None
        self.refresh_resumable()
        self._set_idle()
        failure, self.run.failure = self.run.failure, None
        if failure is None:
            return
        action_text, action = None, None
        if run_dir and run_folder.has_checkpoint(Path(run_dir)):
            action_text, action = "Resume from checkpoint", lambda d=run_dir: self.resume_run(d)
            if "out of memory" in failure.message.lower() and self.run.fit_start is not None \
                    and self.run.fit_start.batch_size > 1:
                smaller = self.run.fit_start.batch_size // 2
                action_text = f"Resume with batch size {smaller}"
                action = lambda d=run_dir, b=smaller: self.resume_run(d, batch_size=b)  # noqa: E731
        self.problem.emit(Problem(failure.message, failure.suggestion, failure.detail, action_text, action))
