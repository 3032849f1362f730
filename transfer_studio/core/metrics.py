"""Evaluation of a trained run or an exported bundle on labelled images.

``evaluate`` loads the model (``export.load_run`` / ``export.load_bundle``), picks the images (the
run's own test split, else its validation split, or a folder the user names), runs batched inference
in eval mode without gradients and returns an ``EvalReport``: accuracy, top-5, per-class precision /
recall / F1 / support, the confusion matrix, the most confidently wrong images, and the raw per-image
arrays (paths, true labels, probabilities) the GUI needs for its own views. The arrays stay out of
``to_json``: the JSON document is the summary the CLI prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transfer_studio.core import devices
from transfer_studio.errors import Cancelled, UserError

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]

DEFAULT_WORST = 10
OPTIMISTIC_NOTE = ("the validation split also chose the best epoch, so these figures are optimistic; "
                   "a test split (or a separate folder) gives an unbiased estimate")
TRAINED_ON_NOTE = ("this is the folder the model was trained on, so these images include its training "
                  "images and the figures are optimistic")


@dataclass
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class WrongPrediction:
    path: str  # absolute path of the image
    label: str  # its true class
    predicted: str  # the model's top-1 class
    probability: float  # the model's probability for ``predicted``


@dataclass
class SkippedImage:
    path: str
    reason: str


@dataclass
class EvalReport:
    source: str  # the run or bundle directory
    source_kind: str  # "run" | "bundle"
    data_root: str
    split: str  # "test" | "val" | "train" | "all" (every image of a folder the user named)
    optimistic: bool  # True when the images are the validation split that chose the best epoch
    note: str  # one sentence on what the figures mean ("" when nothing to add)
    classes: list[str]
    num_images: int
    accuracy: float
    top5: float | None  # None when the model has fewer than 5 classes
    per_class: dict[str, ClassMetrics]
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted class
    worst: list[WrongPrediction]
    skipped: list[SkippedImage] = field(default_factory=list)
    # Labels the label review corrected since a run was trained (core.label_journal), used here:
    # [{path, label_then, label_now}] (label_now "" when the image was set aside).
    corrected: list[dict[str, str]] = field(default_factory=list)
    # Raw per-image arrays, aligned (kept out of the JSON): absolute paths, true class indices (N,),
    # softmax probabilities (N, C) in the order of ``classes``.
    paths: list[str] = field(default_factory=list, repr=False)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32), repr=False)

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1) if len(self.probabilities) else np.zeros(0, np.int64)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "source_kind": self.source_kind,
            "data_root": self.data_root,
            "split": self.split,
            "optimistic": self.optimistic,
            "note": self.note,
            "num_images": self.num_images,
            "accuracy": self.accuracy,
        }
        if self.top5 is not None:
            out["top5"] = self.top5
        out.update({
            "classes": list(self.classes),
            "per_class": {name: {"precision": m.precision, "recall": m.recall, "f1": m.f1,
                                 "support": m.support} for name, m in self.per_class.items()},
            "confusion_matrix": [list(map(int, row)) for row in self.confusion_matrix],
            "worst": [{"path": w.path, "label": w.label, "predicted": w.predicted,
                       "probability": w.probability} for w in self.worst],
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        })
        if self.corrected:
            out["corrected_since_training"] = [dict(c) for c in self.corrected]
        return out


# -- the numbers ---------------------------------------------------------------------------------


def compute_metrics(labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str], paths:
                    Sequence[str] | None = None, *, worst: int = DEFAULT_WORST) -> dict[str, Any]:
    """Accuracy, top-5, per-class metrics, confusion matrix and the most confidently wrong images.

    ``labels`` (N,) are class indices into ``classes``; ``probabilities`` (N, C) rows sum to 1.
    A class never predicted has precision 0 (and one absent from the labels recall 0), as
    scikit-learn reports with ``zero_division=0``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n, c = len(labels), len(classes)
    if probabilities.shape != (n, c):
        raise ValueError(f"probabilities have shape {probabilities.shape}, expected {(n, c)}")
    if n == 0:
        raise UserError("no images to evaluate")
    predicted = probabilities.argmax(axis=1)
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (labels, predicted), 1)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted_count = cm.sum(axis=0)
    precision = np.divide(tp, predicted_count, out=np.zeros(c), where=predicted_count > 0)
    recall = np.divide(tp, support, out=np.zeros(c), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(c), where=denom > 0)

    top5 = None
    if c >= 5:
        # A label is in the top 5 when fewer than 5 classes score strictly higher (ties count for it,
        # as in scikit-learn's top_k_accuracy_score).
        own = probabilities[np.arange(n), labels]
        higher = (probabilities > own[:, None]).sum(axis=1)
        top5 = float((higher < 5).mean())

    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][: max(0, worst)]
    worst_list = [WrongPrediction(path=str(paths[i]) if paths is not None else str(i),
                                  label=classes[labels[i]], predicted=classes[predicted[i]],
                                  probability=float(probabilities[i, predicted[i]])) for i in order]
    return {
        "accuracy": float((predicted == labels).mean()),
        "top5": top5,
        "per_class": {name: ClassMetrics(float(precision[k]), float(recall[k]), float(f1[k]), int(support[k]))
                      for k, name in enumerate(classes)},
        "confusion_matrix": cm.tolist(),
        "worst": worst_list,
    }


