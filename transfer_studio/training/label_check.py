"""The label-issue finder: which images are probably mislabelled, near-duplicated or fit no class.

One pass of the project's backbone (features from the feature store when it has them), then
everything runs on the feature matrix:

1. Out-of-fold probabilities from linear probes (``training.probe``'s objective) over stratified folds: each
   image is scored by probes that never saw it. An ensemble of probes over several regularisation
   strengths (C around the cross-validated one) is averaged, and so are the leave-one-out votes of
   each image's nearest neighbours in feature space.
2. Images that confident learning flags on those probabilities (``core.label_issues``) are left out
   of the training folds, and the probes are fitted again: a wrong label no longer pulls the probe
   towards itself, so the second round's probabilities separate the wrong labels better.
3. Images are ranked by self-confidence (the probability of their given label); the suggestion is
   the most probable other class.

docs/labels.md has the method's precision on folders with labels flipped on purpose, next to a
plain baseline (scikit-learn's LogisticRegression in k folds, ranked the same way).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from transfer_studio.config import Project
from transfer_studio.core import label_issues
from transfer_studio.errors import Cancelled, UserError
from transfer_studio.training import probe

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]

ENSEMBLE_STEPS = (0.1, 1.0, 10.0)  # the probes' C: these multiples of the cross-validated C
NEIGHBOURS = 10
FOLDS = 5
PROBE_ITER = 150  # L-BFGS iterations per probe (warm-started along the C values)


def reduced(x: torch.Tensor) -> torch.Tensor:
    """Features scaled to unit RMS and, with fewer images than dimensions, written in an orthonormal
    basis of their span: the probes' solutions lie in that span (representer theorem), so the fits
    are the same problem in N instead of D dimensions."""
    x = x.float()
    scale = probe.feature_scale(x)
    if len(x) < 0.7 * x.shape[1]:
        _, _, vh = torch.linalg.svd(x.double(), full_matrices=False)
        x = x @ vh.T.float()
    return x / scale


def out_of_fold(x: torch.Tensor, y: torch.Tensor, num_classes: int, cs: Sequence[float],
                parts: Sequence[np.ndarray], *, exclude: np.ndarray | None = None,
                check: Callable[[], None] | None = None) -> np.ndarray:
    """(N, K) probabilities, each image's from the probe fitted on the other folds, averaged over
    the C values ``cs``; images in ``exclude`` are never trained on (they are still scored). All
    folds' probes are fitted as one problem per C (``probe._fit_folds``: one optimiser loop instead
    of k), warm-started along ``cs``. ``x`` is already scaled (``reduced``)."""
    n = len(y)
    k = len(parts)
    held = torch.zeros(k, n, dtype=torch.bool)
    for f, idx in enumerate(parts):
        held[f, torch.as_tensor(idx, dtype=torch.long)] = True
    train = ~held
    if exclude is not None:
        excluded = torch.as_tensor(np.asarray(exclude, dtype=bool))
        for f in range(k):
            kept = train[f] & ~excluded
            # never drop a class from a fold: it could not be suggested there
            if len(torch.unique(y[kept])) == len(torch.unique(y[train[f]])):
                train[f] = kept
    out = np.zeros((n, num_classes), dtype=np.float64)
    state: tuple[torch.Tensor, torch.Tensor] | None = None
    with probe.small_ops(x):
        for c in sorted(cs):
            state = probe._fit_folds(x, y, train, num_classes, c, None, state, PROBE_ITER, check)
            with torch.no_grad():
                p = torch.softmax(torch.einsum("nd,fkd->fnk", x, state[0]) + state[1][:, None, :], 2)
            for f, idx in enumerate(parts):
                out[idx] += p[f, torch.as_tensor(idx, dtype=torch.long)].double().numpy()
    return out / len(cs)


def find_issues(x: torch.Tensor | np.ndarray, labels: Sequence[int] | np.ndarray, num_classes: int, *,
                seed: int = 0, folds: int = FOLDS, neighbours: label_issues.Neighbours | None = None,
                check: Callable[[], None] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The finder on a feature matrix: (N, K) final out-of-fold probabilities and what was done."""
    t0 = time.perf_counter()
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32) if not isinstance(x, torch.Tensor) else x.float()
    y_np = np.asarray(labels, dtype=np.int64)
    y = torch.from_numpy(y_np)
    if neighbours is None:
        neighbours = label_issues.neighbours(label_issues.normalise(x.numpy()), NEIGHBOURS, check=check)
    knn = label_issues.knn_probabilities(neighbours, y_np, num_classes)
    k = probe.effective_folds(y_np, folds)
    parts = probe.stratified_folds(y_np, k, seed)
    cv = probe.cross_validate(x, y, num_classes, folds=k, seed=seed, check=check)
    cs = [cv.c * step for step in ENSEMBLE_STEPS]
    xr = reduced(x)
    first = out_of_fold(xr, y, num_classes, cs, parts, check=check)
    suspects = label_issues.confident_issues((first + knn) / 2, y_np, num_classes)
    second = out_of_fold(xr, y, num_classes, cs, parts, exclude=suspects, check=check)
    method = {"c": cv.c, "cs": cs, "folds": k, "cv_accuracy": round(cv.accuracy, 4), "neighbours": NEIGHBOURS,
              "first_round_suspects": int(suspects.sum()), "seconds": round(time.perf_counter() - t0, 3)}
    return second, method


