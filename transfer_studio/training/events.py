"""What the training engine tells its callbacks: frozen dataclasses of plain data.

Every field is a number, a string, a bool, None or a list of those, so the GUI worker can pass events
across threads as they are and the CLI can print them. Epochs are numbered from 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunResult:
    """The outcome of ``fit``; also written to ``run.json`` in the run directory."""

    run_dir: str
    model: str
    strategy: str  # the concrete strategy that ran: head | partial | full
    status: str  # finished | stopped | failed
    epochs_completed: int
    epochs_planned: int
    best_epoch: int | None
    val_accuracy: float | None  # of the best epoch
    val_loss: float | None  # of the best epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    device: str = "cpu"
    batch_size: int = 0
    classes: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    stopped_early: bool = False  # early stopping on validation loss ended the run
    cached_features: bool = False
    message: str = ""  # why a run failed (one line), empty otherwise
    suggestion: str = ""  # what the user can do about it
    notes: list[str] = field(default_factory=list)  # facts worth telling the user about the run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FitStart:
    run_dir: str
    model: str
    strategy: str
    device: str
    precision: str  # "fp32" | "bf16" | "fp16"
    epochs: int
    start_epoch: int  # 1 for a new run; the next epoch for a resumed one
    steps_per_epoch: int
    batch_size: int
    num_train: int
    num_val: int
    classes: list[str]
    trainable_params: int
    total_params: int
    cached_features: bool
    resumed: bool
    notes: list[str]


@dataclass(frozen=True)
class BatchEnd:
    """Throttled: sent at most ~10 times a second and for the last batch of every epoch."""

    epoch: int
    step: int  # 1-based batch index within the epoch
    steps: int
    loss: float  # running mean over the epoch so far
    accuracy: float  # running accuracy over the epoch so far
    lr: float  # learning rate of the head's parameter group
    images_per_s: float


@dataclass(frozen=True)
class EpochEnd:
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    lr: float | None  # None for head-phase epochs fitted by L-BFGS (no learning rate)
    seconds: float
    eta_s: float  # estimated seconds until the planned last epoch ends
    is_best: bool


@dataclass(frozen=True)
class PhaseChanged:
    epoch: int  # the first epoch of the new phase
    phase: str  # "head" | "unfrozen" | "full"
    description: str
    unfrozen: list[str]  # block names whose parameters became trainable
    trainable_params: int
    total_params: int


@dataclass(frozen=True)
class CheckpointWritten:
    path: str
    epoch: int


@dataclass(frozen=True)
class Paused:
    epoch: int
    step: int


@dataclass(frozen=True)
class Resumed:
    epoch: int
    step: int


@dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop the run (e.g. a batch-size retry)."""

    message: str


@dataclass(frozen=True)
class Error:
    message: str
    suggestion: str = ""


@dataclass(frozen=True)
class FitEnd:
    result: RunResult


Event = FitStart | BatchEnd | EpochEnd | PhaseChanged | CheckpointWritten | Paused | Resumed | Notice | Error | FitEnd
