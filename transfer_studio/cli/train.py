"""`transfer-studio train`: fine-tune a pretrained network on an image folder or a saved project.

Ctrl-C asks the engine to stop after the current batch (a second Ctrl-C aborts at once); the run
folder keeps the last completed epoch's checkpoint and `train --resume RUN_DIR` continues it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from transfer_studio.config import EXPLICIT_FIELDS, mark_user_set
from transfer_studio.core import runs
from transfer_studio.errors import Cancelled, ExitQuietly, UserError

NAME = "train"
HELP = ("Fine-tune a pretrained network on a folder of images (one sub-folder per class) or a saved "
        "project; Ctrl-C stops after the current batch and --resume continues.")

# Settings a resumed run may change (the rest is the run's own project.json).
_RESUME_FLAGS = ("epochs", "batch_size", "device", "workers")
_NEW_RUN_FLAGS = ("model", "weights", "strategy", "lr", "augment", "image_size", "val_split", "seed", "out")


class TrainingFailed(RuntimeError):
    """The run ended in a failure that is not a bad argument (out of memory, a full disk)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.2, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", metavar="DATA_DIR", nargs="?", default=None,
                        help="folder of images, one sub-folder per class (or with --project: overrides "
                             "the project's data folder)")
    parser.add_argument("--project", metavar="FILE", help="train a saved project file; the run is recorded "
                        "in its runs list")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or interrupted run exactly "
                        "where its last completed epoch left off")
    parser.add_argument("--model", metavar="NAME", help="catalog model name (see `transfer-studio models`)")
    parser.add_argument("--weights", metavar="DEFAULT|none|PATH",
                        help="pretrained weights: DEFAULT (cache or bundled), none (random init) or a file")
    parser.add_argument("--strategy", choices=("auto", "head", "partial", "full"),
                        help="what trains: auto (the advisor's choice, default), head only, partial "
                             "(head, then the last blocks), or full")
    parser.add_argument("--epochs", type=_positive_int, metavar="N",
                        help="training epochs (default: the advisor's with --strategy auto, else the project's)")
    parser.add_argument("--batch-size", type=_positive_int, metavar="N",
                        help="images per step (default: the advisor's with --strategy auto, else the project's)")
    parser.add_argument("--lr", type=_positive_float, metavar="X", help="learning rate of the new head")
    parser.add_argument("--augment", choices=("none", "light", "medium", "strong"),
                        help="augmentation preset (default: the advisor's with --strategy auto, else the "
                             "project's)")
    parser.add_argument("--image-size", type=_positive_int, metavar="N",
                        help="input size in pixels (default: the model's own)")
    parser.add_argument("--val-split", type=_fraction, metavar="F", help="validation share (default 0.2)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"),
                        help="where training runs (default: auto = this machine's default device, see "
                             "`transfer-studio settings`, else CUDA, then MPS, then CPU)")
    parser.add_argument("--seed", type=int, metavar="N", help="seed for the split, order and augmentation")
    parser.add_argument("--workers", type=int, metavar="N", help="data-loading worker processes "
                        "(default: this machine's default, else chosen for the device and core count)")
    parser.add_argument("--out", metavar="RUN_DIR", help="run folder to create (default: MODEL-TIME in "
                        "this machine's runs folder if set, else in runs/ next to the project file with "
                        "--project, else in ./runs)")
    parser.add_argument("--nproc", type=_positive_int, metavar="N",
                        help="train with N processes on this machine through torchrun and "
                             "DistributedDataParallel (one per GPU; gloo on the CPU); --batch-size is per "
                             "process. Reports as one run (see docs/distributed.md)")
    parser.add_argument("--sync-bn", action="store_true", default=None,
                        help="with several processes on CUDA GPUs: synchronise the BatchNorm statistics "
                             "of trainable BatchNorm layers across them (SyncBatchNorm)")


