"""The label journal: corrections move files (or rewrite a labels file) only after the journal holds
them, undo works from a fresh process, and a process killed at any point mid-batch leaves every
file in exactly one place once the journal recovers."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer_studio.core import dataset
from transfer_studio.core.label_journal import SET_ASIDE_DIR, Correction, Journal, remap_split
from transfer_studio.errors import UserError


def _folder(root: Path, classes=("cat", "dog", "fox"), n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / c / f"{c}{i}.png")
    return root


def _contents(root: Path) -> dict[str, list[str]]:
    """Content hash -> every relpath holding it (journal files excluded)."""
    out: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.png")):
        out.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append(path.relative_to(root).as_posix())
    return out


def test_corrections_move_files_and_undo_puts_them_back(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d")
    before = _contents(root)
    report = dataset.scan(root)
    batch = Journal(root).apply([Correction("cat/cat0.png", "dog", "train"), Correction("dog/dog1.png", "", "val"),
                                 Correction("fox/fox2.png", "fox")], report)  # the last keeps its label
    assert batch.state == "done" and batch.kind == "move"
    assert [(c.file, c.to_file, c.from_label, c.to_label) for c in batch.changes] == [
        ("cat/cat0.png", "dog/cat0.png", "cat", "dog"),
        ("dog/dog1.png", f"{SET_ASIDE_DIR}/dog/dog1.png", "dog", "")]
    assert batch.summary() == "1 image to another class, 1 set aside"
    after = dataset.scan(root)
    assert after.counts == {"cat": 3, "dog": 4, "fox": 4}  # the set-aside folder is not a class
    assert "dog/cat0.png" in after.files and not any(f.startswith(SET_ASIDE_DIR) for f in after.files)
    assert sorted(len(v) for v in _contents(root).values()) == [1] * 12  # nothing lost, nothing doubled

    # A fresh Journal (the app restarted) sees the batch and undoes it.
    again = Journal(root)
    assert [b.id for b in again.batches() if b.undoable] == [batch.id]
    undo = again.undo(batch.id)
    assert undo.undo_of == batch.id and undo.summary() == "undo: 2 images to another class"
    assert _contents(root) == before
    with pytest.raises(UserError, match="undone already"):
        Journal(root).undo(batch.id)
    Journal(root).undo(undo.id)  # redo: the undo is itself undoable
    assert (root / "dog" / "cat0.png").is_file() and not (root / "cat" / "cat0.png").exists()


def test_a_move_never_overwrites(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d")
    (root / "dog" / "cat0.png").write_bytes((root / "dog" / "dog0.png").read_bytes())  # a name already taken
    before = _contents(root)
    batch = Journal(root).apply([Correction("cat/cat0.png", "dog")], dataset.scan(root))
    assert batch.changes[0].to_file == "dog/cat0 (2).png"
    assert sorted(sum(before.values(), [])) != sorted(sum(_contents(root).values(), []))
    assert {k: len(v) for k, v in _contents(root).items()} == {k: len(v) for k, v in before.items()}


def test_split_layout_moves_within_its_split(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _folder(root / "train")
    _folder(root / "val", n=2)
    report = dataset.scan(root)
    batch = Journal(root).apply([Correction("val/fox/fox1.png", "cat")], report)
    assert batch.changes[0].to_file == "val/cat/fox1.png"
    assert dataset.scan(root).split_counts["val"] == {"cat": 3, "dog": 2, "fox": 1}


def test_refusals_before_anything_moves(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d")
    report = dataset.scan(root)
    for corrections, message in (([Correction("cat/cat0.png", "wolf")], "not one of the classes"),
                                 ([Correction("cat/nope.png", "dog")], "not a readable image"),
                                 ([Correction("cat/cat0.png", "cat")], "nothing to change"),
                                 ([], "no corrections")):
        with pytest.raises(UserError, match=message):
            Journal(root).apply(corrections, report)
    assert Journal(root).batches() == []


def test_resolve_finds_moved_images_and_labels_changed_since(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d")
    split = {"train": ["cat/cat0.png", "cat/cat1.png", "dog/dog0.png"], "val": ["fox/fox0.png", "dog/dog1.png"]}
    j = Journal(root)
    b1 = j.apply([Correction("cat/cat0.png", "dog", "train"), Correction("fox/fox0.png", "", "val")], dataset.scan(root))
    b2 = j.apply([Correction("dog/cat0.png", "fox", "train"), Correction("dog/dog1.png", "cat", "val")],
                 dataset.scan(root))
    j.undo(b2.id)  # dog1 goes back to dog: no net change for it
    res = j.resolve(sum(split.values(), []))
    assert res["cat/cat0.png"].file == "dog/cat0.png"  # moved twice, then the second move undone
    assert (res["cat/cat0.png"].label_then, res["cat/cat0.png"].label_now) == ("cat", "dog")
    assert res["fox/fox0.png"].set_aside and res["fox/fox0.png"].file == ""
    assert res["dog/dog1.png"].file == "dog/dog1.png" and res["dog/dog1.png"].label_then is None
    assert "cat/cat1.png" not in res
    assert j.changes_since(sum(split.values(), [])) == [("cat/cat0.png", "cat", "dog"), ("fox/fox0.png", "fox", "")]
    assert j.resolve(["cat/cat0.png"], since=b2.time) == {}  # the run was trained after the first move...
    assert j.resolve(["dog/cat0.png"], since=b2.time)["dog/cat0.png"].label_then is None  # ...and b2 was undone

    moved = remap_split(split, b1)
    assert moved == {"train": ["cat/cat1.png", "dog/cat0.png", "dog/dog0.png"], "val": ["dog/dog1.png"]}
    back = remap_split(moved, j.batches()[-1])  # the undo of b2 changes nothing in this split...
    assert remap_split(back, j.undo(b1.id)) == {k: sorted(v) for k, v in split.items()}  # ...undoing b1 does


def _labelled(root: Path) -> Path:
    _folder(root / "img", classes=("x",), n=6)
    rows = ["file,label,extra"] + [f"img/x/x{i}.png,{'ab'[i % 2]},e{i}" for i in range(6)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_labels_file_corrections_rewrite_the_table_and_undo(tmp_path: Path) -> None:
    root = _labelled(tmp_path / "c")
    original = (root / "labels.csv").read_text()
    files_before = _contents(root)
    batch = Journal(root).apply([Correction("img/x/x0.png", "b"), Correction("img/x/x1.png", "")], dataset.scan(root))
    assert batch.kind == "relabel" and batch.labels_file == "labels.csv"
    assert _contents(root) == files_before  # no image moved
    text = (root / "labels.csv").read_text()
    assert "img/x/x0.png,b,e0" in text and "img/x/x1.png,,e1" in text
    report = dataset.scan(root)
    assert report.counts == {"a": 2, "b": 3} and "img/x/x1.png" not in report.files
    (root / "labels.csv").write_text(text.replace("x0.png,b", "x0.png,a"))  # edited outside the app
    with pytest.raises(UserError, match="changed since the folder was scanned"):
        Journal(root).undo(batch.id)
    (root / "labels.csv").write_text(text)
    Journal(root).undo(batch.id)
    assert (root / "labels.csv").read_text() == original


_CHILD = r"""
import json, os, signal, sys
from types import SimpleNamespace
from transfer_studio.core.label_journal import Correction, Journal
root, spec = sys.argv[1], json.loads(sys.argv[2])
calls = {"n": 0}
target = getattr(os, spec["func"])
def dying(*a, **k):
    calls["n"] += 1
    if calls["n"] == spec["at"]:
        if spec.get("after"):
            target(*a, **k)
        os.kill(os.getpid(), signal.SIGKILL)
    return target(*a, **k)
