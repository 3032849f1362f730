"""Where training runs and how: device choice, mixed precision, memory format, loader settings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from transfer_studio.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def machine_default(key: str, project_value: Any) -> Any:
    """The project's value, or this machine's default where the project says auto (device "auto",
    num_workers None): ``transfer_studio.machine_settings`` (the Settings dialog's file, TS_DEVICE,
    TS_NUM_WORKERS). A project's explicit value always wins. The one place this rule lives."""
    if project_value is not None and str(project_value).strip().lower() not in ("", "auto"):
        return project_value
    from transfer_studio import machine_settings

    return getattr(machine_settings.effective(), key)


def select_device(name: str = "auto") -> torch.device:
    """auto = this machine's default device if one is set, else CUDA, then Apple MPS, then CPU.
    Naming an unavailable device is the user's mistake."""
    requested = (name or "auto").strip().lower()
    name = machine_default("device", requested)
    if name != requested:
        from transfer_studio import machine_settings

        try:
            return select_device(name)
        except UserError as exc:
            raise UserError(f"{exc} (this machine's default device, set in "
                            f"{machine_settings.source_of('device')}; the project says auto)") from None
    if name not in DEVICES and not name.startswith("cuda:"):
        raise UserError(f"unknown device {name!r}: choose one of {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} was requested but no CUDA GPU is available here: "
                            "use --device cpu (or auto)")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r} does not exist: this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s)")
        return dev
    if name == "mps" and not _mps_available():
        raise UserError("device 'mps' was requested but Apple MPS is not available here: "
                        "use --device cpu (or auto)")
    return torch.device(name)


@dataclass(frozen=True)
class Precision:
    """Autocast settings: dtype None means plain fp32."""

    dtype: torch.dtype | None
    use_scaler: bool  # fp16 needs a GradScaler; bf16 has fp32's range and does not

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def choose_precision(device: torch.device, amp: bool = True) -> Precision:
    """Mixed precision on CUDA only: bf16 where the GPU supports it, else fp16 with a grad scaler."""
    if not amp or device.type != "cuda":
        return Precision(None, False)
    if torch.cuda.is_bf16_supported():
        return Precision(torch.bfloat16, False)
    return Precision(torch.float16, True)


def use_channels_last(device: torch.device) -> bool:
    # channels_last lets cuDNN pick tensor-core kernels for convolutions; on CPU it rarely helps.
    return device.type == "cuda"


@dataclass(frozen=True)
class LoaderSettings:
    num_workers: int
    pin_memory: bool
    persistent_workers: bool
    prefetch_factor: int | None


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS / Windows
        return max(1, os.cpu_count() or 1)


def loader_settings(device: torch.device, requested_workers: int | None = None,
                    cores: int | None = None) -> LoaderSettings:
    """DataLoader settings for the device and core count.

    On an accelerator, decoding and augmenting images on the CPU is the bottleneck: use most cores
    (one left for the main process), pin memory for async copies, and keep workers alive between
    epochs. On CPU the network's intra-op threads already use every core; a worker process on top
    oversubscribes them, and OpenMP threads that wait on a descheduled peer made steps 10x slower on
    the 2-core development machine. So on CPU, up to 4 cores decode in the main process (about a
    fifth of a small network's epoch there) and larger machines spare a quarter of their cores.
    Measurements of 0 vs 1-2 workers on that busy shared machine were too noisy to overrule this.
    """
    cores = cores if cores is not None else cpu_count()
    requested_workers = machine_default("num_workers", requested_workers)
    if requested_workers is not None:
        workers = max(0, int(requested_workers))
    elif device.type in ("cuda", "mps"):
        workers = min(8, max(1, cores - 1))
    else:
        workers = 0 if cores <= 4 else min(4, cores // 4)
    pin = device.type == "cuda"
    return LoaderSettings(
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 and device.type == "cuda" else None,
    )


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{idx} ({torch.cuda.get_device_name(idx)})"
    return device.type
