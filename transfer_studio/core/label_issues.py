"""Finding label issues from features and out-of-fold probabilities (numpy only; no model here).

``training.label_check`` computes the backbone features and the probes' out-of-fold probabilities;
this module ranks the images and finds the rest:

* ``neighbours``: each image's k most similar other images by cosine similarity of features,
  blockwise (a block of rows against all images at a time: memory is block x N, so 50,000 images
  need no 50,000 x 50,000 matrix), and, in the same pass, every pair above a similarity threshold
  (near-duplicates);
* ``knn_probabilities``: leave-one-out class votes of those neighbours;
* ``confident_issues``: confident learning's off-diagonal of the confident joint (Northcutt et al.,
  2021; cleanlab's ``find_label_issues``): an image is flagged when another class's probability
  reaches that class's threshold (the mean probability its own images give it) and beats the
  given label;
* ``outlier_scores``: mean cosine distance to the nearest neighbours, flagged when robustly extreme
  (an image that fits no class well: far from every image of every class).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Check = Callable[[], None]
BLOCK = 1024  # rows per block of the similarity pass (block x N float32 at a time)
DUPLICATE_SIMILARITY = 0.97  # cosine similarity of backbone features above which images count as near-duplicates
OUTLIER_Z = 4.0  # robust z-score (median / MAD) of the neighbour distance that flags an outlier


@dataclass
class Neighbours:
    index: np.ndarray  # (N, k) int64: the k most similar other images, most similar first
    similarity: np.ndarray  # (N, k) float32
    pairs: np.ndarray  # (M, 2) int64, i < j: pairs with similarity >= the threshold
    pair_similarity: np.ndarray  # (M,) float32


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def neighbours(x: np.ndarray, k: int = 10, *, threshold: float = DUPLICATE_SIMILARITY, block: int = BLOCK,
               check: Check | None = None, progress: Callable[[int, int], None] | None = None) -> Neighbours:
    """Top-k neighbours of every row of ``x`` (unit rows: cosine similarity) and every pair at or
    above ``threshold``, computed one block of rows at a time."""
    n = len(x)
    k = max(0, min(k, n - 1))
    index = np.zeros((n, k), dtype=np.int64)
    sims = np.zeros((n, k), dtype=np.float32)
    pairs: list[np.ndarray] = []
    pair_sims: list[np.ndarray] = []
    for start in range(0, n, block):
        if check is not None:
            check()
        stop = min(n, start + block)
        s = x[start:stop] @ x.T  # (b, N)
        rows = np.arange(stop - start)
        s[rows, start + rows] = -np.inf  # not its own neighbour
        if k:
            top = _top_k(s, k)
            top_s = np.take_along_axis(s, top, 1)
            order = np.lexsort((top, -top_s), axis=1)  # most similar first; ties: the lower index first
            index[start:stop] = np.take_along_axis(top, order, 1)
            sims[start:stop] = np.take_along_axis(top_s, order, 1)
        i, j = np.nonzero(s >= threshold)
        keep = j > start + i  # each pair once
        if keep.any():
            pairs.append(np.stack([start + i[keep], j[keep]], 1))
            pair_sims.append(s[i[keep], j[keep]])
        if progress is not None:
            progress(stop, n)
    return Neighbours(index, sims, np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64),
                      np.concatenate(pair_sims).astype(np.float32) if pair_sims else np.zeros(0, np.float32))


def _top_k(s: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k largest values (in no order); where ties straddle the k-th
    value, the lowest indices, so the result does not depend on how the rows were blocked."""
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(s, top, 1).min(1)
    ties = np.flatnonzero((s >= kth[:, None]).sum(1) > k)  # rare: equal similarities at the boundary
    for r in ties:
        above = np.flatnonzero(s[r] > kth[r])
        level = np.flatnonzero(s[r] == kth[r])[: k - len(above)]
        top[r] = np.concatenate([above, level])
    return top


def knn_probabilities(nb: Neighbours, labels: np.ndarray, num_classes: int, smoothing: float = 0.5) -> np.ndarray:
    """(N, K): the share of each image's neighbours in each class (its own label never votes for
    itself), smoothed towards uniform by ``smoothing`` pseudo-votes."""
    labels = np.asarray(labels, dtype=np.int64)
    n, k = nb.index.shape
    votes = np.zeros((n, num_classes), dtype=np.float64)
    if k:
        np.add.at(votes, (np.repeat(np.arange(n), k), labels[nb.index].ravel()), 1.0)
    return (votes + smoothing / num_classes) / (k + smoothing)


