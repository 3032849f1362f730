"""Export bundles: files, model.json, verification, loading back, errors, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from run_factory import make_run
from safetensors.torch import load_file, save_file

from transfer_studio.cli import main
from transfer_studio.config import Project, SurgeryOp
from transfer_studio.core import export
from transfer_studio.core.augment import build_transform
from transfer_studio.core.imageio import load_rgb
from transfer_studio.errors import UserError

CLASSES = {"cat": 6, "dog": 6, "fox": 6}
CLASSES_SORTED = sorted(CLASSES)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    # Structural surgery the bundle must replay: a layer inserted after the pooling, a 2-layer head.
    insert = SurgeryOp("insert_after", "avgpool", {"layer": {"type": "Dropout", "p": 0.1}})
    return make_run(tmp_path_factory.mktemp("exp"), CLASSES, val=0.34, extra_ops=(insert,), head={"hidden": 16})


@pytest.fixture(scope="module")
def full_bundle(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "b"
    steps = []
    result = export.export_run(run_dir, out, progress=lambda d, t: steps.append((d, t)))
    return out, result, steps


def _inputs(n, size=32, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_bundle_files_and_model_json(full_bundle, run_dir):
    out, result, steps = full_bundle
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.onnx", "model.pt2", "model.safetensors"]
    assert steps[-1][0] == steps[-1][1] and [d for d, _ in steps] == sorted(d for d, _ in steps)
    meta = json.loads((out / "model.json").read_text())
    assert meta["schema_version"] == export.BUNDLE_SCHEMA_VERSION and meta["format"] == "transfer-studio-bundle"
    arch = meta["architecture"]
    assert arch["model"] == "resnet18" and arch["num_classes"] == 3
    # Only ops that change the structure are needed to rebuild the network.
    assert [op["op"] for op in arch["surgery"]] == ["insert_after", "replace_head"]
    assert arch["surgery"][1]["params"] == {"num_classes": 3, "hidden": 16}
    assert meta["classes"] == ["cat", "dog", "fox"]
    pre = meta["preprocessing"]
    assert pre["crop"] == 32 and pre["input_size"] == [3, 32, 32] and len(pre["mean"]) == len(pre["std"]) == 3
    assert {"resize", "interpolation"} <= set(pre)
    assert meta["source"]["run_dir"] == str(run_dir.resolve()) and meta["created"]
    v = meta["verification"]
    n_val = len(Project.load(run_dir / "project.json").data.split["val"])
    assert v["passed"] and result.passed and v["inputs"] == "val images" and v["images"] == n_val
    for fmt in ("safetensors", "onnx", "pt2"):
        assert v[fmt]["passed"] and v[fmt]["max_abs_diff"] <= 1e-4 and v[fmt]["top1_agree"] == n_val
    assert v["safetensors"]["max_abs_diff"] == 0.0
    assert v["onnx"]["exporter"] == "dynamo"
    assert meta["files"] == {"safetensors": "model.safetensors", "onnx": "model.onnx", "pt2": "model.pt2"}


def test_bundle_reloads_and_matches_pytorch_at_any_batch_size(full_bundle, run_dir):
    out, _, _ = full_bundle
    reference, _ = export.load_run(run_dir)
    model, meta = export.load_bundle(out)
    assert not model.training and meta["classes"] == ["cat", "dog", "fox"]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "input" and session.get_outputs()[0].name == "logits"
    program = torch.export.load(str(out / "model.pt2")).module()
    for n in (1, 5):
        x = _inputs(n, seed=n)
        with torch.no_grad():
            ref = reference(x).numpy()
            np.testing.assert_array_equal(model(x).numpy(), ref)
            np.testing.assert_allclose(program(x).numpy(), ref, atol=1e-4)
        onnx_out = session.run(None, {"input": x.numpy()})[0]
        assert onnx_out.shape == (n, 3)
        np.testing.assert_allclose(onnx_out, ref, atol=1e-4)


def test_onnx_fallback_exporter_and_failed_verification(run_dir, tmp_path, monkeypatch):
    real_export, real_outputs = torch.onnx.export, export._onnx_outputs

    def no_dynamo(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("dynamo exporter unavailable")
        return real_export(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    # onnxruntime's outputs, shifted: the verification must catch a file that disagrees.
    monkeypatch.setattr(export, "_onnx_outputs", lambda data, x: real_outputs(data, x) + 1e-3)
    out = tmp_path / "b"
    with pytest.raises(export.ExportVerificationError, match=r"onnx: max abs diff 1\.0\de-03") as info:
        export.export_run(run_dir, out, "onnx")
    meta = json.loads((out / "model.json").read_text())
    v = meta["verification"]
    assert v["passed"] is False and v["onnx"]["passed"] is False and v["safetensors"]["passed"]
    assert v["onnx"]["exporter"] == "torchscript" and "dynamo exporter unavailable" in v["onnx"]["dynamo_failed"]
    assert set(meta["files"]) == {"safetensors", "onnx"} and not info.value.result.passed
    # The fallback exporter's file itself is right, with a dynamic batch dimension.
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    reference, _ = export.load_run(run_dir)
    x = _inputs(4)
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], reference(x).numpy(), atol=1e-4)


def test_reexport_removes_stale_files_and_writes_atomically(run_dir, tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"stale")
    (out / "model.json").write_text("{}")
    export.export_run(run_dir, out, ["safetensors"])
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.safetensors"]
    assert json.loads((out / "model.json").read_text())["files"] == {"safetensors": "model.safetensors"}
    with pytest.raises(UserError, match="unknown export format"):
        export.export_run(run_dir, out, "safetensors,tflite")
    with pytest.raises(UserError, match="inside the run folder"):
        export.export_run(run_dir, run_dir / "bundle")
    assert not (run_dir / "bundle").exists()


def test_load_bundle_rejects_broken_bundles(full_bundle, tmp_path):
    good, _, _ = full_bundle
    meta = json.loads((good / "model.json").read_text())

    def bundle(name, meta_text, weights=True):
        d = tmp_path / name
        d.mkdir()
        if meta_text is not None:
            (d / "model.json").write_text(meta_text)
        if weights:
            (d / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes())
        return d

    with pytest.raises(UserError, match="model.json is missing"):
        export.load_bundle(bundle("nometa", None))
    with pytest.raises(UserError, match="corrupt"):
        export.load_bundle(bundle("corrupt", '{"format": "transfer-studio-bundle", '))
    with pytest.raises(UserError, match="newer Transfer Studio"):
        export.load_bundle(bundle("newer", json.dumps({**meta, "schema_version": 99})))
    with pytest.raises(UserError, match="incomplete or damaged"):
        export.load_bundle(bundle("nokey", json.dumps({k: v for k, v in meta.items() if k != "preprocessing"})))
    with pytest.raises(UserError, match="no model.safetensors"):
        export.load_bundle(bundle("noweights", json.dumps(meta), weights=False))
    replaced = bundle("replaced", json.dumps(meta))
    state = load_file(str(replaced / "model.safetensors"))
    state["fc.2.weight"] = torch.zeros(5, 16)
    save_file(state, str(replaced / "model.safetensors"))
    with pytest.raises(UserError, match="does not match the checksum"):
        export.load_bundle(replaced)
    # without checksums (a bundle from an older version) the shapes are still compared
    wrong = bundle("wrongweights", json.dumps({k: v for k, v in meta.items() if k != "checksums"}))
    save_file(state, str(wrong / "model.safetensors"))
    with pytest.raises(UserError, match="does not fit the network"):
        export.load_bundle(wrong)
    with pytest.raises(UserError, match="not found"):
        export.load_bundle(tmp_path / "absent")


def test_cli_export_refuses_to_overwrite_without_force(run_dir, tmp_path, capsys):
    out = tmp_path / "cli_bundle"
    assert main(["export", str(run_dir), "--out", str(out), "--format", "safetensors", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and doc["classes"] == ["cat", "dog", "fox"] and set(doc["files"]) == {
        "safetensors", "model.json"}
    before = (out / "model.json").read_bytes()
    assert main(["export", str(run_dir), "--out", str(out), "--format", "safetensors"]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and len(err.strip().splitlines()) == 1
    assert (out / "model.json").read_bytes() == before
    assert main(["export", str(run_dir), "--out", str(out), "--format", "safetensors", "--force"]) == 0
    text = capsys.readouterr().out
    assert "Exported resnet18 (3 classes)" in text and "top-1 agree 6/6" in text and "ok" in text
    # predict takes the bundle like a catalog model: the bundle's classes and its network's scores.
    project = Project.load(run_dir / "project.json")
    image = Path(project.data.root) / project.data.split["val"][0]
    assert main(["predict", str(out), str(image), "--top-k", "2", "--json"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    model, meta = export.load_bundle(out)
    x = build_transform(export.bundle_preprocess(meta), None, train=False)(load_rgb(image))
    with torch.no_grad():
        probs = torch.softmax(model(x[None]), 1)[0].numpy()
    top = np.argsort(-probs)[:2]
    assert [e["label"] for e in item["top_k"]] == [CLASSES_SORTED[i] for i in top]
    # predict resizes with its own code path (core/predict.py), not augment.build_transform: the
    # scores agree to resampling differences only.
    assert [e["probability"] for e in item["top_k"]] == pytest.approx(probs[top].tolist(), abs=0.01)

    assert main(["export", str(run_dir), "--out", str(tmp_path / "x"), "--format", "tflite"]) == 2
    assert main(["export", str(out), "--out", str(tmp_path / "y")]) == 2  # a bundle is not a run
