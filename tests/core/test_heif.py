"""Phone photos: HEIC/HEIF (pillow-heif's plugin) and AVIF (Pillow's own) are read everywhere images
are read: the scan, load_rgb, and training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer_studio.core import dataset, imageio
from transfer_studio.core.imageio import HEIF_MISSING, ImageReadError, load_rgb, sniff_format


def _photo(colour: int, seed: int, size: tuple[int, int] = (40, 24)) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.zeros((size[1], size[0], 3), np.float32)
    arr[..., colour] = 200
    return Image.fromarray(np.clip(arr + rng.normal(0, 20, arr.shape), 0, 255).astype(np.uint8))


def test_heif_plugin_is_registered_and_files_are_real_heic(tmp_path: Path) -> None:
    assert imageio.HEIF_SUPPORTED
    _photo(0, 0).save(tmp_path / "a.heic", format="HEIF", quality=90)
    data = (tmp_path / "a.heic").read_bytes()
    assert data[4:12] == b"ftypheic"  # an HEVC-coded HEIF, what iPhones write
    assert sniff_format(data[:64]) == "HEIF"
    im = load_rgb(tmp_path / "a.heic")
    assert im.mode == "RGB" and im.size == (40, 24)
    assert np.asarray(im)[..., 0].mean() > 150  # red, decoded (not a blank image)


def test_scan_reads_heic_heif_and_avif_and_they_train(tmp_path: Path) -> None:
    from helpers.training import make_project

    from transfer_studio.training import fit

    root = tmp_path / "phone"
    for ci, name in enumerate(("red", "green")):
        (root / name).mkdir(parents=True)
        for i in range(6):
            ext, fmt = [("heic", "HEIF"), ("HEIF", "HEIF"), ("avif", "AVIF")][i % 3]
            _photo(ci, 10 * ci + i).save(root / name / f"{i}.{ext}", format=fmt, quality=90)
    report = dataset.scan(root, verify=True)
    assert report.skipped == []
    assert report.counts == {"green": 6, "red": 6}
    assert report.image_size_range == {"min_width": 40, "min_height": 24, "max_width": 40, "max_height": 24}

    project = make_project(root, strategy="head", epochs=1)
    result = fit(project, run_dir=tmp_path / "run")
    assert result.status == "finished" and result.epochs_completed == 1


def test_without_the_plugin_the_scan_names_what_is_missing(tmp_path: Path, monkeypatch) -> None:
    """A HEIC file is "HEIC needs pillow-heif", not "not an image", when the decoder is absent."""
    root = tmp_path / "d"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        _photo(0, 1).save(root / name / "ok.png")
    _photo(1, 2, (400, 300)).save(root / "a" / "phone.heic", format="HEIF")
    monkeypatch.setattr(imageio, "HEIF_SUPPORTED", False)
    monkeypatch.setattr(Image, "ID", [i for i in Image.ID if i != "HEIF"])  # as if never registered
    report = dataset.scan(root)
    assert [(s.path, s.reason) for s in report.skipped] == [("a/phone.heic", HEIF_MISSING)]
    assert "needs pillow-heif" in HEIF_MISSING
    with pytest.raises(ImageReadError, match="needs pillow-heif"):
        load_rgb(root / "a" / "phone.heic")
