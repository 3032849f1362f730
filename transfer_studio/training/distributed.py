"""Scale-out: the engine under torchrun, with DistributedDataParallel (DDP).

``fit`` hands over to :func:`fit` here when a launcher started several processes (torchrun sets
``WORLD_SIZE``); a single process never imports this module. What differs from one process:

- process group: NCCL for CUDA tensors and gloo for CPU ones (``cpu:gloo,cuda:nccl`` where CUDA is
  present, plain gloo otherwise); one process per GPU (``LOCAL_RANK`` picks it).
- setup: rank 0 resolves the project first (strategy Auto, the split, the run folder; it also sets
  a damaged checkpoint aside), then the other ranks build the same network from its snapshot.
- data: every epoch's order is the one-process order for (seed, epoch) (``set_epoch``), sharded as
  ``torch.utils.data.DistributedSampler`` does (padded by wrapping around to a multiple of the world
  size, rank r takes every world-th item from r); validation is sharded without padding so its
  metrics are exact. ``batch_size`` is per process: the global batch is world x batch_size.
- metrics: training loss/accuracy and validation sums are all-reduced, so every rank holds the same
  numbers, and early stopping, best-epoch choice and divergence checks agree everywhere.
- the head phase on cached features (an L-BFGS fit, ``head_fit``) runs on rank 0, which computes the
  features (through the shared feature store); the head's weights and metrics are broadcast.
- files: rank 0 alone writes the run folder and prints; the other ranks write nothing.
- stop requests (Ctrl-C, SIGTERM from a scheduler) are agreed at the end of each epoch; a process
  that fails makes the others fail their next collective, and rank 0 ends the run with one message
  and the last completed epoch's checkpoint (resumable with any number of processes).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transfer_studio.config import Project
from transfer_studio.errors import UserError
from transfer_studio.training import data as tdata
from transfer_studio.training import events as ev
from transfer_studio.training import finetune
from transfer_studio.training.callbacks import Callback, Dispatcher
from transfer_studio.training.checkpoint import run_lock
from transfer_studio.training.control import Control
from transfer_studio.training.engine import RunSetup, prepare
from transfer_studio.training.loop import Trainer, _Failed, _Stop  # the loop's own outcomes

ENV_TIMEOUT = "TRANSFER_STUDIO_DIST_TIMEOUT"  # seconds a collective may wait for the other processes
DEFAULT_TIMEOUT_S = 3600  # rank 0 may compute the head phase's features for a long time meanwhile
# Diagnostics: a folder where every rank appends its per-epoch metrics (rank{R}.jsonl). Outside the
# run folder, which rank 0 alone writes; the tests use it to see that the ranks agree.
ENV_RANK_REPORT = "TRANSFER_STUDIO_RANK_REPORT"
# Fault injection for tests: "rank=R,epoch=E" makes rank R kill itself (SIGKILL) as epoch E starts;
# with ",action=stop" it asks to stop instead (as Ctrl-C would, on that process alone).
ENV_FAULT = "TRANSFER_STUDIO_FAULT"
PEER_FAILED = "another process of the distributed run ended"  # rank 0's message starts with this


def requested() -> bool:
    """True when a launcher (torchrun) started this process as one of several."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


@dataclass(frozen=True)
class Context:
    rank: int
    world: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_context: Context | None = None


def timeout_s() -> float:
    try:
        return float(os.environ.get(ENV_TIMEOUT, DEFAULT_TIMEOUT_S))
    except ValueError:
        return float(DEFAULT_TIMEOUT_S)


def init() -> Context:
    """Join the process group torchrun's environment describes (once per process)."""
    global _context
    if _context is not None:
        return _context
    import torch.distributed as dist

    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError) as exc:
        raise UserError("the distributed environment is incomplete (RANK, WORLD_SIZE): start the "
                        "processes with torchrun or `transfer-studio train --nproc N`") from exc
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())  # one process per GPU
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s()))
    _context = Context(rank, world, local_rank, backend)
    return _context


def shutdown() -> None:
    """Leave the process group (at the end of a torchrun worker)."""
    global _context
    import torch.distributed as dist

    if dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    _context = None


