"""How training runs: mixed precision, memory format, loader settings; where (``select_device``)
follows ``core.devices``, the one device rule."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from transfer_studio.core import devices

DEVICES = devices.DEVICES
machine_default = devices.machine_default  # the project's value, or this machine's default for "auto"


def select_device(name: str = "auto") -> torch.device:
    """The training device (``core.devices.resolve``: the one rule for every command and the app)."""
    return devices.resolve(name)


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
    return devices.describe(device)