def check_labels(project: Project, report: Any = None, *, progress: Progress | None = None,
                 cancel: Cancel | None = None, duplicate_similarity: float = label_issues.DUPLICATE_SIMILARITY,
                 ) -> label_issues.LabelCheck:
    """Every image of the project's data folder, ranked by how doubtful its label is, with
    near-duplicates across classes and splits and images that fit no class (see the module
    docstring). One pass of the backbone; Cancelled when ``cancel()`` turns true."""
    from transfer_studio.core import dataset

    def check() -> None:
        if cancel is not None and cancel():
            raise Cancelled("label check cancelled")

    def stage(fraction: float) -> None:
        if progress is not None:
            progress(int(1000 * fraction), 1000)

    if not project.data.root:
        raise UserError("the project has no data folder: choose one on the Data page (or pass DATA_DIR)")
    if report is None:
        report = dataset.scan(project.data.root, cancel=cancel)
    classes = list(report.classes)
    files = list(report.files)
    labels = np.asarray(report.labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(classes))
    if counts.min() < 2:
        small = [c for c, n in zip(classes, counts, strict=True) if n < 2]
        raise UserError(f"class(es) {', '.join(small)} have fewer than 2 images: the label check compares each "
                        "image with probes trained on other images of its class")
    stage(0.0)
    x, computed = image_features(project, report.root, files, len(classes),
                                 progress=lambda d, t: stage(0.8 * d / max(t, 1)), check=check)
    stage(0.8)
    check()
    unit = label_issues.normalise(x.numpy())
    nb = label_issues.neighbours(unit, NEIGHBOURS, threshold=duplicate_similarity, check=check,
                                 progress=lambda d, t: stage(0.8 + 0.05 * d / max(t, 1)))
    probabilities, method = find_issues(x, labels, len(classes), seed=project.data.seed, neighbours=nb, check=check)
    stage(1.0)
    method.update({"model": project.model.name, "features_computed": computed, "feature_dim": int(x.shape[1]),
                   "duplicate_similarity": duplicate_similarity})
    return label_issues.build_report(report.root, classes, files, labels, probabilities, nb,
                                     parts=_parts(project, report, files), method=method)


def image_features(project: Project, root: str, files: Sequence[str], num_classes: int, *,
                   progress: Progress | None = None, check: Callable[[], None] | None = None,
                   ) -> tuple[torch.Tensor, int]:
    """(N x D backbone features of ``files`` under ``root``: what the project's new head reads, from
    the feature store when it has them; how many were computed)."""
    from transfer_studio.training.backbone import BackboneFeatures

    snapshot = project.copy()
    snapshot.data.root = root
    bb = BackboneFeatures.of(snapshot, num_classes)
    if bb is None:
        raise UserError("the label check needs the features the network's head reads, and the layer changes on "
                        "the Model page hide them: check the labels with the plain pretrained network")
    return bb.features(root, list(files), progress=progress, check=check)


def _parts(project: Project, report: Any, files: list[str]) -> list[str | None]:
    """Each image's part of the project's split (train/val/test), else of the folder's own split."""
    split = project.data.split or {}
    part_of = {rel: part for part, rels in split.items() for rel in rels}
    folder = dict(zip(report.files, report.file_splits, strict=True))
    return [part_of.get(rel) or folder.get(rel) for rel in files]
