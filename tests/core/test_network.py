"""core.network: the network built from the project file (catalog model + weights + surgery)."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from transfer_studio.config import ModelSpec, Project, SurgeryOp
from transfer_studio.core import catalog, network
from transfer_studio.core.surgery import SurgeryError, find_head, freeze_state, modified_modules, param_counts
from transfer_studio.errors import UserError


def project(name: str = "resnet18", weights: str = "none", surgery=(), image_size=None) -> Project:
    p = Project(model=ModelSpec(name=name, weights=weights), surgery=list(surgery))
    p.train.image_size = image_size
    return p


OPS = [SurgeryOp("freeze", "*"), SurgeryOp("replace_head", "", {"num_classes": 3, "dropout": 0.2}),
       SurgeryOp("insert_after", "layer4.1.relu", {"layer": {"type": "Dropout2d", "p": 0.1}})]


def test_build_network_replays_the_surgery_and_meta_twin_matches() -> None:
    p = project(surgery=OPS, image_size=96)
    model = network.build_network(p, weights=False)
    assert model.fc[1].out_features == 3 and model.eval()(torch.rand(1, 3, 96, 96)).shape == (1, 3)
    assert param_counts(model)[0] == 512 * 3 + 3
    assert modified_modules(model) == {"fc", "layer4.1.relu.1"}
    twin = network.build_network_meta(p)
    assert all(t.device.type == "meta" for t in twin.state_dict().values())
    assert [(n, t.shape) for n, t in twin.state_dict().items()] == [(n, t.shape) for n, t in model.state_dict().items()]
    assert freeze_state(twin) == freeze_state(model) and modified_modules(twin) == modified_modules(model)
    # The project itself is not modified by building.
    assert p.surgery == OPS


def test_num_classes_from_the_dataset() -> None:
    p = project(surgery=OPS)
    model = network.build_network_meta(p, num_classes=5)
    assert model.fc[1].out_features == 5 and p.surgery[1].params["num_classes"] == 3
    plain = network.build_network_meta(project(surgery=[SurgeryOp("freeze", "*")]), num_classes=4)
    assert plain.fc.out_features == 4 and param_counts(plain)[0] == 512 * 4 + 4  # added last: trainable
    same = network.build_network_meta(project(), num_classes=1000)  # the pretrained head already fits
    assert "fc" not in modified_modules(same)


def test_bundled_model_with_pretrained_weights_and_surgery() -> None:
    p = project("efficientnet_lite0", "DEFAULT", [SurgeryOp("replace_head", "", {"num_classes": 2})], 128)
    model = network.build_network(p)
    pretrained = catalog.build_model("efficientnet_lite0")
    same = [k for k, v in pretrained.state_dict().items() if not k.startswith("_fc.")]
    assert all(torch.equal(model.state_dict()[k], pretrained.state_dict()[k]) for k in same)
    assert find_head(model) == "_fc" and model._fc.out_features == 2
    assert model.eval()(torch.rand(1, 3, 128, 128)).shape == (1, 2)


def test_preprocess_and_input_shape_follow_the_image_size() -> None:
    base = catalog.get_info("resnet18").preprocess
    assert network.project_preprocess(project()) == base and network.input_shape(project()) == (1, 3, 224, 224)
    pre = network.project_preprocess(project(image_size=160))
    assert (pre.crop, pre.resize, pre.mean, pre.std) == (160, round(160 * 256 / 224), base.mean, base.std)
    lite = network.project_preprocess(project("efficientnet_lite0", image_size=128))
    assert (lite.crop, lite.resize, lite.mean) == (128, round(128 * 256 / 224), (0.5, 0.5, 0.5))
    gray = project(surgery=[SurgeryOp("replace", "conv1", {"layer": {"type": "Conv2d", "in_channels": 1}})],
                   image_size=64)
    assert network.input_shape(gray) == (1, 1, 64, 64)
    assert network.build_network_meta(gray).conv1.in_channels == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "vit_b_16", "image_size": 64}, r"too small for vit_b_16: it needs at least 224x224"),
    ({"name": "vit_b_16", "image_size": 256}, r"vit_b_16 only takes 224x224 images"),
    ({"name": "resnet18", "image_size": "big"}, r"image_size must be a whole number"),
    ({"name": "resnet81"}, r"unknown model 'resnet81': did you mean resnet18"),
    ({"name": "resnet18", "weights": "/nonexistent/w.safetensors"}, r"weights file not found"),
])
def test_bad_projects_are_user_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        network.build_network(project(**kwargs))


def test_a_surgery_step_that_no_longer_fits_names_its_step() -> None:
    bad = project(surgery=[SurgeryOp("freeze", "*"), SurgeryOp("remove", "layer3.0")], image_size=64)
    with pytest.raises(SurgeryError, match=r"surgery step 2 of 2: remove 'layer3.0' does not fit"):
        network.build_network_meta(bad)


def test_meta_construction_without_real_memory_and_thread_local_patch() -> None:
    # RegNet computes its widths with tensor ops, so the plain meta device cannot build it.
    model = network.build_on_meta(lambda: catalog.build_model("regnet_y_400mf", "none"))
    assert all(t.device.type == "meta" for t in model.state_dict().values())
    assert nn.Module.register_parameter is network._original_register_parameter  # patch removed
    # While one thread builds on meta, another thread's modules stay real.
    started, release, results, calls = threading.Event(), threading.Event(), {}, []

    def slow_factory() -> nn.Module:
        calls.append(1)
        if len(calls) == 2:  # the second try: the one with the registration patch in place
            started.set()
            release.wait(10)
        return catalog.build_model("regnet_x_400mf", "none")

    worker = threading.Thread(target=lambda: results.setdefault("meta", network.build_on_meta(slow_factory)))
    worker.start()
    started.wait(10)
    results["real"] = nn.Linear(4, 2)
    release.set()
    worker.join(60)
    assert results["real"].weight.device.type == "cpu" and results["real"].weight.abs().sum() > 0
    assert next(results["meta"].parameters()).device.type == "meta" and len(calls) == 2


def test_own_fine_tuned_weights_with_another_class_count(tmp_path) -> None:
    """A file fine-tuned elsewhere on 5 classes: the same network with a 5-class head. It keeps that
    head for a 5-class dataset, and replaces it for a dataset with other classes."""
    from torchvision.models import get_model

    torch.manual_seed(0)
    mine = get_model("resnet18", weights=None, num_classes=5).eval()
    torch.save({"state_dict": mine.state_dict()}, tmp_path / "mine.pth")
    loaded = catalog.build_model("resnet18", tmp_path / "mine.pth").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), mine(x))
    p = project(weights=str(tmp_path / "mine.pth"))
    kept = network.build_network(p, num_classes=5).eval()
    assert "fc" not in modified_modules(kept)
    with torch.no_grad():
        assert torch.equal(kept(x), mine(x))  # the user's trained head, untouched
    other = network.build_network(p, num_classes=3)
    assert other.fc.out_features == 3 and "fc" in modified_modules(other)
    # A body that differs is still refused, with the mismatch named.
    body = mine.state_dict()
    body["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(body, tmp_path / "broken.pth")
    with pytest.raises(UserError, match=r"layer1.0.conv1.weight is \[64, 64, 1, 1\] in the file"):
        catalog.build_model("resnet18", tmp_path / "broken.pth")
