"""A run trained before label corrections still evaluates (and resumes) on the images it was trained
with: moved images are found through the label journal, and the evaluation says which labels were
corrected since."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from helpers.images import make_class_folder
from helpers.training import make_project
from PIL import Image

from transfer_studio.config import Project
from transfer_studio.core import dataset, metrics
from transfer_studio.core.label_journal import Correction, Journal, follow_split
from transfer_studio.training import data as tdata
from transfer_studio.training import fit


def test_an_older_run_evaluates_its_moved_images_and_names_the_corrections(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "d", {"a": 8, "b": 8, "c": 8}, size=32)
    fit(make_project(root, strategy="head", epochs=1), run_dir=tmp_path / "run")
    snap = Project.load(tmp_path / "run" / "project.json")
    val = snap.data.split["val"]
    assert len(val) == 6
    before = metrics.evaluate(tmp_path / "run")
    assert before.num_images == 6 and before.corrected == []

    moved, aside = val[0], val[1]  # one val image to another class, one set aside
    new_class = "b" if moved.startswith("a/") else "a"
    Journal(root).apply([Correction(moved, new_class, "val"), Correction(aside, "", "val")], dataset.scan(root))

    after = metrics.evaluate(tmp_path / "run")
    assert after.num_images == 5, [(s.path, s.reason) for s in after.skipped]
    assert [(Path(s.path).name, s.reason) for s in after.skipped] == [
        (Path(aside).name, "set aside in the label review since the run was trained")]
    assert str(root / new_class / Path(moved).name) in after.paths
    assert {(c["path"], c["label_then"], c["label_now"]) for c in after.corrected} == {
        (moved, moved.split("/")[0], new_class), (aside, aside.split("/")[0], "")}
    assert "2 label(s) were corrected since the run was trained" in after.note
    assert after.to_json()["corrected_since_training"] == after.corrected
    # the corrected image is scored with its corrected label
    k = after.paths.index(str(root / new_class / Path(moved).name))
    assert after.classes[after.labels[k]] == new_class

    # the run's project still prepares (resume, evaluation through training.data): moved images under
    # their new names, the set-aside one left out
    split = tdata.prepare_split(snap)
    assert f"{new_class}/{Path(moved).name}" in split.split["val"] and aside not in split.split["val"]
    assert len(split.split["val"]) == 5 and len(split.split["train"]) == len(snap.data.split["train"])


def test_labels_file_corrections_since_a_run_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "c"
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["file,label"]
    for i in range(18):
        arr = np.zeros((32, 32, 3), np.float32)
        arr[..., i % 3] = 200
        Image.fromarray(np.clip(arr + rng.normal(0, 20, arr.shape), 0, 255).astype(np.uint8)).save(
            root / "img" / f"{i}.png")
        rows.append(f"img/{i}.png,{'xyz'[i % 3]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    before_run = Journal(root).apply([Correction("img/0.png", "y")], dataset.scan(root))  # before: not reported
    assert before_run.state == "done"
    fit(make_project(root, strategy="head", epochs=1), run_dir=tmp_path / "run")
    val = Project.load(tmp_path / "run" / "project.json").data.split["val"]
    target = next(v for v in val if v != "img/0.png")
    old = dataset.scan(root)
    was = old.classes[old.labels[old.files.index(target)]]
    now = next(c for c in "xyz" if c != was)
    Journal(root).apply([Correction(target, now)], old)
    report = metrics.evaluate(tmp_path / "run")
    assert report.corrected == [{"path": target, "label_then": was, "label_now": now}]
    assert report.num_images == len(val)


def test_follow_split_without_a_journal_changes_nothing(tmp_path: Path) -> None:
    split = {"train": ["a/1.png"], "val": ["b/2.png"]}
    assert follow_split(tmp_path, split, set()) == (split, {})


def test_evaluate_cli_prints_the_corrections(tmp_path: Path, capsys) -> None:
    from transfer_studio.cli import main

    root = make_class_folder(tmp_path / "d", {"a": 6, "b": 6}, size=32)
    fit(make_project(root, strategy="head", epochs=1), run_dir=tmp_path / "run")
    val = Project.load(tmp_path / "run" / "project.json").data.split["val"]
    Journal(root).apply([Correction(val[0], "b" if val[0].startswith("a/") else "a")], dataset.scan(root))
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["corrected_since_training"][0]["path"] == val[0] and doc["num_images"] == len(val)