# -- choosing the images -------------------------------------------------------------------------


@dataclass
class _Selection:
    root: str
    split: str
    optimistic: bool
    note: str
    relpaths: list[str]
    labels: list[int]  # indices into the model's classes
    skipped: list[SkippedImage]
    corrected: list[dict[str, str]] = field(default_factory=list)


def _run_selection(project: Any, split: str | None, since: float | None = None) -> _Selection:
    """The images of a run's own split (test when it has one, else validation). Images the label
    review moved since ``since`` (when the run was trained) are found through its journal."""
    from transfer_studio.core import dataset as core_dataset
    from transfer_studio.core.label_journal import Journal

    data = project.data
    saved = data.split or {}
    if split is None:
        split = "test" if saved.get("test") else "val"
    if not saved.get(split):
        have = ", ".join(k for k in ("train", "val", "test") if saved.get(k)) or "none"
        raise UserError(f"the run has no {'validation' if split == 'val' else split} images (its splits: "
                        f"{have}); choose another split, or evaluate on a folder of labelled images")
    root = data.root
    if not root or not Path(root).is_dir():
        raise UserError(f"the run's data folder {root or '(none)'} is not available: evaluate on "
                        "a folder of labelled images instead")
    report = core_dataset.scan(root)
    model_classes = list(data.classes) or list(report.classes)
    index_of = {name: k for k, name in enumerate(model_classes)}
    label_of = {rel: report.classes[lab] for rel, lab in zip(report.files, report.labels, strict=True)}
    reasons = {s.path: s.reason for s in report.skipped}
    rels, labels, skipped = [], [], []
    fixes = Journal(root).resolve(saved[split], since)  # label corrections since the run was trained
    for rel in saved[split]:
        fix = fixes.get(rel)
        if rel not in label_of and fix is not None:
            if fix.set_aside:
                skipped.append(SkippedImage(str(Path(root) / rel), "set aside in the label review since the run "
                                            "was trained"))
                continue
            rel = fix.file or rel
        name = label_of.get(rel)
        if name is None or name not in index_of:
            skipped.append(SkippedImage(str(Path(root) / rel), reasons.get(rel, "no longer in the data folder")))
            continue
        rels.append(rel)
        labels.append(index_of[name])
    optimistic = split == "val"
    corrected = [{"path": rel, "label_then": f.label_then or "", "label_now": f.label_now or ""}
                 for rel, f in sorted(fixes.items()) if f.label_then is not None]
    note = OPTIMISTIC_NOTE if optimistic else ""
    if corrected:
        note = "; ".join(filter(None, [note, f"{len(corrected)} label(s) were corrected since the run was trained "
                                             "(corrected_since_training): the figures use the corrected labels"]))
    return _Selection(root, split, optimistic, note, rels, labels, skipped, corrected)


