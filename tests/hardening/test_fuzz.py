"""Fuzzing with hypothesis: dataset folders, project files and bundle descriptions built from
random bytes and random structure. The scan never crashes and its counts always add up; a project
file or a model.json either loads or is refused with a clear message (UserError), never a traceback.

The CI profile runs a bounded number of examples per test; bench/bench_fuzz.py runs the same
properties with many more (TS_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from transfer_studio.config import Project
from transfer_studio.core import dataset, export
from transfer_studio.errors import UserError
from transfer_studio.training.engine import validate_train_spec

EXAMPLES = int(os.environ.get("TS_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("TS_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
EXTENSIONS = [".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".PNG", ".ppm", ".txt", ""]


def _image_bytes(fmt: str, size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


VALID = {fmt: _image_bytes(fmt, 12, i) for i, fmt in enumerate(["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"])}


@st.composite
def file_content(draw) -> bytes:
    kind = draw(st.sampled_from(["valid"] * 4 + ["truncated", "random", "empty", "prefix", "flipped"]))
    if kind == "empty":
        return b""
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=512))
    good = VALID[draw(st.sampled_from(sorted(VALID)))]
    if kind == "valid":
        return good
    if kind == "truncated":
        return good[: draw(st.integers(1, len(good) - 1))]
    if kind == "prefix":  # a real header followed by garbage
        return good[:32] + draw(st.binary(min_size=0, max_size=256))
    data = bytearray(good)
    for pos in draw(st.lists(st.integers(0, len(good) - 1), min_size=1, max_size=8)):
        data[pos] ^= draw(st.integers(1, 255))
    return bytes(data)


NAME = st.text(st.characters(codec="utf-8", exclude_characters="/\0", exclude_categories=("Cs",)),
               min_size=1, max_size=12).filter(lambda n: n not in (".", ".."))


@st.composite
def folder_tree(draw) -> dict:
    """{class: [(relative folder parts, file name, content)]}, plus loose files at the root."""
    classes = draw(st.lists(NAME, min_size=1, max_size=4, unique_by=str.lower)) + ["zz"]
    tree = {}
    for c in classes:
        files = []
        for _ in range(draw(st.integers(0, 7))):
            depth = draw(st.integers(0, 3))
            parts = draw(st.lists(NAME, min_size=depth, max_size=depth))
            files.append((parts, draw(NAME) + draw(st.sampled_from(EXTENSIONS)), draw(file_content())))
        tree[c] = files
    tree["zz"] += [([], "seed.png", VALID["PNG"])]  # at least two classes usually have an image
    return tree


def _write_tree(root: Path, tree: dict) -> None:
    for c, files in tree.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for parts, name, content in files:
            folder = root.joinpath(c, *parts)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(content)
            except (OSError, ValueError):  # a name the file system refuses (too long, a clash)
                continue


def _visible_files(class_dir: Path) -> int:
    """Files the scan should consider: not hidden, not OS litter, under non-hidden folders."""
    n = 0
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = [d for d in dirnames if not dataset._ignored(d)]
        n += sum(1 for f in filenames if not dataset._ignored(f)
                 and os.path.isfile(os.path.join(dirpath, f)))
    return n


@FUZZ
@given(tree=folder_tree())
def test_scan_never_crashes_and_its_counts_add_up(tree):
    root = Path(tempfile.mkdtemp(prefix="fuzz-scan-"))
    try:
        _write_tree(root, tree)
        try:
            report = dataset.scan(root)
        except UserError as exc:
            assert str(exc) and "\n" not in str(exc)
            event("refused")
            return
        event("scanned")
        classes = [d.name for d in root.iterdir() if d.is_dir() and not dataset._ignored(d.name)]
        assert sorted(report.classes) == sorted(classes) == report.classes
        visible = sum(_visible_files(root / c) for c in classes)
        assert report.num_images == len(report.files) == len(report.labels) == sum(report.counts.values())
        assert report.num_images + len(report.skipped) == visible
        assert all(report.counts[c] > 0 for c in report.classes)
        assert len(set(report.files)) == len(report.files)
        assert not set(report.files) & {s.path for s in report.skipped}
        assert all(s.reason for s in report.skipped)
        grouped = [p for g in report.duplicates for p in g]
        assert len(grouped) == len(set(grouped)) and set(grouped) <= set(report.files)
        split = dataset.make_split(report, 0.2, 0.1, 0)
        assert sorted(p for part in split.values() for p in part) == sorted(report.files)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- project files ---------------------------------------------------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
                    | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
                    max_leaves=12)

VALID_PROJECT = json.loads(Project(name="p").to_json())
VALID_PROJECT["data"].update(root="/data", classes=["a", "b"], split={"train": ["a/1.png"], "val": ["b/2.png"]})
VALID_PROJECT["surgery"] = [{"op": "freeze", "target": "*", "params": {}}]
VALID_PROJECT["runs"] = [{"run_dir": "/runs/1", "status": "finished", "epochs_completed": 2}]


def _paths(obj, prefix=()):
    """Every (path) to a value inside a JSON document."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated(draw, valid: dict) -> object:
    """A valid document with some values replaced by random JSON, some keys dropped or added."""
    doc = json.loads(json.dumps(valid))
    paths = [p for p in _paths(doc) if p]
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(paths))
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            action = draw(st.sampled_from(["replace", "drop", "add"]))
            if action == "replace":
                parent[path[-1]] = draw(JSON)
            elif action == "drop" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif isinstance(parent, dict):
                parent[draw(st.text(max_size=8))] = draw(JSON)
        except (KeyError, IndexError, TypeError):
            continue
    return doc