def _resume_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The resumable settings given on the command line (core.runs applies them to the run's snapshot)."""
    overrides = {name: getattr(args, name) for name in ("epochs", "batch_size", "device")
                 if getattr(args, name) is not None}
    if getattr(args, "sync_bn", None):
        overrides["sync_batchnorm"] = True
    if args.workers is not None:
        if args.workers < 0:
            raise UserError("--workers must be 0 or more")
        overrides["num_workers"] = args.workers
    return overrides


def _given(args: argparse.Namespace, names) -> list[str]:
    return [n for n in names if getattr(args, n, None) is not None]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _apply_flags(project, args: argparse.Namespace) -> None:
    t = project.train
    if args.weights is not None:
        project.model.weights = args.weights
    if args.strategy is not None:
        t.strategy = args.strategy
    for name in ("epochs", "batch_size", "lr", "image_size", "device"):
        if getattr(args, name) is not None:
            setattr(t, name, getattr(args, name))
            if name in EXPLICIT_FIELDS:
                mark_user_set(t, name)  # a flag is an explicit choice: the advisor keeps it
    if args.workers is not None:
        if args.workers < 0:
            raise UserError("--workers must be 0 or more")
        t.num_workers = args.workers
    if args.augment is not None:
        project.augment.preset = args.augment
        project.augment.params = {}
        mark_user_set(t, "augment")
    if args.val_split is not None:
        project.data.val_split = args.val_split
    if args.seed is not None:
        t.seed = args.seed
        project.data.seed = args.seed
    if getattr(args, "sync_bn", None):
        t.sync_batchnorm = True


def _resolve_auto(project, args: argparse.Namespace) -> None:
    """The advisor's suggestion, measured on the training images (training.engine.resolve_auto: the
    values set explicitly, by flags or in the saved project, win)."""
    from transfer_studio.core import dataset
    from transfer_studio.training.engine import resolve_auto

    report = dataset.scan(project.data.root)
    show = not getattr(args, "json", False) and sys.stderr.isatty()

    def progress(text: str, fraction: float) -> None:
        if show:
            print(f"\radvisor: {text} ({fraction:.0%})\x1b[K", end="", file=sys.stderr, flush=True)

    s, note = resolve_auto(project, report, progress=progress)
    if show:
        print("\r\x1b[K", end="", file=sys.stderr)
    print(f"advisor: {note.removeprefix('auto strategy: ')}", file=sys.stderr)
    print(f"advisor: expected time {s.estimate_range_s[0]:.0f}-{s.estimate_range_s[1]:.0f} s"
          if s.estimate_range_s else "", file=sys.stderr)


def _build(args: argparse.Namespace):
    """(project, run_dir, resume, project_file) from the arguments."""
    from transfer_studio.config import ModelSpec, Project

    modes = [m for m in ("resume", "project") if getattr(args, m)]
    if len(modes) > 1:
        raise UserError("--resume and --project cannot be combined: --resume continues a run with its own "
                        "project snapshot")
    if args.resume:
        extra = _given(args, _NEW_RUN_FLAGS) + (["data_dir"] if args.data_dir else [])
        if extra:
            raise UserError(f"{', '.join(_flag(n) if n != 'data_dir' else 'DATA_DIR' for n in extra)} cannot "
                            "change a resumed run; only --epochs, --batch-size, --device, --workers, "
                            "--sync-bn and --nproc can")
        run_dir = Path(args.resume)
        return runs.resume_project(run_dir, _resume_overrides(args)), run_dir, True, None
    if args.project:
        project_file = Path(args.project)
        project = Project.load(project_file)
        if args.model is not None:
            project.model = ModelSpec(name=args.model, weights=project.model.weights)
        if args.data_dir:
            project.data.root = args.data_dir
            project.data.split = None  # a different folder needs its own split
            project.data.classes = []
        if not project.data.root:
            raise UserError(f"the project {project_file} has no data folder: pass DATA_DIR")
        root = Path(project.data.root).expanduser()
        if not root.is_absolute() and not root.exists() and (project_file.parent / root).exists():
            project.data.root = str(project_file.parent / root)  # relative to the project file
        _apply_flags(project, args)
        out = Path(args.out) if args.out else None
        if out is None:
            out = runs.new_run_dir(runs.runs_root(project_file, Path("runs")), prefix=project.model.name)
        if project.train.strategy == "auto":
            _resolve_auto(project, args)
        return project, out, False, project_file
    if not args.data_dir:
        raise UserError("give DATA_DIR (a folder with one sub-folder per class), --project FILE or "
                        "--resume RUN_DIR")
    if not args.model:
        raise UserError("--model is required with DATA_DIR (see `transfer-studio models` for names)")
    project = Project(name=Path(args.data_dir).resolve().name or "project",
                      model=ModelSpec(name=args.model, weights="DEFAULT"))
    project.data.root = args.data_dir
    project.train.strategy = "auto"
    _apply_flags(project, args)
    if project.train.strategy == "auto":
        _resolve_auto(project, args)
    if args.out:
        return project, Path(args.out), False, None
    return project, runs.new_run_dir(runs.runs_root(None, Path("runs")), prefix=project.model.name), False, None


def _record(project_file: Path, result) -> None:
    """Add the run to the project's runs list (and its split, if it had none); save atomically."""
    from transfer_studio.config import Project

    project = Project.load(project_file)
    record = runs.record_of(result)
    project.runs = [r for r in project.runs if r.run_dir != record.run_dir]
    project.runs.append(record)
    if not project.data.split:
        snap = runs.load_snapshot(result.run_dir)
        project.data.split, project.data.classes = snap.data.split, snap.data.classes
    project.save(project_file)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "nproc", None) and args.nproc > 1:  # before torch is imported: the launcher needs none
        from transfer_studio.cli import train_launch

        return train_launch.launch(args)
    from transfer_studio.training import Control, ProgressPrinter, distributed, fit

    if distributed.requested():  # one of several processes torchrun started
        return _run_distributed(args)
    project, run_dir, resume, project_file = _build(args)
    control = Control()

    def on_sigint(signum, frame):  # noqa: ANN001
        if control.stop_requested:
            raise KeyboardInterrupt
        control.request_stop()
        print("\nstopping after the current batch (Ctrl-C again to abort at once)...", file=sys.stderr,
              flush=True)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    try:
        result = fit(project, [ProgressPrinter(sys.stderr)], control, run_dir=run_dir, resume=resume)
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    if project_file is not None:
        _record(project_file, result)
    return _outcome(result)


