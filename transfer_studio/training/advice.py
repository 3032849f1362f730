"""The advisor's evidence: measurements on the project's own training images and device.

``advise(project, report)`` is what the CLI (`suggest`, `train --strategy auto`) and the app's
Strategy page call. It gathers ``core.strategy.Evidence`` and hands it to ``core.strategy.suggest``:

- backbone features of the training images (never the validation split), kept in the feature
  store, so training and later suggestions reuse them;
- a cross-validated linear probe on them: how far the frozen network already gets;
- a learning-rate range test on them: the new head's rate;
- invariance checks: probes trained on the original images scoring flipped and rotated copies
  of a sample of them (out of fold), so augmentation never flips what flipping changes;
- timed trials of each approach on the device (``training.trial``) and the folder's loading cost,
  combined into a time estimate with a range.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from transfer_studio.config import Project
from transfer_studio.core import strategy as core_strategy
from transfer_studio.core.dataset import ScanReport
from transfer_studio.errors import UserError
from transfer_studio.training import probe, trial
from transfer_studio.training.backbone import BackboneFeatures

INVARIANCE_SAMPLE = 100  # training images whose transformed copies are checked
# A transformation "changes the class" when probes trained with transformed copies score the held-out
# originals worse by more than this (and by more than one standard error): on the bench folders a
# horizontal flip cost glyphs (b/d, p/q) 1.5-8 points, photos and textures 0 +/- 0.5.
MAX_INVARIANCE_DROP = 0.01
INVARIANCES = ("hflip", "rotate")

Progress = Callable[[str, float], None]  # (what, fraction 0..1)


def _stage(progress: Progress | None, text: str, fraction: float) -> None:
    if progress is not None:
        progress(text, max(0.0, min(1.0, fraction)))


def gather(project: Project, report: ScanReport, *, progress: Progress | None = None,
           check: Callable[[], None] | None = None, trials: bool | str = True,
           invariances: tuple[str, ...] = INVARIANCES, time_budget_hours: float | None = None,
           ) -> core_strategy.Evidence:
    """Measure what the advisor needs; raises UserError for data it cannot use.

    ``trials``: True times all three approaches (the Strategy page compares them); "needed" times
    only the approach the evidence points to, and the cheaper ones while it is over the budget
    (strategy Auto at the start of a run: a trial of a large network on a CPU takes tens of seconds).
    """
    from transfer_studio.training import data as tdata
    from transfer_studio.training.engine import ensure_head

    t0 = time.perf_counter()
    snapshot = project.copy()
    if not snapshot.data.root:
        snapshot.data.root = str(report.root)  # the scanned folder, not yet the project's
    split = tdata.prepare_split(snapshot, report)
    classes = list(split.classes)
    ensure_head(snapshot, len(classes))
    rels = split.split["train"]
    labels = torch.as_tensor(split.labels["train"], dtype=torch.long)
    if len(rels) < 2:
        raise UserError("the advisor needs at least 2 training images")
    _stage(progress, "Loading the network", 0.02)
    bb = BackboneFeatures.of(snapshot, len(classes))
    if bb is None:
        raise UserError("the project's surgery leaves no final head whose input can be measured: the advisor "
                        "needs the new output layer at the end of the network")

    def feat_progress(base: float, span: float) -> Callable[[int, int], None]:
        return lambda done, total: _stage(progress, f"Computing features of {total} training image(s)",
                                          base + span * done / max(total, 1))

    x, computed = bb.features(split.root, rels, progress=feat_progress(0.05, 0.45), check=check)
    _stage(progress, "Cross-validating a linear classifier", 0.5)
    cv = probe.cross_validate(x, labels, len(classes), check=check)
    _stage(progress, "Learning-rate range test", 0.6)
    lr = probe.lr_range_test(x, labels, len(classes), check=check)

    checks: dict[str, dict[str, Any]] = {}
    sample = _spread(labels.numpy(), INVARIANCE_SAMPLE)
    for i, name in enumerate(invariances):
        _stage(progress, f"Checking whether {'flipping' if 'flip' in name else 'rotating'} keeps the classes",
               0.62 + 0.13 * i / max(1, len(invariances)))
        xt, n = bb.features(split.root, [rels[j] for j in sample], name, check=check)
        computed += n
        r = probe.invariance(x, labels, xt, sample, len(classes), name=name, c=cv.c, max_drop=MAX_INVARIANCE_DROP,
                             check=check)
        checks[name] = {"accuracy": r.accuracy, "transformed_accuracy": r.transformed_accuracy, "drop": r.drop,
                        "se": r.se, "preserves": r.preserves, "images": r.images}

    evidence = core_strategy.Evidence(
        train_images=len(rels), cv_accuracy=cv.accuracy, cv_se=cv.accuracy_se, c=cv.c, folds=cv.folds,
        lr=lr.suggested, lr_curve={"lrs": lr.lrs, "losses": lr.losses}, invariances=checks,
        imagenet_confidence=None, features_computed=computed, seconds=0.0)
    if trials:
        _stage(progress, "Timing the head's fit", 0.755)
    fit_seconds = _time_head_fit(x, labels, len(classes), cv.c, check) if trials else 0.0
    if trials == "needed":
        per_class = float(np.median([report.counts[c] for c in report.classes]))
        budget = core_strategy.DEFAULT_TIME_BUDGET_HOURS if time_budget_hours is None else time_budget_hours
        a = core_strategy.choose_approach(per_class, report.num_images, evidence)
        while True:
            evidence.timings.update(estimate_all(snapshot, report, split, bb, evidence, cv_seconds=cv.seconds,
                                                 fit_seconds=fit_seconds, progress=progress, check=check, approaches=(a,)))
            if a == 1 or evidence.timings[core_strategy.NAMES[a]]["seconds"] <= budget * 3600:
                break
            a -= 1
    elif trials:
        evidence.timings = estimate_all(snapshot, report, split, bb, evidence, cv_seconds=cv.seconds,
                                        fit_seconds=fit_seconds, progress=progress, check=check)
    evidence.seconds = round(time.perf_counter() - t0, 2)
    _stage(progress, "Done", 1.0)
    return evidence


def estimate_all(project: Project, report: ScanReport, split: Any, bb: BackboneFeatures,
                 evidence: core_strategy.Evidence, *, cv_seconds: float, fit_seconds: float = 0.0,
                 progress: Progress | None = None,
                 check: Callable[[], None] | None = None, approaches: tuple[int, ...] = (1, 2, 3),
                 ) -> dict[str, dict[str, Any]]:
    """Trial-based time estimates of the three approaches' recipes, as ``Evidence.timings``."""
    from transfer_studio.core import augment

    plans = core_strategy.plans_for(report, project.model.name, core_strategy.resolve_device(project.train.device),
                                     evidence)
    n_train, n_val = len(split.split["train"]), len(split.split.get("val") or [])
    val_cached = len(bb.space("eval").lookup(_keys(split.root, split.split.get("val") or []))[0])
    out: dict[str, dict[str, Any]] = {}
    for i, (a, plan) in enumerate(sorted((a, p) for a, p in plans.items() if a in approaches)):
        name = core_strategy.NAMES[a]
        _stage(progress, f"Timing a few training steps ({name})", 0.76 + 0.22 * i / 3)
        p = project.copy()
        p.augment.preset, p.augment.params = plan.augment, dict(plan.augment_params)
        comp = trial.compute(p, name, len(split.classes), unfreeze_from=plan.unfreeze_from,
                             batch_size=plan.batch_size, check=check)
        pre = bb.preprocess
        train_tf = augment.build_transform(pre, p.augment, train=True)
        eval_tf = augment.build_transform(pre, p.augment, train=False)
        load = trial.loading(split.root, split.split["train"], train_tf, eval_tf, check=check)
        passes = p.train.cache_passes if (a == 1 and plan.augment != "none") else 0
        est = trial.estimate(
            strategy=name, comp=comp, load=load, n_train=n_train, n_val=n_val, epochs=plan.epochs,
            head_epochs=plan.head_epochs, cached_train=n_train, cached_val=val_cached, augment_passes=passes,
            cv_s=cv_seconds, fit_s=fit_seconds, workers=bb.loader.num_workers, device=bb.device)
        out[name] = {"seconds": round(est.seconds, 2), "low": round(est.low, 2), "high": round(est.high, 2),
                     "parts": est.parts, "train_s_per_image": comp.train_s, "load_s_per_image": load.train_s}
    return out


