"""The epoch loop: one optimisation step per batch, checkpoints per epoch, events throughout.

Per-batch work is kept to what a hand-written PyTorch loop does plus a few scalar tensor ops for the
running loss/accuracy: no host synchronisation except when a (throttled) BatchEnd event is actually
sent to a callback. Stop and pause requests are polled before every batch.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from transfer_studio.core import surgery
from transfer_studio.training import checkpoint as ckpt
from transfer_studio.training import data as tdata
from transfer_studio.training import events as ev
from transfer_studio.training import features as tfeatures
from transfer_studio.training import finetune, head_fit
from transfer_studio.training.backbone import BackboneFeatures
from transfer_studio.training.callbacks import Dispatcher
from transfer_studio.training.control import Control
from transfer_studio.training.device import describe
from transfer_studio.training.engine import RunSetup
from transfer_studio.training.schedule import LRSchedule

log = logging.getLogger("transfer_studio.training")

BATCH_EVENT_INTERVAL = 0.1  # seconds between BatchEnd events (the epoch's last batch always sends one)
CACHE_ON_GPU_BYTES = 2 << 30  # feature caches up to this size live on the GPU
# best.safetensors is rewritten at an improving epoch when that costs at most this share of the
# epoch's time, or when the file is older than BEST_MAX_DELAY s; otherwise the best weights are kept
# in memory (and in the checkpoint) and written at the end of the run. Cached head-only epochs take
# milliseconds: rewriting the whole network after each would dominate them.
BEST_WRITE_BUDGET = 0.1
BEST_MAX_DELAY = 30.0
SUMMARY_INTERVAL = 2.0  # history.json / run.json are refreshed at most this often (and at the end)


class _Stop(Exception):
    """A stop request arrived; the run ends with the last completed epoch's checkpoint."""


class _Failed(Exception):
    def __init__(self, message: str, suggestion: str = ""):
        super().__init__(message)
        self.message, self.suggestion = message, suggestion


AUX_LOSS_WEIGHT = 0.4  # weight of auxiliary classifiers' losses (GoogLeNet / Inception v3 in train mode)


