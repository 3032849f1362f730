"""Hostile files: pickles that would run code, safetensors headers that lie, bundles and projects
that point outside their folders or describe absurd networks. Each one: a clear message, no crash,
no code run, nothing read or written outside where it should be.
"""

from __future__ import annotations

import builtins
import json
import pickle
import struct

import pytest
from helpers.hostile import Payload, evil_pickle
from helpers.images import make_class_folder

from transfer_studio.cli import main as cli_main
from transfer_studio.config import Project
from transfer_studio.core import export, weights
from transfer_studio.errors import UserError
from transfer_studio.training import checkpoint as ckpt
from transfer_studio.training import fit


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "MARKER_code_ran"
    yield m
    assert not m.exists(), "a pickle payload was executed"


def test_the_payload_really_runs_code_when_unpickled(tmp_path):
    """The test's own check: unpickling without protection does write the marker."""
    m = tmp_path / "m"
    pickle.loads(pickle.dumps(Payload(m)))
    assert m.read_text() == "code ran"


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin", ".ckpt"])
@pytest.mark.parametrize("zip_format", [True, False], ids=["torch-zip", "raw-pickle"])
def test_weights_files_with_code_are_refused(tmp_path, marker, suffix, zip_format):
    path = evil_pickle(tmp_path / f"evil{suffix}", marker, zip_format=zip_format)
    with pytest.raises(UserError, match="refused to load|not a PyTorch weights file"):
        weights.load_state_dict_file(path)


@pytest.mark.parametrize("argv", [
    ["inspect", "resnet18", "--weights", "{evil}"],
    ["predict", "resnet18", "{image}", "--weights", "{evil}"],
    ["train", "{data}", "--model", "shufflenet_v2_x0_5", "--weights", "{evil}", "--strategy", "head",
     "--epochs", "1", "--image-size", "32", "--device", "cpu", "--out", "{out}"],
], ids=["inspect", "predict", "train"])
def test_every_cli_entry_point_refuses_a_weights_file_with_code(tmp_path, marker, capsys, tiny_data, argv):
    evil = evil_pickle(tmp_path / "evil.pth", marker, zip_format=True)
    image = next((tiny_data / "a").iterdir())
    args = [a.format(evil=evil, image=image, data=tiny_data, out=tmp_path / "run") for a in argv]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "refused to load" in err and "Traceback" not in err