# -- collectives on CPU tensors (gloo), whatever the training device ------------------------------
def all_sum(values: list[float]) -> list[float]:
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def any_true(flag: bool) -> bool:
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_floats(values: list[float], src: int = 0) -> list[float]:
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.broadcast(t, src)
    return t.tolist()


def broadcast_json(obj: Any, ctx: Context) -> Any:
    """Rank 0's ``obj`` on every rank, as JSON bytes (no pickle between processes)."""
    import torch.distributed as dist

    data = json.dumps(obj).encode() if ctx.is_main else b""
    size = torch.tensor([len(data)], dtype=torch.int64)
    dist.broadcast(size, 0)
    buf = (torch.frombuffer(bytearray(data), dtype=torch.uint8) if ctx.is_main
           else torch.empty(int(size.item()), dtype=torch.uint8))
    dist.broadcast(buf, 0)
    return json.loads(bytes(buf.numpy()).decode())


def is_peer_failure(exc: BaseException) -> bool:
    """An error from a collective: another process died, hung or broke the connection."""
    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        k in text for k in ("gloo", "nccl", "connection closed", "connection reset", "broken pipe",
                            "processgroup", "c10d", "timed out", "peer"))


# -- SyncBatchNorm ------------------------------------------------------------------------------
def check_sync_batchnorm(project: Project, device: torch.device) -> None:
    if project.train.sync_batchnorm and device.type != "cuda":
        raise UserError("SyncBatchNorm needs CUDA GPUs (NCCL): on the CPU the processes' BatchNorm "
                        "statistics cannot be synchronised; train without --sync-bn "
                        "(train.sync_batchnorm false)")


def convert_sync_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """Every BatchNorm layer as a SyncBatchNorm with the same weights and statistics; returns the
    model and how many layers changed. Frozen layers stay in eval mode and never synchronise."""
    count = sum(1 for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                and not isinstance(m, nn.SyncBatchNorm))
    return nn.SyncBatchNorm.convert_sync_batchnorm(model), count


# -- sharded batches ----------------------------------------------------------------------------
class ShardedBatchSampler(tdata.EpochBatchSampler):
    """This rank's share of the one-process order for (seed, epoch), sharded like DistributedSampler:
    ``pad`` wraps around to a multiple of ``world`` (every rank gets as many batches: DDP needs it);
    without it (validation) each sample is seen exactly once."""

    def __init__(self, n: int, batch_size: int, seed: int, *, rank: int, world: int, pad: bool,
                 **kw: Any):
        super().__init__(n, batch_size, seed, **kw)
        self.total, self.rank, self.world, self.pad = int(n), rank, world, pad
        self.n = math.ceil(self.total / world) if pad else len(range(rank, self.total, world))

    def order(self) -> tuple[torch.Tensor, torch.Tensor]:
        share, self.n = self.n, self.total
        try:
            idx, seeds = super().order()
        finally:
            self.n = share
        if self.pad and self.total:
            extra = share * self.world - self.total
            if extra:
                reps = math.ceil(extra / self.total)
                idx = torch.cat([idx, idx.repeat(reps)[:extra]])
                seeds = torch.cat([seeds, seeds.repeat(reps)[:extra]])
        return idx[self.rank::self.world], seeds[self.rank::self.world]


# -- the trainer --------------------------------------------------------------------------------
_ELSEWHERE = object()  # stands for the feature cache rank 0 holds


