"""Where work runs: the one device rule and the one way to describe devices (Qt-free).

``resolve`` turns a device name into a ``torch.device`` for everything that runs a network — training,
prediction, evaluation, the advisor's estimates: an explicit device must be present (a UserError
says what to choose instead); "auto" is this machine's default device if one is set (the Settings
dialog, ``TS_DEVICE``) and otherwise CUDA, then Apple MPS, then the CPU. ``probe`` lists the
machine's devices and ``describe_machine`` says it in one line (the status bar, the Train page);
``describe`` names one device in use ("cuda:0 (NVIDIA H100)").

torch is imported inside the functions that need it: the app reads this module's plain helpers
before torch has loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from transfer_studio.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")


def machine_default(key: str, project_value: Any) -> Any:
    """The project's value, or this machine's default where the project says auto (device "auto",
    num_workers None): ``transfer_studio.machine_settings`` (the Settings dialog's file, TS_DEVICE,
    TS_NUM_WORKERS). A project's explicit value always wins."""
    if project_value is not None and str(project_value).strip().lower() not in ("", "auto"):
        return project_value
    from transfer_studio import machine_settings

    return getattr(machine_settings.effective(), key)


def resolve(name: Any = "auto", *, machine: bool = True) -> Any:
    """The ``torch.device`` for ``name`` (a str or a torch.device). With ``machine``, "auto" takes this
    machine's default device first; naming an unavailable device is the user's mistake."""
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    requested = (str(name or "auto")).strip().lower()
    chosen = machine_default("device", requested) if machine else requested
    if chosen != requested:
        from transfer_studio import machine_settings

        try:
            return resolve(chosen, machine=False)
        except UserError as exc:
            raise UserError(f"{exc} (this machine's default device, set in "
                            f"{machine_settings.source_of('device')}; the project says auto)") from None
    if chosen not in DEVICES and not chosen.startswith("cuda:"):
        raise UserError(f"unknown device {name!r}: choose one of {', '.join(DEVICES)}")
    if chosen == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    if chosen.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} was requested but is not available here (no CUDA GPU "
                            "found): use --device cpu (or auto)")
        device = torch.device(chosen)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r} does not exist: this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s)")
        return device
    if chosen == "mps" and not mps_available():
        raise UserError("device 'mps' was requested but Apple MPS is not available here: "
                        "use --device cpu (or auto)")
    return torch.device(chosen)


def mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def describe(device: Any) -> str:
    """One device in use: "cuda:0 (NVIDIA H100 80GB HBM3)", "mps" or "cpu"."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{idx} ({torch.cuda.get_device_name(idx)})"
    return device.type


@dataclass(frozen=True)
class MachineDevices:
    """What this machine offers: CPU cores and threads, CUDA GPUs (name, memory in bytes), MPS."""

    cpu: int = 1
    threads: int = 1
    cuda: list[dict[str, Any]] = field(default_factory=list)
    mps: bool = False

    def has(self, device: str) -> bool:
        """Whether a device choice can run here ("auto" and "cpu" always can)."""
        if device.startswith("cuda"):
            return bool(self.cuda)
        return self.mps if device == "mps" else True


def probe() -> MachineDevices:
    """The machine's devices (imports torch: call it from a worker thread in the app)."""
    import torch

    cuda = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            cuda.append({"name": props.name, "memory": int(props.total_memory)})
    return MachineDevices(cpu=os.cpu_count() or 1, threads=torch.get_num_threads(), cuda=cuda,
                          mps=mps_available())


def describe_machine(info: MachineDevices) -> str:
    """The machine in one line: "GPU: NVIDIA H100 · 79.1 GiB (+1 more)", "GPU: Apple MPS" or
    "CPU · 8 threads (no GPU found)"."""
    if info.cuda:
        gpu = info.cuda[0]
        more = f" (+{len(info.cuda) - 1} more)" if len(info.cuda) > 1 else ""
        return f"GPU: {gpu['name']} \u00b7 {gpu['memory'] / 2**30:.1f} GiB{more}"
    if info.mps:
        return "GPU: Apple MPS"
    return f"CPU \u00b7 {info.threads} threads (no GPU found)"
