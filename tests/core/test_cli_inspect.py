"""`transfer-studio inspect`, run in-process through the CLI dispatcher."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from transfer_studio.cli import main
from transfer_studio.core import catalog


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["inspect", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_is_the_graph(capsys) -> None:
    code, out, err = run(capsys, "resnet18", "--image-size", "64", "--json")
    assert code == 0, err
    data = json.loads(out)  # exactly one JSON document on stdout
    assert data["model_name"] == "resnet18" and data["method"] == "fx" and data["input_shape"] == [1, 3, 64, 64]
    assert data["total_params"] == data["trainable_params"] == catalog.get_info("resnet18").params
    nodes = {n["id"]: n for n in data["nodes"]}
    assert nodes["layer1.0.conv1"]["output_shape"] == [1, 64, 16, 16] and nodes["fc"]["params"] == 513000
    assert sorted(s for s, d in data["edges"] if d == "add") == ["layer1.0.bn2", "maxpool"]
    assert {b["id"]: b["kind"] for b in data["blocks"]}["layer3"] == "stage"
    assert data["head"] == "fc" and data["freeze_units"][:3] == ["conv1", "bn1", "layer1.0"]


def test_human_summary(capsys) -> None:
    code, out, _ = run(capsys, "resnet18", "--image-size", "64")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "resnet18: input [1, 3, 64, 64], 11,689,512 parameters (11,689,512 trainable)"
    assert "graph from torch.fx data flow: 71 nodes" in lines[1] and "head: fc" in lines[1]
    conv = next(line for line in lines if line.strip().startswith("layer1.0.conv1 "))
    assert conv.startswith("    layer1.0.conv1") and "Conv2d" in conv and "[1, 64, 16, 16]" in conv
    assert conv.rstrip().endswith("36,864")
    add = next(line for line in lines if line.strip().startswith("add "))
    assert add.rstrip().endswith("<- layer1.0.bn2, maxpool")
    assert any(line.startswith("layer1  (stage, Sequential)") and line.rstrip().endswith("147,968")
               for line in lines)
    assert any(line.startswith("  layer1.0  (block, BasicBlock)") for line in lines)


def test_weights_file_and_bundled_default(capsys, tmp_path) -> None:
    model = catalog.build_model("efficientnet_lite0", "none")
    path = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    code, out, err = run(capsys, "efficientnet_lite0", "--weights", str(path), "--image-size", "64", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["head"] == "_fc" and data["nodes"][-1]["output_shape"] == [1, 1000]
    code, out, err = run(capsys, "efficientnet_lite0", "--weights", "DEFAULT", "--json")
    assert code == 0, err
    assert json.loads(out)["input_shape"] == [1, 3, 224, 224]
    torch.save({"not": "weights"}, tmp_path / "junk.pt")
    code, out, err = run(capsys, "efficientnet_lite0", "--weights", str(tmp_path / "junk.pt"))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


def test_bad_input_exits_2_with_one_line(capsys) -> None:
    for argv, expected in [
        (("resnt18",), "unknown model 'resnt18': did you mean resnet18"),
        (("vit_b_16", "--image-size", "64"), "too small for vit_b_16"),
        (("resnet18", "--image-size", "0"), "--image-size must be a positive number"),
        (("resnet18", "--weights", "/nonexistent/file.pth"), "weights file not found"),
        (("resnet18", "--weights", "DEFAULT"), "not available offline"),
    ]:
        code, out, err = run(capsys, *argv, "--json")
        assert code == 2 and out == "", argv
        assert err.startswith("error: ") and expected in err and len(err.strip().splitlines()) == 1, err
