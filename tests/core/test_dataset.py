"""Folder scan and health check, splits, and the training Dataset."""

from __future__ import annotations

import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.images import make_class_folder, make_digits_folder
from PIL import Image

from transfer_studio.config import Project
from transfer_studio.core.dataset import (
    ImageDataset,
    ScanReport,
    assign_split,
    labels_for,
    make_split,
    scan,
)
from transfer_studio.errors import Cancelled, UserError


def _jpeg_bytes(seed: int = 0, size: int = 32) -> bytes:
    import io

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def digits_with_broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Digits (12 per class) plus awkward-but-valid files and a handful of broken ones."""
    root = make_digits_folder(tmp_path_factory.mktemp("digits") / "data", per_class=12, size=16)
    # Awkward but valid: they must count as images.
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(root / "1" / "cmyk.jpg")
    Image.fromarray(np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))).save(root / "2" / "g16.png")
    rot = Image.new("RGB", (30, 10), (9, 9, 9))
    exif = rot.getexif()
    exif[0x0112] = 6
    rot.save(root / "3" / "rotated.jpg", exif=exif.tobytes())
    nested = root / "4" / "ünïcode 文件夹" / "deeper"
    nested.mkdir(parents=True)
    Image.new("L", (16, 16), 128).save(nested / "été.png")
    # Broken: exactly these must be reported as skipped.
    data = _jpeg_bytes()
    (root / "5" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "6" / "empty.png").write_bytes(b"")
    (root / "7" / "notes.jpg").write_text("a text file renamed .jpg")
    png = (root / "8" / "8_000.png").read_bytes()
    (root / "8" / "cut.png").write_bytes(png[:-20])
    (root / "9" / "readme.txt").write_text("not an image either")
    # Litter and hidden files: ignored silently.
    (root / "0" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "0" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "0" / ".hidden.png").write_bytes(b"junk")
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "._1.png").write_bytes(b"junk")
    (root / ".git").mkdir()
    broken = {
        "5/truncated.jpg": "truncated", "6/empty.png": "zero-byte", "7/notes.jpg": "not an image",
        "8/cut.png": "truncated", "9/readme.txt": "not an image",
    }
    return root, broken


def test_digits_with_broken_files_reports_exactly_those(digits_with_broken) -> None:
    root, broken = digits_with_broken
    report = scan(root)
    assert report.layout == "flat"
    assert report.classes == [str(i) for i in range(10)]
    expected = {str(i): 12 for i in range(10)}
    for c in "1234":
        expected[c] += 1  # CMYK, 16-bit, EXIF-rotated, nested unicode: all readable
    assert report.counts == expected
    assert report.num_images == sum(expected.values()) == len(report.files) == len(report.labels)
    assert {s.path: s.reason for s in report.skipped}.keys() == broken.keys()
    for s in report.skipped:
        assert broken[s.path] in s.reason, (s.path, s.reason)
    assert "4/ünïcode 文件夹/deeper/été.png" in report.files
    assert all("__MACOSX" not in f and ".DS_Store" not in f for f in report.files)
    # Displayed sizes: the EXIF-rotated 30x10 JPEG counts as 10x30.
    assert report.image_size_range == {"min_width": 10, "min_height": 16, "max_width": 20, "max_height": 30}
    assert any("5 file(s) skipped" in w for w in report.warnings)
    labels = dict(zip(report.files, report.labels, strict=True))
    assert labels["1/cmyk.jpg"] == 1 and labels["4/ünïcode 文件夹/deeper/été.png"] == 4

    js = report.to_json()
    assert set(js) >= {"root", "layout", "classes", "counts", "num_images", "skipped", "duplicates", "warnings"}
    assert "files" not in js
    assert {"path": "6/empty.png", "reason": "zero-byte file"} in js["skipped"]


def test_verify_decodes_what_the_header_check_cannot_see(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "d", {"a": 3, "b": 3}, size=32)
    data = bytearray((root / "a" / "a_0000.png").read_bytes())
    start = data.index(b"IDAT") + 30
    data[start:start + 300] = bytes(300)
    (root / "a" / "corrupt.png").write_bytes(bytes(data))
    assert scan(root).counts == {"a": 4, "b": 3}  # header and IEND look fine
    report = scan(root, verify=True)
    assert report.counts == {"a": 3, "b": 3}
    assert [(s.path, s.reason.split(" ")[0]) for s in report.skipped] == [("a/corrupt.png", "corrupt")]
    assert report.verified


def test_duplicates_found_within_and_across_classes(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "d", {"a": 4, "b": 4}, size=24)
    shutil.copy(root / "a" / "a_0000.png", root / "a" / "copy.png")
    shutil.copy(root / "a" / "a_0001.png", root / "b" / "stolen.png")
    big = _jpeg_bytes(seed=3, size=400)  # larger than the header read: hashed separately
    assert len(big) > 64 * 1024
    (root / "b" / "big1.jpg").write_bytes(big)
    (root / "b" / "big2.jpg").write_bytes(big)
    other = bytearray(big)
    other[70000] ^= 0xFF  # same size, different content: not a duplicate
    (root / "b" / "big3.jpg").write_bytes(bytes(other))
    report = scan(root)
    assert report.duplicates == [
        ["a/a_0000.png", "a/copy.png"], ["a/a_0001.png", "b/stolen.png"], ["b/big1.jpg", "b/big2.jpg"],
    ]
    assert any("different classes" in w and "a/a_0001.png = b/stolen.png" in w for w in report.warnings)


def test_split_layout_used_as_is(tmp_path: Path) -> None:
    make_class_folder(tmp_path / "d" / "train", {"cat": 6, "dog": 5})
    make_class_folder(tmp_path / "d" / "val", {"cat": 2, "dog": 2}, seed=1)
    make_class_folder(tmp_path / "d" / "test", {"cat": 1, "dog": 1}, seed=2)
    report = scan(tmp_path / "d")
    assert report.layout == "split"
    assert report.classes == ["cat", "dog"]
    assert report.counts == {"cat": 9, "dog": 8}
    assert report.split_counts == {"train": {"cat": 6, "dog": 5}, "val": {"cat": 2, "dog": 2},
                                   "test": {"cat": 1, "dog": 1}}
    split = make_split(report, val=0.5, seed=7)  # shares are ignored for a pre-split folder
    assert {k: len(v) for k, v in split.items()} == {"train": 11, "val": 4, "test": 2}
    assert all(p.startswith("val/") for p in split["val"])
    assert labels_for(report, split["test"]).tolist() == [0, 1]


def test_split_layout_with_train_only_carves_validation(tmp_path: Path) -> None:
    make_class_folder(tmp_path / "d" / "train", {"cat": 10, "dog": 10})
    report = scan(tmp_path / "d")
    assert report.layout == "split"
    split = make_split(report, val=0.2)
    assert len(split["val"]) == 4 and len(split["train"]) == 16 and split["test"] == []


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_text("x"), "is not a folder"),
        (lambda p: p.mkdir(), "no class sub-folders"),
        (lambda p: (p.mkdir(), (p / "x.png").write_bytes(b"1")), r"no class sub-folders \(it holds 1 file"),
        (lambda p: make_class_folder(p, {"only": 3}), "only one class"),
        (lambda p: (make_class_folder(p, {"a": 2, "b": 2}), (p / "c").mkdir()), "'c' has no images"),
        (lambda p: (make_class_folder(p, {"a": 2, "b": 2}), (p / "c").mkdir(), (p / "c" / "x.jpg").write_bytes(b"")),
         "class 'c' has no readable image .*zero-byte"),
        (lambda p: (make_class_folder(p / "train", {"a": 2, "b": 2}), make_class_folder(p / "val", {"a": 1, "c": 1})),
         "train/ and val/ have different classes .*only in train/: 'b'.*only in val/: 'c'"),
    ],
    ids=["missing", "file", "empty", "loose-files", "one-class", "empty-class", "unreadable-class", "split-mismatch"],
)
def test_bad_folders_raise_clear_user_errors(tmp_path: Path, build, message: str) -> None:
    target = tmp_path / "data"
    build(target)
    with pytest.raises(UserError, match=message):
        scan(target)


def test_warnings_for_small_and_imbalanced_classes(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "d", {"big": 30, "tiny": 3}, size=8)
    (root / "loose.png").write_bytes((root / "big" / "big_0000.png").read_bytes())
    report = scan(root)
    assert report.imbalance == 10.0
    text = " | ".join(report.warnings)
    assert "class 'tiny' has only 3 image(s)" in text
    assert "imbalanced" in text and "(10.0x)" in text
    assert "outside any class folder" in text


def test_progress_and_cancel(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "d", {"a": 300, "b": 300}, size=8)
    calls: list[tuple[int, int]] = []
    scan(root, progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, 600) and calls[-1] == (600, 600)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    seen = []

    def cancel() -> bool:
        seen.append(1)
        return len(seen) > 2

    with pytest.raises(Cancelled):
        scan(root, cancel=cancel)


def _report(counts: dict[str, int], duplicates: list[list[str]] | None = None) -> ScanReport:
    classes = sorted(counts)
    files, labels = [], []
    for i, c in enumerate(classes):
        files += [f"{c}/{k:04d}.png" for k in range(counts[c])]
        labels += [i] * counts[c]
    return ScanReport(
        root="/data", layout="flat", classes=classes, counts=counts, split_counts={}, num_images=len(files),
        skipped=[], duplicates=duplicates or [], warnings=[], image_size_range={}, imbalance=1.0, files=files,
        labels=labels, file_splits=[None] * len(files),
    )


def test_split_is_stratified_seeded_and_complete() -> None:
    report = _report({"a": 100, "b": 50, "c": 7, "d": 1})
    s1 = make_split(report, val=0.2, test=0.1, seed=0)
    assert make_split(report, val=0.2, test=0.1, seed=0) == s1
    s2 = make_split(report, val=0.2, test=0.1, seed=1)
    assert s2["val"] != s1["val"]
    everything = s1["train"] + s1["val"] + s1["test"]
    assert sorted(everything) == sorted(report.files)  # a partition: nothing lost, nothing twice
    per = {k: {c: sum(p.startswith(c + "/") for p in v) for c in "abcd"} for k, v in s1.items()}
    assert per["val"]["a"] == 20 and per["test"]["a"] == 10 and per["val"]["b"] == 10 and per["test"]["b"] == 5
    assert per["val"]["c"] == 1 and per["test"]["c"] == 1 and per["train"]["c"] == 5
    assert per["train"]["d"] == 1  # a single image always trains
    # Adding images to one class does not reshuffle another class's split.
    bigger = make_split(_report({"a": 100, "b": 60, "c": 7, "d": 1}), val=0.2, test=0.1, seed=0)
    assert [p for p in bigger["val"] if p.startswith("a/")] == [p for p in s1["val"] if p.startswith("a/")]


def test_duplicates_always_land_in_the_same_split() -> None:
    groups = [[f"a/{k:04d}.png", f"a/{k + 1:04d}.png", f"b/{k:04d}.png"] for k in range(0, 60, 3)]
    report = _report({"a": 60, "b": 60}, duplicates=groups)
    for seed in range(5):
        split = make_split(report, val=0.3, seed=seed)
        where = {p: k for k, v in split.items() for p in v}
        for g in groups:
            assert len({where[p] for p in g}) == 1, (seed, g)
        assert 0 < len(split["val"]) < len(report.files)


def test_split_rejects_bad_shares() -> None:
    report = _report({"a": 10, "b": 10})
    for val, test in ((1.0, 0.0), (-0.1, 0.0), (0.6, 0.5)):
        with pytest.raises(UserError, match="share"):
            make_split(report, val=val, test=test)


def test_assign_split_stores_in_project_and_survives_save(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "d", {"a": 5, "b": 5}, size=8)
    report = scan(root)
    project = Project()
    project.data.val_split = 0.4
    split = assign_split(project, report)
    assert project.data.classes == ["a", "b"] and len(split["val"]) == 4
    project.save(tmp_path / "p.tsproj")
    again = Project.load(tmp_path / "p.tsproj")
    assert again.data.split == split
    again.data.val_split = 0.2
    assert assign_split(again, report) == split  # kept: a resumed run sees the same images
    assert len(assign_split(again, report, force=True)["val"]) == 2
    (root / split["train"][0]).unlink()
    with pytest.raises(UserError, match="no longer readable"):
        labels_for(scan(root), split["train"])


def _to_array(image: Image.Image) -> np.ndarray:  # module level: picklable for DataLoader workers
    return np.array(image)


def test_image_dataset_compact_and_loads(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "d", {"a": 3, "bé": 3}, size=12)
    report = scan(root)
    ds = ImageDataset(root, report.files, report.labels, transform=_to_array)
    assert len(ds) == 6
    arrays = [v for v in vars(ds).values() if isinstance(v, np.ndarray)]
    assert arrays and all(a.dtype != object for a in arrays)
    assert not any(isinstance(v, list) and len(v) == len(ds) for v in vars(ds).values())
    assert ds.labels.dtype == np.int64
    x, y = ds[4]
    assert x.shape == (12, 12, 3) and y == 1 and ds.relpath(4).startswith("bé/")
    assert ds[-1][1] == 1
    with pytest.raises(IndexError):
        ds[6]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.relpath(5) == ds.relpath(5)


def test_image_dataset_replaces_an_image_that_became_unreadable(tmp_path: Path, caplog) -> None:
    root = make_class_folder(tmp_path / "d", {"a": 4, "b": 4}, size=8)
    report = scan(root)
    ds = ImageDataset(root, report.files, report.labels, transform=_to_array)
    (root / report.files[1]).write_bytes(b"garbage now")
    (root / report.files[5]).unlink()
    with caplog.at_level(logging.WARNING, logger="transfer_studio.core.dataset"):
        labels = [ds[i][1] for i in range(len(ds))]
    assert labels == report.labels  # replaced by an image of the same class
    assert [s.path for s in ds.skipped] == [report.files[1], report.files[5]]
    assert "not an image" in ds.skipped[0].reason and "not found" in ds.skipped[1].reason
    assert sum("skipping unreadable image" in r.message for r in caplog.records) == 2
    assert np.array_equal(ds[1][0], ds[2][0])  # the next image of class a stands in
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    assert sum(len(y) for _, y in loader) == 8  # workers survive it too