class DistributedTrainer(Trainer):
    def __init__(self, setup: RunSetup, dispatch: Dispatcher, control: Control, ctx: Context):
        self.ctx = ctx
        self._ddp: nn.Module | None = None
        self._ddp_phase: int | None = None
        super().__init__(setup, dispatch, control)
        self.notes.append(f"distributed: {ctx.world} processes ({ctx.backend.split(',')[-1].split(':')[-1]}), "
                          f"batch size {self.batch_size} per process ({ctx.world * self.batch_size} in all)")

    # loaders: this rank's shard
    def _build_loaders(self) -> None:
        c = self.ctx
        self.train_sampler = ShardedBatchSampler(self.n_train, self.batch_size, self.seed, rank=c.rank,
                                                 world=c.world, pad=True, weights=self.sample_weights)
        self.train_loader = tdata.make_loader(self.train_ds, self.train_sampler, self.s.loader)
        self.val_loader = None
        if self.val_ds is not None:
            self.val_sampler = ShardedBatchSampler(self.n_val, self.batch_size, self.seed, rank=c.rank,
                                                   world=c.world, pad=False, shuffle=False)
            self.val_loader = tdata.make_loader(self.val_ds, self.val_sampler, self.s.loader)

    def _check_control(self, epoch: int, step: int) -> None:
        # Stop requests are agreed at the end of each epoch (_end_epoch): a process leaving on its
        # own mid-epoch would leave the others waiting in a collective. No pause (the CLI has none).
        if self._pending_epoch is not None and not self._writer.busy:
            self._confirm_writes()

    def _wrapped(self) -> nn.Module:
        """The model inside DDP for this phase's trainable parameters (DDP registers them when it is
        built, so a phase that unfreezes blocks gets a new wrapper; building one syncs rank 0's weights)."""
        if self._ddp is None or self._ddp_phase != self.phase:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self._ddp = None  # the old wrapper's gradient hooks go with it
            ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
                if self.device.type == "cuda" else None
            self._ddp = DDP(self.model, device_ids=ids)
            self._ddp_phase = self.phase
        return self._ddp

    def _fault(self, e: int) -> None:
        spec = os.environ.get(ENV_FAULT)
        if spec:
            want = dict(part.split("=", 1) for part in spec.split(",") if "=" in part)
            if want.get("rank") == str(self.ctx.rank) and want.get("epoch") == str(e):
                if want.get("action") == "stop":
                    self.control.request_stop()
                else:
                    os.kill(os.getpid(), signal.SIGKILL)

    def _train_epoch(self, e: int) -> tuple[float, float]:
        self._fault(e)
        finetune.train_mode(self.model, self.frozen_bn)
        self.train_sampler.set_epoch(e - 1)
        tdata.seed_everything(tdata.derive_seed(self.seed, e - 1, tdata.GLOBAL))
        loss, acc = self._step_batches(e, self.train_loader, len(self.train_sampler), self._wrapped(),
                                       images=True)
        total = all_sum([loss, acc])  # every rank saw as many samples (padded shards)
        return total[0] / self.ctx.world, total[1] / self.ctx.world

    def _validate(self, e: int) -> tuple[float, float] | None:
        if self.val_loader is None:
            return None
        self.model.eval()
        loss, acc = self._eval_batches(e, self.val_loader, self.model, images=True)
        n = self.val_sampler.n
        loss_sum, correct, seen = all_sum([loss * n, acc * n, float(n)])
        return loss_sum / max(seen, 1.0), correct / max(seen, 1.0)

    # the head phase on cached features: rank 0 fits, the others receive the result
    def _build_cache(self, e: int) -> None:
        if self.ctx.is_main:
            super()._build_cache(e)
        else:
            self.cache = _ELSEWHERE  # type: ignore[assignment]

    def _broadcast_head(self) -> None:
        import torch.distributed as dist

        with torch.no_grad():
            for t in self.cache_plan.head.state_dict().values():
                dist.broadcast(t, 0)

    def _train_cached(self, e: int) -> tuple[float, float]:
        self._fault(e)
        loss, acc = super()._train_cached(e) if self.ctx.is_main else (0.0, 0.0)
        self._broadcast_head()
        loss, acc = broadcast_floats([loss, acc])
        return loss, acc

    def _validate_cached(self, e: int) -> tuple[float, float] | None:
        out = super()._validate_cached(e) if self.ctx.is_main else None
        has, loss, acc = broadcast_floats([1.0, *out] if out is not None else [0.0, 0.0, 0.0])
        return (loss, acc) if has else None

    def _recover_from_oom(self, detail: str) -> None:
        # No automatic retry with a halved batch: the processes would have to agree on it.
        bs = self.batch_size
        raise _Failed(f"out of memory at batch size {bs} per process ({detail})",
                      f"resume with a smaller batch: transfer-studio train --resume {self.s.run_dir} "
                      f"--batch-size {max(1, bs // 2)} --nproc {self.ctx.world}")

    def _end_epoch(self, e: int, train: tuple[float, float], val: tuple[float, float] | None,
                   seconds: float) -> None:
        super()._end_epoch(e, train, val, seconds)
        self._report(e)
        stop = any_true(self.control.stop_requested)  # every rank calls it, every epoch
        if stop and e < self.t.epochs:
            raise _Stop

    def _report(self, e: int) -> None:
        folder = os.environ.get(ENV_RANK_REPORT)
        if folder:
            row = {k: v for k, v in self.history[-1].items() if k != "seconds"}
            with open(Path(folder) / f"rank{self.ctx.rank}.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def _epochs(self) -> None:
        try:
            super()._epochs()
        except (_Stop, _Failed):
            raise
        except Exception as exc:
            if not is_peer_failure(exc):
                raise
            # gloo's text starts with its source location and goes on with advice: keep the reason
            text = re.sub(r"^\[[^\]]*\]\s*", "", str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            detail = text.split(". ")[0][:160] or type(exc).__name__
            done = self.epoch
            hint = (f"the checkpoint of epoch {done} is intact: resume with: transfer-studio train --resume "
                    f"{self.s.run_dir} --nproc {self.ctx.world}" if done else "start the run again")
            raise _Failed(f"{PEER_FAILED} unexpectedly during epoch {done + 1} ({detail})", hint) from exc

    # rank 0 alone writes
    def _write_start_files(self) -> None:
        if self.ctx.is_main:
            super()._write_start_files()

    def _write_epoch_files(self, e: int, is_best: bool, seconds: float) -> None:
        if self.ctx.is_main:
            super()._write_epoch_files(e, is_best, seconds)
        else:
            self.durable_epoch = e

    def _write_restored_best(self, full: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        if self.ctx.is_main:
            super()._write_restored_best(full, state)

    def _finish(self) -> ev.RunResult:
        if self.ctx.is_main:
            return super()._finish()
        result = self._result(self.status)
        self.emit(ev.FitEnd(result))
        return result


def fit(project: Project | None, callbacks: Iterable[Callback] = (), control: Control | None = None, *,
        run_dir: str | Path | None = None, resume: bool = False) -> ev.RunResult:
    """``training.fit`` in one of several processes; the same arguments on every rank (only rank 0's
    callbacks receive events)."""
    ctx = init()
    dispatch = Dispatcher(callbacks if ctx.is_main else ())
    # Rank 0 first: it resolves Auto and the split, names the run folder, and may set a damaged
    # checkpoint aside; the others then build the same network from its snapshot.
    setup: RunSetup | None = None
    message: dict[str, Any]
    if ctx.is_main:
        try:
            setup = prepare(project, run_dir=run_dir, resume=resume)
            check_sync_batchnorm(setup.project, setup.device)
            message = {"project": setup.project.to_json(), "run_dir": str(setup.run_dir)}
        except UserError as exc:
            message = {"error": str(exc)}
    message = broadcast_json(message if ctx.is_main else None, ctx)
    if "error" in message:
        raise UserError(message["error"])
    with contextlib.ExitStack() as stack:
        error = ""
        try:
            if ctx.is_main:
                stack.enter_context(run_lock(setup.run_dir))
            else:
                own = project if resume else Project.from_dict(json.loads(message["project"]))
                setup = prepare(own, run_dir=message["run_dir"], resume=resume)
        except UserError as exc:
            error = str(exc)
        if any_true(bool(error)):  # also: nobody writes before every rank has prepared
            raise UserError(error or "another process of the distributed run could not prepare the run")
        if setup.project.train.sync_batchnorm:
            setup.model, n = convert_sync_batchnorm(setup.model)
            setup.notes.append(f"SyncBatchNorm: {n} BatchNorm layer(s) synchronised across processes")
        result = DistributedTrainer(setup, dispatch, control or Control(), ctx).run()
    if result.status != "failed":
        # The others wait for rank 0's last files: a process leaving early makes torchrun end the rest.
        any_true(False)
    return result