@FUZZ
@given(doc=st.one_of(mutated(VALID_PROJECT), JSON))
def test_a_project_file_loads_or_is_refused_clearly(doc):
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-proj-"))
    try:
        path = tmp / "p.tsproj"
        path.write_text(json.dumps(doc), encoding="utf-8")
        try:
            project = Project.load(path)
        except UserError as exc:
            assert str(exc)
            event("refused")
            return
        event("loaded")
        # what loaded is usable: it saves, reloads identically, and its settings check cleanly
        project.save(tmp / "again.tsproj")
        assert Project.load(tmp / "again.tsproj").to_dict() == project.to_dict()
        with contextlib.suppress(UserError):  # a bad setting is a message, never an exception
            validate_train_spec(project)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("text", ["", "{", "[]", "null", "1e999999", '"x"', "\ufeff{}", "{\"a\": NaN}",
                                  '{"schema_version": "1"}', '{"schema_version": 10**9}', "\x00"])
def test_garbage_project_files_are_refused_clearly(tmp_path, text):
    path = tmp_path / "p.tsproj"
    path.write_text(text, encoding="utf-8")
    try:
        Project.load(path)
    except UserError as exc:
        assert str(exc)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError):
        Project.load(path)


# -- model.json ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def valid_bundle(tmp_path_factory, trained_run):
    out = tmp_path_factory.mktemp("fuzz-bundle") / "bundle"
    export.export_run(trained_run, out, ["safetensors"])
    return out


@FUZZ
@given(data=st.data())
def test_a_model_json_loads_or_is_refused_clearly(valid_bundle, data):
    meta = json.loads((valid_bundle / "model.json").read_text())
    doc = data.draw(st.one_of(mutated(meta), JSON))
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-bundle-"))
    try:
        shutil.copy(valid_bundle / "model.safetensors", tmp / "model.safetensors")
        (tmp / "model.json").write_text(json.dumps(doc), encoding="utf-8")
        try:
            export.read_bundle_meta(tmp)
        except UserError as exc:
            assert str(exc)
            event("refused by read_bundle_meta")
            return
        try:
            model, _ = export.load_bundle(tmp)
        except UserError as exc:
            assert str(exc)
            event("refused by load_bundle")
            return
        event("loaded")
        assert model is not None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