def test_a_run_or_bundle_whose_weights_are_a_pickle_is_refused(tmp_path, marker, capsys, trained_run, tiny_data):
    """Evaluate, export and predict read runs and bundles: safetensors only, never a pickle."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    bundle = tmp_path / "bundle"
    export.export_run(run, bundle, ["safetensors"])
    for target in (run / ckpt.BEST, bundle / "model.safetensors"):
        evil_pickle(target, marker, zip_format=True)
    meta = json.loads((bundle / "model.json").read_text())
    meta.pop("checksums")  # an attacker can recompute a checksum: it must not be what protects us
    (bundle / "model.json").write_text(json.dumps(meta))
    image = next((tiny_data / "a").iterdir())
    for argv in (["evaluate", run], ["export", run, "--out", tmp_path / "b2", "--format", "safetensors"],
                 ["evaluate", bundle], ["predict", bundle, image]):
        assert cli_main([str(a) for a in argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "cannot be read as safetensors" in err and "Traceback" not in err, (argv, err)


def test_resuming_from_a_checkpoint_with_code_is_refused(tmp_path, marker, tiny_data):
    """Even with a valid checksum (anyone can compute one), weights_only loading refuses the code."""
    from helpers.training import make_project

    run = tmp_path / "run"
    fit(make_project(tiny_data, strategy="full", epochs=1), run_dir=run)
    payload = evil_pickle(tmp_path / "evil.pt", marker, zip_format=True).read_bytes()
    for name in (ckpt.CHECKPOINT, ckpt.PREVIOUS):
        (run / name).write_bytes(ckpt.seal(payload))
    with pytest.raises(UserError, match="both damaged"):
        fit(None, run_dir=run, resume=True)
    assert cli_main(["train", "--resume", str(run)]) == 2


# -- safetensors headers that lie --------------------------------------------------------------------
def _lying(path, header: dict | bytes, data: bytes = b"\0" * 64, length: int | None = None):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


LIES = {
    "header length past the end": ({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}, 10**6),
    "huge header length": ({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}, 2**63),
    "data past the end": ({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 10**9]}}, None),
    "shape larger than its data": ({"fc.weight": {"dtype": "F32", "shape": [100000, 100000],
                                                  "data_offsets": [0, 64]}}, None),
    "overlapping tensors": ({"a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]},
                             "b": {"dtype": "F32", "shape": [8], "data_offsets": [16, 48]}}, None),
    "negative shape": ({"w": {"dtype": "F32", "shape": [-1, 16], "data_offsets": [0, 64]}}, None),
    "unknown dtype": ({"w": {"dtype": "Q99", "shape": [16], "data_offsets": [0, 64]}}, None),
    "shape overflow": ({"w": {"dtype": "F32", "shape": [2**32, 2**32, 2**32], "data_offsets": [0, 64]}}, None),
    "not JSON": (b"{{{{", None),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_a_safetensors_file_with_a_lying_header_is_a_clear_error_everywhere(tmp_path, trained_run, lie, capsys):
    import shutil

    header, length = LIES[lie]
    own = _lying(tmp_path / "own.safetensors", header, length=length)
    with pytest.raises(UserError, match="truncated or corrupt"):  # the Model page's own-weights path
        weights.load_state_dict_file(own)
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    _lying(run / ckpt.BEST, header, length=length)
    with pytest.raises(UserError, match="cannot be read as safetensors"):  # Evaluate / Try / Export
        export.load_run(run)
    _lying(run / ckpt.FROZEN, header, length=length)
    with pytest.raises(UserError, match="cannot be read"):  # resume reads frozen.safetensors
        ckpt.load_tensors(run / ckpt.FROZEN)
    assert cli_main(["inspect", "resnet18", "--weights", str(own)]) == 2
    assert "Traceback" not in capsys.readouterr().err


# -- bundles that point outside their folder or describe absurd networks ------------------------------
@pytest.fixture
def bundle(tmp_path, trained_run):
    out = tmp_path / "bundle"
    export.export_run(trained_run, out, ["safetensors"])
    return out


def _edit(bundle, fn):
    meta = json.loads((bundle / "model.json").read_text())
    fn(meta)
    (bundle / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "sub/model.safetensors", "..",
                                  "C:\\weights.safetensors", ""])
def test_a_bundle_naming_files_outside_its_folder_is_refused(bundle, tmp_path, name, monkeypatch):
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes((bundle / "model.safetensors").read_bytes())
    _edit(bundle, lambda m: m["files"].__setitem__("safetensors", name))
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    with pytest.raises(UserError, match="not a file inside the bundle folder"):
        export.load_bundle(bundle)
    assert not [f for f in opened if "outside" in f or "passwd" in f]


def test_a_bundle_file_linked_to_outside_its_folder_is_refused(bundle, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    (bundle / "model.safetensors").rename(outside)
    (bundle / "model.safetensors").symlink_to(outside)
    with pytest.raises(UserError, match="outside the bundle folder"):
        export.load_bundle(bundle)


ABSURD = {
    "a trillion classes": lambda m: (m["architecture"].__setitem__("num_classes", 10**12),
                                     m.__setitem__("classes", [])),
    "a 12 GB layer": lambda m: m["architecture"]["surgery"].append(
        {"op": "insert_after", "target": "fc", "params": {"layer": {"type": "Linear", "in_features": 3,
                                                                   "out_features": 10**9}}}),
    "a gigapixel input": lambda m: m["architecture"].__setitem__("image_size", 10**6),
    "a gigapixel crop": lambda m: m["preprocessing"].__setitem__("crop", 10**6),
    "zero std": lambda m: m["preprocessing"].__setitem__("std", [0, 0, 0]),
    "classes that are not names": lambda m: m.__setitem__("classes", [{"a": 1}, 2, 3]),
    "surgery that is not a list": lambda m: m["architecture"].__setitem__("surgery", "rm -rf"),
    "files that is not a mapping": lambda m: m.__setitem__("files", ["model.safetensors"]),
}


@pytest.fixture
def no_allocation(monkeypatch):
    """Fails the test if a real (allocating) network is built, or the process's peak memory grows by
    a gigabyte: refusals must come before any of that."""
    import resource

    from transfer_studio.core import network

    def refuse(*a, **k):
        raise AssertionError("a real network was built for a description that should have been refused")

    monkeypatch.setattr(network, "build_network", refuse)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grown_mib < 1024, f"peak memory grew by {grown_mib:.0f} MiB while checking the description"


@pytest.mark.parametrize("case", list(ABSURD))
def test_a_bundle_describing_an_absurd_network_is_refused_before_allocating(bundle, case, capsys, tiny_data,
                                                                            no_allocation):
    _edit(bundle, ABSURD[case])
    with pytest.raises(UserError):
        export.load_bundle(bundle)
    image = next((tiny_data / "a").iterdir())
    assert cli_main(["predict", str(bundle), str(image)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err


def test_an_absurd_network_in_a_run_folder_is_refused_before_allocating(tmp_path, trained_run, no_allocation):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    project = Project.load(run / "project.json")
    from transfer_studio.config import SurgeryOp

    project.surgery.append(SurgeryOp("insert_after", "fc", {"layer": {"type": "Linear", "in_features": 3,
                                                                      "out_features": 10**9}}))
    project.save(run / "project.json")
    with pytest.raises(UserError, match="does not fit"):
        export.load_run(run)


# -- project files whose paths point outside ----------------------------------------------------------
@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "a/../../x.png", "a/\0.png", ""])
def test_a_project_whose_split_points_outside_the_data_folder_is_refused(tmp_path, bad):
    project = Project(name="x")
    project.data.root = str(tmp_path)
    project.data.split = {"train": ["a/1.png", bad], "val": []}
    project.save(tmp_path / "p.tsproj")
    with pytest.raises(UserError, match="outside the data folder"):
        Project.load(tmp_path / "p.tsproj")


@pytest.mark.parametrize("bad", ["..", ".", "a/b", "", "x\0y"])
def test_a_project_whose_class_names_are_paths_is_refused(tmp_path, bad):
    project = Project(name="x")
    project.data.classes = ["ok", bad]
    project.save(tmp_path / "p.tsproj")
    with pytest.raises(UserError, match="class name"):
        Project.load(tmp_path / "p.tsproj")


def test_export_never_reads_images_outside_the_data_folder(tmp_path, trained_run, monkeypatch):
    """A run whose project.json was edited to list a file outside the data folder: refused."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    secret = make_class_folder(tmp_path / "secret", {"s": 1}) / "s" / "s_0000.png"
    text = (run / "project.json").read_text()
    data = json.loads(text)
    data["data"]["split"]["val"].append(str(secret))
    (run / "project.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="outside the data folder"):
        export.export_run(run, tmp_path / "bundle", ["safetensors"])


def test_only_real_run_folders_count_as_run_folders(tmp_path, trained_run):
    """What the app may offer to delete as a run's files (a hostile project can list any folder)."""
    from transfer_studio.core.run_folder import is_run_folder

    assert is_run_folder(trained_run)
    home_like = tmp_path / "home"
    (home_like / "Documents").mkdir(parents=True)
    (home_like / "project.json").write_text("{}")  # even with a project.json lying around
    assert not is_run_folder(home_like)
    assert not is_run_folder(tmp_path / "absent")
    link = tmp_path / "link"
    link.symlink_to(trained_run)
    assert not is_run_folder(link)