def _with_aux_loss(out: Any, y: torch.Tensor, crit: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Networks with auxiliary heads return (logits, aux logits...) while training: the main loss
    plus the auxiliary ones, down-weighted as in the papers that introduced them."""
    logits, *aux = out
    loss = crit(logits, y)
    for a in aux:
        if a is not None:
            loss = loss + AUX_LOSS_WEIGHT * crit(a, y)
    return logits, loss


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device):
    """Head steps on cached features are tiny tensor ops: waking intra-op threads costs more than
    the work (10x slower epochs on a busy 2-core machine). One thread while they run."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Trainer:
    def __init__(self, setup: RunSetup, dispatch: Dispatcher, control: Control):
        self.s = setup
        self.emit = dispatch
        self.control = control
        self.t = setup.project.train
        self.device = setup.device
        self.precision = setup.precision
        self.memory_format = torch.channels_last if setup.channels_last else torch.preserve_format
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels
        self.model: nn.Module = setup.model.to(self.device, memory_format=self.memory_format)
        self.batch_size = self.t.batch_size
        self.seed = self.t.seed
        self.classes = list(setup.split.classes)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"epoch": None, "val_loss": None, "val_accuracy": None, "bad_epochs": 0}
        self.epoch = 0  # epochs trained (the model holds their weights)
        self.durable_epoch = 0  # the last epoch whose checkpoint is confirmed on disk
        self._writer = ckpt.BackgroundWriter()
        self._pending_epoch: int | None = None  # epoch whose files the writer is writing
        self._pending_best = False
        self.phase: int | None = None
        self.announced_phase: int | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.schedule: LRSchedule | None = None
        self.frozen_bn: list[nn.Module] = []
        # A pretrained network keeps its BatchNorm statistics while fine-tuning (train.bn_stats): batch
        # statistics of small batches differ from them, and a head fitted on the pretrained ones saw
        # chance-level outputs in train mode (bench_advisor: train loss 0.004 -> 3.2 at the switch).
        self._bn_stats_frozen = self.t.bn_stats == "frozen" or (self.t.bn_stats == "auto" and setup.pretrained)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision.use_scaler else None
        self.notes = list(setup.notes)
        self.status, self.message, self.suggestion = "running", "", ""
        self.stopped_early = False
        self.epoch_seconds: list[float] = []
        self.previous_duration = 0.0
        self._paused_s = 0.0
        self._initial_state: dict[str, torch.Tensor] | None = None  # variable weights before epoch 1
        self._modules = dict(self.model.named_modules())
        self.constant_keys = self._compute_constant_keys()
        # The state dict's tensors share storage with the live parameters and buffers (training and
        # load_state_dict update them in place), so the references are gathered once.
        self._variable_refs = {k: v for k, v in self.model.state_dict().items() if k not in self.constant_keys}
        self._project_json: str | None = None  # the snapshot as JSON, cached for every checkpoint
        self._best_dirty = False  # best.safetensors lags behind self.best
        self._best_state: dict[str, torch.Tensor] | None = None  # variable weights of the best epoch
        self._best_written = time.monotonic()
        self._write_rate: float | None = None  # bytes/s measured writing best.safetensors
        self._model_bytes = sum(v.numel() * v.element_size() for v in self.model.state_dict().values())
        self._summary_at = 0.0
        # feature cache (head strategy)
        self.cache_plan: tfeatures.CachePlan | None = None
        self.cache: tfeatures.FeatureCache | None = None
        self.head_setup: head_fit.HeadSetup | None = None  # the head phase's C, chosen by cross-validation

        split = setup.split
        self.n_train = len(split.labels["train"])
        self.n_val = len(split.labels.get("val", []))
        self.train_ds = tdata.image_dataset(split, "train", setup.train_transform)
        self.val_ds = tdata.image_dataset(split, "val", setup.eval_transform) if self.n_val else None
        self.sample_weights = (tdata.balanced_weights(split.labels["train"], len(self.classes))
                               if setup.balance == "sampler" else None)
        if setup.balance == "sampler":
            self.notes.append("classes are balanced by sampling (with replacement) in proportion to "
                              "1 / class size")
        weight = (tdata.class_weights(split.counts("train")).to(self.device)
                  if setup.balance == "weighted_loss" else None)
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=float(self.t.label_smoothing))
        self._build_loaders()

    # -- plumbing ------------------------------------------------------------------------------
    def _build_loaders(self) -> None:
        self.train_sampler = tdata.EpochBatchSampler(self.n_train, self.batch_size, self.seed,
                                                     weights=self.sample_weights)
        self.train_loader = tdata.make_loader(self.train_ds, self.train_sampler, self.s.loader)
        self.val_loader = None
        if self.val_ds is not None:
            vs = tdata.EpochBatchSampler(self.n_val, self.batch_size, self.seed, shuffle=False)
            self.val_loader = tdata.make_loader(self.val_ds, vs, self.s.loader)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.precision.dtype)

    def _check_control(self, epoch: int, step: int) -> None:
        if self._pending_epoch is not None and not self._writer.busy:
            self._confirm_writes()  # emits CheckpointWritten as soon as the files are on disk
        c = self.control
        if c.stop_requested:
            raise _Stop
        if c.pause_requested:
            t0 = time.perf_counter()
            self.emit(ev.Paused(epoch, step))
            c.wait_while_paused()
            self._paused_s += time.perf_counter() - t0
            if c.stop_requested:
                raise _Stop
            self.emit(ev.Resumed(epoch, step))

    # -- phases and optimiser ------------------------------------------------------------------
    def _body_lr(self) -> float:
        # A randomly initialised body has nothing to preserve: it learns at the full rate.
        return self.t.lr * self.t.body_lr_factor if self.s.pretrained else self.t.lr

    def _groups_for_phase(self, idx: int) -> list[dict]:
        """Parameter groups a phase adds: the head's for the first phase, then the body parameters
        that phase newly unfreezes (so resumed and uninterrupted runs build identical groups)."""
        plan = self.s.plan
        groups = []
        if idx == 0:
            groups += finetune.param_groups(self.model, plan.head_params, lr=self.t.lr,
                                            weight_decay=self.t.weight_decay, role="head")
        before = set().union(*(p.trainable for p in plan.phases[:idx])) | plan.head_params
        new_body = plan.phases[idx].trainable - before
        groups += finetune.param_groups(self.model, new_body, lr=self._body_lr(),
                                        weight_decay=self.t.weight_decay, role="body")
        return groups

    def _make_optimizer(self, idx: int) -> torch.optim.Optimizer:
        groups = []
        for i in range(idx + 1):
            groups += self._groups_for_phase(i)
        try:
            # The fused kernel updates all tensors at once: ~3x faster steps on CPU than the default.
            return torch.optim.AdamW(groups, lr=self.t.lr, weight_decay=self.t.weight_decay, fused=True)
        except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
            return torch.optim.AdamW(groups, lr=self.t.lr, weight_decay=self.t.weight_decay)

    def _enter_phase(self, idx: int, *, fresh: bool = False) -> None:
        plan = self.s.plan
        finetune.apply_trainable(self.model, plan.phases[idx].trainable)
        self.frozen_bn = finetune.frozen_batchnorms(self.model, all_stats=self._bn_stats_frozen)
        if fresh or self.optimizer is None:
            self.optimizer = self._make_optimizer(idx)
        else:
            for i in range((self.phase or 0) + 1, idx + 1):
                for g in self._groups_for_phase(i):
                    self.optimizer.add_param_group(g)
        self.phase = idx
        start = plan.phases[idx].first_epoch - 1
        end = plan.phases[idx + 1].first_epoch - 1 if idx + 1 < len(plan.phases) else self.t.epochs
        self.schedule = LRSchedule(self.t.scheduler, start, max(end, start + 1), float(self.t.warmup_epochs))

    def _announce_phase(self, epoch: int) -> None:
        if self.announced_phase == self.phase:
            return
        self.announced_phase = self.phase
        phase = self.s.plan.phases[self.phase]
        trainable, total = surgery.param_counts(self.model)
        if phase.name == "head" and self.cache_plan is not None:
            text = ("fitting the new head to convergence on cached backbone features (L-BFGS; "
                    "regularisation chosen by cross-validation on the training images)")
        elif phase.name == "head":
            text = "training the new head only (the pretrained network stays frozen)"
        elif phase.name == "unfrozen":
            where = f"from {phase.unfrozen_blocks[0]} " if phase.unfrozen_blocks else ""
            text = (f"unfroze {len(phase.unfrozen_blocks)} block(s) {where}(body lr {self._body_lr():.1e}, "
                    f"head lr {self.t.lr:.1e})")
        else:
            text = f"training the whole network (body lr {self._body_lr():.1e}, head lr {self.t.lr:.1e})"
        self.emit(ev.PhaseChanged(epoch=epoch, phase=phase.name, description=text,
                                  unfrozen=list(phase.unfrozen_blocks), trainable_params=int(trainable),
                                  total_params=int(total)))

    # -- state ---------------------------------------------------------------------------------
    def _compute_constant_keys(self) -> set[str]:
        """State-dict entries no phase of this run changes: parameters never trained, and buffers
        (BatchNorm statistics) of modules that stay frozen, decided as ``frozen_batchnorms`` does."""
        trained = set().union(*(p.trainable for p in self.s.plan.phases))
        memo: dict[str, bool] = {}

        def changes(module_name: str) -> bool:
            if module_name not in memo:
                prefix = module_name + "." if module_name else ""
                names = [prefix + n for n, _ in self._modules[module_name].named_parameters()]
                if names:
                    memo[module_name] = any(n in trained for n in names)
                elif module_name:
                    memo[module_name] = changes(module_name.rpartition(".")[0])
                else:
                    memo[module_name] = False
            return memo[module_name]

        return {k for k in self.model.state_dict() if not changes(k.rpartition(".")[0])}

    def _variable_state(self, copy: bool = False) -> dict[str, torch.Tensor]:
        return ckpt.cpu_copy(self._variable_refs) if copy else dict(self._variable_refs)

    def _state(self) -> dict[str, Any]:
        best_elsewhere = self._best_dirty and self.best["epoch"] != self.epoch
        return {
            "epoch": self.epoch,
            "phase": self.phase,
            "batch_size": self.batch_size,
            "model": self._variable_state(),
            "frozen_file": ckpt.FROZEN if self.constant_keys else "",
            "best_dirty": self._best_dirty,
            "best_model": self._best_state if best_elsewhere else {},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "scheduler": self.schedule.state_dict(),
            "rng": ckpt.rng_state(),
            "history": self.history,
            "best": self.best,
            "stopped_early": self.stopped_early,
            "duration_s": self.previous_duration + self._elapsed(),
            "project": self._snapshot_json(),
            "split": self.s.project.data.split,
            "classes": self.classes,
            "head_setup": ({"c": self.head_setup.c, "scale": self.head_setup.scale, "cv": self.head_setup.cv}
                           if self.head_setup is not None else {}),
        }

    def _snapshot_json(self) -> str:
        if self._project_json is None:
            self._project_json = self.s.project.to_json()
        return self._project_json

    def _restore(self, state: dict[str, Any]) -> None:
        full: dict[str, torch.Tensor] = {}
        if state.get("frozen_file"):
            full.update(ckpt.load_tensors(self.s.run_dir / state["frozen_file"]))
        full.update(state["model"])
        try:
            self.model.load_state_dict(full)
            self._enter_phase(int(state["phase"]), fresh=True)
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError, IndexError) as exc:
            raise _Failed(f"the checkpoint in {self.s.run_dir} does not match the run's network "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0]})",
                          "start a new run instead of resuming this one") from exc
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        self.epoch = self.durable_epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.best = dict(state["best"])
        self.stopped_early = bool(state.get("stopped_early", False))
        self.previous_duration = float(state.get("duration_s", 0.0))
        hs = state.get("head_setup") or {}
        self.head_setup = (head_fit.HeadSetup(float(hs["c"]), float(hs["scale"]), dict(hs.get("cv", {})))
                           if hs.get("c") else None)
        self._best_dirty, self._best_state = False, None
        if state.get("best_dirty") and self.best["epoch"] is not None:
            self._write_restored_best(full, state)

    def _write_restored_best(self, full: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """The run ended before its best weights reached best.safetensors: write them now."""
        best = {**full, **state["best_model"]} if state.get("best_model") else full
        try:
            ckpt.save_tensors(self.s.run_dir / ckpt.BEST, best, self._best_metadata(self.best["epoch"]))
        except OSError as exc:
            raise self._disk_failure(exc, ckpt.BEST) from exc

    def _best_metadata(self, epoch: int) -> dict[str, str]:
        return {"epoch": str(epoch), "model": self.s.project.model.name}

    def _write_best(self, epoch: int, variable: dict[str, torch.Tensor] | None = None) -> None:
        t0 = time.perf_counter()
        state = self.model.state_dict()
        if variable is not None:
            state = {**state, **variable}
        n = ckpt.save_tensors(self.s.run_dir / ckpt.BEST, state, self._best_metadata(epoch))
        self._write_rate = n / max(time.perf_counter() - t0, 1e-6)
        self._best_written = time.monotonic()
        self._best_dirty, self._best_state = False, None

    def _best_file_now(self, epoch: int, seconds: float) -> bytes | None:
        """The new best weights as file content to write now, or None when writing them would slow
        training (they are then kept in memory and in the checkpoint, and written at the end)."""
        cost = self._model_bytes / self._write_rate if self._write_rate else 0.0
        if cost <= BEST_WRITE_BUDGET * seconds or time.monotonic() - self._best_written >= BEST_MAX_DELAY:
            self._best_dirty, self._best_state = False, None
            self._best_written = time.monotonic()
            return ckpt.weights_bytes(self.model.state_dict(), self._best_metadata(epoch))
        self._best_dirty = True
        self._best_state = self._variable_state(copy=True)
        return None

    def _confirm_writes(self) -> None:
        """Wait for the previous epoch's files; a failed write ends the run (_Failed)."""
        if not self._writer.pending:
            return
        epoch, self._pending_epoch = self._pending_epoch, None
        try:
            self._writer.wait()
        except ckpt.WriteFailed as exc:
            if exc.name in (ckpt.HISTORY, ckpt.RUN):  # the checkpoint before them did land
                self.durable_epoch = epoch
            raise self._disk_failure(exc.error, exc.name) from exc
        if self._pending_best and self._writer.seconds.get(ckpt.BEST):
            self._write_rate = self._writer.sizes[ckpt.BEST] / max(self._writer.seconds[ckpt.BEST], 1e-6)
        self._pending_best = False
        if epoch is not None:
            self.durable_epoch = epoch
            self.emit(ev.CheckpointWritten(str(self.s.run_dir / ckpt.CHECKPOINT), epoch))

    def _reset_to_initial(self) -> None:
        self.model.load_state_dict({**self.model.state_dict(), **self._initial_state})
        self.epoch, self.durable_epoch, self.history = 0, 0, []
        self._best_dirty, self._best_state = False, None
        self.best = {"epoch": None, "val_loss": None, "val_accuracy": None, "bad_epochs": 0}
        if self.scaler is not None:
            self.scaler = torch.amp.GradScaler(self.device.type)
        self._enter_phase(self.s.plan.phase_index(1), fresh=True)

    def _elapsed(self) -> float:
        return time.monotonic() - self.s.started

    def _result(self, status: str) -> ev.RunResult:
        b = self.best
        return ev.RunResult(
            run_dir=str(self.s.run_dir), model=self.s.project.model.name, strategy=self.s.plan.strategy,
            status=status, epochs_completed=self.durable_epoch, epochs_planned=self.t.epochs,
            best_epoch=b["epoch"], val_accuracy=b["val_accuracy"], val_loss=b["val_loss"],
            history=[dict(h) for h in self.history], device=describe(self.device),
            batch_size=self.batch_size, classes=list(self.classes),
            duration_s=round(self.previous_duration + self._elapsed(), 3),
            stopped_early=self.stopped_early, cached_features=self.cache_plan is not None,
            message=self.message, suggestion=self.suggestion,
            notes=list(self.notes) + list(self.emit.failures),
        )

    def _disk_failure(self, exc: OSError, what: str) -> _Failed:
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        has_ckpt = (self.s.run_dir / ckpt.CHECKPOINT).is_file()
        fix = ("make the run folder writable" if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
               else "free some disk space")  # a read-only folder needs no space freed
        if has_ckpt and self.durable_epoch:
            hint = (f"{fix}, then resume with: transfer-studio train --resume {self.s.run_dir} "
                    f"(the checkpoint of epoch {self.durable_epoch} is intact)")
        else:
            hint = f"{fix}, then start the run again"
        return _Failed(f"could not write {what} in {self.s.run_dir}: {reason}", hint)

    # -- running -------------------------------------------------------------------------------
    def run(self) -> ev.RunResult:
        try:
            try:
                try:
                    self._start()
                    self._epochs()
                    self.status = "finished"
                except _Stop:
                    self.status = "stopped"
                    self.notes.append(f"stopped by request after {self.epoch} completed epoch(s)")
            except _Failed as f:
                self._fail(f)
        except Exception as exc:
            self.status, self.message = "failed", f"{type(exc).__name__}: {exc}"
            self.emit(ev.Error(self.message, ""))
            self._finish()
            raise
        return self._finish()

    def _fail(self, f: _Failed) -> None:
        if self.status != "failed":
            self.status, self.message, self.suggestion = "failed", f.message, f.suggestion
            self.emit(ev.Error(f.message, f.suggestion))

    def _finish(self) -> ev.RunResult:
        try:
            self._confirm_writes()  # the last completed epoch's files must be on disk
        except _Failed as f:
            self._fail(f)
        if self._best_dirty:
            try:
                self._write_best(self.best["epoch"], self._best_state)
            except OSError as exc:
                log.warning("could not write the best weights in %s: %s", self.s.run_dir, exc)
                self._fail(self._disk_failure(exc, ckpt.BEST))
        result = self._result(self.status)
        try:
            ckpt.write_json(self.s.run_dir / ckpt.HISTORY, result.history)
            ckpt.write_json(self.s.run_dir / ckpt.RUN, result.to_dict())
        except OSError as exc:
            log.warning("could not write the run summary in %s: %s", self.s.run_dir, exc)
            if result.status != "failed":
                self._fail(self._disk_failure(exc, ckpt.RUN))
                result = self._result("failed")
        self.emit(ev.FitEnd(result))
        return result

    def _start(self) -> None:
        s = self.s
        if s.checkpoint is not None:
            self._restore(s.checkpoint)
            s.checkpoint = None
        else:
            self._enter_phase(s.plan.phase_index(1), fresh=True)
            if self.t.allow_oom_retry:
                self._initial_state = self._variable_state(copy=True)
        if self.t.cache_features and self._in_head_phase():
            self._plan_cache()
        self._write_start_files()
        trainable, total = surgery.param_counts(self.model)
        self.emit(ev.FitStart(
            run_dir=str(s.run_dir), model=s.project.model.name, strategy=s.plan.strategy,
            device=describe(self.device), precision=self.precision.name, epochs=self.t.epochs,
            start_epoch=self.epoch + 1, steps_per_epoch=len(self.train_sampler),
            batch_size=self.batch_size, num_train=self.n_train, num_val=self.n_val,
            classes=list(self.classes), trainable_params=int(trainable), total_params=int(total),
            cached_features=self.cache_plan is not None, resumed=self.epoch > 0,
            notes=list(self.notes)))

    def _write_start_files(self) -> None:
        s = self.s
        try:
            s.run_dir.mkdir(parents=True, exist_ok=True)
            s.project.save(s.run_dir / ckpt.PROJECT)
            frozen = s.run_dir / ckpt.FROZEN
            if self.constant_keys and ckpt.tensor_names(frozen) != self.constant_keys:
                sd = self.model.state_dict()
                ckpt.save_tensors(frozen, {k: sd[k] for k in self.constant_keys},
                                  {"content": "weights no phase of this run trains"})
            ckpt.write_json(s.run_dir / ckpt.RUN, self._result("running").to_dict())
        except OSError as exc:
            raise self._disk_failure(exc, "the run's files") from exc

    def _epochs(self) -> None:
        total = self.t.epochs
        patience = self.t.early_stopping_patience
        if self.epoch >= total:
            self.notes.append(f"the run already has {self.epoch} epoch(s): ask for more epochs to continue")
            return
        e = self.epoch + 1
        while e <= total:
            if patience and self.n_val and self.best["bad_epochs"] >= patience:
                self.stopped_early = True
                return
            self._check_control(e, 0)
            want = self.s.plan.phase_index(e)
            if want != self.phase:
                self._enter_phase(want)
            self._announce_phase(e)
            oom = None
            try:
                cached = self.cache_plan is not None and self._in_head_phase()
                if cached and self.cache is None:
                    self._build_cache(e)
                elif not cached and self.cache is not None:
                    self.cache = None  # the head phase is over: fine-tuning runs on images
                self._paused_s = 0.0
                t0 = time.perf_counter()
                if cached:
                    train = self._train_cached(e)
                    val = self._validate_cached(e)
                else:
                    train = self._train_epoch(e)
                    val = self._validate(e)
                seconds = time.perf_counter() - t0 - self._paused_s
            except torch.OutOfMemoryError as exc:
                oom = str(exc).splitlines()[0] if str(exc) else "out of memory"
            if oom is not None:  # outside the except block: the traceback's tensors are freed by now
                self._recover_from_oom(oom)
                e = self.epoch + 1
                continue
            self._end_epoch(e, train, val, seconds)
            if patience and self.n_val and self.best["bad_epochs"] >= patience and e < total:
                self.stopped_early = True
                self.notes.append(f"early stopping: the validation loss has not improved for {patience} "
                                  f"epoch(s); keeping epoch {self.best['epoch']}")
                return
            e += 1

    def _recover_from_oom(self, detail: str) -> None:
        self._confirm_writes()  # the checkpoint to restore must be complete
        bs = self.batch_size
        self.cache = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        resume_hint = f"transfer-studio train --resume {self.s.run_dir} --batch-size {max(1, bs // 2)}"
        if not self.t.allow_oom_retry or bs <= 1:
            raise _Failed(f"out of memory on {describe(self.device)} at batch size {bs} ({detail})",
                          f"use a smaller batch size, e.g. {max(1, bs // 2)}"
                          + (f"; resume with: {resume_hint}" if self.durable_epoch else "")
                          + "; or allow automatic retries with a halved batch (train.allow_oom_retry)")
        new = bs // 2
        text = f"out of memory at batch size {bs}: retrying with batch size {new}"
        log.warning(text)
        self.notes.append(text)
        self.emit(ev.Notice(text))
        self.batch_size = new
        self.s.project.train.batch_size = new
        self._project_json = None
        try:
            self.s.project.save(self.s.run_dir / ckpt.PROJECT)  # a later resume keeps the smaller batch
        except OSError as exc:
            raise self._disk_failure(exc, ckpt.PROJECT) from exc
        self._build_loaders()
        if self.durable_epoch > 0:
            self._restore(ckpt.load_checkpoint(self.s.run_dir / ckpt.CHECKPOINT))
        else:
            self._reset_to_initial()

    def _end_epoch(self, e: int, train: tuple[float, float], val: tuple[float, float] | None,
                   seconds: float) -> None:
        train_loss, train_acc = train
        val_loss, val_acc = val if val is not None else (None, None)
        if not math.isfinite(train_loss) or (val_loss is not None and not math.isfinite(val_loss)):
            raise _Failed(f"training diverged in epoch {e} (the loss is not a finite number)",
                          "lower the learning rate (e.g. --lr " f"{self.t.lr / 10:g}) and start again")
        best = self.best
        if val_loss is None:
            is_best = True
        else:
            is_best = best["val_loss"] is None or val_loss < best["val_loss"]
        if is_best:
            best.update(epoch=e, val_loss=val_loss, val_accuracy=val_acc, bad_epochs=0)
        else:
            best["bad_epochs"] = int(best["bad_epochs"]) + 1
        phase = self.s.plan.phases[self.phase].name
        probe_epoch = phase == "head" and self.cache is not None
        # L-BFGS has no learning rate: its epochs record None (charts leave a gap there).
        lr = None if probe_epoch else float(self.optimizer.param_groups[0]["lr"])
        self.history.append({"epoch": e, "train_loss": train_loss, "train_accuracy": train_acc,
                             "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr,
                             "seconds": round(seconds, 4), "phase": "probe" if probe_epoch else phase})
        self.epoch = e
        self._write_epoch_files(e, is_best, seconds)
        self.epoch_seconds.append(seconds)
        eta = self._eta(e)
        self.emit(ev.EpochEnd(epoch=e, epochs=self.t.epochs, train_loss=train_loss, train_accuracy=train_acc,
                              val_loss=val_loss, val_accuracy=val_acc, lr=lr, seconds=seconds, eta_s=eta,
                              is_best=is_best))

    def _write_epoch_files(self, e: int, is_best: bool, seconds: float) -> None:
        # Serialise now (a consistent snapshot); the disk writes overlap the next epoch.
        self._confirm_writes()  # the previous epoch's (normally long done; measures the write speed)
        d = self.s.run_dir
        files: list[tuple[Path, bytes]] = []
        best_bytes = self._best_file_now(e, seconds) if is_best else None
        if best_bytes is not None:
            files.append((d / ckpt.BEST, best_bytes))
        files.append((d / ckpt.CHECKPOINT, ckpt.checkpoint_bytes(self._state())))
        now = time.monotonic()
        if now - self._summary_at >= SUMMARY_INTERVAL or e == self.t.epochs:
            summary = self._result("running").to_dict()
            summary["epochs_completed"] = e  # true once these files land, after the checkpoint
            files += [(d / ckpt.HISTORY, ckpt.json_bytes(self.history)), (d / ckpt.RUN, ckpt.json_bytes(summary))]
            self._summary_at = now
        self._writer.submit(files)
        self._pending_epoch, self._pending_best = e, best_bytes is not None

    def _eta(self, e: int) -> float:
        """Seconds until the last planned epoch: the remaining epochs at the pace of earlier epochs of
        the same phase (a probe epoch on cached features takes a fraction of a second, a fine-tuning
        epoch minutes; averaging both would promise a partial run's end far too soon)."""
        plan = self.s.plan
        times: dict[int, list[float]] = {}
        for h, sec in zip(self.history[-len(self.epoch_seconds):], self.epoch_seconds, strict=False):
            times.setdefault(plan.phase_index(int(h["epoch"])), []).append(sec)
        overall = sum(self.epoch_seconds) / len(self.epoch_seconds)
        eta = 0.0
        for later in range(e + 1, self.t.epochs + 1):
            same = times.get(plan.phase_index(later))
            eta += sum(same) / len(same) if same else overall
        return eta

    # -- one epoch -----------------------------------------------------------------------------
    def _step_batches(self, e: int, batches: Iterable, steps: int, forward: Callable[[torch.Tensor], torch.Tensor],
                      images: bool) -> tuple[float, float]:
        dev, opt, scaler, crit = self.device, self.optimizer, self.scaler, self.criterion
        groups = [(g, g["base_lr"]) for g in opt.param_groups]
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        t0 = last_emit = time.perf_counter()
        paused0 = self._paused_s
        for step, (x, y) in enumerate(batches):
            self._check_control(e, step + 1)
            f = self.schedule.factor(e - 1, step, steps)
            for g, base in groups:
                g["lr"] = base * f
            if images:
                x = x.to(dev, non_blocking=True, memory_format=self.memory_format)
            else:
                x = x.to(dev, non_blocking=True)
            y = y.to(dev, non_blocking=True)
            with self._autocast():
                out = forward(x)
                if isinstance(out, torch.Tensor):
                    loss = crit(out, y)
                else:
                    out, loss = _with_aux_loss(out, y, crit)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            n = y.shape[0]
            seen += n
            loss_sum += loss.detach().float() * n
            correct += (out.detach().argmax(1) == y).sum()
            if self.emit.active:
                now = time.perf_counter()
                if now - last_emit >= BATCH_EVENT_INTERVAL or step + 1 == steps:
                    last_emit = now
                    busy = max(now - t0 - (self._paused_s - paused0), 1e-9)
                    self.emit(ev.BatchEnd(epoch=e, step=step + 1, steps=steps,
                                          loss=loss_sum.item() / seen, accuracy=correct.item() / seen,
                                          lr=groups[0][0]["lr"], images_per_s=seen / busy))
        if seen == 0:
            raise _Failed("an epoch had no training batches", "add training images")
        return loss_sum.item() / seen, correct.item() / seen

    def _eval_batches(self, e: int, batches: Iterable, forward: Callable[[torch.Tensor], torch.Tensor],
                      images: bool) -> tuple[float, float]:
        dev = self.device
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        with torch.no_grad():
            for x, y in batches:
                self._check_control(e, 0)
                if images:
                    x = x.to(dev, non_blocking=True, memory_format=self.memory_format)
                else:
                    x = x.to(dev, non_blocking=True)
                y = y.to(dev, non_blocking=True)
                with self._autocast():
                    out = forward(x)
                # The validation loss is plain cross-entropy (no smoothing, no class weights): it is
                # what early stopping and the best-epoch choice compare.
                loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
                correct += (out.argmax(1) == y).sum()
                seen += y.shape[0]
        return loss_sum.item() / max(seen, 1), correct.item() / max(seen, 1)

    def _train_epoch(self, e: int) -> tuple[float, float]:
        finetune.train_mode(self.model, self.frozen_bn)
        self.train_sampler.set_epoch(e - 1)
        tdata.seed_everything(tdata.derive_seed(self.seed, e - 1, tdata.GLOBAL))
        return self._step_batches(e, self.train_loader, len(self.train_sampler), self.model, images=True)

    def _validate(self, e: int) -> tuple[float, float] | None:
        if self.val_loader is None:
            return None
        self.model.eval()
        return self._eval_batches(e, self.val_loader, self.model, images=True)

    # -- feature cache (head strategy) ---------------------------------------------------------
    def _in_head_phase(self) -> bool:
        return self.phase is not None and self.s.plan.phases[self.phase].name == "head"

    def _plan_cache(self) -> None:
        example = torch.zeros((2, *self.s.input_shape[1:]), device=self.device)
        example = example.contiguous(memory_format=self.memory_format)
        plan, note = tfeatures.plan_cache(
            self.model, example, cache_passes=self.t.cache_passes, augment_preset=self.s.project.augment.preset,
            n_train=self.n_train, n_val=self.n_val, autocast=self._autocast,
            head_only=self.s.plan.strategy == "head")
        self.notes.append(note)
        self.cache_plan = plan

    def _build_cache(self, e: int) -> None:
        """Features of every training image as the model sees it (from the feature store when it has
        them), of the validation images, and of the head strategy's augmented passes."""
        plan = self.cache_plan
        t0 = time.perf_counter()
        check = lambda: self._check_control(e, 0)  # noqa: E731
        split = self.s.split
        bb = BackboneFeatures.of(self.s.project, len(self.classes), model=self.model, device=self.device,
                                 capture=plan.head_name, batch_size=self.batch_size)
        shape = plan.feature_shape

        def stored(part: str) -> tuple[torch.Tensor, int]:
            feats, computed = bb.features(split.root, split.split[part], check=check)
            return feats.view(len(feats), *shape), computed

        clean, computed = stored("train")
        labels = torch.as_tensor(split.labels["train"], dtype=torch.long)
        passes = [clean]
        kw = dict(device=self.device, autocast=self._autocast, memory_format=self.memory_format, check=check)
        if plan.passes:
            ds = tdata.image_dataset(split, "train", self.s.train_transform)
            for k in range(plan.passes):
                sampler = tdata.EpochBatchSampler(self.n_train, self.batch_size, self.seed, shuffle=False,
                                                  purpose=tdata.CACHE, pass_index=k)
                f, _ = tfeatures.extract(self.model, plan.head, tdata.make_loader(ds, sampler, self.s.loader), **kw)
                passes.append(f)
                computed += self.n_train
        val = val_labels = None
        if self.n_val:
            val, n = stored("val")
            computed += n
            val_labels = torch.as_tensor(split.labels["val"], dtype=torch.long)
        cache = tfeatures.FeatureCache(plan.head_name, torch.stack(passes), labels, val, val_labels,
                                       len(passes), plan.augmented, 0.0)
        if self.device.type != "cpu" and cache.nbytes <= CACHE_ON_GPU_BYTES:
            cache.to(self.device)
        cache.seconds = time.perf_counter() - t0
        self.cache = cache
        reused = (1 + plan.passes) * self.n_train + self.n_val - computed
        text = (f"backbone features of {self.n_train} training image(s)"
                + (f" x {len(passes)} pass(es)" if plan.passes else "")
                + f" and {self.n_val} validation image(s) ready in {cache.seconds:.1f}s"
                + (f" ({reused} read from the feature cache)" if reused else ""))
        self.notes.append(text)
        self.emit(ev.Notice(text))
        if self.head_setup is None:
            t1 = time.perf_counter()
            self.head_setup = head_fit.choose(clean, labels, len(self.classes), seed=self.seed,
                                              class_weight=self._class_weight(), check=check)
            cv = self.head_setup.cv
            text = (f"head regularisation C = {self.head_setup.c:g}, chosen by {cv['folds']}-fold "
                    f"cross-validation on the training images (out-of-fold accuracy {cv['accuracy']:.1%}, "
                    f"{time.perf_counter() - t1:.1f}s)")
            self.notes.append(text)
            self.emit(ev.Notice(text))

    def _class_weight(self) -> torch.Tensor | None:
        if self.s.balance in ("weighted_loss", "sampler"):
            return tdata.class_weights(self.s.split.counts("train"))
        return None

    def _head_epochs(self) -> int:
        plan = self.s.plan
        if plan.strategy == "head":
            return self.t.epochs
        return plan.phases[1].first_epoch - 1 if len(plan.phases) > 1 else self.t.epochs

    def _train_cached(self, e: int) -> tuple[float, float]:
        head = self.cache_plan.head
        x, y = self.cache.rows()
        cw = self._class_weight()
        cw = cw.to(x.device) if cw is not None else None
        with _one_cpu_thread(self.device) if x.shape[0] * x[0].numel() < 2_000_000 else contextlib.nullcontext():
            loss, acc = head_fit.epoch(head, x, y, self.head_setup,
                                       max_iter=head_fit.iterations_per_epoch(self._head_epochs()),
                                       class_weight=cw, check=lambda: self._check_control(e, 0))
        return loss, acc

    def _validate_cached(self, e: int) -> tuple[float, float] | None:
        if self.cache.val is None:
            return None
        head = self.cache_plan.head
        head.eval()
        with _one_cpu_thread(self.device):
            return self._eval_batches(e, self.cache.val_batches(self.batch_size), head, images=False)
