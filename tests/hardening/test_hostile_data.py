"""Hostile data folders: decompression bombs, absurd image proportions, symlink loops, file names
with newlines or bytes that are not UTF-8. The scan reports them, training skips or survives them,
nothing is read outside the data folder and nothing crashes."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from helpers.images import make_class_folder
from helpers.training import make_project

from transfer_studio.config import Project
from transfer_studio.core import dataset, imageio
from transfer_studio.training import fit

ROOT = Path(__file__).resolve().parents[2]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit PNG of width x height black pixels: a few kilobytes on disk."""
    row = b"\0" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
    return path


BOMBS = {"20000x20000": (20000, 20000), "10000x10000": (10000, 10000), "1x60000": (1, 60000),
         "30000x2": (30000, 2)}


@pytest.fixture(scope="module")
def bombed(tmp_path_factory):
    root = make_class_folder(tmp_path_factory.mktemp("bombs") / "data", {"a": 8, "b": 8, "c": 8}, size=32)
    for name, (w, h) in BOMBS.items():
        bomb_png(root / "a" / f"bomb_{name}.png", w, h)
    return root


def test_decompression_bombs_and_absurd_proportions_are_skipped_by_the_scan(bombed):
    report = dataset.scan(bombed)
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert set(reasons) == {f"bomb_{n}.png" for n in BOMBS}
    assert "too large" in reasons["bomb_20000x20000.png"] and "too large" in reasons["bomb_10000x10000.png"]
    assert "extreme proportions" in reasons["bomb_1x60000.png"]
    assert report.counts == {"a": 8, "b": 8, "c": 8}
    assert report.num_images + len(report.skipped) == 24 + len(BOMBS)


@pytest.mark.parametrize("name", list(BOMBS))
def test_loading_a_bomb_is_refused_before_decoding_a_pixel(bombed, name):
    path = bombed / "a" / f"bomb_{name}.png"
    t0 = time.perf_counter()
    with pytest.raises(imageio.ImageReadError, match="too large|extreme proportions"):
        imageio.load_rgb(path)
    with pytest.raises(imageio.ImageReadError, match="too large|extreme proportions"):
        imageio.verify_decode(path)
    assert time.perf_counter() - t0 < 1.0  # decoding 100 megapixels alone takes about a second


def test_a_bomb_costs_no_memory_in_a_fresh_process(bombed):
    """Peak memory of a process that loads the 100-megapixel PNG (300 MB decoded) stays low."""
    code = ("import resource, sys; from transfer_studio.core import imageio\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    imageio.load_rgb(sys.argv[1])\nexcept imageio.ImageReadError:\n    pass\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)")
    out = subprocess.run([sys.executable, "-c", code, str(bombed / "a" / "bomb_10000x10000.png")],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert int(out.stdout.strip()) < 50, f"peak memory grew by {out.stdout.strip()} MiB"


def test_training_on_a_folder_with_bombs_skips_them(bombed, tmp_path):
    result = fit(make_project(bombed, strategy="full", epochs=1), run_dir=tmp_path / "run")
    assert result.status == "finished"
    split = Project.load(tmp_path / "run" / "project.json").data.split
    assert not [p for part in split.values() for p in part if "bomb" in p]


# -- symlink loops --------------------------------------------------------------------------------
@pytest.fixture
def looped(tmp_path):
    root = make_class_folder(tmp_path / "data", {"a": 4, "b": 4}, size=16)
    (root / "a" / "up").symlink_to("..")  # the data folder: every class again, under 'a'
    (root / "a" / "self").symlink_to(".")
    (root / "loop").symlink_to(".")  # a "class" that is the data folder itself
    (root / "b" / "deep").mkdir()
    (root / "b" / "deep" / "back").symlink_to("../..")
    (root / "b" / "deep" / "home").symlink_to(tmp_path)  # above the data folder
    (root / "b" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "outside.png").write_bytes((root / "a" / "a_0000.png").read_bytes())
    (root / "b" / "linked.png").symlink_to(tmp_path / "outside.png")  # a linked image: followed
    return root


def test_symlink_loops_are_not_followed_and_nothing_is_counted_twice(looped):
    t0 = time.perf_counter()
    report = dataset.scan(looped)
    assert time.perf_counter() - t0 < 10
    assert report.classes == ["a", "b"]
    assert report.counts == {"a": 4, "b": 5}  # b's 4 and the linked image
    assert all(not p.startswith(("a/up/", "a/self/", "b/deep/")) for p in report.files)
    text = " ".join(report.warnings)
    assert "'loop' point back to the data folder" in text and "not followed" in text
    assert report.num_images + len(report.skipped) == len(report.files) + len(report.skipped)


# -- names with newlines and bytes that are not UTF-8 -------------------------------------------
@pytest.fixture
def odd_names(tmp_path):
    root = make_class_folder(tmp_path / "data", {"a": 6, "b": 6, "c": 6}, size=32)
    a, b = os.fsencode(root / "a"), os.fsencode(root / "b")
    os.rename(a + b"/a_0001.png", a + b"/bad\xff\xfe name.png")
    os.rename(a + b"/a_0002.png", a + b"/new\nline.png")
    os.rename(b + b"/b_0001.png", b + b"/tab\there\r.png")
    c = os.fsencode(root) + b"/caf\xe9"  # a class folder named in Latin-1
    os.rename(os.fsencode(root / "c"), c)
    for i in range(6):
        os.rename(c + f"/c_{i:04d}.png".encode(), c + f"/{i}".encode() + b"\x80.png")
    return root


def test_odd_file_names_scan_split_save_and_train(odd_names, tmp_path):
    report = dataset.scan(odd_names)
    assert report.counts == {"a": 6, "b": 6, "caf\udce9": 6} and not report.skipped
    project = make_project(odd_names, strategy="full", epochs=1)
    dataset.assign_split(project, report)
    project.save(tmp_path / "p.tsproj")
    loaded = Project.load(tmp_path / "p.tsproj")
    assert loaded.data.split == project.data.split and loaded.data.classes == project.data.classes
    ds = dataset.ImageDataset(report.root, report.files, report.labels)
    assert [ds.relpath(i) for i in range(len(ds))] == report.files
    assert len({tuple(ds[i][0].size) for i in range(len(ds))}) == 1  # every file opens
    result = fit(loaded, run_dir=tmp_path / "run")
    assert result.status == "finished"


def test_the_cli_prints_odd_names_on_a_strict_terminal(odd_names, monkeypatch):
    """A desktop terminal's stdout is strict UTF-8: a name that is not UTF-8 is printed escaped."""
    from transfer_studio.cli import main as cli_main

    for args in (["scan", str(odd_names)], ["scan", str(odd_names), "--json"]):
        out, err = io.BytesIO(), io.BytesIO()
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, encoding="utf-8", errors="strict"))
        monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(err, encoding="utf-8", errors="strict"))
        code = cli_main(args)
        sys.stdout.flush()
        sys.stderr.flush()
        printed, problems = out.getvalue(), err.getvalue()
        monkeypatch.undo()
        assert code == 0, problems.decode(errors="replace")
        assert b"caf\\udce9" in printed