def advise(project: Project, report: ScanReport, *, time_budget_hours: float | None = None,
           progress: Progress | None = None, check: Callable[[], None] | None = None,
           trials: bool | str = True) -> core_strategy.Suggestion:
    """The suggestion for the project's model and data, backed by ``gather``'s measurements."""
    evidence = gather(project, report, progress=progress, check=check, trials=trials,
                      time_budget_hours=time_budget_hours)
    return core_strategy.suggest(report, project.model.name, device=project.train.device,
                                 time_budget_hours=time_budget_hours, evidence=evidence)


def _time_head_fit(x: torch.Tensor, labels: torch.Tensor, num_classes: int, c: float,
                   check: Callable[[], None] | None) -> float:
    """Seconds of one converged fit at the chosen C, as the head phase runs it (up to its
    iteration cap): cross-validation's short, warm-started fits say little about that (a converged
    fit took 0.13-0.45x the cross-validation on bench_advisor's folders)."""
    from transfer_studio.training import head_fit

    t0 = time.perf_counter()
    probe.fit(x.flatten(1), labels, num_classes, c, max_iter=head_fit.MAX_ITER, check=check)
    return time.perf_counter() - t0


def _keys(root: str, rels: list[str]) -> list[bytes]:
    import os

    from transfer_studio.training.feature_store import digests

    return digests([os.path.join(root, r) for r in rels])


def _spread(labels: np.ndarray, n: int) -> np.ndarray:
    """Up to n indices spread evenly over the classes (deterministic)."""
    classes = np.unique(labels)
    per = max(1, math.ceil(n / max(1, len(classes))))
    picks = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        step = max(1, len(idx) // per)
        picks.extend(idx[::step][:per].tolist())
    return np.asarray(sorted(picks[:n]) if len(picks) > n else sorted(picks), dtype=np.int64)