def _folder_selection(data_dir: str | os.PathLike[str], classes: Sequence[str], split: str | None) -> _Selection:
    """The images of a folder the user names: class sub-folders, or train/val/test folders of them."""
    from transfer_studio.core import dataset as core_dataset

    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"data folder not found: {root}")
    report = core_dataset.scan(root)
    if not report.files:
        raise UserError(f"{root} holds no readable images in class sub-folders (one sub-folder per class)")
    unknown = [c for c in report.classes if c not in classes]
    if unknown:
        raise UserError(f"{root} has class folder(s) the model does not know: {', '.join(unknown[:5])}"
                        f"{' ...' if len(unknown) > 5 else ''}; the model's classes are "
                        f"{', '.join(classes[:20])}{' ...' if len(classes) > 20 else ''}")
    if report.layout == "split":
        present = [s for s in ("test", "val", "train") if s in set(report.file_splits)]
        chosen = split or next(s for s in ("test", "val", "train") if s in present)
        if chosen not in present:
            raise UserError(f"{root} has no {chosen}/ folder (it has {', '.join(present)})")
    else:
        if split is not None:
            raise UserError(f"a split (test/val/train) applies to a run's own data or to a folder with "
                            f"train/val/test sub-folders; {root} is a plain class-per-folder tree: "
                            "evaluate all of it, without a split")
        chosen = "all"
    index_of = {name: k for k, name in enumerate(classes)}
    rels, labels = [], []
    for rel, lab, part in zip(report.files, report.labels, report.file_splits, strict=True):
        if chosen == "all" or part == chosen:
            rels.append(rel)
            labels.append(index_of[report.classes[lab]])
    missing = [c for c in classes if c not in set(report.classes)]
    note = (f"the folder has no images of {len(missing)} of the model's {len(classes)} classes "
            f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})") if missing else ""
    skipped = [SkippedImage(str(root / s.path), s.reason) for s in report.skipped]
    return _Selection(str(root), chosen, False, note, rels, labels, skipped)


# -- inference -----------------------------------------------------------------------------------


class _EvalImages(torch.utils.data.Dataset):
    """Images by absolute path; an unreadable one yields None and its reason (never a substitute)."""

    def __init__(self, paths: Sequence[str], transform: Callable[[Any], torch.Tensor]) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int, str]:
        from transfer_studio.core.imageio import ImageReadError, load_rgb

        try:
            image = load_rgb(self.paths[index])
        except (ImageReadError, OSError) as exc:
            return None, index, str(exc)
        return self.transform(image), index, ""


def _collate(items: list[tuple[torch.Tensor | None, int, str]]) -> tuple[torch.Tensor | None, list[int],
                                                                        list[tuple[int, str]]]:
    good = [(x, i) for x, i, _ in items if x is not None]
    bad = [(i, reason) for x, i, reason in items if x is None]
    batch = torch.stack([x for x, _ in good]) if good else None
    return batch, [i for _, i in good], bad


def pick_device(name: str = "auto") -> torch.device:
    """The device to evaluate on (``core.devices.resolve``, the one device rule)."""
    return devices.resolve(name)


def predict_probabilities(model: nn.Module, paths: Sequence[str], transform: Callable[[Any], torch.Tensor], *,
                          batch_size: int = 64, device: str = "auto", progress: Progress | None = None,
                          cancel: Cancel | None = None) -> tuple[np.ndarray, np.ndarray, list[SkippedImage]]:
    """Softmax probabilities of the readable images: (kept indices into paths, (K, C) array, skipped)."""
    dev = pick_device(device)
    model = model.to(dev).eval()
    # On CPU the model and the decoding compete for the same cores: decode in-line unless there are
    # cores to spare; on an accelerator decoding is the bottleneck.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(8, max(1, cores - 1)) if dev.type != "cpu" else (0 if cores <= 4 else min(4, cores // 4))
    if len(paths) <= batch_size:
        workers = 0  # one batch: starting worker processes costs more than it saves
    loader = torch.utils.data.DataLoader(_EvalImages(paths, transform), batch_size=batch_size, shuffle=False,
                                         num_workers=workers, collate_fn=_collate,
                                         pin_memory=dev.type == "cuda")
    kept: list[int] = []
    chunks: list[np.ndarray] = []
    skipped: list[SkippedImage] = []
    done = 0
    if progress:
        progress(0, len(paths))
    with torch.inference_mode():
        for batch, indices, bad in loader:
            if cancel is not None and cancel():
                raise Cancelled("evaluation cancelled")
            skipped.extend(SkippedImage(paths[i], reason) for i, reason in bad)
            if batch is not None:
                logits = model(batch.to(dev, non_blocking=True))
                chunks.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
                kept.extend(indices)
            done += len(indices) + len(bad)
            if progress:
                progress(done, len(paths))
    probs = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    return np.asarray(kept, dtype=np.int64), probs, skipped


