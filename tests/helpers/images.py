"""Generated image folders for tests: small, deterministic, real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_class_folder(root: Path, classes: dict[str, int], size: int = 32, seed: int = 0,
                      fmt: str = "png") -> Path:
    """root/<class>/<i>.<fmt> with a distinct colour pattern per class (learnable)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for ci, (name, n) in enumerate(sorted(classes.items())):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        base = np.zeros((size, size, 3), np.float32)
        base[..., ci % 3] = 200
        if ci >= 3:
            base[: size // 2] = 255 - base[: size // 2]
        for i in range(n):
            noise = rng.normal(0, 25, (size, size, 3))
            arr = np.clip(base + noise, 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"{name}_{i:04d}.{fmt}")
    return root


def make_digits_folder(root: Path, per_class: int = 40, seed: int = 0, size: int = 32) -> Path:
    """scikit-learn's digits as a class-per-folder dataset of upscaled grayscale PNGs."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for label in range(10):
        idx = np.flatnonzero(digits.target == label)
        idx = rng.choice(idx, size=min(per_class, len(idx)), replace=False)
        d = root / str(label)
        d.mkdir(exist_ok=True)
        for j, k in enumerate(idx):
            img = (digits.images[k] * (255.0 / 16.0)).astype(np.uint8)
            Image.fromarray(img, "L").resize((size, size), Image.BILINEAR).save(d / f"{label}_{j:03d}.png")
    return root