def self_confidence(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    return probabilities[np.arange(len(labels)), labels]


def best_other(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The most probable class other than the given one, per image."""
    p = np.array(probabilities, dtype=np.float64, copy=True)
    p[np.arange(len(labels)), labels] = -np.inf
    return p.argmax(1)


def confident_issues(probabilities: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Boolean mask of images confident learning calls mislabelled (see the module docstring)."""
    labels = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    thresholds = np.array([p[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(num_classes)])
    above = p >= thresholds[None, :] - 1e-12
    masked = np.where(above, p, -np.inf)
    confident = masked.argmax(1)
    has = above.any(1)
    return has & (confident != labels)


def outlier_scores(nb: Neighbours, z: float = OUTLIER_Z) -> tuple[np.ndarray, np.ndarray]:
    """(mean cosine distance to the neighbours, flagged mask): flagged when the distance lies
    more than ``z`` robust standard deviations (1.4826 MAD) above the median."""
    if nb.similarity.shape[1] == 0:
        zeros = np.zeros(len(nb.index))
        return zeros, zeros.astype(bool)
    dist = 1.0 - nb.similarity.astype(np.float64).mean(1)
    med = np.median(dist)
    mad = 1.4826 * np.median(np.abs(dist - med))
    spread = max(mad, 1e-6)
    return dist, (dist - med) / spread > z


def precision_at(scores: np.ndarray, truth: Sequence[int] | np.ndarray, m: int | None = None) -> float:
    """Share of true issues among the ``m`` lowest scores (m = the number of true issues)."""
    truth = set(int(t) for t in truth)
    m = len(truth) if m is None else m
    if m == 0:
        return 1.0
    top = np.argsort(np.asarray(scores), kind="stable")[:m]
    return len(truth & {int(t) for t in top}) / m


# -- the report -------------------------------------------------------------------------------------


@dataclass
class ImageIssue:
    file: str  # relpath under the data folder
    given: str  # its class now
    suggested: str  # the most probable other class
    self_confidence: float  # out-of-fold probability of the given class
    suggested_probability: float
    rank: int  # 1 = the most doubtful
    flagged: bool  # confident learning says mislabelled
    outlier: bool  # fits no class well (far from every image)
    part: str | None = None  # train / val / test in the project's split


@dataclass
class NearDuplicate:
    a: str
    b: str
    similarity: float
    label_a: str
    label_b: str
    part_a: str | None
    part_b: str | None

    @property
    def kind(self) -> str:
        what = []
        if self.label_a != self.label_b:
            what.append("different classes")
        if self.part_a != self.part_b and self.part_a and self.part_b:
            what.append(f"{self.part_a} and {self.part_b}")
        return ", ".join(what)


@dataclass
class LabelCheck:
    root: str
    classes: list[str]
    images: list[ImageIssue]  # every image, most doubtful first
    duplicates: list[NearDuplicate]  # across classes or across splits, most similar first
    method: dict[str, Any] = field(default_factory=dict)  # what was fitted, how long it took
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)

    @property
    def flagged(self) -> list[ImageIssue]:
        return [i for i in self.images if i.flagged]

    @property
    def outliers(self) -> list[ImageIssue]:
        return [i for i in self.images if i.outlier]

    def to_json(self, limit: int | None = None) -> dict[str, Any]:
        images = self.images if limit is None else self.images[:limit]
        return {
            "root": self.root,
            "classes": list(self.classes),
            "num_images": len(self.images),
            "flagged": len(self.flagged),
            "outliers": len(self.outliers),
            "images": [vars(i) | {} for i in images],
            "near_duplicates": [vars(d) | {"kind": d.kind} for d in self.duplicates],
            "method": dict(self.method),
        }


def build_report(root: str, classes: Sequence[str], files: Sequence[str], labels: np.ndarray,
                 probabilities: np.ndarray, nb: Neighbours, parts: Sequence[str | None] | None = None,
                 method: dict[str, Any] | None = None) -> LabelCheck:
    """Rank every image by self-confidence (lowest first) and collect near-duplicates that cross
    classes or splits."""
    labels = np.asarray(labels, dtype=np.int64)
    k = len(classes)
    parts = list(parts) if parts is not None else [None] * len(files)
    conf = self_confidence(probabilities, labels)
    other = best_other(probabilities, labels)
    flagged = confident_issues(probabilities, labels, k)
    _, outlying = outlier_scores(nb)
    order = np.argsort(conf, kind="stable")
    images = [ImageIssue(files[i], classes[labels[i]], classes[other[i]], round(float(conf[i]), 4),
                         round(float(probabilities[i, other[i]]), 4), rank + 1, bool(flagged[i]), bool(outlying[i]),
                         parts[i]) for rank, i in enumerate(order)]
    dups = []
    for (i, j), s in sorted(zip(nb.pairs.tolist(), nb.pair_similarity.tolist(), strict=True), key=lambda t: -t[1]):
        if labels[i] != labels[j] or (parts[i] and parts[j] and parts[i] != parts[j]):
            dups.append(NearDuplicate(files[i], files[j], round(float(s), 4), classes[labels[i]], classes[labels[j]],
                                      parts[i], parts[j]))
    return LabelCheck(root, list(classes), images, dups, dict(method or {}), probabilities)
