"""Datasets labelled by a CSV or JSONL file: the scan reads them like class folders, its health
check covers what a table can get wrong, and corrections are written back into the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transfer_studio.core import dataset, labels_file
from transfer_studio.errors import UserError


def _images(root: Path, names: list[str], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)


def _csv_folder(root: Path) -> Path:
    _images(root, [f"images/{i:02d}.png" for i in range(12)])
    rows = ["file,label,source"] + [f"images/{i:02d}.png,{'cat' if i % 2 else 'dog'},cam{i}" for i in range(12)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_csv_folder_scans_like_class_folders(tmp_path: Path) -> None:
    root = _csv_folder(tmp_path / "d")
    report = dataset.scan(root)
    assert report.labels_file == "labels.csv" and report.layout == "flat"
    assert report.classes == ["cat", "dog"] and report.counts == {"cat": 6, "dog": 6}
    assert report.files[:2] == ["images/00.png", "images/01.png"]
    assert [report.classes[k] for k in report.labels[:2]] == ["dog", "cat"]
    assert report.skipped == [] and report.warnings == ["class 'cat' has only 6 image(s): the model will barely "
                                                        "learn it; add more images", "class 'dog' has only 6 "
                                                        "image(s): the model will barely learn it; add more images"]
    assert report.to_json()["labels_file"] == "labels.csv"
    split = dataset.make_split(report, val=0.34)
    assert sorted(split["train"] + split["val"]) == report.files and len(split["val"]) == 4


def test_health_check_names_every_problem_and_refuses_paths_outside(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _images(root, [f"{i}.png" for i in range(8)] + ["unlisted.png", "sub/also_unlisted.png"])
    _images(tmp_path, ["secret.png"])  # a real image outside the data folder
    (root / "notes.png").write_text("not an image")
    rows = ["filename,class"]
    rows += [f"{i}.png,{'a' if i < 4 else 'b'}" for i in range(6)]
    rows += ["6.png,b", "6.png,b",  # listed twice, same label: counted once
             "7.png,a", "7.png,b",  # listed twice, two labels: contradiction
             "missing.png,a", "notes.png,b", "../secret.png,a", "/etc/passwd,a", "C:\\\\Windows\\\\x.png,a",
             "sub/../2.png,a", "5.png,bb"]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    report = dataset.scan(root)
    skipped = {s.path: s.reason for s in report.skipped}
    assert "missing from the folder" in skipped["missing.png"]
    assert "not an image" in skipped["notes.png"]
    assert "different labels (a, b)" in skipped["7.png"]
    for outside in ("../secret.png", "/etc/passwd", "C:\\\\Windows\\\\x.png"):
        assert "points outside the data folder (refused)" in skipped[outside], outside
    assert not any("secret" in f for f in report.files)
    assert "5.png" not in report.files, "5.png is listed with two labels (b and bb)"
    assert sorted(report.files) == ["0.png", "1.png", "2.png", "3.png", "4.png", "6.png"]
    text = "\n".join(report.warnings)
    assert "2 image file(s) in the folder are not listed in labels.csv" in text and "unlisted.png" in text
    assert "listed more than once" in text
    assert "3 row(s) of labels.csv point outside the data folder" in text


def test_label_with_one_image_and_unlabelled_rows_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _images(root, [f"{i}.png" for i in range(7)])
    rows = ["file,label"] + [f"{i}.png,{'a' if i < 3 else 'b'}" for i in range(5)] + ["5.png,bee", "6.png,"]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    report = dataset.scan(root)
    text = "\n".join(report.warnings)
    assert "label 'bee' has only one image" in text
    assert "1 image(s) in labels.csv have no label (set aside)" in text
    assert "6.png" not in report.files and "6.png" not in {s.path for s in report.skipped}


def test_jsonl_with_a_split_column_is_used_as_is(tmp_path: Path) -> None:
    root = tmp_path / "hf"
    names = [f"train/{i}.png" for i in range(8)] + [f"test/{i}.png" for i in range(4)]
    _images(root, names)
    with open(root / "metadata.jsonl", "w") as fh:
        for i, name in enumerate(names):
            fh.write(json.dumps({"file_name": name, "label": "xy"[i % 2], "split": name.split("/")[0]}) + "\n")
    report = dataset.scan(root)
    assert report.layout == "split" and report.labels_file == "metadata.jsonl"
    assert report.split_counts == {"train": {"x": 4, "y": 4}, "test": {"x": 2, "y": 2}}
    split = dataset.make_split(report, val=0.25)
    assert split["test"] == sorted(n for n in names if n.startswith("test/"))
    assert len(split["val"]) == 2 and not set(split["val"]) & set(split["test"])


@pytest.mark.parametrize("content, message", [
    ("name,kind\na.png,x\n", "has no file or label column"),
    ("", "is empty"),
])
def test_unusable_tables_are_refused_with_one_line(tmp_path: Path, content: str, message: str) -> None:
    root = tmp_path / "d"
    _images(root, ["a.png"])
    (root / "labels.csv").write_text(content)
    with pytest.raises(UserError, match=message):
        dataset.scan(root)


def test_two_labels_files_are_refused(tmp_path: Path) -> None:
    root = _csv_folder(tmp_path / "d")
    (root / "metadata.jsonl").write_text('{"file": "images/00.png", "label": "x"}\n')
    with pytest.raises(UserError, match="several labels files"):
        dataset.scan(root)


def test_relabel_keeps_other_rows_columns_and_dialect(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes(b"\xef\xbb\xbfFile;Label;note\r\na.png;cat;\"x;y\"\r\nb.png;dog;z\r\n")
    assert labels_file.current_labels(path) == {"a.png": "cat", "b.png": "dog"}
    assert labels_file.relabel(path, {"b.png": "cat"}) == 1
    assert path.read_bytes() == b"\xef\xbb\xbfFile;Label;note\r\na.png;cat;\"x;y\"\r\nb.png;cat;z\r\n"
    labels_file.relabel(path, {"a.png": ""})
    assert labels_file.current_labels(path) == {"a.png": "", "b.png": "cat"}
    with pytest.raises(UserError, match="does not list c.png"):
        labels_file.relabel(path, {"c.png": "cat"})

    jl = tmp_path / "labels.jsonl"
    jl.write_text('{"file": "a.png", "label": "cat", "box": [1, 2]}\n{"file": "b.png", "label": "dog"}\n')
    labels_file.relabel(jl, {"a.png": ""})
    assert jl.read_text() == '{"file": "a.png", "label": null, "box": [1, 2]}\n{"file": "b.png", "label": "dog"}\n'


def test_csv_folder_trains_evaluates_and_exports(tmp_path: Path) -> None:
    """A CSV-labelled folder goes through the same engine as a folder-per-class one."""
    from helpers.training import make_project

    from transfer_studio.core import export, metrics
    from transfer_studio.training import fit

    root = tmp_path / "csvdata"
    rng = np.random.default_rng(0)
    rows = ["image,category"]
    for i in range(24):
        label = ("red", "green", "blue")[i % 3]
        arr = np.zeros((32, 32, 3), np.float32)
        arr[..., i % 3] = 200
        arr = np.clip(arr + rng.normal(0, 20, arr.shape), 0, 255).astype(np.uint8)
        (root / "all").mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / "all" / f"img{i:02d}.png")
        rows.append(f"all\\img{i:02d}.png,{label}")  # Windows separators, as some exports write them
    (root / "labels.csv").write_text("\n".join(rows) + "\n")

    project = make_project(root, strategy="head", epochs=2)
    result = fit(project, run_dir=tmp_path / "run")
    assert result.status == "finished" and result.classes == ["blue", "green", "red"]
    report = metrics.evaluate(tmp_path / "run")
    assert report.num_images == 6 and report.split == "val" and report.skipped == []
    out = export.export_run(tmp_path / "run", tmp_path / "bundle", formats=("safetensors",))
    assert (Path(out.out_dir) / "model.safetensors").is_file()
