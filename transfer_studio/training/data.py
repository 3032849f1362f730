"""Training data: the frozen split, class balance, and reproducible loaders.

Reproducibility does not depend on RNG state surviving in DataLoader workers: every epoch's order
comes from a generator seeded with (seed, epoch), and every sample carries its own augmentation seed,
which the dataset wrapper sets before the transform runs. The same epoch therefore sees the same
images in the same order with the same augmentations whether it runs first, after a resume, with
0 or 8 workers, persistent or not.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from transfer_studio.config import Project
from transfer_studio.core import dataset as core_dataset
from transfer_studio.core import label_journal
from transfer_studio.core.augment import GLOBAL_RNG_LOCK
from transfer_studio.errors import UserError
from transfer_studio.training.device import LoaderSettings


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (seed, epoch, purpose, ...)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0]
               & 0x7FFFFFFFFFFFFFFF)


# purposes mixed into derive_seed
ORDER, AUGMENT, CACHE, GLOBAL = 1, 2, 3, 4


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.manual_seed(seed)


@dataclass
class SplitData:
    root: str
    classes: list[str]
    split: dict[str, list[str]]  # relpaths per split, as stored in the project
    labels: dict[str, list[int]]  # aligned with split
    report: object  # core.dataset.ScanReport

    def counts(self, part: str = "train") -> list[int]:
        return np.bincount(np.asarray(self.labels[part], dtype=np.int64),
                           minlength=len(self.classes)).tolist()

    @property
    def imbalance(self) -> float:
        c = [x for x in self.counts("train") if x > 0]
        return max(c) / min(c) if c else 1.0


def prepare_split(project: Project, report: object | None = None) -> SplitData:
    """Scan the data folder, and use the project's frozen split or make (and record) one."""
    data = project.data
    if not data.root:
        raise UserError("the project has no data folder: set data.root (or pass DATA_DIR)")
    if report is None:
        report = core_dataset.scan(data.root)
    classes = list(report.classes)
    if len(classes) < 2:
        raise UserError(f"{data.root} holds {len(classes)} class folder(s) with images; training needs "
                        "at least 2 (one sub-folder per class)")
    if data.classes and list(data.classes) != classes:
        raise UserError(f"the classes in {data.root} ({', '.join(classes)}) differ from the project's "
                        f"({', '.join(data.classes)}): point the project at the original data or clear "
                        "its split to start over")
    split = data.split
    if not split:
        split = core_dataset.make_split(report, val=data.val_split, test=data.test_split, seed=data.seed)
    split = {k: list(v) for k, v in split.items()}
    label_of = dict(zip(report.files, report.labels, strict=True))
    # Images the label review moved (or set aside) since the split was made: their names now.
    split, _ = label_journal.follow_split(report.root, split, label_of)
    labels: dict[str, list[int]] = {}
    for part, rels in split.items():
        missing = [r for r in rels if r not in label_of]
        if missing:
            raise UserError(f"{len(missing)} image(s) of the project's {part} split are no longer in "
                            f"{data.root} (e.g. {missing[0]}): restore them, or clear the split to "
                            "re-split the folder")
        labels[part] = [int(label_of[r]) for r in rels]
    split.setdefault("train", [])
    split.setdefault("val", [])
    labels.setdefault("train", [])
    labels.setdefault("val", [])
    sd = SplitData(str(report.root), classes, split, labels, report)
    empty = [c for c, n in zip(classes, sd.counts("train"), strict=True) if n == 0]
    if empty:
        raise UserError(f"class(es) {', '.join(empty)} have no training images after the split: add "
                        "images or lower the validation fraction")
    return sd


class SeededDataset(Dataset):
    """Wraps an ``ImageDataset``: item ``(index, seed)`` seeds the RNGs, then loads and transforms."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        # torchvision's v2 transforms draw from torch's global generator (some from `random`); the
        # lock keeps another thread (the Augment page's preview) from drawing in between.
        with GLOBAL_RNG_LOCK:
            torch.default_generator.manual_seed(seed)
            random.seed(seed)
            return self.base[index]


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of (index, augmentation seed) whose order is a function of (seed, epoch) only.

    ``weights`` (per sample) switch to sampling with replacement in proportion to them (balanced
    sampling). A trailing batch of a single sample is dropped: BatchNorm cannot train on one.
    """

    def __init__(self, n: int, batch_size: int, seed: int, *, shuffle: bool = True,
                 weights: Sequence[float] | None = None, purpose: int = AUGMENT, pass_index: int = 0):
        self.n, self.batch_size, self.seed = int(n), max(1, int(batch_size)), int(seed)
        self.shuffle = shuffle
        self.weights = torch.as_tensor(weights, dtype=torch.double) if weights is not None else None
        self.purpose, self.pass_index = purpose, pass_index
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, ORDER))
        if self.weights is not None:
            idx = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        elif self.shuffle:
            idx = torch.randperm(self.n, generator=g)
        else:
            idx = torch.arange(self.n)
        ga = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, self.purpose, self.pass_index))
        seeds = torch.randint(0, 2**62, (self.n,), generator=ga)
        return idx, seeds

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        idx, seeds = self.order()
        pairs = list(zip(idx.tolist(), seeds.tolist(), strict=True))
        for start in range(0, self.n, self.batch_size):
            batch = pairs[start:start + self.batch_size]
            if len(batch) == 1 and self.n > 1 and self.shuffle:
                return
            yield batch

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest > 1 or (rest == 1 and (self.n == 1 or not self.shuffle)) else 0)


def balanced_weights(labels: Sequence[int], num_classes: int) -> list[float]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    return [1.0 / counts[y] for y in labels]


def class_weights(counts: Sequence[int]) -> torch.Tensor:
    """Inverse-frequency weights normalised so a balanced dataset gets all ones."""
    c = torch.as_tensor(counts, dtype=torch.float32).clamp_min(1)
    return c.sum() / (len(c) * c)


def image_dataset(split: SplitData, part: str, transform) -> SeededDataset:
    return SeededDataset(core_dataset.ImageDataset(split.root, split.split[part], split.labels[part],
                                                   transform))


def make_loader(ds: Dataset, sampler: EpochBatchSampler, settings: LoaderSettings) -> DataLoader:
    kwargs = {}
    if settings.num_workers > 0:
        kwargs["persistent_workers"] = settings.persistent_workers
        if settings.prefetch_factor:
            kwargs["prefetch_factor"] = settings.prefetch_factor
    return DataLoader(ds, batch_sampler=sampler, num_workers=settings.num_workers,
                      pin_memory=settings.pin_memory, **kwargs)