def _outcome(result) -> dict[str, Any]:
    """The JSON document of a finished run; a stopped or failed one raises."""
    if result.status == "stopped":
        raise Cancelled(f"training stopped after {result.epochs_completed} completed epoch(s); resume with: "
                        f"transfer-studio train --resume {result.run_dir}")
    if result.status == "failed":
        raise ExitQuietly(1)  # the progress printer showed the engine's one line (its Error event)
    return {
        "run_dir": result.run_dir,
        "model": result.model,
        "strategy": result.strategy,
        "status": result.status,
        "epochs_completed": result.epochs_completed,
        "best_epoch": result.best_epoch,
        "val_accuracy": result.val_accuracy,
        "val_loss": result.val_loss,
        "history": [{k: h[k] for k in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                       "lr", "seconds")} for h in result.history],
        "device": result.device,
        "batch_size": result.batch_size,
        "duration_s": result.duration_s,
        "stopped_early": result.stopped_early,
        "cached_features": result.cached_features,
        "notes": result.notes,
    }


def _run_distributed(args: argparse.Namespace) -> dict[str, Any]:
    """One of several processes (torchrun): rank 0 builds the run (the advisor included) and tells
    the others; rank 0 alone prints, records the run in the project and returns its document."""
    import json

    from transfer_studio.config import Project
    from transfer_studio.training import Control, ProgressPrinter, distributed, fit

    ctx = distributed.init()
    payload: dict[str, Any] | None = None
    if ctx.is_main:
        try:
            project, run_dir, resume, project_file = _build(args)
            payload = {"project": project.to_json(), "run_dir": str(run_dir), "resume": resume,
                       "project_file": str(project_file) if project_file else None}
        except UserError as exc:
            payload = {"error": str(exc)}
    payload = distributed.broadcast_json(payload, ctx)
    if "error" in payload:
        if ctx.is_main:
            raise UserError(payload["error"])
        raise ExitQuietly(2)  # rank 0 says why
    project = Project.from_dict(json.loads(payload["project"]))
    control = Control()

    def on_sigint(signum, frame):  # noqa: ANN001
        if control.stop_requested:
            raise KeyboardInterrupt
        control.request_stop()
        if ctx.is_main:
            print("\nstopping after the current epoch (all processes; Ctrl-C again to abort at once)...",
                  file=sys.stderr, flush=True)

    def on_sigterm(signum, frame):  # noqa: ANN001 - torchrun or a scheduler ends the job: stop cleanly
        control.request_stop()

    in_main = threading.current_thread() is threading.main_thread()
    previous = (signal.signal(signal.SIGINT, on_sigint), signal.signal(signal.SIGTERM, on_sigterm)) \
        if in_main else None
    try:
        result = fit(project, [ProgressPrinter(sys.stderr)] if ctx.is_main else [], control,
                     run_dir=payload["run_dir"], resume=payload["resume"])
    except UserError:
        if ctx.is_main:
            raise
        raise ExitQuietly(2) from None
    finally:
        # SIGTERM keeps its handler: torchrun ends the others when one process leaves, and rank 0's
        # last files must still land.
        if previous is not None:
            signal.signal(signal.SIGINT, previous[0])
    if result.status != "failed":
        distributed.shutdown()
    if not ctx.is_main:
        if result.status == "failed" and not result.message.startswith(distributed.PEER_FAILED):
            raise TrainingFailed(f"process {ctx.rank}: {result.message}")
        raise ExitQuietly({"finished": 0, "stopped": 130}.get(result.status, 1))
    if payload["project_file"]:
        _record(Path(payload["project_file"]), result)
    return _outcome(result)


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [f"Trained {result['model']} ({result['strategy']} strategy) for {result['epochs_completed']} "
             f"epoch(s) on {result['device']} in {result['duration_s']:.1f}s"
             + (" (stopped early: no validation improvement)" if result["stopped_early"] else "")]
    if result["best_epoch"] is not None and result["val_accuracy"] is not None:
        lines.append(f"best epoch {result['best_epoch']}: val_accuracy {result['val_accuracy']:.4f}, "
                     f"val_loss {result['val_loss']:.4f}")
    lines.append(f"run saved in {result['run_dir']}")
    lines.append(f"next: transfer-studio evaluate {result['run_dir']}   |   "
                 f"transfer-studio export {result['run_dir']} --out BUNDLE_DIR")
    return "\n".join(lines)
