"""Labels flipped on purpose, and the plain baseline the label-issue finder is measured against
(tests/training/test_label_check.py and bench/bench_labels.py)."""

from __future__ import annotations

import numpy as np


def flip_labels(labels: np.ndarray, num_classes: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, indices flipped): ``round(share * N)`` images, drawn at random, each given a
    uniformly drawn other class."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=np.int64)
    flipped = np.sort(rng.choice(len(labels), size=round(share * len(labels)), replace=False))
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, num_classes, size=len(flipped))) % num_classes
    return noisy, flipped


def sklearn_baseline(x: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Self-confidence from scikit-learn's LogisticRegression (default C, standardised features) in
    stratified k folds: the out-of-fold probability of each image's given label (cleanlab's usual
    recipe)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels, dtype=np.int64)
    folds = int(min(folds, np.bincount(labels).min()))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    p = cross_val_predict(model, np.asarray(x, dtype=np.float64), labels, cv=cv, method="predict_proba")
    return p[np.arange(len(labels)), labels]