setattr(os, spec["func"], dying)
report = SimpleNamespace(**spec["report"])
j = Journal(root)
if spec.get("undo"):
    j.undo(j.batches()[-1].id)
else:
    j.apply([Correction(f, l) for f, l in spec["corrections"]], report)
print("survived")
"""


def _kill_mid_batch(root: Path, func: str, at: int, *, after: bool = False, undo: bool = False,
                    corrections=None) -> str:
    report = dataset.scan(root)
    spec = {"func": func, "at": at, "after": after, "undo": undo, "corrections": corrections or [],
            "report": {"files": report.files, "labels": report.labels, "classes": report.classes,
                       "layout": report.layout, "labels_file": report.labels_file}}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(root), json.dumps(spec)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": os.getcwd()})
    return "killed" if proc.returncode == -signal.SIGKILL else proc.stdout.strip() + proc.stderr[-500:]


MOVES = [["cat/cat0.png", "dog"], ["cat/cat1.png", ""], ["dog/dog2.png", "fox"], ["fox/fox3.png", "cat"]]


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
@pytest.mark.parametrize("func, at, after", [
    ("link", 1, False), ("link", 3, True), ("unlink", 1, False), ("unlink", 2, True), ("unlink", 4, True),
    ("fsync", 1, False), ("fsync", 2, True), ("fsync", 3, False),
])
def test_a_process_killed_mid_batch_leaves_each_file_in_one_place(tmp_path: Path, func: str, at: int,
                                                                  after: bool) -> None:
    root = _folder(tmp_path / "d")
    before = {k: len(v) for k, v in _contents(root).items()}
    assert _kill_mid_batch(root, func, at, after=after, corrections=MOVES) == "killed"
    notes = Journal(root).recover()
    contents = _contents(root)
    assert {k: len(v) for k, v in contents.items()} == before, "a file lost or doubled"
    batches = Journal(root).batches()
    if batches:  # killed after the begin record: the batch is completed
        assert [b.state for b in batches] == ["done"] and len(notes) == 1
        assert (root / "dog" / "cat0.png").is_file() and (root / SET_ASIDE_DIR / "cat" / "cat1.png").is_file()
        assert (root / "cat" / "fox3.png").is_file() and not (root / "fox" / "fox3.png").exists()
    else:  # killed before it: nothing moved
        assert (root / "cat" / "cat0.png").is_file() and notes == []
    assert Journal(root).recover() == []
    # and the undo, killed halfway, recovers as well
    if batches:
        assert _kill_mid_batch(root, "unlink", 2, after=True, undo=True) == "killed"
        Journal(root).recover()
        assert {k: len(v) for k, v in _contents(root).items()} == before
        assert (root / "cat" / "cat0.png").is_file() and (root / "fox" / "fox3.png").is_file()


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
@pytest.mark.parametrize("func, at, after", [("replace", 1, False), ("replace", 1, True), ("fsync", 1, True),
                                             ("fsync", 3, False)])
def test_a_process_killed_while_rewriting_the_labels_file_recovers(tmp_path: Path, func: str, at: int,
                                                                   after: bool) -> None:
    root = _labelled(tmp_path / "c")
    # os.replace: the atomic rewrite's final step; fsync 1: the begin record, 2: the new table, 3: done
    assert _kill_mid_batch(root, func, at, after=after,
                           corrections=[["img/x/x0.png", "b"], ["img/x/x1.png", ""]]) == "killed"
    Journal(root).recover()
    table = (root / "labels.csv").read_text()
    assert "img/x/x0.png,b,e0" in table and "img/x/x1.png,,e1" in table  # completed, whatever the point
    assert [b.state for b in Journal(root).batches()] == ["done"]
    assert not [p for p in root.iterdir() if p.name.startswith(".labels.csv")], "a temp file left behind"


def test_a_line_cut_short_by_a_crash_is_ignored(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d")
    j = Journal(root)
    j.apply([Correction("cat/cat0.png", "dog")], dataset.scan(root))
    with open(j.path, "a") as fh:
        fh.write('{"type": "begin", "batch": "x", "ti')  # the process died mid-write
    assert len(Journal(root).batches()) == 1
    b = Journal(root).apply([Correction("dog/dog0.png", "fox")], dataset.scan(root))
    assert [x.id for x in Journal(root).batches()][-1] == b.id and Journal(root).batches()[-1].state == "done"