# -- the entry point -----------------------------------------------------------------------------


def evaluate(source: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None, *,
             split: str | None = None, progress: Progress | None = None, cancel: Cancel | None = None,
             worst: int = DEFAULT_WORST, batch_size: int = 64, device: str = "auto") -> EvalReport:
    """Evaluate a run directory or an exported bundle directory.

    Without ``data_dir``: a run's test split when it has one, else its validation split (flagged as
    optimistic: the validation split chose the best epoch). A bundle is evaluated on its source run's
    split while that run still exists. With ``data_dir``: every image of that class-per-folder tree
    (or, for a tree with train/val/test folders, ``split``, by default test, else val); its class
    folders must be among the model's classes.
    """
    from transfer_studio.core import export
    from transfer_studio.core.augment import build_transform

    if split not in (None, "val", "test"):
        raise UserError(f"unknown split {split!r}: choose val or test")
    src = Path(source)
    kind = export.source_kind(src)
    meta: dict[str, Any] = {}
    if kind == "bundle":
        model, meta = export.load_bundle(src)
        classes = list(meta["classes"])
        preprocess = export.bundle_preprocess(meta)
        project = None
        if data_dir is None:
            run_dir = (meta.get("source") or {}).get("run_dir")
            if not run_dir or not (Path(run_dir) / export.RUN_PROJECT).is_file():
                raise UserError(f"the bundle's training run ({run_dir or 'unknown'}) is not available to "
                                "pick its test/validation images: evaluate on a folder of labelled images instead "
                                "(one sub-folder per class)")
            project = export.load_run_project(Path(run_dir))
    else:
        model, project = export.load_run(src)
        classes = list(project.data.classes)
        from transfer_studio.core.network import project_preprocess

        preprocess = project_preprocess(project)

    if data_dir is None:
        trained = src if kind != "bundle" else Path((meta.get("source") or {}).get("run_dir") or src)
        since = (trained / export.RUN_PROJECT).stat().st_mtime if (trained / export.RUN_PROJECT).is_file() else None
        selection = _run_selection(project, split, since)
    else:
        selection = _folder_selection(data_dir, classes, split)
        trained_on = project.data.root if project is not None else (meta.get("source") or {}).get("data_root")
        if (trained_on and selection.split in ("all", "train")
                and Path(trained_on).resolve() == Path(selection.root).resolve()):
            selection.optimistic = True
            selection.note = "; ".join(filter(None, [TRAINED_ON_NOTE, selection.note]))
    if not selection.relpaths:
        raise UserError(f"no readable images to evaluate in the {selection.split} split of {selection.root}")

    transform = build_transform(preprocess, None, train=False)
    paths = [str(Path(selection.root) / rel) for rel in selection.relpaths]
    kept, probs, unreadable = predict_probabilities(model, paths, transform, batch_size=batch_size,
                                                    device=device, progress=progress, cancel=cancel)
    if len(kept) == 0:
        raise UserError(f"none of the {len(paths)} images in {selection.root} could be read")
    labels = np.asarray(selection.labels, dtype=np.int64)[kept]
    kept_paths = [paths[i] for i in kept]
    numbers = compute_metrics(labels, probs, classes, kept_paths, worst=worst)
    return EvalReport(
        source=str(src), source_kind=kind, data_root=selection.root, split=selection.split,
        optimistic=selection.optimistic, note=selection.note, classes=classes, num_images=len(kept),
        accuracy=numbers["accuracy"], top5=numbers["top5"], per_class=numbers["per_class"],
        confusion_matrix=numbers["confusion_matrix"], worst=numbers["worst"],
        skipped=selection.skipped + unreadable, corrected=selection.corrected, paths=kept_paths, labels=labels,
        probabilities=probs.astype(np.float32),
    )
